"""Training checkpoints: written atomically at step boundaries, restored exactly.

Layout of a run directory:

    OUTPUT_DIR/checkpoints/step_000040/
        adapter/                 the LoRA adapter in peft's format (adapter_config.json + safetensors)
        trainer_state.pt         step, optimizer, scheduler, RNG states, counters, reward statistics
        config.yaml              the resolved config of the run
    OUTPUT_DIR/checkpoints/latest   the name of the newest complete checkpoint

A checkpoint is written into `step_N.partial/` and renamed when complete; only then does `latest`
move (also by rename). A kill at any moment leaves `latest` naming a complete checkpoint.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

CHECKPOINTS = "checkpoints"
KEEP = 2
"""Complete checkpoints kept (the newest ones); older ones are deleted after a new one is complete."""


def rng_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(output_dir: str | Path, step: int, *, policy: Any, optimizer: torch.optim.Optimizer,
                    scheduler: Any, config: dict, extra: dict[str, Any]) -> Path:
    """Write checkpoint `step` atomically and point `latest` at it; returns its directory."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"step_{step:06d}"
    partial = root / f"step_{step:06d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    policy.save_adapter(partial / "adapter")
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_states(), **extra}, partial / "trainer_state.pt")
    (partial / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    if final.exists():  # a checkpoint of the same step from an earlier attempt: replace it whole
        shutil.rmtree(final)
    os.replace(partial, final)
    pointer = root / "latest.partial"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / "latest")
    _prune(root, keep=KEEP)
    return final


def _prune(root: Path, keep: int) -> None:
    complete = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".partial"))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run directory (its latest) or a checkpoint directory itself."""
    path = Path(path)
    if (path / "trainer_state.pt").is_file():
        return path
    pointer = path / CHECKPOINTS / "latest"
    if pointer.is_file():
        checkpoint = path / CHECKPOINTS / pointer.read_text().strip()
        if (checkpoint / "trainer_state.pt").is_file():
            return checkpoint
    if (path / "metrics.jsonl").is_file():  # a run directory whose run stopped before its first save
        fresh = ("start it again without --resume (a directory whose start logged nothing is reused)"
                 if not holds_a_run(path) else "start again without --resume in a new output_dir")
        raise FileNotFoundError(f"--resume {path}: that run stopped before its first checkpoint, so there is "
                                f"nothing to resume; {fresh}")
    raise FileNotFoundError(f"--resume {path}: no checkpoint there; pass a run directory (with "
                            f"{CHECKPOINTS}/latest) or a checkpoint directory (with trainer_state.pt)")


def holds_a_run(directory: str | Path) -> bool:
    """Whether `directory` holds a run worth keeping: a checkpoint or any logged metrics. An empty
    metrics.jsonl (a start that failed before its first record) does not count."""
    directory = Path(directory)
    metrics = directory / "metrics.jsonl"
    return (directory / CHECKPOINTS).is_dir() or (metrics.is_file() and metrics.stat().st_size > 0)


def load_checkpoint(checkpoint: Path, *, policy: Any, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict:
    """Restore adapter, optimizer, scheduler and RNG states; return the trainer state dict."""
    state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)
    policy.load_adapter(checkpoint / "adapter")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_states(state["rng"])
    return state

