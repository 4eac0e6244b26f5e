"""scripts/bad_inputs.py runs its cases end to end: here a cheap one (a config printed, no training),
so the script the reliability table comes from keeps working."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_cheap_case_gives_its_row(tmp_path):
    out = tmp_path / "rows.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bad_inputs.py"), "--only", "output_dir: ~", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    rows = {row["case"]: row["result"] for row in json.loads(out.read_text())["rows"]}
    assert rows == {"output_dir: ~/runs/x": "exit 0: output_dir: ./home/runs/x"}  # HOME is the case's home/
