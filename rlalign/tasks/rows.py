"""Prompt rows (TRL's dataset convention) as the task-free sources read them: what a row's prompt may be
and which column names it may not take (jsonl: in sources.py, hf: in hf.py)."""

from __future__ import annotations

from rlalign.utils.rows import json_kind

RESERVED_COLUMNS = ("prompts", "completions", "completion_ids")
"""Keywords every reward call passes itself: a dataset column of one of these names would collide."""


def check_row_prompt(row: dict, where: str) -> None:
    """A row's prompt is a non-empty string, or TRL's conversational messages (a list of {"role",
    "content"} dicts, for text families); its other columns do not take the reward call's own names."""
    prompt = row["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError(f"{where}: the prompt is empty; remove the row or give it a prompt")
    elif not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "content" in m for m in prompt)):
        raise ValueError(f"{where}: the prompt is {json_kind(prompt)} ({prompt!r:.40}); a prompt is a string, "
                         "or TRL's conversational messages [{\"role\": ..., \"content\": ...}]")
    else:  # a message without text would reach a chat template (and the rewards) as nothing, or fail there
        for index, message in enumerate(prompt):
            content = message["content"]  # text, or a multimodal message's list of parts
            if not (isinstance(content, str) and content.strip() or isinstance(content, list) and content):
                what = "empty" if isinstance(content, str) else f"{json_kind(content)}, not text"
                raise ValueError(f"{where}: message {index} of the prompt has a \"content\" that is {what}; give "
                                 "each message its text")
    clashing = sorted(set(row) & set(RESERVED_COLUMNS))
    if clashing:
        raise ValueError(f"{where}: column(s) {clashing} take the names rewards are called with (prompts, completions, "
                         "completion_ids); rename them")
