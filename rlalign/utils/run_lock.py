"""One writer per run directory: an exclusive lock held for as long as a run writes there.

`RunLock(output_dir)` takes an exclusive `flock` on `OUTPUT_DIR/.rlalign.lock` and writes the holder
(pid, host, start time, command) into it. A second train, resume or sweep member on the same directory
is refused at once, naming the holder. The operating system drops a flock when its process dies (a
kill -9, a crash, a power cut of a local disk), so a lock file left behind by a dead run is not a lock:
the next run takes it over, with a warning naming the run that did not finish.

flock is advisory and local: it works between processes of one machine (and on most network file
systems that support locks); `fcntl` does not exist on Windows, where the lock is skipped with a warning.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

from rlalign.utils.warning_lines import RlalignWarning

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

LOCK_FILE = ".rlalign.lock"


class RunLockedError(FileExistsError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """The exclusive writer's lock of one run directory; `release()` (or process exit) lets it go."""

    def __init__(self, output_dir: str | Path, *, setting: str = "output_dir"):
        """`setting`: what the user changes to write elsewhere (a sweep's directory is its --out)."""
        self.path = Path(output_dir) / LOCK_FILE
        self._file = None
        if fcntl is None:
            warnings.warn("rlalign cannot lock the run directory on this platform (no fcntl): make sure one "
                          "process at a time writes it", RlalignWarning, stacklevel=2)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(handle)
            handle.close()
            raise RunLockedError(
                f"{self.path.parent} is being written by another rlalign run ({_describe(holder)}); wait for it to "
                f"finish or stop it, or choose another {setting} (nothing was written)") from None
        previous = _read(handle)
        if previous:
            warnings.warn(f"{self.path.parent}: the run that held it before ({_describe(previous)}) ended without "
                          "releasing its lock (killed or crashed); taking it over", RlalignWarning, stacklevel=2)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                 "command": " ".join(sys.argv)[:300]}) + "\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Empty the lock file (a clean end) and drop the lock. Safe to call twice."""
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        self._file.flush()
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __del__(self) -> None:
        self.release()


def _read(handle) -> dict:
    handle.seek(0)
    text = handle.read().strip()
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"unreadable": text[:80]}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    if "unreadable" in holder:
        return f"lock file reads {holder['unreadable']!r}"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {started}: {holder.get('command', '')}"
