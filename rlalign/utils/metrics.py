"""Metrics: one JSONL line per logged step (always) plus wandb (offline by default).

JSONL is the record tests, reports and sweeps read; wandb is for people. Appending keeps the
history of a resumed run; non-finite values are written as null so every line is valid JSON.
A run keeps one wandb run across resumes: its id is kept in `output_dir/wandb_run_id`. Evaluation
images and text samples go to wandb only (`log_media`); the JSONL holds scalars.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import string
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlalign.utils.files import write_text_atomic
from rlalign.utils.warning_lines import RlalignWarning

WANDB_MODES = ("offline", "online", "disabled")
RUN_ID_FILE = "wandb_run_id"


def _finite_or_none(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def wandb_run_id(output_dir: Path, *, resume: bool) -> str:
    """The wandb run id of the run in `output_dir`: on a resume the one kept in `output_dir/wandb_run_id`;
    on a fresh start (or a resume of a run that has none) a new one, kept there for later resumes."""
    path = output_dir / RUN_ID_FILE
    kept = path.read_text(encoding="utf-8").strip() if resume and path.is_file() else ""
    if kept:
        return kept
    # As wandb makes its ids (8 base-36 digits); wandb 0.31 has no public wandb.util.generate_id.
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    write_text_atomic(path, run_id + "\n")
    return run_id


def check_wandb_login(mode: str) -> None:
    """Refuse `wandb_mode: online` without a W&B login before any work (wandb would stop to ask for a key,
    or fail on the first upload): a key in WANDB_API_KEY, or in the netrc file `wandb login` writes."""
    if mode != "online" or os.environ.get("WANDB_API_KEY"):
        return
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    paths = [Path(os.environ["NETRC"]).expanduser()] if os.environ.get("NETRC") else [
        Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()]
    for path in paths:
        try:
            if path.is_file() and netrc.netrc(path).authenticators(host):
                return
        except (netrc.NetrcParseError, OSError):
            continue
    raise ValueError(f"logging.wandb_mode=online needs a W&B login for {host} (run `wandb login`, or set "
                     "WANDB_API_KEY); or keep the default offline mode and upload later with `wandb sync`")


class MetricsLogger:
    """Writes `metrics.jsonl` under `output_dir` and mirrors every record to wandb unless disabled.

    With `resume`, the wandb run whose id `output_dir/wandb_run_id` keeps is continued (wandb
    resume="allow"): offline, each process writes its own `wandb/offline-run-<time>-<id>` directory,
    all with the one run id, and `wandb sync` uploads them in order of start time as one run.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        wandb_mode: str = "offline",
        project: str = "rlalign",
        run_name: str = "",
        config: Mapping[str, Any] | None = None,
        resume: bool = False,
    ):
        if wandb_mode not in WANDB_MODES:
            raise ValueError(f"wandb_mode must be one of {WANDB_MODES}, got {wandb_mode!r}")
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / "metrics.jsonl"
        self._file = self.path.open("a", encoding="utf-8")
        self._run = None
        if wandb_mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self._run = wandb.init(
                mode=wandb_mode,
                dir=str(self.output_dir),
                project=project,
                name=run_name or self.output_dir.name,
                config=dict(config or {}),
                id=wandb_run_id(self.output_dir, resume=resume),
                resume="allow" if resume else None,
            )

    @property
    def wandb_dir(self) -> Path | None:
        """Where wandb keeps this run's files (None when wandb is disabled)."""
        return Path(self._run.dir).parent if self._run is not None else None

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Record scalar metrics for a step (numbers only; names as in docs/grpo.md, "Metrics")."""
        record = {name: _finite_or_none(value) for name, value in metrics.items()}
        self._file.write(json.dumps({"step": step, "time": time.time(), **record}) + "\n")
        self._file.flush()
        if self._run is not None:
            self._run.log(dict(metrics), step=step)

    def log_media(self, step: int, images: Mapping[str, str | Path] | None = None,
                  tables: Mapping[str, tuple[Sequence[str], Sequence[Sequence[Any]]]] | None = None) -> None:
        """wandb only (metrics.jsonl keeps scalars): each image file as `samples/<name>`, each
        (columns, rows) table as `completions/<name>`; nothing when wandb is disabled or both are empty."""
        if self._run is None or not (images or tables):
            return
        import wandb

        media: dict[str, Any] = {f"samples/{name}": wandb.Image(str(path)) for name, path in (images or {}).items()}
        for name, (columns, rows) in (tables or {}).items():
            media[f"completions/{name}"] = wandb.Table(columns=list(columns), data=[list(row) for row in rows])
        self._run.log(media, step=step)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._run is not None:
            self._run.finish()
            self._run = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file, in order. A torn last line (a run killed mid-write) is
    skipped with a warning; an unreadable line anywhere else is an error naming it."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number < len(lines):
                raise ValueError(f"{path}: line {number} is not a JSON record ({error}); the file was edited "
                                 "or corrupted") from None
            warnings.warn(f"{path}: the last line is torn (a run stopped mid-write); it is ignored",
                          RlalignWarning, stacklevel=2)
    return records
