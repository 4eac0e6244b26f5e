"""What an insertion rollout keeps for re-scoring its prefix and finishing it again (Rollout.state).

Steps are insertion steps s = 0..T−1; step s has A_s = step_width(s, max_len) + 1 gap slots, a width
independent of the batch, so shards of different workers concatenate. Every tensor is on the CPU
and batch-first, so a Rollout pickles (Ray) and slices into micro-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from rlalign.policies.base import concat_steps, select_steps


@dataclass
class InsertionTrace:
    """Every step's (all T) pre-step text and distribution as sampled: rollout(keep_trace=True), for
    diagnostics such as checking that the frozen suffix is the base model's."""

    sequences: list[Tensor]
    """LongTensor [B, A_s − 1]: the text before the step (0-padded word ids)."""
    lengths: list[Tensor]
    """LongTensor [B]: its length n."""
    log_fire: list[Tensor]
    """float [B, A_s]: log p of each gap firing."""
    token_logp: list[Tensor]
    """float [B, A_s, V]: log Q of each gap's word."""

    def append(self, sequences_BN: Tensor, lengths_B: Tensor, log_fire_BI: Tensor,
               token_logp_BIV: Tensor) -> None:
        """Record one more step (as CPU copies)."""
        for steps, value in zip((self.sequences, self.lengths, self.log_fire, self.token_logp),
                                (sequences_BN, lengths_B, log_fire_BI, token_logp_BIV)):
            steps.append(value.cpu())

    def select(self, index: Tensor) -> InsertionTrace:
        """The samples `index` of every step's tensors."""
        return InsertionTrace(**{f.name: select_steps(getattr(self, f.name), index) for f in fields(self)})

    @classmethod
    def concat(cls, shards: Sequence[InsertionTrace]) -> InsertionTrace:
        """Shards joined step by step in the given order."""
        return cls(**{f.name: concat_steps([getattr(s, f.name) for s in shards]) for f in fields(cls)})


PER_STEP = ("sequences", "lengths", "fired", "inserted")
"""InsertionState's per-prefix-step lists."""


@dataclass
class InsertionState:
    """Per prefix step the text it started from and what each gap did; the finished texts; the settings."""

    sequences: list[Tensor]
    """Per prefix step: LongTensor [B, A_s − 1], the text before the step (0-padded word ids)."""
    lengths: list[Tensor]
    """Per prefix step: LongTensor [B], its length n."""
    fired: list[Tensor]
    """Per prefix step: BoolTensor [B, A_s], which gaps inserted a word."""
    inserted: list[Tensor]
    """Per prefix step: LongTensor [B, A_s], the inserted word ids (0 where not fired)."""
    final_tokens: Tensor
    """LongTensor [B, max_len]: the finished texts as word ids."""
    final_lengths: Tensor
    """LongTensor [B]: their lengths."""
    sampling: dict
    """The settings sampled with (cfg_scale, temperature, num_steps, eps); the same for the whole batch."""
    trace: InsertionTrace | None = None
    """Only with rollout(keep_trace=True): every step's pre-step text and distribution."""

    def select(self, index: Tensor) -> InsertionState:
        """The samples `index` of every tensor."""
        return replace(
            self,
            **{name: select_steps(getattr(self, name), index) for name in PER_STEP},
            final_tokens=self.final_tokens[index],
            final_lengths=self.final_lengths[index],
            trace=None if self.trace is None else self.trace.select(index),
        )

    @classmethod
    def concat(cls, shards: Sequence[InsertionState]) -> InsertionState:
        """Worker shards of one step, joined step by step in the given order."""
        first = shards[0]
        return cls(
            **{name: concat_steps([getattr(shard, name) for shard in shards]) for name in PER_STEP},
            final_tokens=torch.cat([shard.final_tokens for shard in shards]),
            final_lengths=torch.cat([shard.final_lengths for shard in shards]),
            sampling=first.sampling,
            trace=None if first.trace is None else InsertionTrace.concat([shard.trace for shard in shards]),
        )
