"""Registry semantics: TRL's own reward functions and any module:function plug in unchanged (docs/rewards.md)."""

import pickle

import pytest
import torch
from rlalign.rewards.registry import REGISTRY, build_reward
from rlalign.rewards.worker import RewardWorker

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
    # `rlalign.rewards.shapes_eval:shapes_eval` with args is the same reward as the registered `shapes_eval`
    scenes = sample_scenes("heldout", 4, seed=1)
    prompts = [scenes[1].prompt, scenes[0].prompt, scenes[2].prompt, scenes[3].prompt]  # 0, 1 mismatched
    images = render_batch(scenes)
    by_path = build_reward(RewardSpec(name="rlalign.rewards.shapes_eval:shapes_eval", args={"metric": "exact"}))
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

    worker = RewardWorker([RewardSpec(name="rlalign.rewards.examples:saturation")])
    worker.functions["rlalign.rewards.examples:saturation"] = spy
    images = torch.rand(2, 3, 8, 8)
    worker.score(["x", "y"], images)
    assert seen["completions"] is images


# ---- TRL's reward factories (`module:factory()`) and the completion_ids they read ----------------

VOCABULARY = ["<pad>", "<unk>", "<bos>", "a", "red", "circle", "above", "blue", "square"]


def test_trl_repetition_penalty_factory_scores_word_ids_as_trl_does():
    from trl.rewards import get_repetition_penalty_reward

    from rlalign.policies.insertion.model import WordIds

    captions = ["a red circle", "a red a red a red", "a red circle above a blue square"]
    spec = RewardSpec(name="trl.rewards:get_repetition_penalty_reward()", label="repetition",
                      args={"ngram_size": 2, "max_penalty": -1.0})
    result = RewardWorker([spec], combine=None, tokenizer=WordIds(VOCABULARY)).score(["p"] * 3, captions)
    # "a red a red a red" has 5 bigrams, 2 distinct: penalty (1 − 2/5)·(−1) = −0.6; the others repeat none.
    assert result.per_reward["repetition"].tolist() == pytest.approx([0.0, -0.6, 0.0])
    ids = WordIds(VOCABULARY)(captions)
    assert ids[1] == [3, 4, 3, 4, 3, 4]
    assert get_repetition_penalty_reward(ngram_size=2)(ids) == pytest.approx(result.per_reward["repetition"].tolist())


def test_trl_soft_overlong_factory_reads_lengths_and_pickles():
    from rlalign.policies.insertion.model import WordIds

    spec = RewardSpec(name="trl.rewards:get_soft_overlong_punishment()",
                      args={"max_completion_len": 7, "soft_punish_cache": 2})
    worker = pickle.loads(pickle.dumps(RewardWorker([spec], combine=None, tokenizer=WordIds(VOCABULARY))))
    # lengths 5, 6, 8 words: ≤ 7 − 2 → 0; 6 → (5 − 6)/2 = −0.5; > 7 → −1. Unknown words still count.
    captions = ["a red circle above a", "a red circle above a zebra", "a red circle above a blue square a"]
    assert worker.score(["p"] * 3, captions).per_reward[spec.name].tolist() == [0.0, -0.5, -1.0]


def test_factory_errors_name_the_reward_and_the_fix():
    with pytest.raises(ValueError, match="get_repetition_penalty_reward.*refused args"):
        build_reward(RewardSpec(name="trl.rewards:get_repetition_penalty_reward()", args={"max_penalty": 1.0}))
    with pytest.raises(TypeError, match="not a reward function"):
        build_reward(RewardSpec(name="builtins:dict()"))  # dict() returns {}, which is no function
    # A module attribute that is no function is refused when the reward is built, not at its first call.
    with pytest.raises(TypeError, match="'math:pi' is a float, not a function"):
        build_reward(RewardSpec(name="math:pi"))


def test_rlalign_score_hands_caption_ids_to_a_trl_factory(tmp_path):
    from rlalign.commands.score import run_score

    config = tmp_path / "c.yaml"
    config.write_text("policy: {kind: insertion, checkpoint: 'builtin:shapes-captioner'}\n"
                      "rewards:\n  functions:\n    - {name: 'trl.rewards:get_repetition_penalty_reward()', "
                      "label: repetition, args: {ngram_size: 2}}\n")
    captions = tmp_path / "captions.txt"
    captions.write_text("p\ta red circle\np\ta red a red a red\n")
    table = run_score(str(config), str(captions), [], per_item=True)
    # The vocabulary comes from policy.checkpoint; bigram repeats as in the test above: 0 and −0.6.
    # Cells split on blanks, with or without markdown table bars.
    rows = [line.replace("|", " ").split() for line in table.splitlines() if line.strip("| ").startswith("line ")]
    assert [float(row[3]) for row in rows] == pytest.approx([0.0, -0.6]), table


