"""Faults end to end: kill -9 at every point of a checkpoint save, SIGINT, SIGTERM, a damaged or
deleted newest checkpoint, a torn metrics line, a changed config on resume, a second writer on a run's
directory, a learning rate that makes training non-finite, a disk that fills during a checkpoint, a sweep
re-launched with other settings, a killed Ray actor.

Every case runs `rlalign train` in a subprocess on the built-in generator (a tiny 6-step config,
checkpoints every 2 steps), injects its fault, resumes where that is the remedy, and compares the
final adapter with an uninterrupted run's byte for byte. Kills inside a save use rlalign.utils.failpoints
(RLALIGN_FAILPOINT=NAME@N: SIGKILL on the N-th pass; here the save of step 4, so step 2 exists).
Prints a table (case, what happened, what the resume started from, bit-identical) and writes JSON:

    python scripts/fault_suite.py                 # ~5 min on 2 CPU cores
    python scripts/fault_suite.py --ray           # also a Ray actor killed mid-step (~1 more minute)
    python scripts/fault_suite.py --only writer   # the cases whose name contains "writer"

docs/reliability.md holds the promises this checks and the measured table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from rlalign.utils.failpoints import POINTS
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info

STEPS = 6
CONFIG = {
    "policy": {"kind": "next_scale", "checkpoint": "builtin:shapes-nextscale", "lora": {"rank": 4, "alpha": 8}},
    "prompts": {"train": "shapes-eval:heldout:colors", "eval": {"single": "shapes-eval:heldout:single_object"},
                "eval_samples_per_prompt": 1},
    "rewards": {"functions": [{"name": "rlalign.rewards.examples:saturation"}], "eval": []},
    "grpo": {"group_size": 4, "prefix_steps": 2, "inner_iterations": 2},
    "train": {"steps": STEPS, "prompts_per_step": 2, "micro_batch_size": 4, "learning_rate": 0.01,
              "lr_schedule": "cosine", "save_every": 2},
    "logging": {"wandb_mode": "disabled", "progress_bar": False},
    "rollout": {"torch_threads": 1},
    "seed": 0,
}


class Case:
    """One fault: its name, what it does, and a function of the work directory that returns its row."""

    def __init__(self, name: str, fault: str, run: Callable[[Path], dict]):
        self.name, self.fault, self.run = name, fault, run


def write_config(work: Path, **changes: dict) -> Path:
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    for section, values in changes.items():
        config.setdefault(section, {}).update(values)
    config["output_dir"] = str(work / "run")
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(config: Path, *args: str, env: dict | None = None, signal_after_step: int | None = None,
          signals: tuple = (), file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """`rlalign train CONFIG ARGS` in a subprocess; optionally send `signals` once step N is logged, each
    later one while the run is held at `stop:save`, inside the first one's clean stop (failpoints.holdpoint);
    with `file_size_limit`, no file it writes may grow past that many bytes (a full disk's EFBIG)."""
    command = [sys.executable, "-m", "rlalign.cli", "train", str(config), *args]
    held = config.parent / "held-at-stop-save"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if len(signals) > 1:
        environment.update(RLALIGN_HOLDPOINT="stop:save", RLALIGN_HOLDPOINT_FILE=str(held))
    def limits() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=limits)
    if signal_after_step is not None:
        metrics = Path(yaml.safe_load(config.read_text())["output_dir"]) / "metrics.jsonl"
        while process.poll() is None and not (metrics.is_file() and
                                              f'"step": {signal_after_step},' in metrics.read_text()):
            time.sleep(0.1)
        for index, number in enumerate(signals):
            while index > 0 and process.poll() is None and not held.exists():
                time.sleep(0.05)
            process.send_signal(number)
    stdout, stderr = process.communicate(timeout=900)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def adapter_digest(run: Path) -> str | None:
    final = run / "checkpoints" / f"step_{STEPS:06d}" / "adapter" / "adapter_model.safetensors"
    return hashlib.sha256(final.read_bytes()).hexdigest() if final.is_file() else None


def outcome(result: subprocess.CompletedProcess) -> str:
    """Exit code and the last stderr line that says something (warnings and errors)."""
    lines = [line for line in result.stderr.splitlines()
             if re.match(r"^(error:|\[rlalign\]|.*Warning:)", line.strip())]
    if not lines:
        return f"exit {result.returncode}"
    line = re.sub(r"\S*/rlalign-faults-[^/]+/case\d+/", "", lines[-1].strip())  # paths relative to the case
    line = re.sub(r"^\S+\.py:\d+: (?:Runtime|Rlalign)Warning: ", "warning: ", line)
    return f"exit {result.returncode}: {line[:110]}"


def resumed_from(result: subprocess.CompletedProcess) -> str:
    found = re.search(r"resumed from \S*/(step_\d+) at step", result.stdout)
    return found.group(1) if found else "-"


