"""The Edit Flow training loss (Havasi et al. 2025, "Edit Flows") for a mask start, as functions.

Used by scripts/pretrain_text_editflow.py to pretrain the built-in model; RL never calls it.

Alignment. A pair is x0 = BOS + prompt + M MASKs and x1 = BOS + prompt + answer (A tokens). Column
j of the answer part aligns MASK_j with answer_j when both exist (a substitution), MASK_j with
nothing when j ≥ A (a deletion) and nothing with answer_j when j ≥ M (an insertion, after the
columns before it); prompt columns never change.

Corruption (κ_t = t). Each changing column is done with probability t, independently; x_t is the
done columns' x1 side and the others' x0 side, blanks dropped. Every column not yet done is one
edit x_t still needs: a substitution or deletion at its position, or an insertion after the
position of the nearest present column before it.

Loss. The model's rates are dllm's rate_hat, the rate of each edit divided by the schedule weight
w(t) (the sampler multiplies w back in). Edit Flows' Bregman loss divided by w(t) is then, per text,

    Σ_open positions (sub_i + del_i) + Σ_open gaps ins_i
      − Σ_needed substitutions (log sub_i + log q_sub_i(a)) − Σ_needed deletions log del_i
      − Σ_needed insertions (log ins_i + log q_ins_i(a))

minimised by rate_hat = the expected number of such edits still needed and q = their token
distribution. We average it over texts without the w(t) factor: the optimum for every x_t is the
same, and the unweighted average does not let the few samples near t = 1 (w → ∞) dominate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class EditTargets(NamedTuple):
    tokens_BW: Tensor  # x_t, 0-padded
    lengths_B: Tensor
    prompt_lengths_B: Tensor
    sub_token_BW: Tensor  # the token a needed substitution at position i writes; −1 where none
    delete_BW: Tensor  # bool: a deletion at position i is needed
    ins_counts_BWV: Tensor  # how many insertions of token v after position i are needed


def corrupt(prompts: list[list[int]], answers: list[list[int]], *, mask_id: int, mask_length: int, width: int,
            vocab_size: int, t_B: np.ndarray, rng: np.random.Generator) -> EditTargets:
    """Draw x_t and its needed edits for each (prompt with BOS, answer) pair (module docstring)."""
    batch = len(prompts)
    tokens_BW = torch.zeros(batch, width, dtype=torch.long)
    sub_token_BW = torch.full((batch, width), -1, dtype=torch.long)
    delete_BW = torch.zeros(batch, width, dtype=torch.bool)
    ins_counts_BWV = torch.zeros(batch, width, vocab_size)
    lengths_B, prompt_lengths_B = torch.zeros(batch, dtype=torch.long), torch.zeros(batch, dtype=torch.long)
    for b, (prompt, answer) in enumerate(zip(prompts, answers)):
        text = list(prompt)
        for column in range(max(mask_length, len(answer))):
            source = mask_id if column < mask_length else None
            target = answer[column] if column < len(answer) else None
            if rng.random() < t_B[b]:  # done: its x1 side
                if target is not None:
                    text.append(target)
                continue
            if source is not None:  # still a MASK: it needs a substitution or a deletion
                if target is not None:
                    sub_token_BW[b, len(text)] = target
                else:
                    delete_BW[b, len(text)] = True
                text.append(source)
            else:  # still missing: an insertion after the last present token
                ins_counts_BWV[b, len(text) - 1, target] += 1
        if len(text) > width:
            raise ValueError(f"a training text has {len(text)} tokens > width {width}")
        tokens_BW[b, : len(text)] = torch.tensor(text)
        lengths_B[b], prompt_lengths_B[b] = len(text), len(prompt)
    return EditTargets(tokens_BW, lengths_B, prompt_lengths_B, sub_token_BW, delete_BW, ins_counts_BWV)


def edit_flow_loss(outputs: dict[str, Tensor], targets: EditTargets) -> dict[str, Tensor]:
    """The per-text loss above, averaged over texts; also its rate and token parts (scalars)."""
    width = targets.tokens_BW.shape[1]
    index_W = torch.arange(width)
    real_BW = index_W < targets.lengths_B[:, None]
    positions_BW = real_BW & (index_W >= targets.prompt_lengths_B[:, None])
    gaps_BW = real_BW & (index_W >= targets.prompt_lengths_B[:, None] - 1)
    sub_BW, del_BW, ins_BW = (outputs[k].float() for k in ("sub_rate_hat", "del_rate_hat", "ins_rate_hat"))
    log = lambda x: x.clamp_min(1e-12).log()
    rate_total = ((sub_BW + del_BW) * positions_BW).sum() + (ins_BW * gaps_BW).sum()
    needs_sub_BW = targets.sub_token_BW >= 0
    sub_logq_BW = torch.log_softmax(outputs["sub_logits"].float(), -1).gather(
        -1, targets.sub_token_BW.clamp_min(0)[..., None]).squeeze(-1)
    ins_logq_BWV = torch.log_softmax(outputs["ins_logits"].float(), -1)
    ins_needed_BW = targets.ins_counts_BWV.sum(-1)
    rate_log = ((log(sub_BW) * needs_sub_BW).sum() + (log(del_BW) * targets.delete_BW).sum()
                + (log(ins_BW) * ins_needed_BW).sum())
    token_log = (sub_logq_BW * needs_sub_BW).sum() + (ins_logq_BWV * targets.ins_counts_BWV).sum()
    batch = targets.tokens_BW.shape[0]
    return {"loss": (rate_total - rate_log - token_log) / batch, "rate": (rate_total - rate_log) / batch,
            "token": -token_log / batch}
