"""RolloutWorker: a policy replica that samples grouped rollouts with a given adapter version.

A plain class (README, "Conventions"): the local backend calls it in-process, the Ray backend wraps it with
`ray.remote(...)` where it launches it. Every sample draws from its own generator seeded by the
caller (rlalign.utils.seeding), so a batch is the same whichever worker draws which shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rlalign.policies import Rollout, StepPolicy, load_policy, outputs_to_host
from rlalign.utils.failpoints import failpoint
from rlalign.utils.stops import RunStopped


class StaleAdapterError(RuntimeError):
    """A worker was asked to generate with an adapter version it does not hold."""


class RolloutWorker:
    """Generates G samples per prompt: prefix with the adapter, suffix with the frozen base."""

    def __init__(self, policy_config: Any = None, *, torch_threads: int = 0, policy: StepPolicy | None = None,
                 host_outputs: bool = False):
        """`host_outputs`: return image outputs on the host (a Ray actor's results leave its process,
        so they move once, there); in-process they stay on the policy's device for the rewards."""
        if torch_threads:
            torch.set_num_threads(torch_threads)
        if policy is None and policy_config is None:
            raise ValueError("RolloutWorker needs a policy config (or, in-process, a policy object)")
        self.policy = policy if policy is not None else load_policy(policy_config)
        self.version = 0  # version 0 is the adapter the policy was built with
        self.host_outputs = host_outputs

    def load_adapter_state(self, version: int, state: dict[str, torch.Tensor]) -> int:
        """Install adapter weights `state` as `version`; returns the version now held."""
        self.policy.load_adapter_state(state)
        self.version = version
        return version

    def generate(self, prompts: Sequence, group_size: int, prefix_steps: int | str, seeds: Sequence[int], *,
                 first_group: int = 0, version: int | None = None) -> Rollout:
        """Rollout of len(prompts) × group_size samples, prompt-major; `seeds` has one seed per sample.

        With `version` given, refuses to run unless this worker holds exactly that adapter version.
        """
        if version is not None and version != self.version:
            raise StaleAdapterError(f"worker holds adapter version {self.version}, asked for {version}")
        failpoint("worker:generate")  # scripts/fault_suite.py: a worker process killed mid-step
        if len(seeds) != len(prompts) * group_size:
            raise ValueError(f"need {len(prompts) * group_size} seeds (one per sample), got {len(seeds)}")
        repeated = [prompt for prompt in prompts for _ in range(group_size)]
        group_ids = torch.arange(first_group, first_group + len(prompts)).repeat_interleave(group_size)
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        rollout = self.policy.rollout(repeated, prefix_steps, generator=generators, group_ids=group_ids)
        return outputs_to_host(rollout) if self.host_outputs else rollout


class RolloutFailure(RunStopped):
    """A rollout worker kept failing (died, or missed rollout.timeout_s) after rollout.max_retries
    re-creations within one call. Defined here, not in ray_backend, so catching it needs no Ray
    (rlalign.rollouts re-exports it)."""

    def __init__(self, message: str, *, worker: int, shard: tuple[int, int] | None, cause: BaseException | None):
        super().__init__(message)
        self.worker, self.shard, self.cause = worker, shard, cause
        """The failing worker's index, its prompt range [start, end) (None outside a rollout), the last error."""
