"""Registry semantics: TRL's own reward functions and any module:function plug in unchanged (DESIGN §4)."""

import pickle

import pytest
import torch

from rewards import REGISTRY, build_reward
from rewards.worker import RewardWorker
from rlalign.config import RewardSpec
from rlalign.shapes import render_batch, sample_scenes

# TRL's docstring example for think_format_reward: conversational completions, one message each.
CONVERSATIONS = [
    [{"role": "assistant", "content": "<think>\nThis is my reasoning.\n</think>\nThis is my answer."}],
    [{"role": "assistant", "content": "<think>\nThis is my reasoning.\nThis is my answer."}],
]


def test_trl_think_format_reward_scores_as_in_trl():
    from trl.rewards import think_format_reward

    # TRL's signature starts with `completions`, not `prompts`: the worker must call by keyword, as
    # GRPOTrainer does (fn(prompts=..., completions=..., **columns)), or the arguments would shift.
    spec = RewardSpec(name="trl.rewards:think_format_reward", label="think")
    result = RewardWorker([spec]).score(["q0", "q1"], CONVERSATIONS)
    assert think_format_reward(CONVERSATIONS) == [1.0, 0.0]
    assert result.per_reward["think"].tolist() == [1.0, 0.0] and result.total.tolist() == [1.0, 0.0]


def test_worker_with_a_trl_reward_pickles():
    worker = pickle.loads(pickle.dumps(RewardWorker([RewardSpec(name="trl.rewards:think_format_reward")])))
    assert worker.score(["q0", "q1"], CONVERSATIONS).total.tolist() == [1.0, 0.0]


def test_trl_accuracy_reward_none_becomes_nan():
    pytest.importorskip("math_verify")  # TRL's accuracy_reward needs it; not a dependency of rlalign
    # The dataset column `solution` travels as metadata; an unparseable gold answer gives None -> NaN.
    spec = RewardSpec(name="trl.rewards:accuracy_reward", label="accuracy")
    completions = [[{"content": r"\boxed{\frac{1}{3}}"}], [{"content": r"\boxed{\frac{1}{2}}"}],
                   [{"content": "anything"}]]
    solution = [r"\frac{1}{3}", r"\frac{1}{3}", "not math at all"]
    result = RewardWorker([spec]).score(["q"] * 3, completions, {"solution": solution})
    assert result.per_reward["accuracy"][:2].tolist() == [1.0, 0.0] and result.stats["accuracy"]["nan_count"] == 1


def test_module_function_gets_spec_args_bound():
    # `rewards.shapes_eval:shapes_eval` with args is the same reward as the registered `shapes_eval`
    scenes = sample_scenes("heldout", 4, seed=1)
    prompts = [scenes[1].prompt, scenes[0].prompt, scenes[2].prompt, scenes[3].prompt]  # 0, 1 mismatched
    images = render_batch(scenes)
    by_path = build_reward(RewardSpec(name="rewards.shapes_eval:shapes_eval", args={"metric": "exact"}))
    by_name = build_reward(RewardSpec(name="shapes_eval", args={"metric": "exact"}))
    assert "shapes_eval" in REGISTRY
    assert by_path(prompts=prompts, completions=images) == by_name(prompts=prompts, completions=images)
    assert by_path(prompts=prompts, completions=images)[2:] == [1.0, 1.0]


def test_text_rewards_take_plain_strings():
    # A custom text reward in TRL's plain (non-conversational) form, as the insertion policies produce.
    result = RewardWorker([RewardSpec(name=f"{__name__}:ends_with_period")]).score(
        ["a", "b"], ["a red circle.", "a red circle"])
    assert result.total.tolist() == [1.0, 0.0]


def ends_with_period(completions, **kwargs):
    return [float(text.endswith(".")) for text in completions]


def test_unknown_or_unimportable_names_fail_clearly():
    with pytest.raises(KeyError, match="unknown reward 'clipp'"):
        build_reward(RewardSpec(name="clipp"))
    with pytest.raises(KeyError, match="cannot be imported"):
        build_reward(RewardSpec(name="trl.rewards:no_such_reward"))
    with pytest.raises(KeyError, match="cannot be imported"):
        build_reward(RewardSpec(name="no_such_module:fn"))


def test_images_pass_through_untouched():
    seen = {}

    def spy(prompts, completions, **kwargs):
        seen["completions"] = completions
        return [0.0] * len(prompts)

    worker = RewardWorker([RewardSpec(name="rewards.examples:saturation")])
    worker.functions["rewards.examples:saturation"] = spy
    images = torch.rand(2, 3, 8, 8)
    worker.score(["x", "y"], images)
    assert seen["completions"] is images
