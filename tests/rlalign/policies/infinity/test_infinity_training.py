"""End to end on the CPU: the golden Infinity model (the reference's architecture, tiny) trained a few GRPO
steps through `rlalign`'s own Trainer with a real CLIP reward (open_clip), stopped, resumed, and the
resumed run equal bit for bit to an uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from support.infinity import GOLDEN_DIR

from rlalign.config import load_config
from rlalign.training.trainer import Trainer
from rlalign.utils.metrics import read_metrics

pytestmark = pytest.mark.skipif(not (GOLDEN_DIR / "config.json").is_file(), reason="needs shared/golden/infinity")
PROMPTS = ["a photo of a cat", "an astronaut riding a horse on the moon , oil painting"]


def infinity_config(tmp_path, **overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    values = {
        "policy": {"kind": "infinity", "checkpoint": str(GOLDEN_DIR), "lora": {"rank": 4}},
        "prompts": {"train": f"file:{prompts}", "eval": {"prompts": f"file:{prompts}"}, "eval_samples_per_prompt": 2},
        "rewards": {"functions": [
            {"name": "clip_score", "label": "clip", "args": {"architecture": "shapes-clip", "weights": "builtin:shapes-clip"}},
            {"name": "aesthetic", "label": "aesthetic", "weight": 0.0, "args": {"weights": "builtin:shapes-aesthetic"}}],
            "eval": []},
        "grpo": {"group_size": 4, "prefix_steps": 2, "inner_iterations": 2},
        "train": {"steps": 3, "prompts_per_step": 2, "micro_batch_size": 4, "learning_rate": 0.05, "save_every": 1,
                  "eval_every": 3},
        "logging": {"wandb_mode": "disabled", "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    }
    return load_config(values, [f"{k}={v}" for k, v in overrides.items()])


def test_golden_model_trains_with_clip_and_resumes_bit_identically(tmp_path):
    straight = Trainer(infinity_config(tmp_path / "a"))
    straight.run()
    records = read_metrics(tmp_path / "a" / "run" / "metrics.jsonl")
    steps = [r for r in records if "time/step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["debug/max_abs_logratio_first_iter"] == 0.0 for r in steps)  # exact on-policy log-probs
    assert all(r["charts/kl"] > 0 for r in steps[1:])  # the adapter moved the prefix away from the base
    assert any("eval/prompts/clip" in r for r in records)

    interrupted = Trainer(infinity_config(tmp_path / "b"))
    interrupted.run(stop_after=1)
    resumed = Trainer(infinity_config(tmp_path / "b"), resume=str(tmp_path / "b" / "run"))
    assert resumed.start_step == 1
    resumed.run()
    expected, got = straight.policy.adapter_state(), resumed.policy.adapter_state()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
