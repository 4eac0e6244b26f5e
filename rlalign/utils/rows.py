"""Prompts as dataset rows, in TRL's convention: a row is a mapping with a "prompt" and any other
columns ("solution", "target", …). Policies read the prompt; rewards get the prompt and, as keyword
arguments, one list per other column, as TRL's GRPOTrainer passes its dataset columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def prompt_text(prompt: Any) -> Any:
    """A row's "prompt"; any other prompt (a string, a Shapes scene, a class id) as it is."""
    if isinstance(prompt, Mapping):
        if "prompt" not in prompt:
            raise ValueError(f"a prompt row needs a 'prompt' column, got columns {sorted(prompt)}")
        return prompt["prompt"]
    return prompt


def split_rows(prompts: Sequence[Any]) -> tuple[list[Any], dict[str, list[Any]]]:
    """(prompts, columns): rows become their "prompt" and each other column a list over the batch; a
    batch without rows comes back unchanged with no columns. Rows of one batch must share their columns."""
    if not any(isinstance(p, Mapping) for p in prompts):
        return list(prompts), {}
    if not all(isinstance(p, Mapping) for p in prompts):
        raise ValueError("a batch mixes prompt rows (mappings) with plain prompts; use one kind per prompt source")
    names = [name for name in prompts[0] if name != "prompt"]
    for row in prompts:
        if set(row) != {"prompt", *names}:
            raise ValueError(f"prompt rows of one batch have different columns: {sorted(prompts[0])} vs {sorted(row)}")
    return [prompt_text(p) for p in prompts], {name: [row[name] for row in prompts] for name in names}
