"""Tasks: where prompts come from, how samples are judged and in which categories (docs/extending.md).

- `Task`, `PromptSource` (task.py): what a task is, and a parsed prompt source;
- `resolve_task`, `TASKS` (registry.py): tasks by name, `module:attr` or entry point;
- `parse_prompt_source` and the task-free sources `file:`, `jsonl:`, `hf:` (hf.py), `classes:` (sources.py);
- the built-in tasks: `rlalign.tasks.shapes` (the Shapes world's GenEval-style prompts, images and
  captions) and `rlalign.tasks.sums` (the Sums text task).
"""

from rlalign.tasks.registry import TASKS, resolve_task, task_owning
from rlalign.tasks.sources import (
    check_prompt_words,
    parse_prompt_source,
    prompts_from_arguments,
    source_task,
)
from rlalign.tasks.task import PromptSource, Task, Verdict

__all__ = [
    "TASKS", "PromptSource", "Task", "Verdict", "check_prompt_words", "parse_prompt_source", "prompts_from_arguments",
    "resolve_task", "source_task", "task_owning",
]
