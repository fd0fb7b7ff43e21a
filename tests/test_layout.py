"""The package's layout: imports point one way and no module takes another's private names.

Builds replay's import graph from the source with ``ast`` (every ``import``
and ``from ... import``, at any depth, so a lazy import inside a function
counts too) and fails on any circle among replay's modules, and on any
module importing an underscore name from another module of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "replay"


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by __init__)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = f.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], list[str]]:
    """The package modules ``name`` imports, and the private names it takes from others."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    private: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in modules:  # `from replay.models import zone`
                    targets.add(full)
                elif source in modules:
                    targets.add(source)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        if source != name:
                            private.append(f"{name} takes {source}.{alias.name}")
    targets.discard(name)
    return targets, private


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_circles_and_no_private_names_across_modules() -> None:
    modules = module_files()
    graph: dict[str, set[str]] = {}
    private: list[str] = []
    for name, path in modules.items():
        graph[name], taken = imports_of(name, path, modules)
        private += taken
    assert circles(graph) == [], "import circles among replay's modules"
    assert private == [], "modules taking another module's underscore names"


def test_the_checker_sees_circles_and_private_names(tmp_path: Path) -> None:
    """The check itself: a planted circle (one import lazy) and a private import fail it."""
    pkg = tmp_path / "replay"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from replay.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from replay import a\n")
    (pkg / "c.py").write_text("from replay.sub.b import _helper\n")
    modules = module_files(pkg)
    graph = {}
    private = []
    for name, path in modules.items():
        graph[name], taken = imports_of(name, path, modules)
        private += taken
    assert circles(graph) == [["replay.a", "replay.sub.b"]]
    assert private == ["replay.c takes replay.sub.b._helper"]


@pytest.mark.parametrize(
    "mechanism",
    ["buddy", "pcp", "page_alloc", "watermarks", "compaction", "reclaim", "defrag", "pools"],
)
def test_model_mechanisms_sit_below_the_dispatch(mechanism: str) -> None:
    """A mechanism imports the declarations and the mechanisms below it, never the
    event dispatch (``events``) or the Python handle (``zone``) on top."""
    modules = module_files()
    name = f"replay.models.{mechanism}"
    targets, _ = imports_of(name, modules[name], modules)
    assert not targets & {"replay.models.events", "replay.models.zone"}
