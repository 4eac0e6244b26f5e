"""Rewards of the built-in Sums task (rlalign.sums), in TRL's reward-function convention: keyword
arguments `prompts`, `completions` and the dataset columns (`target`, `terms`, ...), one float per
completion. `sums_eval` is the task's verifier (evaluation ground truth, never trained on);
`sums_format` checks the form only, so that training on it beside TRL's `accuracy_reward` (which
checks the value only) is not training on the verifier itself."""

from __future__ import annotations

from collections.abc import Sequence

from rlalign.sums import ANSWER, verify


def sums_eval(completions: Sequence[str], target: Sequence[int], terms: Sequence[int], **kwargs) -> list[float]:
    """1.0 for an exactly right answer (boxed, the asked number of digits 1-9, adding up), else 0.0."""
    return [float(verify(text, goal, count).exact) for text, goal, count in zip(completions, target, terms)]


def sums_format(completions: Sequence[str], terms: Sequence[int], **kwargs) -> list[float]:
    """1.0 when the completion is one boxed sum of exactly the asked number of digits 1-9 (whatever
    it adds up to), else 0.0."""
    scores = []
    for text, count in zip(completions, terms):
        match = ANSWER.fullmatch(text.replace(" ", ""))
        digits = match.group(1).split("+") if match else []
        scores.append(float(len(digits) == count and "0" not in digits))
    return scores
