"""The built-in Shapes world: procedural 32×32 scenes, their prompt grammar and splits (DESIGN §8)."""

from rlalign.shapes.render import render, render_batch
from rlalign.shapes.scene import (
    CANVAS,
    COLOURS,
    GRAMMAR_WORDS,
    PALETTE,
    POSITIONS,
    RELATIONS,
    SHAPES,
    ObjectSpec,
    Placement,
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
    eval_prompts,
    place,
    sample_scenes,
    sample_spec,
)

__all__ = [
    "ALL_PAIRS",
    "CANVAS",
    "COLOURS",
    "GRAMMAR_WORDS",
    "HELDOUT_PAIRS",
    "PALETTE",
    "POSITIONS",
    "RELATIONS",
    "SHAPES",
    "SPLITS",
    "TRAIN_PAIRS",
    "ObjectSpec",
    "Placement",
    "PromptParseError",
    "Scene",
    "SceneSpec",
    "eval_prompts",
    "parse_prompt",
    "place",
    "render",
    "render_batch",
    "sample_scenes",
    "sample_spec",
]
