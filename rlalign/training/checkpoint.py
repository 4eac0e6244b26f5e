"""Training checkpoints: written atomically at step boundaries, restored exactly.

Layout of a run directory:

    OUTPUT_DIR/checkpoints/step_000040/
        adapter/                 the LoRA adapter in peft's format (adapter_config.json + safetensors),
                                 with its card (rlalign_adapter.json, README.md; adapter_card.py)
        trainer_state.pt         step, optimizer, scheduler, RNG states, counters, reward statistics
        config.yaml              the resolved config of the run
        manifest.json            size and SHA-256 of every file above
    OUTPUT_DIR/checkpoints/latest   the name of the newest complete checkpoint

A checkpoint is written into `step_N.partial/` and renamed when complete; only then does `latest`
move (also by rename). A kill at any moment leaves `latest` naming a complete checkpoint. Resuming
verifies the manifest; when the newest checkpoint is missing, incomplete or damaged (a disk fault,
a copy cut short), it falls back to the newest intact one and warns about each it skipped.
Checkpoints written before manifests existed are loaded unverified.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import io
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlalign.config import yaml12
from rlalign.training.adapter_card import write_card
from rlalign.utils.failpoints import failpoint
from rlalign.utils.files import user_path, write_text_atomic
from rlalign.utils.warning_lines import RlalignWarning

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
KEEP = 2
"""Complete checkpoints kept (the newest ones); older ones are deleted after a new one is complete."""


def rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(output_dir: str | Path, step: int, *, policy: Any, optimizer: torch.optim.Optimizer,
                    scheduler: Any, config: dict, extra: dict[str, Any], card: dict | None = None) -> Path:
    """Write checkpoint `step` atomically and point `latest` at it; returns its directory. `card`: the
    adapter's own description (rlalign.training.adapter_card), written beside peft's files."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"step_{step:06d}"
    partial = root / f"step_{step:06d}.partial"
    try:
        _write_partial(partial, step, policy=policy, optimizer=optimizer, scheduler=scheduler, config=config,
                       extra=extra, card=card)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        shutil.rmtree(partial, ignore_errors=True)  # give the space back; nothing complete was touched
        where = error.filename or partial  # an error from a file's write() (not its open) names no file
        latest = root / "latest"
        newest = latest.read_text().strip() if latest.is_file() else "none"
        raise CheckpointWriteError(
            f"the checkpoint of step {step} could not be written ({error.strerror}: {where}); nothing was "
            f"replaced, the newest complete checkpoint is {newest}. Free space, then continue with rlalign train "
            f"CONFIG --resume {output_dir}" if newest != "none" else
            f"the checkpoint of step {step} could not be written ({error.strerror}: {where}); no "
            "checkpoint exists yet. Free space and start again") from None
    if final.exists():  # a checkpoint of the same step from an earlier attempt: replace it whole
        shutil.rmtree(final)
    os.replace(partial, final)
    failpoint("save:renamed")
    write_text_atomic(root / "latest", final.name + "\n")
    failpoint("save:latest")
    _prune(root, keep=KEEP)
    return final


class CheckpointWriteError(ValueError):
    """A checkpoint could not be written (the disk or a quota is full); the message says what is intact."""


def _write_partial(partial: Path, step: int, *, policy: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
                   config: dict, extra: dict[str, Any], card: dict | None) -> None:
    """Every file of checkpoint `step` into `partial` (renamed into place by the caller once complete)."""
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    policy.save_adapter(partial / "adapter")
    if card is not None:
        write_card(partial / "adapter", card)
    failpoint("save:adapter")
    state = io.BytesIO()  # torch's own file writer reports a full disk as a bare RuntimeError, without errno
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_states(), **extra}, state)
    (partial / "trainer_state.pt").write_bytes(state.getbuffer())
    failpoint("save:state")
    (partial / "config.yaml").write_text(yaml12.dump(config))  # reads back the same (rlalign/config/yaml12.py)
    failpoint("save:config")
    (partial / MANIFEST).write_text(json.dumps(_manifest(partial), indent=1) + "\n")
    failpoint("save:manifest")


def _prune(root: Path, keep: int) -> None:
    complete = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".partial"))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def resume_path(resume: str | Path) -> Path:
    """A `--resume` argument as a path, `~` and `$VARS` expanded as in the config's paths (a quoted `~/run`, or
    `resume="~/run"` in Python, names the run in the home directory, not a folder named `~`)."""
    return Path(user_path(resume, "--resume"))


