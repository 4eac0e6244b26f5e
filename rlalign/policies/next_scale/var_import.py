"""Import official VAR checkpoints (FoundationVision/VAR ``var_d*.pth`` + ``vae_*.pth``).

Our modules keep the reference's parameter names, so importing is a short, explicit key mapping:

VQVAE (``vae_path``):
    quantize.quant_resi.qresi.*        → quantize.quant_resi.qresi_ls.0.*   (share_quant_resi = 1)
    quantize.quant_resi.{i}.*          → quantize.quant_resi.qresi_ls.{i}.* (share_quant_resi = 0)
    quantize.ema_vocab_hit_SV          dropped (codebook-usage statistic of VQVAE training)
VAR (``var_path``):
    blocks.{i}.attn.q_bias, zero_k_bias, v_bias → blocks.{i}.attn.mat_qkv.bias = [q | k | v]
        (the reference adds these to a bias-free fused qkv Linear; we keep one ordinary
        ``nn.Linear`` with bias so LoRA can wrap it; k's bias is zero in every VAR checkpoint)
    lvl_1L, attn_bias_for_masking      checked against ``patch_nums``, then dropped (derived buffers)
Every other key loads under its own name. Anything left over, missing, or of the wrong shape raises
``CheckpointMismatchError`` naming the keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file
from torch import nn

from rlalign.policies.next_scale.tokenizer import MultiScaleVQTokenizer
from rlalign.policies.next_scale.transformer import NextScaleTransformer
from rlalign.utils.files import readable

VAR_CONFIG_KEYS: dict[str, type | tuple[type, ...]] = {
    "patch_nums": list, "vocab_size": int, "z_channels": int, "vae_ch": int, "vae_ch_mult": list,
    "share_quant_resi": int, "quant_resi": (int, float), "num_classes": int, "depth": int,
    "embed_dim": int, "num_heads": int, "mlp_ratio": (int, float), "attn_l2_norm": bool,
    "shared_aln": bool, "norm_eps": (int, float), "cfg_scale": (int, float), "image_size": int,
}
MAX_KEYS_LISTED = 8


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the architecture described by the config."""


class ImportedVAR(NamedTuple):
    """What ``from_var_checkpoint`` returns: ``tokenizer, transformer, config = from_var_checkpoint(...)``."""

    tokenizer: MultiScaleVQTokenizer
    transformer: NextScaleTransformer
    config: dict[str, Any]


def validate_var_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a VAR config (the keys of ``shared/golden/var/config.json``) and return a plain copy."""
    missing = sorted(set(VAR_CONFIG_KEYS) - set(config))
    unknown = sorted(set(config) - set(VAR_CONFIG_KEYS))
    if missing or unknown:
        raise ValueError(f"VAR config: missing keys {missing}, unknown keys {unknown}; "
                         f"expected exactly {sorted(VAR_CONFIG_KEYS)}")
    for key, expected_type in VAR_CONFIG_KEYS.items():
        value = config[key]
        if isinstance(value, tuple) and expected_type is list:
            value = list(value)
        # bool is an int subclass: reject True where a number is wanted and vice versa.
        if not isinstance(value, expected_type) or (isinstance(value, bool) and expected_type is not bool):
            raise ValueError(f"VAR config key {key!r} must be {expected_type}, got {value!r}")
    config = {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}
    downsample_factor = 2 ** (len(config["vae_ch_mult"]) - 1)
    if config["image_size"] != config["patch_nums"][-1] * downsample_factor:
        raise ValueError(
            f"VAR config: image_size={config['image_size']} must equal patch_nums[-1] × "
            f"2^(len(vae_ch_mult)−1) = {config['patch_nums'][-1]} × {downsample_factor}"
        )
    return config


def build_tokenizer(config: Mapping[str, Any]) -> MultiScaleVQTokenizer:
    """An (untrained) tokenizer with the architecture of a validated VAR config."""
    return MultiScaleVQTokenizer(
        vocab_size=config["vocab_size"], latent_channels=config["z_channels"],
        patch_nums=config["patch_nums"], ch=config["vae_ch"], ch_mult=config["vae_ch_mult"],
        quant_resi=config["quant_resi"], share_quant_resi=config["share_quant_resi"],
    )


def build_transformer(config: Mapping[str, Any]) -> NextScaleTransformer:
    """An (untrained) transformer with the architecture of a validated VAR config."""
    return NextScaleTransformer(
        vocab_size=config["vocab_size"], latent_channels=config["z_channels"],
        patch_nums=config["patch_nums"], num_classes=config["num_classes"], depth=config["depth"],
        embed_dim=config["embed_dim"], num_heads=config["num_heads"], mlp_ratio=config["mlp_ratio"],
        norm_eps=config["norm_eps"], attn_l2_norm=config["attn_l2_norm"], shared_aln=config["shared_aln"],
    )


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from ``.safetensors`` or a ``.pth`` state dict (loaded weights-only)."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is a directory; give the weights file itself (.pth or .safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    readable(path)  # permission denied is its own error, not "not a checkpoint"
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device="cpu")
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (torch and safetensors raise many types for a bad file)
        kind = "safetensors" if path.suffix == ".safetensors" else "torch"
        raise CheckpointMismatchError(f"{path} cannot be read as a {kind} state dict ({type(error).__name__}: "
                                      f"{str(error)[:120]}); is it truncated, or another file?") from None
    if not isinstance(state_dict, Mapping):
        raise CheckpointMismatchError(f"{path}: expected a state dict, got {type(state_dict).__name__}")
    non_tensors = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if non_tensors:
        raise CheckpointMismatchError(
            f"{path}: entries {non_tensors[:MAX_KEYS_LISTED]} are not tensors; save the model's "
            "state_dict() itself (not a training checkpoint wrapping it)"
        )
    return dict(state_dict)


def map_vae_state_dict(reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a reference VQVAE state dict to ``MultiScaleVQTokenizer`` names (see module docstring)."""
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in reference.items():
        if key == "quantize.ema_vocab_hit_SV":
            continue
        key = re.sub(r"^quantize\.quant_resi\.qresi\.", "quantize.quant_resi.qresi_ls.0.", key)
        key = re.sub(r"^quantize\.quant_resi\.(\d+)\.", r"quantize.quant_resi.qresi_ls.\1.", key)
        mapped[key] = tensor
    return mapped


