"""Splits keep held-out pairs away from `train`, sampling is deterministic, eval lists are pinned."""

import hashlib
import itertools

import pytest

from rlalign.shapes import (
    ALL_PAIRS,
    CANVAS,
    HELDOUT_PAIRS,
    SHAPES,
    TRAIN_PAIRS,
    described_eval_prompts,
    parse_prompt,
    sample_scenes,
)


def test_a_quarter_of_the_pairs_is_held_out_each_shape_twice():
    assert len(ALL_PAIRS) == 24 and len(HELDOUT_PAIRS) == 6 and len(TRAIN_PAIRS) == 18
    assert sorted(shape for _, shape in HELDOUT_PAIRS) == sorted(SHAPES * 2)
    assert len({colour for colour, _ in HELDOUT_PAIRS}) == 6


def test_sampling_is_deterministic_by_seed():
    assert sample_scenes("train", 50, seed=3) == sample_scenes("train", 50, seed=3)
    assert sample_scenes("train", 50, seed=3) != sample_scenes("train", 50, seed=4)


def test_train_never_uses_a_heldout_pair_and_heldout_always_does():
    for scene in sample_scenes("train", 2000, seed=0):
        assert not set(scene.spec.pairs) & HELDOUT_PAIRS, scene.prompt
    for scene in sample_scenes("heldout", 2000, seed=0):
        assert set(scene.spec.pairs) & HELDOUT_PAIRS, scene.prompt


def test_scene_mix_and_distinct_colours():
    scenes = sample_scenes("all", 2000, seed=1)
    two = [s for s in scenes if len(s.spec.objects) == 2]
    assert 0.45 < len(two) / len(scenes) < 0.55
    assert all(s.spec.objects[0].colour != s.spec.objects[1].colour for s in two)


def test_placements_stay_inside_the_canvas_and_apart():
    for scene in sample_scenes("all", 2000, seed=2):
        boxes = [(p.cx - p.size / 2, p.cy - p.size / 2, p.cx + p.size / 2, p.cy + p.size / 2) for p in scene.placements]
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 and 0 <= y0 and x1 <= CANVAS and y1 <= CANVAS
        for a, b in itertools.combinations(boxes, 2):
            gap = max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])
            assert gap >= 2.0


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_described_eval_lists_are_fixed_distinct_and_respect_the_split(split):
    prompts = described_eval_prompts(split)
    assert len(prompts) == 48 and len(set(prompts)) == 48
    specs = [parse_prompt(p) for p in prompts]
    assert sum(len(s.objects) == 1 for s in specs) == 24
    for spec in specs:
        held = set(spec.pairs) & HELDOUT_PAIRS
        assert bool(held) == (split == "heldout")


def test_described_eval_lists_never_drift():
    # Pinned: the captioner's evaluation scenes; every reported caption number refers to them.
    digest = {s: hashlib.sha256("\n".join(described_eval_prompts(s)).encode()).hexdigest()[:16]
              for s in ("train", "heldout")}
    assert digest == PINNED_DIGESTS


def test_unknown_split_is_named():
    with pytest.raises(ValueError, match="'val'"):
        sample_scenes("val", 1, seed=0)


PINNED_DIGESTS = {"train": "6da78acc2e5ec63b", "heldout": "096ee7d15366c4ae"}


def test_mixed_sampling_keeps_the_split_and_sets_the_two_object_share():
    from rlalign.shapes import sample_scenes_mixed

    scenes = sample_scenes_mixed("train", 200, seed=21000, two_object_share=0.7)
    assert len(scenes) == 200 and sum(len(s.spec.objects) == 2 for s in scenes) == 140
    assert not {(o.colour, o.shape) for s in scenes for o in s.spec.objects} & HELDOUT_PAIRS
    assert [s.prompt for s in sample_scenes_mixed("train", 200, seed=21000, two_object_share=0.7)] == \
        [s.prompt for s in scenes]
    # No share: exactly the split's own sampler.
    assert [s.prompt for s in sample_scenes_mixed("train", 5, seed=3)] == [s.prompt for s in sample_scenes("train", 5, 3)]
