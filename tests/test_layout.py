"""The layout rules of the code and its tests.

* The tests mirror the modules: every module of ``skood/`` that defines a function or a
  class has a test file ``tests/test_<module name without leading underscore>.py``; a
  detector's private sibling module ``_<detector>_parts`` is tested with its detector.
* Every public name, and every function and class a private module declares in its
  ``__all__``, is named in at least one test file (this one aside).
* The public API is exactly what is declared: the public modules are the ones listed
  here, each ``__all__`` resolves, a public module defines no public-looking function or
  class outside its ``__all__``, and the API reference documents no other name.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skood"
TESTS = ROOT / "tests"
API_DOC = ROOT / "docs" / "api" / "index.rst"

#: the public modules (``skood`` itself and its public submodules); a new one is a decision
PUBLIC = ["skood", "skood.adapters", "skood.datasets", "skood.metrics", "skood.persistence",
          "skood.pretrained"]
#: modules outside the rules: the test utilities themselves
EXEMPT = {"_testing"}


def _module_files() -> list[Path]:
    files = [*PACKAGE.glob("*.py"), *PACKAGE.glob("_nn/*.py"), *PACKAGE.glob("_detectors/*.py")]
    return sorted(f for f in files if f.stem != "__init__" and f.stem not in EXEMPT)


def _test_file(path: Path) -> Path:
    name = path.stem.lstrip("_")
    if name.endswith("_parts"):  # the detector module it serves: the one named after it
        owners = [f.stem for f in path.parent.glob(f"{name.removesuffix('_parts')}*.py")]
        name = owners[0] if len(owners) == 1 else name
    return TESTS / f"test_{name}.py"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _defines_code(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
               for n in tree.body)


@cache
def _names_in_tests() -> frozenset[str]:
    """Every identifier the test files use: names, attributes, imported names."""
    names: set[str] = set()
    for path in TESTS.glob("test_*.py"):
        if path.name == "test_layout.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add(node.name.rsplit(".", 1)[-1])
                if node.asname:
                    names.add(node.asname)
    return frozenset(names)


def test_every_module_has_a_mirroring_test_file():
    missing = [f"{_module_name(f)} -> tests/{_test_file(f).name}" for f in _module_files()
               if _defines_code(f) and not _test_file(f).is_file()]
    assert not missing, "modules without a test file of their own:\n" + "\n".join(missing)


def _declared_names() -> list[tuple[str, str]]:
    """(module, name): every name of a public ``__all__``, and the functions and classes of
    the private modules' ``__all__``."""
    out = []
    for mod_name in PUBLIC:
        out += [(mod_name, n) for n in importlib.import_module(mod_name).__all__]
    for path in _module_files():
        mod_name = _module_name(path)
        if mod_name in PUBLIC:
            continue
        mod = importlib.import_module(mod_name)
        for n in getattr(mod, "__all__", []):
            obj = getattr(mod, n)
            if inspect.isfunction(obj) or inspect.isclass(obj) or callable(obj):
                out.append((mod_name, n))
    return out


def test_every_declared_name_is_named_in_a_test():
    used = _names_in_tests()
    missing = sorted({f"{m}.{n}" for m, n in _declared_names() if n not in used})
    assert not missing, "declared names no test names:\n" + "\n".join(missing)


@pytest.mark.parametrize("mod_name", PUBLIC)
def test_public_all_resolves_without_duplicates(mod_name):
    mod = importlib.import_module(mod_name)
    assert len(set(mod.__all__)) == len(mod.__all__), f"{mod_name}.__all__ repeats a name"
    unresolved = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not unresolved, f"{mod_name}.__all__ names what it does not have: {unresolved}"
    assert not [n for n in mod.__all__ if n.startswith("_") and n != "__version__"]


def test_the_public_modules_are_the_declared_ones():
    public = {"skood"} | {f"skood.{f.stem}" for f in PACKAGE.glob("*.py")
                          if not f.stem.startswith("_")}
    public |= {f"skood.{d.name}" for d in PACKAGE.iterdir()
               if d.is_dir() and (d / "__init__.py").is_file() and not d.name.startswith("_")}
    assert public == set(PUBLIC), "a public module must be declared (or made private)"


@pytest.mark.parametrize("mod_name", PUBLIC)
def test_a_public_module_defines_nothing_public_outside_its_all(mod_name):
    """A function or class defined in a public module whose name has no leading underscore
    is public by Python's convention: it must be in ``__all__``, or renamed private."""
    mod = importlib.import_module(mod_name)
    undeclared = [n for n, obj in vars(mod).items()
                  if not n.startswith("_") and n not in mod.__all__
                  and (inspect.isfunction(obj) or inspect.isclass(obj))
                  and obj.__module__ == mod_name]
    assert not undeclared, f"{mod_name} defines public names outside __all__: {undeclared}"


def _documented() -> dict[str, set[str]]:
    """module -> the names the API reference lists under ``.. currentmodule::`` of it."""
    out: dict[str, set[str]] = {}
    current, in_summary = None, False
    for line in API_DOC.read_text().splitlines():
        if m := re.match(r"\.\. currentmodule:: (\S+)", line):
            current, in_summary = m.group(1), False
        elif line.startswith(".. autosummary::"):
            in_summary = True
        elif in_summary and (m := re.match(r"   ([A-Za-z_]\w*)\s*$", line)):
            out.setdefault(current, set()).add(m.group(1))
        elif line and not line.startswith(" "):
            in_summary = False
    return out


@pytest.mark.skipif(not API_DOC.is_file(), reason="no API reference in this checkout")
def test_the_api_reference_documents_exactly_the_declared_names():
    documented = _documented()
    assert set(documented) <= set(PUBLIC), f"documented modules: {sorted(documented)}"
    extra = {f"{m}.{n}" for m, names in documented.items()
             for n in names - set(importlib.import_module(m).__all__)}
    assert not extra, f"documented as public but not in __all__: {sorted(extra)}"
    everywhere = set().union(*documented.values())
    text = API_DOC.read_text()
    undocumented = {f"{m}.{n}" for m in PUBLIC for n in importlib.import_module(m).__all__
                    if n not in everywhere and not re.search(rf"\b{re.escape(n)}\b", text)}
    assert not undocumented, f"declared public but not in the API reference: {undocumented}"
