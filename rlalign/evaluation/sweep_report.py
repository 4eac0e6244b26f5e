"""The report of a prefix-length sweep: report.md, report.json and PNG plots (docs/sweeps.md).

Everything is read back from the runs' metrics.jsonl, so a report can be rebuilt at any time
(`rlalign sweep ... --report-only`). Numbers per m are means over seeds; the final verifier
interval pools the samples of all seeds (a Wilson interval on Σ exact over Σ n), which measures
sampling noise, not seed-to-seed spread; the seed range is shown next to it for that.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from rlalign.evaluation.geneval import wilson_interval
from rlalign.evaluation.run_report import verifier_categories
from rlalign.utils.files import write_json_atomic, write_text_atomic
from rlalign.utils.metrics import read_metrics
from rlalign.utils.plots import interval_panels, line_plot, stacked_bars
from rlalign.utils.tables import markdown_table

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
    if not sets:
        raise ValueError("no run of the sweep has logged an evaluation yet (is prompts.eval empty, or did every run "
                         "stop before its first one?), so there is nothing to compare them by")
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
    evaluated = [run for runs in by_m.values() for run in runs if run["evals"]]  # one may not have evaluated yet
    name, metric = primary_metric(evaluated[0]["evals"] if evaluated else [])
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


def _pooled(finals: list[dict], prefix: str) -> dict | None:
    """One verifier group pooled over seeds: Σ exact / Σ n with its Wilson interval (None if not logged)."""
    if not finals or not all(f"{prefix}/exact" in f and f"{prefix}/samples" in f for f in finals):
        return None
    n = sum(int(f[f"{prefix}/samples"]) for f in finals)
    hits = round(sum(f[f"{prefix}/exact"] * f[f"{prefix}/samples"] for f in finals))
    return {"exact": hits / n, "ci95": list(wilson_interval(hits, n)), "samples": n}


def _pooled_overall(groups: dict[str, dict]) -> dict:
    """GenEval's overall (mean of the categories) of pooled categories, with the stratified normal interval."""
    exact = statistics.mean(g["exact"] for g in groups.values())
    half = 1.96 * math.sqrt(sum(g["exact"] * (1 - g["exact"]) / g["samples"] for g in groups.values())) / len(groups)
    return {"exact": exact, "ci95": [max(0.0, exact - half), min(1.0, exact + half)]}


def category_results(summary: dict) -> dict[str, dict]:
    """Per m: every verifier category (in the task's order) and overall, final and base, pooled over seeds (empty without them)."""
    name = summary["eval_key"].split("/")[1]
    results = {}
    for m, runs in summary["runs"].items():
        finals = [r["evals"][-1]["metrics"] for r in runs if r["evals"]]
        categories = verifier_categories(finals[0], name) if finals else []
        final = {c: _pooled(finals, f"eval/{name}/{c}") for c in categories}
        base = {c: _pooled(finals, f"eval/{name}/base/{c}") for c in categories}
        final = {c: g for c, g in final.items() if g is not None}
        base = {c: g for c, g in base.items() if g is not None}
        if not final or set(final) != set(base):
            continue
        final["overall"], base["overall"] = _pooled_overall(final), _pooled_overall(base)
        results[m] = {"final": final, "base": base}
    return results


def write_category_plot(results: dict[str, dict], out: Path) -> str:
    """gain_by_category.png: final exact per category (and overall) for each m, 95% intervals, base dashed."""
    order = sorted(results, key=_order)
    groups = list(results[order[0]]["final"])  # the task's categories, then overall
    panels = {group: {"x": [f"m={m}" if m != "all" else "all" for m in order],
                      "y": [results[m]["final"][group]["exact"] for m in order],
                      "low": [results[m]["final"][group]["ci95"][0] for m in order],
                      "high": [results[m]["final"][group]["ci95"][1] for m in order],
                      "base": statistics.mean(results[m]["base"][group]["exact"] for m in order)} for group in groups}
    interval_panels(panels, out / "gain_by_category.png", ylabel="exact",
                    title="final verifier exact match per category (95% intervals pooled over seeds; dashed: base)")
    return "gain_by_category.png"


