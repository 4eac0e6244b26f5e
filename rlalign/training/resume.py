"""Resuming a run: the resumed config must train the way the checkpoint's did (docs/grpo.md, "Resuming").

A resumed run compares its resolved config with the checkpoint's `config.yaml`. Settings that only
say where and how the run logs, evaluates, saves and executes may change freely (FREE_ON_RESUME);
any other change is refused with every changed key listed, unless `--accept-changes` names it.
Extending `train.steps` under a constant schedule is consistent (every step's learning rate is the
same whatever the total) and passes with a note; under a decaying schedule it is a change to accept,
after which the decay is rebuilt for the new total from the checkpoint's step on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from rlalign.config import yaml12

FREE_ON_RESUME = ("output_dir", "logging.", "rollout.", "prompts.eval",
                  "prompts.allow_unknown_words", "train.eval_every", "train.save_every",
                  "train.stop_after_steps_without_signal", "policy.device")
"""Settings a resumed run may change without a word: where and how it logs, evaluates, saves and
runs, none of which changes the training trajectory (samples are seeded per sample, docs/grpo.md)."""


RENAMED = {"policy.insertion_steps": "policy.insertion.steps"}
"""Settings that moved, old key → new key, so a checkpoint written before the move compares as it should."""


def config_changes(saved: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """`key -> (saved, current)` for every setting that differs between a checkpoint's config and the
    resumed run's, except FREE_ON_RESUME. Keys the checkpoint's config lacks (settings added to
    rlalign after it was written) are not compared."""
    old, new = _flatten(saved), _flatten(current)
    old = {RENAMED.get(key, key): value for key, value in old.items()}
    return {key: (old[key], new.get(key)) for key in old
            if old[key] != new.get(key) and not key.startswith(FREE_ON_RESUME) and key in new}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


class ResumeConfigError(ValueError):
    """The resumed config changes settings that alter training, and --accept-changes does not name them."""


def check_resume_config(checkpoint: Path, current: dict, accept: Sequence[str], step: int,
                        factor: Callable[[int], float], optimizer_steps: int,
                        resolved: dict[str, tuple[Any, Any]] | None = None) -> list[str]:
    """Refuse unaccepted changes (ResumeConfigError); return notes on what continues differently.

    `factor` is the new config's learning-rate factor and `optimizer_steps` the optimizer steps taken so far;
    `resolved` holds changes the config text does not show (`prompts.train`'s file edited: its prompts'
    digest then and now), refused and accepted like any other.
    """
    path = checkpoint / "config.yaml"
    saved = yaml12.load(path.read_text()) if path.is_file() else {}  # as the config itself was read
    changes = {**(resolved or {}), **config_changes(saved or {}, current)}
    unknown = sorted(set(accept) - set(changes))
    if unknown:
        raise ResumeConfigError(f"--accept-changes names {', '.join(unknown)}, which did not change since the "
                                f"checkpoint (changed: {', '.join(changes) or 'nothing'})")
    constant = current["train"]["lr_schedule"] == "constant" and "train.lr_schedule" not in changes
    notes = []
    if "train.steps" in changes and constant:
        old, new = changes.pop("train.steps")
        notes.append(f"train.steps {old} → {new}: the constant schedule gives every step the same rate, so the "
                     "extended run is the one a fresh run with the new total would have trained")
    refused = {key: value for key, value in changes.items() if key not in accept}
    if refused:
        lines = [f"  {key}: {old!r} → {new!r}" for key, (old, new) in refused.items()]
        if "train.steps" in refused:
            lines.append(f"  (the {current['train']['lr_schedule']} schedule decays over train.steps; steps 1..{step} "
                         f"followed the old total. Accepting rebuilds the decay for the new total from step {step + 1}: "
                         f"the rate factor becomes {factor(optimizer_steps):.4f})")
        raise ResumeConfigError(
            f"--resume {checkpoint}: the config differs from the checkpoint's in settings that change training:\n"
            + "\n".join(lines) + f"\nResume with the checkpoint's values (its config.yaml), or continue with the new ones: "
            f"--accept-changes {','.join(refused)}")
    notes += [f"{key} {old!r} → {new!r} (accepted)" for key, (old, new) in changes.items()]
    return notes


def apply_optimizer_settings(optimizer: torch.optim.Optimizer, scheduler: Any, learning_rate: float,
                             weight_decay: float) -> None:
    """After loading a checkpoint's optimizer and scheduler state (which carry the old learning rate and
    weight decay), use the config's: base rate, weight decay and the current step's scheduled rate."""
    scheduler.base_lrs = [learning_rate] * len(optimizer.param_groups)
    for group, lambda_fn in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"], group["weight_decay"] = learning_rate, weight_decay
        group["lr"] = learning_rate * lambda_fn(scheduler.last_epoch)
