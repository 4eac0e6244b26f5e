"""Rollout workers and the backends that drive them (docs/grpo.md, "The loop"): `local` in-process, `ray` as actors."""

from __future__ import annotations

from typing import Any

from rlalign.rollouts.local import LocalBackend
from rlalign.rollouts.worker import RolloutFailure, RolloutWorker, StaleAdapterError

__all__ = ["LocalBackend", "RolloutFailure", "RolloutWorker", "StaleAdapterError", "make_backend"]


def make_backend(rollout_cfg: Any, policy_cfg: Any, policy: Any, run_seed: int):
    """The backend `rollout.backend` names. Local with one worker shares the trainer's policy;
    local with N workers builds N replicas in this process (each synced with adapter weights), and
    cuts a step into rollout.shards shards (0: one per worker); ray starts N actors, each building its
    own replica from `policy_cfg` and sampling one shard (see docs/distributed.md)."""
    if rollout_cfg.backend == "local":
        if rollout_cfg.num_workers == 1:
            return LocalBackend.sharing(policy, run_seed, shards=rollout_cfg.shards)
        workers = [RolloutWorker(policy_cfg, torch_threads=rollout_cfg.torch_threads)
                   for _ in range(rollout_cfg.num_workers)]
        return LocalBackend(workers, run_seed, shards=rollout_cfg.shards)
    if rollout_cfg.backend == "ray":
        from rlalign.rollouts.ray_backend import RayBackend  # imported here: `import ray` takes seconds

        return RayBackend(rollout_cfg, policy_cfg, run_seed)
    raise ValueError(f"rollout.backend={rollout_cfg.backend!r} is not known; use local or ray")
