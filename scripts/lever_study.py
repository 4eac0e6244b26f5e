"""Which lever makes the next-scale policy gradient carry signal? Per-scale SNR and a short run per lever.

For each lever (a named set of config overrides on top of the config given), two measurements with
the same seeds:

  SNR        `scripts/gradient_snr.py` at the base: the signal-to-noise ratio of one step's loss
             gradient, for all prefix scales together and for each scale alone (docs/grpo.md)
  short run  `rlalign train` for --steps steps, evaluated on the held-out lists only (base and
             adapter, the verifier's GenEval-style overall with its 95% interval, per category,
             and the trained and logged rewards), plus the KL at the end and the wall time

A lever that changes sampling (top-k, temperature, CFG) changes the base too: each row's base is
sampled with that row's settings, so read the change from its own base.

    python scripts/lever_study.py configs/shapes_nextscale.yaml --steps 200            # ~1 h on 2 cores
    python scripts/lever_study.py configs/shapes_nextscale.yaml --levers demo,top-k-8 --no-snr

Writes outputs/levers/<lever>/ (the runs), outputs/levers/levers.json and a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlalign.shapes import CATEGORIES
from rlalign.utils.files import write_json_atomic
from rlalign.utils.metrics import read_metrics
from rlalign.utils.tables import records_table

LEVERS: dict[str, list[str]] = {
    "demo": [],
    "top-k-8": ["policy.top_k=8"],
    "temperature-0.7": ["policy.temperature=0.7"],
    "lr-3e-3": ["train.learning_rate=0.003"],
    "alpha-0": ["grpo.step_weight_alpha=0"],
    "m-2": ["grpo.prefix_steps=2"],
    "m-5": ["grpo.prefix_steps=5"],
    "m-all": ["grpo.prefix_steps=all"],
    "K-4": ["grpo.suffix_samples=4"],
    "cfg-4": ["policy.cfg_scale=4"],
    "rank-32": ["policy.lora.rank=32", "policy.lora.alpha=64"],
    "16-prompts": ["train.prompts_per_step=16"],
}
"""name -> overrides. `16-prompts` runs half the steps (the same samples as the others)."""
NO_SNR = {"K-4"}
"""gradient_snr.py scores the rollout itself; the middle value's K completions are not in it."""


def run_snr(config: str, name: str, overrides: list[str], out: Path, batches: int) -> dict:
    path = out / name / "snr.json"
    command = [sys.executable, str(ROOT / "scripts" / "gradient_snr.py"), config, *overrides,
               "--batches", str(batches), "--out", str(path)]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    rows = json.loads(path.read_text())["rows"]
    return {f"snr {row['actions'].replace('step ', 'scale ')}": round(row["snr"], 4) for row in rows}


def run_training(config: str, name: str, overrides: list[str], out: Path, steps: int) -> dict:
    run = out / name / "run"
    if name == "16-prompts":
        steps //= 2
    settings = [f"train.steps={steps}", f"train.eval_every={steps}", "train.save_every=0", "logging.progress_bar=false",
                "logging.wandb_mode=disabled", 'prompts.eval={heldout: "shapes-eval:heldout"}', f"output_dir={run}"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlalign.cli", "train", config, *overrides, *settings], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    records = read_metrics(run / "metrics.jsonl")
    final = [r for r in records if "eval/heldout/exact" in r][-1]
    last_step = [r for r in records if "charts/kl" in r][-1]
    row = {"base": round(final["eval/heldout/base/exact"], 3), "final": round(final["eval/heldout/exact"], 3),
           "final 95%": f"[{final['eval/heldout/exact_ci95_low']:.3f}, {final['eval/heldout/exact_ci95_high']:.3f}]",
           "change": round(final["eval/heldout/exact"] - final["eval/heldout/base/exact"], 3)}
    for category in CATEGORIES:
        row[category] = round(final[f"eval/heldout/{category}/exact"] - final[f"eval/heldout/base/{category}/exact"], 3)
    for label in ("detector", "clip"):
        if f"eval/heldout/{label}" in final:
            row[f"{label} base→final"] = f"{final[f'eval/heldout/base/{label}']:.3f}→{final[f'eval/heldout/{label}']:.3f}"
    row["kl"] = round(last_step["charts/kl"], 3)
    row["steps"], row["minutes"] = steps, round((time.perf_counter() - started) / 60, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, of: {', '.join(LEVERS)}")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batches", type=int, default=8, help="independent batches per SNR estimate")
    parser.add_argument("--no-snr", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("outputs/levers"))
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.levers.split(",") if name.strip()]
    unknown = [name for name in names if name not in LEVERS]
    if unknown:
        raise SystemExit(f"unknown levers {unknown}; choose from {', '.join(LEVERS)}")
    results_path = args.out / "levers.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in names:
        row = dict(results.get(name, {}), lever=name, overrides=" ".join(LEVERS[name]) or "(the config)")
        if not args.no_snr and name not in NO_SNR:
            row.update(run_snr(args.config, name, LEVERS[name], args.out, args.batches))
        if not args.no_train:
            row.update(run_training(args.config, name, LEVERS[name], args.out, args.steps))
        results[name] = row
        write_json_atomic(results_path, results)  # each finished lever is kept if a later one fails
        print(json.dumps(row), flush=True)
    rows = [results[name] for name in names]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print(records_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
