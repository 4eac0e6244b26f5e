"""Stopping a run with a signal: SIGINT (Ctrl-C) or SIGTERM (what a scheduler sends before preemption).

The first signal asks the loop to finish the current step, write a checkpoint and stop with the
command that resumes it (exit code 128 + the signal: 130, 143). A second signal aborts at once,
keeping only what earlier checkpoints hold. Handlers are installed only while training runs, and
only on the main thread (Python delivers signals there).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """The run stopped cleanly on a signal; `exit_code` is 128 + the signal's number."""

    def __init__(self, signum: int, message: str):
        self.signum = signum
        super().__init__(message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequests:
    """Context manager: `received` holds the first SIGINT / SIGTERM seen inside the block (else None)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in SIGNALS}
        return self

    def __exit__(self, *exc_info) -> bool:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
        return False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            first = signal.Signals(self.received).name
            print(f"\n[rlalign] {name} after {first}: aborting at once; the last checkpoint holds what was saved",
                  file=sys.stderr, flush=True)
            raise SystemExit(128 + signum)
        self.received = signum
        print(f"\n[rlalign] {name}: finishing this step, then saving a checkpoint (send it again to abort at once)",
              file=sys.stderr, flush=True)
