"""Measure the import structure of the project's source tree, to show an architecture refactor's
effect: run it on the commit before the refactor (--rev) and on the tree after, and compare.

Project modules are the .py files under rlalign/, rewards/ and rollouts/; the last two, and old-style
imports of `rewards...`/`rollouts...`, are named `rlalign.rewards...`/`rlalign.rollouts...` as they
install, so trees from either side of that remapping compare. Imports under `if TYPE_CHECKING:` are
skipped; the rest are marked as run at module level (on import) or inside a function (on call).
Components are `rlalign.<second part>`, plus each existing --split module (rlalign.rewards.registry).

Reported: 1. module sizes; 2. the component graph (all imports); 3. component cycles and the edges
inside them: the imports that prevent any layering; 4. module-level import cycles (those closed by
the back edges of a depth-first search): the imports that make import order matter, and the same
over all imports (a cycle closed inside a function is still two modules that need each other); 5. the number of
distinct module-to-module import edges.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rlalign", "rewards", "rollouts")
RENAMED = {"rewards": "rlalign.rewards", "rollouts": "rlalign.rollouts"}
LARGE = 400


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported project module
    file: str  # relative to the root
    line: int
    in_function: bool


def normalise(name: str) -> str:
    """`rewards.x` → `rlalign.rewards.x` (the old top-level packages, as they install now)."""
    head, _, rest = name.partition(".")
    return RENAMED[head] + (f".{rest}" if rest else "") if head in RENAMED else name


def find_modules(root: Path) -> dict[str, Path]:
    """Module name → file, for every .py under the project packages of `root`."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[normalise(".".join(parts[:-1] if parts[-1] == "__init__" else parts))] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """The imported names of one file, as (absolute dotted name, line, inside a function)."""

    def __init__(self, package: str):
        self.package, self.depth, self.found = package, 0, []

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        for child in node.orelse:  # the body is for type checkers only: never run
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [([alias.name], node.lineno, self.depth > 0) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        # `from pkg import name`: pkg.name where that is a module, else pkg
        self.found += [([f"{base}.{alias.name}", base], node.lineno, self.depth > 0) for alias in node.names]


def collect_imports(root: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import of a project module by a project module (itself excluded)."""
    imports = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        collector = _Collector(package)
        collector.visit(ast.parse(path.read_text(), str(path)))
        for candidates, line, in_function in collector.found:
            target = next((normalise(c) for c in candidates if normalise(c) in modules), None)
            if target and target != name:
                imports.append(Import(name, target, str(path.relative_to(root)), line, in_function))
    return imports


