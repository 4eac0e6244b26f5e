"""Prompt sources: the strings configs and the CLI use to name where prompts come from.

A source is `kind:argument`. Four kinds belong to no task:

  file:PATH      one prompt per line (blank lines and lines starting with # are skipped)
  jsonl:PATH     a dataset in TRL's convention: one JSON object per line with a "prompt" and any
                 other columns, which rewards receive as keywords (e.g. "solution" for accuracy_reward)
  hf:PATH_OR_NAME[:SPLIT][?column=NAME]
                 Hugging Face `datasets` data as TRL rows, like jsonl: (rlalign/tasks/hf.py): a directory
                 written by save_to_disk, a .jsonl/.json/.csv/.parquet file, or a Hub dataset already in
                 the local cache (read strictly offline); column= picks the prompt column
  classes:A-B    class ids A..B inclusive, for class-conditional models such as VAR
  classes:A,B,C  an explicit list of class ids

Every other kind belongs to a task (rlalign.tasks.registry): the built-in Shapes task owns
`shapes:`, `shapes-eval:`, `shapes-scenes:` and `shapes-scenes-eval:` (rlalign/tasks/shapes/),
the Sums task `sums:` (rlalign/tasks/sums.py), and a config's own task (`prompts.task`) may add
kinds of its own. A task's sources are judged by its verifier; the task-free ones by the verifier of
`prompts.task` when the config names one, else by none.

Fixed sources have a finite list; `draw(count, seed)` walks seeded permutations of it, so one draw
holds no prompt twice before every prompt has appeared once. The trainer draws with a new seed each
step, so across steps every prompt is seen equally often in expectation.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from rlalign.tasks.hf import FORM as HF_FORM
from rlalign.tasks.hf import read_hf
from rlalign.tasks.registry import builtin_tasks, resolve_task, task_owning
from rlalign.tasks.rows import check_row_prompt
from rlalign.tasks.task import PromptSource, Task
from rlalign.utils.files import PathInputError, user_path

GENERIC_FORMS = ("file:PATH", "jsonl:PATH", HF_FORM, "classes:A-B", "classes:A,B,...")
GENERIC_KINDS = ("file", "jsonl", "hf", "classes")


def _generic(spec: str, kind: str, rest: str, task: str | None) -> PromptSource | None:
    if kind == "file":
        return PromptSource(spec, fixed=tuple(_read_prompt_file(rest)), task=task)
    if kind == "jsonl":
        return PromptSource(spec, fixed=tuple(_read_jsonl(rest)), task=task)
    if kind == "hf":
        return PromptSource(spec, fixed=tuple(read_hf(spec, rest)), task=task)
    if kind == "classes":
        return PromptSource(spec, fixed=tuple(_class_ids(spec, rest)), task=task)
    return None


def parse_prompt_source(spec: str, task: str | None = None) -> PromptSource:
    """Parse a source string; `task` is the config's `prompts.task` (it may own kinds of its own, and it
    judges the task-free sources). A bad string fails with the accepted forms."""
    kind, sep, rest = str(spec).partition(":")
    own = resolve_task(task) if task is not None else None
    if sep:
        source = _generic(str(spec), kind, rest, task)
        if source is not None:
            return source
        owner = task_owning(kind, own)
        if owner is not None:
            source = owner.sources[kind](str(spec), rest)
            # The owner's verifier judges its own sources; a config's own task is named as the config names it.
            return source if source.task else PromptSource(source.spec, source.fixed, source.endless,
                                                           task if owner is own else owner.name)
    forms = [*GENERIC_FORMS, *(form for t in ([own] if own else []) + builtin_tasks() for form in t.forms)]
    raise ValueError(f"prompt source {spec!r} is not one of: {', '.join(dict.fromkeys(forms))}")


def source_task(source: PromptSource) -> Task | None:
    """The task whose verifier judges a source's prompts, or None."""
    return resolve_task(source.task) if source.task else None


def is_source(argument: str, task: str | None = None) -> bool:
    """Whether a CLI argument names a prompt source (its kind is known) rather than being a prompt."""
    kind, sep, _ = argument.partition(":")
    own = resolve_task(task) if task is not None else None
    return bool(sep) and (kind in GENERIC_KINDS or task_owning(kind, own) is not None)


