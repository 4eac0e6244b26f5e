"""Smoke tier: scripts/pretrain_shapes_captioner.py --quick runs end to end and its file is a policy."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlalign.policies import load_policy
from rlalign.shapes import sample_scenes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pretrain_shapes_captioner.py"


def _strict(constant):
    raise ValueError(f"the report holds {constant}, which is not JSON")


@pytest.mark.slow
def test_quick_run_writes_a_loadable_captioner_and_report(tmp_path):
    out = tmp_path / "captioner.safetensors"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
                            check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text(), parse_constant=_strict)
    assert report["hyperparameters"]["quick"] and report["threads"] == 1 and report["seed"] == 0
    assert report["architecture"]["condition"] == "image" and report["parameters"] > 0
    assert report["asset_bytes"] == out.stat().st_size < 10_000_000
    assert {"train_last50", "validation"} <= set(report["final_losses"])
    assert [row["insertion_steps"] for row in report["evaluation"]] == [8, 16]
    for row in report["evaluation"]:
        for split in ("train", "heldout"):
            overall = row[split]["overall"]
            assert overall["samples"] == report["hyperparameters"]["eval_scenes"]
            assert 0.0 <= overall["exact_ci95"][0] <= overall["exact"] <= overall["exact_ci95"][1] <= 1.0
    assert "| split   | group" in result.stdout  # the printed table

    policy = load_policy({"kind": "insertion", "checkpoint": str(out)})
    assert policy.num_steps == 8
    rollout = policy.rollout(sample_scenes("heldout", 3, seed=0), "all", generator=torch.Generator().manual_seed(0))
    assert len(rollout.outputs) == 3 and all(isinstance(text, str) for text in rollout.outputs)
