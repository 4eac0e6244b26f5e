"""A complete next-scale generator: tokenizer + conditioner + transformer, saved as one safetensors file.

The file holds every weight (prefixed `tokenizer.`, `transformer.`, `conditioner.`) and, in the
safetensors metadata, the architecture as JSON, so `load_model(path)` needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlalign.policies.next_scale.conditioning import ClassConditioner, PromptEncoder
from rlalign.policies.next_scale.tokenizer import MultiScaleVQTokenizer
from rlalign.policies.next_scale.transformer import NextScaleTransformer
from rlalign.policies.weights import load_with_architecture, save_with_architecture


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


FORMAT = "rlalign-next-scale-v1"


def save_model(model: NextScaleModel, path: str | Path, *, half: bool = True) -> Path:
    """Write the model atomically (temporary file, then rename); float weights as fp16 if `half`."""
    return save_with_architecture(model, model.architecture, path, file_format=FORMAT, half=half)


def load_model(checkpoint: str | Path) -> NextScaleModel:
    """Load a model written by `save_model` (weights come back as float32)."""
    return load_with_architecture(checkpoint, file_format=FORMAT, build=build_model, wrong_format_hint=(
        "official VAR weights load through from_var_checkpoint / policy.vae_checkpoint"))


@torch.no_grad()
def tokenizer_round_trip(images_N3HW: torch.Tensor, generator: str, chunk: int = 500) -> torch.Tensor:
    """The images as a generator checkpoint's multi-scale VQ tokenizer redraws them (encode, then decode
    all scales): the edges and colour shifts of generated images, with the content unchanged (the
    built-in reward models train on such redraws, scripts/train_shapes_rewards.py and _detector.py)."""
    tokenizer = load_model(generator).tokenizer.eval()
    return torch.cat([tokenizer.decode(tokenizer.encode(images_N3HW[i:i + chunk]))
                      for i in range(0, len(images_N3HW), chunk)])
