"""Smoke tier: `rlalign train` on the golden dllm checkpoint directory itself, two steps, with TRL-style
rows (a "solution" column), one trl.rewards function used unchanged and a custom reward."""

import json

import pytest
import yaml

from rlalign.cli import main
from rlalign.utils.metrics import read_metrics

from .conftest import GOLDEN_DIR, needs_golden

pytestmark = [needs_golden, pytest.mark.slow]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_rlalign_train_runs_two_steps_on_the_golden_checkpoint(tmp_path, precision):
    rows = [{"prompt": f"w{5 + i} w{6 + i}", "solution": f"w{7 + i}"} for i in range(6)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = {
        "policy": {"kind": "edit_flow", "checkpoint": str(GOLDEN_DIR / "model"), "precision": precision,
                   "edit_flow": {"tau": 0.25, "mask_length": 2, "max_length": 16}, "lora": {"rank": 4}},
        "prompts": {"train": f"jsonl:{tmp_path / 'rows.jsonl'}", "eval": {"rows": f"jsonl:{tmp_path / 'rows.jsonl'}"},
                    "eval_samples_per_prompt": 2},
        "rewards": {"functions": [
            {"name": "rlalign.rewards.examples:exact_match", "label": "match"},
            {"name": "trl.rewards:get_soft_overlong_punishment()", "label": "overlong", "weight": 0.5,
             "args": {"max_completion_len": 4, "soft_punish_cache": 2}}],
            "eval": [{"name": "rlalign.rewards.examples:exact_match", "label": "exact"}]},
        "grpo": {"group_size": 4, "prefix_steps": 2},
        "train": {"steps": 2, "prompts_per_step": 3, "micro_batch_size": 12, "eval_every": 2, "save_every": 2},
        "logging": {"wandb_mode": "disabled", "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    }
    (tmp_path / "golden.yaml").write_text(yaml.safe_dump(config))
    assert not main(["train", str(tmp_path / "golden.yaml")])  # exit status 0 (or None)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    steps = [r for r in records if "time/step" in r]
    assert len(steps) == 2 and all(r["debug/max_abs_logratio_first_iter"] <= 1e-5 for r in steps)
    assert all("rewards/overlong/mean" in r and "rewards/match/mean" in r for r in steps)
    final = [r for r in records if "eval/rows/exact" in r][-1]
    assert 0.0 <= final["eval/rows/base/exact"] <= 1.0
    adapter = tmp_path / "run" / "checkpoints" / "step_000002" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
