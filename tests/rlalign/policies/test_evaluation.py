"""Evaluation sampling and the verifier report."""

import pytest
import torch
from support.next_scale import PROMPTS

from rlalign.evaluation import generate, verifier_report, wilson_interval
from rlalign.shapes import render_batch, sample_scenes


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


def test_verifier_report_counts_true_renders_as_exact():
    scenes = sample_scenes("train", 40, seed=3)
    prompts = [scene.prompt for scene in scenes]
    report = verifier_report(prompts, render_batch(scenes))
    assert report["overall"]["samples"] == 40
    assert report["overall"]["exact"] >= 0.95  # the verifier accepts ≥ 99% of clean renders (docs/shapes.md)
    assert report["one_object"]["samples"] + report["two_objects"]["samples"] == 40
    shuffled = verifier_report(prompts[1:] + prompts[:1], render_batch(scenes))
    assert shuffled["overall"]["exact"] < 0.2