def _prompt_file(path: str, form: str) -> Path:
    """The file a `file:` / `jsonl:` path names (rlalign.utils.files.user_path: `~`, `$VARS`)."""
    if not path.strip():
        raise FileNotFoundError(f"prompt source names no file after its kind ({form}); write kind:PATH")
    try:
        return Path(user_path(path, "prompt file"))
    except PathInputError as error:
        raise FileNotFoundError(f"{error} ({form})") from None


def _read_text(file: Path, path: str) -> str:
    """A prompt file's text. A UTF-8 byte-order mark (Windows editors write one) is dropped, not read as part
    of the first prompt; a file in another encoding is named with the offending byte."""
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"prompt file {path!r} is not UTF-8 text (byte {error.object[error.start]:#x} at offset "
                         f"{error.start}); save it as UTF-8") from None


def _read_jsonl(path: str) -> list[dict]:
    """TRL-style rows, one JSON object with a "prompt" per line; every row must have the same columns."""
    file = _prompt_file(path, "jsonl:PATH takes one JSON object per line")
    if not file.is_file():
        raise FileNotFoundError(f"prompt file {path!r} does not exist (jsonl:PATH takes one JSON object per line)")
    rows = []
    for number, line in enumerate(_read_text(file, path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not JSON ({error})") from None
        if not isinstance(row, dict) or "prompt" not in row:
            raise ValueError(f"{path}:{number} must be a JSON object with a \"prompt\" key (TRL's dataset rows)")
        check_row_prompt(row, f"{path}:{number}")
        if rows and set(row) != set(rows[0]):
            raise ValueError(f"{path}:{number} has columns {sorted(row)}, line 1 has {sorted(rows[0])}; "
                             "rewards get one list per column, so every row needs the same ones")
        rows.append(row)
    if not rows:
        raise ValueError(f"prompt file {path!r} holds no rows")
    return rows


def _read_prompt_file(path: str) -> list[str]:
    file = _prompt_file(path, "file:PATH takes one prompt per line")
    if not file.is_file():
        raise FileNotFoundError(f"prompt file {path!r} does not exist (file:PATH takes one prompt per line)")
    prompts = [line.strip() for line in _read_text(file, path).splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {path!r} holds no prompts (one per line; # starts a comment)")
    return prompts


def _class_ids(spec: str, rest: str) -> list[int]:
    try:
        if "-" in rest:
            low, high = (int(part) for part in rest.split("-", 1))
            ids = list(range(low, high + 1))
        else:
            ids = [int(part) for part in rest.split(",")]
    except ValueError:
        raise ValueError(f"prompt source {spec!r}: write classes:A-B or classes:A,B,C with integer ids") from None
    if not ids or min(ids) < 0:
        raise ValueError(f"prompt source {spec!r} gives no non-negative class ids")
    return ids


def check_prompt_words(policy: Any, named_prompts: dict[str, list], *, allow_unknown: bool) -> None:
    """The policy's own prompt checks (`check_prompts`: text it can read, lengths it takes, words its text
    encoder knows), with `allow_unknown` (prompts.allow_unknown_words) waiving only the unknown words. A
    family whose check_prompts takes no `allow_unknown_words` is not checked at all when they are allowed."""
    check = getattr(policy, "check_prompts", None)
    if check is None:
        return
    if allow_unknown and "allow_unknown_words" not in inspect.signature(check).parameters:
        return
    waiver = {"allow_unknown_words": True} if allow_unknown else {}
    for where, prompts in named_prompts.items():
        check(prompts, where=where, **waiver)


def prompts_from_arguments(arguments: list[str], task: str | None = None) -> list:
    """CLI prompts: one argument that is a source gives that source's list; otherwise the literal strings.

    An endless source gives 8 prompts drawn with seed 0.
    """
    if len(arguments) == 1 and is_source(arguments[0], task):
        source = parse_prompt_source(arguments[0], task)
        return source.draw(8, seed=0) if source.fixed is None else source.all()
    return list(arguments)
