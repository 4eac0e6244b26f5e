"""One insertion step of the Edit Flow sampler as pure functions (docs/insertion.md).

At step s (0-based) of T the process is at t = s/T and advances by Δt = 1/T. For every gap i of
the current text, in parallel:

    p_i = (1 − π_i) · min(1, Δt · w_t · λ_i),     w_t = κ̇_t / (1 − κ_t) = 1 / (1 − t)   (κ_t = t)

the gap fires (inserts one token) with probability p_i, and a fired gap's token is drawn from Q_i.
docs/insertion.md writes firing as the AND of Bernoulli(1 − π_i) and Bernoulli(min(1, Δt·w_t·λ_i)); the
two are independent, so the AND is one Bernoulli(p_i), which is both how we draw it (one uniform
per gap) and how we score it. The exact log-probability of a gap's outcome is

    b_i · (log p_i + log Q_i(a_i)) + (1 − b_i) · log(1 − p_i)

with p_i clamped to [ε, 1 − ε] by the *same* function for sampling and scoring, so every outcome
the sampler can produce has a finite log-probability and the two always agree.

Guidance (optional, weight w = 1 + cfg_scale, so cfg_scale = 0 is the conditional model alone):
    log λ = w·log λ_c + (1 − w)·log λ_u          (λ = λ_c^w · λ_u^(1−w), docs/insertion.md)
    ℓ_Q   = w·ℓ_c + (1 − w)·ℓ_u                   (Q ∝ Q_c^w · Q_u^(1−w): softmax of mixed logits)
    z     = w·z_c + (1 − w)·z_u                   (our choice for π: docs/insertion.md leaves it open; mixing
                                                   the logit keeps π in (0, 1) and is the same
                                                   geometric rule applied to the odds π / (1 − π))
The temperature divides the mixed token logits only (π and λ are not tempered).

Length cap. A text never grows past max_len: with n tokens, only gaps g < max_len − n may fire
("open" gaps). This is decided from the pre-step text alone, so sampling and scoring close the same
gaps; closed gaps are not actions (masked, log-prob exactly 0).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rlalign.policies.insertion.model import NUM_SPECIAL, PAD, GapOutputs
from rlalign.policies.shared import draw, require

FIRE_EPS = 1e-6
"""ε of the clamp p ∈ [ε, 1 − ε] (float32 represents 1 − 1e-6; it keeps log p and log(1 − p) finite)."""


class StepDistribution(NamedTuple):
    """The distribution of one insertion step over every gap of a batch of texts."""

    log_fire_BI: Tensor  # [B, I] log p_i (clamped)
    log_skip_BI: Tensor  # [B, I] log(1 − p_i)
    token_logp_BIV: Tensor  # [B, I, V] log Q_i, −inf on special tokens
    open_BI: Tensor  # [B, I] bool: a real gap that may fire under the length cap

    def select(self, rows: slice, num_gaps: int) -> StepDistribution:
        """Rows `rows` and the first `num_gaps` gaps."""
        return StepDistribution(*(x[rows, :num_gaps] for x in self))


def step_width(step_index: int, max_len: int) -> int:
    """The longest text possible before step `step_index` (0-based): one step at most turns n tokens
    into 2n + 1, so min(max_len, 2^s − 1). Step s therefore has A_s = step_width + 1 gap slots, a
    width fixed by (s, max_len) alone, so rollouts of different workers concatenate."""
    return min(max_len, 2**step_index - 1)


def guide(cond: GapOutputs, uncond: GapOutputs | None, weight: float) -> GapOutputs:
    """CFG mix w·cond + (1 − w)·uncond of all three heads (see the module docstring); no-op without uncond."""
    if uncond is None:
        return cond
    return GapOutputs(*(weight * c + (1 - weight) * u for c, u in zip(cond, uncond)))


def insertable_log_probs(token_logits_BIV: Tensor, temperature: float = 1.0) -> Tensor:
    """log Q [B, I, V] in float32: logits / temperature, specials (pad, unk, BOS) at −inf."""
    logits_BIV = token_logits_BIV.float() / temperature
    special_V = torch.arange(logits_BIV.shape[-1], device=logits_BIV.device) < NUM_SPECIAL
    return torch.log_softmax(logits_BIV.masked_fill(special_V, float("-inf")), dim=-1)


def rate_factors(t_B: Tensor, dt: float) -> Tensor:
    """Δt · w_t = Δt / (1 − t) per row [B] (κ_t = t); t must be in [0, 1)."""
    if (t_B < 0).any() or (t_B >= 1).any():
        raise ValueError(f"insertion steps need 0 ≤ t < 1 (w_t = 1/(1 − t) diverges at 1), got {t_B.tolist()[:4]}")
    return dt / (1 - t_B.double())


def fire_log_probs(zero_logit_BI: Tensor, log_rate_BI: Tensor, factor_B: Tensor,
                   eps: float = FIRE_EPS) -> tuple[Tensor, Tensor]:
    """(log p, log(1 − p)) [B, I] with p = (1 − σ(z))·min(1, factor·λ) clamped to [ε, 1 − ε].

    log(1 − σ(z)) = logsigmoid(−z) and min(1, ·) in log space stay finite for any z and λ;
    log(1 − p) = log1p(−p) is accurate for small p.
    """
    log_factor_B1 = factor_B.log().float()[:, None]
    log_fire_BI = F.logsigmoid(-zero_logit_BI.float()) + (log_factor_B1 + log_rate_BI.float()).clamp_max(0.0)
    log_fire_BI = log_fire_BI.clamp(min=math.log(eps), max=math.log1p(-eps))
    return log_fire_BI, torch.log1p(-log_fire_BI.exp())


def open_gaps(lengths_B: Tensor, num_gaps: int, max_len: int) -> Tensor:
    """bool [B, I]: gap g is real (g ≤ n) and under the cap (g < max_len − n)."""
    gaps_I = torch.arange(num_gaps, device=lengths_B.device)
    lengths_B1 = lengths_B[:, None]
    return (gaps_I <= lengths_B1) & (gaps_I < max_len - lengths_B1)


def step_distribution(outputs: GapOutputs, *, t_B: Tensor, dt: float, lengths_B: Tensor, max_len: int,
                      temperature: float = 1.0, eps: float = FIRE_EPS) -> StepDistribution:
    """The (already guided) heads → the step's distribution (docs/insertion.md)."""
    log_fire_BI, log_skip_BI = fire_log_probs(outputs.zero_logit_BI, outputs.log_rate_BI,
                                              rate_factors(t_B, dt).to(outputs.zero_logit_BI.device), eps)
    token_logp_BIV = insertable_log_probs(outputs.token_logits_BIV, temperature)
    open_BI = open_gaps(lengths_B.to(log_fire_BI.device), log_fire_BI.shape[1], max_len)
    return StepDistribution(log_fire_BI, log_skip_BI, token_logp_BIV, open_BI)


