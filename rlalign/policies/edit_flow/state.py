"""What an Edit Flow rollout keeps for re-scoring its prefix and finishing it again (Rollout.state).

Every text of every step is stored at the policy's fixed width W = max_length, so shards of
different workers and micro-batches concatenate. All tensors are on the CPU and batch-first, so a
Rollout pickles (Ray) and slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from rlalign.policies.base import concat_steps, select_steps
from rlalign.policies.edit_flow.tau_leap import StepActions


@dataclass
class EditFlowTrace:
    """Every step's (all T) pre-step text and firing probabilities as sampled: rollout(keep_trace=True),
    for diagnostics such as checking that the frozen suffix is the base model's."""

    sequences: list[Tensor]
    """LongTensor [B, W]: the text before the step."""
    lengths: list[Tensor]
    """LongTensor [B]: its length."""
    edit_prob: list[Tensor]
    """float [B, W]: p_edit of each position."""
    insert_prob: list[Tensor]
    """float [B, W]: p_ins of each gap."""
    sub_logp: list[Tensor]
    """float [B, W, V]: log q_sub."""

    def append(self, *values: Tensor) -> None:
        for steps, value in zip((self.sequences, self.lengths, self.edit_prob, self.insert_prob, self.sub_logp),
                                values, strict=True):
            steps.append(value.detach().cpu())

    def select(self, index: Tensor) -> EditFlowTrace:
        return EditFlowTrace(**{f.name: select_steps(getattr(self, f.name), index) for f in fields(self)})

    @classmethod
    def concat(cls, shards: Sequence[EditFlowTrace]) -> EditFlowTrace:
        return cls(**{f.name: concat_steps([getattr(s, f.name) for s in shards]) for f in fields(cls)})


PER_STEP = ("sequences", "lengths", "position_ops", "sub_tokens", "inserted", "ins_tokens")
"""EditFlowState's per-prefix-step lists."""


@dataclass
class EditFlowState:
    """Per prefix step the text it started from and what each position and gap did; the finished texts;
    the prompt lengths (protected tokens); the settings."""

    sequences: list[Tensor]
    """Per prefix step: LongTensor [B, W], the text before the step (0-padded token ids, BOS first)."""
    lengths: list[Tensor]
    """Per prefix step: LongTensor [B], its length."""
    position_ops: list[Tensor]
    """Per prefix step: LongTensor [B, W], KEEP / DELETE / SUBSTITUTE per position."""
    sub_tokens: list[Tensor]
    """Per prefix step: LongTensor [B, W], the substituted token (0 where none)."""
    inserted: list[Tensor]
    """Per prefix step: BoolTensor [B, W], a token was inserted after the position."""
    ins_tokens: list[Tensor]
    """Per prefix step: LongTensor [B, W], the inserted token (0 where none)."""
    prompt_lengths: Tensor
    """LongTensor [B]: the prompt's tokens (BOS included), which are never edited unless edit_prompt."""
    final_tokens: Tensor
    """LongTensor [B, W]: the finished texts, prompt included."""
    final_lengths: Tensor
    """LongTensor [B]: their lengths."""
    sampling: dict
    """The settings sampled with (tau, kappa, temperature, max_length, edit_prompt, insertion_only)."""
    trace: EditFlowTrace | None = None
    """Only with rollout(keep_trace=True): every step's pre-step text and distribution."""

    def actions(self, step: int) -> StepActions:
        """Prefix step `step`'s actions as the τ-leap functions take them."""
        return StepActions(self.position_ops[step], self.sub_tokens[step], self.inserted[step], self.ins_tokens[step])

    def select(self, index: Tensor) -> EditFlowState:
        return replace(
            self,
            **{name: select_steps(getattr(self, name), index) for name in PER_STEP},
            prompt_lengths=self.prompt_lengths[index],
            final_tokens=self.final_tokens[index],
            final_lengths=self.final_lengths[index],
            trace=None if self.trace is None else self.trace.select(index),
        )

    @classmethod
    def concat(cls, shards: Sequence[EditFlowState]) -> EditFlowState:
        first = shards[0]
        return cls(
            **{name: concat_steps([getattr(shard, name) for shard in shards]) for name in PER_STEP},
            prompt_lengths=torch.cat([shard.prompt_lengths for shard in shards]),
            final_tokens=torch.cat([shard.final_tokens for shard in shards]),
            final_lengths=torch.cat([shard.final_lengths for shard in shards]),
            sampling=first.sampling,
            trace=None if first.trace is None else EditFlowTrace.concat([shard.trace for shard in shards]),
        )
