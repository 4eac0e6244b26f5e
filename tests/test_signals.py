"""Smoke tier: real SIGINT / SIGTERM sent to `rlalign train` in a subprocess (rlalign.training.interrupts)."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.config import to_dict
from rlalign.training.trainer import Trainer
from rlalign.utils.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def start_training(tmp_path, checkpoint):
    """`rlalign train` on a tiny 1000-step config (no periodic saves), and that config."""
    cfg = tiny_config(tmp_path, checkpoint, **{"train.steps": 1000, "train.save_every": 0})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    process = subprocess.Popen([sys.executable, "-m", "rlalign.cli", "train", str(path)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, cfg


def wait_for(condition, process, what: str, timeout: float = 180.0) -> None:
    """Poll `condition` until it holds; fail at once if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {what}")


def wait_for_step(run: Path, step: int, process) -> None:
    metrics = run / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and any(r.get("step", 0) >= step and "time/step" in r
                                               for r in read_metrics(metrics)), process, f"step {step}")


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_checkpoints_the_finished_step_and_says_how_to_resume(tmp_path, tiny_checkpoint, signum, exit_code):
    process, cfg = start_training(tmp_path, tiny_checkpoint)
    run = tmp_path / "run"
    wait_for_step(run, 2, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr and f"stopped by {signal.Signals(signum).name} after step" in stderr
    assert f"continue with rlalign train CONFIG --resume {run}" in stderr
    logged = max(r["step"] for r in read_metrics(run / "metrics.jsonl") if "time/step" in r)
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step_{logged:06d}"  # the last finished step
    assert Trainer(cfg, resume=str(run)).start_step == logged


def test_a_second_signal_aborts_at_once(tmp_path, tiny_checkpoint, monkeypatch):
    """The second signal arrives while the first one's clean stop is under way: the run is held at
    the `stop:save` point (before the checkpoint) until the test has sent it, so no timing is assumed."""
    held = tmp_path / "held"
    monkeypatch.setenv("RLALIGN_HOLDPOINT", "stop:save")
    monkeypatch.setenv("RLALIGN_HOLDPOINT_FILE", str(held))
    process, _ = start_training(tmp_path, tiny_checkpoint)
    run = tmp_path / "run"
    wait_for_step(run, 1, process)
    process.send_signal(signal.SIGINT)
    wait_for(held.exists, process, "the clean stop to reach stop:save")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 143, stderr  # 128 + SIGTERM: the abort, not the clean stop
    assert "SIGTERM after SIGINT: aborting at once" in stderr
    assert "stopped by SIGINT" not in stderr and not (run / "checkpoints" / "latest").exists()  # no save after the abort
