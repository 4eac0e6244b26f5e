"""GRPO-family losses on per-action log-probs of the prefix (docs/grpo.md), as pure functions.

Shapes: B samples, A actions per sample = the prefix steps' actions concatenated (Σ_{t≤m} A_t),
with a mask for padded actions (insertion steps have a varying number of gaps).

Per action a of sample i (step t(a)):
    ρ_ia   = exp(logp_ia − old_ia)                                   importance ratio
    s_ia   = min(ρ_ia A_i, clip(ρ_ia, 1 − ε_low, 1 + ε_high) A_i)       clipped surrogate (PPO)
    kl_ia  = e^δ − δ − 1,  δ = ref_ia − logp_ia                          k3 estimator of KL(π‖π_ref)
    term_ia = −s_ia + β kl_ia
Step weights k_t ∝ 1 / A_t^α, scaled so Σ_t k_t A_t = 1 per sample (NextFlow / VAR-RL), make a
1-token scale and a 256-token scale count equally (α = 1) or every action count equally (α = 0).

Loss types differ only in how the terms are summed and normalised over a batch:
    grpo     (1/B) Σ_i Σ_a w_ia term_ia, with k_t from sample i's own valid-action counts
    dr_grpo  (1/B) Σ_i Σ_a k_t(a) term_ia, k from the full (unpadded) action counts: a constant
             normaliser, so padded samples are not up-weighted (Dr. GRPO)
    dapo     Σ_i Σ_a k_t(a) term_ia / Σ_i Σ_a k_t(a) m_ia: one normaliser for the whole batch (DAPO)
    gspo     (1/B) Σ_i [−min(r_i A_i, clip(r_i) A_i) + β Σ_a w_ia kl_ia],
             r_i = exp(Σ_a w_ia (logp_ia − old_ia)): one sequence-level ratio per sample (GSPO)
A micro-batch's loss is its share of the whole batch's loss (`normalizer` = the whole batch's B,
or its total weight for dapo), so gradients accumulated over micro-batches equal one big batch's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "gspo")


def step_weights(actions_per_step: list[int], alpha: float) -> Tensor:
    """k_t ∝ 1 / A_t^α with Σ_t k_t A_t = 1; [m]."""
    counts_T = torch.tensor(actions_per_step, dtype=torch.float64)
    raw_T = counts_T.pow(-alpha)
    return (raw_T / (raw_T * counts_T).sum()).float()


def action_weights(mask_per_step: list[Tensor], alpha: float, *, per_sample: bool) -> Tensor:
    """Weights [B, A] of every prefix action (0 where masked).

    `per_sample=True` (grpo, gspo): k_t from each sample's own valid-action counts A_t (an insertion
    step has fewer real gaps than its padded width), so that Σ_t k_t·A_t = 1 per sample. Otherwise
    (dr_grpo, dapo) k_t comes from the full step widths, one constant for every sample, and masked
    actions just drop out.
    """
    if not per_sample:
        k_T = step_weights([mask.shape[1] for mask in mask_per_step], alpha)
        return torch.cat([mask.float() * k_T[t] for t, mask in enumerate(mask_per_step)], dim=1)
    counts_BT = torch.stack([mask.sum(dim=1) for mask in mask_per_step], dim=1).double()  # [B, m]
    raw_BT = torch.where(counts_BT > 0, counts_BT.clamp_min(1).pow(-alpha), torch.zeros_like(counts_BT))
    k_BT = raw_BT / (raw_BT * counts_BT).sum(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([mask.float() * k_BT[:, t:t + 1].float() for t, mask in enumerate(mask_per_step)], dim=1)


def kl_k3(logp_BA: Tensor, ref_logp_BA: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(π‖π_ref) per action: e^δ − δ − 1 ≥ 0, δ = ref − logp."""
    delta_BA = ref_logp_BA - logp_BA
    return delta_BA.exp() - delta_BA - 1


@dataclass
class LossOutput:
    loss: Tensor
    """Scalar to backpropagate (this micro-batch's share of the batch loss)."""
    stats: dict[str, float]
    """Diagnostics of this micro-batch: clip fractions, ratio, KL, surrogate (weighted means)."""


def policy_loss(logp_BA: Tensor, old_logp_BA: Tensor, advantages_B: Tensor, weights_BA: Tensor, *,
                loss_type: str = "grpo", clip_eps: float = 0.2, clip_eps_high: float | None = None,
                beta: float = 0.0, kl_BA: Tensor | None = None, normalizer: float | None = None) -> LossOutput:
    """The clipped GRPO-family loss of one micro-batch (see the module docstring for each type).

    `weights_BA` comes from `action_weights` (per_sample=True for grpo/gspo). `kl_BA` is the per-action
    KL estimate to the base (`kl_k3(logp_BA, ref_logp_BA)`), needed when beta > 0 and logged whenever
    given. `normalizer`: B of the whole batch (grpo, dr_grpo, gspo) or
    its total action weight (dapo); None uses this micro-batch's own.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    high = clip_eps if clip_eps_high is None else clip_eps_high
    if beta > 0 and kl_BA is None:
        raise ValueError("beta > 0 needs kl_BA, the per-action KL to the base (kl_k3(logp_BA, ref_logp_BA))")
    advantages_B1 = advantages_B[:, None]
    log_ratio_BA = logp_BA - old_logp_BA
    if loss_type == "gspo":
        seq_log_ratio_B1 = (weights_BA * log_ratio_BA).sum(dim=1, keepdim=True)
        ratio, weights = seq_log_ratio_B1.exp(), torch.ones_like(seq_log_ratio_B1)
    else:
        ratio, weights = log_ratio_BA.exp(), weights_BA
    clipped = ratio.clamp(1 - clip_eps, 1 + high)
    surrogate = torch.minimum(ratio * advantages_B1, clipped * advantages_B1)  # [B, A] or [B, 1]
    per_sample_B = -(weights * surrogate).sum(dim=1)
    kl_B = (weights_BA * kl_BA).sum(dim=1) if kl_BA is not None else torch.zeros_like(per_sample_B)
    per_sample_B = per_sample_B + beta * kl_B
    if normalizer is None:
        normalizer = float(weights_BA.sum()) if loss_type == "dapo" else float(advantages_B.shape[0])
    loss = per_sample_B.sum() / normalizer
    with torch.no_grad():
        stats = _stats(ratio, weights, advantages_B1, clip_eps, high, kl_B, log_ratio_BA, weights_BA)
    return LossOutput(loss, stats)


def _stats(ratio, weights, advantages_B1, low, high, kl_B, log_ratio_BA, weights_BA) -> dict[str, float]:
    """Weighted means over the micro-batch: which ratios the clip cut off, and by how much things moved."""
    total = weights.sum().clamp_min(1e-12)
    low_clipped = (ratio < 1 - low) & (advantages_B1 < 0)  # only these clips remove gradient
    high_clipped = (ratio > 1 + high) & (advantages_B1 > 0)
    return {
        "clip_fraction_low": float((weights * low_clipped).sum() / total),
        "clip_fraction_high": float((weights * high_clipped).sum() / total),
        "ratio_mean": float((weights * ratio).sum() / total),
        "max_abs_logratio": float(log_ratio_BA.abs().max()) if log_ratio_BA.numel() else 0.0,
        "kl": float(kl_B.mean()),
        # k3 estimate of KL(π_old‖π) from actions drawn by π_old: e^r − r − 1, r = logp − old.
        "kl_to_rollout_policy": float((weights_BA * (log_ratio_BA.exp() - log_ratio_BA - 1)).sum()
                                      / weights_BA.sum().clamp_min(1e-12)),
    }
