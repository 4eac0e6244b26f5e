"""What an Infinity rollout keeps for re-scoring its prefix and finishing it again (Rollout.state).

Steps are scales k = 1..K with n_k = h_k·w_k tokens of b bits each. Every tensor is on the CPU and
batch-first, so a Rollout pickles (Ray) and slices into micro-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from rlalign.policies.base import concat_steps, select_steps


@dataclass
class InfinityState:
    """The sampled bits, the values top-k/top-p left each prefix bit, and the sampling settings."""

    bits: list[Tensor]
    """Per scale, all K of them: uint8 [B, n_k, b], the sampled bits (the prefix's are the actions)."""
    kept_masks: list[Tensor | None]
    """Per prefix scale: bool [B, n_k, b, 2], the values each bit could take, or None when the settings
    can remove nothing (top_k ≠ 1 and top_p = 1). log_prob renormalises over exactly this set."""
    sampling: dict
    """The settings sampled with (cfg_scale, temperature, top_k, top_p); the same for the whole batch."""

    def select(self, index: Tensor) -> InfinityState:
        return InfinityState(bits=select_steps(self.bits, index), kept_masks=select_steps(self.kept_masks, index),
                             sampling=self.sampling)

    @classmethod
    def concat(cls, shards: Sequence[InfinityState]) -> InfinityState:
        return cls(bits=concat_steps([shard.bits for shard in shards]),
                   kept_masks=concat_steps([shard.kept_masks for shard in shards]), sampling=shards[0].sampling)