def map_var_state_dict(
    reference: Mapping[str, torch.Tensor], transformer: NextScaleTransformer
) -> dict[str, torch.Tensor]:
    """Rename a reference VAR state dict to ``NextScaleTransformer`` names (see module docstring)."""
    mapped: dict[str, torch.Tensor] = {}
    split_biases: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in reference.items():
        bias_match = re.fullmatch(r"(blocks\.\d+\.attn)\.(q_bias|zero_k_bias|v_bias)", key)
        if bias_match:
            split_biases.setdefault(bias_match.group(1), {})[bias_match.group(2)] = tensor
        elif key in ("lvl_1L", "attn_bias_for_masking"):
            _check_derived_buffer(key, tensor, transformer)
        else:
            mapped[key] = tensor
    for prefix, parts in split_biases.items():
        if "q_bias" not in parts or "v_bias" not in parts:
            raise CheckpointMismatchError(f"{prefix}: the checkpoint has {sorted(parts)} but needs both "
                                          "q_bias and v_bias to build mat_qkv.bias")
        zero_k_bias = parts.get("zero_k_bias", torch.zeros_like(parts["q_bias"]))
        mapped[f"{prefix}.mat_qkv.bias"] = torch.cat((parts["q_bias"], zero_k_bias, parts["v_bias"]))
    return mapped


def _check_derived_buffer(key: str, tensor: torch.Tensor, transformer: NextScaleTransformer) -> None:
    level_L = transformer.level_L.cpu()
    if key == "lvl_1L":
        expected = level_L.view(1, -1)
    else:  # additive mask: 0 where level(i) ≥ level(j), −inf elsewhere
        visible_LL = level_L[:, None] >= level_L[None, :]
        expected = torch.where(visible_LL, 0.0, float("-inf")).view(1, 1, *visible_LL.shape)
    if tuple(tensor.shape) != tuple(expected.shape) or not torch.equal(tensor.to(expected.dtype), expected):
        raise CheckpointMismatchError(
            f"checkpoint buffer {key!r} (shape {list(tensor.shape)}) does not match patch_nums="
            f"{list(transformer.patch_nums)}: set patch_nums in the config to the checkpoint's scales"
        )


def load_strictly(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that first reports every missing, unexpected and mis-shaped key clearly."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [
        f"{key}: checkpoint {list(state_dict[key].shape)} vs model {list(expected[key].shape)}"
        for key in sorted(set(expected) & set(state_dict))
        if state_dict[key].shape != expected[key].shape
    ]
    problems = []
    labelled = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mis_shaped))
    for label, keys in labelled:
        if keys:
            more = f" (+{len(keys) - MAX_KEYS_LISTED} more)" if len(keys) > MAX_KEYS_LISTED else ""
            problems.append(f"{label}: {keys[:MAX_KEYS_LISTED]}{more}")
    if problems:
        raise CheckpointMismatchError(
            f"{source} does not match the architecture in the config: " + "; ".join(problems)
            + ". Check that the config (depth, embed_dim, num_heads, vae_ch, vae_ch_mult, z_channels, "
            "vocab_size, patch_nums, share_quant_resi, shared_aln, attn_l2_norm) describes this checkpoint."
        )
    module.load_state_dict(dict(state_dict), strict=True)


def from_var_checkpoint(var_path: str | Path, vae_path: str | Path, config: Mapping[str, Any]) -> ImportedVAR:
    """Build the tokenizer and transformer of an official VAR checkpoint pair, in eval mode on the CPU.

    ``config`` has the keys of ``shared/golden/var/config.json`` (``validate_var_config``). The
    tokenizer's parameters are frozen (it is never trained here); the transformer's are left trainable.
    """
    config = validate_var_config(config)
    tokenizer = build_tokenizer(config)
    transformer = build_transformer(config)
    vae_state = map_vae_state_dict(load_state_dict_file(vae_path))
    load_strictly(tokenizer, vae_state, f"VQVAE checkpoint {vae_path}")
    var_state = map_var_state_dict(load_state_dict_file(var_path), transformer)
    load_strictly(transformer, var_state, f"VAR checkpoint {var_path}")
    tokenizer.eval().requires_grad_(False)
    transformer.eval()
    return ImportedVAR(tokenizer=tokenizer, transformer=transformer, config=config)
