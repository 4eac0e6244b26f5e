"""Reward actors on Ray: each rollout shard is scored on an actor while the next shard is sampled.

`RayScorer.submit` moves the shard's images to the host (one copy; a Ray object must not hold
another process's GPU memory), puts them into the object store and hands them to the next actor in
turn; it returns at once. `collect` waits for every shard (at most rewards.timeout_s each) and
joins the values in batch order. The combination (normalising over the whole batch) stays with
the trainer's RewardWorker.

A reward that raises, or returns something unusable, fails the same way as in-process: the
actor's RewardError is raised again here, with the reward's name. An actor that dies or misses the
timeout stops the run with RewardActorFailure (the trainer then saves a checkpoint of the last
finished step): a reward model that crashed is a bug to look at, not something to retry silently.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray import exceptions as ray_errors
from rlalign.rewards.worker import RawScores, RewardActorFailure, RewardError, RewardWorker

from rlalign.utils import ray_cluster


class RewardActor:
    """A RewardWorker in its own process, with its own torch thread count."""

    def __init__(self, worker: RewardWorker, torch_threads: int = 0):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.worker = worker  # unpickling rebuilt the reward functions here (RewardWorker.__setstate__)

    def score_raw(self, prompts: Sequence, outputs: Any, metadata: dict | None = None) -> RawScores:
        return self.worker.score_raw(prompts, outputs, metadata)


class RayScorer:
    """rewards.num_workers RewardActors; shard i goes to actor i mod N."""

    def __init__(self, rewards_cfg: Any, worker: RewardWorker, *, ray_address: str = ""):
        self.timeout_s, self.busy_s = float(rewards_cfg.timeout_s), 0.0
        self.owns_ray = ray_cluster.connect(ray_address, ray_cluster.needs_of("rewards", rewards_cfg))
        _check_travels(worker)
        actor_class = ray.remote(num_cpus=rewards_cfg.cpus_per_worker, num_gpus=rewards_cfg.gpus_per_worker)(RewardActor)
        self.actors = [actor_class.remote(worker, rewards_cfg.torch_threads) for _ in range(rewards_cfg.num_workers)]
        self.pending: dict[int, Any] = {}
        for slot, actor in enumerate(self.actors):  # a bad reward config fails here, at start, not mid-step
            self._get(actor.__ray_ready__.remote(), f"reward actor {slot} did not start")
        print(f"[rlalign] ray: {len(self.actors)} reward actor(s), each {rewards_cfg.cpus_per_worker:g} CPU, "
              f"{rewards_cfg.gpus_per_worker:g} GPU", flush=True)

    def submit(self, index: int, prompts: Sequence, outputs: Any, metadata: dict | None = None) -> None:
        started = time.perf_counter()
        if isinstance(outputs, torch.Tensor):
            outputs = outputs.detach().cpu()
        actor = self.actors[index % len(self.actors)]
        self.pending[index] = actor.score_raw.remote(list(prompts), outputs, metadata)
        self.busy_s += time.perf_counter() - started

    def collect(self) -> RawScores:
        pending, self.pending, self.busy_s = self.pending, {}, 0.0
        parts = [self._get(pending[index], f"rewards of shard {index}") for index in sorted(pending)]
        return RawScores.concat(parts)

    def close(self) -> None:
        """Stop the actors (and the local Ray this scorer started). Safe to call twice."""
        for actor in self.actors:
            with contextlib.suppress(ray_errors.RayError, ValueError):
                ray.kill(actor, no_restart=True)
        self.actors, self.pending = [], {}
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
        self.owns_ray = False

    def _get(self, ref, what: str) -> Any:
        """The result of `ref`; the actor's own RewardError raised again as it is; a dead or silent actor
        as RewardActorFailure naming `what`."""
        ready, _ = ray.wait([ref], timeout=self.timeout_s)
        if not ready:
            raise RewardActorFailure(f"{what}: no answer within rewards.timeout_s = {self.timeout_s:g} s")
        try:
            return ray.get(ref)
        except ray_errors.RayTaskError as error:
            if isinstance(error.cause, RewardError):  # the reward's own error, as in process
                raise RewardError(str(error.cause)) from None
            raise RewardActorFailure(f"{what}: {type(error).__name__}: {str(error).strip().splitlines()[-1]}") from error
        except ray_errors.RayError as error:
            raise RewardActorFailure(f"{what}: {type(error).__name__}: {error}") from error


def _defining_module(fn: Any):
    """The module that defines a reward object: through partials and bound methods, to the function or
    class behind them."""
    import functools
    import sys

    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)  # a bound method: its function
    owner = fn if inspect.isfunction(fn) or inspect.isclass(fn) else type(fn)
    return sys.modules.get(getattr(owner, "__module__", "") or "")


def _installed(module) -> bool:
    """Whether a module comes with Python or an installed package (an actor imports it by name)."""
    import sysconfig

    file = getattr(module, "__file__", None)
    if module.__name__.split(".")[0] in ("rlalign", "trl") or file is None:
        return True
    roots = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(str(Path(file).resolve()).startswith(str(Path(root).resolve()) + "/") for root in roots)


def _check_travels(worker: RewardWorker) -> None:
    """Refuse, with the reason, rewards given as Python objects that cannot be sent to reward actors.

    The module defining a reward that is neither Python's nor an installed package's (a notebook, a
    script, a test module: an actor could not import it) is registered with Ray's cloudpickle, so the
    reward travels by value; a reward that cannot be pickled even so is refused, its module unregistered."""
    for name, fn in worker.callables.items():
        module = _defining_module(fn)
        by_value = module is not None and module.__name__ != "__main__" and not _installed(module)
        if by_value:
            ray.cloudpickle.register_pickle_by_value(module)
        try:
            ray.cloudpickle.dumps(fn)
        except Exception as error:  # noqa: BLE001 - any pickling failure means the same thing here
            if by_value:
                ray.cloudpickle.unregister_pickle_by_value(module)
            raise ValueError(f"reward {name!r} cannot be sent to Ray reward actors ({type(error).__name__}: "
                             f"{error}); use rewards.backend: local, or give the reward as an importable "
                             "module:function") from None
