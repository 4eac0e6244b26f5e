"""What every case of scripts/bad_inputs.py stands on: a fresh directory per case, the `rlalign` command of
one source tree run as a user would (its console script, so the working directory is not on Python's
path unless rlalign puts it there), and the row's text: what the user saw or what the run left behind."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

CONFIG = {
    "policy": {"kind": "next_scale", "checkpoint": "builtin:shapes-nextscale", "lora": {"rank": 4, "alpha": 16}},
    "prompts": {"train": "shapes-eval:heldout:colors", "eval": {}, "eval_samples_per_prompt": 1},
    "rewards": {"functions": [{"name": "rlalign.rewards.examples:saturation"}], "eval": []},
    "grpo": {"group_size": 4, "prefix_steps": 2, "inner_iterations": 1},
    "train": {"steps": 2, "prompts_per_step": 2, "micro_batch_size": 8, "save_every": 1, "eval_every": 0},
    "logging": {"wandb_mode": "disabled", "progress_bar": False},
    "output_dir": "run",
}
LAUNCHER = "import sys\nfrom rlalign.cli import main\nsys.exit(main())\n"
"""What the `rlalign` console script does; kept outside the case's directory, as the installed script is."""
AS_A_USER = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
"""Root reads every file; without these two capabilities the kernel checks mode bits as for a user."""
WAIT_LIMIT_S = 300.0


class Run:
    """One case's directory and its `rlalign` calls."""

    def __init__(self, tree: Path, work: Path):
        self.tree, self.work = tree, work
        self.launcher = work.parent / "rlalign_launcher.py"
        if not self.launcher.exists():
            self.launcher.write_text(LAUNCHER)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree), "HOME": str(work / "home"),
                    "NETRC": str(work / "no-netrc")}
        self.env.pop("WANDB_API_KEY", None)

    @property
    def before_issue_29(self) -> bool:
        """rewards/ installed as the top-level `rewards` package (before issue 29 made it rlalign.rewards)."""
        return not (self.tree / "setup.py").is_file()

    def examples(self, function: str = "saturation") -> str:
        """A built-in example reward, named as this tree names it."""
        return f"{'rewards' if self.before_issue_29 else 'rlalign.rewards'}.examples:{function}"

    def config(self, name: str = "config.yaml", **sections) -> str:
        values = yaml.safe_load(yaml.safe_dump(CONFIG))
        values["rewards"]["functions"] = [{"name": self.examples()}]
        for section, changes in sections.items():
            values[section] = {**values.get(section, {}), **changes} if isinstance(changes, dict) else changes
        (self.work / name).write_text(yaml.safe_dump(values))
        return name

    def write(self, name: str, text: str) -> str:
        (self.work / name).write_text(text)
        return name

    def command(self, args: tuple[str, ...], as_a_user: bool) -> list[str]:
        return [*(AS_A_USER if as_a_user else []), sys.executable, str(self.launcher), *args]

    def rlalign(self, *args: str, as_a_user: bool = False, timeout: float = 600,
                file_size_limit: int | None = None) -> subprocess.CompletedProcess:
        def limits() -> None:
            if file_size_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        try:
            return subprocess.run(self.command(args, as_a_user), cwd=self.work, env=self.env, capture_output=True,
                                  text=True, timeout=timeout, check=False, preexec_fn=limits)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, returncode=-1, stdout="", stderr=f"(no answer in {timeout:.0f} s: killed)")

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.command(args, False), cwd=self.work, env=env or self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


SAMPLE = ["sample", "config.yaml", "--prompts", "a red circle", "--out", "s.png"]
"""`rlalign sample` of the case's config, one prompt."""


def simple_case(argv: list[str], before: Callable[[Run], None] | None = None) -> Callable[[Run], str]:
    """The case that writes the 2-step config, runs `before` (if any), then `rlalign ARGV`: its row."""
    def case(run: Run) -> str:
        run.config()
        if before is not None:
            before(run)
        return said(run.rlalign(*argv))
    return case


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_until(done: Callable[[], bool], what: str) -> None:
    """Poll for an event another process causes (a file appearing), up to WAIT_LIMIT_S."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {WAIT_LIMIT_S:.0f} s for {what}")
        time.sleep(0.05)


def said(result: subprocess.CompletedProcess) -> str:
    """Exit code and the line that explains best: an `error:` line, else a note or warning, else the last line."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    ranked = [[line for line in lines if re.match(pattern, line)] for pattern in
              (r"^error:", r"^\[rlalign\] (note|warning)|^\(no answer", r"^\w*(Warning|Error):|.*: \w*Warning: ")]
    line = next((found[0] for found in ranked if found), lines[-1] if lines else "")
    if line.endswith(":") and line in lines and lines.index(line) + 1 < len(lines):
        line += " " + lines[lines.index(line) + 1]  # "… differs in settings that change training:" and the first one
    line = re.sub(r"/\S*/bad-inputs-[^/ ]+/case\d+/", "", line)
    return f"exit {result.returncode}: {line[:150]}" if line else f"exit {result.returncode}"


def metrics_steps(run_dir: Path) -> str:
    """How many training-step records metrics.jsonl holds, and for how many distinct steps."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return "no metrics.jsonl"
    steps = [record["step"] for record in map(_json, path.read_text().splitlines()) if "time/step" in record]
    return f"metrics.jsonl: {len(steps)} step records for {len(set(steps))} steps"


def _json(line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError:
        return {}
