"""An Infinity model as one object: transformer, BSQ VAE, T5 text encoder, schedule; and its loaders.

Two ways in, never through a hub:
  (a) a directory laid out like shared/golden/infinity: `config.json` (the `Infinity` and VAE
      constructor arguments, the schedule), `infinity.safetensors` or `infinity.pth`, `vae.safetensors`
      or `vae.pth`, `text_encoder/`;
  (b) the official files one by one: the transformer (`.pth`, `.safetensors`, a trainer checkpoint
      holding `['trainer']['gpt_fsdp']`, or a sharded directory with an index json), the VAE `.pth`,
      a local Flan-T5 directory, and an architecture preset (`infinity_2b`, `infinity_8b`) or sizes.
Both check key coverage strictly: the reference loaders skip unknown keys silently
(`Infinity.load_state_dict` is non-strict, infinity.py:648-663; `load_cnn`, vae.py:6-69), so a
checkpoint of the wrong architecture would load half-random there; here it is refused by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rlalign.policies.infinity import bits as bitops
from rlalign.policies.infinity.architecture import (
    InfinityArchitecture,
    from_reference_kwargs,
    resolve_architecture,
)
from rlalign.policies.infinity.schedules import schedule as named_schedule
from rlalign.policies.infinity.text import T5Text
from rlalign.policies.infinity.transformer import InfinityTransformer
from rlalign.policies.infinity.vae import BSQVAE, VAEConfig, load_vae
from rlalign.utils.files import readable


@dataclass
class InfinityModel:
    transformer: InfinityTransformer
    vae: BSQVAE
    text: T5Text
    identity: dict[str, Any] = field(default_factory=dict)
    """What the checkpoint is (file names, sizes, a hash of the transformer's first tensor bytes): a stable
    name for the base model that does not depend on where it lies on this machine."""

    @property
    def arch(self) -> InfinityArchitecture:
        return self.transformer.arch

    @property
    def scales(self) -> list[tuple[int, int]]:
        """The transformer's (h, w) token maps; the VAE's are twice as large with spatial patchify."""
        return self.transformer.scales

    @property
    def vae_scales(self) -> list[tuple[int, int]]:
        factor = 2 if self.arch.apply_spatial_patchify else 1
        return [(h * factor, w * factor) for h, w in self.scales]

    def to(self, device: str | torch.device) -> InfinityModel:
        self.transformer.to(device)
        self.vae.to(device)
        self.text.encoder.to(device)
        return self

    # ---------------------------------------------------------------------------------------------
    # Bits of the transformer's tokens ↔ the VAE's latent (spatial patchify handled here)
    # ---------------------------------------------------------------------------------------------

    def vae_bits(self, bits_Bnb: Tensor, k: int) -> Tensor:
        """Scale k's token bits [B, n, b] → bits on the VAE grid [B, n', d] (b = 4d with patchify)."""
        return bitops.unpatchify_bits(bits_Bnb, self.scales[k]) if self.arch.apply_spatial_patchify else bits_Bnb

    def add_scale(self, summed_BdHW: Tensor | None, bits_Bnb: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
        """The running latent after scale k, and scale k + 1's transformer inputs [B, n, b] (None after the last)."""
        summed_BdHW = bitops.add_scale(summed_BdHW, self.vae_bits(bits_Bnb, k), self.vae_scales[k], self.vae_scales[-1])
        if k + 1 == len(self.scales):
            return summed_BdHW, None
        inputs = bitops.next_scale_input(summed_BdHW, self.vae_scales[k + 1])
        if self.arch.apply_spatial_patchify:
            inputs = bitops.patchify_tokens(inputs, self.vae_scales[k + 1])
        return summed_BdHW, inputs

    def teacher_inputs(self, bits: list[Tensor]) -> Tensor | None:
        """Inputs [B, L_k − 1, b] of scales 2..k for the bits of scales 1..k, as the sampler builds them."""
        summed, inputs = None, []
        for k, bits_Bnb in enumerate(bits[:-1]):
            summed, next_inputs = self.add_scale(summed, bits_Bnb.to(self.transformer.pos_start.device), k)
            inputs.append(next_inputs)
        return torch.cat(inputs, dim=1) if inputs else None

    def decode(self, bits: list[Tensor]) -> Tensor:
        """Images [B, 3, H, W] in [0, 1] from the bits of every scale."""
        summed = None
        for k, bits_Bnb in enumerate(bits):
            summed, _ = self.add_scale(summed, bits_Bnb.to(self.transformer.pos_start.device), k)
        return self.latent_to_images(summed)

    @torch.no_grad()
    def latent_to_images(self, summed_BdHW: Tensor) -> Tensor:
        """The decoder's output (clamped to [-1, 1]) mapped to [0, 1]."""
        return (self.vae.decode(summed_BdHW).float() + 1) / 2

    @torch.no_grad()
    def encode(self, images_B3HW: Tensor) -> list[Tensor]:
        """Images in [0, 1] → token bits [B, n_k, b] per scale (the VAE's multi-scale BSQ)."""
        vae_bits = self.vae.encode_bits(images_B3HW * 2 - 1, self.vae_scales)
        if not self.arch.apply_spatial_patchify:
            return vae_bits
        return [bitops.patchify_tokens(b, hw) for b, hw in zip(vae_bits, self.vae_scales)]


