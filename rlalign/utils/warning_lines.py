"""rlalign's own warnings, shown to a command-line user as one line each ("[rlalign] warning: …")
instead of Python's "FILE:LINE: RuntimeWarning: …" followed by the source line that warned. Warnings
from other packages keep Python's format: their file and line are what their users search for."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

OWN_PACKAGES = ("rlalign", "rlalign.rewards", "rlalign.rollouts")


def _own_folders() -> tuple[str, ...]:
    folders = []
    for name in OWN_PACKAGES:
        spec = importlib.util.find_spec(name)
        folders.extend(str(Path(folder).resolve()) for folder in (spec.submodule_search_locations or []) if spec)
    return tuple(folders)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block, a warning raised by rlalign's code prints as one `[rlalign] warning:` line."""
    folders, shown_as_python_does = _own_folders(), warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None, **kwargs: Any) -> None:
        if str(Path(filename).resolve()).startswith(folders):
            print(f"[rlalign] warning: {message}", file=file or sys.stderr)
        else:
            shown_as_python_does(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown_as_python_does
