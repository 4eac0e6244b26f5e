"""End-of-run summary: base vs final on the eval sets, trained reward, KL, time split, before/after PNG."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from rlalign.utils.files import atomic_path, write_json_atomic, write_text_atomic
from rlalign.utils.metrics import read_metrics
from rlalign.utils.tables import markdown_table


def verifier_categories(record: dict, name: str) -> list[str]:
    """The verifier categories of eval set `name` in a metrics record, in the order they were logged (the
    task's order: flat_eval_metrics writes them so): every `eval/<name>/<category>/exact` key."""
    prefix, categories = f"eval/{name}/", []
    for key in record:
        middle = key.removeprefix(prefix).removesuffix("/exact")
        if key.startswith(prefix) and key.endswith("/exact") and "/" not in middle and middle not in ("base", ""):
            categories.append(middle)
    return categories


def _final_eval(records: list[dict]) -> dict:
    evals = [r for r in records if any(k.startswith("eval/") for k in r)]
    return evals[-1] if evals else {}


def summarize_run(output_dir: str | Path) -> tuple[str, dict]:
    """A Markdown summary of a finished run (read back from metrics.jsonl) and the same numbers as a dict."""
    output_dir = Path(output_dir)
    records = read_metrics(output_dir / "metrics.jsonl")
    steps = [r for r in records if "time/step" in r]
    final = _final_eval(records)
    sets = sorted({k.split("/")[1] for k in final if k.startswith("eval/") and k.count("/") >= 2} - {"base"})
    lines: list[str] = []
    numbers: dict = {"eval": {}, "geneval": {}}
    for name in sets:
        table, numbers["geneval"][name] = geneval_table(final, name)
        lines += table
    if not sets:
        lines.append("no evaluation: prompts.eval names no sets, so base vs final was not measured "
                     "(rlalign eval CONFIG --adapter RUN/checkpoints/step_N/adapter measures it afterwards)")
    else:
        lines += ["| eval set | metric | base | final | change |", "|---|---|---|---|---|"]
    for name in sets:
        judged = (*verifier_categories(final, name), "exact")  # in the GenEval-style table above
        for key in sorted(k for k in final if k.startswith(f"eval/{name}/") and "/base/" not in k
                          and not k.endswith(("_ci95_low", "_ci95_high", "/samples"))
                          and k.removeprefix(f"eval/{name}/").split("/")[0] not in judged):
            metric = key.removeprefix(f"eval/{name}/")
            base = final.get(f"eval/{name}/base/{metric}")
            value = final[key]
            if base is None or value is None:
                continue
            ci = _ci(final, f"eval/{name}/base/{metric}"), _ci(final, key)
            lines.append(f"| {name} | {metric} | {base:.3f}{ci[0]} | {value:.3f}{ci[1]} | {value - base:+.3f} |")
            numbers["eval"][f"{name}/{metric}"] = {"base": base, "final": value}
    labels = sorted({k.split("/")[1] for r in steps for k in r
                     if k.startswith("rewards/") and k.endswith("/mean") and k != "rewards/total/mean"})
    kls = [r.get("charts/kl") for r in steps if r.get("charts/kl") is not None]
    on_policy = [r.get("debug/max_abs_logratio_first_iter") or 0.0 for r in steps]
    times = {part: sum(r.get(f"time/{part}") or 0.0 for r in steps) for part in ("rollout", "reward", "update", "sync")}
    times["eval"] = sum(r.get("time/eval") or 0.0 for r in records)
    window = max(1, len(steps) // 10)
    trained = {}
    for label in labels:  # raw per-reward means: the total is ~0 by construction under normalize_then_sum
        values = [r[f"rewards/{label}/mean"] for r in steps if r.get(f"rewards/{label}/mean") is not None]
        if values:
            trained[label] = {"first": statistics.mean(values[:window]), "last": statistics.mean(values[-window:])}
    numbers.update({
        "steps": len(steps),
        "trained_rewards": trained,
        "kl_last": kls[-1] if kls else None,
        "max_on_policy_logratio": max(on_policy) if on_policy else None,
        "seconds": times,
    })
    rewards_text = "; ".join(f"{label} {v['first']:.4f} → {v['last']:.4f}" for label, v in trained.items())
    lines += ["", f"steps: {len(steps)}; trained rewards (mean of the first → last {window} steps): "
              f"{rewards_text or 'n/a'}; KL to base at the end: {_fmt(numbers['kl_last'], '.2e')}; "
              f"largest on-policy |logp − old_logp|: {_fmt(numbers['max_on_policy_logratio'], '.1e')}",
              "time split (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())]
    return "\n".join(lines), numbers


def geneval_table(record: dict, name: str) -> tuple[list[str], dict]:
    """The GenEval-style table of one eval set: verifier exact match per category and overall,
    base vs final with 95% intervals (Markdown lines, empty without verifier metrics) and its numbers."""
    rows = [(c, f"eval/{name}/{c}/exact") for c in verifier_categories(record, name)] + [("overall", f"eval/{name}/exact")]
    rows = [(label, key) for label, key in rows if key in record and record[key] is not None]
    if not rows:
        return [], {}
    lines = [f"### {name}: verifier exact match (GenEval-style; overall = mean of the categories; 95% intervals)",
             ""]
    cells, numbers = [], {}
    for label, key in rows:
        base_key = key.replace(f"eval/{name}/", f"eval/{name}/base/", 1)
        base, value = record.get(base_key), record[key]
        samples = record.get(key.removesuffix("/exact") + "/samples" if label != "overall" else f"eval/{name}/samples")
        samples = None if samples is None else int(samples)  # metrics.jsonl stores numbers as floats
        bold = "**" if label == "overall" else ""
        cells.append([f"{bold}{label}{bold}", samples, f"{base:.3f}{_ci(record, base_key)}",
                      f"{bold}{value:.3f}{bold}{_ci(record, key)}", f"{value - base:+.3f}"])
        numbers[label] = {"base": base, "base_ci95": _bounds(record, base_key), "final": value,
                          "final_ci95": _bounds(record, key), "samples": samples}
    return lines + [markdown_table(["category", "samples", "base", "final", "change"], cells), ""], numbers


def _bounds(record: dict, key: str) -> list | None:
    low, high = record.get(key + "_ci95_low"), record.get(key + "_ci95_high")
    return None if low is None or high is None else [low, high]


def _ci(record: dict, key: str) -> str:
    low, high = record.get(key + "_ci95_low"), record.get(key + "_ci95_high")
    return f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""


def _fmt(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def write_summary(output_dir: str | Path) -> tuple[str, list[str]]:
    """Write summary.md / summary.json and before_after.png (the last eval grid, when there is one);
    return the Markdown and the names of the files written."""
    output_dir = Path(output_dir)
    text, numbers = summarize_run(output_dir)
    write_text_atomic(output_dir / "summary.md", text + "\n")
    write_json_atomic(output_dir / "summary.json", numbers)
    written = ["summary.md", "summary.json"]
    grids = sorted((output_dir / "samples").glob("step_*_heldout.png")) or sorted((output_dir / "samples").glob("*.png"))
    if grids:
        with atomic_path(output_dir / "before_after.png") as partial:
            shutil.copyfile(grids[-1], partial)
        written.append("before_after.png")
    return text, written
