"""The Shapes task: the built-in image world's prompts, verifier and GenEval categories (docs/shapes.md).

Prompt sources (kind:argument):

  shapes:SPLIT        prompts of the six GenEval categories (equal shares) of a split (train | heldout
                      | all), endless; never an evaluation-list string where the category has others
                      (rlalign.shapes.categories.training_pool)
  shapes-eval:SPLIT   the fixed per-category evaluation lists of a split (147 entries, docs/shapes.md)
  shapes-eval:SPLIT:CATEGORY   one category's list (e.g. shapes-eval:heldout:counting)
  shapes-scenes:SPLIT        described Shapes scenes (one or two objects, everything named) of a
                             split, endless: the prompts of an image-conditioned model such as the
                             captioner
  shapes-scenes-eval:SPLIT   48 fixed described scenes, one per prompt of described_eval_prompts

The verifier (rlalign.shapes.verify) judges images against their prompts, and captions against the
scenes they describe (a captioner's prompts are Scenes), each in the category of its prompt. The
training data of the task's built-in reward models is `rlalign.tasks.shapes.reward_data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlalign.shapes import (
    CATEGORIES,
    SPLITS,
    Scene,
    category_of,
    described_eval_prompts,
    eval_prompts,
    eval_prompts_by_category,
    parse_prompt,
    place,
    sample_category_prompts,
    sample_scenes,
)
from rlalign.tasks.task import PromptSource, Task
from rlalign.utils.rows import prompt_text

EVAL_SCENE_SEED = 20261201
"""Seed of the placements of `shapes-scenes-eval` (one fixed scene per evaluation prompt)."""


def _split(spec: str, split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"prompt source {spec!r}: split must be one of {', '.join(SPLITS)}")
    return split


def _fixed_split(spec: str, split: str) -> str:
    if split not in ("train", "heldout"):
        raise ValueError(f"prompt source {spec!r}: fixed evaluation lists exist for train and heldout")
    return split


def prompts_source(spec: str, split: str) -> PromptSource:
    split = _split(spec, split)
    return PromptSource(spec, endless=lambda count, seed: sample_category_prompts(split, count, seed), task="shapes")


def scenes_source(spec: str, split: str) -> PromptSource:
    split = _split(spec, split)
    return PromptSource(spec, endless=lambda count, seed: sample_scenes(split, count, seed), task="shapes")


def eval_source(spec: str, argument: str) -> PromptSource:
    split, _, category = argument.partition(":")
    split = _fixed_split(spec, split)
    if not category:
        return PromptSource(spec, fixed=eval_prompts(split), task="shapes")
    if category not in CATEGORIES:
        raise ValueError(f"prompt source {spec!r}: category must be one of {', '.join(CATEGORIES)}")
    return PromptSource(spec, fixed=eval_prompts_by_category(split)[category], task="shapes")


def scenes_eval_source(spec: str, argument: str) -> PromptSource:
    split, _, extra = argument.partition(":")
    split = _fixed_split(spec, split)
    if extra:
        raise ValueError(f"prompt source {spec!r}: shapes-scenes-eval takes a split only")
    rng = np.random.default_rng([EVAL_SCENE_SEED, SPLITS.index(split)])
    scenes = tuple(place(parse_prompt(prompt), rng) for prompt in described_eval_prompts(split))
    return PromptSource(spec, fixed=scenes, task="shapes")


def judge(prompts: Sequence, outputs: Any) -> list:
    """Images against their prompts, or captions against the Scenes they describe."""
    from rlalign.shapes.verify import verify_caption, verify_image  # scipy: imported when judging

    if isinstance(outputs, torch.Tensor):
        images, texts = outputs.detach().cpu(), [prompt_text(p) for p in prompts]  # rows (jsonl:): their "prompt"
        return [(verify_image(text, image), category_of(text)) for text, image in zip(texts, images)]
    if not all(isinstance(prompt, Scene) for prompt in prompts):
        raise ValueError("the Shapes verifier judges images of Shapes prompts, or captions of Scene prompts "
                         "(shapes-scenes sources); these are texts of other prompts")
    return [(verify_caption(caption, scene), scene.spec.category) for caption, scene in zip(outputs, prompts)]


TASK = Task(
    name="shapes",
    sources={"shapes": prompts_source, "shapes-eval": eval_source, "shapes-scenes": scenes_source,
             "shapes-scenes-eval": scenes_eval_source},
    forms=("shapes:SPLIT", "shapes-eval:SPLIT[:CATEGORY]", "shapes-scenes:SPLIT", "shapes-scenes-eval:SPLIT"),
    judge=judge,
    categories=CATEGORIES,
    rewards={"shapes_eval": "rlalign.rewards.shapes_eval:shapes_eval",
             "shapes_detector": "rlalign.rewards.shapes_detector:ShapesDetectorReward()"},
    eval_only=frozenset({"shapes_eval"}),
    description="the built-in Shapes world: GenEval-style prompts of 32×32 scenes, images and captions",
)
