"""Calling reward functions the way TRL's GRPOTrainer does (trl/trainer/grpo_trainer.py,
`_calculate_rewards`): its extra keywords, and `async def` rewards run concurrently.

- `trainer_state`: the run's progress (a transformers `TrainerState`: `global_step`, `max_steps`),
  for rewards that change with training;
- `log_metric(name, value)`: a scalar the reward wants logged; the values of one step are averaged
  (TRL's semantics) and logged under `name` in metrics.jsonl and wandb;
- `log_extra(column, values)`: one value per sample, logged as a column of the step's row in
  `reward_extras.jsonl` (and a wandb table), beside the prompts and the trained reward.

TRL passes these to every reward, so TRL's rewards take `**kwargs`; rlalign passes each only to the
rewards whose signature can take it (a named parameter or `**kwargs`), so plain two-argument rewards
keep working. Async rewards of one batch run together on one event loop in a background thread, so
their waiting overlaps and a notebook's own running loop is never touched.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

TRL_KEYWORDS = ("trainer_state", "log_metric", "log_extra")
RESERVED_METRIC_PREFIXES = ("rewards/", "charts/", "losses/", "debug/", "time/", "eval/", "sampling/", "train/")
"""Namespaces of rlalign's own metrics (docs/grpo.md, "Metrics"): a logged metric may not enter them."""


def accepted_keywords(fn: Callable, names: tuple[str, ...] = TRL_KEYWORDS) -> set[str]:
    """Which of `names` `fn` can take as keywords (all of them when it takes **kwargs)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): pass nothing extra
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return set(names)
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in keyword and p.name in names}


def is_async(fn: Callable) -> bool:
    """Whether calling `fn` gives a coroutine: an `async def` function, a partial of one, or an object
    whose `__call__` is one (TRL's `is_async_callable`)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


@dataclass
class CallLog:
    """What the rewards of one batch (or shard) logged through `log_metric` and `log_extra`."""

    batch: int
    metrics: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, list] = field(default_factory=dict)

    def log_metric(self, name: str, value: float) -> None:
        if not isinstance(name, str) or not name or name.startswith(RESERVED_METRIC_PREFIXES) or name in ("step", "time"):
            raise ValueError(f"log_metric name {name!r} must be a non-empty string other than step and time, outside "
                             f"rlalign's own metric namespaces {RESERVED_METRIC_PREFIXES}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"log_metric({name!r}, {value}): the value must be finite")
        self.metrics.setdefault(name, []).append(value)

    def log_extra(self, column: str, values: list, *, reward: str = "") -> None:
        """One value per sample under `column`. Two rewards may log the same column (TRL's accuracy
        rewards both log "solution"): equal values are kept once, different ones as `column/reward`."""
        if not isinstance(column, str) or not column or column in ("step", "prompt", "reward"):
            raise ValueError(f"log_extra column {column!r} must be a non-empty string other than step, prompt, reward")
        values = list(values)
        if len(values) != self.batch:
            raise ValueError(f"log_extra({column!r}, ...) got {len(values)} values for {self.batch} samples: "
                             "give one value per sample of the batch")
        if column in self.extras and self.extras[column] != values:
            column = f"{column}/{reward}"
            if column in self.extras:
                raise ValueError(f"log_extra({column!r}, ...) was called twice by one reward for one batch")
        self.extras[column] = values

    def keywords_for(self, reward: str) -> dict[str, Callable]:
        """The `log_metric` and `log_extra` keywords one reward receives."""
        return {"log_metric": self.log_metric, "log_extra": functools.partial(self.log_extra, reward=reward)}


class AsyncRunner:
    """One event loop in a daemon thread, started on first use, on which async rewards run together."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="rlalign-async-rewards", daemon=True).start()
                self._loop = loop
            return self._loop

    def gather(self, calls: list[Coroutine]) -> list[Any]:
        """Run the coroutines concurrently; each result is its value or the exception it raised."""
        async def together() -> list[Any]:
            return await asyncio.gather(*calls, return_exceptions=True)

        return asyncio.run_coroutine_threadsafe(together(), self._started()).result()

    def close(self) -> None:
        """Stop the loop's thread (a later `gather` starts a new one)."""
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None
