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

Loss types differ in the term and in how terms are summed and normalised over a batch (TRL's
names; docs/grpo.md derives each and maps them to TRL's GRPOConfig):
    grpo     (1/B) Σ_i Σ_a w_ia term_ia, with k_t from sample i's own valid-action counts
    dr_grpo  (1/B) Σ_i Σ_a k_t(a) term_ia, k from the full (unpadded) action counts: a constant
             normaliser, so padded samples are not up-weighted (Dr. GRPO); with
             grpo.dr_grpo_length = L every action weighs 1/L, TRL's max_completion_length
    dapo     Σ_i Σ_a k_t(a) term_ia / Σ_i Σ_a k_t(a) m_ia: one normaliser for the whole batch (DAPO)
    bnpo     as dapo, but each micro-batch divides by its own action weight (TRL's bnpo)
    gspo     (1/B) Σ_i [−min(r_i A_i, clip(r_i) A_i) + β Σ_a w_ia kl_ia],
             r_i = exp(Σ_a w_ia (logp_ia − old_ia)): one sequence-level ratio per sample (GSPO)
    cispo    term_ia = −sg(min(ρ_ia, ε_max)) A_i logp_ia, normalised as dapo (CISPO, MiniMax-M1):
             the ratio is capped and stopped, never clipped away, so every action keeps a gradient
    sapo     term_ia = −σ(τ (ρ_ia − 1)) (4/τ) A_i with τ = τ_pos if A_i > 0 else τ_neg, normalised
             as grpo (SAPO): a soft gate in place of the hard clip
With grpo.kl_bias_correction (TRL's use_bias_correction_kl) the KL term is ρ_ia kl_ia.
A micro-batch's loss is its share of the whole batch's loss (`normalizer` = the whole batch's B,
or its total weight for dapo and cispo), so gradients accumulated over micro-batches equal one big
batch's. The logged statistics are means over valid actions (over samples for gspo), as TRL's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "gspo", "bnpo", "cispo", "sapo")
PER_SAMPLE = ("grpo", "gspo", "sapo")
"""Loss types whose step weights are renormalised per sample (each sample's terms average to one)."""
TOKEN_NORMALISED = ("dapo", "bnpo", "cispo")
"""Loss types divided by a total action weight instead of the number of samples."""


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
    """Diagnostics of this micro-batch, means over its valid actions as TRL logs them (module docstring)."""


def policy_loss(logp_BA: Tensor, old_logp_BA: Tensor, advantages_B: Tensor, weights_BA: Tensor, *,
                loss_type: str = "grpo", clip_eps: float = 0.2, clip_eps_high: float | None = None,
                beta: float = 0.0, kl_BA: Tensor | None = None, kl_bias_correction: bool = False,
                sapo_temperatures: tuple[float, float] = (1.0, 1.05), normalizer: float | None = None) -> LossOutput:
    """The GRPO-family loss of one micro-batch (see the module docstring for each type).

    `weights_BA` comes from `action_weights` (per_sample=True for grpo, gspo, sapo). `kl_BA` is the
    per-action KL estimate to the base (`kl_k3(logp_BA, ref_logp_BA)`), needed when beta > 0 and
    logged whenever given; `kl_bias_correction` multiplies it by the importance ratio (TRL's
    `use_bias_correction_kl`). `sapo_temperatures`: (τ for A > 0, τ for A ≤ 0). `normalizer`: this
    micro-batch's share of the batch (module docstring); None uses the micro-batch alone.
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
    term = surrogate_term(loss_type, ratio, advantages_B1, logp_BA, clip_eps, high, sapo_temperatures)
    per_sample_B = (weights * term).sum(dim=1)
    if kl_BA is not None and kl_bias_correction:
        kl_BA = kl_BA * ratio  # [B, A]: the ratio corrects for actions drawn by the rollout policy
    kl_B = (weights_BA * kl_BA).sum(dim=1) if kl_BA is not None else torch.zeros_like(per_sample_B)
    per_sample_B = per_sample_B + beta * kl_B
    if normalizer is None:
        normalizer = float(weights_BA.sum()) if loss_type in TOKEN_NORMALISED else float(advantages_B.shape[0])
    loss = per_sample_B.sum() / normalizer
    with torch.no_grad():
        stats = _stats(loss_type, ratio, advantages_B1, clip_eps, high, kl_BA, log_ratio_BA, weights_BA > 0)
    return LossOutput(loss, stats)


def surrogate_term(loss_type: str, ratio: Tensor, advantages_B1: Tensor, logp_BA: Tensor, low: float, high: float,
                   sapo_temperatures: tuple[float, float]) -> Tensor:
    """−(the objective's term) per action [B, A], or per sample [B, 1] for gspo (module docstring)."""
    if loss_type == "cispo":  # REINFORCE with a stopped, capped ratio: every token keeps its gradient
        return -ratio.clamp(max=high).detach() * advantages_B1 * logp_BA
    if loss_type == "sapo":  # a sigmoid gate instead of the hard clip; slope 1 at ρ = 1
        positive, negative = sapo_temperatures
        tau = torch.where(advantages_B1 > 0, positive, negative)
        return -torch.sigmoid(tau * (ratio - 1)) * 4 / tau * advantages_B1
    clipped = ratio.clamp(1 - low, 1 + high)
    return -torch.minimum(ratio * advantages_B1, clipped * advantages_B1)


def _stats(loss_type, ratio, advantages_B1, low, high, kl_BA, log_ratio_BA, mask_BA) -> dict[str, float]:
    """Means over the valid actions (over samples for gspo's one ratio each), as TRL logs them: which
    ratios the clip cut off, the mean ratio, the KL to the base and to the rollout policy."""
    per_action = ratio.shape[1] == mask_BA.shape[1]
    where = mask_BA if per_action else torch.ones_like(ratio, dtype=torch.bool)

    def mean(values: Tensor, valid: Tensor) -> float:
        return float((values * valid).sum() / valid.sum().clamp_min(1))

    if loss_type == "cispo":  # only the cap can cut a gradient: TRL's cispo_clip_ratio
        low_clipped, high_clipped = torch.zeros_like(where), (ratio > high) & (advantages_B1 > 0)
    elif loss_type == "sapo":  # no hard clip
        low_clipped = high_clipped = torch.zeros_like(where)
    else:
        low_clipped = (ratio < 1 - low) & (advantages_B1 < 0)  # only these clips remove gradient
        high_clipped = (ratio > 1 + high) & (advantages_B1 > 0)
    return {
        "clip_fraction_low": mean(low_clipped.float(), where),
        "clip_fraction_high": mean(high_clipped.float(), where),
        "ratio_mean": mean(ratio, where),
        "max_abs_logratio": float(log_ratio_BA.abs().max()) if log_ratio_BA.numel() else 0.0,
        "kl": mean(kl_BA, mask_BA) if kl_BA is not None else 0.0,
        # k3 estimate of KL(π_old‖π) from actions drawn by π_old: e^r − r − 1, r = logp − old.
        "kl_to_rollout_policy": mean(log_ratio_BA.exp() - log_ratio_BA - 1, mask_BA),
    }
