"""Sampling a policy on fixed prompts and judging the samples with their task's verifier.

Shared by `rlalign sample`, `rlalign eval`, the trainer's evaluations and the pretraining reports,
so every number that says "exact match" is computed the same way: B = prompts × samples draws,
each from its own seeded generator (rlalign.utils.seeding), judged by the verifier of the task the
prompts' source belongs to (rlalign.tasks: the Shapes verifier for Shapes prompts and scenes, the
Sums verifier for Sums rows, a user's own task's judge for theirs), in that task's categories.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch

from rlalign.policies import StepPolicy
from rlalign.tasks import Task
from rlalign.utils.files import write_json_atomic
from rlalign.utils.grids import save_grid
from rlalign.utils.rows import prompt_text
from rlalign.utils.seeding import grouped_generators


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound even near 0 and 1).

    Samples of one prompt are treated as independent draws from the prompt mixture; for a fixed
    prompt list this over-states the variance (a stratified interval would be narrower), so the
    interval is conservative.
    """
    if trials == 0:
        return (math.nan, math.nan)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def pair_agreement(reward_PG, target_PG) -> tuple[float, int]:
    """Among same-prompt sample pairs whose target (e.g. the verifier) differs, the share that the
    reward orders the same way (what GRPO's group advantages compare), and how many such pairs.
    Both arguments are [P prompts, G samples] arrays."""
    agree = pairs = 0
    samples = len(reward_PG[0]) if len(reward_PG) else 0
    for reward_G, target_G in zip(reward_PG, target_PG):
        for i in range(samples):
            for j in range(i + 1, samples):
                if target_G[i] != target_G[j]:
                    pairs += 1
                    agree += (reward_G[i] - reward_G[j]) * (target_G[i] - target_G[j]) > 0
    return agree / max(pairs, 1), pairs


@torch.no_grad()
def generate(policy: StepPolicy, prompts: Sequence, *, samples_per_prompt: int, seed: int, prefix_steps="all",
             adapter: bool = True, batch_size: int = 64, purpose: str = "eval", step: int = 0):
    """Images [P·S, 3, H, W] (or texts) and the matching repeated prompts, prompt-major.

    Sample s of prompt p uses seed (seed, purpose, step, p, s), so base and adapter evaluations
    with the same seed share their random numbers, and batch size never changes a sample.
    With `adapter=False` every step runs on the base model.
    """
    repeated = [prompt for prompt in prompts for _ in range(samples_per_prompt)]
    generators = grouped_generators(seed, purpose, step, len(prompts), samples_per_prompt)
    outputs = []
    with nullcontext() if adapter else policy.adapter_disabled():
        for start in range(0, len(repeated), batch_size):
            rollout = policy.rollout(repeated[start : start + batch_size], prefix_steps,
                                     generator=generators[start : start + batch_size])
            outputs.append(rollout.outputs)
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat(outputs), repeated
    return [text for chunk in outputs for text in chunk], repeated


def task_report(task: Task, prompts: Sequence, outputs) -> dict:
    """GenEval-style report of the samples by the task's verifier, in the task's categories (see
    `category_report`); `outputs` is an image batch or a list of texts, one per prompt."""
    verdicts, categories = task.verdicts(prompts, outputs)
    return category_report(verdicts, categories, order=task.categories)


def category_report(verdicts: list, categories: list[str], order: Sequence[str]) -> dict:
    """`overall` first, then one row per category present, in `order` (the task's).

    As in GenEval, `overall` is the unweighted mean of the categories present, not of the samples;
    its interval is the normal interval of that mean of independent proportions (each category's
    binomial variance p(1-p)/n, divided by the squared number of categories). `samples` counts
    every judged sample, and `sample_mean` is the plain mean over them.
    """
    rows = {}
    for category in order:
        chosen = [v for c, v in zip(categories, verdicts) if c == category]
        if chosen:
            rows[category] = _summary(chosen)
    count = len(rows)
    exact = sum(row["exact"] for row in rows.values()) / count
    half = 1.96 * math.sqrt(sum(r["exact"] * (1 - r["exact"]) / r["samples"] for r in rows.values())) / count
    overall = {"exact": exact, "exact_ci95": [max(0.0, exact - half), min(1.0, exact + half)],
               "score": sum(row["score"] for row in rows.values()) / count, "samples": len(verdicts),
               "sample_mean": sum(v.exact for v in verdicts) / len(verdicts)}
    return {"overall": overall, **rows}


def _summary(verdicts: list) -> dict:
    exact = sum(v.exact for v in verdicts)
    low, high = wilson_interval(exact, len(verdicts))
    return {"exact": exact / len(verdicts), "exact_ci95": [low, high],
            "score": sum(v.score for v in verdicts) / len(verdicts), "samples": len(verdicts)}


def format_report(report: dict, title: str = "") -> str:
    """One line per group: exact [CI] score (n)."""
    lines = [title] if title else []
    for group, row in report.items():
        low, high = row["exact_ci95"]
        lines.append(f"  {group:<12} exact {row['exact']:.3f} [{low:.3f}, {high:.3f}]  "
                     f"score {row['score']:.3f}  (n={row['samples']})")
    return "\n".join(lines)


def score_samples(worker, prompts: list, outputs, task: Task | None = None, metadata: dict | None = None) -> dict:
    """Every reward of an evaluation worker (rlalign.rewards.worker.RewardWorker) on the samples, as means,
    plus the task's verifier report when the prompts have a task."""
    result = worker.score(prompts, outputs, dict(metadata or {}))
    scores = {label: stats["mean"] for label, stats in result.stats.items()}
    return {"rewards": scores, "verifier": task_report(task, prompts, outputs) if task is not None else None}


