"""A checkpoint that cannot be written because the disk (here: the process's file-size limit, a real
EFBIG from the operating system) is full stops the run with one line saying what is intact."""

from __future__ import annotations

import resource
import subprocess
import sys

import yaml
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.config import to_dict

LIMIT = 4096
"""Bytes per file: metrics lines and the config fit; an evaluation grid or trainer_state.pt does not."""


def train_with_small_files(tmp_path, evaluate: bool) -> subprocess.CompletedProcess:
    checkpoint = save_tiny_checkpoint(tmp_path / "model")
    cfg = to_dict(tiny_config(tmp_path, checkpoint, steps=2))
    cfg["train"]["save_every"] = 1
    if not evaluate:
        cfg["prompts"]["eval"] = {}  # no evaluation grid: the first large file is the checkpoint's
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    return subprocess.run([sys.executable, "-m", "rlalign.cli", "train", str(config)], capture_output=True, text=True,
                          timeout=600, preexec_fn=small_files, check=False)


def test_a_full_disk_anywhere_else_is_one_line_too(tmp_path):
    done = train_with_small_files(tmp_path, evaluate=True)  # the step-0 evaluation grid is the first large file
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "error: File too large while writing" in done.stderr and "--resume" in done.stderr


def test_a_full_disk_during_a_checkpoint_says_what_is_intact(tmp_path):
    done = train_with_small_files(tmp_path, evaluate=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "the checkpoint of step 1 could not be written (File too large" in done.stderr
    assert "no checkpoint exists yet" in done.stderr
    assert not list((tmp_path / "run" / "checkpoints").glob("*.partial"))  # the space was given back
