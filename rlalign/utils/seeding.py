"""Per-sample seeds: every sample's randomness is fixed by where it sits, not by who samples it.

A sample's seed is a hash of (run seed, purpose, step, prompt index, sample index), so a batch
gives the same samples whether one worker draws it or several draw shards of it, in any order
(the policies draw each sample from its own torch.Generator).
"""

from __future__ import annotations

import numpy as np
import torch

PURPOSES = {"train": 0, "eval": 1, "sample": 2, "bench": 3, "probe": 4, "suffix": 5}
"""Distinct streams, so evaluation samples never reuse training samples' randomness."""


def sample_seed(run_seed: int, purpose: str, step: int, prompt_index: int, sample_index: int) -> int:
    """A 63-bit seed for one sample, well mixed by numpy's SeedSequence."""
    entropy = [run_seed, PURPOSES[purpose], step, prompt_index, sample_index]
    high, low = (int(word) for word in np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32))
    return (high & 0x7FFFFFFF) << 32 | low


def grouped_generators(run_seed: int, purpose: str, step: int, num_prompts: int, group_size: int,
                       first_prompt: int = 0) -> list[torch.Generator]:
    """One generator per sample of prompts first_prompt.. × G samples, in prompt-major order."""
    return [torch.Generator().manual_seed(sample_seed(run_seed, purpose, step, first_prompt + p, g))
            for p in range(num_prompts) for g in range(group_size)]
