"""The next-scale sampling distribution as pure functions (docs/next_scale.md).

At scale k the policy is exactly the distribution sampled from:
    ℓ = (1 + t_k)·ℓ_cond − t_k·ℓ_uncond     (VAR's CFG, t_k = cfg·k/(K−1), k from 0)
    ℓ̃ = ℓ / temperature
    kept = top-k ∩ top-p set of softmax(ℓ̃)
    log π(a) = ℓ̃(a) − logsumexp_{b ∈ kept} ℓ̃(b)   for a ∈ kept
Sampling and re-scoring both go through `scale_log_probs`, with the kept set found at sampling time
and stored, so the two agree up to float error. The draw itself (`shared.draw`, from `shared.uniforms`)
is shared with the insertion family.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlalign.policies.next_scale.transformer import cfg_guidance_weight, mix_cfg_logits


def guided_logits(logits_cond_BlV: Tensor, logits_uncond_BlV: Tensor | None, *, cfg_scale: float,
                  scale_index: int, num_scales: int, temperature: float) -> Tensor:
    """ℓ̃ = CFG-mixed logits / temperature; without an unconditional pass, ℓ_cond / temperature."""
    if logits_uncond_BlV is None:
        mixed_BlV = logits_cond_BlV
    else:
        mixed_BlV = mix_cfg_logits(logits_cond_BlV, logits_uncond_BlV, cfg_guidance_weight(cfg_scale, scale_index, num_scales))
    return mixed_BlV / temperature


def kept_set(logits_BlV: Tensor, *, top_k: int, top_p: float) -> Tensor | None:
    """Bool mask [B, l, V] of the tokens top-k and top-p keep; None when both are off (all kept).

    top-k keeps every token whose logit is at least the k-th largest (ties are kept together);
    top-p keeps the smallest prefix of the sorted distribution whose mass reaches top_p, including
    the token that crosses it, so the most likely token is always kept.
    """
    vocab = logits_BlV.shape[-1]
    use_k, use_p = 0 < top_k < vocab, top_p < 1.0
    if not (use_k or use_p):
        return None
    kept_BlV = torch.ones_like(logits_BlV, dtype=torch.bool)
    if use_k:
        kth_Bl1 = torch.topk(logits_BlV, top_k, dim=-1).values[..., -1:]
        kept_BlV &= logits_BlV >= kth_Bl1
    if use_p:
        masked_BlV = logits_BlV.masked_fill(~kept_BlV, float("-inf"))
        sorted_BlV, order_BlV = torch.sort(masked_BlV, dim=-1, descending=True)
        probs_BlV = torch.softmax(sorted_BlV, dim=-1)
        mass_before_BlV = probs_BlV.cumsum(dim=-1) - probs_BlV  # mass of strictly more likely tokens
        keep_sorted_BlV = mass_before_BlV < top_p
        kept_BlV &= torch.zeros_like(kept_BlV).scatter(-1, order_BlV, keep_sorted_BlV)
    return kept_BlV


def scale_log_probs(logits_BlV: Tensor, kept_BlV: Tensor | None) -> Tensor:
    """log π over the vocabulary [B, l, V] (−inf outside the kept set), in float32."""
    logits_BlV = logits_BlV.float()
    if kept_BlV is not None:
        logits_BlV = logits_BlV.masked_fill(~kept_BlV, float("-inf"))
    return torch.log_softmax(logits_BlV, dim=-1)