def kill_during_save(point: str) -> Callable[[Path], dict]:
    def run(work: Path) -> dict:
        config = write_config(work)
        killed = train(config, env={"RLALIGN_FAILPOINT": f"{point}@2"})  # the save of step 4
        resumed = train(config, "--resume", str(work / "run"))
        return {"outcome": f"{outcome(killed)}; resume {outcome(resumed)}", "resumed_from": resumed_from(resumed),
                "run": work / "run", "ok": killed.returncode == -signal.SIGKILL and resumed.returncode == 0}
    return run


def signal_then_resume(signals: tuple, expected: int) -> Callable[[Path], dict]:
    def run(work: Path) -> dict:
        config = write_config(work)
        stopped = train(config, signal_after_step=3, signals=signals)
        resumed = train(config, "--resume", str(work / "run"))
        return {"outcome": f"{outcome(stopped)}; resume {outcome(resumed)}", "resumed_from": resumed_from(resumed),
                "run": work / "run", "ok": stopped.returncode == expected and resumed.returncode == 0}
    return run


def damage_then_resume(damage: Callable[[Path], None]) -> Callable[[Path], dict]:
    def run(work: Path) -> dict:
        config = write_config(work)
        stopped = train(config, "--stop-after", "4")
        damage(work / "run")
        resumed = train(config, "--resume", str(work / "run"))
        return {"outcome": f"{outcome(stopped)}; resume {outcome(resumed)}", "resumed_from": resumed_from(resumed),
                "run": work / "run", "ok": resumed.returncode == 0}
    return run


def truncate_newest_state(run: Path) -> None:
    state = run / "checkpoints" / "step_000004" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def garble_newest_adapter(run: Path) -> None:
    weights = run / "checkpoints" / "step_000004" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(bytes(255 - b for b in weights.read_bytes()))


def delete_newest(run: Path) -> None:
    shutil.rmtree(run / "checkpoints" / "step_000004")  # `latest` still names it


def tear_metrics(run: Path) -> None:
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 5, "rewards/saturation/mean": 0.4')


def changed_config(work: Path) -> dict:
    config = write_config(work)
    train(config, "--stop-after", "4")
    refused = train(write_config(work, train={"learning_rate": 0.05}), "--resume", str(work / "run"))
    resumed = train(write_config(work), "--resume", str(work / "run"))
    return {"outcome": f"{outcome(refused)}; with the original config {outcome(resumed)}",
            "resumed_from": resumed_from(resumed), "run": work / "run",
            "ok": refused.returncode == 2 and "train.learning_rate: 0.01 → 0.05" in refused.stderr}


