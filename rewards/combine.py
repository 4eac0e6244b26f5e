"""Combining several rewards into the one scalar per sample that GRPO's advantages need (docs/grpo.md).

Pure functions on [B] float tensors in which NaN marks "no value" (the reward returned None, or a
bad output was skipped with `on_error: skip`).

NaN policy (the same as TRL's GRPOTrainer, so a TRL user's multi-task setups behave as before):

- a NaN counts as a contribution of 0 to the weighted sum: `None` means "this reward does not apply
  to this sample" (a math reward on a code prompt), so the sample is judged by the rewards that do
  apply. Under `normalize_then_sum` 0 is exactly the standardised batch mean, i.e. neutral.
- a sample for which *every* trained reward (nonzero weight) is NaN has nothing to be judged by: its
  total is NaN, which the advantages turn into 0 (docs/grpo.md), so it neither helps nor hurts.

Weight-0 rewards are scored and logged by the caller but never enter the total, and do not count
as "applying" to a sample either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

COMBINE_MODES = ("sum_then_normalize", "normalize_then_sum")
DEFAULT_EPS = 1e-4
"""ε of (x − mean) / (std + ε); the same default as grpo.advantage_eps and TRL."""


def nan_std(values_B: torch.Tensor) -> torch.Tensor:
    """Sample (Bessel-corrected) std of the non-NaN entries, as torch.std and TRL's nanstd compute it.

    Fewer than two valid values have no spread to measure: the std is 0 (not NaN), so a lone
    value standardises to 0 instead of poisoning the sum.
    """
    valid = values_B[~torch.isnan(values_B)]
    if valid.numel() < 2:
        return values_B.new_zeros(())
    return valid.std()


def standardize(values_B: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """(x − mean) / (std + ε) over the batch, NaNs left out of mean and std and kept NaN. [B] -> [B]"""
    valid = ~torch.isnan(values_B)
    if not valid.any():
        return values_B.clone()
    mean = values_B[valid].mean()
    return (values_B - mean) / (nan_std(values_B) + eps)


def combine(
    per_reward: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    mode: str = "sum_then_normalize",
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """The weighted total [B] of rewards `label -> [B]` (see the module docstring for NaNs).

    `sum_then_normalize` sums the raw rewards: the group advantages do the normalising later, so a
    reward's scale is its importance. `normalize_then_sum` first standardises each reward over the
    batch, so rewards on different scales (CLIP ≈ 0.3, aesthetics ≈ 5) weigh in only by `weights`.
    TRL standardises per group in this mode; here it is per batch, because the reward worker does
    not know the groups — with one prompt per batch the two agree.
    """
    if mode not in COMBINE_MODES:
        raise ValueError(f"combine mode must be one of {COMBINE_MODES}, got {mode!r}")
    trained = [label for label in per_reward if weights[label] != 0]
    if not trained:
        raise ValueError("no reward has a nonzero weight: nothing to combine (weights 0 are only logged)")
    batch = next(iter(per_reward.values())).shape[0]
    total_B = torch.zeros(batch, dtype=torch.float32)
    applies_B = torch.zeros(batch, dtype=torch.bool)  # some trained reward has a value here
    for label in trained:
        values_B = per_reward[label].float()
        if mode == "normalize_then_sum":
            values_B = standardize(values_B, eps)
        valid_B = ~torch.isnan(values_B)
        total_B += weights[label] * torch.where(valid_B, values_B, torch.zeros_like(values_B))
        applies_B |= valid_B
    return torch.where(applies_B, total_B, torch.full_like(total_B, math.nan))


def reward_stats(values_B: torch.Tensor) -> dict[str, float]:
    """mean, std, min, max over the non-NaN entries, with `count` (valid) and `nan_count`.

    With no valid entry mean/min/max are NaN (there is nothing to summarise; the metrics logger
    writes them as null); std is the sample std of `nan_std` (0 below two values).
    """
    valid = values_B[~torch.isnan(values_B)].double()
    count = int(valid.numel())
    nan = math.nan
    return {
        "mean": float(valid.mean()) if count else nan,
        "std": float(nan_std(valid)) if count else nan,
        "min": float(valid.min()) if count else nan,
        "max": float(valid.max()) if count else nan,
        "count": count,
        "nan_count": int(values_B.numel()) - count,
    }

