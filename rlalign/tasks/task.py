"""What a task is: named prompt sources, a verifier and the categories its reports use
(docs/extending.md, "A task").

A task is plain data built by composition, not a class to subclass: the built-in ones are
`rlalign.tasks.shapes.TASK` and `rlalign.tasks.sums.TASK`, and a user's own task is any `Task`
reachable as `module:attr` (or an entry point of the group `rlalign.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Verdict(Protocol):
    """One judged sample: exact match (GenEval's number) and a partial score in [0, 1]."""

    exact: bool
    score: float


Judge = Callable[[Sequence, Any], list[tuple[Verdict, str]]]
"""judge(prompts, outputs) -> one (verdict, category) per sample; `outputs` is an image batch
[B, 3, H, W] or a list of B texts. A judge raises ValueError for samples it cannot judge."""


@dataclass(frozen=True)
class PromptSource:
    """A parsed prompt source: a finite list (`fixed`) or an endless seeded draw (`endless`).

    `task` names the task whose verifier judges these prompts (None: no verifier).
    """

    spec: str
    fixed: tuple | None = None
    endless: Callable[[int, int], list] | None = field(default=None, compare=False)
    """endless(count, seed) -> `count` prompts, determined by its arguments alone."""
    task: str | None = None

    def draw(self, count: int, seed: int) -> list:
        """`count` prompts, determined by (source, count, seed) alone.

        Finite lists are walked in one seeded permutation per pass, so prompt i of a pass differs
        from prompt j of the same pass unless the list is shorter than `count`.
        """
        if self.fixed is None:
            return self.endless(count, seed)
        rng = np.random.default_rng([seed, len(self.fixed)])
        order: list[int] = []
        while len(order) < count:
            order.extend(rng.permutation(len(self.fixed)).tolist())
        return [self.fixed[i] for i in order[:count]]

    def all(self) -> list:
        """The whole list of a finite source."""
        if self.fixed is None:
            raise ValueError(f"prompt source {self.spec!r} is endless; use draw(count, seed), or a fixed source "
                             "such as shapes-eval:heldout")
        return list(self.fixed)


SourceParser = Callable[[str, str], PromptSource]
"""parse(spec, argument) -> PromptSource, for a spec `kind:argument`; raises ValueError naming the
spec and the accepted forms when the argument is wrong."""


@dataclass(frozen=True)
class Task:
    """A task: where its prompts come from, how its samples are judged and in which categories.

    - `sources`: prompt-source kinds the task owns (`kind` of `kind:argument`) and their parsers;
      every source a parser returns should carry `task=name`, so its prompts are judged by `judge`.
    - `forms`: the accepted spellings, for error messages (e.g. "sums:SPLIT").
    - `judge` and `categories`: the verifier and the order of its categories in reports
      (GenEval-style tables; `overall` is the mean of the categories present).
    - `rewards` / `eval_only`: reward names the task registers (name -> `module:function` or
      `module:factory()`) and which of them are evaluation ground truth the config refuses to train on.
    """

    name: str
    sources: Mapping[str, SourceParser] = field(default_factory=dict)
    forms: tuple[str, ...] = ()
    judge: Judge | None = None
    categories: tuple[str, ...] = ()
    rewards: Mapping[str, str] = field(default_factory=dict)
    eval_only: frozenset[str] = frozenset()
    description: str = ""

    def verdicts(self, prompts: Sequence, outputs: Any) -> tuple[list[Verdict], list[str]]:
        """The judge's verdicts and categories, checked: one per sample, categories among `categories`."""
        if self.judge is None:
            raise ValueError(f"task {self.name!r} has no verifier (its judge is None)")
        judged = self.judge(prompts, outputs)
        count = len(outputs)
        if not isinstance(judged, list) or len(judged) != count:
            raise ValueError(f"task {self.name!r}: the judge returned {type(judged).__name__} of "
                             f"{len(judged) if hasattr(judged, '__len__') else '?'} items for {count} samples; "
                             "it must return one (verdict, category) pair per sample")
        unknown = sorted({category for _, category in judged} - set(self.categories))
        if unknown:
            raise ValueError(f"task {self.name!r}: the judge gave categories {unknown} that are not in its "
                             f"categories {list(self.categories)}; list every category in Task.categories")
        return [verdict for verdict, _ in judged], [category for _, category in judged]
