"""The capture core's boundary: nothing outside ``visualizer._core`` uses a private name of it.

Outside the core, modules may import only the names ``visualizer._core`` and its modules
export (no ``_name``), and may not read or write a private attribute that the core's
classes define (``get_local._captured`` and the like), unless the module defines that
attribute name itself. The core's own tests (tests/core) may look inside it.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORE = ROOT / "visualizer" / "_core"


def _private_names_of_the_core() -> set[str]:
    names = set()
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_"):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                if isinstance(node.value, ast.Name) and node.value.id == "self":
                    names.add(node.attr)
            elif isinstance(node, ast.Name) and node.id.startswith("_") and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (
                isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_")
            ):
                names.add(node.value)  # __slots__ entries
    return {name for name in names if not name.startswith("__")}


def _own_names(tree: ast.AST) -> set[str]:
    """Private names a module defines itself (its own attributes, functions and variables)."""
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.arg):
            own.add(node.arg)
    return own


def _outside_files() -> list[pathlib.Path]:
    files = [p for p in (ROOT / "visualizer").rglob("*.py") if CORE not in p.parents]
    files += [p for p in (ROOT / "tests").rglob("*.py") if (ROOT / "tests" / "core") not in p.parents]
    files += list((ROOT / "benchmarks").glob("*.py"))
    return sorted(files)


def _violations(path: pathlib.Path, private: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("visualizer._core"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in private and node.attr not in own:
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_the_checker_finds_a_private_use(tmp_path):
    private = _private_names_of_the_core()
    assert {"_captured", "_tap", "_store", "_owners"} <= private
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from visualizer._core.records import _UNSET\nfrom visualizer import get_local\nget_local._captured\n"
    )
    assert _violations(bad, private) == [
        "line 1: from visualizer._core.records import _UNSET",
        "line 3: ._captured",
    ]


@pytest.mark.parametrize("path", _outside_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_of_the_core_is_used_outside_it(path):
    assert _violations(path, _private_names_of_the_core()) == []
