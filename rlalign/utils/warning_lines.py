"""rlalign's own warnings (`RlalignWarning`), shown to a command-line user as one line each ("[rlalign]
warning: …") instead of Python's "FILE:LINE: RlalignWarning: …" followed by the source line that warned.
Every other warning keeps Python's format, even one attributed to rlalign's code (a torch or stdlib warning
raised with a stacklevel that points at the rlalign call): its file and line are what its users search for."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class RlalignWarning(RuntimeWarning):
    """rlalign's own warnings, shown as one line by the CLI."""


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block, an `RlalignWarning` prints as one `[rlalign] warning:` line."""
    shown_as_python_does = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None, **kwargs: Any) -> None:
        if issubclass(category, RlalignWarning):
            print(f"[rlalign] warning: {message}", file=file or sys.stderr)
        else:
            shown_as_python_does(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown_as_python_does
