"""GenEval categories: pinned per-category evaluation lists, split rules, RL pools disjoint from them."""

import hashlib

import pytest

from rlalign.shapes import (
    CANVAS,
    CATEGORIES,
    HELDOUT_PAIRS,
    eval_prompts,
    eval_prompts_by_category,
    parse_prompt,
    sample_category_prompts,
    sample_category_scenes,
    training_pool,
)

# How many distinct prompts the grammar has per category (3 shapes; the two relation phrasings of
# one spec count twice): these categories cannot hold 24 distinct prompts, so their lists repeat.
SMALL_POOLS = {"single_object": 3, "two_object": 6, "counting": 9}


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_each_category_list_has_24_entries_of_its_category(split):
    lists = eval_prompts_by_category(split)
    assert tuple(lists) == CATEGORIES
    for category, prompts in lists.items():
        assert all(parse_prompt(p).category == category for p in prompts)
        distinct = len(set(prompts))
        assert distinct == SMALL_POOLS.get(category, 24)
        assert len(prompts) >= 24 and len(prompts) % distinct == 0  # whole pool, each prompt equally often
    for prompt in lists["colors"] + lists["color_attr"]:
        assert bool(set(parse_prompt(prompt).pairs) & HELDOUT_PAIRS) == (split == "heldout"), prompt


def test_eval_lists_never_drift():
    # Pinned: every reported GenEval-style number refers to these exact lists.
    digest = {s: hashlib.sha256("\n".join(eval_prompts(s)).encode()).hexdigest()[:16] for s in ("train", "heldout")}
    assert digest == PINNED_DIGESTS


def test_rl_prompts_avoid_every_eval_string_where_the_grammar_allows():
    evaluated = set(eval_prompts("train")) | set(eval_prompts("heldout"))
    for category in ("colors", "color_attr", "position"):
        pool = training_pool(category, "heldout")
        assert pool and not set(pool) & evaluated
    for category in SMALL_POOLS:  # the whole grammar is in the lists: the pool is shared
        assert set(training_pool(category, "heldout")) <= evaluated
    drawn = sample_category_prompts("heldout", 600, seed=0)
    assert drawn == sample_category_prompts("heldout", 600, seed=0)
    counts = {c: sum(parse_prompt(p).category == c for p in drawn) for c in CATEGORIES}
    assert min(counts.values()) > 60  # equal shares of 100 ± noise


def test_category_scenes_satisfy_their_prompts_and_stay_in_their_split():
    for split in ("train", "heldout"):
        for scene in sample_category_scenes(split, 600, seed=3):
            held = set(scene.drawn_pairs) & HELDOUT_PAIRS
            if split == "train":
                assert not held, scene
            for p in scene.placements:
                assert 0 <= p.cx - p.size / 2 and p.cx + p.size / 2 <= CANVAS
    weights = {"counting": 1.0}
    assert all(s.spec.category == "counting" for s in sample_category_scenes("all", 50, seed=1, weights=weights))
    with pytest.raises(ValueError, match="category weights"):
        sample_category_scenes("all", 5, seed=1, weights={"counting": -1.0})


PINNED_DIGESTS = {"train": "61645266f9e6568c", "heldout": "6822483995744ab9"}