def flat_eval_metrics(name: str, scores: dict, prefix: str = "eval") -> dict[str, float]:
    """eval/<set>/<reward> means, eval/<set>/exact[_ci95_low|high] (GenEval overall), the same per
    category (eval/<set>/<category>/exact[_ci95_low|high]) and
    eval/<set>/samples (how many samples the verifier judged)."""
    metrics = {f"{prefix}/{name}/{label}": value for label, value in scores["rewards"].items()}
    if scores["verifier"]:
        for group, row in scores["verifier"].items():
            key = f"{prefix}/{name}/exact" if group == "overall" else f"{prefix}/{name}/{group}/exact"
            metrics[key] = row["exact"]
            metrics[key + "_ci95_low"], metrics[key + "_ci95_high"] = row["exact_ci95"]
            base = f"{prefix}/{name}" if group == "overall" else f"{prefix}/{name}/{group}"
            metrics[f"{base}/samples"] = row["samples"]  # n behind the interval
    return metrics


def _rows(outputs, index: torch.Tensor):
    """Rows `index` of an image batch or of a list of texts."""
    return outputs[index] if isinstance(outputs, torch.Tensor) else [outputs[i] for i in index.tolist()]


def grid_rows(num_prompts: int, count: int) -> torch.Tensor:
    """Indices of `count` prompts spread evenly over a list of `num_prompts` (all of them if fewer)."""
    if num_prompts <= count:
        return torch.arange(num_prompts)
    return torch.arange(count) * num_prompts // count


def evaluate_sets(policy: StepPolicy, eval_sets: dict[str, list], worker, *, samples_per_prompt: int, seed: int,
                  prefix_steps, grid_dir, step: int, base_cache: dict, grid_prompts: int = 8,
                  batch_size: int = 64, tasks: dict[str, Task | None] | None = None,
                  metadata: dict | None = None) -> dict[str, float]:
    """Evaluate the adapter (prefix m) and the base on every eval set; save a base-over-current grid
    (`grid_dir/step_<step>_<set>.png`), or for texts those prompts' samples (`.json`, see `saved_samples`).

    `tasks` gives each set's task (rlalign.tasks.source_task of its source); a set without one gets
    reward means only. `metadata` (e.g. `trainer_state`) reaches every reward call.

    `base_cache` keeps the base model's scores and grid images per set (the base never changes, so it
    is sampled once per run). Base and adapter samples share their seeds, so the comparison is paired.
    Returns eval/<set>/... and eval/<set>/base/... metrics.
    """
    metrics: dict[str, float] = {}
    for name, prompts in eval_sets.items():
        # Grid columns: prompts spread evenly over the list (so a list sorted by category, as the Shapes
        # lists are, shows each category), the first sample of each.
        shown_P = grid_rows(len(prompts), grid_prompts)
        first_samples_P = shown_P * samples_per_prompt
        images, repeated = generate(policy, prompts, samples_per_prompt=samples_per_prompt, seed=seed,
                                    prefix_steps=prefix_steps, batch_size=batch_size)
        task = (tasks or {}).get(name)
        current = score_samples(worker, repeated, images, task, metadata)
        if name not in base_cache:
            base_images, _ = generate(policy, prompts, samples_per_prompt=samples_per_prompt, seed=seed, adapter=False,
                                      batch_size=batch_size)
            base_cache[name] = {"scores": score_samples(worker, repeated, base_images, task, metadata),
                                "images": _rows(base_images, first_samples_P)}
        metrics.update(flat_eval_metrics(name, current))
        metrics.update(flat_eval_metrics(f"{name}/base", base_cache[name]["scores"]))
        if isinstance(images, torch.Tensor):
            shown = images[first_samples_P]
            labels = [f"base: {prompts[i]}" for i in shown_P] + [f"step {step}: {prompts[i]}" for i in shown_P]
            save_grid(torch.cat([base_cache[name]["images"], shown]), labels,
                      Path(grid_dir) / f"step_{step:06d}_{name}.png", columns=len(shown))
        else:  # texts: the same prompts' (prompt, base, adapter) samples, as JSON
            shown = zip(shown_P.tolist(), base_cache[name]["images"], _rows(images, first_samples_P))
            write_json_atomic(Path(grid_dir) / f"step_{step:06d}_{name}.json",
                              [{"prompt": _shown_prompt(prompts[i]), "base": base, "adapter": adapter}
                               for i, base, adapter in shown])
    return metrics


def saved_samples(grid_dir, step: int, names) -> tuple[dict[str, Path], dict[str, tuple[list[str], list[list]]]]:
    """What `evaluate_sets` saved at `step`, per eval set: its grid (PNG path) or its text samples as
    (columns, rows) with columns prompt, base, adapter."""
    images, tables = {}, {}
    for name in names:
        stem = Path(grid_dir) / f"step_{step:06d}_{name}"
        if Path(f"{stem}.png").is_file():
            images[name] = Path(f"{stem}.png")
        elif Path(f"{stem}.json").is_file():
            records = json.loads(Path(f"{stem}.json").read_text(encoding="utf-8"))
            columns = ["prompt", "base", "adapter"]
            tables[name] = (columns, [[str(record[c]) for c in columns] for record in records])
    return images, tables


def _shown_prompt(prompt) -> str:
    """A prompt as text: a row's "prompt", a scene's description (captioning), anything else as str."""
    text = prompt_text(prompt)
    return text if isinstance(text, str) else str(getattr(text, "prompt", text))
