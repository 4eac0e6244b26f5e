"""How much of the final reward does each generation step decide? (`rlalign probe`, docs/sweeps.md)

For a prompt, draw N prefixes of t steps from the base model, then finish each one K times with
the frozen suffix (`policy.complete`). With R the final reward of one sample,

    within     = mean over prefixes of Var_k(R | prefix)  (estimates E[Var(R | s_t)]: what the suffix decides)
    between    = Var_prefix(mean_k R) − within / K        (estimates Var(E[R | s_t]): what the prefix decides)
    share(t)   = between / (between + within)             per prompt, then averaged over prompts

(unbiased variances; between + within estimates Var(R) by the law of total variance, and the
between estimate is clamped at 0, so share lies in [0, 1]).

share(t) is the fraction of the reward's variance that the first t steps fix. A prefix-only
policy (steps ≤ m trained, the rest frozen) can only move what the prefix decides, so the
smallest m with share(m) ≥ a chosen level (0.5 by default) is a cheap first guess for m. The
best-prefix mean (mean over prompts of max over prefixes of mean_k R) says roughly how high a
policy that always picked the best of N prefixes would get. share(T) = 1 by construction: the
whole trajectory fixes the sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rlalign.policies import StepPolicy
from rlalign.utils.progress import Progress
from rlalign.utils.seeding import grouped_generators

ScoreFn = Callable[[list, object], dict[str, list[float]]]
"""(repeated prompts, outputs) -> {metric name: one value per output}."""


@dataclass(frozen=True)
class ProbeSizes:
    prefixes: int = 8  # N prefixes per prompt
    completions: int = 8  # K frozen-suffix completions per prefix
    seed: int = 0


def variance_shares(x_PNK: torch.Tensor) -> dict[str, float]:
    """Share of Var(R) fixed by the prefix, from rewards [P prompts, N prefixes, K completions].

    Prompts whose samples all score the same (total variance 0) carry no information and are left
    out of the share; `prompts_with_variance` says how many remained.
    """
    _, n, k = x_PNK.shape
    if n < 2:
        raise ValueError(f"the probe needs ≥ 2 prefixes per prompt to compare them, got {n}")
    within_P = x_PNK.var(2, unbiased=True).mean(1) if k > 1 else torch.zeros(x_PNK.shape[0], dtype=x_PNK.dtype)
    between_P = (x_PNK.mean(2).var(1, unbiased=True) - within_P / k).clamp_min(0)
    total_P = between_P + within_P
    informative_P = total_P > 1e-12
    share = (between_P[informative_P] / total_P[informative_P]).mean() if informative_P.any() else None
    return {"mean": float(x_PNK.mean()),
            "share_decided": float("nan") if share is None else float(share),
            "best_prefix_mean": float(x_PNK.mean(2).max(1).values.mean()),
            "prompts_with_variance": int(informative_P.sum())}


def branch(policy: StepPolicy, prompts: Sequence, steps: int, sizes: ProbeSizes):
    """N base-model prefixes of `steps` steps per prompt, each finished K times by the frozen suffix.

    Returns (outputs, repeated prompts) ordered prompt-major, then prefix, then completion.
    """
    n, k = sizes.prefixes, sizes.completions
    repeated = [p for p in prompts for _ in range(n)]
    with policy.adapter_disabled():
        rollout = policy.rollout(repeated, steps, generator=grouped_generators(sizes.seed, "probe", steps, len(prompts), n))
        outputs, finished, _ = policy.complete(
            rollout, k, generator=grouped_generators(sizes.seed, "probe", 1000 + steps, len(repeated), k))
    return outputs, finished


def probe_steps(policy: StepPolicy, prompts: Sequence, score: ScoreFn, steps: Sequence[int],
                sizes: ProbeSizes = ProbeSizes(), log: Callable[[str], None] | None = None) -> list[dict]:
    """One row per (step t, metric): mean, share_decided, best_prefix_mean."""
    rows = []
    for t in steps:
        outputs, finished = branch(policy, prompts, t, sizes)
        for metric, values in score(finished, outputs).items():
            x_PNK = torch.tensor(values, dtype=torch.float64).view(len(prompts), sizes.prefixes, sizes.completions)
            rows.append({"step": t, "metric": metric, **variance_shares(x_PNK)})
        if log:
            log(f"step {t}: " + ", ".join(
                f"{r['metric']} share {r['share_decided']:.3f}" for r in rows if r["step"] == t))
    return rows


def suggest_prefix_steps(rows: list[dict], metric: str, level: float) -> int | None:
    """The smallest probed t whose share of `metric` reaches `level` (None if none does)."""
    for row in sorted((r for r in rows if r["metric"] == metric), key=lambda r: r["step"]):
        if row["share_decided"] >= level:
            return row["step"]
    return None


# -------------------------------------------------------------------------------------------------
# `rlalign probe CONFIG`: the config's policy, prompts and rewards
# -------------------------------------------------------------------------------------------------


def config_scores(cfg, tokenizer=None, task=None) -> ScoreFn:
    """Every reward of the config (trained and eval, raw), `reward` (the weighted sum of the raw
    trained rewards: the combined reward before any batch normalisation) and, when the probed prompts
    have a task (rlalign.tasks), its verifier's `exact` match."""
    from rlalign.rewards.worker import RewardWorker

    worker = RewardWorker(cfg.rewards.functions + cfg.rewards.eval, combine=None, tokenizer=tokenizer)
    trained = {spec.label or spec.name: spec.weight for spec in cfg.rewards.functions}

    def score(prompts: list, outputs) -> dict[str, list[float]]:
        per_reward = worker.score(prompts, outputs).per_reward
        values = {"reward": sum(weight * per_reward[label] for label, weight in trained.items()).tolist()}
        values.update({label: v.tolist() for label, v in per_reward.items()})
        if task is not None:
            values["exact"] = [float(verdict.exact) for verdict in task.verdicts(prompts, outputs)[0]]
        return values

    return score


