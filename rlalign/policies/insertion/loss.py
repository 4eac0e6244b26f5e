"""The insertion-only Edit Flow training loss with κ_t = t, as pure functions (docs/insertion.md).

A training pair is (condition, target text x_1..x_N). Draw t ~ U(0, 1) per sequence and keep each
target token independently with probability κ_t = t; the kept tokens, in order, are the state X_t.
Every deleted token falls into one gap of X_t (the gap between the kept tokens around it): the bag
A_i of gap i, with k_i = |A_i| tokens. The model must then predict, per gap,

    −Σ_{a ∈ A_i} log Q_i(a)          which tokens are missing there   (a bag: order inside is free)
    + 1[k_i > 0] · (λ_i − k_i log λ_i)  how many (Poisson likelihood, up to log k_i!)
    + BCE(π_i, 1[k_i = 0])             whether any at all (the zero-inflation)

averaged over the real gaps of the batch. `corrupt` draws X_t and the bags; `edit_flow_loss`
scores model outputs against them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rlalign.policies.insertion.model import NUM_SPECIAL, GapOutputs
from rlalign.policies.insertion.sampler import insertable_log_probs


class Corruption(NamedTuple):
    kept_BN: Tensor  # [B, N] the kept tokens in order, 0-padded: the state X_t
    kept_lengths_B: Tensor  # [B] n = number of kept tokens
    bag_counts_BIV: Tensor  # [B, N + 1, V] float: how often token v was deleted from gap g of X_t


class EditFlowLoss(NamedTuple):
    loss: Tensor  # scalar: mean over real gaps of the three terms
    token: Tensor  # scalar: the −Σ log Q part, same normalisation
    rate: Tensor  # scalar: the Poisson part
    zero: Tensor  # scalar: the BCE part


def corrupt(targets_BN: Tensor, lengths_B: Tensor, t_B: Tensor, *, vocab_size: int,
            generator: torch.Generator | None = None) -> Corruption:
    """Keep each real target token with probability t (κ_t = t); bag the deleted ones by gap."""
    batch, num_tokens = targets_BN.shape
    device = targets_BN.device
    positions_N = torch.arange(num_tokens, device=device)
    real_BN = positions_N < lengths_B.to(device)[:, None]
    uniform_BN = torch.rand(batch, num_tokens, generator=generator).to(device)
    keep_BN = (uniform_BN < t_B.to(device)[:, None]) & real_BN
    kept_before_BN = keep_BN.long().cumsum(1) - keep_BN.long()  # kept tokens strictly before j
    # Kept token j moves to slot (#kept before j); the rest write into a spare column that is cut off.
    kept_BN = torch.zeros(batch, num_tokens + 1, dtype=torch.long, device=device)
    kept_BN.scatter_(1, torch.where(keep_BN, kept_before_BN, num_tokens), torch.where(keep_BN, targets_BN, 0))
    # A deleted token j lies in gap (#kept before j): gap 0 is before the first kept token.
    deleted_BN = real_BN & ~keep_BN
    rows, cols = deleted_BN.nonzero(as_tuple=True)
    bag_counts_BIV = torch.zeros(batch, num_tokens + 1, vocab_size, device=device)
    bag_counts_BIV.index_put_((rows, kept_before_BN[rows, cols], targets_BN[rows, cols]),
                              torch.ones(rows.shape[0], device=device), accumulate=True)
    return Corruption(kept_BN[:, :num_tokens], keep_BN.sum(1), bag_counts_BIV)


def edit_flow_loss(outputs: GapOutputs, bag_counts_BIV: Tensor, kept_lengths_B: Tensor) -> EditFlowLoss:
    """The per-gap loss above, averaged over real gaps (g ≤ n) of the whole batch.

    `outputs` are the model's heads on X_t (I = N + 1 gaps); the specials' token logits are masked.
    """
    if outputs.zero_logit_BI.shape != bag_counts_BIV.shape[:2]:
        raise ValueError(f"outputs have {tuple(outputs.zero_logit_BI.shape)} gaps but the bags "
                         f"{tuple(bag_counts_BIV.shape[:2])}: run the model on corrupt()'s kept_BN")
    if bag_counts_BIV[..., :NUM_SPECIAL].any():
        raise ValueError("a target contains a special token (pad, unk or BOS), which can never be inserted")
    num_gaps = bag_counts_BIV.shape[1]
    real_BI = torch.arange(num_gaps, device=bag_counts_BIV.device) <= kept_lengths_B.to(bag_counts_BIV.device)[:, None]
    # −inf on specials times a zero count would be NaN: zero those columns, no bag holds them.
    token_logp_BIV = insertable_log_probs(outputs.token_logits_BIV)
    special_V = torch.arange(token_logp_BIV.shape[-1], device=token_logp_BIV.device) < NUM_SPECIAL
    token_logp_BIV = token_logp_BIV.masked_fill(special_V, 0.0)
    token_BI = -(bag_counts_BIV * token_logp_BIV).sum(-1)
    count_BI = bag_counts_BIV.sum(-1)  # k_i
    log_rate_BI = outputs.log_rate_BI.float()
    rate_BI = torch.where(count_BI > 0, log_rate_BI.exp() - count_BI * log_rate_BI, torch.zeros_like(log_rate_BI))
    zero_BI = F.binary_cross_entropy_with_logits(outputs.zero_logit_BI.float(), (count_BI == 0).float(),
                                                 reduction="none")
    weight_BI = real_BI.float() / real_BI.sum().clamp_min(1)
    parts = [(part_BI * weight_BI).sum() for part_BI in (token_BI, rate_BI, zero_BI)]
    return EditFlowLoss(parts[0] + parts[1] + parts[2], *parts)
