"""One τ-leap step of an Edit Flow sampler as pure functions (docs/edit_flow.md).

A step at time t with leap τ scales the model's three rates by the schedule weight
w(t) = κ'(t) / (1 − κ(t) + 1e-6) (dllm's LinearKappaScheduler: κ(t) = t, so w = 1/(1 − t + 1e-6)).
For every position i of the text, independently:

    p_edit_i = clamp((del_i + sub_i) · w · τ, 0, 1 − 1e-6)     a deletion or substitution fires
    d_i      = del_i / (del_i + sub_i + 1e-8)                  given that, it is a deletion; else a
                                                               substitution with token ~ softmax(sub_logits_i / T)
    p_ins_i  = clamp(ins_i · w · τ, 0, 1 − 1e-6)               independently, a token ~ softmax(ins_logits_i / T)
                                                               is inserted right after position i

so the exact log-probability of what happened at one position and at its gap is

    position:  keep  log(1 − p_edit)  |  delete  log p_edit + log d  |  substitute a  log p_edit + log(1 − d) + log q_sub(a)
    gap:       none  log(1 − p_ins)   |  insert a  log p_ins + log q_ins(a)

and a step's log-prob is their sum over the open positions and gaps. The probabilities are built by
one function (`step_distribution`) for sampling and scoring alike, with the same clamps, and the
sampler fires iff u < p with the very p whose log is scored, so the two always agree.

Protection (dllm's default): prompt positions are never edited, and insertions are allowed only
after the prompt's last token and later. The insertion-only mode closes every position as well.
Length cap (ours: batches have a fixed width W = max_length): a step in which every open gap could
insert without the text outgrowing W keeps its gaps open; otherwise the text inserts nothing in that
step. Decided from the pre-step text, identically when sampling and scoring; it never binds while
2n − (prompt length) + 1 ≤ W for every text of n tokens, which the built-in config's W guarantees.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from rlalign.policies.shared import draw, require

PROB_CAP = 1.0 - 1e-6
"""Upper clamp of both firing probabilities (dllm's)."""
SPLIT_EPS = 1e-8
"""The ε in d = del / (del + sub + ε) (dllm's)."""
WEIGHT_EPS = 1e-6
"""The ε in w(t) = κ'(t) / (1 − κ(t) + ε) (dllm's)."""
STOP_BEFORE = 1.0 - 1e-3
"""The sampler steps while t < 1 − 1e-3 (dllm's)."""

KEEP, DELETE, SUBSTITUTE = 0, 1, 2
"""What happened at a position."""


# -------------------------------------------------------------------------------------------------
# The schedule
# -------------------------------------------------------------------------------------------------

def step_times(tau: float) -> list[float]:
    """t of every τ-leap step: 0, τ, 2τ, … (accumulated in float64, as a Python loop does) while t < 1 − 1e-3."""
    if not 0 < tau <= 1:
        raise ValueError(f"the τ-leap step must be in (0, 1], got tau={tau}")
    times, t = [], 0.0
    while t < STOP_BEFORE:
        times.append(t)
        t += tau
    return times


def schedule_weight(t: float, kappa: str = "linear") -> Tensor:
    """w(t) = κ'(t) / (1 − κ(t) + 1e-6) as a float32 scalar, computed in float32 as dllm's schedulers do."""
    t32 = torch.tensor(t, dtype=torch.float32)
    if kappa == "linear":  # dllm writes it as the cubic with a = −1, b = 0, whose terms vanish exactly
        value, derivative = t32, torch.ones((), dtype=torch.float32)
    elif kappa == "cosine":
        value = 1.0 - torch.cos(0.5 * math.pi * t32)
        derivative = 0.5 * math.pi * torch.sin(0.5 * math.pi * t32)
    else:
        raise ValueError(f"unknown κ schedule {kappa!r}; use linear or cosine")
    return derivative / (1 - value + WEIGHT_EPS)


# -------------------------------------------------------------------------------------------------
# Which positions and gaps are actions
# -------------------------------------------------------------------------------------------------

def open_actions(lengths_B: Tensor, prompt_lengths_B: Tensor, width: int, *, edit_prompt: bool = False,
                 insertion_only: bool = False) -> tuple[Tensor, Tensor]:
    """(positions, gaps) bool [B, W]: which positions may be deleted/substituted and after which
    positions a token may be inserted, from the pre-step text alone (module docstring)."""
    index_W = torch.arange(width, device=lengths_B.device)
    lengths_B1, prompt_B1 = lengths_B[:, None], prompt_lengths_B.to(lengths_B.device)[:, None]
    real_BW = index_W < lengths_B1
    first_position_B1 = torch.zeros_like(prompt_B1) if edit_prompt else prompt_B1
    positions_BW = real_BW & (index_W >= first_position_B1) & (not insertion_only)
    first_gap_B1 = torch.zeros_like(prompt_B1) if edit_prompt else (prompt_B1 - 1).clamp_min(0)
    gaps_BW = real_BW & (index_W >= first_gap_B1)
    fits_B1 = gaps_BW.sum(1, keepdim=True) <= width - lengths_B1  # even if every open gap inserted
    return positions_BW, gaps_BW & fits_B1


# -------------------------------------------------------------------------------------------------
# One step's distribution, sampling, scoring
# -------------------------------------------------------------------------------------------------

class StepDistribution(NamedTuple):
    """Everything one τ-leap step draws from, for a batch of texts [B, W]."""

    edit_prob_BW: Tensor  # p_edit: a deletion or substitution fires at position i (0 where closed)
    delete_share_BW: Tensor  # d: given a firing, the probability it is a deletion
    sub_logp_BWV: Tensor  # log q_sub: the substitution token's distribution (tempered)
    insert_prob_BW: Tensor  # p_ins: a token is inserted after position i (0 where closed)
    ins_logp_BWV: Tensor  # log q_ins: the inserted token's distribution (tempered)
    positions_BW: Tensor  # bool: position i is an action
    gaps_BW: Tensor  # bool: the gap after position i is an action


def step_distribution(outputs: dict[str, Tensor], *, weight: Tensor, tau: float, positions_BW: Tensor,
                      gaps_BW: Tensor, temperature: float = 1.0) -> StepDistribution:
    """dllm's model outputs (three rates [B, W], two logit tensors [B, W, V]) → the step's distribution."""
    scale = weight.to(outputs["sub_rate_hat"].device)
    sub_BW, del_BW, ins_BW = (outputs[k].float() for k in ("sub_rate_hat", "del_rate_hat", "ins_rate_hat"))
    edit_prob_BW = ((del_BW + sub_BW) * scale * tau).clamp(0.0, PROB_CAP) * positions_BW
    insert_prob_BW = (ins_BW * scale * tau).clamp(0.0, PROB_CAP) * gaps_BW
    delete_share_BW = del_BW / (del_BW + sub_BW + SPLIT_EPS)
    sub_logp_BWV = torch.log_softmax(outputs["sub_logits"].float() / temperature, dim=-1)
    ins_logp_BWV = torch.log_softmax(outputs["ins_logits"].float() / temperature, dim=-1)
    return StepDistribution(edit_prob_BW, delete_share_BW, sub_logp_BWV, insert_prob_BW, ins_logp_BWV,
                            positions_BW, gaps_BW)


class StepActions(NamedTuple):
    """What one τ-leap step did to a batch of texts [B, W]."""

    position_op_BW: Tensor  # long: KEEP, DELETE or SUBSTITUTE (KEEP where closed)
    sub_token_BW: Tensor  # long: the substituted token (0 where none)
    inserted_BW: Tensor  # bool: a token was inserted after position i
    ins_token_BW: Tensor  # long: the inserted token (0 where none)


def sample_step(dist: StepDistribution, uniforms_5BW: Tensor) -> StepActions:
    """Draw one step with five uniforms per position (edit fires, deletion-or-substitution, substitution
    token, insertion fires, inserted token): u < p fires, tokens by inverse CDF."""
    device = dist.edit_prob_BW.device
    u_edit, u_kind, u_sub, u_ins, u_tok = uniforms_5BW.to(device)
    fired_BW = u_edit < dist.edit_prob_BW
    delete_BW = fired_BW & (u_kind < dist.delete_share_BW)
    substitute_BW = fired_BW & ~delete_BW
    position_op_BW = torch.where(delete_BW, DELETE, torch.where(substitute_BW, SUBSTITUTE, KEEP))
    sub_token_BW = torch.where(substitute_BW, draw(dist.sub_logp_BWV, u_sub), 0)
    inserted_BW = u_ins < dist.insert_prob_BW
    ins_token_BW = torch.where(inserted_BW, draw(dist.ins_logp_BWV, u_tok), 0)
    return StepActions(position_op_BW, sub_token_BW, inserted_BW, ins_token_BW)


def _safe_log(x: Tensor, used: Tensor) -> Tensor:
    """log x where `used`, 0 elsewhere, without ever evaluating log 0 (whose gradient would be NaN
    even in a branch torch.where discards)."""
    return torch.where(used, torch.where(used, x, 1.0).log(), 0.0)


def _safe_log1m(x: Tensor, used: Tensor) -> Tensor:
    """log(1 − x) where `used`, 0 elsewhere, never evaluating log 0 (see _safe_log)."""
    return torch.where(used, torch.log1p(-torch.where(used, x, 0.0)), 0.0)


def step_log_prob(dist: StepDistribution, actions: StepActions) -> Tensor:
    """Log-prob [B, 2W] of every action: positions first, then gaps; exactly 0 where closed."""
    device = dist.edit_prob_BW.device
    op_BW = actions.position_op_BW.to(device)
    delete_BW, substitute_BW = op_BW == DELETE, op_BW == SUBSTITUTE
    fired_BW = delete_BW | substitute_BW
    sub_tok_BW1 = actions.sub_token_BW.to(device)[..., None]
    position_BW = torch.where(
        fired_BW,
        _safe_log(dist.edit_prob_BW, fired_BW)
        + _safe_log(dist.delete_share_BW, delete_BW) + _safe_log1m(dist.delete_share_BW, substitute_BW)
        + torch.where(substitute_BW, dist.sub_logp_BWV.gather(-1, sub_tok_BW1).squeeze(-1), 0.0),
        torch.log1p(-dist.edit_prob_BW),
    )
    inserted_BW = actions.inserted_BW.to(device)
    ins_tok_BW1 = actions.ins_token_BW.to(device)[..., None]
    gap_BW = torch.where(
        inserted_BW,
        _safe_log(dist.insert_prob_BW, inserted_BW) + dist.ins_logp_BWV.gather(-1, ins_tok_BW1).squeeze(-1),
        torch.log1p(-dist.insert_prob_BW),
    )
    position_BW = torch.where(dist.positions_BW, position_BW, 0.0)
    gap_BW = torch.where(dist.gaps_BW, gap_BW, 0.0)
    return torch.cat([position_BW, gap_BW], dim=1)


def apply_step(tokens_BW: Tensor, lengths_B: Tensor, actions: StepActions) -> tuple[Tensor, Tensor]:
    """The texts after the step: each position keeps its token, takes its substitute or disappears, and
    an inserted token follows it. Returns tokens [B, W] (0-padded) and lengths [B]."""
    batch, width = tokens_BW.shape
    device = tokens_BW.device
    op_BW = actions.position_op_BW.to(device)
    real_BW = torch.arange(width, device=device) < lengths_B[:, None]
    own_BW = torch.where(op_BW == SUBSTITUTE, actions.sub_token_BW.to(device), tokens_BW)
    # Slot 2i is position i's own token, slot 2i+1 the token inserted after it.
    slots_BS = torch.stack([own_BW, actions.ins_token_BW.to(device)], dim=2).reshape(batch, 2 * width)
    present_BS = torch.stack([real_BW & (op_BW != DELETE), real_BW & actions.inserted_BW.to(device)],
                             dim=2).reshape(batch, 2 * width)
    new_lengths_B = present_BS.sum(1)
    require((new_lengths_B <= width).all(), lambda: f"a step would grow a text to {int(new_lengths_B.max())} > "
            f"max_length={width} tokens; only open gaps (tau_leap.open_actions) may insert")
    target_BS = torch.where(present_BS, present_BS.long().cumsum(1) - 1, width)  # width: a spare column
    out_BW = torch.zeros(batch, width + 1, dtype=tokens_BW.dtype, device=device)
    out_BW.scatter_(1, target_BS, torch.where(present_BS, slots_BS, 0))
    return out_BW[:, :width], new_lengths_B
