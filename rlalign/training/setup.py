"""What the trainer builds before its loop besides the policy and rewards: the learning-rate schedule
(transformers' schedulers over optimizer steps) and the Ray it starts or joins."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_scheduler

from rlalign.config import Config
from rlalign.utils import ray_cluster

SCHEDULES = {"constant": "constant_with_warmup", "cosine": "cosine", "linear": "linear"}
"""train.lr_schedule → the name transformers.get_scheduler knows it by."""


def build_scheduler(optimizer: torch.optim.Optimizer, train: Any, inner_iterations: int) -> LambdaLR:
    """transformers' schedule over the run's optimizer steps (train.steps × inner_iterations), as TRL's
    trainers use it: linear warm-up from 0 over train.warmup_steps (the first optimizer step has rate 0
    when warming up), then constant, or cosine / linear decay to 0 at the last step."""
    return get_scheduler(SCHEDULES[train.lr_schedule], optimizer, num_warmup_steps=train.warmup_steps,
                         num_training_steps=max(1, train.steps * inner_iterations))


def start_ray(cfg: Config) -> bool:
    """Join or start Ray before any actor starts when the rollouts or the rewards use it, so that a local
    Ray has room for both kinds of actor; True when a local Ray was started here (stopped by stop_ray)."""
    needs = {**(ray_cluster.needs_of("rollout", cfg.rollout) if cfg.rollout.backend == "ray" else {}),
             **(ray_cluster.needs_of("rewards", cfg.rewards) if cfg.rewards.backend == "ray" else {})}
    return bool(needs) and ray_cluster.connect(cfg.rollout.ray_address, needs)


def stop_ray() -> None:
    import ray  # only reached when start_ray started one

    if ray.is_initialized():
        ray.shutdown()
