"""Smoke tier: scripts/bench_infinity_rollout.py --quick (the golden model and a tiny random one) reports a row
per m for both models, and the KV-cached sampler's logits equal naive recomputation up to float rounding."""

import importlib.util
import json
from pathlib import Path

import pytest
from support import one_torch_thread
from support.infinity import GOLDEN_DIR

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (GOLDEN_DIR / "config.json").is_file(), reason="needs shared/golden/infinity")
_one_thread = pytest.fixture(autouse=True)(one_torch_thread)  # main() sets the thread count; this restores it


def load_script():
    path = ROOT / "scripts" / "bench_infinity_rollout.py"
    spec = importlib.util.spec_from_file_location("bench_infinity_rollout", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_infinity_rollout_benchmark_rows_and_cache_equivalence(tmp_path):
    out = tmp_path / "infinity_rollout.json"
    load_script().main(["--quick", "--threads", "1", "--golden-dir", str(GOLDEN_DIR), "--out", str(out)])
    report = json.loads(out.read_text())
    assert [model["name"] for model in report["models"]] == ["golden", "quick"]
    steps = {model["name"]: len(model["scales"]) for model in report["models"]}
    assert [(row["model"], row["m"]) for row in report["rollouts"]] == [
        (name, m) for name, T in steps.items() for m in range(1, T + 1)]
    for row in report["rollouts"]:
        assert row["images_per_s"] > 0 and row["sample_s"] > 0 and row["rescore_s"] > 0
        assert isinstance(row["within"], bool)  # a timing verdict: reported, never asserted
        assert row["sampler_logp_gap"] < 1e-3
    assert [row["model"] for row in report["kv_cache"]] == ["golden", "quick"]
    for row in report["kv_cache"]:
        assert row["max_abs_logit_difference_fp32"] < 1e-4  # same math, another float order
        # With the cross-attention's bf16 rounding a float-order difference may move one value by a
        # bf16 ulp (~4e-3 relative); logits here are O(1).
        assert row["max_abs_logit_difference"] < 1e-2
        assert row["cached_s"] > 0 and row["naive_s"] > 0
