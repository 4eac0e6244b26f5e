"""A file this user may not read (config, prompts, model checkpoint, adapter) is one line naming it, exit 2.

Root reads every file (CAP_DAC_OVERRIDE), so as root each case runs the CLI under `setpriv` with the two
capabilities that bypass file permissions dropped from its bounding set: the kernel then checks the mode
bits as it would for a user. safetensors reports such a file as "No such file or directory", which is
why loaders open it once first (rlalign.utils.files.readable).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlalign.config import PolicyConfig
from rlalign.policies import load_policy

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """policy: {kind: next_scale, checkpoint: "builtin:shapes-nextscale"}
prompts: {train: "file:p.txt", eval: {}}
rewards: {functions: [{name: "rlalign.rewards.examples:saturation"}], eval: []}
train: {steps: 1, eval_every: 0}
logging: {wandb_mode: disabled, progress_bar: false}
output_dir: run
"""
AS_A_USER = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []

pytestmark = pytest.mark.skipif(bool(AS_A_USER) and shutil.which("setpriv") is None,
                                reason="as root, dropping file-permission capabilities needs setpriv (util-linux)")


def rlalign(work: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*AS_A_USER, sys.executable, "-m", "rlalign.cli", *args], cwd=work, env=environment,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "p.txt").write_text("a red circle\n")
    return tmp_path


def test_the_check_itself_is_denied_a_read(work):
    (work / "p.txt").chmod(0)  # if this read succeeded, every test below would prove nothing
    result = subprocess.run([*AS_A_USER, sys.executable, "-c", "open('p.txt').read()"], cwd=work,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "PermissionError" in result.stderr


def test_an_unreadable_config(work):
    (work / "c.yaml").chmod(0)
    result = rlalign(work, "config", "c.yaml")
    assert result.returncode == 2
    assert "'c.yaml': cannot be read (permission denied); check the file's permissions" in result.stderr


def test_an_unreadable_prompt_file(work):
    (work / "p.txt").chmod(0)
    result = rlalign(work, "train", "c.yaml")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: p.txt: permission denied; check its permissions")
    assert not (work / "run" / "checkpoints").exists()


def test_an_unreadable_model_checkpoint(work):
    shutil.copy(ROOT / "rlalign" / "assets" / "shapes-nextscale.safetensors", work / "m.safetensors")
    (work / "m.safetensors").chmod(0)
    result = rlalign(work, "sample", "c.yaml", "policy.checkpoint=m.safetensors", "--prompts", "a red circle",
                     "--out", "s.png")
    assert result.returncode == 2
    assert "error: m.safetensors: permission denied" in result.stderr  # not "truncated?", not "No such file"


def test_an_unreadable_adapter(work):
    load_policy(PolicyConfig()).save_adapter(work / "adapter")
    (work / "adapter" / "adapter_model.safetensors").chmod(0)
    result = rlalign(work, "sample", "c.yaml", "--adapter", "adapter", "--prompts", "a red circle", "--out", "s.png")
    assert result.returncode == 2
    assert "error: adapter/adapter_model.safetensors: permission denied" in result.stderr
    assert not (work / "s.png").exists()
