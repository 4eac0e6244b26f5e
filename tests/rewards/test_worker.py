"""The reward worker: output checks in raise and skip mode, combination, metrics, pickling."""

import logging
import math
import pickle

import numpy as np
import pytest
import torch
from rlalign.rewards.worker import RewardError, RewardResult, RewardWorker

from rlalign.config import RewardSpec
from rlalign.shapes import render_batch, sample_scenes

HERE = __name__  # rewards below are named as module:function, the way a config names them
PROMPTS = ["p0", "p1", "p2", "p3"]
TEXTS = ["a", "bb", "ccc", "dddd"]
NAN = math.nan


def length(prompts, completions, **kwargs):
    return [float(len(text)) for text in completions]  # [1, 2, 3, 4]


def sometimes(prompts, completions, **kwargs):
    return [None, 10.0, None, 0.0]  # applies to samples 1 and 3 only


def seen_kwargs(prompts, completions, **kwargs):
    return [float(len(kwargs["scenes"])) if "scenes" in kwargs else -1.0] * len(completions)


def as_tensor(prompts, completions, **kwargs):
    return torch.arange(len(completions), dtype=torch.float32)  # vectorised rewards may return [B]


def bad(prompts, completions, *, case, **kwargs):
    """One badly behaved reward per `case` (bound from the spec's args)."""
    if case == "raises":
        raise RuntimeError("model not loaded")
    return {
        "short": [1.0, 2.0, 3.0],
        "long": [1.0] * 5,
        "float": 0.5,
        "dict": {"p0": 1.0},
        "string": "1234",
        "matrix": torch.ones(4, 2),
        "inf": [1.0, math.inf, 3.0, 4.0],
        "nan": [1.0, 2.0, math.nan, 4.0],
        "word": [1.0, "high", 3.0, 4.0],
        "numpy_nan": np.array([1.0, 2.0, 3.0, np.nan]),
        "overflow": [1.0, 2.0, 4e38, 4.0],  # finite as a Python float, inf as float32
    }[case]


def worker(*specs, combine="sum_then_normalize"):
    return RewardWorker([RewardSpec(**spec) for spec in specs], combine=combine)


def bad_worker(case, on_error):
    return worker({"name": f"{HERE}:bad", "label": "flaky", "on_error": on_error, "args": {"case": case}})


# The whole output unusable -> in skip mode every sample is NaN.
WHOLE = [
    ("raises", "raised RuntimeError: model not loaded"),
    ("short", "returned 3 values for 4 completions"),
    ("long", "returned 5 values for 4 completions"),
    ("float", "returned a float, not a list of 4 numbers"),
    ("dict", "returned a dict, not a list of 4 numbers"),
    ("string", "returned a str, not a list of 4 numbers"),
    ("matrix", "returned an array of shape (4, 2)"),
]
# Some entries bad -> in skip mode only those are NaN.
ENTRIES = [
    ("inf", "index 1: non-finite value inf", [1, NAN, 3, 4]),
    ("nan", "index 2: non-finite value nan", [1, 2, NAN, 4]),
    ("word", "index 1: non-numeric entry 'high'", [1, NAN, 3, 4]),
    ("numpy_nan", "index 3: non-finite value nan", [1, 2, 3, NAN]),
    ("overflow", "index 2: value 4e+38 overflows float32", [1, 2, NAN, 4]),
]


@pytest.mark.parametrize("case, problem", WHOLE + [(case, problem) for case, problem, _ in ENTRIES])
def test_bad_output_raises_naming_reward_problem_and_fix(case, problem):
    with pytest.raises(RewardError) as caught:
        bad_worker(case, "raise").score(PROMPTS, TEXTS)
    message = str(caught.value)
    assert message.startswith("reward 'flaky' ") and problem in message and "on_error: skip" in message
    assert isinstance(caught.value, ValueError)  # the CLI reports ValueErrors as one line, exit 2


@pytest.mark.parametrize("case, problem", WHOLE)
def test_skip_nans_every_sample_of_an_unusable_output(case, problem, caplog):
    with caplog.at_level(logging.WARNING, logger="rlalign.rewards.worker"):
        result = bad_worker(case, "skip").score(PROMPTS, TEXTS)
    assert result.per_reward["flaky"].isnan().all() and result.skipped == {"flaky": 4}
    assert result.stats["flaky"]["nan_count"] == 4 and result.metrics()["rewards/flaky/skipped"] == 4
    assert problem in caplog.text and "4 sample(s) set to NaN" in caplog.text


