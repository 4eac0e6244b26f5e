"""The 75 inputs of reliability round 3 (issue 31), each tried as a new user would, on one source tree:

    python scripts/bad_inputs.py [--tree DIR] [--out outputs/bad_inputs.json] [--only TEXT]

The 42 the issue listed are in bad_inputs_listed.py, the 33 more it counted (21 clear, 12 recovered)
in bad_inputs_more.py; what every case stands on is bad_input_harness.py. Every case runs `rlalign` of
`--tree` (default: this checkout) as its console script does, in a subprocess, in a fresh directory
holding the files the case needs, on the built-in Shapes generator with a 2-step config. A row is what
the user saw: the exit code, the first line that explains (an `error:` line, a note or a warning), and,
where the harm is silent, what the run left behind. Run it on an older tree (`git worktree add /tmp/old
REV`) for the before column of docs/reliability.md. About 15 minutes on 2 CPU cores.

    python scripts/bad_inputs.py --table BEFORE.json AFTER.json   # the markdown table of two runs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import bad_inputs_listed
import bad_inputs_more
from bad_input_harness import Run

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree whose rlalign runs the cases")
    parser.add_argument("--out", type=Path, default=Path("outputs/bad_inputs.json"))
    parser.add_argument("--only", default="", help="only the cases whose name contains this text")
    parser.add_argument("--table", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="print the before → after markdown table of two runs' JSON instead of running")
    args = parser.parse_args(argv)
    if args.table:
        print(table(*args.table))
        return 0
    cases = {**bad_inputs_listed.CASES, **bad_inputs_more.CASES}
    rows, began = [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as temporary:
        for number, (name, (kind, case)) in enumerate(cases.items()):
            if args.only.lower() not in name.lower():
                continue
            work = Path(temporary) / f"case{number:02d}"
            (work / "home").mkdir(parents=True)
            case_began = time.monotonic()
            rows.append({"case": name, "kind": kind, "result": case(Run(args.tree.resolve(), work)),
                         "seconds": round(time.monotonic() - case_began, 1)})
            print(f"| {name} | {kind} | {rows[-1]['result']} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"tree": str(args.tree), "seconds": round(time.monotonic() - began),
                                    "rows": rows}, indent=1) + "\n")
    return 0


def table(before_json: Path, after_json: Path) -> str:
    """One row per case of the after run: what the issue (or the reconstruction) called it, before, after."""
    before, after = (json.loads(path.read_text()) for path in (before_json, after_json))
    was = {row["case"]: row["result"] for row in before["rows"]}
    called = {"silent": "silently wrong", "unclear": "unclear", "clear": "(not listed) clear",
              "recovered": "(not listed) recovered"}
    lines = ["| # | case | issue 31 called it | before | after |", "|---|---|---|---|---|"]
    for number, row in enumerate(after["rows"], start=1):
        cells = [row["case"], called[row["kind"]], was.get(row["case"], "(not run)"), row["result"]]
        lines.append(f"| {number} | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
