"""scripts/import_graph.py on a tiny synthetic tree: component cycles count imports made in functions,
module-level cycles do not; old-style `rewards...` imports read as `rlalign.rewards...`."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = import_graph  # dataclasses look their module up there
_spec.loader.exec_module(import_graph)

SPLITS = ["rlalign.rewards.registry"]


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path, {
        "rlalign/__init__.py": "",
        "rlalign/a/__init__.py": "",
        "rlalign/a/x.py": "from rlalign.b import y\n",
        "rlalign/b/__init__.py": "",
        "rlalign/b/y.py": "def f():\n    import rlalign.a.x\n",
        "rlalign/c.py": ("from typing import TYPE_CHECKING\nimport rewards.foo\nfrom .a.x import thing\n"
                         "if TYPE_CHECKING:\n    from rlalign.b import y\n"),
        "rewards/__init__.py": "",
        "rewards/foo.py": "from . import registry\n",
        "rewards/registry.py": "",
    })


def test_a_function_level_import_closes_a_component_cycle_but_no_module_cycle(tree):
    result = import_graph.measure(tree, SPLITS)
    assert result["component_cycles"] == [["rlalign.a", "rlalign.b"]]
    assert [(e["from"], e["to"], e["example"]) for e in result["edges_inside_cycles"]] == [
        ("rlalign.a", "rlalign.b", "rlalign/a/x.py:1"), ("rlalign.b", "rlalign.a", "rlalign/b/y.py:2")]
    assert result["module_level_cycles"] == []
    assert result["import_edges"] == {"module_level": 4, "function_level": 1, "distinct": 5}


def test_old_style_and_relative_imports_are_resolved_and_type_checking_skipped(tree):
    modules = import_graph.find_modules(tree)
    assert {"rlalign.rewards", "rlalign.rewards.foo", "rlalign.rewards.registry"} <= set(modules)
    found = {(i.source, i.target, i.in_function) for i in import_graph.collect_imports(tree, modules)}
    assert found == {
        ("rlalign.a.x", "rlalign.b.y", False),
        ("rlalign.b.y", "rlalign.a.x", True),
        ("rlalign.c", "rlalign.rewards.foo", False),  # `import rewards.foo`
        ("rlalign.c", "rlalign.a.x", False),  # `from .a.x import thing`; the TYPE_CHECKING import is skipped
        ("rlalign.rewards.foo", "rlalign.rewards.registry", False),
    }
    components = {c["component"]: c["imports"] for c in import_graph.measure(tree, SPLITS)["components"]}
    assert components["rlalign.rewards"] == ["rlalign.rewards.registry"]  # the registry is its own component
    assert components["rlalign.c"] == ["rlalign.a", "rlalign.rewards"]


def test_a_module_level_cycle_is_found(tree):
    (tree / "rlalign/b/y.py").write_text("import rlalign.a.x\n")
    assert import_graph.measure(tree, SPLITS)["module_level_cycles"] == ["rlalign.a.x → rlalign.b.y → rlalign.a.x"]


def test_the_script_prints_tables_and_writes_json(tree, tmp_path, capsys):
    out = tmp_path / "graph.json"
    import_graph.main(["--root", str(tree), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "## 3. Component cycles: 1, edges inside cycles: 2" in printed
    assert "| rlalign.a | rlalign.b | rlalign/a/x.py:1 |" in printed
    assert json.loads(out.read_text())["modules"]["count"] == 9