# ---- all six trl.rewards functions through one config, on plain text completions -------------------

SIX_TRL_REWARDS = """
rewards:
  combine: sum_then_normalize
  functions:
    - {name: 'trl.rewards:think_format_reward', label: think}
    - {name: 'trl.rewards:accuracy_reward', label: accuracy}
    - {name: 'trl.rewards:reasoning_accuracy_reward', label: reasoning}
    - {name: 'trl.rewards:get_cosine_scaled_reward()', label: cosine, args: {max_len: 8}}
    - {name: 'trl.rewards:get_repetition_penalty_reward()', label: repetition, args: {ngram_size: 2}}
    - {name: 'trl.rewards:get_soft_overlong_punishment()', label: overlong,
       args: {max_completion_len: 10, soft_punish_cache: 4}}
"""
TEXTS = ["<think>\nadd them\n</think>\nthe answer is $\\frac{1}{3}$",
         "guess</think> so \\boxed{\\frac{1}{2}}",
         "so so so so so so so so so so \\boxed{2}",
         "<think>\nsee above\n</think>\n$7$"]
SOLUTIONS = ["$\\frac{1}{3}$", "$\\frac{1}{3}$", "$2$", "not math at all"]


def words(texts: list[str]) -> list[list[int]]:
    """A stand-in text policy's tokenizer: one id per whitespace-separated word."""
    vocabulary: dict[str, int] = {}
    return [[vocabulary.setdefault(word, len(vocabulary)) for word in text.split()] for text in texts]


def test_all_six_trl_rewards_run_unchanged_through_a_config(tmp_path):
    """Each of TRL's six reward functions, named in a config, scores plain text completions exactly as
    a direct call on TRL's own input forms does: conversational messages for the four that read
    `completions`, token ids for the two that read `completion_ids`."""
    pytest.importorskip("math_verify", reason="the `math` extra (pip install 'rlalign[math]')")
    import yaml
    from trl import rewards as trl_rewards

    from rlalign.config import load_config

    cfg = load_config(yaml.safe_load(SIX_TRL_REWARDS))
    worker = RewardWorker(cfg.rewards.functions, combine=None, tokenizer=words)
    result = worker.score(["q"] * 4, TEXTS, {"solution": SOLUTIONS})
    assert worker.conversational == {"think": True, "accuracy": True, "reasoning": True, "cosine": True,
                                     "repetition": False, "overlong": False}
    messages, ids = [[{"role": "assistant", "content": text}] for text in TEXTS], words(TEXTS)
    direct = {
        "think": trl_rewards.think_format_reward(messages),
        "accuracy": trl_rewards.accuracy_reward(messages, SOLUTIONS),
        "reasoning": trl_rewards.reasoning_accuracy_reward(messages, SOLUTIONS),
        "cosine": trl_rewards.get_cosine_scaled_reward(max_len=8)(messages, SOLUTIONS, ids),
        "repetition": trl_rewards.get_repetition_penalty_reward(ngram_size=2)(ids),
        "overlong": trl_rewards.get_soft_overlong_punishment(10, 4)(ids),
    }
    for label, expected in direct.items():
        as_floats = [float("nan") if value is None else value for value in expected]
        assert result.per_reward[label].tolist() == pytest.approx(as_floats, nan_ok=True), label
    # The batch exercises what each reward is for: a correct, a wrong and an unparseable gold answer,
    # a well- and a badly-formed think block, a repetitive and an overlong completion.
    assert direct["accuracy"][:3] == [1.0, 0.0, 1.0] and direct["accuracy"][3] is None
    assert direct["think"] == [1.0, 0.0, 0.0, 1.0]
    assert direct["repetition"][2] < 0 and direct["overlong"][2] < 0


def test_completion_format_can_be_forced_either_way():
    seen = {}

    def spy(prompts, completions, **kwargs):
        seen["prompts"], seen["completions"] = prompts, completions
        return [0.0] * len(prompts)

    for completion_format, expected in [("conversational", [{"role": "assistant", "content": "a red circle"}]),
                                        ("plain", "a red circle"), ("auto", "a red circle")]:
        worker = RewardWorker([RewardSpec(name="rlalign.rewards.examples:saturation", completion_format=completion_format)],
                              combine=None)
        worker.functions["rlalign.rewards.examples:saturation"] = spy
        worker.score(["a red circle?"], ["a red circle"])
        assert seen["completions"] == [expected], completion_format
    assert seen["prompts"] == ["a red circle?"]  # auto and plain leave prompts as they are


def test_a_math_reward_without_math_verify_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "math_verify" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'rlalign\[math\]'"):
        build_reward(RewardSpec(name="trl.rewards:accuracy_reward"))
