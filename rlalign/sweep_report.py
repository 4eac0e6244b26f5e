"""The report of a prefix-length sweep: report.md, report.json and PNG plots (docs/sweeps.md).

Everything is read back from the runs' metrics.jsonl, so a report can be rebuilt at any time
(`rlalign sweep ... --report-only`). Numbers per m are means over seeds; the final verifier
interval pools the samples of all seeds (a Wilson interval on Σ exact over Σ n), which measures
sampling noise, not seed-to-seed spread; the seed range is shown next to it for that.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from rlalign.evaluation import wilson_interval
from rlalign.metrics import read_metrics
from rlalign.plots import line_plot, stacked_bars

TIME_PARTS = ("rollout", "reward", "update", "sync", "eval")


def load_run(directory: Path, weights: dict[str, float]) -> dict:
    """One run's curves: trained reward (Σ weight·raw mean), KL, eval metrics with the elapsed time."""
    records = read_metrics(directory / "metrics.jsonl")
    steps, evals, elapsed = [], [], 0.0
    for record in records:
        elapsed += (record.get("time/step") or 0.0) + (record.get("time/eval") or 0.0)
        if "time/step" in record:
            reward = sum(w * record.get(f"rewards/{label}/mean", float("nan")) for label, w in weights.items())
            steps.append({"step": record["step"], "reward": reward, "kl": record.get("charts/kl"),
                          "trained_actions": record.get("debug/trained_actions"),
                          **{part: record.get(f"time/{part}") or 0.0 for part in TIME_PARTS[:-1]}})
        if any(key.startswith("eval/") for key in record):
            evals.append({"step": record["step"], "elapsed_s": elapsed, "metrics": record})
    seconds = {part: sum(s[part] for s in steps) for part in TIME_PARTS[:-1]}
    seconds["eval"] = sum(r.get("time/eval") or 0.0 for r in records)
    return {"steps": steps, "evals": evals, "seconds": seconds, "finished": (directory / "summary.json").is_file()}


def primary_metric(evals: list[dict]) -> tuple[str, str]:
    """(eval set, metric): `heldout` if there is one, and the verifier's `exact` if it is logged."""
    keys = set(evals[-1]["metrics"]) if evals else set()
    sets = sorted({k.split("/")[1] for k in keys if k.startswith("eval/") and k.count("/") >= 2})
    name = "heldout" if "heldout" in sets else sets[0]
    if f"eval/{name}/exact" in keys:
        return name, "exact"
    metric = min(k.split("/", 2)[2] for k in keys if k.startswith(f"eval/{name}/") and "/base/" not in k)
    return name, metric


def _mean_curve(curves: list[list[tuple[float, float]]]) -> tuple[list[float], list[float]]:
    """Mean over seeds at the x values every seed has."""
    common = sorted(set.intersection(*({x for x, _ in c} for c in curves))) if curves else []
    lookup = [dict(c) for c in curves]
    return common, [statistics.mean(d[x] for d in lookup) for x in common]