def run_directory(resume: str | Path) -> Path:
    """The run directory a `--resume` argument names: itself, or the run holding a checkpoint directory."""
    path = resume_path(resume)
    if path.is_file():  # e.g. the config given twice: it would become the run's output_dir
        raise FileNotFoundError(f"--resume {resume} is a file; pass a run directory (with {CHECKPOINTS}/latest) or a "
                                "checkpoint directory (with trainer_state.pt)")
    if not path.exists():
        raise FileNotFoundError(f"--resume {resume}: no such directory; pass the output_dir of the run to continue")
    return path.parent.parent if (path / "trainer_state.pt").is_file() else path


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint to resume: a checkpoint directory itself (verified), or a run directory's newest
    intact checkpoint (`latest`, else the newest step_* that verifies), warning about each one skipped."""
    path = resume_path(path)
    if (path / "trainer_state.pt").is_file():
        problem = verify_checkpoint(path)
        if problem:
            raise FileNotFoundError(f"--resume {path}: this checkpoint is damaged ({problem}); pass its run "
                                    f"directory {path.parent.parent} to resume from the newest intact checkpoint")
        return path
    root = path / CHECKPOINTS
    pointer = root / "latest"
    named = [root / pointer.read_text().strip()] if pointer.is_file() else []
    steps = sorted((p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".partial")), reverse=True)
    skipped = []
    for checkpoint in dict.fromkeys(named + steps):  # `latest` first, then newest to oldest
        problem = verify_checkpoint(checkpoint)
        if problem is None:
            for name, why in skipped:
                warnings.warn(f"--resume {path}: skipped checkpoint {name} ({why}); resuming from {checkpoint.name}",
                              RlalignWarning, stacklevel=2)
            return checkpoint
        skipped.append((checkpoint.name, problem))
    if skipped:
        raise FileNotFoundError(f"--resume {path}: no intact checkpoint: " + "; ".join(
            f"{name}: {why}" for name, why in skipped) + "; start again without --resume in a new output_dir")
    if (path / "metrics.jsonl").is_file():  # a run directory whose run stopped before its first save
        fresh = ("start it again without --resume (a directory whose start logged nothing is reused)"
                 if not holds_a_run(path) else "start again without --resume in a new output_dir")
        raise FileNotFoundError(f"--resume {path}: that run stopped before its first checkpoint, so there is "
                                f"nothing to resume; {fresh}")
    raise FileNotFoundError(f"--resume {path}: no checkpoint there; pass a run directory (with "
                            f"{CHECKPOINTS}/latest) or a checkpoint directory (with trainer_state.pt)")


def verify_checkpoint(checkpoint: Path) -> str | None:
    """None if `checkpoint` is complete and matches its manifest, else what is wrong with it."""
    if not checkpoint.is_dir():
        return "the directory does not exist"
    if not (checkpoint / "trainer_state.pt").is_file():
        return "trainer_state.pt is missing"
    manifest_path = checkpoint / MANIFEST
    if not manifest_path.is_file():
        return None  # written before manifests existed: loaded unverified
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        return f"{MANIFEST} is unreadable ({error})"
    for name, expected in manifest.items():
        file = checkpoint / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["size"]:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {expected['size']}"
        if _sha256(file) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def _manifest(directory: Path) -> dict[str, dict[str, Any]]:
    return {str(file.relative_to(directory)): {"size": file.stat().st_size, "sha256": _sha256(file)}
            for file in sorted(directory.rglob("*")) if file.is_file() and file.name != MANIFEST}


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def holds_a_run(directory: str | Path) -> bool:
    """Whether `directory` holds a run worth keeping: a checkpoint or any logged metrics. An empty
    metrics.jsonl (a start that failed before its first record) does not count."""
    directory = Path(directory)
    metrics = directory / "metrics.jsonl"
    return (directory / CHECKPOINTS).is_dir() or (metrics.is_file() and metrics.stat().st_size > 0)


def load_checkpoint(checkpoint: Path, *, policy: Any, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict:
    """Restore adapter, optimizer, scheduler and RNG states; return the trainer state dict."""
    try:
        state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 (unpickling raises many types; a verified file never does)
        raise ValueError(f"{checkpoint / 'trainer_state.pt'} cannot be loaded ({type(error).__name__}: "
                         f"{str(error)[:120]}); the checkpoint has no manifest to verify it, so it was not "
                         "skipped: pass an older checkpoint directory to --resume") from None
    # The resume check compares the whole config (LoRA settings included, --accept-changes may allow a
    # change), so the adapter's own LoRA-settings check is skipped where the family offers the switch.
    if "check_config" in inspect.signature(policy.load_adapter).parameters:
        policy.load_adapter(checkpoint / "adapter", check_config=False)
    else:
        policy.load_adapter(checkpoint / "adapter")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_states(state["rng"])
    return state

