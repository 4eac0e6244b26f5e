"""Progress with rate and time left for long commands (training steps, evaluations, sweeps, probes).

On a terminal it is a tqdm bar whose postfix carries the latest numbers; anywhere else (a log file,
a pipe, CI) it prints one plain line per update, so a log reads line by line instead of filling
with carriage returns. Both say how many of how many are done, the rate and the estimated time left.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm


def format_duration(seconds: float) -> str:
    """45s, 12m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """`total` units of work, `initial` of them already done (a resumed run); `update` after each unit."""

    def __init__(self, total: int, desc: str, *, enabled: bool = True, initial: int = 0,
                 stream: TextIO | None = None):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done = self.first = initial
        self.started = time.perf_counter()
        self.extra_left = 0.0
        stream = stream or sys.stdout
        terminal = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, file=stream, dynamic_ncols=True,
                        unit="step") if terminal else None

    def rate_and_left(self) -> tuple[float, float]:
        """Units per second since this Progress started (time inside `paused()` left out), and the seconds
        the rest should take: the remaining units at that rate plus `extra_left` (set by the caller, e.g.
        the evaluations still to come)."""
        elapsed = time.perf_counter() - self.started
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        return rate, (self.total - self.done) / rate + self.extra_left if rate > 0 else float("nan")

    @contextmanager
    def paused(self):
        """Work inside the block (an evaluation, a checkpoint) does not count towards the rate."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.started += time.perf_counter() - start

    def update(self, text: str = "", n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(n)
        elif self.enabled:
            rate, left = self.rate_and_left()
            eta = "?" if math.isnan(left) else format_duration(left)
            per = f"{1 / rate:.2f}s/it" if rate > 0 else "?"
            print(f"{self.desc} {self.done:>{len(str(self.total))}}/{self.total}  {text}  [{per}, {eta} left]",
                  flush=True)

    def write(self, message: str) -> None:
        """A line that does not break the bar (or a plain line)."""
        if self.bar is not None:
            self.bar.write(message)
        elif self.enabled:
            print(message, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
