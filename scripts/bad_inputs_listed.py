"""The 42 inputs issue 31 listed (17 it found silently wrong, 25 unclear), each tried as its text says."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable

import yaml
from bad_input_harness import CONFIG, SAMPLE, Run, finish, metrics_steps, said, simple_case

WRITER = '''def blacken(prompts, completions, **kwargs):
    completions.zero_()
    return [0.0] * len(completions)


def brightness(prompts, completions, **kwargs):
    return completions.mean(dim=(1, 2, 3)).tolist()
'''
SLEEPER = '''import time

def slow(prompts, completions, **kwargs):
    time.sleep(30)
    return [0.0] * len(completions)
'''
Case = Callable[[Run], str]
EVAL = {"heldout": "shapes-eval:heldout:colors"}


# -------------------------------------------------------------------------------------------------
# Silently wrong
# -------------------------------------------------------------------------------------------------


def _together(run: Run, args: tuple[str, ...]) -> str:
    """Two writers started at the same moment, as two terminals (or a scheduler's retry) would; the
    row gives their exit codes in order and the line of the one that did not exit 0."""
    first, second = run.start(*args), run.start(*args)
    results = sorted([finish(first), finish(second)], key=lambda result: result.returncode)
    codes = " and ".join(str(result.returncode) for result in results)
    refused = f": {said(results[-1]).partition(': ')[2]}" if results[-1].returncode else ""
    return f"exits {codes}{refused}; {metrics_steps(run.work / 'run')}"


def two_trains(run: Run) -> str:
    run.config(train={"steps": 6})
    return _together(run, ("train", "config.yaml"))


def two_resumes(run: Run) -> str:
    run.config(train={"steps": 6})
    run.rlalign("train", "config.yaml", "--stop-after", "1")
    return _together(run, ("train", "config.yaml", "--resume", "run"))


def stale_sweep(run: Run) -> str:
    run.config(prompts={"eval": EVAL})  # a sweep compares its runs by an eval set
    sweep = ("sweep", "config.yaml", "--prefix-steps", "2", "--out", "sweep")
    run.rlalign(*sweep)
    manifest = run.work / "sweep" / "sweep.json"
    before = manifest.read_bytes() if manifest.is_file() else b""
    again = run.rlalign(*sweep, "train.learning_rate=0.05")
    kept = "kept" if manifest.is_file() and manifest.read_bytes() == before else "rewritten"
    finished = "; says 'finished earlier, kept'" if "finished earlier" in again.stdout + again.stderr else ""
    return f"{said(again)}{finished}; sweep.json {kept}"


def lr_inf(run: Run) -> str:
    return said(run.rlalign("train", run.config(), "train.learning_rate=.inf"))


def temperature(run: Run) -> str:
    return said(run.rlalign("train", run.config(), "policy.temperature=1e-45"))


def alpha_mismatch(run: Run) -> str:
    run.rlalign("train", run.config())
    return said(run.rlalign("sample", "config.yaml", "policy.lora.alpha=64", "--adapter", "run/checkpoints/step_000002/adapter",
                            "--prompts", "a red circle", "--out", "s.png"))


def sample_m(run: Run) -> str:
    run.rlalign("train", run.config())
    return said(run.rlalign("sample", "config.yaml", "--adapter", "run/checkpoints/step_000002/adapter",
                            "--prompts", "a red circle", "--out", "s.png"))


def _output_dir(run: Run, value: str) -> str:
    result = run.rlalign("config", run.config(), f"output_dir={value}")
    found = re.search(r"output_dir: (\S+)", result.stdout)
    return said(result) if not found else f"exit {result.returncode}: output_dir: {found.group(1).replace(str(run.work), '.')}"


def octal_steps(run: Run) -> str:
    result = run.rlalign("config", run.config(), "train.steps=010")
    found = re.search(r"\n  steps: (\d+)", result.stdout)
    return f"exit {result.returncode}: train.steps = {found.group(1) if found else '?'}"


def writing_reward(run: Run) -> str:
    run.write("writers.py", WRITER)
    functions = [{"name": "writers:blacken", "weight": 0.0}, {"name": "writers:brightness"}]
    run.env["PYTHONPATH"] += os.pathsep + str(run.work)
    return said(run.rlalign("train", run.config(rewards={"functions": functions, "eval": []})))


def edited_prompts(run: Run) -> str:
    run.write("p.txt", "a red circle\na blue square\n")
    config = run.config(prompts={"train": "file:p.txt"}, train={"steps": 3})
    run.rlalign("train", config, "--stop-after", "1")
    run.write("p.txt", "a green circle\na white square\n")
    return said(run.rlalign("train", config, "--resume", "run"))


def local_timeout(run: Run) -> str:
    run.write("sleepers.py", SLEEPER)
    run.env["PYTHONPATH"] += os.pathsep + str(run.work)
    config = run.config(rewards={"functions": [{"name": "sleepers:slow"}], "eval": [], "timeout_s": 3},
                        train={"steps": 1})
    began = time.monotonic()
    result = run.rlalign("train", config)
    return f"{said(result)}{_stopped(result)}; {time.monotonic() - began:.0f} s"


def _stopped(result) -> str:
    """The line that says what was saved and how to go on, when the run stopped for a failure."""
    line = next((line for line in result.stderr.splitlines() if line.startswith("stopped at step")), "")
    return f" / {line.partition(': ')[2][:110]}" if line and line[:100] not in said(result) else ""


def stop_after_negative(run: Run) -> str:
    result = run.rlalign("train", run.config(), "--stop-after", "-1")
    again = run.rlalign("train", "config.yaml")
    return said(result) + f"; a fresh train after it: exit {again.returncode}"


def probe_share(run: Run) -> str:
    return said(run.rlalign("probe", run.config(), "--share", "2", "--count", "1", "--steps", "1"))


def _rows(run: Run, rows: str) -> str:
    run.write("rows.jsonl", rows)
    return said(run.rlalign("train", run.config(prompts={"train": "jsonl:rows.jsonl"})))


def jpg_out(run: Run) -> str:
    result = run.rlalign("sample", run.config(), "--prompts", "a red circle", "--out", "x.jpg")
    head = (run.work / "x.jpg").read_bytes()[:4] if (run.work / "x.jpg").is_file() else b""
    kind = "PNG bytes" if head.startswith(b"\x89PNG") else "JPEG bytes" if head.startswith(b"\xff\xd8") else "nothing"
    return said(result) + f"; x.jpg holds {kind}"


# -------------------------------------------------------------------------------------------------
# Unclear
# -------------------------------------------------------------------------------------------------


def latin1(run: Run) -> str:
    (run.work / "latin.yaml").write_bytes(yaml.safe_dump(CONFIG).encode() + b"# caf\xe9\n")
    return said(run.rlalign("config", "latin.yaml"))


def merge_keys(run: Run) -> str:
    text = "x-short: &short {steps: 3}\n" + yaml.safe_dump(CONFIG)  # an anchor comes before its use
    run.write("merge.yaml", text.replace("\ntrain:\n", "\ntrain:\n  <<: *short\n", 1))
    return said(run.rlalign("config", "merge.yaml"))


def unreadable_config(run: Run) -> str:
    run.config()
    (run.work / "config.yaml").chmod(0)
    return said(run.rlalign("train", "config.yaml", as_a_user=True))


def unreadable_prompts(run: Run) -> str:
    run.write("p.txt", "a red circle\n")
    (run.work / "p.txt").chmod(0)
    return said(run.rlalign("train", run.config(prompts={"train": "file:p.txt"}), as_a_user=True))


def unreadable_checkpoint(run: Run) -> str:
    shutil.copy(run.tree / "rlalign" / "assets" / "shapes-nextscale.safetensors", run.work / "m.safetensors")
    (run.work / "m.safetensors").chmod(0)
    return said(run.rlalign("sample", run.config(), "policy.checkpoint=m.safetensors", "--prompts", "a red circle",
                            "--out", "s.png", as_a_user=True))


def disk_full(run: Run) -> str:
    """A real EFBIG: the process may write no file over 4 KiB, and the checkpoint is the first that large."""
    result = run.rlalign("train", run.config(), file_size_limit=4096)
    partial = list((run.work / "run" / "checkpoints").glob("*.partial"))
    return f"{said(result)}; {len(partial)} partial checkpoint(s) left"


def unreachable_ray(run: Run) -> str:
    config = run.config(rollout={"backend": "ray", "ray_address": "127.0.0.1:9"})
    return said(run.rlalign("train", config, timeout=90))


def reward_actor_timeout(run: Run) -> str:
    run.write("sleepers.py", SLEEPER)
    run.env["PYTHONPATH"] += os.pathsep + str(run.work)
    rewards = {"functions": [{"name": "sleepers:slow"}], "eval": [], "backend": "ray", "timeout_s": 5}
    result = run.rlalign("train", run.config(rewards=rewards, train={"steps": 1}))
    return said(result) + _stopped(result)


def users_rewards_module(run: Run) -> str:
    """The user's own `rewards.py` beside the config, named `rewards:brightness`."""
    run.write("rewards.py", WRITER)
    return said(run.rlalign("train", run.config(rewards={"functions": [{"name": "rewards:brightness"}], "eval": []})))


def users_rollouts_module(run: Run) -> str:
    """An unrelated `rollouts.py` of the user's in the working directory, on Python's path."""
    run.write("rollouts.py", "SAMPLES = 4\n")
    run.env["PYTHONPATH"] += os.pathsep + str(run.work)
    return said(run.rlalign("train", run.config()))


def module_in_working_directory(run: Run) -> str:
    run.write("myrewards.py", WRITER)
    return said(run.rlalign("train", run.config(rewards={"functions": [{"name": "myrewards:brightness"}], "eval": []})))


def _stopped_after_step_1(run: Run) -> None:
    run.rlalign("train", "config.yaml", "--stop-after", "1")


CASES: dict[str, tuple[str, Case]] = {
    "two `train` started together on one output_dir": ("silent", two_trains),
    "two `--resume` of one run at once": ("silent", two_resumes),
    "a sweep re-run with another train.learning_rate": ("silent", stale_sweep),
    "train.learning_rate=.inf": ("silent", lr_inf),
    "policy.temperature=1e-45": ("silent", temperature),
    "alpha-16 adapter under policy.lora.alpha=64": ("silent", alpha_mismatch),
    "sample --adapter of an m = 2 adapter": ("silent", sample_m),
    "output_dir: ~/runs/x": ("silent", lambda run: _output_dir(run, "~/runs/x")),
    "output_dir: ${HOME}/runs/x": ("silent", lambda run: _output_dir(run, "${HOME}/runs/x")),
    "train.steps=010": ("silent", octal_steps),
    "a weight-0 reward writing into completions": ("silent", writing_reward),
    "resume after the file: prompts were edited": ("silent", edited_prompts),
    "rewards.timeout_s=3, a 30 s reward, local backend": ("silent", local_timeout),
    "--stop-after -1": ("silent", stop_after_negative),
    "probe --share 2": ("silent", probe_share),
    'an empty "prompt": "" row': ("silent", lambda run: _rows(run, '{"prompt": ""}\n{"prompt": "a red circle"}\n')),
    "sample --out x.jpg": ("silent", jpg_out),
    "a Latin-1 byte in a config": ("unclear", latin1),
    "YAML merge keys (<<:)": ("unclear", merge_keys),
    "huge seed": ("unclear", simple_case(["train", "config.yaml", "seed=99999999999999"])),
    "a config without read permission": ("unclear", unreadable_config),
    "a prompt file without read permission": ("unclear", unreadable_prompts),
    "a checkpoint without read permission": ("unclear", unreadable_checkpoint),
    "policy.device=cuda on a CPU machine": ("unclear", simple_case([*SAMPLE, "policy.device=cuda"])),
    "policy.device=gpu": ("unclear", simple_case(["config", "config.yaml", "policy.device=gpu"])),
    "wandb_mode=online without a login": ("unclear", simple_case(["train", "config.yaml", "logging.wandb_mode=online"])),
    "weight: .nan": ("unclear", simple_case(["config", "config.yaml", "rewards.functions.0.weight=.nan"])),
    "weight: .inf": ("unclear", simple_case(["config", "config.yaml", "rewards.functions.0.weight=.inf"])),
    "misspelt builtin: name": ("unclear", simple_case([*SAMPLE, "policy.checkpoint=builtin:shapes-nextscal"])),
    "sample --out somedir/": ("unclear", simple_case(["sample", "config.yaml", "--prompts", "a red circle", "--out", "somedir/"])),
    "disk full during a checkpoint": ("unclear", disk_full),
    'a numeric "prompt": 5 row': ("unclear", lambda run: _rows(run, '{"prompt": 5}\n')),
    "a conversational prompt row": ("unclear", lambda run: _rows(
        run, '{"prompt": [{"role": "user", "content": "a red circle"}]}\n')),
    "a dataset column named prompts": ("unclear", lambda run: _rows(run, '{"prompt": "a red circle", "prompts": "x"}\n')),
    "a dataset column named completions": ("unclear", lambda run: _rows(
        run, '{"prompt": "a red circle", "completions": "x"}\n')),
    "an unreachable rollout.ray_address": ("unclear", unreachable_ray),
    "a reward-actor timeout at step 1": ("unclear", reward_actor_timeout),
    "--resume RUN output_dir=ELSEWHERE": ("unclear", simple_case(["train", "config.yaml", "output_dir=elsewhere", "--resume", "run"],
                                                                 _stopped_after_step_1)),
    "probe --steps 7": ("unclear", simple_case(["probe", "config.yaml", "--steps", "7", "--count", "1"])),
    "a user's rewards.py (reward rewards:brightness)": ("unclear", users_rewards_module),
    "a user's rollouts.py on the path": ("unclear", users_rollouts_module),
    "a module:attr reward in the working directory": ("unclear", module_in_working_directory),
}
