"""No import cycle among skood's modules, drawn from the code itself.

The graph is read from the source (every ``import`` and ``from ... import``
statement, including those inside functions, which hide a cycle from the
interpreter but not from a reader), not from what Python happens to import.
An edge goes to the module named: ``from . import persistence`` is an edge
to ``skood.persistence``, ``from ._utils import fit_seed`` one to
``skood._utils`` and ``from . import __version__`` one to the package
``skood`` itself. The implicit import of a module's parent packages is not
an edge (every module would otherwise depend on ``skood/__init__.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import skood

ROOT = Path(skood.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ("skood", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _target(name: str, modules: set[str] | dict[str, Path]) -> str | None:
    """The skood module ``name`` is, or the deepest skood module containing it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def module_imports(source: str, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the module ``name`` (source text ``source``) imports,
    at any depth of its code."""
    package = name if is_package else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source_mod = ".".join(base + ([node.module] if node.module else []))
            else:
                source_mod = node.module or ""
            # ``from pkg import sub`` imports the submodule; ``from mod import name``, mod
            targets = [f"{source_mod}.{a.name}" if f"{source_mod}.{a.name}" in modules
                       else source_mod for a in node.names]
        else:
            continue
        edges |= {t for t in (_target(x, modules) for x in targets) if t and t != name}
    return edges


def import_graph() -> dict[str, set[str]]:
    """``{module: {skood modules it imports}}`` for every module of the package."""
    modules = _modules()
    return {name: module_imports(path.read_text(encoding="utf-8"), name,
                                 path.name == "__init__.py", set(modules))
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_function_level_and_relative_imports():
    modules = {"skood", "skood.a", "skood.b", "skood.sub", "skood.sub.c"}
    source = (
        "import numpy\n"
        "from . import a\n"
        "from .sub.c import thing\n"
        "def f():\n"
        "    from .b import g  # hidden from the interpreter until f runs\n"
        "    from . import __version__\n"
    )
    assert module_imports(source, "skood.x", False, modules) == {
        "skood", "skood.a", "skood.b", "skood.sub.c"}
    assert module_imports("from .. import a\nfrom . import c\n", "skood.sub.d", False,
                          modules) == {"skood.a", "skood.sub.c"}
    assert module_imports("from .c import y\n", "skood.sub", True, modules) == {"skood.sub.c"}
    graph = import_graph()
    assert "skood._utils" in graph["skood.persistence"]
    assert "skood._base" in graph["skood._detectors.nsa"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_skood_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle among skood modules: " + " -> ".join(cycle)


def test_persistence_imports_no_detector():
    """The detector class is passed to ``persistence``, which never imports one."""
    deps = import_graph()["skood.persistence"]
    assert not {d for d in deps if d == "skood._base" or d.startswith("skood._detectors")}
