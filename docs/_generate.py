"""Pages generated at build time from the leaderboards (``python benchmarks/leaderboard.py``).

Input, ``benchmarks/results/leaderboards/``: one folder per suite with ``table.md`` (its
title, how it was made, the dataset x detector table with ``mean`` / ``± sd over seeds`` /
``fit s per run`` rows) and figures (``heatmap.png``, ``cost.png``), and ``summary.md``
(mean AUROC per suite and detector). Output:

* ``docs/benchmarks/generated/<suite>.md``: one page per suite, the table and figures;
* ``docs/benchmarks/generated/00-summary.md`` and ``toctree.inc``: the summary page and
  the benchmark index's table of contents, in the summary's suite order;
* ``docs/user_guide/generated/<detector>_benchmarks.inc``: each detector's mean, spread,
  rank and fit time in every suite, included by its user-guide page;
* ``docs/user_guide/generated/overview.inc``: the summary table, for "Choosing a detector".

The numbers are copied from the leaderboards as they are (ranks are counted from them),
so the docs cannot drift from the committed results.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

#: the user-guide detector pages and the names their columns carry in the leaderboards
DETECTORS = {
    "semsad": ("SemSAD", "SemSADDetector"),
    "nsa": ("NSA", "NSADetector"),
    "dum": ("DUM", "DUMDetector"),
    "distillneg": ("DistillNeg", "DistillNegDetector"),
    "rotaux_msp": ("RotAuxMSP", "RotAuxMSPDetector"),
    "feature_knn": ("FeatureKNN", "FeatureKNNDetector"),
}


def _write(path: Path, text: str) -> None:
    """Write ``text`` only when it changed (Sphinx then does not rebuild the page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _title(suite: str, md: str) -> str:
    for line in md.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return suite


def _demote(md: str, below: int = 1) -> str:
    """Markdown without its first H1 and with the other headings ``below`` levels down."""
    out, dropped, fenced = [], False, False
    for line in md.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#+)\s+(.*)$", line)
        if m:
            if len(m.group(1)) == 1 and not dropped:
                dropped = True
                continue
            line = "#" * min(6, len(m.group(1)) + below) + " " + m.group(2)
        out.append(line)
    return "\n".join(out).strip() + "\n"


def _strip_images(md: str) -> str:
    """Markdown without image lines (the page shows the figures itself)."""
    return "\n".join(ln for ln in md.splitlines() if not re.match(r"^\s*!\[", ln))


def _suite_links(md: str) -> str:
    """Links to ``<suite>/table.md`` pointed at the generated suite pages."""
    return re.sub(r"\]\(([\w.-]+)/table\.md\)", r"](\1.md)", md)


def parse_table(md: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown pipe table in ``md``: header cells and body rows."""
    lines = [ln.strip() for ln in md.splitlines()]

    def cells(s: str) -> list[str]:
        return [c.strip() for c in s.strip().strip("|").split("|")]

    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.match(r"^\|?\s*:?-{3,}", lines[i + 1]):
            rows = []
            for ln in lines[i + 2:]:
                if not ln.startswith("|"):
                    break
                rows.append(cells(ln))
            return cells(lines[i]), rows
    return [], []


def _clean(cell: str) -> str:
    """A cell without Markdown emphasis and footnote marks."""
    return re.sub(r"[*_`†‡]", "", cell).strip()


def _name(cell: str) -> str:
    return _clean(cell).split("(")[0].strip().lower()


def _matches(cell: str, names: tuple[str, ...]) -> bool:
    return _name(cell) in {n.lower() for n in names}


def _number(cell: str) -> float | None:
    m = re.match(r"^-?\d+(\.\d+)?", _clean(cell))
    return float(m.group(0)) if m else None


def means(md: str) -> dict[str, str]:
    """Every entry's mean (the row or column whose name starts with "mean")."""
    header, rows = parse_table(md)
    if not header:
        return {}
    cols = [j for j, h in enumerate(header) if j and _name(h).startswith("mean")]
    if cols:  # entries are rows
        return {_clean(r[0]): r[cols[0]] for r in rows if r and cols[0] < len(r)}
    for r in rows:  # entries are columns
        if r and _name(r[0]) == "mean":
            return {_clean(h): r[j] for j, h in enumerate(header) if j and j < len(r)}
    return {}


def detector_rows(md: str, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """(column, value) pairs summarising one detector in a leaderboard table.

    Detectors as columns (the leaderboards' layout): the summary rows (mean, spread,
    rank, fit seconds) of the detector's column and its rank by mean among all columns.
    Detectors as rows: the detector's row, its summary columns only.
    """
    header, rows = parse_table(md)
    if not header:
        return []
    summary = re.compile(r"^(mean|±|sd|rank|average|fit|score)")
    if any(_matches(h, names) for h in header[1:]):
        col = next(j for j, h in enumerate(header) if j and _matches(h, names))
        out = [(_clean(r[0]), _clean(r[col])) for r in rows
               if r and summary.match(_name(r[0])) and col < len(r)]
        mean_row = next((r for r in rows if r and _name(r[0]) == "mean"), None)
        if mean_row and col < len(mean_row) and _number(mean_row[col]) is not None:
            vals = [v for v in (_number(c) for c in mean_row[1:]) if v is not None]
            mine = _number(mean_row[col])
            rank = 1 + sum(v > mine for v in vals)
            out.append(("rank by mean", f"{rank} of {len(vals)}"))
        return out
    for r in rows:
        if r and _matches(r[0], names):
            keep = [j for j, h in enumerate(header) if j and summary.match(_name(h))]
            return [(_clean(header[j]), _clean(r[j])) for j in keep or range(1, len(header))
                    if j < len(r)]
    return []


def _rst_table(head: list[str], body: list[list[str]]) -> str:
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in [head, *body]:
        out.append("   * - " + (row[0] or " "))
        out.extend("     - " + (c or " ") for c in row[1:])
    return "\n".join(out) + "\n"


def _suite_page(suite: str, suite_dir: Path, out: Path) -> tuple[str, str]:
    table_md = (suite_dir / "table.md").read_text()
    title = _title(suite, table_md)
    figs = sorted((p.name for p in suite_dir.glob("*.png")),
                  key=lambda f: (f != "heatmap.png", f != "cost.png", f))
    for f in figs:
        (out / suite).mkdir(exist_ok=True)
        shutil.copy2(suite_dir / f, out / suite / f)
    # a leaderboard is a wide table: its page drops the right sidebar for the width
    parts = ["---", "html_theme.sidebar_secondary.remove: true", "---", "",
             f"(leaderboard-{suite})=", f"# {title}", "",
             _suite_links(_strip_images(_demote(table_md))), ""]
    captions = {"heatmap.png": "AUROC per data set and detector",
                "cost.png": "Fit time against mean AUROC"}
    for f in figs:
        parts += [f"## {captions.get(f, f[:-4])}", "",
                  f"```{{image}} {suite}/{f}", f":alt: {title}: {captions.get(f, f[:-4])}",
                  ":width: 100%", "```", ""]
    parts += [f"Source: `benchmarks/results/leaderboards/{suite}/`, regenerated by "
              "`python benchmarks/leaderboard.py`.", ""]
    _write(out / f"{suite}.md", "\n".join(parts))
    return title, table_md


def generate(root: Path, docs: Path) -> None:
    """Write the benchmark pages and the detectors' benchmark tables."""
    boards = root / "benchmarks" / "results" / "leaderboards"
    out = docs / "benchmarks" / "generated"
    ug = docs / "user_guide" / "generated"
    for d in (out, ug):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    summary_md = (boards / "summary.md").read_text() if (boards / "summary.md").exists() else ""
    s_head, s_rows = parse_table(summary_md)
    found = sorted(p.name for p in boards.glob("*") if (p / "table.md").exists())
    order = [h for h in s_head[1:] if h in found] + [s for s in found if s not in s_head]
    tables = {s: _suite_page(s, boards / s, out) for s in order}

    toc = [".. toctree::", "   :maxdepth: 1", ""]
    if summary_md:
        _write(out / "00-summary.md", "(leaderboard-summary)=\n"
               + _suite_links(summary_md).replace("# Leaderboard summary", "# Summary", 1))
        toc.append("   generated/00-summary")
    toc += [f"   generated/{s}" for s in tables]
    if not tables:
        _write(out / "none.md", "# No leaderboard yet\n\nRun `python benchmarks/leaderboard.py` "
               "to write `benchmarks/results/leaderboards/`; the pages are generated from it.\n")
        toc.append("   generated/none")
    _write(out / "toctree.inc", "\n".join(toc) + "\n")

    if s_head:
        head = [_clean(s_head[0]), *(f":ref:`{h} <leaderboard-{h}>`" if h in tables else h
                                     for h in s_head[1:])]
        _write(ug / "overview.inc", _rst_table(head, s_rows))
    else:
        _write(ug / "overview.inc", "No leaderboard yet (:doc:`/benchmarks/index`).\n")

    for key, names in DETECTORS.items():
        head, per_suite = ["suite"], []
        for suite, (title, md) in tables.items():
            pairs = detector_rows(md, names)
            if pairs and _number(dict(pairs).get("mean", "")) is None:
                pairs = [("mean", "not run at current defaults")]
            if pairs:
                per_suite.append((suite, title, dict(pairs)))
                head += [c for c, _ in pairs if c not in head]
        body = [[f":ref:`{suite} <leaderboard-{suite}>`: {title}",
                 *(vals.get(c, "") for c in head[1:])] for suite, title, vals in per_suite]
        text = _rst_table(head, body) if body else (
            "No leaderboard has a column for this detector yet (see :doc:`/benchmarks/index`).\n")
        _write(ug / f"{key}_benchmarks.inc", text)