@pytest.mark.parametrize("case, problem, values", ENTRIES)
def test_skip_nans_only_the_bad_entries(case, problem, values, caplog):
    with caplog.at_level(logging.WARNING, logger="rlalign.rewards.worker"):
        result = bad_worker(case, "skip").score(PROMPTS, TEXTS)
    torch.testing.assert_close(result.per_reward["flaky"], torch.tensor(values, dtype=torch.float32), equal_nan=True)
    assert result.skipped == {"flaky": 1} and problem in caplog.text and "1 sample(s) set to NaN" in caplog.text


def test_error_message_counts_many_bad_entries():
    many = worker({"name": f"{HERE}:bad", "label": "flaky", "args": {"case": "word"}})
    many.functions["flaky"] = lambda prompts, completions, **kw: ["x"] * 8
    with pytest.raises(RewardError, match=r"returned 8 bad value\(s\) of 8: index 0: .*; and 5 more"):
        many.score(PROMPTS * 2, TEXTS * 2)


def test_none_is_not_applicable_not_an_error():
    result = worker({"name": f"{HERE}:sometimes"}).score(PROMPTS, TEXTS)
    # valid [10, 0]: mean 5, sample std sqrt(50) = 7.071068
    assert result.skipped == {f"{HERE}:sometimes": 0}
    stats = result.stats[f"{HERE}:sometimes"]
    assert (stats["mean"], stats["count"], stats["nan_count"]) == (5.0, 2, 2)
    assert stats["std"] == pytest.approx(math.sqrt(50))


