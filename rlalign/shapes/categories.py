"""GenEval's six task categories in the Shapes world: prompt pools, scene sampling, evaluation lists.

Every category has a pool of prompts per split. Colour–shape pairs decide the split as in the
rest of the world: a `train` prompt names no held-out pair (and its scenes draw none), a `heldout`
prompt names at least one; categories that name no colour (single_object, two_object, counting,
uncoloured position) have the same prompts in every split (docs/shapes.md, "Categories").

Relations have two surface forms ("a circle to the left of a square" is "a square to the right
of a circle"); both are prompts of their own, so pools and lists hold both.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from rlalign.shapes.scene import (
    CATEGORIES,
    COUNTS,
    FREE,
    POSITIONS,
    RELATIONS,
    SHAPES,
    ObjectSpec,
    Scene,
    SceneSpec,
    parse_prompt,
)
from rlalign.shapes.splits import ALL_PAIRS, HELDOUT_PAIRS, SPLITS, TRAIN_PAIRS, place

EVAL_LIST_SIZE = 24
"""Entries per category in an evaluation list: distinct prompts where the pool has that many,
otherwise the whole pool repeated (so every category gets about as many samples)."""
_EVAL_SEED = 20261201


def mirrored_phrase(spec: SceneSpec) -> str:
    """A relation prompt in its other surface form ("B to the right of A", "B below A")."""
    if spec.layout not in RELATIONS:
        raise ValueError(f"{spec.prompt!r} has no relation to mirror")
    first, second = spec.objects
    word = "to the right of" if spec.layout == "left_of" else "below"
    return f"{second.phrase()} {word} {first.phrase()}"


def surface_forms(spec: SceneSpec) -> tuple[str, ...]:
    """Every prompt string of the grammar that states exactly this spec."""
    return (spec.prompt, mirrored_phrase(spec)) if spec.layout in RELATIONS else (spec.prompt,)


def _pairs(split: str) -> tuple[tuple[str, str], ...]:
    return {"train": TRAIN_PAIRS, "heldout": ALL_PAIRS, "all": ALL_PAIRS}[split]


def _in_split(spec: SceneSpec, split: str) -> bool:
    held = bool(set(spec.pairs) & HELDOUT_PAIRS)
    return {"train": not held, "heldout": held or not spec.pairs, "all": True}[split]


@functools.cache
def category_specs(category: str, split: str, coloured_relations: bool = False) -> tuple[SceneSpec, ...]:
    """Every spec of a category in a split, in a fixed order.

    `position` holds the uncoloured relations; `coloured_relations=True` gives the coloured ones
    instead (two objects of different colours, as in the described scenes).
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; choose one of {', '.join(CATEGORIES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown Shapes split {split!r}; choose one of {', '.join(SPLITS)}")
    bare = [ObjectSpec(None, shape) for shape in SHAPES]
    coloured = [ObjectSpec(c, s) for c, s in _pairs(split)]
    if category == "single_object":
        specs = [SceneSpec((obj,)) for obj in bare]
    elif category == "two_object":
        specs = [SceneSpec((a, b)) for a, b in itertools.permutations(bare, 2)]
    elif category == "counting":
        specs = [SceneSpec((obj,) * n) for n in COUNTS for obj in bare]
    elif category == "colors":
        specs = [SceneSpec((obj,), layout) for obj in coloured for layout in (FREE, *POSITIONS)]
    elif category == "position" and not coloured_relations:
        specs = [SceneSpec((a, b), r) for a, b in itertools.permutations(bare, 2) for r in RELATIONS]
    elif category == "position":
        specs = [SceneSpec((a, b), r) for a, b in itertools.product(coloured, repeat=2) for r in RELATIONS
                 if a.colour != b.colour]
    else:  # color_attr: different colours and different shapes, as GenEval's colour attribution
        specs = [SceneSpec((a, b)) for a, b in itertools.permutations(coloured, 2)
                 if a.colour != b.colour and a.shape != b.shape]
    return tuple(spec for spec in specs if _in_split(spec, split))


@functools.cache
def eval_prompts_by_category(split: str) -> dict[str, tuple[str, ...]]:
    """The fixed evaluation lists of `train` or `heldout`, one per category (pinned by a test).

    A category with at least EVAL_LIST_SIZE prompts gets that many distinct ones, drawn once from a
    seed nothing else uses; a smaller category gets its whole pool, repeated to ≥ EVAL_LIST_SIZE.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"evaluation prompt lists exist for 'train' and 'heldout', not {split!r}")
    lists = {}
    for index, category in enumerate(CATEGORIES):
        pool = [form for spec in category_specs(category, split) for form in surface_forms(spec)]
        if len(pool) >= EVAL_LIST_SIZE:
            rng = np.random.default_rng([_EVAL_SEED, SPLITS.index(split), index])
            lists[category] = tuple(pool[i] for i in sorted(rng.choice(len(pool), EVAL_LIST_SIZE, replace=False)))
        else:
            lists[category] = tuple(pool * -(-EVAL_LIST_SIZE // len(pool)))
    return lists


def eval_prompts(split: str) -> tuple[str, ...]:
    """Every category's evaluation list of a split, concatenated in CATEGORIES order."""
    return tuple(p for prompts in eval_prompts_by_category(split).values() for p in prompts)


@functools.cache
def _eval_strings() -> frozenset[str]:
    return frozenset(eval_prompts("train")) | frozenset(eval_prompts("heldout"))


@functools.cache
def training_pool(category: str, split: str) -> tuple[str, ...]:
    """The prompts RL may train on: the category's pool minus every evaluation string, wherever the
    pool has prompts left. single_object, two_object and counting are whole in the evaluation
    lists, so there the pool is shared (docs/shapes.md says so); `position` trains on coloured
    relations only (the lists hold every uncoloured one)."""
    forms = full_pool(category, split)
    unseen = tuple(form for form in forms if form not in _eval_strings())
    return unseen if unseen else forms


@functools.cache
def full_pool(category: str, split: str) -> tuple[str, ...]:
    """Every prompt string of a category in a split (`position`: uncoloured and coloured relations)."""
    specs = category_specs(category, split)
    if category == "position":
        specs = specs + category_specs(category, split, coloured_relations=True)
    return tuple(form for spec in specs for form in surface_forms(spec))


def category_of(prompt: str) -> str:
    """The GenEval category of a Shapes prompt."""
    return parse_prompt(prompt).category


def sample_category_prompts(split: str, count: int, seed: int, weights: dict[str, float] | None = None,
                            exclude_eval: bool = True) -> list[str]:
    """`count` prompts of a split, each from a category drawn with `weights` (default: equal).

    With `exclude_eval` (RL training), prompts come from `training_pool`; otherwise from the
    whole pool. Deterministic in its arguments.
    """
    categories, probabilities = _category_weights(weights)
    rng = np.random.default_rng([seed, SPLITS.index(split), 7])
    prompts = []
    for category in rng.choice(len(categories), size=count, p=probabilities):
        pool = (training_pool if exclude_eval else full_pool)(categories[category], split)
        prompts.append(pool[rng.integers(len(pool))])
    return prompts


def sample_category_scenes(split: str, count: int, seed: int,
                           weights: dict[str, float] | None = None) -> list[Scene]:
    """`count` scenes of a split, category by `weights` (default equal), each placed to satisfy
    its (canonical) prompt. Deterministic in its arguments."""
    categories, probabilities = _category_weights(weights)
    rng = np.random.default_rng([seed, SPLITS.index(split), 11])
    scenes = []
    for category in rng.choice(len(categories), size=count, p=probabilities):
        name = categories[category]
        specs = category_specs(name, split)
        if name == "position" and rng.random() < 0.5:
            specs = category_specs(name, split, coloured_relations=True)
        scenes.append(place(specs[rng.integers(len(specs))], rng, split))
    return scenes


def _category_weights(weights: dict[str, float] | None) -> tuple[tuple[str, ...], np.ndarray]:
    weights = {c: 1.0 for c in CATEGORIES} if weights is None else dict(weights)
    unknown = sorted(set(weights) - set(CATEGORIES))
    if unknown or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ValueError(f"category weights {weights} must be non-negative, not all zero, over {', '.join(CATEGORIES)}")
    names = tuple(c for c in CATEGORIES if weights.get(c, 0) > 0)
    values = np.array([weights[c] for c in names], dtype=np.float64)
    return names, values / values.sum()
