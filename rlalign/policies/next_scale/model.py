"""A complete next-scale generator: tokenizer + conditioner + transformer, saved as one safetensors file.

The file holds every weight (prefixed `tokenizer.`, `transformer.`, `conditioner.`) and, in the
safetensors metadata, the architecture as JSON, so `load_model(path)` needs nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from rlalign.policies.next_scale.conditioning import ClassConditioner, PromptEncoder
from rlalign.policies.next_scale.tokenizer import MultiScaleVQTokenizer
from rlalign.policies.next_scale.transformer import NextScaleTransformer

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"


class NextScaleModel(nn.Module):
    """The three parts of a next-scale generator; `condition` and `null_condition` give cond_BD."""

    def __init__(self, tokenizer: MultiScaleVQTokenizer, transformer: NextScaleTransformer,
                 conditioner: PromptEncoder | ClassConditioner, architecture: dict[str, Any]):
        super().__init__()
        self.tokenizer, self.transformer, self.conditioner = tokenizer, transformer, conditioner
        self.architecture = architecture
        self.tokenizer.requires_grad_(False).eval()

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.transformer.patch_nums

    def condition(self, prompts: list) -> torch.Tensor:
        """cond_BD of the prompts (text or class ids, depending on the conditioner)."""
        return self.conditioner(prompts)

    def null_condition(self, batch_size: int) -> torch.Tensor:
        """cond_BD of the empty condition, the unconditional half of classifier-free guidance."""
        return self.conditioner.null(batch_size)


def build_model(architecture: dict[str, Any]) -> NextScaleModel:
    """A randomly initialised model from an architecture dict.

    Keys: `tokenizer` (MultiScaleVQTokenizer kwargs), `transformer` (NextScaleTransformer kwargs
    except vocab_size / latent_channels / patch_nums, which come from the tokenizer), and
    `text_encoder` (PromptEncoder kwargs except cond_dim) for text conditioning or null for classes.
    """
    tokenizer = MultiScaleVQTokenizer(**architecture["tokenizer"])
    text = architecture.get("text_encoder")
    transformer = NextScaleTransformer(
        vocab_size=tokenizer.vocab_size, latent_channels=tokenizer.latent_channels,
        patch_nums=tokenizer.patch_nums, **({"num_classes": None} if text else {}), **architecture["transformer"],
    )
    conditioner = (
        PromptEncoder(cond_dim=transformer.embed_dim, **text) if text else ClassConditioner(transformer)
    )
    return NextScaleModel(tokenizer, transformer, conditioner, architecture)


def save_model(model: NextScaleModel, path: str | Path, *, half: bool = True) -> Path:
    """Write the model atomically (temporary file, then rename); float weights as fp16 if `half`."""
    path = Path(path)
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        state[name] = tensor.half() if half and tensor.is_floating_point() else tensor
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(partial), metadata={"architecture": json.dumps(model.architecture), "format": "rlalign-next-scale-v1"})
    os.replace(partial, path)
    return path


def resolve_checkpoint(checkpoint: str) -> Path:
    """`builtin:NAME` → rlalign/assets/NAME.safetensors; anything else is a local path."""
    if checkpoint.startswith("builtin:"):
        name = checkpoint.split(":", 1)[1]
        path = ASSETS_DIR / f"{name}.safetensors"
        if not path.is_file():
            shipped = sorted(p.stem for p in ASSETS_DIR.glob("*.safetensors"))
            raise FileNotFoundError(
                f"built-in checkpoint {checkpoint!r} is not in {ASSETS_DIR} (shipped: {shipped or 'none'}); "
                "reproduce it with `python scripts/pretrain_shapes.py`"
            )
        return path
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist; give a local file or builtin:NAME")
    return path


def load_model(checkpoint: str | Path) -> NextScaleModel:
    """Load a model written by `save_model` (weights come back as float32)."""
    path = resolve_checkpoint(str(checkpoint))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != "rlalign-next-scale-v1":
        raise ValueError(
            f"{path} is not an rlalign next-scale checkpoint (no architecture metadata); "
            "official VAR weights load through from_var_checkpoint / policy.vae_checkpoint"
        )
    model = build_model(json.loads(metadata["architecture"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match its architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model
