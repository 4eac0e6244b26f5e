"""The policy interface every generator family implements (docs/grpo.md, "Prefix and frozen suffix"), and `load_policy`.

A policy samples T generation steps; the first m (the prefix) with its LoRA adapter on, the rest
(the suffix) with the adapter off, i.e. from the frozen base. Only prefix actions are scored for
the loss, so a Rollout keeps, per prefix step, the log-probs the sampler actually used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, Union, runtime_checkable

import torch
from torch import Tensor

Generators = Union[torch.Generator, Sequence[torch.Generator]]
"""One generator for the whole batch, or one per sample (sample-level determinism, e.g. for sharding)."""


@dataclass
class Rollout:
    """One batch of sampled trajectories with the rollout-time log-probs of their prefix actions.

    Plain CPU tensors and lists only, so it pickles (Ray moves it between processes).
    """

    prompts: list
    """One entry per sample (already repeated G times)."""
    group_ids: Tensor
    """[B] the prompt group each sample belongs to."""
    outputs: Any
    """Images [B, 3, H, W] in [0, 1], or a list of B texts."""
    old_logp: list[Tensor]
    """Per prefix step: [B, A_t] float32 log-probs at rollout time, detached."""
    action_mask: list[Tensor]
    """Per prefix step: [B, A_t] bool, False for padded actions."""
    prefix_steps: int
    """m, the number of prefix steps (len(old_logp))."""
    state: dict = field(default_factory=dict)
    """Policy-specific: whatever log_prob() needs to re-score the prefix. Values are batch-first
    tensors, lists of per-step batch-first tensors (or None), or batch-independent settings."""

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, index: Tensor | Sequence[int]) -> Rollout:
        """The sub-batch of samples `index` (e.g. a micro-batch), sliced along the batch axis everywhere."""
        index = torch.as_tensor(index, dtype=torch.long)
        rows = index.tolist()
        return Rollout(
            prompts=[self.prompts[i] for i in rows],
            group_ids=self.group_ids[index],
            outputs=_take(self.outputs, index, rows),
            old_logp=[t[index] for t in self.old_logp],
            action_mask=[t[index] for t in self.action_mask],
            prefix_steps=self.prefix_steps,
            state={key: _take(value, index, rows) for key, value in self.state.items()},
        )


def keep_rescored_old_logp(rollout: Rollout, rescored: list[Tensor]) -> Rollout:
    """Make `rescored` (log_prob's own scoring of the sampled prefix) the rollout's old_logp.

    A sampler and the teacher-style scoring pass compute the same distribution with different
    reduction orders (KV cache vs one block pass, per-step vs batched), so they differ by float
    rounding. Recording old_logp from log_prob's path makes the GRPO ratio exactly 1 before the
    first update; the sampler's own values survive as state["sampler_logp_gap"] ([B], the max
    |sampler − re-score| per sample over real actions) to show the two agree up to rounding.
    """
    gaps = torch.stack([((new - old).abs() * mask).amax(dim=1) for new, old, mask
                        in zip(rescored, rollout.old_logp, rollout.action_mask)])
    rollout.state["sampler_logp_gap"] = gaps.amax(dim=0)
    rollout.old_logp = rescored
    return rollout


def concat_rollouts(rollouts: Sequence[Rollout]) -> Rollout:
    """One Rollout from shards of the same step (e.g. from several workers), in the given order."""
    if not rollouts:
        raise ValueError("concat_rollouts needs at least one rollout")
    first = rollouts[0]
    if any(r.prefix_steps != first.prefix_steps for r in rollouts):
        raise ValueError(f"cannot join rollouts of different prefix lengths {[r.prefix_steps for r in rollouts]}")
    return Rollout(
        prompts=[p for r in rollouts for p in r.prompts],
        group_ids=torch.cat([r.group_ids for r in rollouts]),
        outputs=_join([r.outputs for r in rollouts]),
        old_logp=[torch.cat(steps) for steps in zip(*(r.old_logp for r in rollouts))],
        action_mask=[torch.cat(steps) for steps in zip(*(r.action_mask for r in rollouts))],
        prefix_steps=first.prefix_steps,
        state={key: _join([r.state[key] for r in rollouts]) for key in first.state},
    )


def _join(values: list) -> Any:
    """Concatenate shards of one field: tensors, per-step tensor lists (or None), per-sample lists."""
    first = values[0]
    if isinstance(first, Tensor):
        return torch.cat(values)
    if isinstance(first, list) and first and all(isinstance(v, Tensor) or v is None for v in first):
        return [None if steps[0] is None else torch.cat(steps) for steps in zip(*values)]
    if isinstance(first, list):
        return [item for value in values for item in value]
    return first  # batch-independent settings: identical in every shard


def _take(value: Any, index: Tensor, rows: list[int]) -> Any:
    """Select batch rows of a tensor, of each tensor in a list, or of a per-sample list."""
    if isinstance(value, Tensor):
        return value[index]
    if isinstance(value, list) and all(isinstance(v, Tensor) or v is None for v in value):
        return [v[index] if v is not None else None for v in value]  # per step, batch-first (or empty)
    if isinstance(value, list):
        return [value[i] for i in rows]  # per sample (texts)
    return value  # batch-independent entries (settings) pass through unchanged


@runtime_checkable
class StepPolicy(Protocol):
    """What the trainer and the rollout workers need from a generator family."""

    num_steps: int  # T

    def rollout(self, prompts: list, prefix_steps: int, *, generator: Generators,
                group_ids: Tensor | None = None) -> Rollout: ...

    def log_prob(self, rollout: Rollout) -> list[Tensor]:
        """One [B, A_t] float32 tensor per prefix step, with gradients through the adapter."""
        ...

    def complete(self, rollout: Rollout, samples: int, *, generator: Generators) -> tuple[Any, list, Any]:
        """Finish each rollout's prefix `samples` times with the frozen suffix: (outputs, prompts, tokens)."""
        ...

    def completion_tokenizer(self) -> Callable[[list[str]], list[list[int]]] | None:
        """Text outputs -> the policy's token ids (rewards' `completion_ids`); None for image outputs."""
        ...

    def adapter_disabled(self) -> AbstractContextManager: ...

    def adapter_state(self) -> dict[str, Tensor]: ...

    def load_adapter_state(self, state: dict[str, Tensor]) -> None: ...


