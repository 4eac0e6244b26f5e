"""The policy interface every generator family implements (docs/grpo.md, "Prefix and frozen suffix").

A policy samples T generation steps; the first m (the prefix) with its LoRA adapter on, the rest
(the suffix) with the adapter off, i.e. from the frozen base. Only prefix actions are scored for
the loss, so a Rollout keeps, per prefix step, the log-probs the sampler actually used, and a
family-typed state (`RolloutState`) with whatever that family's `log_prob` needs to re-score them.
Families are built by name through `registry.load_policy`; this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator]
"""One generator for the whole batch, or one per sample (sample-level determinism, e.g. for sharding)."""


class RolloutState(Protocol):
    """A family's record of a rollout batch (NextScaleState, InsertionState): a dataclass of CPU
    tensors, batch-first, so the Rollout pickles (Ray moves it between processes) and can be cut
    into micro-batches or joined from worker shards without guessing what each value is."""

    def select(self, index: Tensor) -> RolloutState:
        """The samples `index` (LongTensor [b]), along the batch axis of every tensor."""
        ...

    @classmethod
    def concat(cls, shards: Sequence[Any]) -> RolloutState:
        """Shards of one step, in the given order; batch-independent settings come from the first."""
        ...


def select_steps(steps: Sequence[Tensor | None], index: Tensor) -> list[Tensor | None]:
    """Rows `index` of each per-step batch-first tensor; a step that stored nothing (None) stays None."""
    return [None if step is None else step[index] for step in steps]


def concat_steps(shards: Sequence[Sequence[Tensor | None]]) -> list[Tensor | None]:
    """Per-step batch-first tensors of several shards, joined step by step along the batch axis."""
    return [None if steps[0] is None else torch.cat(steps) for steps in zip(*shards)]


@dataclass
class Rollout:
    """One batch of sampled trajectories with the rollout-time log-probs of their prefix actions.

    Plain tensors, lists and dataclasses only, so it pickles (Ray moves it between processes). The
    record of the prefix (log-probs, masks, state) is on the host; image outputs stay on the policy's
    device, so a reward model on that device scores them without a round trip (`outputs_to_host`
    moves them before a rollout leaves its process).
    """

    prompts: list
    """One entry per sample (already repeated G times)."""
    group_ids: Tensor
    """[B] the prompt group each sample belongs to."""
    outputs: Any
    """Images [B, 3, H, W] in [0, 1] on the policy's device, or a list of B texts."""
    old_logp: list[Tensor]
    """Per prefix step: [B, A_t] float32 log-probs at rollout time, detached."""
    action_mask: list[Tensor]
    """Per prefix step: [B, A_t] bool, False for padded actions."""
    prefix_steps: int
    """m, the number of prefix steps (len(old_logp))."""
    state: RolloutState
    """The family's record for re-scoring the prefix and finishing it again (`complete`)."""
    sampler_logp_gap: Tensor | None = None
    """[B] max |sampler's own log-prob − log_prob's re-score| per sample over real actions, set by
    `keep_rescored_old_logp` (a diagnostic: the two paths agree up to float rounding)."""

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, index: Tensor | Sequence[int]) -> Rollout:
        """The sub-batch of samples `index` (e.g. a micro-batch), sliced along the batch axis everywhere."""
        index = torch.as_tensor(index, dtype=torch.long)
        rows = index.tolist()
        images = isinstance(self.outputs, Tensor)
        return Rollout(
            prompts=[self.prompts[i] for i in rows],
            group_ids=self.group_ids[index],
            outputs=self.outputs[index] if images else [self.outputs[i] for i in rows],
            old_logp=[t[index] for t in self.old_logp],
            action_mask=[t[index] for t in self.action_mask],
            prefix_steps=self.prefix_steps,
            state=self.state.select(index),
            sampler_logp_gap=None if self.sampler_logp_gap is None else self.sampler_logp_gap[index],
        )


def outputs_to_host(rollout: Rollout) -> Rollout:
    """The rollout with image outputs moved to the host (one copy): what leaves a worker process."""
    if isinstance(rollout.outputs, Tensor):
        rollout.outputs = rollout.outputs.cpu()
    return rollout


def keep_rescored_old_logp(rollout: Rollout, rescored: list[Tensor]) -> Rollout:
    """Make `rescored` (log_prob's own scoring of the sampled prefix) the rollout's old_logp.

    A sampler and the teacher-style scoring pass compute the same distribution with different
    reduction orders (KV cache vs one block pass, per-step vs batched), so they differ by float
    rounding. Recording old_logp from log_prob's path makes the GRPO ratio exactly 1 before the
    first update; the sampler's own values survive as rollout.sampler_logp_gap ([B], the max
    |sampler − re-score| per sample over real actions) to show the two agree up to rounding.
    """
    gaps = torch.stack([((new - old).abs() * mask).amax(dim=1) for new, old, mask
                        in zip(rescored, rollout.old_logp, rollout.action_mask)])
    rollout.sampler_logp_gap = gaps.amax(dim=0)
    rollout.old_logp = rescored
    return rollout


def concat_rollouts(rollouts: Sequence[Rollout]) -> Rollout:
    """One Rollout from shards of the same step (e.g. from several workers), in the given order."""
    if not rollouts:
        raise ValueError("concat_rollouts needs at least one rollout")
    first = rollouts[0]
    if any(r.prefix_steps != first.prefix_steps for r in rollouts):
        raise ValueError(f"cannot join rollouts of different prefix lengths {[r.prefix_steps for r in rollouts]}")
    outputs = [r.outputs for r in rollouts]
    gaps = [r.sampler_logp_gap for r in rollouts]
    images = isinstance(outputs[0], Tensor)
    return Rollout(
        prompts=[p for r in rollouts for p in r.prompts],
        group_ids=torch.cat([r.group_ids for r in rollouts]),
        outputs=torch.cat(outputs) if images else [text for texts in outputs for text in texts],
        old_logp=[torch.cat(steps) for steps in zip(*(r.old_logp for r in rollouts))],
        action_mask=[torch.cat(steps) for steps in zip(*(r.action_mask for r in rollouts))],
        prefix_steps=first.prefix_steps,
        state=type(first.state).concat([r.state for r in rollouts]),
        sampler_logp_gap=None if gaps[0] is None else torch.cat(gaps),
    )


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


def parse_prefix_steps(spec: str, num_steps: int, flag: str = "--prefix-steps") -> list[int | str]:
    """A comma list of m values, `1,2,all` -> [1, 2, 'all'], each checked by resolve_prefix_steps;
    the same m twice (`6,all` when T = 6) is an error. Errors name `flag`, the option they came from."""
    values: list[int | str] = []
    seen: set[int] = set()
    for item in (part.strip() for part in spec.split(",")):
        value: int | str = int(item) if item.isdigit() else item
        try:
            m = resolve_prefix_steps(value, num_steps)
        except ValueError as error:
            raise ValueError(f"{flag}: {str(error).replace('prefix_steps must be', 'each value must be')}") from None
        if m in seen:
            also = f"; 'all' is {num_steps}" if "all" in spec else ""  # the hidden twin of `6,all` when T = 6
            raise ValueError(f"{flag} lists {m} twice ({spec!r}){also}; give each value once")
        seen.add(m)
        values.append(value)
    return values
