"""A policy family defined outside rlalign, as a user would write one (docs/extending.md): `policy.kind:
support.external_family:CountingNextScale`. It is the next-scale family with one addition, a count of its
rollouts, so a test can see that the trainer used this class and nothing else."""

from __future__ import annotations

from rlalign.policies.next_scale.policy import NextScalePolicy


class CountingNextScale(NextScalePolicy):
    """NextScalePolicy that counts its rollouts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rollouts = 0

    def rollout(self, *args, **kwargs):
        self.rollouts += 1
        return super().rollout(*args, **kwargs)


class NotAFamily:
    """Has neither from_config nor declared_num_steps."""
