"""Named components that can also come from outside the package: a table of built-in names, the
entry points of installed packages, and `module:attr` strings (docs/extending.md).

Policy families (`policy.kind`) and tasks (`prompts.task`) are both found this way; nothing is
imported until `load` is called, so a config can check a name without importing what it names.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any


def is_import_string(name: str) -> bool:
    """Whether `name` is spelled `package.module:attr`."""
    module, _, attr = name.partition(":")
    return bool(module and attr) and all(part.isidentifier() for part in module.split(".")) and attr.isidentifier()


@dataclass(frozen=True)
class PluginTable:
    """Built-in names → "module:attr", extended by the entry points of `group` and by import strings."""

    builtin: dict[str, str]
    group: str
    what: str
    """What the names name, for messages: "family", "task"."""
    form: str = "module:attr"

    def installed(self) -> dict[str, str]:
        """name → "module:attr" of installed packages' entry points (not imported). A built-in name
        cannot be taken over, and of two packages registering one name the first on the path wins."""
        found: dict[str, str] = {}
        for entry in metadata.entry_points(group=self.group):
            if entry.name not in self.builtin and entry.name not in found:
                found[entry.name] = f"{entry.module}:{entry.attr}"
        return found

    def target(self, name: str) -> str | None:
        """The "module:attr" a name stands for (built-in first, then installed), the name itself when
        it is an import string, or None when it names nothing."""
        if name in self.builtin:
            return self.builtin[name]
        installed = self.installed()
        if name in installed:
            return installed[name]
        return name if is_import_string(name) else None

    def problem(self, name: str) -> str | None:
        """Why `name` names nothing (None if it names something), with a 'did you mean'."""
        if self.target(name) is not None:
            return None
        installed = self.installed()
        extra = f"; installed: {', '.join(installed)}" if installed else ""
        near = difflib.get_close_matches(name, [*self.builtin, *installed], n=1)
        hint = f"did you mean '{near[0]}'? It " if near else ""
        return (f"{hint}is neither a registered {self.what} ({', '.join(self.builtin)}{extra}) nor `{self.form}` "
                f"of a {self.what} of your own (docs/extending.md)")

    def load(self, name: str, setting: str) -> Any:
        """Import what `name` stands for; errors name the `setting`, what was tried and what to do."""
        problem = self.problem(name)
        if problem:
            raise ValueError(f"{setting}={name!r} {problem}")
        module_name, _, attr = self.target(name).partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            if error.name and module_name.startswith(error.name):  # the module itself was not found
                raise ValueError(f"{setting}={name!r}: cannot import {module_name!r} ({error}); is it on the "
                                 "Python path (PYTHONPATH, or installed)?") from None
            raise ValueError(f"{setting}={name!r}: importing {module_name!r} failed: {error}") from error
        if not hasattr(module, attr):
            raise ValueError(f"{setting}={name!r}: {module_name} has no attribute {attr!r}")
        return getattr(module, attr)