def _smooth(values: list[float], window: int) -> list[float]:
    return [statistics.mean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def summarize(out: Path) -> dict:
    """Per-m aggregates of a sweep directory (see the module docstring)."""
    manifest = json.loads((out / "sweep.json").read_text())
    num_steps, weights = manifest["num_steps"], manifest["reward_weights"]
    by_m: dict[str, list[dict]] = defaultdict(list)
    for run in manifest["runs"]:
        directory = Path(run["output_dir"])
        if (directory / "metrics.jsonl").is_file():
            by_m[str(run["prefix_steps"])].append(load_run(directory, weights))
    if not by_m:
        raise FileNotFoundError(f"no run of the sweep in {out} has metrics yet; run `rlalign sweep` first")
    first = next(iter(by_m.values()))[0]
    name, metric = primary_metric(first["evals"])
    key = f"eval/{name}/{metric}"
    rows = {}
    for m, runs in by_m.items():
        finals = [r["evals"][-1]["metrics"] for r in runs if r["evals"]]
        values = [f[key] for f in finals]
        base = statistics.mean(f[f"eval/{name}/base/{metric}"] for f in finals)
        row = {"m": m, "T": num_steps, "seeds": len(runs), "finished": sum(r["finished"] for r in runs),
               "steps": statistics.mean(len(r["steps"]) for r in runs), "final": statistics.mean(values),
               "seed_range": [min(values), max(values)], "base": base}
        if all(f"eval/{name}/samples" in f for f in finals):  # pooled Wilson interval over seeds
            n = sum(int(f[f"eval/{name}/samples"]) for f in finals)
            row["ci95"] = list(wilson_interval(round(sum(f[key] * f[f"eval/{name}/samples"] for f in finals)), n))
        row["gain"] = row["final"] - base
        row["seconds"] = {p: statistics.mean(r["seconds"][p] for r in runs) for p in TIME_PARTS}
        row["wall_minutes"] = sum(row["seconds"].values()) / 60
        row["gain_per_wall_minute"] = row["gain"] / row["wall_minutes"] if row["wall_minutes"] else float("nan")
        row["update_seconds_per_step"] = statistics.median(s["update"] for r in runs for s in r["steps"])
        row["trained_actions_per_step"] = statistics.mean(s["trained_actions"] for r in runs for s in r["steps"]
                                                          if s["trained_actions"] is not None)
        rows[m] = row
    full = rows.get("all") or rows.get(str(num_steps))
    for row in rows.values():  # against m = T, when the sweep has it
        row["action_share"] = row["trained_actions_per_step"] / full["trained_actions_per_step"] if full else None
        row["update_cost_vs_T"] = row["update_seconds_per_step"] / full["update_seconds_per_step"] if full else None
    return {"manifest": manifest, "eval_key": key, "rows": rows, "runs": by_m}


def _order(m: str) -> float:
    return float("inf") if m == "all" else float(m)


def write_plots(summary: dict, out: Path) -> list[str]:
    """The six PNGs of a sweep report; returns their file names."""
    runs, key = summary["runs"], summary["eval_key"]
    order = sorted(runs, key=_order)
    label = {m: f"m = {m}" for m in order}
    window = max(1, int(min(len(r["steps"]) for m in order for r in runs[m]) / 20))

    def curves(getter) -> dict:
        series = {}
        for m in order:
            x, y = _mean_curve([getter(r) for r in runs[m]])
            series[label[m]] = (x, y)
        return series

    reward = curves(lambda r: list(zip([s["step"] for s in r["steps"]],
                                       _smooth([s["reward"] for s in r["steps"]], window))))
    line_plot(reward, out / "reward_vs_step.png", title=f"trained reward (raw weighted sum, moving mean of {window})",
              xlabel="step", ylabel="reward")
    base = statistics.mean(row["base"] for row in summary["rows"].values())
    evals = curves(lambda r: [(e["step"], e["metrics"][key]) for e in r["evals"]])
    line_plot(evals, out / "eval_vs_step.png", title=f"{key} (dashed: base)", xlabel="step", ylabel=key, hline=base)
    # Wall time differs between seeds: each m's mean elapsed time at each of its evaluation steps.
    timed = {}
    for m in order:
        steps_x, values = evals[label[m]]
        x_time, minutes = _mean_curve([[(e["step"], e["elapsed_s"] / 60) for e in r["evals"]] for r in runs[m]])
        timed[label[m]] = (minutes, values) if x_time == steps_x else ([], [])
    line_plot(timed, out / "eval_vs_time.png", title=f"{key} vs wall time (dashed: base)", xlabel="wall minutes",
              ylabel=key, hline=base)
    kl = curves(lambda r: [(s["step"], s["kl"]) for s in r["steps"] if s["kl"] is not None])
    line_plot(kl, out / "kl_vs_step.png", title="KL to the base over prefix actions", xlabel="step", ylabel="KL")
    rows = [summary["rows"][m] for m in order]
    stacked_bars([label[m] for m in order], {p: [row["seconds"][p] for row in rows] for p in TIME_PARTS},
                 out / "time_split.png", title="time per run (mean over seeds)", ylabel="seconds")
    stacked_bars([label[m] for m in order], {"trained actions": [row["trained_actions_per_step"] for row in rows]},
                 out / "trained_actions.png", title="trained (prefix) actions per step", ylabel="actions")
    return ["reward_vs_step.png", "eval_vs_step.png", "eval_vs_time.png", "kl_vs_step.png", "time_split.png",
            "trained_actions.png"]


def _cell(value, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def format_table(summary: dict) -> str:
    header = ("| m | seeds | final [95% CI, pooled] | seed range | gain | wall min | gain / wall min | "
              "actions / step | share of actions | update s / step | update vs m = T |")
    lines = [header,
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in sorted(summary["rows"], key=_order):
        row = summary["rows"][m]
        ci = f" [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]" if "ci95" in row else ""
        lines.append(f"| {m} | {row['finished']}/{row['seeds']} | {row['final']:.3f}{ci} | {row['seed_range'][0]:.3f}–"
                     f"{row['seed_range'][1]:.3f} | {row['gain']:+.3f} | {row['wall_minutes']:.1f} | "
                     f"{row['gain_per_wall_minute']:+.4f} | {row['trained_actions_per_step']:.0f} | "
                     f"{_cell(row['action_share'])} | {row['update_seconds_per_step']:.3f} | "
                     f"{_cell(row['update_cost_vs_T'])} |")
    return "\n".join(lines)


def write_report(out: str | Path) -> str:
    """Write report.md, report.json and the plots for the sweep in `out`; return the Markdown table part."""
    out = Path(out)
    summary = summarize(out)
    plots = write_plots(summary, out)
    rows = summary["rows"]
    winner = max(rows, key=lambda m: rows[m]["gain_per_wall_minute"])
    manifest = summary["manifest"]
    about = (f"Overrides: `{' '.join(manifest['overrides']) or 'none'}`. Primary metric: `{summary['eval_key']}` "
             f"(base {statistics.mean(r['base'] for r in rows.values()):.3f}). Wall minutes are training plus "
             "evaluation time of one run (mean over seeds); the CI pools all seeds' samples.")
    best = (f"Best gain per wall-clock minute: **m = {winner}** ({rows[winner]['gain_per_wall_minute']:+.4f} "
            f"{summary['eval_key'].rsplit('/', 1)[-1]} per minute; gain {rows[winner]['gain']:+.3f} in "
            f"{rows[winner]['wall_minutes']:.1f} min).")
    lines = [f"# Sweep of `{manifest['config']}` (T = {manifest['num_steps']})", "", about, "",
             format_table(summary), "", best, ""]
    lines += [f"![{name}]({name})" for name in plots]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps({"eval_key": summary["eval_key"], "winner": winner, "rows": rows},
                                                indent=2) + "\n")
    return "\n".join(lines[4:7])