def component(module: str, modules: dict[str, Path], splits: list[str]) -> str:
    """`rlalign.<second part>`, or a --split module (where it exists) and all below it."""
    for split in splits:
        if split in modules and (module == split or module.startswith(split + ".")):
            return split
    return ".".join(module.split(".")[:2])


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The nodes a path from `start` reaches."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of `graph`, each sorted: the nodes that reach each other
    (by plain reachability, ample for a graph of some twenty components)."""
    reach = {node: reachable(graph, node) for node in graph}
    groups = {tuple(sorted({node} | {other for other in reach[node] if node in reach[other]})) for node in graph}
    return sorted(list(group) for group in groups)


def dfs_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycle each back edge of a depth-first search (in sorted order) closes, as a → ... → a."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                walk(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return cycles


def component_graph(imports: list[Import], comp: dict[str, str]) -> dict[tuple[str, str], str]:
    """Component edge (importer, imported) → the first import site that makes it."""
    edges: dict[tuple[str, str], str] = {}
    for imp in sorted(imports, key=lambda i: (i.file, i.line)):
        if comp[imp.source] != comp[imp.target]:
            edges.setdefault((comp[imp.source], comp[imp.target]), f"{imp.file}:{imp.line}")
    return edges


def measure(root: Path, splits: list[str]) -> dict:
    """All the numbers of the report, for the tree at `root`."""
    modules = find_modules(root)
    imports = collect_imports(root, modules)
    lines = {name: len(path.read_text().splitlines()) for name, path in modules.items()}
    comp = {name: component(name, modules, splits) for name in modules}
    members = {c: sorted(m for m in comp if comp[m] == c) for c in sorted(set(comp.values()))}

    edges = component_graph(imports, comp)
    graph = {c: {t for s, t in edges if s == c} for c in members}
    cycles = [group for group in strongly_connected(graph) if len(group) > 1]
    cycle_of = {c: i for i, group in enumerate(cycles) for c in group}
    inside = sorted((s, t) for s, t in edges if s in cycle_of and cycle_of[s] == cycle_of.get(t))

    top = {(i.source, i.target) for i in imports if not i.in_function}
    inner = {(i.source, i.target) for i in imports if i.in_function}
    module_graph = {name: {t for s, t in top if s == name} for name in modules}  # module level only
    every_graph = {name: {t for s, t in top | inner if s == name} for name in modules}

    sizes = sorted(lines.items(), key=lambda item: (-item[1], item[0]))
    return {
        "modules": {"count": len(modules), "total_lines": sum(lines.values()),
                    "median_lines": statistics.median(lines.values()) if lines else 0,
                    "largest": [{"module": m, "lines": n} for m, n in sizes[:5]],
                    f"over_{LARGE}_lines": sum(n > LARGE for n in lines.values())},
        "components": [{"component": c, "lines": sum(lines[m] for m in ms), "modules": len(ms),
                        "imports": sorted(graph[c])} for c, ms in members.items()],
        "component_cycles": cycles,
        "edges_inside_cycles": [{"from": s, "to": t, "example": edges[s, t]} for s, t in inside],
        "module_level_cycles": [" → ".join(cycle) for cycle in dfs_cycles(module_graph)],
        "module_cycles_all_imports": [" → ".join(cycle) for cycle in dfs_cycles(every_graph)],
        "import_edges": {"module_level": len(top), "function_level": len(inner), "distinct": len(top | inner)},
    }


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def report(result: dict, title: str) -> str:
    """The result as Markdown."""
    mods, cycles, inside = result["modules"], result["component_cycles"], result["edges_inside_cycles"]
    out = [f"# Import graph: {title}", "## 1. Modules",
           table(["count", "total lines", "median lines", f"> {LARGE} lines"],
                 [[mods["count"], mods["total_lines"], mods["median_lines"], mods[f"over_{LARGE}_lines"]]]),
           table(["largest modules", "lines"], [[m["module"], m["lines"]] for m in mods["largest"]]),
           "## 2. Component graph (all imports: module level and in functions)",
           table(["component", "lines", "modules", "imports"],
                 [[c["component"], c["lines"], c["modules"], ", ".join(c["imports"]) or "—"]
                  for c in result["components"]]),
           f"## 3. Component cycles: {len(cycles)}, edges inside cycles: {len(inside)}"]
    if cycles:
        out.append(table(["cycle", "components"], [[i + 1, ", ".join(group)] for i, group in enumerate(cycles)]))
        out.append(table(["from", "to", "example"], [[e["from"], e["to"], e["example"]] for e in inside]))
    out.append(f"## 4. Module-level import cycles: {len(result['module_level_cycles'])}")
    out.append("\n".join(f"- {cycle}" for cycle in result["module_level_cycles"]) or "none")
    every = result["module_cycles_all_imports"]
    out.append(f"Counting imports inside functions too (the modules depend on each other either way): {len(every)}")
    out.append("\n".join(f"- {cycle}" for cycle in every) or "none")
    edges = result["import_edges"]
    out.append("## 5. Import edges between project modules")
    out.append(table(["module level", "in functions", "distinct (either)"],
                     [[edges["module_level"], edges["function_level"], edges["distinct"]]]))
    return "\n\n".join(out)


def extract(rev: str, into: Path) -> None:
    """The tree of commit `rev` of this repository, written under `into` (git archive | tar -x)."""
    step = subprocess.run(["git", "-C", str(REPO), "archive", rev], stdout=subprocess.PIPE, check=False)
    if not step.returncode:
        step = subprocess.run(["tar", "-x", "-C", str(into)], input=step.stdout, check=False)
    if step.returncode:
        raise SystemExit(f"could not extract revision {rev} of {REPO}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--rev", help="measure this git commit of the repository")
    where.add_argument("--root", type=Path, help="measure this directory (default: the working tree)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--split", action="append", help="a module that is a component of its own "
                        "(repeatable; default: rlalign.rewards.registry)")
    args = parser.parse_args(argv)
    splits = args.split or ["rlalign.rewards.registry"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.rev:
            extract(args.rev, Path(tmp))
            root, title = Path(tmp), f"rev {args.rev}"
        else:
            root = (args.root or REPO).resolve()
            title = str(root)
        result = {"source": title, "splits": splits, **measure(root, splits)}
    print(report(result, title))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
