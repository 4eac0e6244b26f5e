"""Small custom rewards that show the TRL convention; use them as `rlalign.rewards.examples:NAME` in a config.

A custom reward is any function `fn(prompts, completions, **kwargs) -> list[float | None]`.
"""

from __future__ import annotations

import torch


def saturation(prompts: list, completions: torch.Tensor, **_) -> list[float]:
    """Mean HSV saturation of each image [B, 3, H, W] in [0, 1], over its non-black pixels.

    Saturation is (max − min) / max per pixel; black pixels (max < 0.05) are left out so the
    background does not count. An all-black image scores 0.
    """
    high, low = completions.amax(dim=1), completions.amin(dim=1)  # [B, H, W]
    lit = high > 0.05
    per_pixel = torch.where(lit, (high - low) / high.clamp_min(1e-6), torch.zeros_like(high))
    counts = lit.flatten(1).sum(dim=1).clamp_min(1)
    return (per_pixel.flatten(1).sum(dim=1) / counts).tolist()


def caption_grammar(prompts: list, completions: list[str], **_) -> list[float]:
    """1.0 for a caption the Shapes grammar can read, else 0.0: a text-only reward (it never looks
    at the image), the kind a captioning run adds to keep its outputs well-formed."""
    from rlalign.shapes import PromptParseError, parse_prompt

    def parses(caption: str) -> bool:
        try:
            parse_prompt(caption)
        except PromptParseError:
            return False
        return True

    return [float(parses(caption)) for caption in completions]


def exact_match(prompts: list, completions: list[str], solution: list[str], **_) -> list[float]:
    """1.0 where the completion equals its row's `solution` column (surrounding spaces ignored): the
    simplest reward of a dataset in TRL's convention (`jsonl:PATH` rows with a "solution")."""
    return [float(text.strip() == str(answer).strip()) for text, answer in zip(completions, solution)]
