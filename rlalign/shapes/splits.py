"""Sampling Shapes scenes, the held-out colour–shape pairs, and the fixed evaluation prompt lists.

Splits:
  train    every object uses a non-held-out colour–shape pair (the generators' pretraining data);
  heldout  at least one object uses a held-out pair (what RL has to teach the generators);
  all      any pair (the reward models' training data: they see every pair).
"""

from __future__ import annotations

import functools

import numpy as np

from rlalign.shapes.canvas import CANVAS, Placement
from rlalign.shapes.scene import (
    COLOURS,
    FREE,
    POSITIONS,
    RELATIONS,
    SHAPES,
    ObjectSpec,
    Scene,
    SceneSpec,
)

HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "triangle"),
        ("orange", "square"),
        ("yellow", "circle"),
        ("green", "triangle"),
        ("blue", "circle"),
        ("purple", "square"),
    }
)
"""6 of the 24 colour–shape pairs (a quarter), never shown to the generators during pretraining.
Each shape is held out twice, each held-out colour once, so every colour and every shape is still
seen in training with other partners: the held-out pairs are new *combinations* of known parts."""

ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
TRAIN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p not in HELDOUT_PAIRS)
SPLITS = ("train", "heldout", "all")
TWO_OBJECT_PROBABILITY = 0.5
"""Share of two-object scenes when sampling a split."""

# Anchors of one-object positions (bounding-box centre, pixels) and the jitter around them.
_ANCHORS = {"center": (16.0, 16.0), "left": (8.5, 16.0), "right": (23.5, 16.0), "top": (16.0, 8.5), "bottom": (16.0, 23.5)}
_SINGLE_JITTER = 1.5
_SINGLE_SIZE = (9.0, 13.0)
# Two objects: the first in the near band, the second in the far band along the relation's axis,
# free in the cross band. Sizes ≤ 10 keep a gap of at least 2 px between the objects.
_PAIR_SIZE = (7.0, 10.0)
_NEAR_BAND, _FAR_BAND, _CROSS_BAND = (5.5, 10.0), (22.0, 26.5), (12.0, 20.0)
# Free layouts (prompts without a position): sides of crowded scenes (3–4 objects) and the gap
# between any two objects' bounding boxes.
_CROWD_SIZE = (7.0, 9.0)
FREE_GAP = 2.0


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown Shapes split {split!r}; choose one of {', '.join(SPLITS)}")


def _pick(rng: np.random.Generator, pairs: tuple[tuple[str, str], ...]) -> ObjectSpec:
    return ObjectSpec(*pairs[rng.integers(len(pairs))])


def sample_spec(rng: np.random.Generator, split: str) -> SceneSpec:
    """A random prompt spec of the split (one or two objects; two objects have distinct colours)."""
    _check_split(split)
    pool = TRAIN_PAIRS if split == "train" else ALL_PAIRS
    if rng.random() >= TWO_OBJECT_PROBABILITY:
        one_pool = tuple(sorted(HELDOUT_PAIRS)) if split == "heldout" else pool
        return SceneSpec((_pick(rng, one_pool),), POSITIONS[rng.integers(len(POSITIONS))])
    while True:  # rejection: distinct colours, and for `heldout` at least one held-out pair
        first, second = _pick(rng, pool), _pick(rng, pool)
        held = {(first.colour, first.shape), (second.colour, second.shape)} & HELDOUT_PAIRS
        if first.colour != second.colour and (split != "heldout" or held):
            return SceneSpec((first, second), RELATIONS[rng.integers(len(RELATIONS))])


def place(spec: SceneSpec, rng: np.random.Generator, split: str = "all") -> Scene:
    """Concrete jittered placements for a spec: any image drawn this way satisfies its prompt.

    Objects the prompt leaves uncoloured get a colour drawn so that the scene stays in `split`
    (a `train` scene never draws a held-out colour–shape pair).
    """
    colours = tuple(obj.colour or _free_colour(obj.shape, rng, split) for obj in spec.objects)
    if spec.layout == FREE:
        return Scene(spec, _free_placements(len(spec.objects), rng), colours)
    if len(spec.objects) == 1:
        ax, ay = _ANCHORS[spec.layout]
        jitter = rng.uniform(-_SINGLE_JITTER, _SINGLE_JITTER, size=2)
        return Scene(spec, (Placement(ax + jitter[0], ay + jitter[1], rng.uniform(*_SINGLE_SIZE)),), colours)
    near, far = rng.uniform(*_NEAR_BAND), rng.uniform(*_FAR_BAND)
    cross = rng.uniform(*_CROSS_BAND, size=2)
    sizes = rng.uniform(*_PAIR_SIZE, size=2)
    if spec.layout == "left_of":
        centres = [(near, cross[0]), (far, cross[1])]
    else:  # above: the first object has the smaller y
        centres = [(cross[0], near), (cross[1], far)]
    return Scene(spec, tuple(Placement(cx, cy, s) for (cx, cy), s in zip(centres, sizes)), colours)


