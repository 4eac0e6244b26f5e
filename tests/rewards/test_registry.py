"""The registry is import strings resolved like a user's `module:function` / `module:factory()`, and a
spec's args are checked against the signature when the reward is built (docs/rewards.md)."""

import re
import subprocess
import sys

import pytest
from rlalign.rewards.aesthetic import AestheticScore
from rlalign.rewards.clip import ClipScore
from rlalign.rewards.registry import REGISTRY, build_reward
from rlalign.rewards.worker import RewardWorker

from rlalign.config import RewardSpec
from rlalign.shapes import render_batch, sample_scenes

SCENES = sample_scenes("heldout", 6, seed=11)
IMAGES = render_batch(SCENES)
PROMPTS = [scene.prompt for scene in SCENES]


@pytest.mark.parametrize("name, args", [("shapes_eval", {"metric": "exact"}), ("clip_score", {"batch_size": 4}),
                                        ("aesthetic", {"batch_size": 4})])
def test_a_registered_name_is_its_import_string(name, args):
    by_name = build_reward(RewardSpec(name=name, args=args))
    by_string = build_reward(RewardSpec(name=REGISTRY[name], args=args))
    assert by_name(prompts=PROMPTS, completions=IMAGES) == by_string(prompts=PROMPTS, completions=IMAGES)


def test_registry_entries_build_what_the_constructors_build():
    args = {"batch_size": 4, "use_logit_scale": True}
    clip = build_reward(RewardSpec(name="clip_score", args=args))
    assert type(clip) is ClipScore and clip.clip is ClipScore(**args).clip  # one cached model
    assert clip(PROMPTS, IMAGES) == ClipScore(**args)(PROMPTS, IMAGES)  # bit-identical scores
    aesthetic = build_reward(RewardSpec(name="aesthetic"))
    assert type(aesthetic) is AestheticScore and aesthetic.mlp is AestheticScore().mlp
    assert aesthetic(PROMPTS, IMAGES) == AestheticScore()(PROMPTS, IMAGES)


def test_importing_rewards_loads_no_model_code():
    # The config imports `rewards` to validate names; open_clip alone takes seconds to import.
    code = "import sys, rewards; print(sorted({'torch', 'open_clip', 'scipy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- args checked against the signature -------------------------------------------------------


def longer_than(prompts, completions, min_words=2):
    return [float(len(text.split()) > min_words) for text in completions]


def ends_with(prompts, completions, **kwargs):
    return [float(text.endswith(kwargs.get("suffix", "."))) for text in completions]


def matches_solution(prompts, completions, solution, bonus=1.0):
    return [bonus * (text == gold) for text, gold in zip(completions, solution)]


def threshold_reward(threshold, scale=1.0):
    def reward(prompts, completions, **kwargs):
        return [scale * float(len(text) > threshold) for text in completions]

    return reward


@pytest.mark.parametrize("name, args, unknown, accepted", [
    ("clip_score", {"pretrained": "openai"}, "pretrained",
     "architecture, weights, device, batch_size, use_logit_scale, class_names, prompt_template"),
    ("aesthetic", {"architecture": "ViT-L-14"}, "architecture",
     "weights, clip_architecture, clip_weights, device, batch_size"),
    (f"{__name__}:longer_than", {"min_word": 3}, "min_word", "min_words"),
    (f"{__name__}:threshold_reward()", {"threshold": 3, "scal": 2}, "scal", "threshold, scale"),
])
def test_unknown_args_are_refused_naming_them_and_the_accepted_ones(name, args, unknown, accepted):
    with pytest.raises(ValueError, match=rf"reward {re.escape(repr(name))}: unknown args \['{unknown}'\] "
                                         rf"\(remove or rename them\); it accepts {accepted} in the spec's `args`"):
        build_reward(RewardSpec(name=name, args=args))


def test_a_missing_required_factory_arg_is_refused():
    with pytest.raises(ValueError, match=r"missing required args \['threshold'\] \(add them\); "
                                         r"it accepts threshold, scale"):
        build_reward(RewardSpec(name=f"{__name__}:threshold_reward()", args={"scale": 2.0}))
    reward = build_reward(RewardSpec(name=f"{__name__}:threshold_reward()", args={"threshold": 3, "scale": 2.0}))
    assert reward(["p", "p"], ["abc", "abcd"]) == [0.0, 2.0]


def test_a_function_taking_kwargs_accepts_any_arg():
    worker = RewardWorker([RewardSpec(name=f"{__name__}:ends_with", args={"suffix": "!"})])
    assert worker.score(["p", "p"], ["a red circle!", "a red circle."]).total.tolist() == [1.0, 0.0]


def test_a_functions_metadata_parameters_are_not_args():
    # `solution` is a dataset column the worker passes with each batch, not a setting of the spec.
    spec = RewardSpec(name=f"{__name__}:matches_solution", label="match", args={"bonus": 2.0})
    result = RewardWorker([spec]).score(["p", "p"], ["1/3", "1/2"], {"solution": ["1/3", "1/3"]})
    assert result.per_reward["match"].tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match=r"unknown args \['prompts'\]"):
        build_reward(RewardSpec(name=f"{__name__}:longer_than", args={"prompts": ["p"]}))


@pytest.mark.parametrize("value", ["off", "no", "false"])
def test_text_for_a_boolean_arg_is_refused(value):
    """YAML 1.2 reads `off` as text, and bool("off") is True: the reward would do the opposite of what
    the config says. clip_score's use_logit_scale is annotated bool (a string under postponed annotations)."""
    with pytest.raises(ValueError, match=rf"args.use_logit_scale = '{value}' is text, but the parameter is a boolean"):
        build_reward(RewardSpec(name="clip_score", args={"use_logit_scale": value}))
