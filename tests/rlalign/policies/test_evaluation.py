"""Evaluation sampling and the verifier report."""

import pytest
import torch
from support.next_scale import PROMPTS

from rlalign.evaluation.geneval import category_report, generate, task_report, wilson_interval
from rlalign.shapes import CATEGORIES, render_batch, sample_category_scenes
from rlalign.shapes.verify import Verdict
from rlalign.tasks.shapes import TASK as SHAPES_TASK


def test_wilson_interval_matches_hand_computation():
    # 5 of 10, z = 1.96: centre = (0.5 + 1.9208/10) / (1 + 3.8416/10) = 0.5;
    # half = 1.96·√(0.025 + 3.8416/400) / 1.38416 = 1.96·0.18597 / 1.38416 = 0.26335 → [0.2366, 0.7634].
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    # 0 of 10: centre = 0.19208/1.38416 = 0.13877 = half → [0, 0.2775].
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)


def test_generate_does_not_depend_on_batch_size_and_adapter_off_is_the_base(make_policy):
    policy = make_policy()
    small, prompts = generate(policy, PROMPTS, samples_per_prompt=3, seed=1, prefix_steps=2, batch_size=2)
    large, _ = generate(policy, PROMPTS, samples_per_prompt=3, seed=1, prefix_steps=2, batch_size=64)
    assert prompts == [p for p in PROMPTS for _ in range(3)]
    # Same tokens; only the decoder's batched float arithmetic may differ in the last bits.
    assert torch.allclose(small, large, atol=1e-5)
    with_adapter, _ = generate(policy, PROMPTS, samples_per_prompt=3, seed=1, prefix_steps="all")
    base, _ = generate(policy, PROMPTS, samples_per_prompt=3, seed=1, prefix_steps="all", adapter=False)
    with policy.adapter_disabled():
        base_again, _ = generate(policy, PROMPTS, samples_per_prompt=3, seed=1, prefix_steps=1)
    assert torch.allclose(base, base_again, atol=1e-5) and (base - with_adapter).abs().max() > 0.1


def test_the_shapes_task_report_counts_true_renders_as_exact():
    scenes = sample_category_scenes("train", 60, seed=3)
    prompts = [scene.prompt for scene in scenes]
    report = task_report(SHAPES_TASK, prompts, render_batch(scenes))
    assert report["overall"]["samples"] == 60
    assert report["overall"]["exact"] >= 0.95  # the verifier accepts ≥ 99% of clean renders (docs/shapes.md)
    assert list(report)[1:] == list(CATEGORIES) and sum(report[c]["samples"] for c in CATEGORIES) == 60
    shuffled = task_report(SHAPES_TASK, prompts[1:] + prompts[:1], render_batch(scenes))
    assert shuffled["overall"]["exact"] < 0.3


def test_overall_is_the_mean_of_the_categories_with_a_stratified_interval():
    # Two categories: single_object 3 of 4 exact, counting 0 of 1. Overall = (0.75 + 0) / 2 = 0.375,
    # not the sample mean 3/5. Half-width = 1.96 · sqrt(0.75·0.25/4 + 0) / 2 = 1.96 · 0.21651 / 2 = 0.21218.
    verdicts = [Verdict(1.0, True)] * 3 + [Verdict(0.0, False)] + [Verdict(0.5, False)]
    report = category_report(verdicts, ["single_object"] * 4 + ["counting"], order=CATEGORIES)
    assert report["overall"]["exact"] == pytest.approx(0.375)
    assert report["overall"]["sample_mean"] == pytest.approx(0.6)
    low, high = report["overall"]["exact_ci95"]
    assert low == pytest.approx(0.375 - 0.21218, abs=1e-4) and high == pytest.approx(0.375 + 0.21218, abs=1e-4)
    assert report["single_object"]["exact_ci95"] == list(wilson_interval(3, 4))
    assert list(report) == ["overall", "single_object", "counting"]  # GenEval's order
