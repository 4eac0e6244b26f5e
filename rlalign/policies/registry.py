"""The policy families by name (`policy.kind`), and `load_policy`.

The names are a table of import strings (rlalign/config/families.py), resolved here on first use, so
that naming a family costs nothing and no module of `rlalign.policies` has to import a family to
know it (the families import base.py, and base.py imports none of them). Adding a built-in family is
one package plus one entry there; a family of your own is `policy.kind: module:Class`, imported from
the Python path (docs/extending.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from rlalign.config import PolicyConfig, to_dict
from rlalign.config.families import TABLE as FAMILY_TABLE
from rlalign.config.families import family_target
from rlalign.config.loading import build
from rlalign.policies.base import StepPolicy
from rlalign.policies.precision import with_precision


class PolicyFamily(Protocol):
    """What a registry entry names: a StepPolicy class that builds itself from a PolicyConfig."""

    @classmethod
    def from_config(cls, cfg: Any) -> StepPolicy: ...

    @staticmethod
    def declared_num_steps(cfg: Any) -> int | None:
        """T as the config declares it, without loading any weights; None if it cannot tell."""
        ...

    # Optional static methods: `completion_tokenizer_from_config(cfg)`, a text family's word ids (rewards'
    # `completion_ids`) without building the policy, for `rlalign score` on texts; `resolved_settings(cfg)`,
    # the family's own config section with its defaults, for `resolved_config`.


def policy_family(kind: str) -> PolicyFamily:
    """The class `policy.kind` names: a registered family or `module:Class`; errors say what was tried."""
    family = FAMILY_TABLE.load(kind, "policy.kind")
    module_name, _, class_name = family_target(kind).partition(":")
    missing = [name for name in ("from_config", "declared_num_steps") if not hasattr(family, name)]
    if missing:
        raise ValueError(f"policy.kind={kind!r}: {module_name}.{class_name} is no family class (it lacks "
                         f"{', '.join(missing)}; see PolicyFamily in rlalign/policies/registry.py)")
    return family


def load_policy(cfg: Any) -> StepPolicy:
    """Build a policy from a PolicyConfig (or a dict of its fields)."""
    if isinstance(cfg, dict):
        cfg = build(PolicyConfig, cfg)
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"load_policy takes a PolicyConfig or a dict, got {type(cfg).__name__}")
    check_device(cfg.device)
    return with_precision(policy_family(cfg.kind).from_config(cfg), cfg.precision)


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before any weights are read."""
    import torch

    kind = device.split(":")[0]
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(),
                 "xpu": hasattr(torch, "xpu") and torch.xpu.is_available()}
    if not available.get(kind, False):
        raise ValueError(f"policy.device={device!r}, but this machine has no {kind} device torch can use "
                         f"(available: {', '.join(k for k, ok in available.items() if ok)}); set policy.device=cpu")
    if kind == "cuda" and ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"policy.device={device!r}, but torch sees {count} CUDA device(s) (CUDA_VISIBLE_DEVICES "
                         f"renumbers them from 0); set policy.device to one of cuda:0..cuda:{count - 1}")


def declared_num_steps(cfg: Any) -> int | None:
    """T as a PolicyConfig declares it, without loading any weights (e.g. for `rlalign config`'s
    check of grpo.prefix_steps); None for an unknown kind or when the family cannot tell."""
    try:
        family = policy_family(cfg.kind)
    except ValueError:  # load_policy reports it, with the same message, when the run builds the policy
        return None
    return family.declared_num_steps(cfg)


def resolved_config(cfg: Any) -> dict[str, Any]:
    """A Config as a plain dict with the active family's own settings filled in, defaults included, as
    the family reads them: what a run saves (config.yaml, wandb) and what a resume compares, so that a
    family setting left at its default on one side and set on the other is a change like any other."""
    raw = to_dict(cfg)
    read = getattr(policy_family(cfg.policy.kind), "resolved_settings", None)
    if read is not None:
        raw["policy"].update(read(cfg.policy))
    return raw
