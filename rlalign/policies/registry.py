"""The policy families by name (`policy.kind`), and `load_policy`.

Each entry is an import string, resolved on first use, so that naming a family costs nothing and
no module of `rlalign.policies` has to import a family to know it (the families import base.py,
and base.py imports none of them). Adding a family is one package plus one entry here.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Protocol

from rlalign.config import PolicyConfig
from rlalign.config.loading import build
from rlalign.policies.base import StepPolicy
from rlalign.policies.precision import with_precision

FAMILIES: dict[str, str] = {
    "next_scale": "rlalign.policies.next_scale.policy:NextScalePolicy",
    "insertion": "rlalign.policies.insertion.policy:InsertionPolicy",
    "edit_flow": "rlalign.policies.edit_flow.policy:EditFlowPolicy",
    "infinity": "rlalign.policies.infinity.policy:InfinityPolicy",
}
"""policy.kind → "module:Class" of a class that implements PolicyFamily."""


class PolicyFamily(Protocol):
    """What a registry entry names: a StepPolicy class that builds itself from a PolicyConfig."""

    @classmethod
    def from_config(cls, cfg: Any) -> StepPolicy: ...

    @staticmethod
    def declared_num_steps(cfg: Any) -> int | None:
        """T as the config declares it, without loading any weights; None if it cannot tell."""
        ...


def policy_family(kind: str) -> PolicyFamily:
    """The class registered for `policy.kind`; an unknown kind is an error listing the known ones."""
    if kind not in FAMILIES:
        raise ValueError(f"policy.kind={kind!r} is not available in this version of rlalign "
                         f"({', '.join(FAMILIES)} are)")
    module, _, name = FAMILIES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def load_policy(cfg: Any) -> StepPolicy:
    """Build a policy from a PolicyConfig (or a dict of its fields)."""
    if isinstance(cfg, dict):
        cfg = build(PolicyConfig, cfg)
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"load_policy takes a PolicyConfig or a dict, got {type(cfg).__name__}")
    return with_precision(policy_family(cfg.kind).from_config(cfg), cfg.precision)


def declared_num_steps(cfg: Any) -> int | None:
    """T as a PolicyConfig declares it, without loading any weights (e.g. for `rlalign config`'s
    check of grpo.prefix_steps); None for an unknown kind or when the family cannot tell."""
    if cfg.kind not in FAMILIES:
        return None
    return policy_family(cfg.kind).declared_num_steps(cfg)
