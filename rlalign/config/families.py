"""The generator families by name (`policy.kind`): one table of import strings, nothing imported.

It lives in the config layer so that a config names its family and a typo fails at load time, as a
reward name does (docs/architecture.md, "Layers"), while only rlalign.policies.registry ever imports
a family. A family of your own needs no entry here: `policy.kind: my_package.my_module:MyPolicy`
(docs/extending.md).
"""

from __future__ import annotations

FAMILIES: dict[str, str] = {
    "next_scale": "rlalign.policies.next_scale.policy:NextScalePolicy",
    "insertion": "rlalign.policies.insertion.policy:InsertionPolicy",
    "edit_flow": "rlalign.policies.edit_flow.policy:EditFlowPolicy",
    "infinity": "rlalign.policies.infinity.policy:InfinityPolicy",
}
"""policy.kind → "module:Class" of a class that implements rlalign.policies.registry.PolicyFamily."""


def family_problem(kind: str) -> str | None:
    """Why `kind` cannot name a family (None if it can): a registered name or `module:Class`."""
    if kind in FAMILIES:
        return None
    module, _, name = kind.partition(":")
    if module and name and all(part.isidentifier() for part in module.split(".")) and name.isidentifier():
        return None
    return (f"is neither a registered family ({', '.join(FAMILIES)}) nor `module:Class` of a family of your own "
            "(docs/extending.md)")
