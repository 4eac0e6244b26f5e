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


def require_text(prompt: Any, *, where: str, family: str) -> str:
    """The text of a prompt (a string, or a row's "prompt") for a family without a chat template; anything
    else, TRL's conversational messages included, is refused naming `where`, `family` and what it got."""
    text = prompt_text(prompt)
    if isinstance(text, str):
        return text
    kind = "conversational messages" if isinstance(text, list) else json_kind(text)
    raise ValueError(f"{where}: the {family} family takes text prompts (it has no chat template), got {kind} "
                     f"({text!r:.60}); give the prompt as text")


def json_kind(value: object) -> str:
    """A value's kind as JSON names it (the file a row came from is JSON, not Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


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
