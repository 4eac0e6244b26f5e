"""A checkpoint that cannot be written because the disk (here: the process's file-size limit, a real
EFBIG from the operating system) is full stops the run with one line saying what is intact."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
import torch
import yaml
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.config import to_dict
from rlalign.policies import load_policy
from rlalign.training.checkpoint import CheckpointWriteError, save_checkpoint

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


@pytest.mark.parametrize("limit, first_too_large", [(4096, ""), (16 * 1024, "/adapter/adapter_model.safetensors"),
                                                    (48 * 1024, "")])
def test_each_file_of_a_checkpoint_reports_the_full_disk_as_the_os_does(tmp_path, limit, first_too_large):
    """Each writer reports a full disk its own way: peft's model card and trainer_state.pt by an OSError
    from write() that names no file (the message names the partial checkpoint), safetensors by its own
    error type (mapped back to the OSError it wraps), torch's writer by a bare RuntimeError (so the state
    is serialized in memory and written by Python). Sizes: the model card is first
    written from a template over 4 KiB, the tiny adapter is ~34 KB, trainer_state.pt after one AdamW
    step ~92 KB. Only the soft limit is lowered, so it is raised back afterwards."""
    policy = load_policy(tiny_config(tmp_path, save_tiny_checkpoint(tmp_path / "model")).policy)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=0.01)
    for parameter in policy.trainable_parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()  # AdamW's moments: the state is now larger than the adapter
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(CheckpointWriteError, match=rf"\(File too large: \S*step_000001\.partial{first_too_large}\)"):
            save_checkpoint(tmp_path / "run", 1, policy=policy, optimizer=optimizer, scheduler=scheduler, config={},
                            extra={})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not (tmp_path / "run" / "checkpoints" / "step_000001.partial").exists()
