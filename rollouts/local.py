"""The local rollout backend: workers in this process.

The same interface as the Ray backend (`sync`, `generate`), so the trainer never knows which one
it drives. With one worker sharing the trainer's own policy, `sync` moves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from rlalign.rollouts.worker import RolloutWorker

from rlalign.policies import Rollout, StepPolicy, concat_rollouts
from rlalign.policies.lora import adapter_bytes
from rlalign.utils.seeding import sample_seed


def shard_bounds(num_prompts: int, num_workers: int) -> list[tuple[int, int]]:
    """Contiguous prompt ranges, one per worker, sizes differing by at most one (empty ones dropped)."""
    base, extra = divmod(num_prompts, num_workers)
    bounds, start = [], 0
    for worker in range(num_workers):
        size = base + (worker < extra)
        if size:
            bounds.append((start, start + size))
        start += size
    return bounds


def sample_seeds(run_seed: int, step: int, first_prompt: int, num_prompts: int, group_size: int,
                 purpose: str = "train") -> list[int]:
    """Per-sample seeds of prompts first_prompt.. of a step, prompt-major (rlalign.utils.seeding)."""
    return [sample_seed(run_seed, purpose, step, first_prompt + p, g)
            for p in range(num_prompts) for g in range(group_size)]


class LocalBackend:
    """Rollout workers called in turn in this process."""

    def __init__(self, workers: Sequence[RolloutWorker], run_seed: int, *, shares_policy: bool = False,
                 shards: int = 0):
        self.workers, self.run_seed, self.version = list(workers), run_seed, 0
        self.shares_policy = shares_policy
        """True when the only worker samples from the trainer's own policy object (nothing to sync)."""
        self.shards = shards or len(self.workers)
        """Prompt shards per step (rollout.shards; 0: one per worker), sampled in turn, shard s by worker s mod N."""

    @classmethod
    def sharing(cls, policy: StepPolicy, run_seed: int, shards: int = 0) -> "LocalBackend":
        """One worker over the trainer's own policy object: adapter updates are visible at once."""
        return cls([RolloutWorker(policy=policy)], run_seed, shares_policy=True, shards=shards)

    def sync(self, version: int, state: dict[str, torch.Tensor] | None) -> float:
        """Give every worker adapter `version` (state None: the workers share the trainer's policy). Returns bytes sent."""
        sent = 0
        for worker in self.workers:
            if state is not None:
                worker.load_adapter_state(version, state)
                sent += adapter_bytes(state)
            else:
                worker.version = version
        self.version = version
        return sent

    def generate(self, prompts: Sequence, group_size: int, prefix_steps: int | str, step: int, *,
                 on_shard: Callable[[int, Rollout], None] | None = None) -> Rollout:
        """The step's rollout, prompt-major. `on_shard(index, shard)` is called as each shard is sampled
        (the trainer hands it to the rewards, which may score it while the next shard is sampled)."""
        shards = []
        for index, (start, end) in enumerate(shard_bounds(len(prompts), self.shards)):
            seeds = sample_seeds(self.run_seed, step, start, end - start, group_size)
            worker = self.workers[index % len(self.workers)]
            shards.append(worker.generate(prompts[start:end], group_size, prefix_steps, seeds, first_group=start,
                                          version=self.version))
            if on_shard is not None:
                on_shard(index, shards[-1])
        return concat_rollouts(shards)

    def close(self) -> None:
        self.workers.clear()
