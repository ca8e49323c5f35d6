"""The documentation's runnable parts: docstring examples, getting-started snippets, links.

The Sphinx build itself (warnings as errors, the gallery, the browser check) runs in
``.ci/docs``; these tests need no Sphinx.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
import runpy
import sys
from pathlib import Path

import pytest

import skood

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC_MODULES = ["skood", "skood.metrics", "skood.datasets", "skood.pretrained",
                  "skood.persistence", "skood.adapters"]
USER_GUIDE = {
    "SemSADDetector": "semsad",
    "NSADetector": "nsa",
    "DUMDetector": "dum",
    "DistillNegDetector": "distillneg",
    "RotAuxMSPDetector": "rotaux_msp",
    "FeatureKNNDetector": "feature_knn",
}


def _doctests() -> list[tuple[str, doctest.DocTest]]:
    """The doctests of every public module and of every public name (with its methods)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    seen: set[int] = set()
    seen_tests: set[tuple] = set()
    out = []
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        objs = [(mod_name, mod)] + [(f"{mod_name}.{n}", getattr(mod, n)) for n in mod.__all__]
        for name, obj in objs:
            if id(obj) in seen or not (callable(obj) or obj is mod):
                continue
            seen.add(id(obj))
            home = inspect.getmodule(obj)
            if home is None or not home.__name__.startswith("skood"):
                continue
            # module=home: skood's own docstrings, not those of the names a module imports
            for t in finder.find(obj, name, module=home, globs={}):
                key = (t.filename, t.lineno)
                if (t.examples and key not in seen_tests
                        and not t.name.split(".")[-1].startswith("_")):
                    seen_tests.add(key)
                    out.append((t.name, t))
    return out


DOCTESTS = _doctests()


def test_public_docstrings_have_examples():
    names = {n for n, _ in DOCTESTS}
    for cls in USER_GUIDE:
        assert f"skood.{cls}" in names, f"{cls}'s docstring has no example"


@pytest.mark.parametrize("test", [t for _, t in DOCTESTS], ids=[n for n, _ in DOCTESTS])
def test_docstring_examples(test, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    out: list[str] = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)


@pytest.mark.parametrize("snippet", ["tabular", "images"])
def test_getting_started_snippets_run(snippet, capsys):
    """docs/getting_started.rst includes these files; they must run and separate."""
    path = DOCS / "snippets" / f"{snippet}.py"
    code = path.read_text()
    lines = [ln for ln in code.splitlines() if ln.strip()]
    assert len(lines) <= 12, "getting started promises about ten lines"
    assert not re.search(r"skood\._", code), "snippets import public names only"
    runpy.run_path(str(path), run_name="__main__")
    printed = capsys.readouterr().out
    auroc = float(re.search(r"AUROC ([\d.]+)", printed).group(1))
    assert auroc > 0.8, printed


def test_snippets_are_included():
    page = (DOCS / "getting_started.rst").read_text()
    for snippet in ("tabular", "images"):
        assert f".. literalinclude:: snippets/{snippet}.py" in page


@pytest.mark.parametrize("cls", sorted(USER_GUIDE))
def test_detector_docstring_links_its_user_guide_page(cls):
    label = USER_GUIDE[cls]
    doc = getattr(skood, cls).__doc__
    assert f":ref:`User Guide <{label}>`" in doc
    page = DOCS / "user_guide" / f"{label}.rst"
    text = page.read_text()
    assert text.startswith(f".. _{label}:"), page
    for section in ("The idea", "Parameters that matter", "What the benchmarks show", "Limits"):
        assert f"\n{section}\n" in text, (page, section)
    assert f".. include:: generated/{label}_benchmarks.inc" in text


def test_docs_import_only_public_names():
    for path in [*DOCS.rglob("*.rst"), *DOCS.joinpath("snippets").glob("*.py")]:
        if "_build" in path.parts or "generated" in path.parts or "auto_examples" in path.parts:
            continue
        text = path.read_text()
        assert not re.search(r"(from|import) skood\._", text), path


def test_generated_benchmark_pages(tmp_path):
    """docs/_generate.py turns leaderboard folders into pages and per-detector tables."""
    sys.path.insert(0, str(DOCS))
    try:
        import _generate
    finally:
        sys.path.remove(str(DOCS))
    suite = tmp_path / "benchmarks" / "results" / "leaderboards" / "t-ind"
    suite.mkdir(parents=True)
    (suite / "table.md").write_text(
        "# T-ind: ADBench, inductive\n\nThree seeds.\n\n"
        "| dataset | IsolationForest | NSA | SemSAD † |\n|---|---:|---:|---:|\n"
        "| cardio | **93.1** | 88.0 | — |\n| **mean** | **93.1** | 88.0 | — |\n"
        "| ± sd over seeds | 0.2 | 0.4 | — |\n| fit s per run | 0.1 | 11.3 | — |\n")
    (suite / "heatmap.png").write_bytes(b"png")
    (suite.parent / "summary.md").write_text(
        "# Leaderboard summary\n\n| detector | t-ind |\n|---|---:|\n| NSA | 88.0 |\n"
        "| IsolationForest | 93.1 |\n\nSuites: [t-ind](t-ind/table.md).\n")
    docs = tmp_path / "docs"
    _generate.generate(tmp_path, docs)
    gen = docs / "benchmarks" / "generated"
    page = (gen / "t-ind.md").read_text()
    assert "(leaderboard-t-ind)=\n# T-ind: ADBench, inductive\n" in page
    assert "| cardio | **93.1** | 88.0 | — |" in page and "t-ind/heatmap.png" in page
    assert (gen / "t-ind" / "heatmap.png").exists()
    assert "[t-ind](t-ind.md)" in (gen / "00-summary.md").read_text()
    assert "generated/00-summary\n   generated/t-ind" in (gen / "toctree.inc").read_text()
    nsa = (docs / "user_guide" / "generated" / "nsa_benchmarks.inc").read_text()
    for cell in ("88.0", "0.4", "11.3", "2 of 2", ":ref:`t-ind <leaderboard-t-ind>`"):
        assert cell in nsa, cell
    semsad = (docs / "user_guide" / "generated" / "semsad_benchmarks.inc").read_text()
    assert "not run at current defaults" in semsad
    dum = (docs / "user_guide" / "generated" / "dum_benchmarks.inc").read_text()
    assert "No leaderboard has a column" in dum
    overview = (docs / "user_guide" / "generated" / "overview.inc").read_text()
    assert "IsolationForest" in overview and ":ref:`t-ind <leaderboard-t-ind>`" in overview


def test_real_leaderboards_give_a_page_each(tmp_path):
    """Every committed leaderboard with a table becomes a page (H6's format parses)."""
    boards = ROOT / "benchmarks" / "results" / "leaderboards"
    suites = sorted(p.name for p in boards.glob("*") if (p / "table.md").exists())
    if not suites:
        pytest.skip("no leaderboard committed yet")
    sys.path.insert(0, str(DOCS))
    try:
        import _generate
    finally:
        sys.path.remove(str(DOCS))
    _generate.generate(ROOT, tmp_path)
    for s in suites:
        assert (tmp_path / "benchmarks" / "generated" / f"{s}.md").exists()
        assert _generate.means((boards / s / "table.md").read_text()), s
