"""Sampling a policy on fixed prompts and judging the samples with the Shapes verifier.

Shared by `rlalign sample`, `rlalign eval`, the trainer's evaluations and the pretraining report,
so every number that says "exact match" is computed the same way: B = prompts × samples draws,
each from its own seeded generator (rlalign.seeding), judged by `shapes_eval`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext

import torch

from rewards.shapes_eval import verify_image
from rlalign.policies.base import StepPolicy
from rlalign.seeding import grouped_generators


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound even near 0 and 1).

    Samples of one prompt are treated as independent draws from the prompt mixture; for a fixed
    prompt list this over-states the variance (a stratified interval would be narrower), so the
    interval is conservative.
    """
    if trials == 0:
        return (math.nan, math.nan)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


@torch.no_grad()
def generate(policy: StepPolicy, prompts: Sequence, *, samples_per_prompt: int, seed: int, prefix_steps="all",
             adapter: bool = True, batch_size: int = 64, purpose: str = "eval", step: int = 0):
    """Images [P·S, 3, H, W] (or texts) and the matching repeated prompts, prompt-major.

    Sample s of prompt p uses seed (seed, purpose, step, p, s), so base and adapter evaluations
    with the same seed share their random numbers, and batch size never changes a sample.
    With `adapter=False` every step runs on the base model.
    """
    repeated = [prompt for prompt in prompts for _ in range(samples_per_prompt)]
    generators = grouped_generators(seed, purpose, step, len(prompts), samples_per_prompt)
    outputs = []
    with nullcontext() if adapter else policy.adapter_disabled():
        for start in range(0, len(repeated), batch_size):
            rollout = policy.rollout(repeated[start : start + batch_size], prefix_steps,
                                     generator=generators[start : start + batch_size])
            outputs.append(rollout.outputs)
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat(outputs), repeated
    return [text for chunk in outputs for text in chunk], repeated


def verifier_report(prompts: Sequence[str], images: torch.Tensor) -> dict:
    """Exact match (with a 95% Wilson interval) and mean partial score, overall and by object count."""
    verdicts = [verify_image(prompt, image) for prompt, image in zip(prompts, images)]
    report = {"overall": _summary(verdicts)}
    for kind, is_pair in (("one_object", False), ("two_objects", True)):
        chosen = [v for p, v in zip(prompts, verdicts) if _is_pair(p) == is_pair]
        if chosen:
            report[kind] = _summary(chosen)
    return report


def _is_pair(prompt: str) -> bool:
    from rlalign.shapes import parse_prompt

    return len(parse_prompt(prompt).objects) == 2


def _summary(verdicts: list) -> dict:
    exact = sum(v.exact for v in verdicts)
    low, high = wilson_interval(exact, len(verdicts))
    return {"exact": exact / len(verdicts), "exact_ci95": [low, high],
            "score": sum(v.score for v in verdicts) / len(verdicts), "samples": len(verdicts)}


def format_report(report: dict, title: str = "") -> str:
    """One line per group: exact [CI] score (n)."""
    lines = [title] if title else []
    for group, row in report.items():
        low, high = row["exact_ci95"]
        lines.append(f"  {group:<12} exact {row['exact']:.3f} [{low:.3f}, {high:.3f}]  "
                     f"score {row['score']:.3f}  (n={row['samples']})")
    return "\n".join(lines)
