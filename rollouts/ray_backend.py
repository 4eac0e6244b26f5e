"""The Ray rollout backend: RolloutWorker replicas as Ray actors, with versioned adapter sync and
fault tolerance (docs/distributed.md).

Same interface as `LocalBackend` (`sync`, `generate`, `close`, `shares_policy`), so the trainer
never knows which one it drives. What it adds:

- Only the LoRA adapter travels: `sync` puts the adapter state into the object store once and hands
  the same reference to every actor, tagged with a version; `generate` asks for that version, and a
  worker holding another one refuses (StaleAdapterError), so no sample is drawn with a stale adapter.
- The batch is cut exactly as the local backend cuts it (`shard_bounds`, `sample_seeds`), so the
  samples are the same with 1 or N actors and with either backend.
- Nothing waits forever: results are collected with `ray.wait(timeout=...)`. An actor that dies or
  misses `rollout.timeout_s` is killed, re-created with the current adapter, and only its shard is
  re-run; the rollout is assembled in shard order, so no sample is lost or duplicated. Past
  `rollout.max_retries` re-creations of one worker within one call, `RolloutFailure` names the
  worker, its shard and the cause (the trainer then saves a checkpoint and stops).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
import torch
from ray import exceptions as ray_errors
from rlalign.rollouts.local import sample_seeds, shard_bounds
from rlalign.rollouts.worker import RolloutFailure, RolloutWorker

from rlalign.policies import Rollout, concat_rollouts
from rlalign.policies.lora import adapter_bytes
from rlalign.utils import ray_cluster

logger = logging.getLogger(__name__)

WORKER_FAILURES = (ray_errors.RayActorError, ray_errors.WorkerCrashedError, ray_errors.NodeDiedError,
                   ray_errors.ObjectLostError, ray_errors.OwnerDiedError, ray_errors.LocalRayletDiedError,
                   TimeoutError)
"""Failures of the machinery (a dead or silent actor, a lost node or object), which re-creating the
worker can cure. Errors raised by the worker's own code (a RayTaskError wrapping, e.g., a bad prompt
or StaleAdapterError) are not in this list: re-running would only repeat them, so they propagate."""


START_TIMEOUT_S = 300.0
"""Least time allowed for an actor to start (import torch and peft, load the checkpoint, build the
replica: ~10 s for the built-in model on 2 cores, minutes for a large checkpoint on a cold node),
however short `rollout.timeout_s` is: that one bounds a shard's work, not a replica's start."""


class RayBackend:
    """`rollout.num_workers` RolloutWorker actors, each with its own policy replica."""

    shares_policy = False
    """Actors hold replicas, so every step's adapter must be sent to them."""

    def __init__(self, rollout_cfg: Any, policy_cfg: Any, run_seed: int, *,
                 worker_class: type = RolloutWorker):
        """`worker_class` is RolloutWorker or a subclass of it (tests use one to inject failures)."""
        self.run_seed, self.num_workers = run_seed, rollout_cfg.num_workers
        self.timeout_s, self.max_retries = float(rollout_cfg.timeout_s), rollout_cfg.max_retries
        self.torch_threads = rollout_cfg.torch_threads
        # A plain dict travels to the actors; each builds its own replica with load_policy.
        self.policy_config = dict(policy_cfg) if isinstance(policy_cfg, dict) else dataclasses.asdict(policy_cfg)
        _check_device(self.policy_config, rollout_cfg.gpus_per_worker)
        self.owns_ray = connect(rollout_cfg)
        self.actor_class = ray.remote(num_cpus=rollout_cfg.cpus_per_worker,
                                      num_gpus=rollout_cfg.gpus_per_worker)(worker_class)
        self.version, self.state_ref, self.last_sync_bytes = 0, None, 0
        self.recreations = 0
        """Actors re-created since start (all causes), for logs and tests."""
        self.actors = [self._spawn() for _ in range(self.num_workers)]
        self._wait_started()
        print(f"[rlalign] ray: {self.num_workers} rollout actor(s), each {rollout_cfg.cpus_per_worker:g} CPU, "
              f"{rollout_cfg.gpus_per_worker:g} GPU, {self.torch_threads or 'default'} torch threads "
              f"({'started a local Ray' if self.owns_ray else 'on ' + (rollout_cfg.ray_address or 'the running Ray')})",
              flush=True)

    # ---------------------------------------------------------------------------------------------
    # The backend interface
    # ---------------------------------------------------------------------------------------------

    def sync(self, version: int, state: dict[str, torch.Tensor] | None) -> float:
        """Give every actor adapter `version`; returns the bytes the replicas received in all.

        The state is put into the object store once; every actor reads that one copy (zero-copy
        on its own node, one transfer per other node). The reference is kept until the next sync,
        so a re-created actor can be given the same version.
        """
        if state is None:
            raise ValueError("the Ray backend's actors hold their own replicas: sync needs the adapter state")
        state = {name: tensor.detach().cpu() for name, tensor in state.items()}  # plain CPU tensors travel
        self.state_ref, self.version = ray.put(state), version
        self.last_sync_bytes = adapter_bytes(state)
        self._run_all(len(self.actors), lambda slot: self.actors[slot].load_adapter_state.remote(
            version, self.state_ref), what=f"sync of adapter version {version}")
        return self.last_sync_bytes * len(self.actors)

    def generate(self, prompts: Sequence, group_size: int, prefix_steps: int | str, step: int, *,
                 on_shard: Callable[[int, Rollout], None] | None = None) -> Rollout:
        """The step's rollout, prompt-major, identical to LocalBackend.generate with the same seeds.
        `on_shard(index, shard)` is called as each actor's shard arrives (in arrival order)."""
        bounds = shard_bounds(len(prompts), len(self.actors))
        version = self.version

        def submit(slot: int):
            start, end = bounds[slot]
            seeds = sample_seeds(self.run_seed, step, start, end - start, group_size)
            return self.actors[slot].generate.remote(list(prompts[start:end]), group_size, prefix_steps, seeds,
                                                     first_group=start, version=version)

        shards = self._run_all(len(bounds), submit, what=f"rollout of step {step}", bounds=bounds, on_result=on_shard)
        return concat_rollouts(shards)

    def close(self) -> None:
        """Stop the actors (and the local Ray this backend started). Safe to call twice."""
        for actor in self.actors:
            _kill(actor)
        self.actors, self.state_ref = [], None
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
        self.owns_ray = False

    # ---------------------------------------------------------------------------------------------
    # Waiting, detecting failures, re-creating workers
    # ---------------------------------------------------------------------------------------------

    def _run_all(self, count: int, submit: Callable[[int], Any], *, what: str,
                 bounds: Sequence[tuple[int, int]] | None = None,
                 on_result: Callable[[int, Any], None] | None = None) -> list:
        """Results of submit(slot) for slots 0..count-1, in slot order, surviving worker failures.

        Each call gets `timeout_s` from its submission. A failed or overdue slot gets a fresh actor
        (holding the current adapter) and its call is submitted again; the other slots keep running.
        A call counts as overdue only when a wait returned nothing ready: results that arrived while
        a replacement was starting are collected first, never mistaken for timeouts. `on_result(slot,
        result)` is called once per slot, as its result arrives.
        """
        results: list = [None] * count
        failures = [0] * count
        pending = {submit(slot): (slot, time.monotonic() + self.timeout_s) for slot in range(count)}
        while pending:
            next_deadline = min(deadline for _, deadline in pending.values())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, next_deadline - time.monotonic()))
            if ready:
                slot, _ = pending.pop(ready[0])
                try:
                    results[slot] = ray.get(ready[0], timeout=self.timeout_s)  # ready: returns without waiting
                except WORKER_FAILURES as error:
                    failed = [(slot, error)]
                else:
                    if on_result is not None:
                        on_result(slot, results[slot])
                    continue
            else:
                now = time.monotonic()
                overdue = [ref for ref, (_, deadline) in pending.items() if deadline <= now]
                failed = [(pending.pop(ref)[0], TimeoutError(f"no answer within rollout.timeout_s = "
                                                             f"{self.timeout_s:g} s")) for ref in overdue]
            for slot, error in failed:
                self._recover(slot, error, failures, what, bounds)
                pending[submit(slot)] = (slot, time.monotonic() + self.timeout_s)
        return results

    def _recover(self, slot: int, error: BaseException, failures: list[int], what: str,
                 bounds: Sequence[tuple[int, int]] | None) -> None:
        """Replace worker `slot` by a fresh actor holding the current adapter, or raise RolloutFailure
        once this slot has failed more than `max_retries` times in this call."""
        while True:
            failures[slot] += 1
            shard = bounds[slot] if bounds is not None else None
            where = f"worker {slot}" + (f" (prompts {shard[0]}..{shard[1] - 1})" if shard else "")
            if failures[slot] > self.max_retries:
                raise RolloutFailure(
                    f"{what}: {where} failed {failures[slot]} times, more than rollout.max_retries = "
                    f"{self.max_retries} re-creations allow; last cause: {type(error).__name__}: "
                    f"{_first_line(error)}", worker=slot, shard=shard, cause=error) from error
            logger.warning("%s: %s failed (%s: %s); re-creating it (retry %d of %d)", what, where,
                           type(error).__name__, _first_line(error), failures[slot], self.max_retries)
            try:
                self._replace(slot)
                return
            except WORKER_FAILURES as replacement_error:  # the new actor failed too: counts as another try
                error = replacement_error

    def _replace(self, slot: int) -> None:
        """Kill actor `slot` if it still runs and start a new one with the current adapter version."""
        _kill(self.actors[slot])
        self.actors[slot] = self._spawn()
        self.recreations += 1
        actor = self.actors[slot]
        if self.state_ref is not None:
            self._get_within(actor.load_adapter_state.remote(self.version, self.state_ref), self.start_timeout_s)
        else:  # never synced: the replica's built-in adapter is version 0, like everyone else's
            self._get_within(actor.__ray_ready__.remote(), self.start_timeout_s)

    def _spawn(self):
        return self.actor_class.remote(self.policy_config, torch_threads=self.torch_threads, host_outputs=True)

    def _wait_started(self) -> None:
        """Wait until every actor has built its replica; a failure here is a setup problem (bad
        checkpoint path, missing package on a node), so it is reported at once, not retried."""
        for slot, actor in enumerate(self.actors):
            try:
                self._get_within(actor.__ray_ready__.remote(), self.start_timeout_s)
            except WORKER_FAILURES as error:
                self.close()
                raise RolloutFailure(f"rollout worker {slot} did not start: {type(error).__name__}: {error}",
                                     worker=slot, shard=None, cause=error) from error

    @property
    def start_timeout_s(self) -> float:
        return max(self.timeout_s, START_TIMEOUT_S)

    @staticmethod
    def _get_within(ref, timeout_s: float) -> Any:
        """The result of `ref`, or TimeoutError after `timeout_s` (never a wait without end)."""
        ready, _ = ray.wait([ref], timeout=timeout_s)
        if not ready:
            raise TimeoutError(f"no answer within {timeout_s:g} s")
        return ray.get(ref, timeout=timeout_s)


# -------------------------------------------------------------------------------------------------
# Connecting to Ray
# -------------------------------------------------------------------------------------------------

def connect(rollout_cfg: Any) -> bool:
    """Join or start Ray for the rollout actors (rlalign.utils.ray_cluster.connect); True when this
    call started a local Ray, which close() then shuts down."""
    return ray_cluster.connect(rollout_cfg.ray_address, ray_cluster.needs_of("rollout", rollout_cfg))


def _check_device(policy_config: dict, gpus_per_worker: float) -> None:
    """Ray hides GPUs from actors that reserve none, and shows a reserved GPU as cuda:0."""
    device = str(policy_config.get("device", "cpu"))
    if device.startswith("cuda"):
        if gpus_per_worker <= 0:
            raise ValueError(f"policy.device={device!r} needs rollout.gpus_per_worker > 0 with rollout.backend=ray "
                             "(Ray shows no GPU to an actor that reserves none); or set policy.device=cpu")
        policy_config["device"] = "cuda"


def _kill(actor) -> None:
    """Stop an actor; killing a dead one is a no-op, and after ray.shutdown() there is nothing to stop."""
    with contextlib.suppress(ray_errors.RayError, ValueError):
        ray.kill(actor, no_restart=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