def second_writer(work: Path) -> dict:
    """A run held once it owns its directory; a second `rlalign train` on the same directory meanwhile."""
    config, held = write_config(work), work / "held-at-train-started"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "RLALIGN_HOLDPOINT": "train:started",
                   "RLALIGN_HOLDPOINT_FILE": str(held)}
    first = subprocess.Popen([sys.executable, "-m", "rlalign.cli", "train", str(config)], cwd=ROOT, env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while first.poll() is None and not held.exists():
        time.sleep(0.05)
    second = train(config)
    held.unlink(missing_ok=True)
    first.communicate(timeout=900)
    return {"outcome": f"second: {outcome(second)}; first: exit {first.returncode}", "resumed_from": "-",
            "run": work / "run", "ok": second.returncode == 2 and f"pid {first.pid}" in second.stderr
            and first.returncode == 0}


def non_finite(work: Path) -> dict:
    config = write_config(work, train={"learning_rate": 1e30, "save_every": 1}, grpo={"inner_iterations": 1})
    result = train(config)
    latest = work / "run" / "checkpoints" / "latest"
    return {"outcome": outcome(result), "resumed_from": latest.read_text().strip() if latest.is_file() else "-",
            "run": None, "identical": "n/a", "ok": result.returncode == 2 and "is intact" in result.stderr}


def stale_sweep(work: Path) -> dict:
    config, out = write_config(work, train={"steps": 2, "save_every": 2}), work / "sweep"
    sweep = [sys.executable, "-m", "rlalign.cli", "sweep", str(config), "--prefix-steps", "2", "--out", str(out)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(sweep, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900,
                           check=False)
    manifest = (out / "sweep.json").read_bytes()
    again = subprocess.run([*sweep, "train.learning_rate=0.05"], cwd=ROOT, env=environment, capture_output=True,
                           text=True, timeout=900, check=False)
    return {"outcome": outcome(again), "resumed_from": "-", "run": None, "identical": "n/a",
            "ok": first.returncode == 0 and again.returncode == 2 and "train.learning_rate 0.01 → 0.05" in again.stderr
            and (out / "sweep.json").read_bytes() == manifest}


def disk_full(work: Path) -> dict:
    """The disk fills during the save of step 4 (a real EFBIG: the resumed process may write no file over
    64 KiB; metrics lines fit, the adapter does not); resumed again once there is room."""
    config = write_config(work)
    train(config, "--stop-after", "2")
    full = train(config, "--resume", str(work / "run"), file_size_limit=64 * 1024)
    partial = list((work / "run" / "checkpoints").glob("*.partial"))
    resumed = train(config, "--resume", str(work / "run"))
    return {"outcome": f"{outcome(full)}; {len(partial)} partial checkpoints left; with room again: resume exit "
                       f"{resumed.returncode}", "resumed_from": resumed_from(resumed), "run": work / "run",
            "ok": full.returncode == 2 and "could not be written" in full.stderr and not partial
            and resumed.returncode == 0}


def ray_actor_killed(work: Path) -> dict:
    ray = {"backend": "ray", "num_workers": 1, "cpus_per_worker": 1.0, "torch_threads": 1}
    config = write_config(work, rollout=ray)
    marker = work / "fired"
    result = train(config, env={"RLALIGN_FAILPOINT": "worker:generate@3", "RLALIGN_FAILPOINT_MARKER": str(marker)})
    reference = work / "reference"
    reference.mkdir()
    train(write_config(reference, rollout=ray))
    identical = adapter_digest(work / "run") == adapter_digest(reference / "run")
    return {"outcome": outcome(result) + ("; the actor was killed" if marker.exists() else "; NOT FIRED"),
            "resumed_from": "(re-created actor)", "run": None, "identical": identical,
            "ok": result.returncode == 0 and marker.exists()}


def cases(with_ray: bool) -> list[Case]:
    listed = [Case(f"kill -9 at {point}", "SIGKILL inside the save of step 4", kill_during_save(point))
              for point in POINTS if point.startswith("save:")]
    listed += [
        Case("SIGINT", "Ctrl-C after step 3", signal_then_resume((signal.SIGINT,), 130)),
        Case("SIGTERM", "preemption after step 3", signal_then_resume((signal.SIGTERM,), 143)),
        Case("SIGINT then SIGTERM", "a second signal: abort at once", signal_then_resume(
            (signal.SIGINT, signal.SIGTERM), 143)),
        Case("truncated trainer_state.pt", "newest checkpoint cut in half", damage_then_resume(truncate_newest_state)),
        Case("garbled adapter", "newest adapter's bytes inverted", damage_then_resume(garble_newest_adapter)),
        Case("latest names a deleted checkpoint", "newest checkpoint directory removed", damage_then_resume(delete_newest)),
        Case("torn metrics line", "a half-written last record", damage_then_resume(tear_metrics)),
        Case("changed config on resume", "train.learning_rate 0.01 → 0.05", changed_config),
        Case("second writer", "a second rlalign train on a run's directory while it trains", second_writer),
        Case("non-finite training", "train.learning_rate 1e30", non_finite),
        Case("disk full", "no file over 64 KiB in the save of step 4 (EFBIG)", disk_full),
        Case("sweep re-launched with other settings", "train.learning_rate 0.01 → 0.05 on finished runs", stale_sweep),
    ]
    if with_ray:
        listed.append(Case("Ray actor killed", "SIGKILL inside the actor at step 3", ray_actor_killed))
    return listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ray", action="store_true", help="also kill a Ray rollout actor mid-step")
    parser.add_argument("--out", type=Path, default=Path("outputs/fault_suite.json"))
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    args = parser.parse_args(argv)
    started, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="rlalign-faults-") as temporary:
        root = Path(temporary)
        (root / "reference").mkdir()
        train(write_config(root / "reference"))
        reference = adapter_digest(root / "reference" / "run")
        for number, case in enumerate(c for c in cases(args.ray) if args.only.lower() in c.name.lower()):
            work = root / f"case{number:02d}"
            work.mkdir()
            row = case.run(work)
            identical = row.pop("identical", None)
            if identical is None:
                identical = adapter_digest(row["run"]) == reference
            compared = identical if identical == "n/a" else "yes" if identical else "NO"
            rows.append({"case": case.name, "fault": case.fault, "outcome": row["outcome"],
                         "resumed_from": row["resumed_from"], "bit_identical": compared,
                         "as_expected": "yes" if row["ok"] else "NO"})
            print(f"[fault_suite] {case.name}: {rows[-1]['bit_identical']}", file=sys.stderr, flush=True)
    seconds = round(time.perf_counter() - started, 1)
    print(records_table(rows, ["case", "fault", "outcome", "resumed_from", "bit_identical", "as_expected"]))
    print(f"({len(rows)} cases, {seconds} s; final adapters compared with an uninterrupted {STEPS}-step run)")
    write_json_atomic(args.out, {"rows": rows, "seconds": seconds, "steps": STEPS, "config": CONFIG,
                                 "machine": machine_info()})
    return 0 if all(r["bit_identical"] in ("yes", "n/a") and r["as_expected"] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
