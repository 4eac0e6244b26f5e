"""The Python entry point, in the shape of TRL's GRPOTrainer (docs/api.md).

    from rlalign import GRPOTrainer

    def short(completions, **kwargs):            # a reward in TRL's convention, defined right here
        return [-len(c) for c in completions]

    trainer = GRPOTrainer("configs/editflow_text.yaml", reward_funcs=[short, "sums_format"],
                          prompts="sums:train", output_dir="runs/api", overrides={"train.steps": 20})
    summary = trainer.train()                    # the numbers of summary.json

Everything the CLI does is available (the same Trainer runs), and a run started here resumes from the
CLI unless it was given Python objects the CLI cannot rebuild (reward callables: resume it here).

- `config`: a YAML path, a dict of sections, a Config, or None (the built-in demo's defaults).
- `reward_funcs`: replaces `rewards.functions`; each entry is a callable (plain or `async def`,
  labelled by its `__name__` as in TRL), a registered name or `module:function` string, or a dict
  with a spec's fields (`name`, `weight`, `args`, ...). `reward_weights` gives their weights (TRL's
  `GRPOConfig.reward_weights`).
- `prompts` / `eval_prompts`: a source string (`shapes:heldout`, `jsonl:PATH`, `hf:...`), a list of
  prompts (strings or TRL-style rows), or a `datasets.Dataset`; lists and datasets are written into
  the run directory (`inputs/`, named by their content's hash), so the run stays reproducible.
- `task`: `prompts.task` (the task whose verifier judges `file:`/`jsonl:` prompts).
- `overrides`: `{"section.key": value}` or `["section.key=value", ...]`, as on the command line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlalign.config import Config, load_config, to_dict, yaml12
from rlalign.evaluation.run_report import write_summary
from rlalign.rewards.registry import CALLABLE_PREFIX
from rlalign.training.checkpoint import run_directory
from rlalign.training.trainer import Trainer
from rlalign.utils.files import user_path, write_text_atomic

RewardLike = Callable | str | Mapping[str, Any]
PromptsLike = str | Sequence | Any  # a source string, a list of prompts or rows, or a datasets.Dataset


class GRPOTrainer:
    """Prefix-GRPO from Python: builds the config, then runs rlalign's Trainer (`.trainer`)."""

    def __init__(self, config: str | Path | Mapping | Config | None = None, *,
                 reward_funcs: RewardLike | Sequence[RewardLike] | None = None,
                 reward_weights: Sequence[float] | None = None, prompts: PromptsLike | None = None,
                 eval_prompts: Mapping[str, PromptsLike] | None = None, task: str | None = None,
                 output_dir: str | Path | None = None, overrides: Mapping[str, Any] | Sequence[str] | None = None,
                 resume: str | Path | None = None, accept_changes: Sequence[str] = ()):
        if resume is not None:  # a resumed run continues in its own directory, as `rlalign train --resume` does
            run_dir = run_directory(resume)  # `~` and $VARS expanded, as the config's output_dir is
            if output_dir is not None and Path(user_path(output_dir, 'output_dir')).resolve() != run_dir.resolve():
                raise ValueError(f"resume={resume} continues the run in {run_dir}, not in output_dir={output_dir}; "
                                 "leave output_dir out (or give the same directory)")
            output_dir = run_dir
        cfg = load_config(_source(config), _override_strings(overrides, output_dir))
        values, callables = to_dict(cfg), {}
        if reward_funcs is not None:
            values["rewards"]["functions"], callables = reward_specs(reward_funcs, reward_weights)
        elif reward_weights is not None:
            raise ValueError("reward_weights needs reward_funcs (the weights follow their order)")
        inputs = Path(values["output_dir"]) / "inputs"
        if prompts is not None:
            values["prompts"]["train"] = prompt_source(prompts, inputs, "train")
        if eval_prompts is not None:
            values["prompts"]["eval"] = {name: prompt_source(p, inputs, f"eval-{name}") for name, p in eval_prompts.items()}
        if task is not None:
            values["prompts"]["task"] = task
        self.config = load_config(values)
        self.callables = callables
        self.trainer = Trainer(self.config, resume=None if resume is None else str(resume),
                               accept_changes=accept_changes, callables=callables)

    def train(self) -> dict:
        """Run to `train.steps`, write summary.md/summary.json and before_after.png as `rlalign train`
        does, and return the summary's numbers."""
        self.trainer.run()
        write_summary(self.config.output_dir)
        return json.loads((Path(self.config.output_dir) / "summary.json").read_text())


def train(config: str | Path | Mapping | Config | None = None, **kwargs: Any) -> dict:
    """`GRPOTrainer(config, **kwargs).train()` in one call."""
    return GRPOTrainer(config, **kwargs).train()


# -------------------------------------------------------------------------------------------------
# Arguments as config values
# -------------------------------------------------------------------------------------------------


