"""Smoke tier: the caption config trains with the unchanged trainer: Scene prompts from the
`shapes-scenes` sources, CLIP on (image, caption), a text reward, and the caption verifier at eval."""

import pytest
import torch
from rlalign.rewards.examples import caption_grammar
from rlalign.rewards.registry import build_reward
from rlalign.rewards.shapes_eval import shapes_eval

from rlalign.config import RewardSpec, load_config
from rlalign.shapes import Scene, described_eval_prompts, render_batch
from rlalign.tasks import parse_prompt_source
from rlalign.training.trainer import Trainer
from rlalign.utils.metrics import read_metrics


def test_scene_sources_give_scenes_and_fixed_eval_scenes_follow_the_eval_prompts():
    drawn = parse_prompt_source("shapes-scenes:heldout").draw(4, seed=1)
    assert all(isinstance(scene, Scene) for scene in drawn)
    fixed = parse_prompt_source("shapes-scenes-eval:heldout").all()
    assert [scene.prompt for scene in fixed] == list(described_eval_prompts("heldout"))
    assert fixed == parse_prompt_source("shapes-scenes-eval:heldout").all()  # the same placements every time


def test_rewards_take_scene_prompts_as_the_images_captions_describe():
    scenes = parse_prompt_source("shapes-scenes-eval:train").all()[20:28]
    true, wrong = [s.prompt for s in scenes], [s.prompt for s in scenes[1:] + scenes[:1]]
    assert shapes_eval(scenes, true, metric="exact") == [1.0] * 8
    assert shapes_eval(scenes, wrong, metric="exact") == [0.0] * 8
    clip = build_reward(RewardSpec(name="clip_score"))
    assert clip(scenes, true) == pytest.approx(clip(["x"] * 8, true, images=render_batch(scenes)), abs=1e-6)
    assert caption_grammar(scenes, ["a red circle on the left", "red circle left"]) == [1.0, 0.0]


@pytest.mark.slow
def test_the_caption_config_trains_one_step(tmp_path):
    cfg = load_config("configs/shapes_insertion.yaml", [
        "train.steps=1", "train.prompts_per_step=2", "grpo.group_size=2", "train.micro_batch_size=4",
        "prompts.eval_samples_per_prompt=1", "logging.wandb_mode=disabled", "logging.progress_bar=false",
        f"output_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.policy.adapter_state().items()}
    trainer.run()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    step = next(r for r in records if "time/step" in r)
    assert step["debug/max_abs_logratio_first_iter"] <= 1e-5 and "rewards/clip/mean" in step
    final = [r for r in records if "eval/heldout/exact" in r][-1]
    assert 0.0 <= final["eval/heldout/base/exact"] <= 1.0 and "eval/heldout/position/exact" in final
    assert any(not torch.equal(before[k], v) for k, v in trainer.policy.adapter_state().items())
