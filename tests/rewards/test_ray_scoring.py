"""Reward actors on a real local Ray (no mocks): shard-by-shard scoring, bit-identical to in-process.

One Ray for the module; the driver and every actor run torch with one thread, because a reward's
float arithmetic (CLIP's matmuls and convolutions) may round differently with another thread count.
"""

import os
from pathlib import Path

import pytest
import torch
from rlalign.rewards.ray_scoring import RayScorer
from rlalign.rewards.scoring import LocalScorer
from rlalign.rewards.worker import RewardError, RewardWorker
from rlalign.rollouts import LocalBackend
from support.local_ray import local_ray
from support.next_scale import PROMPTS
from support.training import save_tiny_checkpoint
from support.training import tiny_config as tiny_training_config

from rlalign.config import RewardsConfig
from rlalign.policies import load_policy
from rlalign.training.trainer import Trainer

THREADS, SEED, GROUP = 1, 5, 4
ACTORS = {"backend": "ray", "num_workers": 2, "cpus_per_worker": 0.5, "torch_threads": THREADS, "timeout_s": 120.0}
IMAGE_REWARDS = [{"name": "clip_score"}, {"name": "aesthetic", "weight": 0.1}, {"name": "rlalign.rewards.examples:saturation"}]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    support = str(Path(__file__).parents[1])  # the actors import support.actor_rewards by name
    path = os.pathsep.join(filter(None, [support, os.environ.get("PYTHONPATH", "")]))
    with local_ray(THREADS, runtime_env={"env_vars": {"PYTHONPATH": path}}):
        yield


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def rewards_config(functions, **settings) -> RewardsConfig:
    from rlalign.config.schema import RewardSpec

    return RewardsConfig(functions=[RewardSpec(**spec) for spec in functions], eval=[], **settings)


def test_reward_actors_score_each_shard_as_in_process_bit_for_bit(tiny_checkpoint):
    """Three shards of a real rollout, scored by the built-in CLIP, the aesthetic predictor and a
    plain function on two actors, equal the in-process scorer's values and combined total exactly."""
    policy = load_policy({"checkpoint": str(tiny_checkpoint), "lora": {"rank": 4}})
    worker = RewardWorker(rewards_config(IMAGE_REWARDS).functions)
    local, remote = LocalScorer(worker), RayScorer(rewards_config(IMAGE_REWARDS, **ACTORS), worker)
    shards = []

    def both(index, shard):
        shards.append((index, len(shard)))
        local.submit(index, shard.prompts, shard.outputs)
        remote.submit(index, shard.prompts, shard.outputs)

    rollout = LocalBackend.sharing(policy, SEED, shards=3).generate(PROMPTS, GROUP, 2, step=1, on_shard=both)
    assert shards == [(0, GROUP), (1, GROUP), (2, GROUP)]  # handed over one by one, in batch order
    expected, got = local.collect(), remote.collect()
    remote.close()
    assert list(got.per_reward) == ["clip_score", "aesthetic", "rlalign.rewards.examples:saturation"]
    for label, values in expected.per_reward.items():
        assert values.shape == (len(rollout),) and values.isfinite().all()
        assert torch.equal(got.per_reward[label], values), label
    assert torch.equal(worker.finish(got).total, worker.finish(expected).total)
    assert worker.finish(got).total.std() > 0  # the rewards really tell the samples apart


def test_sharded_rollout_is_the_unsharded_rollout(tiny_checkpoint):
    """Per-sample generators: cutting a step into shards changes no token and no log-prob."""
    policy = load_policy({"checkpoint": str(tiny_checkpoint), "lora": {"rank": 4}})
    whole = LocalBackend.sharing(policy, SEED).generate(PROMPTS, GROUP, 2, step=1)
    cut = LocalBackend.sharing(policy, SEED, shards=2).generate(PROMPTS, GROUP, 2, step=1)
    assert all(torch.equal(a, b) for a, b in zip(whole.state.tokens, cut.state.tokens))
    assert all(torch.equal(a, b) for a, b in zip(whole.old_logp, cut.old_logp))
    assert torch.equal(whole.group_ids, cut.group_ids)


def test_submit_returns_before_the_shard_is_scored(tmp_path):
    """The overlap, shown without timing: the reward waits for a file that the driver writes only
    after submit() has returned; an in-process (blocking) submit would never let it finish."""
    marker = tmp_path / "submitted"
    spec = {"name": "support.actor_rewards:waits_for_marker", "args": {"marker": str(marker)}}
    worker = RewardWorker(rewards_config([spec]).functions)
    scorer = RayScorer(rewards_config([spec], **ACTORS), worker)
    scorer.submit(0, ["a", "b"], ["x", "y"])
    marker.touch()
    got = scorer.collect()
    scorer.close()
    assert got.per_reward["support.actor_rewards:waits_for_marker"].tolist() == [1.0, 1.0]


