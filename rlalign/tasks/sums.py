"""The Sums task: the built-in text task of the Edit Flow family (rlalign.sums, docs/edit_flow.md).

  sums:SPLIT   the task's prompts of a split (train 50 | heldout 25 | all), as rows
               {"prompt", "solution", "target", "terms", "category"}

The verifier (rlalign.sums.verify) judges each completion against its row's target and number of
terms; one category per number of terms.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlalign import sums
from rlalign.tasks.task import PromptSource, Task


def source(spec: str, split: str) -> PromptSource:
    try:
        rows = sums.prompts(split)
    except ValueError as error:
        raise ValueError(f"prompt source {spec!r}: {error}") from None
    return PromptSource(spec, fixed=tuple(rows), task="sums")


def judge(rows: Sequence, completions: Sequence[str]) -> list:
    if not all(isinstance(row, dict) and {"target", "terms", "category"} <= set(row) for row in rows):
        raise ValueError("the Sums verifier judges completions of Sums rows (sums:SPLIT sources), with their "
                         "target, terms and category columns")
    return [(sums.verify(text, row["target"], row["terms"]), row["category"]) for text, row in zip(completions, rows)]


TASK = Task(
    name="sums",
    sources={"sums": source},
    forms=("sums:SPLIT",),
    judge=judge,
    categories=sums.CATEGORIES,
    rewards={"sums_eval": "rlalign.rewards.sums:sums_eval", "sums_format": "rlalign.rewards.sums:sums_format"},
    eval_only=frozenset({"sums_eval"}),
    description="the built-in Sums text task: write a number as a sum of a given number of digits",
)
