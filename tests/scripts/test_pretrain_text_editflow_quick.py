"""Smoke tier: scripts/pretrain_text_editflow.py --quick writes a dllm-format directory that transformers'
Auto classes load and that rlalign samples as an edit_flow policy, plus its report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from rlalign import sums
from rlalign.policies import load_policy
from rlalign.policies.edit_flow.model import EditFlowModernBertModel

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pretrain_text_editflow.py"


@pytest.mark.slow
def test_quick_run_writes_a_dllm_directory_and_report(tmp_path):
    out = tmp_path / "text-editflow"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
                            check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert json.loads((out / "config.json").read_text())["model_type"] == "editflow-modernbert"
    assert isinstance(AutoModel.from_pretrained(out, local_files_only=True), EditFlowModernBertModel)
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = tokenizer("\\boxed{5+4+3}", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "\\boxed{5+4+3}" and len(ids) == 7  # boxed{, 5, +, 4, +, 3, }
    report = json.loads(out.with_name("text-editflow.json").read_text())
    assert report["args"]["quick"] and len(report["results"]) == 8 and report["max_length"] == 32
    policy = load_policy({"kind": "edit_flow", "checkpoint": str(out),
                          "edit_flow": {"tau": 0.5, "mask_length": 7, "max_length": 32}})
    rollout = policy.rollout(sums.prompts("heldout")[:2], 1, generator=torch.Generator().manual_seed(0))
    assert len(rollout.outputs) == 2 and rollout.sampler_logp_gap.max() <= 1e-5
