"""Failure injection for `scripts/fault_suite.py`: kill this process at a named point, once.

With RLALIGN_FAILPOINT=NAME (or NAME@N: the N-th pass in one process) set, the process passing
`failpoint(NAME)` kills itself with SIGKILL (no cleanup, no `finally`: a power cut, the OOM killer,
`kill -9`). With
RLALIGN_FAILPOINT_MARKER=PATH it fires only while PATH does not exist and creates PATH first, so a
restarted process (a re-created Ray actor, a resumed run) passes the point safely. Unset, as
always outside the fault suite, `failpoint` is one environment lookup.

`holdpoint(NAME)` is the gentle variant, for tests that must act *while* the process is at a point
(a second signal during a shutdown) without guessing how long it stays there: with
RLALIGN_HOLDPOINT=NAME and RLALIGN_HOLDPOINT_FILE=PATH set, the process creates PATH and waits until
PATH is removed (at most HOLD_LIMIT_S seconds), handling signals meanwhile. The test waits for PATH to
appear, which is an event, not a delay. The hold points: `stop:save`, before the checkpoint a
signal-stopped run writes; `train:started`, when a run holds its directory's lock and is about to train.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

HOLD_LIMIT_S = 120.0
"""A held process goes on after this long even if nobody removes the file (a test that died)."""

POINTS = ("save:adapter", "save:state", "save:config", "save:manifest", "save:renamed", "save:latest",
          "worker:generate")
"""Where the code calls failpoint(): after each file of a checkpoint save, after the checkpoint's rename,
after `latest` moved; inside a rollout worker's generate."""


_passes: dict[str, int] = {}


def failpoint(name: str) -> None:
    target = os.environ.get("RLALIGN_FAILPOINT")
    if not target or target.partition("@")[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] != int(target.partition("@")[2] or 1):
        return
    marker = os.environ.get("RLALIGN_FAILPOINT_MARKER")
    if marker:
        if Path(marker).exists():
            return
        Path(marker).touch()
    os.kill(os.getpid(), signal.SIGKILL)


def holdpoint(name: str) -> None:
    if os.environ.get("RLALIGN_HOLDPOINT") != name:
        return
    if not os.environ.get("RLALIGN_HOLDPOINT_FILE"):
        raise RuntimeError(f"RLALIGN_HOLDPOINT={name} needs RLALIGN_HOLDPOINT_FILE, the file to create and wait on")
    held = Path(os.environ["RLALIGN_HOLDPOINT_FILE"])
    held.touch()
    deadline = time.monotonic() + HOLD_LIMIT_S
    while held.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # Python runs signal handlers between these sleeps
