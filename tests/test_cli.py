"""Smoke tier: every CLI command runs end to end as a user would call it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlalign.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def rlalign(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rlalign.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_commands_are_listed():
    assert {"config", "showcase"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    result = rlalign(*([command] if command else []), "--help")
    assert result.returncode == 0 and "usage: rlalign" in result.stdout


def test_config_prints_the_resolved_config():
    result = rlalign("config", "configs/examples/custom_reward.yaml", "grpo.group_size=4")
    assert result.returncode == 0, result.stderr
    assert "group_size: 4" in result.stdout and "samples_per_step=16" in result.stdout


def test_config_explain_prints_documentation():
    result = rlalign("config", "configs/examples/custom_reward.yaml", "--explain")
    assert "grpo.group_size = 8" in result.stdout and "advantages compare samples within a group" in result.stdout


def test_config_error_exits_2_naming_the_key():
    result = rlalign("config", "configs/examples/custom_reward.yaml", "grpo.group_size=1")
    assert result.returncode == 2 and "'grpo.group_size'" in result.stderr and "Traceback" not in result.stderr


def test_showcase_writes_grid_and_report(tmp_path):
    result = rlalign("showcase", "--out", str(tmp_path), "--count", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["splits"]["heldout"]["true_prompt"]["exact_match"] == 1.0
    assert report["splits"]["train"]["other_prompt"]["exact_match"] <= 0.25
    assert (tmp_path / "showcase.png").stat().st_size > 1000
    assert "exact match" in result.stdout
