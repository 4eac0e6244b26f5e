"""33 more inputs and accidents a new user meets, reconstructed for issue 31's table: its text lists only
the 42 it found unclear or silently wrong, and counts 21 clear and 12 recovered besides. These are tried
here as a new user would; each row's "before" is what the older tree did, measured, not assumed."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from bad_input_harness import SAMPLE, Run, finish, metrics_steps, said, simple_case, wait_until

FAULTY = '''def flaky(prompts, completions, **kwargs):
    if len(completions) > 2:
        raise RuntimeError("the scoring service is down")
    return [0.0] * len(completions)


def short(prompts, completions, **kwargs):
    return [0.0]


def words(prompts, completions, **kwargs):
    return ["good"] * len(completions)


def abstains(prompts, completions, **kwargs):
    return [None] * len(completions)  # TRL's "no value for this sample", here for every sample
'''
Case = Callable[[Run], str]


def _faulty(function: str, **reward) -> Case:
    def case(run: Run) -> str:
        run.write("faulty.py", FAULTY)
        run.env["PYTHONPATH"] += os.pathsep + str(run.work)
        result = run.rlalign("train", run.config(rewards={"functions": [{"name": f"faulty:{function}", **reward}],
                                                          "eval": []}))
        return f"{said(result)}; {metrics_steps(run.work / 'run')}"
    return case


def _train(run: Run) -> None:
    run.rlalign("train", "config.yaml")


# -------------------------------------------------------------------------------------------------
# Accidents a run should recover from
# -------------------------------------------------------------------------------------------------


def _signal_then_resume(sig: signal.Signals) -> Case:
    def case(run: Run) -> str:
        run.config(train={"steps": 4})
        training = run.start("train", "config.yaml")
        latest = run.work / "run" / "checkpoints" / "latest"
        wait_until(lambda: training.poll() is not None or latest.exists(), "the first checkpoint")
        training.send_signal(sig)
        stopped = finish(training)
        resumed = run.rlalign("train", "config.yaml", "--resume", "run")
        return f"stopped: exit {stopped.returncode}; resume {said(resumed)}; {metrics_steps(run.work / 'run')}"
    return case


def _damaged_then_resume(damage: Callable[[Path], None]) -> Case:
    def case(run: Run) -> str:
        run.config(train={"steps": 3})
        run.rlalign("train", "config.yaml", "--stop-after", "2")
        damage(run.work / "run")
        resumed = run.rlalign("train", "config.yaml", "--resume", "run")
        return f"resume {said(resumed)}; {metrics_steps(run.work / 'run')}"
    return case


def _delete_newest(run_dir: Path) -> None:
    newest = run_dir / "checkpoints" / "step_000002"
    for file in sorted(newest.rglob("*"), reverse=True):
        file.unlink() if file.is_file() else file.rmdir()
    newest.rmdir()


def _truncate_state(run_dir: Path) -> None:
    state = run_dir / "checkpoints" / "step_000002" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def _tear_metrics(run_dir: Path) -> None:
    with (run_dir / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 3, "loss": 0.1')


def _resume_with(*changes: str) -> Case:
    def case(run: Run) -> str:
        run.config(train={"steps": 2})
        run.rlalign("train", "config.yaml")
        resumed = run.rlalign("train", "config.yaml", "--resume", "run", *changes)
        return f"{said(resumed)}; {metrics_steps(run.work / 'run')}"
    return case


def failed_start_then_fresh(run: Run) -> str:
    run.config()
    failed = run.rlalign("train", "config.yaml", "rewards.functions.0.name=no_such_module:reward")
    fresh = run.rlalign("train", "config.yaml")
    return f"failed start exit {failed.returncode}; a fresh train in the same output_dir {said(fresh)}"


def sweep_grows(run: Run) -> str:
    run.config(prompts={"eval": {"heldout": "shapes-eval:heldout:colors"}})  # a sweep compares runs by an eval set
    run.rlalign("sweep", "config.yaml", "--prefix-steps", "2", "--out", "sweep")
    grown = run.rlalign("sweep", "config.yaml", "--prefix-steps", "2", "--seeds", "2", "--out", "sweep")
    runs = sorted(path.name for path in (run.work / "sweep").iterdir() if path.is_dir())
    return f"{said(grown)}; runs: {', '.join(runs)}"


def _accept_changes(run: Run) -> str:
    run.config(train={"steps": 3})
    run.rlalign("train", "config.yaml", "--stop-after", "2")
    resumed = run.rlalign("train", "config.yaml", "train.learning_rate=0.02", "--resume", "run",
                          "--accept-changes", "train.learning_rate")
    return f"{said(resumed)}; {metrics_steps(run.work / 'run')}"


RECOVERED: dict[str, Case] = {
    "Ctrl-C (SIGINT) during training, then --resume": _signal_then_resume(signal.SIGINT),
    "kill -9 during training, then --resume": _signal_then_resume(signal.SIGKILL),
    "newest checkpoint deleted by hand, then --resume": _damaged_then_resume(_delete_newest),
    "newest trainer_state.pt cut short (a copy cut off), then --resume": _damaged_then_resume(_truncate_state),
    "a torn last line in metrics.jsonl, then --resume": _damaged_then_resume(_tear_metrics),
    "resume a finished run with train.steps raised 2 → 3": _resume_with("train.steps=3"),
    "resume with a logging change (progress bar on)": _resume_with("train.steps=3", "logging.progress_bar=true"),
    "resume with a changed setting and --accept-changes": _accept_changes,
    "a failed start, then a fresh start in the same output_dir": failed_start_then_fresh,
    "a sweep re-run with one more seed": sweep_grows,
    "a reward that raises, with on_error: skip": _faulty("flaky", on_error="skip"),
    "a reward with no value (None) for any sample of a step": _faulty("abstains"),
}

# -------------------------------------------------------------------------------------------------
# Mistakes that should get one clear line
# -------------------------------------------------------------------------------------------------


def _output_dir_file(run: Run) -> None:
    run.write("taken", "a file where the run directory should be\n")


def _garbage_checkpoint(run: Run) -> None:
    (run.work / "m.safetensors").write_bytes(b"\x00garbage" * 64)


def _empty_adapter_dir(run: Run) -> None:
    (run.work / "adapter").mkdir()


CLEAR: dict[str, Case] = {
    "a config path that does not exist": simple_case(["train", "nope.yaml"]),
    "a misspelt subcommand (rlalign trian)": simple_case(["trian", "config.yaml"]),
    "a misspelt section (trian.steps=3)": simple_case(["train", "config.yaml", "trian.steps=3"]),
    "a misspelt key (train.step=3)": simple_case(["train", "config.yaml", "train.step=3"]),
    "a word for a number (train.steps=ten)": simple_case(["train", "config.yaml", "train.steps=ten"]),
    "grpo.group_size=1 (no group to compare)": simple_case(["train", "config.yaml", "grpo.group_size=1"]),
    "grpo.prefix_steps=9 on a 6-step model": simple_case(["train", "config.yaml", "grpo.prefix_steps=9"]),
    "an unknown policy.kind": simple_case(["train", "config.yaml", "policy.kind=diffusion"]),
    "an unknown reward name": simple_case(["train", "config.yaml", "rewards.functions.0.name=clip_scor"]),
    "module:attr naming a missing function": lambda run: simple_case(
        ["train", "config.yaml", f"rewards.functions.0.name={run.examples('saturaton')}"])(run),
    "a prompt file that does not exist": simple_case(["train", "config.yaml", "prompts.train=file:missing.txt"]),
    "an empty prompt file": simple_case(["train", "config.yaml", "prompts.train=file:empty.txt"],
                                    lambda run: run.write("empty.txt", "")),
    "a jsonl line that is not JSON": simple_case(["train", "config.yaml", "prompts.train=jsonl:bad.jsonl"],
                                             lambda run: run.write("bad.jsonl", '{"prompt": "a red circle",}\n')),
    "a word the text encoder does not know": simple_case(["sample", "config.yaml", "--prompts", "a purple hexagon",
                                                      "--out", "s.png"]),
    "--resume of a directory that does not exist": simple_case(["train", "config.yaml", "--resume", "nowhere"]),
    "--adapter of a directory holding no adapter": simple_case([*SAMPLE, "--adapter", "adapter"], _empty_adapter_dir),
    "an adapter of another LoRA rank": simple_case([*SAMPLE, "policy.lora.rank=8", "--adapter",
                                                "run/checkpoints/step_000002/adapter"], _train),
    "output_dir names an existing file": simple_case(["train", "config.yaml", "output_dir=taken"], _output_dir_file),
    "a checkpoint that is not a model file": simple_case([*SAMPLE, "policy.checkpoint=m.safetensors"], _garbage_checkpoint),
    "a reward returning one value for eight samples": _faulty("short"),
    "a reward returning strings": _faulty("words"),
}
CASES: dict[str, tuple[str, Case]] = {**{name: ("recovered", case) for name, case in RECOVERED.items()},
                                      **{name: ("clear", case) for name, case in CLEAR.items()}}
