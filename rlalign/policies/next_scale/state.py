"""What a next-scale rollout keeps for re-scoring its prefix and finishing it again (Rollout.state).

Steps are scales k = 1..K with p_k² token positions each; V is the codebook size. Every tensor is on
the CPU and batch-first, so a Rollout pickles (Ray) and slices into micro-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from rlalign.policies.base import concat_steps, select_steps


@dataclass
class NextScaleState:
    """The sampled token maps, the kept sets the prefix was sampled from, and the settings."""

    tokens: list[Tensor]
    """Per scale, all K of them: LongTensor [B, p_k²], the sampled token map (the prefix's are actions)."""
    kept_masks: list[Tensor | None]
    """Per prefix scale: bool [B, p_k², V], the top-k ∩ top-p set sampled from, or None when truncation
    is off. log_prob renormalises over exactly this set, so it scores the distribution sampled."""
    sampling: dict
    """The settings sampled with (cfg_scale, temperature, top_k, top_p); the same for the whole batch."""
    scale_logits: list[Tensor] | None = None
    """Only with rollout(keep_scale_logits=True): per scale, all K, float [B, p_k², V] ℓ̃ (CFG-mixed /
    temperature) as sampled, for diagnostics such as checking the frozen suffix."""

    def select(self, index: Tensor) -> NextScaleState:
        """The samples `index` of every per-scale tensor."""
        return NextScaleState(
            tokens=select_steps(self.tokens, index),
            kept_masks=select_steps(self.kept_masks, index),
            sampling=self.sampling,
            scale_logits=None if self.scale_logits is None else select_steps(self.scale_logits, index),
        )

    @classmethod
    def concat(cls, shards: Sequence[NextScaleState]) -> NextScaleState:
        """Worker shards of one step, joined scale by scale in the given order."""
        first = shards[0]
        return cls(
            tokens=concat_steps([shard.tokens for shard in shards]),
            kept_masks=concat_steps([shard.kept_masks for shard in shards]),
            sampling=first.sampling,
            scale_logits=(None if first.scale_logits is None
                          else concat_steps([shard.scale_logits for shard in shards])),
        )
