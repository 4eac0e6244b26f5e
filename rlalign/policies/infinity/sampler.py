"""The distribution Infinity's sampler draws each bit from, and its exact log-probabilities.

Per scale (Infinity `autoregressive_infer_cfg`, infinity.py:539-586, and
`sample_with_top_k_top_p_also_inplace_modifying_logits_`, 719-736; commit 4c27bbb):

    ℓ = cfg · ℓ_cond·(1/τ) + (1 − cfg) · ℓ_uncond·(1/τ)      (cfg = 1: ℓ_cond·(1/τ) alone)
    top-k: a value whose logit is strictly below the k-th largest of its bit's two is removed
    top-p: values sorted ascending; those whose cumulative probability is ≤ 1 − p are removed,
           the most likely never
    bit ~ softmax(ℓ over the kept values), every bit of every token independently

With two values per bit, top-k is a no-op for k ≥ 2 (the public default k = 900), and top-p removes
the less likely value iff its probability is ≤ 1 − p (0.03 at the default p = 0.97): such a bit is
deterministic, and a trajectory that holds the removed value has log-probability −inf. The policy's
log-prob of a scale is Σ over its tokens and bits of log softmax at the drawn value over the kept set;
the kept set is recorded at rollout time and re-used when re-scoring, so an update that moves a
probability across the top-p threshold does not change which values the old sample could have taken.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlalign.policies.infinity.transformer import bit_logits


def guided_bit_logits(logits_cond_BnV: Tensor, logits_uncond_BnV: Tensor | None, *, cfg_scale: float,
                      temperature: float) -> Tensor:
    """ℓ [B, n, b, 2] of one scale from the head's outputs [B, n, 2b], in the reference's op order."""
    inv_tau = 1 / temperature
    cond = logits_cond_BnV.float().mul(inv_tau)
    if logits_uncond_BnV is None or cfg_scale == 1:
        return bit_logits(cond)
    mixed = cfg_scale * cond + (1 - cfg_scale) * logits_uncond_BnV.float().mul(inv_tau)
    return bit_logits(mixed)


def kept_values(logits_Bnb2: Tensor, *, top_k: int, top_p: float) -> Tensor | None:
    """bool [B, n, b, 2]: the values each bit may take after top-k and top-p; None when these settings can
    remove nothing (top_k ≠ 1 and top_p = 1: the answer depends on the settings only, never on the batch)."""
    if top_k != 1 and not 0 < top_p < 1:
        return None
    removed = torch.zeros_like(logits_Bnb2, dtype=torch.bool)
    if top_k > 0:
        k = min(top_k, logits_Bnb2.shape[-1])
        removed |= logits_Bnb2 < logits_Bnb2.topk(k, dim=-1).values.amin(dim=-1, keepdim=True)
    if 0 < top_p < 1:
        masked = logits_Bnb2.masked_fill(removed, float("-inf"))
        sorted_logits, order = masked.sort(dim=-1, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        sorted_removed = cumulative <= (1 - top_p)
        sorted_removed[..., -1:] = False
        removed |= sorted_removed.scatter(-1, order, sorted_removed)
    return ~removed


def bit_log_probs(logits_Bnb2: Tensor, kept_Bnb2: Tensor | None) -> Tensor:
    """log p [B, n, b, 2] of each value over the kept set (−inf for removed values)."""
    if kept_Bnb2 is not None:
        logits_Bnb2 = logits_Bnb2.masked_fill(~kept_Bnb2, float("-inf"))
    return torch.log_softmax(logits_Bnb2.float(), dim=-1)


def draw_bits(logp_Bnb2: Tensor, uniform_Bnb: Tensor) -> Tensor:
    """Bits [B, n, b] (uint8): 1 iff u ≥ p(0), the inverse-CDF draw of each bit.

    A removed value has p = 0 exactly, so it is never drawn (p(0) = 0 makes u ≥ 0 always true; p(0)
    = 1 makes u < 1 always false).
    """
    p0_Bnb = logp_Bnb2[..., 0].exp()
    return (uniform_Bnb.to(p0_Bnb.device) >= p0_Bnb).to(torch.uint8)


def drawn_log_probs(logp_Bnb2: Tensor, bits_Bnb: Tensor) -> Tensor:
    """log p [B, n, b] of the given bits."""
    return logp_Bnb2.gather(-1, bits_Bnb.long().unsqueeze(-1)).squeeze(-1)


def multinomial_bits(logits_Bnb2: Tensor, generator: torch.Generator) -> Tensor:
    """Bits drawn exactly as the reference draws them (one torch.multinomial over [B·n·b, 2] with its
    generator, infinity.py:735), for reproducing a reference run bit for bit from its seed. Give the
    filtered logits (removed values at −inf, as `bit_log_probs` makes them), as the reference draws."""
    B, n, b, _ = logits_Bnb2.shape
    probs = logits_Bnb2.reshape(B, n * b, 2).softmax(dim=-1).view(-1, 2)
    return torch.multinomial(probs, 1, replacement=True, generator=generator).view(B, n, b).to(torch.uint8)