def format_category_table(results: dict[str, dict]) -> str:
    groups = list(next(iter(results.values()))["final"])  # the task's categories, then overall
    base = next(iter(results.values()))["base"]
    rows = [["base", *(f"{base[g]['exact']:.3f}" for g in groups)]]
    for m in sorted(results, key=_order):
        final, start = results[m]["final"], results[m]["base"]
        rows.append([m, *(f"{final[g]['exact']:.3f} [{final[g]['ci95'][0]:.2f}, {final[g]['ci95'][1]:.2f}] "
                          f"({final[g]['exact'] - start[g]['exact']:+.3f})" for g in groups)])
    return markdown_table(["m", *groups], rows)


def prefix_verdict(summary: dict, results: dict[str, dict]) -> str:
    """Whether some m < T reaches the m = all result (within its interval) in ≤ 50% of its wall time."""
    rows, full_key = summary["rows"], "all" if "all" in summary["rows"] else str(summary["manifest"]["num_steps"])
    if full_key not in rows:
        return "The sweep has no m = all run, so no m can be compared with it."
    use_categories = full_key in results
    def final(m):  # GenEval overall when logged, else the primary metric
        return (results[m]["final"]["overall"]["exact"], results[m]["final"]["overall"]["ci95"]) if use_categories \
            else (rows[m]["final"], rows[m].get("ci95", [rows[m]["final"]] * 2))
    full_value, (low, high) = final(full_key)
    full_minutes = rows[full_key]["wall_minutes"]
    base = results[full_key]["base"]["overall"]["exact"] if use_categories else rows[full_key]["base"]
    # When m = all itself did not move the metric beyond its interval, "reaching" it means nothing.
    caveat = (f" But m = all's own result does not exceed the base ({base:.3f}) beyond its interval, so this "
              "comparison cannot tell the m apart." if base >= low else "")
    winners = [m for m in sorted(rows, key=_order) if m != full_key and _order(m) < summary["manifest"]["num_steps"]
               and final(m)[0] >= low and rows[m]["wall_minutes"] <= 0.5 * full_minutes]
    what = "overall" if use_categories else summary["eval_key"]
    if not winners:
        return (f"No m < T reaches the m = all result ({what} {full_value:.3f} [{low:.3f}, {high:.3f}]) within its "
                f"interval in at most half of its {full_minutes:.1f} wall minutes.{caveat}")
    m = winners[0]
    return (f"Yes: m = {m} reaches {what} {final(m)[0]:.3f}, within the m = all interval [{low:.3f}, {high:.3f}] "
            f"(m = all: {full_value:.3f}), in {rows[m]['wall_minutes']:.1f} wall minutes, "
            f"{rows[m]['wall_minutes'] / full_minutes:.0%} of m = all's {full_minutes:.1f}.{caveat}")


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
    header = ["m", "seeds", "final [95% CI, pooled]", "seed range", "gain", "wall min", "gain / wall min",
              "actions / step", "share of actions", "update s / step", "update vs m = T"]
    rows = []
    for m in sorted(summary["rows"], key=_order):
        row = summary["rows"][m]
        ci = f" [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]" if "ci95" in row else ""
        rows.append([m, f"{row['finished']}/{row['seeds']}", f"{row['final']:.3f}{ci}",
                     f"{row['seed_range'][0]:.3f}–{row['seed_range'][1]:.3f}", f"{row['gain']:+.3f}",
                     f"{row['wall_minutes']:.1f}", f"{row['gain_per_wall_minute']:+.4f}",
                     f"{row['trained_actions_per_step']:.0f}", _cell(row["action_share"]),
                     f"{row['update_seconds_per_step']:.3f}", _cell(row["update_cost_vs_T"])])
    return markdown_table(header, rows)


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
    results = category_results(summary)
    verdict = prefix_verdict(summary, results)
    lines = [f"# Sweep of `{manifest['config']}` (T = {manifest['num_steps']})", "", about, "",
             format_table(summary), "", best, "", verdict, ""]
    if results:
        plots.append(write_category_plot(results, out))
        lines += ["## Per category (final exact [95% CI pooled over seeds] (gain over base))", "",
                  format_category_table(results), ""]
    lines += [f"![{name}]({name})" for name in plots]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    write_json_atomic(out / "report.json", {"eval_key": summary["eval_key"], "winner": winner, "rows": rows,
                                           "categories": results, "verdict": verdict})
    return "\n".join(lines[4:7])
