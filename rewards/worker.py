"""The reward worker: scores a batch with every configured reward, checks the outputs, combines them.

`RewardWorker` is a plain class (README, "Conventions"): the Ray backend wraps it with `ray.remote(...)` where
it launches it, tests and the local backend use it directly. One worker serves either the trained
rewards (`RewardWorker(cfg.rewards.functions, cfg.rewards.combine)`) or the evaluation rewards
(`RewardWorker(cfg.rewards.eval, combine=None)`: every reward scored and reported, none combined).

Every reward is called the way TRL's GRPOTrainer calls it, with keywords only:
`fn(prompts=..., completions=..., **metadata)`, so TRL's own reward functions (whose first
parameter is `completions`) plug in unchanged. Its output must be one entry per completion: a
number, or None for "not applicable" (-> NaN, left out of the statistics). Anything else — wrong
length, not a list, NaN/inf, non-numbers, an exception — is a bug in the reward, and stops the run
with a `RewardError` naming the reward, unless that reward is configured `on_error: skip`, in which
case the affected samples become NaN and the skips are logged and counted (`rewards/<label>/skipped`).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rlalign.rewards.registry import EVAL_ONLY, build_reward, reads_conversations

from rlalign.rewards.combine import COMBINE_MODES, DEFAULT_EPS, combine, reward_stats
from rlalign.config import RewardSpec
from rlalign.utils.rows import split_rows

logger = logging.getLogger(__name__)

SKIP_HINT = "set `on_error: skip` on this reward to NaN the affected samples and carry on"
_SHOWN_PROBLEMS = 3
"""Bad entries quoted in an error message (the rest are counted)."""


class RewardError(ValueError):
    """A reward function raised or returned something unusable; the message names it and the fix."""


class RewardActorFailure(RuntimeError):
    """A reward actor died or did not answer within rewards.timeout_s. Defined here, beside RewardError,
    so that the in-process scorer, the Ray scorer and the trainer all import it from the module below
    them (no import cycle, and catching it needs no Ray)."""


class _WholeOutputBad(Exception):
    """The output as a whole is unusable (not a list, wrong length): every sample is affected."""


@dataclass
class RewardResult:
    """One batch's rewards. Plain tensors, floats and dicts only, so it pickles (Ray moves it)."""

    total: torch.Tensor | None
    """[B] combined trained reward (NaN where no trained reward applies); None for evaluation workers."""
    per_reward: dict[str, torch.Tensor]
    """label -> [B] raw values, NaN for None and for skipped bad outputs."""
    stats: dict[str, dict[str, float]]
    """label -> mean, std, min, max, count, nan_count over the valid values (see rewards.combine)."""
    seconds: dict[str, float]
    """label -> wall time of that reward's call."""
    skipped: dict[str, int]
    """label -> samples NaN'd by `on_error: skip` in this call (0 when the output was fine)."""

    def metrics(self) -> dict[str, float]:
        """Flat metric dict with docs/grpo.md "Metrics" names, ready for MetricsLogger.log."""
        flat: dict[str, float] = {}
        for label, stats in self.stats.items():
            flat[f"rewards/{label}/mean"] = stats["mean"]
            flat[f"rewards/{label}/std"] = stats["std"]
            flat[f"rewards/{label}/nan_count"] = stats["nan_count"]
            flat[f"rewards/{label}/skipped"] = self.skipped[label]
            flat[f"time/reward/{label}"] = self.seconds[label]
        if self.total is not None:
            total_stats = reward_stats(self.total)
            flat["rewards/total/mean"] = total_stats["mean"]
            flat["rewards/total/std"] = total_stats["std"]
        return flat


@dataclass
class RawScores:
    """Every reward's values for one batch or shard, before combination. Plain tensors and dicts (pickles)."""

    per_reward: dict[str, torch.Tensor]
    """label -> [b] raw values, NaN for None and for skipped bad outputs."""
    seconds: dict[str, float]
    """label -> wall time of that reward's calls."""
    skipped: dict[str, int]
    """label -> samples NaN'd by `on_error: skip`."""

    @staticmethod
    def concat(shards: Sequence[RawScores]) -> RawScores:
        """Shards of one batch, in batch order: values joined, seconds and skips added up."""
        if not shards:
            raise ValueError("RawScores.concat needs at least one shard")
        labels = list(shards[0].per_reward)
        return RawScores(per_reward={label: torch.cat([s.per_reward[label] for s in shards]) for label in labels},
                         seconds={label: sum(s.seconds[label] for s in shards) for label in labels},
                         skipped={label: sum(s.skipped[label] for s in shards) for label in labels})


# ---------------------------------------------------------------------------------------------
# Checking one reward's output
# ---------------------------------------------------------------------------------------------


