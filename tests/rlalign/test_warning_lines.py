"""The CLI shows rlalign's own warnings (`RlalignWarning`) as one line; every other warning keeps Python's
format, even one attributed to an rlalign file (a torch or stdlib warning raised with a stacklevel).

Run in a fresh interpreter: pytest records warnings itself, so nothing would reach stderr here."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import rlalign

OURS = str(Path(rlalign.__file__).parent / "training" / "checkpoint.py")
THEIRS = str(Path(warnings.__file__))
PROGRAM = f"""
import warnings
from rlalign.utils.warning_lines import RlalignWarning, one_line_warnings
with one_line_warnings():
    warnings.warn_explicit("skipped checkpoint step_000002", RlalignWarning, {OURS!r}, 142)
    warnings.warn_explicit("a deprecated call", DeprecationWarning, {THEIRS!r}, 7)
    warnings.warn_explicit("a torch warning", RuntimeWarning, {OURS!r}, 150)
warnings.warn_explicit("after the block", RlalignWarning, {OURS!r}, 1)
"""


def test_an_rlalign_warning_is_one_line_and_any_other_keeps_its_file_and_line():
    result = subprocess.run([sys.executable, "-W", "always", "-c", PROGRAM], capture_output=True, text=True,
                            check=True)
    lines = result.stderr.splitlines()
    assert lines[0] == "[rlalign] warning: skipped checkpoint step_000002"
    assert lines[1].startswith(f"{THEIRS}:7: DeprecationWarning: a deprecated call")
    runtime = [line for line in lines if "a torch warning" in line]  # attributed to rlalign's file, not its own
    assert runtime and runtime[0].startswith(f"{OURS}:150: RuntimeWarning: a torch warning")
    assert not any(line.startswith("[rlalign]") for line in lines[1:])
    assert any(line.startswith(f"{OURS}:1: RlalignWarning: after the block") for line in lines[2:])  # restored
