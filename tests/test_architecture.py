"""The import rules of docs/architecture.md, checked on the source: every import of a project module
(at module level or inside a function) goes to the importer's own component or to a lower layer, and
the module-level imports form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from rlalign.config.families import FAMILIES as FAMILY_TABLE

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"rlalign": "rlalign", "rewards": "rlalign.rewards", "rollouts": "rlalign.rollouts"}
"""Source folder → the package it installs as (setup.py maps rewards/ and rollouts/ into rlalign)."""

LAYERS: list[list[str]] = [
    ["rlalign.utils", "rlalign.assets"],
    ["rlalign.shapes", "rlalign.sums"],
    ["rlalign.tasks"],
    ["rlalign.rewards.registry"],
    ["rlalign.config"],
    ["rlalign.policies"],
    ["rlalign.rewards", "rlalign.grpo", "rlalign.rollouts"],
    ["rlalign.evaluation"],
    ["rlalign.training"],
    ["rlalign.commands", "rlalign.api"],
    ["rlalign.cli"],
]
"""Components from the bottom layer up (docs/architecture.md, "Layers"). A module belongs to the
component with the longest matching prefix: `rlalign.rewards.registry` (rewards/registry.py, the reward
names the config checks) sits below the config, the rest of `rlalign.rewards` above the policies."""

ROOT_MODULES = {"rlalign": "rlalign.utils"}
"""Package inits outside any component: rlalign/__init__.py holds the version and, imported only on first
use by its `__getattr__`, the Python API (ROOT_EXCEPTIONS)."""
ROOT_EXCEPTIONS = {("rlalign", "rlalign.api")}
"""(importer, imported) pairs allowed against the layers: `from rlalign import GRPOTrainer` resolves lazily."""


def module_name(path: Path) -> str:
    folder, *parts = path.relative_to(ROOT).with_suffix("").parts
    parts = [FOLDERS[folder], *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def component(module: str) -> str:
    if module in ROOT_MODULES:
        return ROOT_MODULES[module]
    matches = [c for layer in LAYERS for c in layer if module == c or module.startswith(c + ".")]
    if not matches:
        raise AssertionError(f"{module} is in no component of docs/architecture.md; add it to LAYERS there and here")
    return max(matches, key=len)


def layer(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if component(module) in names)


def resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def project_imports(path: Path, text: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import of a project module in `text`, the
    source of `path`. `from package import name` gives `package` and also `package.name`, which the
    callers keep only where it is a module."""
    importer, tree = module_name(path), ast.parse(text)
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: never executed
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                target = resolve(child, importer, path.name == "__init__.py")
                names = [target] + [f"{target}.{alias.name}" for alias in child.names]
            found.extend((name, child.lineno, top) for name in names if name.split(".")[0] in FOLDERS)
            visit(child, inner)

    visit(tree, True)
    return found


def _is_module(name: str) -> bool:
    for folder, package in FOLDERS.items():
        if name == package or name.startswith(package + "."):
            path = ROOT / folder / name.removeprefix(package).lstrip(".").replace(".", "/")
            if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
                return True
    return False


def upward_imports(sources: dict[Path, str]) -> list[str]:
    """Every import that leaves its component for the same or a higher layer, as `file:line` lines."""
    wrong = []
    for path, text in sources.items():
        importer = module_name(path)
        for imported, line, _ in project_imports(path, text):
            if not _is_module(imported):
                continue  # `from package import name` of a function or class: `package` is checked
            if (importer, imported) in ROOT_EXCEPTIONS:
                continue
            if component(imported) != component(importer) and layer(imported) >= layer(importer):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported} ({component(importer)}, "
                             f"layer {layer(importer)} → {component(imported)}, layer {layer(imported)})")
    return wrong


def import_cycles(sources: dict[Path, str], *, inside_functions: bool = False) -> list[str]:
    """The cycles of the module-level import graph (with `inside_functions`, of all imports), each as `a → b → a`."""
    graph = {module_name(p): {m for m, _, top in project_imports(p, text) if top or inside_functions}
             for p, text in sources.items()}
    graph = {module: {m for m in targets if m in graph and m != module} for module, targets in graph.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    cycles: list[str] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" → ".join([*path[path.index(target):], module, target]))
            elif target not in state:
                walk(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [])
    return cycles


SOURCES = {p: p.read_text() for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))}


def test_every_import_goes_down_the_layers_or_stays_in_its_component():
    wrong = upward_imports(SOURCES)
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_module_level_imports_have_no_cycle():
    cycles = import_cycles(SOURCES)
    assert not cycles, "module-level import cycles:\n" + "\n".join(cycles)


def test_no_two_modules_need_each_other_even_through_imports_inside_functions():
    """A function-level import only defers the cost; two modules importing each other that way still cannot
    be understood, tested or moved apart (issue 29 removed the last such pairs)."""
    cycles = import_cycles(SOURCES, inside_functions=True)
    assert not cycles, "import cycles through imports inside functions:\n" + "\n".join(cycles)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    """The checks can fail: a policy module importing the trainer at module level, or the rollout
    backends inside a function, is reported with its line; two modules importing each other are a cycle."""
    policy = ROOT / "rlalign/policies/example.py"
    wrong = upward_imports({policy: "import torch\nfrom rlalign.training.trainer import Trainer\n"
                                    "def f():\n    import rlalign.rollouts\n"})
    assert [line.split(" (")[0] for line in wrong] == [
        "rlalign/policies/example.py:2 imports rlalign.training.trainer",
        "rlalign/policies/example.py:4 imports rlalign.rollouts"]
    first, second = ROOT / "rlalign/utils/first.py", ROOT / "rlalign/utils/second.py"
    assert import_cycles({first: "from rlalign.utils import second\n", second: "import rlalign.utils.first\n"}) == [
        "rlalign.utils.first → rlalign.utils.second → rlalign.utils.first"]
    assert import_cycles({first: "def f():\n    from rlalign.utils import second\n",
                          second: "import rlalign.utils.first\n"}) == []


FAMILIES = tuple(sorted({target.partition(":")[0].rsplit(".", 1)[0] for target in FAMILY_TABLE.values()}))


def test_no_policy_family_imports_another():
    """Code several families use lives in rlalign/policies/ itself (shared.py), so each family package
    can be read, changed or removed alone."""
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {imported}"
             for path, text in SOURCES.items() for family in FAMILIES if module_name(path).startswith(family)
             for imported, line, _ in project_imports(path, text)
             if any(imported.startswith(other) for other in FAMILIES if other != family)]
    assert not wrong, "a family imports another:\n" + "\n".join(wrong)


def test_rewards_and_rollouts_import_only_inside_rlalign():
    """rewards/ and rollouts/ install as rlalign.rewards and rlalign.rollouts: nothing imports a top-level
    `rewards` or `rollouts`, which a user's own rewards.py would shadow."""
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {imported}" for path, text in SOURCES.items()
             for imported, line, _ in project_imports(path, text) if imported.split(".")[0] in ("rewards", "rollouts")]
    assert not wrong, "top-level imports of the mapped folders:\n" + "\n".join(wrong)
