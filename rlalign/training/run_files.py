"""The run directory's own files, as the trainer keeps them: a writability check before any work,
the records a resumed run supersedes (a killed run's tail of metrics.jsonl and reward_extras.jsonl), and
the digest of the training prompts a resume compares."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rlalign.config import ConfigError
from rlalign.utils.files import write_text_atomic


def check_writable(directory: Path) -> None:
    """Fail before any work when output_dir is a file, lies under a file, or cannot be written."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError("output_dir", str(directory), "is a file, not a directory; choose another output_dir")
    if (directory / "sweep.json").is_file():  # a run written there would mix into the sweep's own files
        members = sorted(path.name for path in directory.iterdir() if (path / "metrics.jsonl").is_file())
        raise ConfigError("output_dir", str(directory), "is a sweep's directory (sweep.json); its runs live in its "
                          f"folders ({', '.join(members[:4]) or 'none yet'}): choose another output_dir, or continue "
                          f"a member with --resume {directory}/NAME")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".rlalign-write-test.{os.getpid()}"  # its own name: two starts at once must not
        probe.write_bytes(b"")                                      # remove each other's (that read as unwritable)
        probe.unlink()
    except OSError as error:
        raise ConfigError("output_dir", str(directory), f"cannot be written ({error.strerror or error}); "
                          "choose a directory you can write to") from None


def prompts_digest(source) -> str | None:
    """SHA-256 (16 hex) of a finite prompt source's whole list, so a resume notices an edited prompt file;
    None for an endless source, which its config string already names."""
    if source.fixed is None:
        return None
    return hashlib.sha256(json.dumps(list(source.fixed), default=str).encode()).hexdigest()[:16]


def supersede_records(output_dir: Path, log: str, after_step: int) -> None:
    """Move the records of `log`.jsonl (metrics, reward_extras) of steps after the checkpoint (a killed
    run's tail) to `log`.superseded.jsonl: the resumed run logs those steps again, nothing is deleted."""
    path = output_dir / f"{log}.jsonl"
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = [line for line in lines if line.strip() and record_step(line) <= after_step]
    moved = [line for line in lines if line.strip() and record_step(line) > after_step]
    if moved:
        with (output_dir / f"{log}.superseded.jsonl").open("a") as file:
            file.write("\n".join(moved) + "\n")
        write_text_atomic(path, "".join(line + "\n" for line in keep))


def record_step(line: str) -> float:
    """The step of one record; a torn line (a write cut short by a kill) counts as after any checkpoint,
    so a resume moves it aside with the rest of the tail."""
    try:
        return int(json.loads(line).get("step", -1))
    except (ValueError, AttributeError, TypeError):  # json.JSONDecodeError is a ValueError
        return float("inf")
