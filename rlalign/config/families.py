"""The generator families by name (`policy.kind`): one table of import strings, nothing imported.

It lives in the config layer so that a config names its family and a typo fails at load time, as a
reward name does (docs/architecture.md, "Layers"), while only rlalign.policies.registry ever imports
a family. A family of your own needs no entry here: `policy.kind: my_package.my_module:MyPolicy`, or
an installed package's entry point in the group `rlalign.policies` (docs/extending.md).
"""

from __future__ import annotations

import difflib
from importlib import metadata

ENTRY_POINT_GROUP = "rlalign.policies"
"""Installed packages register families here: `[project.entry-points."rlalign.policies"] name = "module:Class"`."""

FAMILIES: dict[str, str] = {
    "next_scale": "rlalign.policies.next_scale.policy:NextScalePolicy",
    "insertion": "rlalign.policies.insertion.policy:InsertionPolicy",
    "edit_flow": "rlalign.policies.edit_flow.policy:EditFlowPolicy",
    "infinity": "rlalign.policies.infinity.policy:InfinityPolicy",
}
"""policy.kind → "module:Class" of a class that implements rlalign.policies.registry.PolicyFamily."""


def installed_families() -> dict[str, str]:
    """Families installed packages register under ENTRY_POINT_GROUP: name → "module:Class" (not imported).

    A built-in name cannot be taken over by a package, and of two packages registering one name the first
    on the path wins, as for any import."""
    found: dict[str, str] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in FAMILIES and entry.name not in found:
            found[entry.name] = f"{entry.module}:{entry.attr}"
    return found


def family_target(kind: str) -> str | None:
    """The "module:Class" a policy.kind names (built-in first, then installed), the kind itself when it is
    `module:Class`, or None when it names nothing."""
    if kind in FAMILIES:
        return FAMILIES[kind]
    installed = installed_families()
    if kind in installed:
        return installed[kind]
    module, _, name = kind.partition(":")
    if module and name and all(part.isidentifier() for part in module.split(".")) and name.isidentifier():
        return kind
    return None


def family_problem(kind: str) -> str | None:
    """Why `kind` cannot name a family (None if it can)."""
    if family_target(kind) is not None:
        return None
    installed = installed_families()
    extra = f"; installed: {', '.join(installed)}" if installed else ""
    near = difflib.get_close_matches(kind, [*FAMILIES, *installed], n=1)
    hint = f"did you mean '{near[0]}'? It " if near else ""
    return (f"{hint}is neither a registered family ({', '.join(FAMILIES)}{extra}) nor `module:Class` of a family "
            "of your own (docs/extending.md)")
