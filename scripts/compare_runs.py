"""Compare two run directories bit for bit: every metrics.jsonl value except wall times, summary.json
without times, and the final adapter's bytes. Used to show a refactor changes no number:

    python scripts/compare_runs.py RUN_A RUN_B      # exit 0 when identical, 1 otherwise

Prints how many values were compared and the first differences.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from rlalign.utils.metrics import read_metrics


def timeless(record: dict) -> dict:
    """A record or summary without its wall-time entries (keys naming time or seconds), recursively."""
    return {k: timeless(v) if isinstance(v, dict) else v for k, v in record.items()
            if not k.startswith("time") and "seconds" not in k}


def adapter_digest(run: Path) -> str:
    latest = (run / "checkpoints" / "latest").read_text().strip()
    return hashlib.sha256((run / "checkpoints" / latest / "adapter" / "adapter_model.safetensors").read_bytes()).hexdigest()


def compare(first: Path, second: Path) -> tuple[list[str], int]:
    """The differences between two runs (empty when identical) and the number of values compared."""
    records = [read_metrics(run / "metrics.jsonl") for run in (first, second)]
    if len(records[0]) != len(records[1]):
        return [f"metrics.jsonl: {len(records[0])} vs {len(records[1])} records"], 0
    differences, compared = [], 0
    for a, b in zip(*records):
        a, b = timeless(a), timeless(b)
        for key in sorted(set(a) | set(b)):
            compared += 1
            if a.get(key) != b.get(key):  # non-finite values are stored as null, so == holds for them too
                differences.append(f"step {a.get('step')}: {key} {a.get(key)!r} vs {b.get(key)!r}")
    summaries = [timeless(json.loads((run / "summary.json").read_text())) for run in (first, second)]
    if summaries[0] != summaries[1]:
        differences.append("summary.json differs (wall times left out)")
    digests = [adapter_digest(run) for run in (first, second)]
    if digests[0] != digests[1]:
        differences.append(f"final adapters differ: sha256 {digests[0][:16]} vs {digests[1][:16]}")
    return differences, compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    differences, compared = compare(args.first, args.second)
    print(f"{compared} metric values compared (wall times left out), summary.json and the final adapter: "
          f"{'identical' if not differences else f'{len(differences)} differences'}")
    for line in differences[:10]:
        print("  " + line)
    if not differences:
        print(f"final adapter sha256 {adapter_digest(args.first)[:16]}")
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
