"""Checking what a reward function returned (rlalign.rewards.worker calls these).

An output must be one entry per completion: a number, or None for "not applicable" (NaN, left out of
the statistics). Lists, tuples, 1-D tensors and numpy arrays are read entry by entry; anything else
is a bug in the reward, reported with `RewardError` by the worker, naming the reward and the fix.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

SKIP_HINT = "set `on_error: skip` on this reward to NaN the affected samples and carry on"
_SHOWN_PROBLEMS = 3
"""Bad entries quoted in an error message (the rest are counted)."""


class RewardError(ValueError):
    """A reward function raised or returned something unusable; the message names it and the fix."""


class WholeOutputBad(Exception):
    """The output as a whole is unusable (not a list, wrong length): every sample is affected."""


def _entries(output: Any, batch: int) -> list:
    """The output as a list of `batch` entries, or WholeOutputBad saying what is wrong with it.

    1-D tensors and numpy arrays are accepted as well as lists and tuples: a vectorised reward
    naturally returns one, and converting it is unambiguous.
    """
    if isinstance(output, (torch.Tensor, np.ndarray)):
        if output.ndim != 1:
            raise WholeOutputBad(f"returned an array of shape {tuple(output.shape)}, not one value per completion")
        output = output.tolist()
    elif isinstance(output, (str, bytes, Mapping)) or not isinstance(output, Sequence):
        raise WholeOutputBad(f"returned a {type(output).__name__}, not a list of {batch} numbers")
    if len(output) != batch:
        raise WholeOutputBad(f"returned {len(output)} values for {batch} completions")
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

    Raises WholeOutputBad when the output cannot be read entry by entry at all.
    """
    values, problems = [], {}
    for index, entry in enumerate(_entries(output, batch)):
        value = _entry_value(entry)
        if isinstance(value, str):
            problems[index] = value
            value = math.nan
        values.append(value)
    return torch.tensor(values, dtype=torch.float32), problems


def describe_problems(problems: dict[int, str], batch: int) -> str:
    shown = "; ".join(f"index {index}: {problem}" for index, problem in list(problems.items())[:_SHOWN_PROBLEMS])
    more = f"; and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
    hint = (" (a sample the reward does not apply to takes None, not NaN)"
            if any(problem.startswith("non-finite") for problem in problems.values()) else "")
    return f"returned {len(problems)} bad value(s) of {batch}: {shown}{more}{hint}"
