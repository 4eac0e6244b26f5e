"""Smoke tier: scripts/bench_update.py measures every m and scripts/bench.py tabulates it."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_update_benchmark_rows_and_summary_table(tmp_path):
    out = tmp_path / "update.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_update.py"), "--batch-size", "8",
                             "--repeats", "1", "--threads", "1", "--families", "insertion", "--out", str(out)],
                            check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["m"] for row in rows] == list(range(1, 9)) and rows[-1]["update_vs_T"] == 1.0
    # More steps, more trained actions: the share rises to 1 at m = T.
    shares = [row["action_share"] for row in rows]
    assert shares == sorted(shares) and shares[-1] == 1.0 and shares[0] < 0.2
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = "\n".join(bench.tables({"update": json.loads(out.read_text())}))
    assert "## Update cost vs m (batch 8)" in text and text.count("| insertion |") == 8