def _source(config: str | Path | Mapping | Config | None) -> str | dict | None:
    if isinstance(config, Config):
        return to_dict(config)
    if isinstance(config, Path):
        return str(config)
    if config is None or isinstance(config, (str, dict)):
        return config
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"config must be a YAML path, a dict, a Config or None, got {type(config).__name__}")


def _override_strings(overrides: Mapping[str, Any] | Sequence[str] | None, output_dir: str | Path | None) -> list[str]:
    """`section.key=value` strings; dict values are written as one-line YAML (so lists and dicts work)."""
    if overrides is None:
        strings = []
    elif isinstance(overrides, Mapping):
        strings = [f"{key}={_yaml_value(value)}" for key, value in overrides.items()]
    elif isinstance(overrides, str):
        raise TypeError("overrides must be a dict or a list of 'section.key=value' strings, not one string")
    else:
        strings = list(overrides)
    return strings + ([f"output_dir={output_dir}"] if output_dir is not None else [])


def _yaml_value(value: Any) -> str:
    """`value` as one line of YAML, as an override's right-hand side is read."""
    return yaml12.dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()


def reward_label(fn: Callable) -> str:
    """A callable's metric label, as TRL names reward functions: its `__name__` (a class instance: its class's)."""
    name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None)
    return name or type(fn).__name__


def reward_specs(reward_funcs: RewardLike | Sequence[RewardLike],
                 weights: Sequence[float] | None) -> tuple[list[dict], dict[str, Callable]]:
    """Spec dicts for `rewards.functions` and the callables among them (spec name `python:LABEL`)."""
    funcs = [reward_funcs] if callable(reward_funcs) or isinstance(reward_funcs, (str, Mapping)) else list(reward_funcs)
    if not funcs:
        raise ValueError("reward_funcs is empty: give at least one reward to train on")
    if weights is not None and len(weights) != len(funcs):
        raise ValueError(f"reward_weights has {len(weights)} entries for {len(funcs)} reward_funcs; give one per reward")
    specs, callables = [], {}
    for index, fn in enumerate(funcs):
        if isinstance(fn, str):
            spec = {"name": fn}
        elif isinstance(fn, Mapping):
            spec = dict(fn)
        elif callable(fn):
            label = reward_label(fn)
            name = CALLABLE_PREFIX + label
            if name in callables:
                raise ValueError(f"two reward functions are named {label!r}; give them distinct names (a reward's "
                                 "name is its metric label, rewards/<name>/mean)")
            callables[name] = fn
            spec = {"name": name, "label": label}
        else:
            raise TypeError(f"reward_funcs[{index}] is a {type(fn).__name__}: give a function, a registered name "
                            "or module:function string, or a dict of a reward spec's fields")
        if weights is not None:
            spec["weight"] = float(weights[index])
        specs.append(spec)
    return specs, callables


def prompt_source(prompts: PromptsLike, directory: Path, role: str) -> str:
    """A prompt source string for `prompts`: a source string as it is; a list or a datasets.Dataset
    written to `directory` as `role-<hash>.jsonl` (rows) or `.txt` (plain strings) and named by path."""
    if isinstance(prompts, str):
        return prompts
    if isinstance(prompts, Mapping):  # a datasets.DatasetDict, or a dict: its keys are no prompts
        raise TypeError(f"{role} prompts: got a {type(prompts).__name__} with keys {list(prompts)[:5]}; pick one split "
                        "(dataset['train']) or give a list")
    if hasattr(prompts, "to_list") and hasattr(prompts, "column_names"):  # a datasets.Dataset
        prompts = prompts.to_list()
    prompts = list(prompts)
    if not prompts:
        raise ValueError(f"{role} prompts: the list is empty")
    if all(isinstance(p, Mapping) for p in prompts):
        missing = [i for i, row in enumerate(prompts) if "prompt" not in row]
        if missing:
            raise ValueError(f"{role} prompts: row {missing[0]} has no 'prompt' column (TRL's dataset rows)")
        text, kind, suffix = "".join(json.dumps(dict(row)) + "\n" for row in prompts), "jsonl", ".jsonl"
    elif all(isinstance(p, str) for p in prompts):
        bad = [p for p in prompts if len(p.splitlines()) != 1 or p != p.strip() or p.startswith("#")]
        if bad:
            raise ValueError(f"{role} prompts: {bad[0]!r} is empty, spans lines, has surrounding spaces or starts "
                             "with '#', so a prompt file would not give it back; give rows ({'prompt': ...}) instead")
        text, kind, suffix = "".join(p + "\n" for p in prompts), "file", ".txt"
    else:
        raise TypeError(f"{role} prompts must be strings or rows with a 'prompt' (one kind per list), or a source string")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = directory / f"{role}-{digest}{suffix}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    return f"{kind}:{path}"
