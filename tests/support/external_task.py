"""A task from outside the package (tests/test_extending.py, docs/extending.md): prompts that name one
colour, judged by the colour that dominates the image. Named in a config as
`prompts.task: support.external_task:TASK`, it adds the prompt source `colour-words:SPLIT`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlalign.tasks import PromptSource, Task

PROMPTS = {"train": ("a red circle", "a green square"), "heldout": ("a blue triangle", "a red square")}
COLOURS = ("red", "green", "blue")
"""The categories: the colour a prompt names (one of the image's channels)."""


@dataclass
class Verdict:
    exact: bool
    score: float


def source(spec: str, split: str) -> PromptSource:
    if split not in PROMPTS:
        raise ValueError(f"prompt source {spec!r}: split must be one of {', '.join(PROMPTS)}")
    return PromptSource(spec, fixed=PROMPTS[split])


def judge(prompts: list[str], images: torch.Tensor) -> list[tuple[Verdict, str]]:
    if not isinstance(images, torch.Tensor):
        raise ValueError("the colour-words task judges images")
    judged = []
    for prompt, image in zip(prompts, images):
        colour = next(c for c in COLOURS if c in prompt.split())
        channels = image.float().mean(dim=(1, 2))  # [3] mean of R, G, B
        share = float(channels[COLOURS.index(colour)] / channels.sum().clamp_min(1e-6))
        judged.append((Verdict(exact=share > 0.4, score=share), colour))
    return judged


TASK = Task(name="colour-words", sources={"colour-words": source}, forms=("colour-words:SPLIT",), judge=judge,
            categories=COLOURS, description="prompts naming a colour, judged by the image's dominant channel")