def resolve_prefix_steps(prefix_steps: int | str, num_steps: int) -> int:
    """m as an int: `all` means T; anything outside 1..T is an error naming the allowed range."""
    if prefix_steps == "all":
        return num_steps
    if isinstance(prefix_steps, bool) or not isinstance(prefix_steps, int) or not 1 <= prefix_steps <= num_steps:
        raise ValueError(f"prefix_steps must be 1..{num_steps} (this policy has T = {num_steps} steps) or 'all', "
                         f"got {prefix_steps!r}")
    return prefix_steps


def declared_num_steps(cfg: Any) -> int | None:
    """T as a PolicyConfig declares it, without loading any weights: the insertion steps, an imported
    VAR's `patch_nums`, or the scales in a checkpoint file's architecture metadata; None if unknown."""
    if cfg.kind == "insertion":
        return cfg.insertion_steps
    if cfg.kind != "next_scale":
        return None
    if cfg.architecture.get("patch_nums"):
        return len(cfg.architecture["patch_nums"])
    import json

    from safetensors import SafetensorError, safe_open

    from rlalign.assets import resolve_checkpoint

    try:
        with safe_open(str(resolve_checkpoint(cfg.checkpoint)), "pt") as handle:
            architecture = json.loads((handle.metadata() or {}).get("architecture", "{}"))
        return len(architecture["tokenizer"]["patch_nums"])
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):  # load_policy reports a bad file
        return None


def parse_prefix_steps(spec: str, num_steps: int) -> list[int | str]:
    """A comma list of m values, `1,2,all` -> [1, 2, 'all'], each checked by resolve_prefix_steps;
    the same m twice (`6,all` when T = 6) is an error."""
    values: list[int | str] = []
    seen: set[int] = set()
    for item in (part.strip() for part in spec.split(",")):
        value: int | str = int(item) if item.isdigit() else item
        try:
            m = resolve_prefix_steps(value, num_steps)
        except ValueError as error:
            raise ValueError(f"--prefix-steps: {error}") from None
        if m in seen:
            raise ValueError(f"--prefix-steps lists m = {item} twice ({spec!r}); 'all' is m = {num_steps}")
        seen.add(m)
        values.append(value)
    return values


def load_policy(cfg: Any) -> StepPolicy:
    """Build a policy from a PolicyConfig (or a dict of its fields)."""
    from rlalign.config import PolicyConfig
    from rlalign.config.loading import build

    if isinstance(cfg, dict):
        cfg = build(PolicyConfig, cfg)
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"load_policy takes a PolicyConfig or a dict, got {type(cfg).__name__}")
    if cfg.kind == "next_scale":
        from rlalign.policies.next_scale.policy import NextScalePolicy

        return NextScalePolicy.from_config(cfg)
    if cfg.kind == "insertion":
        from rlalign.policies.insertion.policy import InsertionPolicy

        return InsertionPolicy.from_config(cfg)
    raise ValueError(f"policy.kind={cfg.kind!r} is not available in this version of rlalign (next_scale, insertion are)")
