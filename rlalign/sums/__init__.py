"""Sums: the built-in text world of the Edit Flow family (docs/edit_flow.md, "The built-in Sums task").

A prompt asks for a target written as a sum of a given number of digits:

    prompt      "write 12 as a sum of 3 digits"
    completion  "\\boxed{5+4+3}"   (any order, any digits 1-9 that add up: many right answers)

The answer is boxed, as math RL answers are, so TRL's `accuracy_reward` (math-verify) judges its
value unchanged. The verifier here is stricter: the boxed expression must have exactly the asked
number of terms, each a digit 1-9, and add up to the target.

Prompts are rows in TRL's dataset convention: {"prompt": text, "solution": "12", "target": 12,
"terms": 3, "category": "three"}; a policy reads the prompt, rewards get the other columns as keywords.
Categories are the number of terms. The held-out split is every (target, terms) with
(target + terms) % 3 == 0, a third of the 75 prompts; RL trains on the rest, the base model was
pretrained on all of them (its pretraining is not the RL being evaluated).
"""

from __future__ import annotations

import re
from functools import cache
from typing import NamedTuple

import numpy as np

TERMS = (2, 3, 4)
CATEGORIES = ("two", "three", "four")
"""One category per number of terms, in this order."""
SPLITS = ("train", "heldout", "all")
DIGITS = tuple(str(d) for d in range(10))
WORDS = ("write", "as", "a", "sum", "of", "digits")
ANSWER_TOKENS = ("\\boxed{", "}", "+")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""dllm's special-token layout: PAD 0, UNK 1, CLS = BOS 2, SEP = EOS 3, MASK 4."""
VOCABULARY = SPECIAL_TOKENS + DIGITS + ANSWER_TOKENS + WORDS
TOKEN_PATTERN = r"\\boxed\{|\}|\+|[0-9]|[a-z]+"
"""How a text splits into tokens (after splitting on whitespace): the tokenizer's pre-tokenizer."""
ANSWER = re.compile(r"\\boxed\{([0-9](?:\+[0-9])*)\}")


class Verdict(NamedTuple):
    exact: bool
    """Boxed, the asked number of terms, each a digit 1-9, adding up to the target."""
    score: float
    """Partial credit: the mean of (well-formed box, right number of terms, right sum)."""


def prompt_text(target: int, terms: int) -> str:
    return f"write {target} as a sum of {terms} digits"


def row(target: int, terms: int) -> dict:
    """One prompt as a TRL-style dataset row."""
    return {"prompt": prompt_text(target, terms), "solution": str(target), "target": target, "terms": terms,
            "category": CATEGORIES[TERMS.index(terms)]}


def is_heldout(target: int, terms: int) -> bool:
    return (target + terms) % 3 == 0


def prompts(split: str) -> list[dict]:
    """Every prompt of a split, by number of terms, then target."""
    if split not in SPLITS:
        raise ValueError(f"Sums split must be one of {', '.join(SPLITS)}, got {split!r}")
    rows = [row(target, terms) for terms in TERMS for target in range(terms, 9 * terms + 1)]
    if split == "all":
        return rows
    return [r for r in rows if is_heldout(r["target"], r["terms"]) == (split == "heldout")]


@cache
def _compositions(terms: int, total: int) -> int:
    """How many ordered tuples of `terms` digits 1-9 add up to `total`."""
    if terms == 0:
        return int(total == 0)
    return sum(_compositions(terms - 1, total - d) for d in range(1, 10) if total - d >= 0)


def sample_answer(target: int, terms: int, rng: np.random.Generator) -> str:
    """A right answer drawn uniformly from all of them (digit by digit, weighted by completions left)."""
    if _compositions(terms, target) == 0:
        raise ValueError(f"{target} is not a sum of {terms} digits 1-9")
    digits, left = [], target
    for remaining in range(terms, 0, -1):
        choices = [d for d in range(1, 10) if _compositions(remaining - 1, left - d) > 0]
        weights = np.array([_compositions(remaining - 1, left - d) for d in choices], dtype=float)
        digit = int(rng.choice(choices, p=weights / weights.sum()))
        digits.append(digit)
        left -= digit
    return "\\boxed{" + "+".join(map(str, digits)) + "}"


def verify(completion: str, target: int, terms: int) -> Verdict:
    """Judge one completion against its prompt's target and number of terms."""
    match = ANSWER.fullmatch(completion.replace(" ", ""))
    if match is None:
        return Verdict(False, 0.0)
    digits = [int(d) for d in match.group(1).split("+")]
    count_ok = len(digits) == terms and all(d >= 1 for d in digits)
    sum_ok = sum(digits) == target
    return Verdict(count_ok and sum_ok, (1 + count_ok + sum_ok) / 3)