def _free_colour(shape: str, rng: np.random.Generator, split: str) -> str:
    allowed = [c for c in COLOURS if split != "train" or (c, shape) not in HELDOUT_PAIRS]
    return allowed[rng.integers(len(allowed))]


def _free_placements(count: int, rng: np.random.Generator) -> tuple[Placement, ...]:
    """`count` objects anywhere on the canvas, at least FREE_GAP px apart and 1 px inside the border.

    Rejection sampling of the whole layout; with sides ≤ 10 px on a 32 px canvas a valid layout is
    found within a few tries even for four objects.
    """
    low, high = _SINGLE_SIZE if count == 1 else _PAIR_SIZE if count == 2 else _CROWD_SIZE
    for _ in range(10_000):
        sizes = rng.uniform(low, high, size=count)
        centres = [rng.uniform(s / 2 + 1, CANVAS - s / 2 - 1, size=2) for s in sizes]
        apart = all(
            max(abs(centres[i][0] - centres[j][0]), abs(centres[i][1] - centres[j][1])) - (sizes[i] + sizes[j]) / 2
            >= FREE_GAP
            for i in range(count) for j in range(i)
        )
        if apart:
            return tuple(Placement(float(c[0]), float(c[1]), float(s)) for c, s in zip(centres, sizes))
    raise RuntimeError(f"no free layout of {count} objects found")  # not reached for count ≤ 4


def sample_scenes(split: str, count: int, seed: int) -> list[Scene]:
    """`count` *described* scenes of a split: one or two objects, every colour and the position or
    relation named (the first Shapes world; the captioner's scenes, whose captions say everything).
    The same (split, count, seed) always gives the same scenes. GenEval-category scenes:
    `rlalign.shapes.categories.sample_category_scenes`."""
    _check_split(split)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    return [place(sample_spec(rng, split), rng) for _ in range(count)]


def sample_scenes_mixed(split: str, count: int, seed: int, two_object_share: float | None = None) -> list[Scene]:
    """`count` scenes of a split with `two_object_share` of them two-object (None: the split's own mix).

    Pretraining spends more of its data on two-object scenes (binding colours to shapes, and a
    relation): one-object prompts are few (90 in `train`) and learned early. Deterministic in
    (split, count, seed, share): the two-object and one-object scenes are taken in order from one
    seeded pool of the split.
    """
    if two_object_share is None:
        return sample_scenes(split, count, seed=seed)
    pool = sample_scenes(split, 2 * count + 64, seed=seed)  # about half are two-object
    two = [scene for scene in pool if len(scene.spec.objects) == 2][: round(count * two_object_share)]
    one = [scene for scene in pool if len(scene.spec.objects) == 1][: count - len(two)]
    if len(two) + len(one) < count:
        raise ValueError(f"two_object_share={two_object_share} asks for more scenes of one kind than the pool holds")
    return two + one


EVAL_PROMPTS_PER_KIND = 24
"""Each described-scene evaluation list has this many distinct one-object and two-object prompts."""


@functools.cache
def described_eval_prompts(split: str) -> tuple[str, ...]:
    """The fixed described-scene prompt list of `train` or `heldout` (48 distinct prompts each: 24
    coloured objects at a position, 24 coloured pairs in a relation): the captioner's evaluation
    scenes. The generator's GenEval lists are `rlalign.shapes.categories.eval_prompts`.

    Drawn once from a seed that nothing else uses; tests pin the lists so they never drift.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"evaluation prompt lists exist for 'train' and 'heldout', not {split!r}")
    rng = np.random.default_rng([20261122, SPLITS.index(split)])
    singles: list[str] = []
    pairs: list[str] = []
    while len(singles) < EVAL_PROMPTS_PER_KIND or len(pairs) < EVAL_PROMPTS_PER_KIND:
        spec = sample_spec(rng, split)
        bucket = singles if len(spec.objects) == 1 else pairs
        if len(bucket) < EVAL_PROMPTS_PER_KIND and spec.prompt not in bucket:
            bucket.append(spec.prompt)
    return tuple(singles + pairs)
