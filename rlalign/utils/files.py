"""Atomic writes, in one place: a file is written beside its destination and renamed over it, so a
reader, or a run killed mid-write, sees the old file or the new one, never part of one."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; when the block succeeds it replaces `path`.

    The temporary name carries the process id, so processes writing the same file at once (Ray actors
    caching one asset) never write into each other's half-finished file. If the block raises, the
    temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_path(path) as partial:
        partial.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write `data` as JSON (plus a final newline) to `path` atomically; returns the path."""
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def readable(path: str | Path) -> str:
    """`path` as a string, after opening it once for reading: safetensors reports a file it may not read
    as "No such file or directory", so a loader asks the OS first, which raises PermissionError naming it."""
    with open(path, "rb"):
        pass
    return str(path)


class PathInputError(ValueError):
    """A path a user gave that names no place: `problem` says why, the message also names what it is."""

    def __init__(self, what: str, value: str, problem: str):
        self.problem = problem
        super().__init__(f"{what} {value!r}: {problem}")


def user_path(value: str | Path, what: str) -> str:
    """A path as a user wrote it (config, --resume, --adapter, prompt files, the Python API), `~` and
    `$VAR` expanded as a shell would. Refused, naming `what`: an empty path (it would silently be the
    working directory), an unset variable (left in, it names a folder literally called `${HOME}`), and a
    `~NAME` of a user this machine does not have (a folder literally called `~NAME`)."""
    value = str(value)
    if not value.strip():
        raise PathInputError(what, value, "is empty; give a path (an empty one would mean the working directory)")
    expanded, unset = expand_path(value)
    if unset:
        raise PathInputError(what, value, f"names environment variable(s) {', '.join(unset)} that are not set; set "
                             "them or write the path out")
    if expanded.startswith("~"):
        user = expanded[1:].split("/", 1)[0]
        raise PathInputError(what, value, f"starts with ~{user}, but this machine has no user {user!r} whose home it "
                             "could name; write ~/ for your own home, or the path out" if user else
                             "has a ~ that an environment variable brought in, which is not expanded (nor is it by a "
                             "shell); write that variable's path out")
    return expanded


def expand_path(value: str) -> tuple[str, list[str]]:
    """`~` and `$VAR` / `${VAR}` expanded as a shell would, and the names of variables left unexpanded
    because they are not set (a caller refuses them: kept, they would name a folder `${HOME}`)."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    return expanded, re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
