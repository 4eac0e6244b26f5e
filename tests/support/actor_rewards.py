"""Rewards for the reward-actor tests, importable by name in Ray's worker processes (the tests put
this folder on the actors' PYTHONPATH)."""

import time
from pathlib import Path


def waits_for_marker(prompts, completions, marker: str, **_):
    """A reward that cannot finish until the driver has created `marker` (at most 60 s)."""
    deadline = time.monotonic() + 60
    while not Path(marker).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{marker} never appeared: the driver was still inside submit()")
        time.sleep(0.01)
    return [1.0] * len(completions)


def one_short(prompts, completions, **_):
    """A broken reward: one value fewer than completions."""
    return [0.5] * (len(completions) - 1)
