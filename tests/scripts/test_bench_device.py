"""Smoke tier: scripts/bench_device.py --quick (tiny VAR, the built-in CLIP) runs on the CPU and reports every row."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_device_benchmark_reports_rollout_update_reward_and_the_bf16_gap(tmp_path):
    out = tmp_path / "device.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_device.py"), "--quick", "--device", "cpu",
                             "--out", str(out)], check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["precision"], r["m"]) for r in rows] == [("fp32", 4), ("fp32", 5), ("bf16", 4), ("bf16", 5)]
    assert all(r["rollout_images_per_s"] > 0 and r["update_s"] > 0 for r in rows)
    assert all(r["on_policy_gap"] <= 1e-5 for r in rows)  # bf16 included: old_logp re-scored in the same precision
    assert report["reward"]["images_per_s"] > 0 and report["device"] == "cpu"


@pytest.mark.slow
def test_quick_infinity_device_benchmark_plans_memory_and_reports_rollout_and_update(tmp_path):
    out = tmp_path / "device_infinity.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_device.py"), "--family", "infinity",
                             "--quick", "--device", "cpu", "--out", str(out)],
                            check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["m"] for row in report["rows"]] == [4, 5] and report["precision"] == "bf16"
    assert all(row["rollout_images_per_s"] > 0 and row["update_s"] > 0 for row in report["rows"])
    assert all(row["rescore_gap"] < 1e-3 for row in report["rows"])
    assert [row["m"] for row in report["memory_plan"]] == [4, 5]
    assert report["parameters"]["lora"] > 0 and report["code_path"]["activation_bytes_per_token_channel_block"] > 0