# -------------------------------------------------------------------------------------------------
# Loading
# -------------------------------------------------------------------------------------------------


def load_directory(directory: str | Path, *, text_encoder: str | Path = "", text_dtype: str = "fp32",
                   scales: list[tuple[int, int]] | None = None, h_div_w: float | None = None) -> InfinityModel:
    """A model from a directory laid out like shared/golden/infinity (module docstring, (a))."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json: an Infinity directory holds config.json, the "
                                "transformer, the VAE and text_encoder/ (see docs/infinity.md); for the official "
                                "files give policy.checkpoint (transformer), policy.vae_checkpoint and a preset")
    config = json.loads(config_path.read_text())
    vae_config = VAEConfig.from_golden_config(config["vae"])
    arch = from_reference_kwargs(config["infinity"], vae_config.codebook_dim)
    own_scales = [(int(h), int(w)) for _, h, w in config["scale_schedule"]]
    ratio = float(config.get("h_div_w_template", config.get("h_div_w", 1.0)))
    transformer_file = _first_file(directory, ["infinity.safetensors", "infinity.pth"])
    vae_file = _first_file(directory, ["vae.safetensors", "vae.pth"])
    return _assemble(arch, transformer_file, vae_config, vae_file, Path(text_encoder or directory / "text_encoder"),
                     text_dtype, scales or own_scales, ratio if h_div_w is None else h_div_w)


def load_official(transformer: str | Path, vae: str | Path, text_encoder: str | Path, *, preset: str = "",
                  architecture: dict[str, Any] | None = None, text_dtype: str = "fp32", resolution: str = "1M",
                  h_div_w: float = 1.0, num_scales: int | None = None) -> InfinityModel:
    """A model from the official files and an architecture preset or sizes (module docstring, (b)).

    The VAE is the one `load_visual_tokenizer` builds for the transformer's bits per token and patchify;
    `architecture["vae"]` (VAEConfig fields) changes its sizes for a VAE of another shape.
    """
    sizes = dict(architecture or {})
    vae_sizes = sizes.pop("vae", {}) or {}
    arch = resolve_architecture(preset, sizes)
    if vae_sizes:  # the official shape for these bits, without insisting on an official vae_type
        mult = (1, 2, 4, 4) if arch.apply_spatial_patchify else (1, 2, 4, 4, 4)
        official = VAEConfig(arch.codebook_dim, 128, mult, mult, 2, 8 if arch.apply_spatial_patchify else 16)
    else:
        official = VAEConfig.official(arch.codebook_dim, arch.apply_spatial_patchify)
    unknown = sorted(set(vae_sizes) - set(official.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown VAE keys {unknown} in policy.architecture.vae; known: "
                         f"{', '.join(official.__dataclass_fields__)}")
    vae_config = VAEConfig(**{**official.__dict__, **{k: tuple(v) if isinstance(v, list) else v
                                                       for k, v in vae_sizes.items()}})
    scales = named_schedule(resolution, h_div_w, num_scales)
    return _assemble(arch, Path(transformer), vae_config, Path(vae), Path(text_encoder), text_dtype, scales, h_div_w)


def _assemble(arch: InfinityArchitecture, transformer_file: Path, vae_config: VAEConfig, vae_file: Path,
              text_dir: Path, text_dtype: str, scales: list[tuple[int, int]], h_div_w: float) -> InfinityModel:
    state = read_transformer_state(transformer_file)
    rows = state.get("cfg_uncond")
    if rows is not None and rows.shape[0] != arch.text_maxlen:  # the checkpoint says how long a prompt may be
        arch = InfinityArchitecture(**{**arch.to_dict(), "text_maxlen": int(rows.shape[0])})
    transformer = InfinityTransformer(arch, scales, h_div_w)
    load_transformer_state(transformer, state)
    transformer.eval().requires_grad_(False)
    if not vae_file.exists():
        raise FileNotFoundError(f"Infinity VAE not found: {vae_file} (policy.vae_checkpoint)")
    vae_model = load_vae(vae_file, vae_config)
    text = T5Text(text_dir, dtype=text_dtype, max_length=arch.text_maxlen)
    if text.encoder.config.d_model != arch.text_channels:
        raise ValueError(f"the text encoder at {text_dir} gives {text.encoder.config.d_model}-wide features but the "
                         f"transformer expects text_channels={arch.text_channels}")
    identity = {"transformer": transformer_file.name, "vae": vae_file.name, "text_encoder": text_dir.name,
                "transformer_sha256_head": _state_fingerprint(state), "architecture": arch.to_dict(),
                "scales": [list(s) for s in scales], "h_div_w": h_div_w}
    return InfinityModel(transformer, vae_model, text, identity)


def read_transformer_state(path: Path) -> dict[str, Tensor]:
    """A transformer state dict from a .safetensors/.pth file, a trainer checkpoint or a sharded directory."""
    if not path.exists():
        raise FileNotFoundError(f"Infinity transformer checkpoint not found: {path} (policy.checkpoint)")
    if path.is_dir():
        indexes = sorted(path.glob("*.index.json"))
        if not indexes:
            raise FileNotFoundError(f"{path} is a directory without config.json or a shard index (*.index.json)")
        shards = sorted(set(json.loads(indexes[0].read_text())["weight_map"].values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(_read_file(path / shard))
        return state
    state = _read_file(path)
    if "trainer" in state and isinstance(state["trainer"], dict):  # a full training checkpoint (run_infinity.py:134-141)
        if "gpt_fsdp" not in state["trainer"]:
            raise ValueError(f"{path} is a training checkpoint without ['trainer']['gpt_fsdp'] (it holds "
                             f"{sorted(state['trainer'])[:6]}); save the model weights alone and load those")
        state = state["trainer"]["gpt_fsdp"]
    return state


def _read_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(readable(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_transformer_state(transformer: InfinityTransformer, state: dict[str, Tensor]) -> None:
    """Copy a reference state dict in, refusing missing, unexpected or mis-shaped keys by name."""
    ignored = {"lvl_1L", "attn_bias_for_masking", "Infinity_visible_kvlen", "Infinity_invisible_qlen"}
    state = {k: v for k, v in state.items() if k not in ignored}  # buffers the reference rebuilds (infinity.py:653-656)
    own = transformer.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k} {list(state[k].shape)} (model: {list(own[k].shape)})" for k in sorted(set(own) & set(state))
              if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing, e.g. {missing[:4]}" if missing else "",
                 f"{len(unexpected)} unexpected, e.g. {unexpected[:4]}" if unexpected else "",
                 f"{len(shapes)} of another shape, e.g. {shapes[:3]}" if shapes else ""]
        raise ValueError(f"the Infinity checkpoint does not fit the architecture {transformer.arch.to_dict()}: "
                         + "; ".join(p for p in parts if p) + " (wrong preset or sizes?)")
    transformer.load_state_dict(state, strict=True)


def _first_file(directory: Path, names: list[str]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory} holds none of {names}")


def _state_fingerprint(state: dict[str, Tensor]) -> str:
    """sha256 over every tensor's name, shape and first 64 values: cheap, and stable across copies."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key]
        digest.update(f"{key}{list(tensor.shape)}".encode())
        digest.update(tensor.detach().flatten()[:64].float().numpy().tobytes())
    return digest.hexdigest()[:16]
