"""Code both policy families use: seeded uniforms, inverse-CDF draws and prompt words.

It lives here, beside the protocol, so that neither family imports the other (docs/architecture.md):
the insertion sampler draws its words exactly as the next-scale sampler draws its codes, and both
families' text encoders split prompts the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor


def uniforms(shape: tuple[int, int], generator: torch.Generator | Sequence[torch.Generator]) -> Tensor:
    """U[0, 1) noise [B, N]: from one generator, or row b from generator b (batch-composition free)."""
    if isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for {shape[0]} samples")
    return torch.stack([torch.rand(shape[1:], generator=g) for g in generator])


def draw(logp_BNV: Tensor, uniform_BN: Tensor) -> Tensor:
    """Inverse-CDF sampling of one of V choices at each of N positions: the first choice whose
    cumulative probability exceeds u·total.

    Scaling u by the total keeps the draw inside the kept set even when the float cumulative sum
    ends slightly below 1, and a choice of probability 0 can never be returned.
    """
    cdf_BNV = logp_BNV.exp().cumsum(dim=-1)
    target_BN1 = uniform_BN.to(cdf_BNV.device).unsqueeze(-1) * cdf_BNV[..., -1:]
    return torch.searchsorted(cdf_BNV, target_BN1, right=True).squeeze(-1).clamp_max(cdf_BNV.shape[-1] - 1)


def split_words(prompt: str) -> list[str]:
    """Lower-cased words of a prompt (punctuation dropped)."""
    return re.findall(r"[a-z]+", prompt.lower())
