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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from rlalign.rewards.calls import AsyncRunner, CallLog, accepted_keywords, is_async
from rlalign.rewards.checking import SKIP_HINT, RewardError, WholeOutputBad, check_output, describe_problems
from rlalign.rewards.combine import COMBINE_MODES, DEFAULT_EPS, combine, reward_stats
from rlalign.rewards.registry import EVAL_ONLY, build_reward, reads_conversations

from rlalign.config import RewardSpec
from rlalign.utils.rows import split_rows
from rlalign.utils.stops import RunStopped

logger = logging.getLogger(__name__)

class RewardActorFailure(RunStopped):
    """A reward actor died or did not answer within rewards.timeout_s. Defined here, beside RewardError,
    so that the in-process scorer, the Ray scorer and the trainer all import it from the module below
    them (no import cycle, and catching it needs no Ray)."""


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
    logged: dict[str, float] = field(default_factory=dict)
    """name -> mean of the values rewards gave `log_metric` for this batch (TRL's semantics)."""
    extras: dict[str, list] = field(default_factory=dict)
    """column -> [B] values rewards gave `log_extra` (None where a shard logged nothing)."""

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
        return {**flat, **self.logged}


@dataclass
class RawScores:
    """Every reward's values for one batch or shard, before combination. Plain tensors and dicts (pickles)."""

    per_reward: dict[str, torch.Tensor]
    """label -> [b] raw values, NaN for None and for skipped bad outputs."""
    seconds: dict[str, float]
    """label -> wall time of that reward's calls."""
    skipped: dict[str, int]
    """label -> samples NaN'd by `on_error: skip`."""
    log: CallLog | None = None
    """What the rewards logged through TRL's `log_metric` / `log_extra` keywords."""

    @staticmethod
    def concat(shards: Sequence[RawScores]) -> RawScores:
        """Shards of one batch, in batch order: values joined, seconds and skips added up, logged metric
        values pooled, extra columns joined (None for the samples of a shard that did not log one)."""
        if not shards:
            raise ValueError("RawScores.concat needs at least one shard")
        labels = list(shards[0].per_reward)
        logs = [s.log or CallLog(len(next(iter(s.per_reward.values())))) for s in shards]
        joined = CallLog(sum(log.batch for log in logs))
        for log in logs:
            for name, values in log.metrics.items():
                joined.metrics.setdefault(name, []).extend(values)
        for column in dict.fromkeys(column for log in logs for column in log.extras):
            joined.extras[column] = [v for log in logs for v in log.extras.get(column, [None] * log.batch)]
        return RawScores(per_reward={label: torch.cat([s.per_reward[label] for s in shards]) for label in labels},
                         seconds={label: sum(s.seconds[label] for s in shards) for label in labels},
                         skipped={label: sum(s.skipped[label] for s in shards) for label in labels}, log=joined)


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
    a model or are closures travel too (at the price of rebuilding them on arrival). `callables` maps
    the spec names of rewards given as Python objects (rlalign.api: `python:NAME`) to the objects; they
    travel pickled, by reference, or by value when their module is a user's own (rewards/ray_scoring.py).
    """

    def __init__(self, specs: Sequence[RewardSpec | Mapping], combine: str | None = "sum_then_normalize",
                 eps: float = DEFAULT_EPS, tokenizer: Callable[[list[str]], list[list[int]]] | None = None,
                 callables: Mapping[str, Callable] | None = None):
        self.specs = [_as_spec(spec) for spec in specs]
        self.callables = dict(callables or {})
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
        self.functions = {label: build_reward(spec, self.callables) for label, spec in zip(labels, self.specs)}
        self.keywords = {label: accepted_keywords(fn) for label, fn in self.functions.items()}
        self.asynchronous = {label: is_async(fn) for label, fn in self.functions.items()}
        self._runner = AsyncRunner()
        self.conversational = {label: spec.completion_format == "conversational" or (
            spec.completion_format == "auto" and reads_conversations(self.functions[label]))
            for label, spec in zip(labels, self.specs)}

    def __getstate__(self) -> dict:
        return {"specs": self.specs, "combine": self.combine_mode, "eps": self.eps, "tokenizer": self.tokenizer,
                "callables": self.callables}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def score(self, prompts: Sequence, completions: torch.Tensor | Sequence,
              metadata: Mapping[str, Any] | None = None) -> RewardResult:
        """Score B completions (images [B,3,H,W] in [0,1] or texts) with every reward: `finish(score_raw(...))`.

        `metadata` entries (solution=..., a dataset column) are passed to every reward as keywords, as
        TRL passes its dataset columns, except `trainer_state`, which goes (with `log_metric` and
        `log_extra`, rlalign.rewards.calls) only to the rewards that can take it; prompts may also be TRL-style rows ({"prompt": text, "solution":
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
        log = CallLog(batch)
        state = {"trainer_state": metadata.pop("trainer_state")} if "trainer_state" in metadata else {}
        outputs, seconds = self._call_all(prompts, completions, metadata, state, log)
        per_reward, skipped = {}, {}
        for label, spec in zip(self.labels, self.specs):
            per_reward[label], skipped[label] = self._checked(label, spec, outputs[label], batch)
        return RawScores(per_reward=per_reward, seconds=seconds, skipped=skipped, log=log)

    def _call_all(self, prompts: Sequence, completions: Any, metadata: Mapping[str, Any], state: Mapping[str, Any],
                  log: CallLog) -> tuple[dict[str, Any], dict[str, float]]:
        """Every reward's output (or the exception it raised) and wall time: synchronous rewards one
        after another, then the async ones together (as GRPOTrainer runs them)."""
        outputs, seconds, pending = {}, {}, {}
        images_before = _fingerprint(completions)
        for label in self.labels:
            # Every reward gets its own lists (and dict columns); an image batch is shared, and checked below.
            batch_prompts, batch_completions = _private(prompts), _private(completions)
            if self.conversational[label] and not isinstance(completions, torch.Tensor):
                batch_prompts, batch_completions = as_conversations(prompts, completions)
            interface = {**state, **log.keywords_for(label)}
            kwargs = {**{k: _private(v) for k, v in metadata.items()},
                      **{k: v for k, v in interface.items() if k in self.keywords[label]}}
            start = time.perf_counter()
            try:
                output = self.functions[label](prompts=batch_prompts, completions=batch_completions, **kwargs)
            except Exception as error:  # noqa: BLE001 - any failure of user code is reported the same way
                output = error
            _check_unchanged(label, completions, images_before)
            if self.asynchronous[label] and not isinstance(output, Exception):
                pending[label] = _timed(output)
            else:
                outputs[label], seconds[label] = output, time.perf_counter() - start
        if pending:
            for label, result in zip(pending, self._runner.gather(list(pending.values()))):
                outputs[label], seconds[label] = result if isinstance(result, tuple) else (result, math.nan)
            _check_unchanged(", ".join(pending), completions, images_before)
        return outputs, seconds

    def finish(self, raw: RawScores) -> RewardResult:
        """The batch's RewardResult: the combined total (trained workers) and each reward's statistics."""
        total = None
        if self.combine_mode is not None:
            weights = {label: spec.weight for label, spec in zip(self.labels, self.specs)}
            total = combine(raw.per_reward, weights, self.combine_mode, self.eps)
        stats = {label: reward_stats(values) for label, values in raw.per_reward.items()}
        log = raw.log or CallLog(0)
        return RewardResult(total=total, per_reward=raw.per_reward, stats=stats, seconds=raw.seconds,
                            skipped=raw.skipped, logged={name: sum(v) / len(v) for name, v in log.metrics.items()},
                            extras=log.extras)

    def _checked(self, label: str, spec: RewardSpec, output: Any, batch: int) -> tuple[torch.Tensor, int]:
        """One reward's values [B] and how many samples `on_error: skip` turned into NaN."""
        if isinstance(output, Exception):
            problem, cause = f"raised {type(output).__name__}: {output}", output
        else:
            try:
                values, problems = check_output(output, batch)
            except WholeOutputBad as bad:
                problem, cause = str(bad), None
            else:
                if not problems:
                    return values, 0
                return self._skip_or_raise(label, spec, describe_problems(problems, batch), None, values, len(problems))
        return self._skip_or_raise(label, spec, problem, cause, torch.full((batch,), math.nan), batch)

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)  # absent when __init__ refused the specs
        if runner is not None:
            runner.close()

    @staticmethod
    def _skip_or_raise(label: str, spec: RewardSpec, problem: str, cause: Exception | None,
                       values: torch.Tensor, affected: int) -> tuple[torch.Tensor, int]:
        if spec.on_error == "raise":
            raise RewardError(f"reward {label!r} {problem}; fix the reward, or {SKIP_HINT}") from cause
        logger.warning("reward %r %s; %d sample(s) set to NaN (on_error: skip)", label, problem, affected)
        return values, affected


async def _timed(call) -> tuple[Any, float]:
    """An async reward's output (or the exception it raised) and its own wall time."""
    start = time.perf_counter()
    try:
        output = await call
    except Exception as error:  # noqa: BLE001 - reported like a synchronous reward's exception
        output = error
    return output, time.perf_counter() - start


def _private(value: Any) -> Any:
    """A reward's own copy of a list, tuple or dict argument (cheap: the items are shared)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _fingerprint(completions: Any) -> tuple[float, float] | None:
    """Sum and norm of an image batch in float64 (read without a copy), to notice a reward writing into it."""
    if not isinstance(completions, torch.Tensor):
        return None
    return float(completions.sum(dtype=torch.float64)), float(torch.linalg.vector_norm(completions, dtype=torch.float64))


def _check_unchanged(label: str, completions: Any, before: tuple[float, float] | None) -> None:
    """Stop at once when a reward changed the image batch in place: every later reward, the verifier and
    the saved grids would see its changes (a copy per reward would cost a batch of memory each)."""
    if before is not None and _fingerprint(completions) != before:
        raise RewardError(f"reward {label!r} changed the images (`completions`) in place, which every other reward, "
                          "the verifier and the sample grids share; copy them before editing (x = completions.clone())")