def _entries(output: Any, batch: int) -> list:
    """The output as a list of `batch` entries, or _WholeOutputBad saying what is wrong with it.

    1-D tensors and numpy arrays are accepted as well as lists and tuples: a vectorised reward
    naturally returns one, and converting it is unambiguous.
    """
    if isinstance(output, (torch.Tensor, np.ndarray)):
        if output.ndim != 1:
            raise _WholeOutputBad(f"returned an array of shape {tuple(output.shape)}, not one value per completion")
        output = output.tolist()
    elif isinstance(output, (str, bytes, Mapping)) or not isinstance(output, Sequence):
        raise _WholeOutputBad(f"returned a {type(output).__name__}, not a list of {batch} numbers")
    if len(output) != batch:
        raise _WholeOutputBad(f"returned {len(output)} values for {batch} completions")
    return list(output)


def _entry_value(entry: Any) -> float | str:
    """The float value of one entry (NaN for None), or a description of why it is bad."""
    if entry is None:
        return math.nan
    if isinstance(entry, torch.Tensor) and entry.numel() == 1 or isinstance(entry, np.ndarray) and entry.size == 1:
        entry = entry.item()  # a list of one-element tensors, as `list(tensor_B)` gives
    if not isinstance(entry, (numbers.Real, np.bool_)):
        return f"non-numeric entry {entry!r:.40}"
    value = float(entry)
    if not math.isfinite(value):
        return f"non-finite value {value}"
    with np.errstate(over="ignore"):
        if not np.isfinite(np.float32(value)):  # values are kept as float32: 4e38 would become inf
            return f"value {value:.3g} overflows float32 (|x| ≤ 3.4e38); rescale the reward"
    return value


def check_output(output: Any, batch: int) -> tuple[torch.Tensor, dict[int, str]]:
    """Values [B] (None -> NaN) and the bad entries `index -> problem`, which are NaN in the values.

    Raises _WholeOutputBad when the output cannot be read entry by entry at all.
    """
    values, problems = [], {}
    for index, entry in enumerate(_entries(output, batch)):
        value = _entry_value(entry)
        if isinstance(value, str):
            problems[index] = value
            value = math.nan
        values.append(value)
    return torch.tensor(values, dtype=torch.float32), problems


def _describe(problems: dict[int, str], batch: int) -> str:
    shown = "; ".join(f"index {index}: {problem}" for index, problem in list(problems.items())[:_SHOWN_PROBLEMS])
    more = f"; and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
    hint = (" (a sample the reward does not apply to takes None, not NaN)"
            if any(problem.startswith("non-finite") for problem in problems.values()) else "")
    return f"returned {len(problems)} bad value(s) of {batch}: {shown}{more}{hint}"


# ---------------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------------


def _as_spec(spec: RewardSpec | Mapping) -> RewardSpec:
    return spec if isinstance(spec, RewardSpec) else RewardSpec(**spec)


