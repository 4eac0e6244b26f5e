"""Group-relative advantages (docs/grpo.md), as pure functions.

A_i = (R_i − mean_g) / (std_g + ε) for the samples i of group g (`scale="group"`, GRPO), with the
batch's std instead (`"batch"`), or without dividing (`"none"`, Dr. GRPO). Two rules keep this
safe: a group whose rewards are all equal carries no signal and gets A = 0 (never 0/0 = NaN), and
a NaN reward (a `None` from a reward function, or a skipped bad output) is left out of every mean
and std and its sample gets A = 0, i.e. no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor


def group_advantages(rewards_B: Tensor, group_ids_B: Tensor, *, scale: str = "group", eps: float = 1e-4,
                     std: str = "sample") -> Tensor:
    """Advantages [B] from rewards [B] (NaN allowed) and group ids [B]; `std` is "sample" (divides
    by n − 1, TRL's convention) or "population" (by n)."""
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be group, batch or none, got {scale!r}")
    if std not in ("sample", "population"):
        raise ValueError(f"std must be sample or population, got {std!r}")
    unbiased = std == "sample"
    rewards_B = rewards_B.double()  # means of many similar numbers: keep the subtraction exact
    valid_B = ~torch.isnan(rewards_B)
    advantages_B = torch.zeros_like(rewards_B)
    group_std = {}
    for group in group_ids_B.unique().tolist():
        members_B = (group_ids_B == group) & valid_B
        values = rewards_B[members_B]
        if values.numel() < 2 or bool(values.max() == values.min()):
            continue  # one valid sample, or all equal: nothing to compare, A = 0 exactly
        advantages_B[members_B] = values - values.mean()
        group_std[group] = values.std(unbiased=unbiased)
    if scale == "group":
        for group, sigma in group_std.items():
            members_B = (group_ids_B == group) & valid_B
            advantages_B[members_B] = advantages_B[members_B] / (sigma + eps)
    elif scale == "batch":
        advantages_B = advantages_B / (rewards_B[valid_B].std(unbiased=unbiased) + eps) if valid_B.sum() > 1 else advantages_B
    return advantages_B.float()


def middle_value(rewards_BK: Tensor, eta: float) -> Tensor:
    """Each prefix's reward [B] from the rewards [B, K] of its K frozen-suffix completions (docs/grpo.md).

    V = η · log( (1/K) Σ_k exp(R_k / η) ), VAR-RL's middle value: a soft maximum that runs from the
    mean (η → ∞) to the best completion (η → 0), so a prefix is credited with what the frozen suffix
    can make of it rather than with one lucky or unlucky draw. NaN rewards are left out of the mean;
    a prefix whose K rewards are all NaN stays NaN (its advantage is then 0).
    """
    if eta <= 0:
        raise ValueError(f"middle_value_eta must be > 0, got {eta}")
    scaled_BK = rewards_BK.double() / eta
    valid_BK = ~torch.isnan(scaled_BK)
    count_B = valid_BK.sum(dim=1)
    lse_B = torch.logsumexp(scaled_BK.masked_fill(~valid_BK, -torch.inf), dim=1)
    value_B = eta * (lse_B - count_B.clamp_min(1).double().log())
    return torch.where(count_B > 0, value_B, torch.nan).float()