def run_probe(config: str, overrides: list[str], *, prompts: str | None, count: int, sizes: ProbeSizes,
              steps: str, level: float, out: str) -> str:
    """Probe the config's base policy; writes probe.json, probe.md and probe.png under `out`."""
    from pathlib import Path

    from rlalign.config import load_config
    from rlalign.evaluation.geneval import grid_rows
    from rlalign.policies import load_policy, parse_prefix_steps, resolve_prefix_steps
    from rlalign.tasks import parse_prompt_source, source_task
    from rlalign.utils.files import write_json_atomic, write_text_atomic
    from rlalign.utils.plots import line_plot
    from rlalign.utils.tables import records_table
    from rlalign.utils.timing import machine_info

    if count < 1:  # the sizes first: a bad one is named before the model loads
        raise ValueError(f"--count must be ≥ 1, got {count}")
    if not 0 < level <= 1:
        raise ValueError(f"--share is a share of the final decision in (0, 1] (e.g. 0.5), got {level:g}")
    if sizes.prefixes < 2:  # variance_shares says so too, but only after sampling; 0 fails inside the model
        raise ValueError(f"--prefixes must be ≥ 2 (the probe compares prefixes of one prompt), got {sizes.prefixes}")
    if sizes.completions < 1:
        raise ValueError(f"--completions must be ≥ 1 (frozen-suffix completions per prefix), got {sizes.completions}")
    cfg = load_config(config, overrides)
    policy = load_policy(cfg.policy)
    source = prompts or next(iter(cfg.prompts.eval.values()), cfg.prompts.train)
    parsed = parse_prompt_source(source, cfg.prompts.task)
    listed = parsed.all()
    chosen = [listed[i] for i in grid_rows(len(listed), count).tolist()]  # spread over the list
    probed = (list(range(1, policy.num_steps + 1)) if steps == "all"
              else [resolve_prefix_steps(v, policy.num_steps) for v in parse_prefix_steps(steps, policy.num_steps, "--steps")])
    progress = Progress(len(probed), "[rlalign probe] steps probed")
    try:
        scores = config_scores(cfg, policy.completion_tokenizer(), source_task(parsed))
        rows = probe_steps(policy, chosen, scores, probed, sizes,
                           log=progress.update)
    finally:
        progress.close()
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    suggestion = {metric: suggest_prefix_steps(rows, metric, level) for metric in metrics}
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    series = {metric: ([r["step"] for r in rows if r["metric"] == metric],
                       [r["share_decided"] for r in rows if r["metric"] == metric]) for metric in metrics}
    line_plot(series, directory / "probe.png", title=f"share of Var(R) fixed by the first t steps (T = "
              f"{policy.num_steps})", xlabel="step t", ylabel="Var(E[R | s_t]) / Var(R)", hline=level)
    table = records_table(rows, ["step", "metric", "mean", "share_decided", "best_prefix_mean", "prompts_with_variance"])
    about = (f"{len(chosen)} prompts from `{source}`, {sizes.prefixes} prefixes × {sizes.completions} frozen "
             f"completions per prompt and step, seed {sizes.seed}; base model (adapter off).")
    lines = [f"# Probe: {config}", "", about, "", table, "",
             f"Smallest m whose share reaches {level}: " + ", ".join(f"{k} → {v}" for k, v in suggestion.items()),
             "", "![share per step](probe.png)"]
    write_text_atomic(directory / "probe.md", "\n".join(lines) + "\n")
    write_json_atomic(directory / "probe.json", (
        {"config": config, "overrides": overrides, "prompts": source, "count": len(chosen),
         "sizes": dataclasses.asdict(sizes), "level": level,
         "suggested_prefix_steps": suggestion, "rows": rows, "machine": machine_info()}))
    return "\n".join(lines[4:-2]) + f"\n(wrote {directory}/probe.md, probe.json, probe.png)"

