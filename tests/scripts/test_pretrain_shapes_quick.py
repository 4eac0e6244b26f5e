"""Smoke tier: scripts/pretrain_shapes.py --quick with the layout probe runs end to end, in one go and
in two stages (--tokenizer-only, then --tokenizer-from), and writes a loadable generator."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlalign.policies.next_scale.model import load_model

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pretrain_shapes.py"


def run(*args):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", *map(str, args)],
                            check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_a_layout_tokenizer_then_its_transformer(tmp_path):
    stage1, stage2 = tmp_path / "tokenizer.safetensors", tmp_path / "generator.safetensors"
    run("--tokenizer-only", "--layout-weight", 0.1, "--out", stage1)
    tokenizer_report = json.loads(stage1.with_suffix(".json").read_text())
    assert tokenizer_report["tokenizer_only"]
    assert "layout" in tokenizer_report["final_losses"]["tokenizer"]  # the probe was trained
    readout = tokenizer_report["layout_readout"]
    assert set(readout) == {"count | 1x1 code", "shapes per half | 1x1 code", "quadrant shapes | 2x2 code"}
    assert all(0.0 <= row["chance"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0 for row in readout.values())

    run("--tokenizer-from", stage1, "--out", stage2)
    report = json.loads(stage2.with_suffix(".json").read_text())
    assert report["final_losses"]["tokenizer"] == {"copied_from": str(stage1)}
    assert set(report["layout_readout"]) == set(readout)
    first, second = load_model(stage1), load_model(stage2)
    for name, tensor in first.tokenizer.state_dict().items():
        torch.testing.assert_close(second.tokenizer.state_dict()[name], tensor, rtol=0, atol=0)


@pytest.mark.slow
def test_without_the_probe_the_loss_has_no_layout_term(tmp_path):
    out = tmp_path / "plain.safetensors"
    run("--tokenizer-only", "--out", out)
    assert "layout" not in json.loads(out.with_suffix(".json").read_text())["final_losses"]["tokenizer"]
