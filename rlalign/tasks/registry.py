"""Tasks by name (`prompts.task`) and the prompt-source kinds they own.

The built-in tasks are a table of import strings, like the policy families; a task of your own is
`prompts.task: module:attr` naming a `Task`, or an installed package's entry point in the group
`rlalign.tasks` (docs/extending.md).
"""

from __future__ import annotations

from functools import cache

from rlalign.tasks.task import Task
from rlalign.utils.plugins import PluginTable

TASKS: dict[str, str] = {
    "shapes": "rlalign.tasks.shapes:TASK",
    "sums": "rlalign.tasks.sums:TASK",
}
"""Built-in task name → "module:attr" of its Task."""

TABLE = PluginTable(TASKS, "rlalign.tasks", "task")


@cache
def resolve_task(name: str, setting: str = "prompts.task") -> Task:
    """The Task a name stands for (built-in, installed or `module:attr`); errors name `setting`."""
    task = TABLE.load(name, setting)
    if not isinstance(task, Task):
        raise ValueError(f"{setting}={name!r} names a {type(task).__name__}, not an rlalign.tasks.Task "
                         "(docs/extending.md, 'A task')")
    return task


def builtin_tasks() -> list[Task]:
    return [resolve_task(name) for name in TASKS]


def task_owning(kind: str, extra: Task | None = None) -> Task | None:
    """The task whose sources include `kind`: `extra` (a config's own task) first, then the built-in ones."""
    for task in ([extra] if extra is not None else []) + builtin_tasks():
        if kind in task.sources:
            return task
    return None
