"""Bad inputs of issue 31 answered in one clear line (exit code 2), and `sample --out x.jpg` writing JPEG."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from rlalign.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "shapes_nextscale.yaml")


@pytest.mark.parametrize("argv, message", [
    (["train", DEMO, "--stop-after", "-1"], r"--stop-after must be a step ≥ 1"),
    (["train", DEMO, "output_dir=ELSEWHERE", "--resume", "RUN_DIR"], r"continues the run in \S*/run; the override "
                                                                   r"output_dir=\S*/else would be ignored"),
    (["config", DEMO, "policy.device=gpu"], r"policy.device.*must be a torch device"),
    (["config", DEMO, "seed=99999999999999"], r"'seed'.*≤ 2147483647"),
    (["sample", DEMO, "policy.checkpoint=builtin:shapes-nextscal", "--prompts", "a red circle"],
     r"did you mean 'builtin:shapes-nextscale'\?.*builtin:text-editflow"),
    (["sample", DEMO, "--prompts", "a red circle", "--out", "OUT_DIR/"], r"\S+ is a directory; pass a file name in it"),
    (["sample", DEMO, "--prompts", "a red circle", "--out", "OUT_DIR/x.gif"], r"cannot write a '\.gif' image"),
    (["sample", DEMO, "--prompts", "a red circle", "--out", ""], r"--out '' names no file"),
    (["probe", DEMO, "--share", "2"], r"--share is a share of the final decision in \(0, 1\]"),
    (["probe", DEMO, "--steps", "7"], r"--steps: each value must be 1..6"),
    (["probe", DEMO, "--prefixes", "0"], r"--prefixes must be ≥ 2"),  # these two were tracebacks inside the model
    (["probe", DEMO, "--completions", "0"], r"--completions must be ≥ 1"),
    (["probe", DEMO, "--steps", "2,2"], r"--steps lists 2 twice \('2,2'\); give each value once"),
    (["config", DEMO, "rewards.timeout_s=1e300"], r"'rewards.timeout_s' = 1e\+300: must be > 0 and ≤"),
])
def test_bad_inputs_get_one_clear_line(tmp_path, capsys, argv, message):
    argv = [a.replace("RUN_DIR", str(tmp_path / "run")).replace("ELSEWHERE", str(tmp_path / "else"))
            .replace("OUT_DIR", str(tmp_path)) for a in argv]
    if "--resume" in argv:
        (tmp_path / "run").mkdir()
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err.replace("\n", " "))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_the_machine_lacks_is_refused_before_loading(capsys):
    assert main(["sample", DEMO, "policy.device=cuda", "--prompts", "a red circle"]) == 2
    assert "has no cuda device torch can use (available: cpu)" in capsys.readouterr().err


def test_sample_into_an_existing_directory_named_like_an_image_is_refused(tmp_path, capsys):
    (tmp_path / "grid.png").mkdir()  # os.replace onto it was an IsADirectoryError traceback
    assert main(["sample", DEMO, "--prompts", "a red circle", "--out", str(tmp_path / "grid.png")]) == 2
    assert "grid.png is a directory; pass a file name in it" in capsys.readouterr().err


def test_a_cuda_index_the_machine_lacks_says_which_to_use(monkeypatch):
    from rlalign.policies.registry import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda:1")
    with pytest.raises(ValueError, match=r"policy.device='cuda:2', but torch sees 2 CUDA device.*one of cuda:0..cuda:1"):
        check_device("cuda:2")


def test_sample_writes_the_format_its_file_name_asks_for(tmp_path):
    assert main(["sample", DEMO, "--prompts", "a red circle", "--out", str(tmp_path / "grid.jpg")]) == 0
    with Image.open(tmp_path / "grid.jpg") as image:
        assert image.format == "JPEG"


def test_an_unreachable_ray_address_is_named_instead_of_waiting_forever():
    """Nothing listens on a port of this machine that was just free: refused at once (connection refused),
    rather than Ray's endless retries."""
    import socket

    from rlalign.utils.ray_cluster import check_reachable

    with socket.socket() as probe:  # a port nobody listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ValueError, match=rf"rollout.ray_address='127.0.0.1:{port}': nothing answers there"):
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(ValueError, match="must be host:port"):
        check_reachable("no-port-here")


SLOW_REWARD = '''import threading


def never_answers(prompts, completions, **kwargs):
    threading.Event().wait()  # waits for an event that never comes
'''


def test_a_reward_past_its_timeout_stops_the_run_with_one_error_and_exit_1(tmp_path):
    """rewards.timeout_s holds in process: the run stops, says the cause, what was saved and what to do;
    no traceback, and no "--resume" when there is no checkpoint to resume from."""
    import subprocess
    import sys

    (tmp_path / "slow.py").write_text(SLOW_REWARD)
    environment = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "OMP_NUM_THREADS": "1", "PATH": os.environ["PATH"]}
    result = subprocess.run([sys.executable, "-m", "rlalign.cli", "train", DEMO, "rewards.functions=[{name: slow:never_answers}]",
                             "rewards.eval=[]", "rewards.timeout_s=1", "prompts.eval={}", f"output_dir={tmp_path / 'run'}",
                             "train.steps=1", "logging.wandb_mode=disabled"], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert re.search(r"^error: rewards of shard 0: no answer within rewards.timeout_s = 1 s", result.stderr, re.M)
    assert "start the run again (no checkpoint exists to resume from)" in result.stderr
