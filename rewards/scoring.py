"""Scoring a step's rollout shard by shard (docs/distributed.md, "Reward actors").

The rollout backends hand each shard over as soon as it is sampled (`on_shard`); a scorer takes it
with `submit(index, prompts, outputs)` and, after the last shard, `collect()` returns every reward's
values for the whole batch in batch order (RawScores), which the trainer's RewardWorker combines
with `finish`: the combination normalises over the whole batch, so it always runs on the driver.

- `LocalScorer` scores each shard at once, in this process (rewards.backend=local): image outputs
  arrive on the policy's device, so a reward model on that device takes them without a copy.
- `RayScorer` (rewards/ray_scoring.py) sends each shard to a reward actor and returns at once, so
  the actor scores while the next shard is sampled (rewards.backend=ray).

Both give the same values bit for bit when the reward's arithmetic runs with the same number of
threads (tests/rewards/test_ray_scoring.py): the shards, and so the batch shapes every reward sees,
are the same.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from rlalign.rewards.worker import RawScores, RewardActorFailure, RewardWorker


class ShardScorer(Protocol):
    busy_s: float
    """Seconds the driver spent inside submit() since the last collect() (scoring, or sending)."""

    def submit(self, index: int, prompts: Sequence, outputs: Any, metadata: dict | None = None) -> None:
        """Take shard `index` (0-based, in batch order) of this step; may return before it is scored.
        `metadata` (e.g. `trainer_state`) reaches every reward call of the shard."""
        ...

    def collect(self) -> RawScores:
        """Every submitted shard's values, joined in index order; the scorer is then empty again."""
        ...

    def close(self) -> None: ...


class LocalScorer:
    """Scores each shard in this process, when it is submitted, within `timeout_s` (rewards.timeout_s,
    as for reward actors): the rewards run in a helper thread, and one that has not answered in time
    stops the run (RewardActorFailure) while its thread is left behind."""

    def __init__(self, worker: RewardWorker, timeout_s: float | None = None):
        self.worker, self.parts, self.busy_s, self.timeout_s = worker, {}, 0.0, timeout_s

    def submit(self, index: int, prompts: Sequence, outputs: Any, metadata: dict | None = None) -> None:
        started = time.perf_counter()
        score = functools.partial(self.worker.score_raw, prompts, outputs, metadata)
        self.parts[index] = score() if self.timeout_s is None else within(score, self.timeout_s, f"rewards of shard {index}")
        self.busy_s += time.perf_counter() - started

    def collect(self) -> RawScores:
        parts, self.parts, self.busy_s = self.parts, {}, 0.0
        return RawScores.concat([parts[index] for index in sorted(parts)])

    def close(self) -> None:
        self.parts = {}


class TimedWorker:
    """A RewardWorker whose `score` answers within `timeout_s` (rewards.timeout_s) or raises
    RewardActorFailure: evaluations score in this process whatever rewards.backend is, and a reward that
    hangs there must stop the run as it does in training, not hold it forever. Everything else is the
    worker's own."""

    def __init__(self, worker: RewardWorker, timeout_s: float):
        self.worker, self.timeout_s = worker, timeout_s

    def score(self, *args: Any, **kwargs: Any) -> Any:
        return within(functools.partial(self.worker.score, *args, **kwargs), self.timeout_s, "evaluation rewards")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.worker, name)


def make_scorer(rewards_cfg: Any, worker: RewardWorker, ray_address: str = "") -> ShardScorer:
    """The scorer `rewards.backend` names; `worker` is the trainer's RewardWorker (the Ray actors build
    their own copies of it from its specs)."""
    if rewards_cfg.backend == "local":
        return LocalScorer(worker, timeout_s=rewards_cfg.timeout_s)
    if rewards_cfg.backend == "ray":
        from rlalign.rewards.ray_scoring import RayScorer  # imported here: `import ray` takes seconds

        return RayScorer(rewards_cfg, worker, ray_address=ray_address)
    raise ValueError(f"rewards.backend={rewards_cfg.backend!r} is not known; use local or ray")


def within(call: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """`call()` run in a daemon thread; its result or exception, or RewardActorFailure after `timeout_s`."""
    done, box = threading.Event(), {}
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()  # thread-local in torch

    def run() -> None:
        try:
            with torch.set_grad_enabled(grad), torch.inference_mode(inference):
                box["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller as it is
            box["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, name="rlalign-rewards", daemon=True).start()
    if not done.wait(timeout_s):
        raise RewardActorFailure(f"{what}: no answer within rewards.timeout_s = {timeout_s:g} s (the reward is "
                                 "still running in this process; the run stops)")
    if "error" in box:
        raise box["error"]
    return box["value"]
