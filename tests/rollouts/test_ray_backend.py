"""Integration tier: the Ray backend on a real local Ray cluster (no mocks), with a tiny model.

One Ray for the module (num_cpus=2, this machine's cores) and one pair of actors shared by the
backend-level tests: an actor starts in ~10 s here (importing torch and peft), so the tests reuse
them. Failures are injected by marker files that the shared workers check (see FaultyWorker).
Every test backend reserves 0.5 CPU per actor, so the trainer's own pair fits beside the shared one.

Determinism, precisely: tokens, log-probs and kept sets are bitwise identical for any split of the
batch across workers. The decoded images are bitwise identical between backends for the same split;
across splits they may differ by float rounding (~1e-6), because oneDNN picks its convolution kernel
by batch size and thread count (docs/distributed.md, "Determinism").
"""

import os
import re
import sys
import time
from pathlib import Path

import pytest
import ray
import torch
from rlalign.rollouts import LocalBackend, RolloutFailure, RolloutWorker, StaleAdapterError
from rlalign.rollouts.ray_backend import RayBackend
from support.local_ray import local_ray
from support.next_scale import PROMPTS, perturb_adapter
from support.training import save_tiny_checkpoint
from support.training import tiny_config as tiny_training_config

from rlalign.config import RolloutConfig
from rlalign.policies import load_policy
from rlalign.training.trainer import Trainer

# FaultyWorker is defined in this test module, which Ray's worker processes cannot import by name:
# ship its code by value instead.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

RUN_SEED, STEP, GROUP, PREFIX, THREADS = 11, 3, 4, 2, 1
TEST_ROLLOUT = {"cpus_per_worker": 0.5, "torch_threads": THREADS}


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    with local_ray(THREADS):  # the driver's references decode with the actors' thread count
        yield


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def policy_config(tiny_checkpoint):
    return {"checkpoint": str(tiny_checkpoint), "lora": {"rank": 4}}


@pytest.fixture(scope="module")
def adapter(policy_config):
    """A perturbed adapter (B ≠ 0), so a replica that missed the sync would sample differently."""
    policy = load_policy(policy_config)
    perturb_adapter(policy, seed=5)
    return policy.adapter_state()


def local_rollout(policy_config, adapter, num_workers):
    """The reference: the local backend with in-process workers, same seeds, same threads."""
    backend = LocalBackend([RolloutWorker(policy_config, torch_threads=THREADS) for _ in range(num_workers)],
                           RUN_SEED)
    backend.sync(1, adapter)
    return backend.generate(PROMPTS, GROUP, PREFIX, STEP)


# -------------------------------------------------------------------------------------------------
# The shared pair of actors, with failures injected on request, deterministically: a worker that
# removes a marker file (an atomic claim, so exactly one worker fails however the shards race) fails.
# -------------------------------------------------------------------------------------------------

class FaultyWorker(RolloutWorker):
    """A RolloutWorker that fails when told to by files in `marker_dir`:

    die        : samples its shard, then its process exits before returning (a crash mid-task);
    hang       : never answers (a stuck worker: only the timeout finds it);
    die-from-N : exits on every call asking for adapter version ≥ N (a failure beyond any retry).
    """

    marker_dir = ""

    def generate(self, *args, version=None, **kwargs):
        markers = Path(self.marker_dir)
        if _claim(markers / "hang"):
            time.sleep(3600)
        if version is not None and any(version >= int(p.name[len("die-from-"):]) for p in markers.glob("die-from-*")):
            os._exit(1)
        rollout = super().generate(*args, version=version, **kwargs)
        if _claim(markers / "die"):
            os._exit(1)
        return rollout


def _claim(marker: Path) -> bool:
    try:
        marker.unlink()
        return True
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def shared(policy_config, adapter, markers):
    """Two FaultyWorker actors holding adapter version 1; a short timeout, one retry per worker."""
    worker_class = type("FaultyWorker", (FaultyWorker,), {"marker_dir": str(markers)})
    rollout_cfg = RolloutConfig(backend="ray", num_workers=2, timeout_s=6.0, max_retries=1, **TEST_ROLLOUT)
    backend = RayBackend(rollout_cfg, policy_config, RUN_SEED, worker_class=worker_class)
    backend.sync(1, adapter)
    yield backend
    backend.close()


def assert_identical(got, expected, *, same_split=True):
    """Every field bitwise equal; across different splits the images only up to float rounding."""
    assert got.prompts == expected.prompts and got.prefix_steps == expected.prefix_steps
    assert torch.equal(got.group_ids, expected.group_ids)
    if same_split:
        assert torch.equal(got.outputs, expected.outputs)
    else:
        torch.testing.assert_close(got.outputs, expected.outputs, rtol=0, atol=1e-5)
    for name in ("old_logp", "action_mask"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(got, name), getattr(expected, name), strict=True))
    for key in ("tokens", "kept_masks"):
        assert all(a is b is None or torch.equal(a, b)  # kept_masks: None where nothing was cut
                   for a, b in zip(getattr(got.state, key), getattr(expected.state, key), strict=True)), key
    assert got.state.sampling == expected.state.sampling


