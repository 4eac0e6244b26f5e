"""Rollout workers and the backends that drive them (DESIGN §3): `local` in-process, `ray` as actors."""

from __future__ import annotations

from typing import Any

from rollouts.local import LocalBackend
from rollouts.worker import RolloutWorker, StaleAdapterError

__all__ = ["LocalBackend", "RolloutWorker", "StaleAdapterError", "make_backend"]


def make_backend(rollout_cfg: Any, policy_cfg: Any, policy: Any, run_seed: int):
    """The backend `rollout.backend` names. Local with one worker shares the trainer's policy;
    local with N workers builds N replicas in this process (each synced with adapter weights)."""
    if rollout_cfg.backend == "local":
        if rollout_cfg.num_workers == 1:
            return LocalBackend.sharing(policy, run_seed)
        workers = [RolloutWorker(policy_cfg, torch_threads=rollout_cfg.torch_threads)
                   for _ in range(rollout_cfg.num_workers)]
        return LocalBackend(workers, run_seed)
    raise ValueError(f"rollout.backend={rollout_cfg.backend!r} is not available in this version (local is); "
                     "the Ray backend arrives with distributed rollouts")
