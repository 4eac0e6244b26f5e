"""`rlalign sweep`: one training run per (prefix length m, seed), then a report (docs/sweeps.md).

Every run is the config with only `grpo.prefix_steps`, `seed` and `output_dir` changed, so runs of
the same seed draw the same training prompts at every step and the same evaluation randomness
(per-sample seeds, rlalign.utils.seeding): differences between m are paired, not luck of the draw.
Runs go one after another in this process, or `--parallel N` at a time as Ray tasks (local
rollouts only: a run's own Ray actors would compete with its siblings for the same CPUs).

A sweep directory is resumable: a run whose summary.json exists is kept as it is, a run that
stopped part way continues from its latest checkpoint, so a re-launched sweep only does what is
missing and never overwrites finished work. A finished run is kept only if it was trained with the
settings asked for now: a re-launch with other settings (a changed override) is refused before
anything runs, naming each run and setting, unless `--rerun-changed` is given, which moves such runs
aside (`<run>.superseded-<time>`, never deleted) and trains them again. A run that stopped part way
is resumed under the same rule as `rlalign train --resume` (a changed setting is refused).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from rlalign.config import Config, load_config, yaml12
from rlalign.policies import load_policy, parse_prefix_steps, resolved_config
from rlalign.utils.files import write_json_atomic
from rlalign.utils.progress import Progress
from rlalign.utils.stops import RunStopped


@dataclass(frozen=True)
class SweepRun:
    prefix_steps: int | str  # m, or "all"
    seed: int
    output_dir: str

    @property
    def name(self) -> str:
        return Path(self.output_dir).name


def plan(cfg: Config, prefix_steps: list[int | str], seeds: int, out: str | Path) -> list[SweepRun]:
    """Runs in order m-major; seeds are cfg.seed, cfg.seed + 1, ..."""
    if seeds < 1:
        raise ValueError(f"--seeds must be ≥ 1, got {seeds}")
    return [SweepRun(m, cfg.seed + i, str(Path(out) / f"m{m}-seed{cfg.seed + i}"))
            for m in prefix_steps for i in range(seeds)]


def run_config(config: str | dict, overrides: list[str], run: SweepRun) -> Config:
    return load_config(config, [*overrides, f"grpo.prefix_steps={run.prefix_steps}", f"seed={run.seed}",
                                f"output_dir={run.output_dir}"])


def stale_members(runs: list[SweepRun], resolved: list[dict]) -> dict[str, dict]:
    """Finished runs (summary.json) whose newest checkpoint's config differs from the one asked for now:
    run name -> {setting: (then, now)}."""
    from rlalign.training.resume import config_changes

    stale = {}
    for run, values in zip(runs, resolved):
        directory = Path(run.output_dir)
        latest = directory / "checkpoints" / "latest"
        if not (directory / "summary.json").is_file() or not latest.is_file():
            continue
        saved = yaml12.load((directory / "checkpoints" / latest.read_text().strip() / "config.yaml").read_text())
        changes = config_changes(saved or {}, values)
        if changes:
            stale[run.name] = changes
    return stale


def _set_aside(directory: Path) -> Path:
    moved = directory.with_name(f"{directory.name}.superseded-{time.strftime('%Y%m%d-%H%M%S')}")
    directory.rename(moved)
    return moved


def train_run(values: dict, torch_threads: int = 0) -> str:
    """Train one run from its resolved config (a plain dict, so it travels to Ray) and summarise it;
    finished runs are skipped and interrupted ones resumed. Returns what was done."""
    import torch

    from rlalign.evaluation.run_report import write_summary
    from rlalign.training.trainer import train

    if torch_threads:
        torch.set_num_threads(torch_threads)
    cfg = load_config(values, [])
    directory = Path(cfg.output_dir)
    if (directory / "summary.json").is_file():
        return f"{directory.name}: finished earlier, kept"
    resume = str(directory) if (directory / "checkpoints").is_dir() and any((directory / "checkpoints").iterdir()) else None
    if resume is None and (directory / "metrics.jsonl").is_file():
        raise FileExistsError(f"sweep run {directory} stopped before its first checkpoint, so it cannot be resumed; "
                              "delete that directory to redo the run (a sweep never deletes runs)")
    started = time.perf_counter()
    try:
        train(cfg, resume=resume)
    except RunStopped as stopped:  # its advice names the member's --resume; the sweep's own way on is simpler
        raise RunStopped(f"sweep run {directory.name}: {stopped}\nIn a sweep, run the same `rlalign sweep` command "
                         "again instead: finished runs are kept, and this one resumes from its newest checkpoint if "
                         "it saved one") from stopped
    write_summary(directory)
    return f"{directory.name}: {'resumed and ' if resume else ''}trained in {time.perf_counter() - started:.0f} s"


def run_sweep(config: str, overrides: list[str], *, prefix_steps: str, seeds: int, out: str,
              parallel: int = 1, rerun_changed: bool = False) -> str:
    """Train every (m, seed) run of the sweep under `out`, then write out/report.md; returns a summary.
    Finished runs trained with other settings are refused, or with `rerun_changed` set aside and redone."""
    from rlalign.utils.files import user_path
    from rlalign.utils.run_lock import RunLock

    out = user_path(out, "--out")  # the lock, sweep.json and the report where the members train
    base = load_config(config, overrides)
    if not base.prompts.eval:  # the report compares the runs' final evaluations; without any it has nothing
        raise ValueError("a sweep compares its runs by their evaluations, and prompts.eval is empty; give it an eval "
                         "set (e.g. prompts.eval={heldout: \"shapes-eval:heldout\"}), before anything is trained")
    num_steps = load_policy(base.policy).num_steps
    runs = plan(base, parse_prefix_steps(prefix_steps, num_steps), seeds, out)
    # One sweep per directory at a time: a second one would rewrite sweep.json under the first, whose report
    # would then list the second's runs only (each member run has its own lock besides).
    lock = RunLock(out, setting="--out")
    try:
        return _train_and_report(config, overrides, base, num_steps, runs, out, parallel=parallel,
                                 rerun_changed=rerun_changed)
    finally:
        lock.release()


def _train_and_report(config: str, overrides: list[str], base: Config, num_steps: int, runs: list[SweepRun],
                      out: str, *, parallel: int, rerun_changed: bool) -> str:
    """run_sweep's work once it holds the sweep directory's lock."""
    from rlalign.evaluation.sweep_report import write_report

    resolved = [resolved_config(run_config(config, overrides, run)) for run in runs]
    stale = stale_members(runs, resolved)
    if stale and not rerun_changed:
        lines = [f"  {name}: " + "; ".join(f"{key} {old!r} → {new!r}" for key, (old, new) in changes.items())
                 for name, changes in stale.items()]
        raise ValueError(f"sweep {out} holds finished runs trained with other settings than asked for now:\n"
                         + "\n".join(lines) + "\nKeep them (re-launch with their settings), use another --out, or "
                         "train them again with --rerun-changed (the old runs are moved aside, not deleted)")
    for name in stale:
        print(f"[rlalign sweep] {name}: trained with other settings; moved to {_set_aside(Path(out) / name).name}",
              flush=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    manifest = {"config": config, "overrides": overrides, "num_steps": num_steps,
                "reward_weights": {spec.label or spec.name: spec.weight for spec in base.rewards.functions},
                "runs": [dataclasses.asdict(run) for run in runs]}
    write_json_atomic(Path(out) / "sweep.json", manifest)
    if parallel > 1:
        done = _train_on_ray(resolved, parallel, base)
    else:
        done, progress = [], Progress(len(runs), "[rlalign sweep] runs done")
        for run, values in zip(runs, resolved):
            progress.write(f"[rlalign sweep] run {run.name} ({len(done) + 1}/{len(runs)})")
            done.append(train_run(values))
            progress.update(done[-1])
        progress.close()
    report = write_report(out)
    return "\n".join(done) + "\n\n" + report + f"\n(wrote {out}/report.md and its plots)"


def _train_on_ray(resolved: list[dict], parallel: int, base: Config) -> list[str]:
    """`parallel` runs at a time as Ray tasks, each with an equal share of this machine's CPUs."""
    import os

    import ray

    if base.rollout.backend != "local":
        raise ValueError("rlalign sweep --parallel runs each training run as a Ray task; set rollout.backend=local "
                         "(a run's own rollout actors would compete with its siblings), or sweep sequentially")
    cpus = max(1, (os.cpu_count() or 1) // parallel)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=cpus * parallel, include_dashboard=False)
    try:
        task = ray.remote(num_cpus=cpus)(train_run)
        return ray.get([task.remote(values, cpus) for values in resolved])
    finally:
        if started_ray:
            ray.shutdown()
