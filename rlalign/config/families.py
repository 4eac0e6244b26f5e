"""The generator families by name (`policy.kind`): one table of import strings, nothing imported.

It lives in the config layer so that a config names its family and a typo fails at load time, as a
reward name does (docs/architecture.md, "Layers"), while only rlalign.policies.registry ever imports
a family. A family of your own needs no entry here: `policy.kind: my_package.my_module:MyPolicy`, or
an installed package's entry point in the group `rlalign.policies` (docs/extending.md).
"""

from __future__ import annotations

from rlalign.utils.plugins import PluginTable

ENTRY_POINT_GROUP = "rlalign.policies"
"""Installed packages register families here: `[project.entry-points."rlalign.policies"] name = "module:Class"`."""

FAMILIES: dict[str, str] = {
    "next_scale": "rlalign.policies.next_scale.policy:NextScalePolicy",
    "insertion": "rlalign.policies.insertion.policy:InsertionPolicy",
    "edit_flow": "rlalign.policies.edit_flow.policy:EditFlowPolicy",
    "infinity": "rlalign.policies.infinity.policy:InfinityPolicy",
}
"""policy.kind → "module:Class" of a class that implements rlalign.policies.registry.PolicyFamily."""


TABLE = PluginTable(FAMILIES, ENTRY_POINT_GROUP, "family", form="module:Class")


def installed_families() -> dict[str, str]:
    """Families installed packages register under ENTRY_POINT_GROUP: name → "module:Class" (not imported)."""
    return TABLE.installed()


def family_target(kind: str) -> str | None:
    """The "module:Class" a policy.kind names, or None when it names nothing."""
    return TABLE.target(kind)


def family_problem(kind: str) -> str | None:
    """Why `kind` cannot name a family (None if it can)."""
    return TABLE.problem(kind)
