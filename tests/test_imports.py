"""The package's import graph has no cycle, and every module imports.

The graph is read statically (``ast``) from every ``import`` of a chestx module, those inside
functions included: a lazy import that closes a loop is still a loop (``chestx.cli`` ->
``chestx.tuning.cli`` -> ``chestx.tuning.search`` -> ``chestx.cli`` was one), it only fails
later. Imports under ``if TYPE_CHECKING:`` are annotations, not imports, and are left out.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import chestx

ROOT = Path(chestx.__file__).resolve().parent


def modules() -> dict[str, Path]:
    """Every module of the package (``pkgutil``), name -> file."""
    found = {"chestx": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="chestx."):
        spec = info.module_finder.find_spec(info.name, None)  # type: ignore[call-arg]
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            found[info.name] = Path(spec.origin)
    return found


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The chestx modules that ``name`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in getattr(node, "orelse", []):
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..a import b
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {t for t in targets if t in known and t != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_the_checker_finds_a_lazy_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from chestx import train\n"
        "def handler():\n    from chestx.tuning import search\n"
    )
    known = {"chestx.train", "chestx.tuning.search", "chestx.tuning", "chestx"}
    assert imports_of("chestx.m", source, known) == {"chestx.tuning.search"}


def test_the_graph_covers_the_package():
    graph = import_graph()
    assert {"chestx.cli", "chestx.train", "chestx.tuning.search", "chestx.web.app"} <= set(graph)
    assert "chestx.tuning.search" in graph["chestx.tuning.cli"]  # a lazy import, seen


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# entry points that do something when imported: run the command line, create the app
ENTRY_POINTS = {"chestx.__main__", "chestx.wsgi"}


@pytest.mark.parametrize("name", sorted(set(modules()) - ENTRY_POINTS))
def test_every_module_imports(name):
    importlib.import_module(name)
