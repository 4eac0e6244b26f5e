"""Failure injection for `scripts/fault_suite.py`: kill this process at a named point, once.

With RLALIGN_FAILPOINT=NAME (or NAME@N: the N-th pass in one process) set, the process passing
`failpoint(NAME)` kills itself with SIGKILL (no cleanup, no `finally`: a power cut, the OOM killer,
`kill -9`). With
RLALIGN_FAILPOINT_MARKER=PATH it fires only while PATH does not exist and creates PATH first, so a
restarted process (a re-created Ray actor, a resumed run) passes the point safely. Unset, as
always outside the fault suite, `failpoint` is one environment lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

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