def as_conversations(prompts: Sequence, completions: Sequence) -> tuple[list, list]:
    """TRL's conversational form of a text batch: each completion one assistant message, each text
    prompt one user message (other prompts, such as a captioner's scenes, pass unchanged)."""
    return ([[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts],
            [[{"role": "assistant", "content": c}] if isinstance(c, str) else c for c in completions])


class RewardWorker:
    """Builds each reward once, then scores batches with all of them (see the module docstring).

    A worker pickles as its specs: unpickling rebuilds the reward functions, so rewards that hold
    a model or are closures travel too (at the price of rebuilding them on arrival).
    """

    def __init__(self, specs: Sequence[RewardSpec | Mapping], combine: str | None = "sum_then_normalize",
                 eps: float = DEFAULT_EPS, tokenizer: Callable[[list[str]], list[list[int]]] | None = None):
        self.specs = [_as_spec(spec) for spec in specs]
        self.tokenizer = tokenizer
        self.combine_mode = combine
        self.eps = eps
        if combine is not None and combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES} or None (evaluation), got {combine!r}")
        labels = [spec.label or spec.name for spec in self.specs]
        if not labels:
            raise ValueError("RewardWorker needs at least one reward spec")
        if len(set(labels)) != len(labels) or "total" in labels:
            raise ValueError(f"reward labels must be distinct and not 'total' (metric rewards/total/...): {labels}")
        if combine is not None and all(spec.weight == 0 for spec in self.specs):
            raise ValueError("every reward has weight 0, so there is no total to train on; "
                             "give one a nonzero weight, or use combine=None to only score and report")
        trained_eval_only = [spec.name for spec in self.specs if spec.weight != 0 and spec.name in EVAL_ONLY]
        if combine is not None and trained_eval_only:
            raise ValueError(f"{trained_eval_only} are evaluation ground truth and may never enter a trained "
                             "total; give them weight 0 (logged only) or score them with combine=None")
        self.labels = labels
        self.functions = {label: build_reward(spec) for label, spec in zip(labels, self.specs)}
        self.conversational = {label: spec.completion_format == "conversational" or (
            spec.completion_format == "auto" and reads_conversations(self.functions[label]))
            for label, spec in zip(labels, self.specs)}

    def __getstate__(self) -> dict:
        return {"specs": self.specs, "combine": self.combine_mode, "eps": self.eps, "tokenizer": self.tokenizer}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def score(self, prompts: Sequence, completions: torch.Tensor | Sequence,
              metadata: Mapping[str, Any] | None = None) -> RewardResult:
        """Score B completions (images [B,3,H,W] in [0,1] or texts) with every reward: `finish(score_raw(...))`.

        `metadata` entries (scenes=..., solution=...) are passed to every reward as keywords, as
        TRL passes its dataset columns; prompts may also be TRL-style rows ({"prompt": text, "solution":
        ...}), whose "prompt" is what rewards get as `prompts` and whose other columns become keywords.
        Text completions also get `completion_ids` (the policy's token ids of each text, as
        GRPOTrainer passes them) when the worker has a tokenizer.
        """
        return self.finish(self.score_raw(prompts, completions, metadata))

    def score_raw(self, prompts: Sequence, completions: torch.Tensor | Sequence,
                  metadata: Mapping[str, Any] | None = None) -> RawScores:
        """Every reward's checked values for one batch or one shard of it, not yet combined.

        Each sample's values depend on that sample (and the shard's shape) only, so shards can be
        scored apart (on reward actors, as they are sampled) and joined with `RawScores.concat`;
        the combination normalises over the whole batch, so it waits for `finish`.
        """
        batch = completions.shape[0] if isinstance(completions, torch.Tensor) else len(completions)
        if len(prompts) != batch:
            raise ValueError(f"got {len(prompts)} prompts for {batch} completions; pass one prompt per completion")
        prompts, columns = split_rows(prompts)  # TRL-style rows: their columns are keywords too
        metadata = {**columns, **(metadata or {})}
        if self.tokenizer is not None and not isinstance(completions, torch.Tensor) and "completion_ids" not in metadata:
            metadata["completion_ids"] = self.tokenizer(list(completions))
        per_reward, seconds, skipped = {}, {}, {}
        for label, spec in zip(self.labels, self.specs):
            start = time.perf_counter()
            per_reward[label], skipped[label] = self._score_one(label, spec, prompts, completions, metadata)
            seconds[label] = time.perf_counter() - start
        return RawScores(per_reward=per_reward, seconds=seconds, skipped=skipped)

    def finish(self, raw: RawScores) -> RewardResult:
        """The batch's RewardResult: the combined total (trained workers) and each reward's statistics."""
        total = None
        if self.combine_mode is not None:
            weights = {label: spec.weight for label, spec in zip(self.labels, self.specs)}
            total = combine(raw.per_reward, weights, self.combine_mode, self.eps)
        stats = {label: reward_stats(values) for label, values in raw.per_reward.items()}
        return RewardResult(total=total, per_reward=raw.per_reward, stats=stats, seconds=raw.seconds,
                            skipped=raw.skipped)

    def _score_one(self, label: str, spec: RewardSpec, prompts: Sequence, completions: Any,
                   metadata: Mapping[str, Any]) -> tuple[torch.Tensor, int]:
        """One reward's values [B] and how many samples `on_error: skip` turned into NaN."""
        batch = len(prompts)
        if self.conversational[label] and not isinstance(completions, torch.Tensor):
            prompts, completions = as_conversations(prompts, completions)
        try:
            output = self.functions[label](prompts=prompts, completions=completions, **metadata)
        except Exception as error:  # noqa: BLE001 - any failure of user code is reported the same way
            problem, cause = f"raised {type(error).__name__}: {error}", error
        else:
            try:
                values, problems = check_output(output, batch)
            except _WholeOutputBad as bad:
                problem, cause = str(bad), None
            else:
                if not problems:
                    return values, 0
                return self._skip_or_raise(label, spec, _describe(problems, batch), None, values, len(problems))
        return self._skip_or_raise(label, spec, problem, cause, torch.full((batch,), math.nan), batch)

    @staticmethod
    def _skip_or_raise(label: str, spec: RewardSpec, problem: str, cause: Exception | None,
                       values: torch.Tensor, affected: int) -> tuple[torch.Tensor, int]:
        if spec.on_error == "raise":
            raise RewardError(f"reward {label!r} {problem}; fix the reward, or {SKIP_HINT}") from cause
        logger.warning("reward %r %s; %d sample(s) set to NaN (on_error: skip)", label, problem, affected)
        return values, affected