# -------------------------------------------------------------------------------------------------
# Determinism and adapter versions
# -------------------------------------------------------------------------------------------------

def test_ray_rollouts_equal_local_rollouts_bitwise(shared, policy_config, adapter):
    rollout = shared.generate(PROMPTS, GROUP, PREFIX, STEP)
    assert_identical(rollout, local_rollout(policy_config, adapter, num_workers=2))
    # One worker drawing the whole batch draws the same samples as two drawing halves.
    assert_identical(rollout, local_rollout(policy_config, adapter, num_workers=1), same_split=False)
    assert shared.last_sync_bytes == sum(t.numel() * t.element_size() for t in adapter.values())


def test_a_worker_never_samples_with_a_stale_adapter(shared):
    with pytest.raises(StaleAdapterError, match="holds adapter version 1, asked for 2"):
        ray.get(shared.actors[0].generate.remote(PROMPTS[:1], GROUP, PREFIX, list(range(GROUP)), version=2),
                timeout=60)
    shared.version = 2  # as if the sync of version 2 had been skipped: the whole rollout is refused
    try:
        with pytest.raises(StaleAdapterError):
            shared.generate(PROMPTS, GROUP, PREFIX, STEP)
    finally:
        shared.version = 1
    assert shared.recreations == 0  # a refusal is the caller's error, not a worker failure: no retry


# -------------------------------------------------------------------------------------------------
# Failures
# -------------------------------------------------------------------------------------------------

def test_a_worker_that_dies_mid_rollout_is_recreated_and_only_its_shard_rerun(
        shared, markers, policy_config, adapter):
    recreations = shared.recreations
    (markers / "die").touch()
    rollout = shared.generate(PROMPTS, GROUP, PREFIX, STEP)
    assert not (markers / "die").exists() and shared.recreations == recreations + 1
    # Nothing lost, nothing twice, sampled with adapter version 1 (the new actor was given it).
    assert_identical(rollout, local_rollout(policy_config, adapter, num_workers=2))


def test_a_stuck_worker_is_killed_after_the_timeout_and_replaced(shared, markers, policy_config, adapter):
    recreations = shared.recreations
    (markers / "hang").touch()
    started = time.monotonic()
    rollout = shared.generate(PROMPTS, GROUP, PREFIX, STEP)
    assert time.monotonic() - started >= shared.timeout_s and shared.recreations == recreations + 1
    assert_identical(rollout, local_rollout(policy_config, adapter, num_workers=2))


# -------------------------------------------------------------------------------------------------
# Through the trainer
# -------------------------------------------------------------------------------------------------

TWO_WORKERS = {"rollout.num_workers": 2, "rollout.torch_threads": THREADS, "train.steps": 2}


def tiny_config(tmp_path, checkpoint, **overrides):
    return tiny_training_config(tmp_path, checkpoint, eval_samples=1, steps=3, **overrides)


def test_a_worker_failing_beyond_max_retries_saves_a_checkpoint_and_stops(tmp_path, tiny_checkpoint, shared,
                                                                         markers):
    """The last test of the shared pair: the trainer closes the backend when it stops."""
    trainer = Trainer(tiny_config(tmp_path, tiny_checkpoint))
    trainer.backend, shared.max_retries = shared, 0  # the shared actors, as rollout.max_retries=0 would make them
    (markers / "die-from-2").touch()  # every actor dies when asked for adapter version 2 (step 2)
    with pytest.raises(RolloutFailure) as raised:
        trainer.run()
    message = str(raised.value)
    assert "rollout of step 2" in message and re.search(r"worker ([01]) \(prompts \1\.\.\1\)", message)
    assert "max_retries = 0" in message and "ActorDiedError" in message
    assert "checkpoint of step 1 saved" in message and f"--resume {tmp_path / 'run'}" in message
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step_000001"
    assert raised.value.worker in (0, 1) and raised.value.shard == (raised.value.worker, raised.value.worker + 1)
    assert shared.actors == []  # stopped: they hold no CPUs any more


def test_training_on_ray_workers_equals_training_locally(tmp_path, tiny_checkpoint):
    local = Trainer(tiny_config(tmp_path / "local", tiny_checkpoint, **TWO_WORKERS))
    local.run()
    ray_run = Trainer(tiny_config(tmp_path / "ray", tiny_checkpoint, **TWO_WORKERS, **{
        "rollout.backend": "ray", "rollout.cpus_per_worker": TEST_ROLLOUT["cpus_per_worker"]}))
    ray_run.run()
    assert ray_run.backend.actors == []  # run() stopped its actors
    expected, got = local.policy.adapter_state(), ray_run.policy.adapter_state()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert any("lora_B" in k and got[k].abs().sum() > 0 for k in got)  # training really moved the adapter
    assert [r["debug/sync_bytes"] for r in ray_run.history] == [r["debug/sync_bytes"] for r in local.history]
