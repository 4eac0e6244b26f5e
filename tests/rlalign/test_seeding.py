"""Per-sample seeds depend on where a sample sits, never on who draws it."""

import torch

from rlalign.utils.seeding import grouped_generators, sample_seed


def test_seeds_are_deterministic_distinct_and_63_bit():
    seeds = {sample_seed(0, "train", step, p, g) for step in range(3) for p in range(4) for g in range(8)}
    assert len(seeds) == 3 * 4 * 8
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(5, "train", 1, 2, 3) == sample_seed(5, "train", 1, 2, 3)
    assert sample_seed(5, "train", 1, 2, 3) != sample_seed(5, "eval", 1, 2, 3)


def test_a_shard_gets_the_same_generators_as_the_whole_batch():
    whole = grouped_generators(7, "train", 4, num_prompts=4, group_size=3)
    shard = grouped_generators(7, "train", 4, num_prompts=2, group_size=3, first_prompt=2)
    draws = lambda gens: torch.stack([torch.rand(5, generator=g) for g in gens])
    assert torch.equal(draws(whole)[6:], draws(shard))
