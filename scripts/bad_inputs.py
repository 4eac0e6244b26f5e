"""The bad inputs of reliability round 3 (issue 31), each tried as a new user would, on one source tree:

    python scripts/bad_inputs.py [--tree DIR] [--out outputs/bad_inputs.json]

Every case runs the `rlalign` CLI (`python -m rlalign.cli`) of `--tree` (default: this checkout) in a
subprocess, in a fresh directory holding the files the case needs, on the built-in Shapes generator
with a 2-step config. A row is what the user saw: the exit code, the first line that explains (an
`error:` line, a note or a warning), or, for a case whose harm is silent, what the run left behind.
Run it on an older tree (`git worktree add /tmp/old REV`) for the before column of docs/reliability.md.
About 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {
    "policy": {"kind": "next_scale", "checkpoint": "builtin:shapes-nextscale", "lora": {"rank": 4, "alpha": 16}},
    "prompts": {"train": "shapes-eval:heldout:colors", "eval": {}, "eval_samples_per_prompt": 1},
    "rewards": {"functions": [{"name": "rlalign.rewards.examples:saturation"}], "eval": []},
    "grpo": {"group_size": 4, "prefix_steps": 2, "inner_iterations": 1},
    "train": {"steps": 2, "prompts_per_step": 2, "micro_batch_size": 8, "save_every": 1, "eval_every": 0},
    "logging": {"wandb_mode": "disabled", "progress_bar": False},
    "output_dir": "run",
}
WRITER = '''def blacken(prompts, completions, **kwargs):
    completions.zero_()
    return [0.0] * len(completions)


def brightness(prompts, completions, **kwargs):
    return completions.mean(dim=(1, 2, 3)).tolist()
'''


class Run:
    """One case's directory and its `rlalign` calls."""

    def __init__(self, tree: Path, work: Path):
        self.tree, self.work = tree, work
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree), "HOME": str(work / "home"),
                    "NETRC": str(work / "no-netrc")}
        self.env.pop("WANDB_API_KEY", None)

    def config(self, name: str = "config.yaml", **sections) -> str:
        values = yaml.safe_load(yaml.safe_dump(CONFIG))
        if not (self.tree / "setup.py").is_file():  # before rewards/ installed as rlalign.rewards (issue 29)
            values["rewards"]["functions"] = [{"name": "rewards.examples:saturation"}]
        for section, changes in sections.items():
            values[section] = {**values[section], **changes} if isinstance(changes, dict) else changes
        (self.work / name).write_text(yaml.safe_dump(values))
        return name

    def rlalign(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rlalign.cli", *args], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=600, check=False)


def said(result: subprocess.CompletedProcess) -> str:
    """Exit code and the first line that explains (error, note, warning), else the last stderr line."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    telling = [line for line in lines if re.match(r"^(error:|\[rlalign\] note|.*Warning:|.*Error:)", line)]
    line = (telling or lines or [""])[0 if telling else -1]
    line = re.sub(r"/\S*/bad-inputs-[^/ ]+/case\d+/", "", line)
    return f"exit {result.returncode}: {line[:150]}" if line else f"exit {result.returncode}"


def left_behind(run: Run, what: str) -> str:
    return f"; left: {what}"


# -------------------------------------------------------------------------------------------------
# The cases: name -> function(run) -> the row's text
# -------------------------------------------------------------------------------------------------


def lr_inf(run: Run) -> str:
    result = run.rlalign("train", run.config(), "train.learning_rate=.inf")
    return said(result)


def temperature(run: Run) -> str:
    return said(run.rlalign("train", run.config(), "policy.temperature=1e-45"))


def alpha_mismatch(run: Run) -> str:
    run.rlalign("train", run.config())
    return said(run.rlalign("sample", "config.yaml", "policy.lora.alpha=64", "--adapter", "run/checkpoints/step_000002/adapter",
                            "--prompts", "a red circle", "--out", "s.png"))


def sample_m(run: Run) -> str:
    run.rlalign("train", run.config())
    result = run.rlalign("sample", "config.yaml", "--adapter", "run/checkpoints/step_000002/adapter",
                         "--prompts", "a red circle", "--out", "s.png")
    return said(result)


def home_dir(run: Run) -> str:
    result = run.rlalign("config", run.config(), "output_dir=~/runs/x")
    found = re.search(r"output_dir: (\S+)", result.stdout)
    return f"exit {result.returncode}: output_dir: {found.group(1).replace(str(run.work), '.') if found else '?'}"


def env_dir(run: Run) -> str:
    result = run.rlalign("config", run.config(), "output_dir=${HOME}/runs/x")
    found = re.search(r"output_dir: (\S+)", result.stdout)
    return f"exit {result.returncode}: output_dir: {found.group(1).replace(str(run.work), '.') if found else '?'}"


def octal_steps(run: Run) -> str:
    result = run.rlalign("config", run.config(), "train.steps=010")
    found = re.search(r"\n  steps: (\d+)", result.stdout)
    return f"exit {result.returncode}: train.steps = {found.group(1) if found else '?'}"


def writing_reward(run: Run) -> str:
    (run.work / "writers.py").write_text(WRITER)
    functions = [{"name": "writers:blacken", "weight": 0.0}, {"name": "writers:brightness"}]
    run.env["PYTHONPATH"] += os.pathsep + str(run.work)
    return said(run.rlalign("train", run.config(rewards={"functions": functions, "eval": []})))


def edited_prompts(run: Run) -> str:
    (run.work / "p.txt").write_text("a red circle\na blue square\n")
    config = run.config(prompts={"train": "file:p.txt"}, train={"steps": 3})
    run.rlalign("train", config, "--stop-after", "1")
    (run.work / "p.txt").write_text("a green circle\na white square\n")
    return said(run.rlalign("train", config, "--resume", "run"))


def stop_after_negative(run: Run) -> str:
    result = run.rlalign("train", run.config(), "--stop-after", "-1")
    again = run.rlalign("train", "config.yaml")
    return said(result) + f"; a fresh train after it: exit {again.returncode}"


def probe_share(run: Run) -> str:
    return said(run.rlalign("probe", run.config(), "--share", "2", "--count", "1", "--steps", "1"))


def empty_prompt(run: Run) -> str:
    (run.work / "rows.jsonl").write_text('{"prompt": ""}\n{"prompt": "a red circle"}\n')
    return said(run.rlalign("train", run.config(prompts={"train": "jsonl:rows.jsonl"})))


def jpg_out(run: Run) -> str:
    result = run.rlalign("sample", run.config(), "--prompts", "a red circle", "--out", "x.jpg")
    head = (run.work / "x.jpg").read_bytes()[:4] if (run.work / "x.jpg").is_file() else b""
    kind = "PNG bytes" if head.startswith(b"\x89PNG") else "JPEG bytes" if head.startswith(b"\xff\xd8") else "nothing"
    return said(result) + f"; x.jpg holds {kind}"


def latin1(run: Run) -> str:
    (run.work / "latin.yaml").write_bytes(yaml.safe_dump(CONFIG).encode() + b"# caf\xe9\n")
    return said(run.rlalign("config", "latin.yaml"))


def merge_keys(run: Run) -> str:
    text = "x-short: &short {steps: 3}\n" + yaml.safe_dump(CONFIG)  # an anchor comes before its use
    text = text.replace("\ntrain:\n", "\ntrain:\n  <<: *short\n", 1)
    (run.work / "merge.yaml").write_text(text)
    return said(run.rlalign("config", "merge.yaml"))


def cases() -> dict[str, tuple[str, Callable[[Run], str]]]:
    simple = {
        "huge seed": ("train", ["train", "config.yaml", "seed=99999999999999"]),
        "policy.device=cuda on a CPU machine": ("sample", ["sample", "config.yaml", "policy.device=cuda", "--prompts",
                                                          "a red circle", "--out", "s.png"]),
        "policy.device=gpu": ("config", ["config", "config.yaml", "policy.device=gpu"]),
        "wandb_mode=online without a login": ("train", ["train", "config.yaml", "logging.wandb_mode=online"]),
        "weight: .nan": ("config", ["config", "config.yaml", "rewards.functions.0.weight=.nan"]),
        "weight: .inf": ("config", ["config", "config.yaml", "rewards.functions.0.weight=.inf"]),
        "misspelt builtin: name": ("sample", ["sample", "config.yaml", "policy.checkpoint=builtin:shapes-nextscal",
                                              "--prompts", "a red circle", "--out", "s.png"]),
        "sample --out somedir/": ("sample", ["sample", "config.yaml", "--prompts", "a red circle", "--out", "somedir/"]),
        "probe --steps 7": ("probe", ["probe", "config.yaml", "--steps", "7", "--count", "1"]),
        "--resume RUN output_dir=ELSEWHERE": ("train", ["train", "config.yaml", "output_dir=elsewhere", "--resume", "run"]),
    }

    def simple_case(argv: list[str]) -> Callable[[Run], str]:
        def run_case(run: Run) -> str:
            run.config()
            if "--resume" in argv:
                run.rlalign("train", "config.yaml", "--stop-after", "1")
            return said(run.rlalign(*argv))
        return run_case

    listed = {
        "train.learning_rate=.inf": ("silent", lr_inf),
        "policy.temperature=1e-45": ("silent", temperature),
        "alpha-16 adapter under policy.lora.alpha=64": ("silent", alpha_mismatch),
        "sample --adapter of an m = 2 adapter": ("silent", sample_m),
        "output_dir: ~/runs/x": ("silent", home_dir),
        "output_dir: ${HOME}/runs/x": ("silent", env_dir),
        "train.steps=010": ("silent", octal_steps),
        "a weight-0 reward writing into completions": ("silent", writing_reward),
        "resume after the file: prompts were edited": ("silent", edited_prompts),
        "--stop-after -1": ("silent", stop_after_negative),
        "probe --share 2": ("silent", probe_share),
        'an empty "prompt": "" row': ("silent", empty_prompt),
        "sample --out x.jpg": ("silent", jpg_out),
        "a Latin-1 byte in a config": ("unclear", latin1),
        "YAML merge keys (<<:)": ("unclear", merge_keys),
    }
    listed.update({name: ("unclear", simple_case(argv)) for name, (_, argv) in simple.items()})
    return listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree whose rlalign runs the cases")
    parser.add_argument("--out", type=Path, default=Path("outputs/bad_inputs.json"))
    parser.add_argument("--only", default="", help="only the cases whose name contains this text")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as temporary:
        for number, (name, (kind, case)) in enumerate(cases().items()):
            if args.only.lower() not in name.lower():
                continue
            work = Path(temporary) / f"case{number:02d}"
            (work / "home").mkdir(parents=True)
            rows.append({"case": name, "kind": kind, "result": case(Run(args.tree.resolve(), work))})
            print(f"| {name} | {kind} | {rows[-1]['result']} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"tree": str(args.tree), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
