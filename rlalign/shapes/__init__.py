"""The built-in Shapes world: procedural 32×32 scenes, their prompt grammar (GenEval's six task
categories), splits and fixed evaluation lists (docs/shapes.md)."""

from rlalign.shapes.canvas import CANVAS, PALETTE, Placement
from rlalign.shapes.categories import (
    category_of,
    category_specs,
    eval_prompts,
    eval_prompts_by_category,
    mirrored_phrase,
    sample_category_prompts,
    sample_category_scenes,
    surface_forms,
    training_pool,
)
from rlalign.shapes.render import render, render_batch
from rlalign.shapes.scene import (
    CATEGORIES,
    COLOURS,
    COUNTS,
    DESCRIBED_WORDS,
    FREE,
    GRAMMAR_WORDS,
    MAX_OBJECTS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    ObjectSpec,
    PromptParseError,
    Scene,
    SceneSpec,
    parse_prompt,
)
from rlalign.shapes.splits import (
    ALL_PAIRS,
    HELDOUT_PAIRS,
    SPLITS,
    TRAIN_PAIRS,
    described_eval_prompts,
    place,
    sample_scenes,
    sample_scenes_mixed,
    sample_spec,
)

__all__ = [
    "ALL_PAIRS", "CANVAS", "CATEGORIES", "COLOURS", "COUNTS", "DESCRIBED_WORDS", "FREE", "GRAMMAR_WORDS", "HELDOUT_PAIRS",
    "MAX_OBJECTS", "PALETTE", "POSITIONS", "RELATIONS", "SHAPES", "SPLITS", "TRAIN_PAIRS",
    "ObjectSpec", "Placement", "PromptParseError", "Scene", "SceneSpec",
    "category_of", "category_specs", "described_eval_prompts", "eval_prompts", "eval_prompts_by_category",
    "mirrored_phrase", "parse_prompt", "place", "render", "render_batch", "sample_category_prompts",
    "sample_category_scenes", "sample_scenes", "sample_scenes_mixed", "sample_spec", "surface_forms",
    "training_pool",
]
