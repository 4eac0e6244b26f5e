"""Every benchmark of the project in one command: JSON per benchmark plus one Markdown summary.

    python scripts/bench.py                 # all, ~13 minutes on 2 cores → outputs/bench/*.json, summary.md
    python scripts/bench.py --quick         # fewer repeats, no ViT-B-32 row (~4 minutes)

Runs, one after another (never concurrently: they would time each other), each as its own
process so that one's threads and caches do not colour the next:
  rollout   scripts/bench_rollout.py   next-scale rollout images/s per m, KV cache vs recomputation,
                                       prefill share, fraction of the measured fp32 matmul peak
  update    scripts/bench_update.py    update seconds per m / update at m = T, next to the share of actions
  ray       scripts/bench_ray.py       local vs Ray backends: images/s, sync payload and its share of a step;
                                       reward actors overlapped with sampling
  rewards   scripts/bench_rewards.py   reward throughput (CLIP, aesthetic, captions, ViT-B-32)
  infinity  scripts/bench_infinity_rollout.py   Infinity rollout images/s per m, its re-score share, KV cache
then writes outputs/bench/summary.md (the tables docs/performance.md quotes) and summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info

SCRIPTS = {"rollout": "bench_rollout.py", "update": "bench_update.py", "ray": "bench_ray.py", "rewards": "bench_rewards.py",
           "infinity": "bench_infinity_rollout.py"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="outputs/bench")
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated subset of " + ", ".join(SCRIPTS))
    parser.add_argument("--quick", action="store_true", help="3 repeats everywhere and no ViT-B-32 reward row")
    return parser.parse_args()


def run(name: str, out: Path, quick: bool) -> dict:
    command = [sys.executable, str(Path(__file__).parent / SCRIPTS[name]), "--out", str(out / f"{name}.json")]
    if quick:
        command += ["--repeats", "3"] + (["--skip-vit-b-32"] if name == "rewards" else [])
    print(f"[bench] {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)
    return json.loads((out / f"{name}.json").read_text())


def tables(results: dict) -> list[str]:
    """The Markdown sections of summary.md, one per benchmark that ran."""
    sections = []
    if "rollout" in results:
        r = results["rollout"]
        sections += [f"## Rollout (next-scale, batch {r['batch_size']}, fp32 peak {r['matmul_peak_gflop_per_s']:.1f} GFLOP/s)",
                     records_table(r["rollouts"], ["m", "cfg_scale", "images_per_s", "prefill_s", "prefill_share",
                                                  "gflop", "peak_fraction"]),
                     records_table([r["kv_cache"]], ["cached_s", "naive_s", "speedup", "float32_max_abs_logit_difference"])]
    if "update" in results:
        sections += [f"## Update cost vs m (batch {results['update']['batch_size']})",
                     records_table(results["update"]["rows"], ["family", "m", "T", "update_s", "update_vs_T",
                                                              "actions_per_sample", "action_share"])]
    if "ray" in results:
        r = results["ray"]
        title = (f"## Rollout backends (batch {r['batch_size']}, m = {r['prefix_steps']}; adapter "
                 f"{r['adapter_bytes']} B vs full model {r['full_model_bytes']} B)")
        sections += [title,
                     records_table(r["rows"], ["backend", "workers", "torch_threads", "images_per_s", "sync_s",
                                              "sync_share", "sync_bytes", "start_s"])]
        if r.get("reward_overlap"):
            sections += [f"## Reward actors overlapped with sampling (batch {r['batch_size']}, m = {r['prefix_steps']})",
                         records_table(r["reward_overlap"], ["rewards", "shards", "step_s", "reward_work_s",
                                                            "driver_wait_s", "overlap", "vs_in_process_2t",
                                                            "total_equals_in_process_1t"])]
    if "infinity" in results:
        r = results["infinity"]
        sections += [f"## Infinity rollout (batch {r['batch_size']}; sampling {r['sampling']})",
                     records_table(r["rollouts"], ["model", "m", "T", "images_per_s", "sample_s", "rescore_s",
                                                  "record_share", "within"]),
                     records_table(r["kv_cache"], ["model", "scales", "cached_s", "naive_s", "speedup",
                                                  "max_abs_logit_difference"])]
    if "rewards" in results:
        rows = results["rewards"]["rows"]
        sections += [f"## Rewards (batch {rows[0]['batch']})",
                     records_table(rows, ["reward", "model", "parameters", "images_per_s", "ms_per_batch", "load_s"])]
    return sections


def main() -> None:
    args = parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.only.split(",")]
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {unknown}; choose from {', '.join(SCRIPTS)}")
    results = {name: run(name, out, args.quick) for name in names}
    text = "\n\n".join([f"# Benchmarks ({machine_info()['cpu_count']} CPUs, torch {machine_info()['torch']})",
                        *tables(results)]) + "\n"
    (out / "summary.md").write_text(text)
    write_json_atomic(out / "summary.json", {"machine": machine_info(), "ran": names, "quick": args.quick})
    print(text)
    print(f"wrote {out / 'summary.md'} and {out / 'summary.json'}")


if __name__ == "__main__":
    main()