def test_tensor_output_is_accepted():
    result = worker({"name": f"{HERE}:as_tensor", "label": "t"}).score(PROMPTS, TEXTS)
    assert result.per_reward["t"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_total_combines_with_weights_and_skipped_reward_counts_zero():
    # length = [1, 2, 3, 4] (weight 1), sometimes = [-, 10, -, 0] (weight 0.5)
    # total = [1 + 0, 2 + 5, 3 + 0, 4 + 0] ; the skipped reward (all NaN) adds 0 everywhere
    result = worker(
        {"name": f"{HERE}:length", "label": "length"},
        {"name": f"{HERE}:sometimes", "label": "sometimes", "weight": 0.5},
        {"name": f"{HERE}:bad", "label": "flaky", "on_error": "skip", "args": {"case": "raises"}},
    ).score(PROMPTS, TEXTS)
    assert result.total.tolist() == [1.0, 7.0, 3.0, 4.0]
    assert result.skipped == {"length": 0, "sometimes": 0, "flaky": 4}


def test_metrics_use_design_names_and_time_every_reward():
    result = worker({"name": f"{HERE}:length", "label": "length"},
                    {"name": f"{HERE}:sometimes", "label": "sometimes", "weight": 0.0}).score(PROMPTS, TEXTS)
    metrics = result.metrics()
    # total = length only (sometimes has weight 0): [1, 2, 3, 4], mean 2.5, std sqrt(5/3)
    assert metrics["rewards/total/mean"] == pytest.approx(2.5)
    assert metrics["rewards/total/std"] == pytest.approx(math.sqrt(5 / 3))
    assert metrics["rewards/sometimes/mean"] == 5.0 and metrics["rewards/sometimes/nan_count"] == 2
    for label in ("length", "sometimes"):
        assert {f"rewards/{label}/{key}" for key in ("mean", "std", "nan_count", "skipped")} <= set(metrics)
        assert metrics[f"time/reward/{label}"] >= 0 and result.seconds[label] == metrics[f"time/reward/{label}"]


def test_metadata_reaches_every_reward_as_keywords():
    result = worker({"name": f"{HERE}:seen_kwargs", "label": "k"}).score(PROMPTS, TEXTS, {"scenes": [1, 2, 3, 4]})
    assert result.per_reward["k"].tolist() == [4.0] * 4


def test_evaluation_worker_reports_without_combining():
    # combine=None: weights are ignored, even all-zero ones, and there is no total
    result = worker({"name": f"{HERE}:length", "weight": 0.0}, combine=None).score(PROMPTS, TEXTS)
    assert result.total is None and "rewards/total/mean" not in result.metrics()


def test_worker_refuses_bad_configurations():
    with pytest.raises(ValueError, match="distinct"):
        worker({"name": f"{HERE}:length"}, {"name": f"{HERE}:length"})
    with pytest.raises(ValueError, match="weight 0"):
        worker({"name": f"{HERE}:length", "weight": 0.0})
    with pytest.raises(ValueError, match="evaluation ground truth"):
        worker({"name": "shapes_eval"})
    with pytest.raises(ValueError, match="3 prompts for 4 completions"):
        worker({"name": f"{HERE}:length"}).score(PROMPTS[:3], TEXTS)


def test_worker_and_result_pickle_round_trip():
    # shapes_eval (logged, weight 0) and a module:function reward, on real Shapes renders
    scenes = sample_scenes("train", 4, seed=3)
    prompts, images = [scene.prompt for scene in scenes], render_batch(scenes)
    original = worker({"name": "shapes_eval", "weight": 0.0, "args": {"metric": "exact"}},
                      {"name": "rlalign.rewards.examples:saturation", "label": "saturation"})
    copy = pickle.loads(pickle.dumps(original))
    assert copy.labels == original.labels and copy.specs == original.specs
    first, second = original.score(prompts, images), copy.score(prompts, images)
    assert first.per_reward["shapes_eval"].tolist() == [1.0] * 4  # true renders pass the verifier
    assert torch.equal(first.total, second.total) and torch.equal(first.total, first.per_reward["saturation"])
    restored = pickle.loads(pickle.dumps(first))
    assert isinstance(restored, RewardResult) and restored.metrics() == first.metrics()


def test_a_reward_that_writes_into_the_images_is_stopped_and_lists_are_private(monkeypatch):
    """A weight-0 reward blackening `completions` in place would change what every later reward, the
    verifier and the grids see: it is stopped at once, even with on_error: skip. Lists are private copies."""
    import sys
    import types

    seen = {}
    module = types.ModuleType("writers")

    def blacken(prompts, completions, **kwargs):
        completions.zero_()
        return [0.0] * len(completions)

    def pop_prompts(prompts, completions, **kwargs):
        prompts.clear()  # a private list: the next reward still gets every prompt
        return [0.0] * len(completions)

    def record(prompts, completions, **kwargs):
        seen["prompts"] = list(prompts)
        return [1.0] * len(completions)

    module.blacken, module.pop_prompts, module.record = blacken, pop_prompts, record
    monkeypatch.setitem(sys.modules, "writers", module)
    images = torch.rand(2, 3, 4, 4)
    worker = RewardWorker([{"name": "writers:pop_prompts", "weight": 0.0}, {"name": "writers:record"}])
    worker.score(["a", "b"], images)
    assert seen["prompts"] == ["a", "b"]
    worker = RewardWorker([{"name": "writers:blacken", "weight": 0.0, "on_error": "skip"}, {"name": "writers:record"}])
    with pytest.raises(RewardError, match=r"reward 'writers:blacken' changed the images .* in place"):
        worker.score(["a", "b"], images.clone())


def test_the_local_scorer_keeps_rewards_timeout_s(monkeypatch):
    """rewards.timeout_s means the same in process as on reward actors: a reward that does not answer
    in time stops the run with RewardActorFailure (here it waits for an event that never comes)."""
    import sys
    import threading
    import types

    from rlalign.rewards.scoring import LocalScorer
    from rlalign.rewards.worker import RewardActorFailure

    never, module = threading.Event(), types.ModuleType("slow_rewards")

    def hangs(prompts, completions, **kwargs):
        never.wait()
        return [0.0] * len(completions)

    module.hangs = hangs
    monkeypatch.setitem(sys.modules, "slow_rewards", module)
    scorer = LocalScorer(RewardWorker([{"name": "slow_rewards:hangs"}]), timeout_s=0.5)
    try:
        with pytest.raises(RewardActorFailure, match=r"rewards of shard 0: no answer within rewards.timeout_s = 0.5 s"):
            scorer.submit(0, ["a"], ["text"])
    finally:
        never.set()  # let the left-behind thread end
    fast = LocalScorer(RewardWorker([{"name": "rlalign.rewards.examples:exact_match"}]), timeout_s=60)
    fast.submit(0, [{"prompt": "a", "solution": "x"}], ["x"])
    assert fast.collect().per_reward["rlalign.rewards.examples:exact_match"].tolist() == [1.0]