def test_a_bad_reward_output_on_an_actor_fails_as_in_process():
    """The actor's RewardError arrives as a RewardError naming the reward and the fix."""
    spec = {"name": "support.actor_rewards:one_short", "label": "short"}
    worker = RewardWorker(rewards_config([spec]).functions)
    scorer = RayScorer(rewards_config([spec], **ACTORS), worker)
    scorer.submit(0, ["a", "b", "c"], ["x", "y", "z"])
    with pytest.raises(RewardError, match=r"reward 'short' returned 2 values for 3 completions.*on_error: skip"):
        scorer.collect()
    scorer.close()


def test_training_with_reward_actors_equals_training_in_process(tmp_path, tiny_checkpoint):
    """Three steps with two shards per step: reward actors give the same rewards, the same
    advantages and so the same adapter as scoring in the trainer's process."""
    sharded = {"rollout.shards": 2}
    actors = {f"rewards.{key}": value for key, value in ACTORS.items()}
    local = Trainer(tiny_training_config(tmp_path / "local", tiny_checkpoint, eval_samples=1, steps=3, **sharded))
    local.run()
    remote = Trainer(tiny_training_config(tmp_path / "ray", tiny_checkpoint, eval_samples=1, steps=3, **sharded,
                                          **actors))
    remote.run()
    assert remote.scorer.actors == []  # run() stopped its reward actors
    for key in ("rewards/rlalign.rewards.examples:saturation/mean", "rewards/total/std", "debug/advantage_abs_mean"):
        assert [r[key] for r in remote.history] == [r[key] for r in local.history], key
    expected, got = local.policy.adapter_state(), remote.policy.adapter_state()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert all(r["debug/max_abs_logratio_first_iter"] == 0.0 for r in remote.history)  # still exactly on-policy


def test_a_reward_defined_in_python_travels_to_the_actors_by_value():
    """A closure defined in this test (its module cannot be imported by an actor) is sent by value and
    scores on the actors exactly as in process; one that cannot be pickled is refused at start."""
    import threading

    offset = 0.25

    def closure(prompts, completions, **kwargs):
        return (completions.mean(dim=(1, 2, 3)) + offset).tolist()

    specs = [{"name": "python:closure", "label": "closure"}]
    worker = RewardWorker(specs, callables={"python:closure": closure})
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    local, remote = LocalScorer(worker), RayScorer(rewards_config([], **ACTORS), worker)
    try:
        for scorer in (local, remote):
            scorer.submit(0, PROMPTS[:2] * 2, images)
        assert torch.equal(remote.collect().per_reward["closure"], local.collect().per_reward["closure"])
    finally:
        remote.close()

    class Locked:
        def __init__(self):
            self.lock = threading.Lock()

        def __call__(self, prompts, completions, **kwargs):
            return [0.0] * len(completions)

    locked = RewardWorker([{"name": "python:Locked", "label": "Locked"}], callables={"python:Locked": Locked()})
    with pytest.raises(ValueError, match=r"reward 'python:Locked' cannot be sent to Ray reward actors.*"
                                         r"rewards.backend: local"):
        RayScorer(rewards_config([], **ACTORS), locked)


def test_a_partial_of_a_local_function_travels_and_python_modules_are_not_sent_by_value():
    import functools

    from rlalign.rewards.ray_scoring import _check_travels, _defining_module, _installed

    def scaled(prompts, completions, scale=1.0, **kwargs):
        return (completions.mean(dim=(1, 2, 3)) * scale).tolist()

    reward = functools.partial(scaled, scale=2.0)
    assert _defining_module(reward).__name__ == __name__ and not _installed(_defining_module(reward))
    assert _installed(functools) and _installed(torch)  # the standard library and packages go by reference
    worker = RewardWorker([{"name": "python:scaled", "label": "scaled"}], callables={"python:scaled": reward})
    _check_travels(worker)  # no refusal
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    remote = RayScorer(rewards_config([], **ACTORS), worker)
    try:
        remote.submit(0, PROMPTS[:2], images)
        assert torch.equal(remote.collect().per_reward["scaled"], LocalScorer(worker).worker.score_raw(
            PROMPTS[:2], images).per_reward["scaled"])
    finally:
        remote.close()