def sample_step(dist: StepDistribution, uniform_fire_BI: Tensor, uniform_token_BI: Tensor) -> tuple[Tensor, Tensor]:
    """Fired flags (bool [B, I]) and inserted tokens (long [B, I], PAD where not fired).

    A gap fires iff u < p (one uniform: the AND of the two Bernoullis by its marginal) and is open;
    its token is drawn from Q by inverse CDF with a second uniform.
    """
    device = dist.log_fire_BI.device
    fired_BI = (uniform_fire_BI.to(device) < dist.log_fire_BI.exp()) & dist.open_BI
    drawn_BI = draw(dist.token_logp_BIV, uniform_token_BI.to(device))
    return fired_BI, torch.where(fired_BI, drawn_BI, torch.full_like(drawn_BI, PAD))


def step_log_prob(dist: StepDistribution, fired_BI: Tensor, tokens_BI: Tensor) -> Tensor:
    """log-prob [B, I] of each gap's outcome; exactly 0 on closed (padded or capped) gaps."""
    device = dist.log_fire_BI.device
    fired_BI, tokens_BI = fired_BI.to(device), tokens_BI.to(device)
    # Unfired gaps hold PAD (log Q = −inf); gather a real token there so no −inf enters the graph.
    safe_BI = torch.where(fired_BI, tokens_BI, torch.full_like(tokens_BI, NUM_SPECIAL))
    token_logp_BI = dist.token_logp_BIV.gather(-1, safe_BI[..., None]).squeeze(-1)
    logp_BI = torch.where(fired_BI, dist.log_fire_BI + token_logp_BI, dist.log_skip_BI)
    return torch.where(dist.open_BI, logp_BI, torch.zeros_like(logp_BI))


def apply_insertions(tokens_BN: Tensor, lengths_B: Tensor, fired_BI: Tensor, inserted_BI: Tensor,
                     max_len: int) -> tuple[Tensor, Tensor]:
    """Insert every fired gap's token at once; positions come from the pre-step text.

    Gap g sits before old token g. After the step, old token j moves to j + (#fired gaps ≤ j) and the
    token inserted at gap g lands at g + (#fired gaps < g). Returns tokens [B, max_len] and lengths [B].
    """
    batch, num_tokens = tokens_BN.shape
    device = tokens_BN.device
    fired_BI, inserted_BI, lengths_B = fired_BI.to(device), inserted_BI.to(device), lengths_B.to(device)
    gaps_I = torch.arange(num_tokens + 1, device=device)
    if fired_BI.shape[1] != num_tokens + 1:
        raise ValueError(f"fired gaps must be [B, N + 1] = [B, {num_tokens + 1}], got {tuple(fired_BI.shape)}")
    require(~(fired_BI & (gaps_I > lengths_B[:, None])).any(),
            lambda: "fired gaps must lie within each text (gap g ≤ length)")
    new_lengths_B = lengths_B + fired_BI.sum(1)
    require((new_lengths_B <= max_len).all(), lambda: f"insertions would grow a text to {int(new_lengths_B.max())} > "
            f"max_len={max_len} tokens; only open gaps (sampler.open_gaps) may fire")
    fired_before_BI = fired_BI.long().cumsum(1)  # fired gaps ≤ g
    dump = max_len  # one spare column takes the writes of padding, then is cut off
    out_BL = torch.zeros(batch, max_len + 1, dtype=torch.long, device=device)
    real_BN = gaps_I[:num_tokens] < lengths_B[:, None]
    old_to_BN = torch.where(real_BN, gaps_I[:num_tokens] + fired_before_BI[:, :num_tokens], dump)
    out_BL.scatter_(1, old_to_BN, torch.where(real_BN, tokens_BN, 0))
    new_to_BI = torch.where(fired_BI, gaps_I + fired_before_BI - fired_BI.long(), dump)
    out_BL.scatter_(1, new_to_BI, torch.where(fired_BI, inserted_BI, 0))
    return out_BL[:, :max_len], new_lengths_B
