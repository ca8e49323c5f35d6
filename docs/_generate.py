"""Pages generated at build time from the leaderboards (``python benchmarks/leaderboard.py``).

For every suite folder ``benchmarks/results/leaderboards/<suite>/`` (``table.md``,
``summary.md``, ``heatmap.png``, ``cost.png``, any other ``*.png``) this writes one
Markdown page ``docs/benchmarks/generated/<suite>.md`` with the summary, the table and
the figures, and for every detector a small reStructuredText table
``docs/user_guide/generated/<detector>_benchmarks.inc`` (its mean and rank in each
suite's table, with links to the suite pages) that the user-guide pages include. The
numbers are copied from the leaderboards as they are, so they cannot go stale.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

#: the user-guide detector pages and the names their rows carry in the leaderboards
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


def _title(suite: str, summary: str) -> str:
    for line in summary.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return suite.replace("_", " ").replace("-", " ")


def _demote(md: str, below: int = 1) -> str:
    """Markdown with its headings moved ``below`` levels down and the first H1 dropped."""
    out, dropped = [], False
    for line in md.splitlines():
        m = re.match(r"^(#+)\s+(.*)$", line)
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


def parse_table(md: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown pipe table in ``md``: header cells and body rows."""
    lines = [ln.strip() for ln in md.splitlines()]
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.match(r"^\|?\s*:?-{3,}", lines[i + 1]):
            def cells(s: str) -> list[str]:
                return [c.strip() for c in s.strip().strip("|").split("|")]

            header = cells(lines[i])
            rows = []
            for ln in lines[i + 2:]:
                if not ln.startswith("|"):
                    break
                rows.append(cells(ln))
            return header, rows
    return [], []


def _clean(cell: str) -> str:
    return re.sub(r"[*_`]", "", cell).strip()


def _matches(cell: str, names: tuple[str, ...]) -> bool:
    c = _clean(cell).split("(")[0].strip().lower()
    return c in {n.lower() for n in names}


def detector_rows(md: str, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """(column, value) pairs of a detector's summary in a leaderboard table.

    Detectors as rows: the detector's row, every column except the per-dataset ones
    when a "mean" column exists (mean, rank, seconds ...). Detectors as columns: the
    rows whose first cell starts with "mean" or "rank".
    """
    header, rows = parse_table(md)
    if not header:
        return []
    if any(_matches(h, names) for h in header[1:]):
        col = next(j for j, h in enumerate(header) if j and _matches(h, names))
        return [(_clean(r[0]), r[col]) for r in rows
                if r and re.match(r"^(mean|rank|average|fit)", _clean(r[0]).lower())
                and col < len(r)]
    for r in rows:
        if r and _matches(r[0], names):
            keep = [j for j, h in enumerate(header)
                    if j and re.search(r"mean|rank|average|fit|score|seconds|time", h.lower())]
            if not keep:
                keep = list(range(1, len(header)))
            return [(_clean(header[j]), r[j]) for j in keep if j < len(r)]
    return []


def means(md: str) -> dict[str, str]:
    """Every entry's mean (first column or row whose name starts with "mean") in a table."""
    header, rows = parse_table(md)
    if not header:
        return {}
    cols = [j for j, h in enumerate(header) if j and _clean(h).lower().startswith("mean")]
    if cols:  # entries are rows
        return {_clean(r[0]): r[cols[0]] for r in rows if r and cols[0] < len(r)}
    for r in rows:  # entries are columns
        if r and _clean(r[0]).lower().startswith("mean"):
            return {_clean(h): r[j] for j, h in enumerate(header) if j and j < len(r)}
    return {}


def _rst_table(head: list[str], body: list[list[str]]) -> str:
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in [head, *body]:
        out.append("   * - " + (row[0] or " "))
        out.extend("     - " + (c or " ") for c in row[1:])
    return "\n".join(out) + "\n"


def generate(root: Path, docs: Path) -> None:
    """Write the benchmark pages and the detectors' benchmark tables."""
    boards = root / "benchmarks" / "results" / "leaderboards"
    out = docs / "benchmarks" / "generated"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    suites = sorted(p for p in boards.iterdir() if p.is_dir()) if boards.is_dir() else []
    tables: dict[str, tuple[str, str]] = {}
    for suite_dir in suites:
        suite = suite_dir.name
        table = suite_dir / "table.md"
        summary = suite_dir / "summary.md"
        if not table.exists():
            continue
        table_md = table.read_text()
        summary_md = summary.read_text() if summary.exists() else ""
        title = _title(suite, summary_md or table_md)
        figs = []
        for png in sorted(suite_dir.glob("*.png")):
            (out / suite).mkdir(exist_ok=True)
            shutil.copy2(png, out / suite / png.name)
            figs.append(png.name)
        order = sorted(figs, key=lambda f: (f != "heatmap.png", f != "cost.png", f))
        parts = [f"(leaderboard-{suite})=", f"# {title}", ""]
        if summary_md:
            parts += [_strip_images(_demote(summary_md)), ""]
        parts += ["## Table", "", _strip_images(_demote(table_md)), ""]
        if order:
            parts += ["## Figures", ""]
            for f in order:
                parts += [f"```{{image}} {suite}/{f}", f":alt: {title}: {f[:-4]}",
                          ":width: 100%", "```", ""]
        parts += [f"Source: `benchmarks/results/leaderboards/{suite}/`, regenerated by "
                  "`python benchmarks/leaderboard.py`.", ""]
        _write(out / f"{suite}.md", "\n".join(parts))
        tables[suite] = (title, table_md)
    if not tables:
        _write(out / "none.md", "# No leaderboard yet\n\nRun `python benchmarks/leaderboard.py` "
               "to write `benchmarks/results/leaderboards/`; the pages are generated from it.\n")

    ug = docs / "user_guide" / "generated"
    if ug.exists():
        shutil.rmtree(ug)
    ug.mkdir(parents=True)
    per = {suite: means(md) for suite, (_t, md) in tables.items()}
    names: list[str] = []
    for m in per.values():
        names += [n for n in m if n not in names]
    if names:
        head = ["", *(f":ref:`{tables[s][0]} <leaderboard-{s}>`" for s in per)]
        body = [[n, *(per[s].get(n, "") for s in per)] for n in names]
        _write(ug / "overview.inc", _rst_table(head, body))
    else:
        _write(ug / "overview.inc", "No leaderboard yet (:doc:`/benchmarks/index`).\n")
    for key, names in DETECTORS.items():
        body, head = [], ["suite"]
        per_suite = []
        for suite, (title, md) in tables.items():
            pairs = detector_rows(md, names)
            if pairs:
                per_suite.append((suite, title, pairs))
                for col, _ in pairs:
                    if col not in head:
                        head.append(col)
        for suite, _, pairs in per_suite:
            vals = dict(pairs)
            body.append([f":ref:`leaderboard-{suite}`"] + [vals.get(c, "") for c in head[1:]])
        if body:
            text = _rst_table(head, body)
        else:
            text = ("No leaderboard has a row for this detector yet (see "
                    ":doc:`/benchmarks/index`).\n")
        _write(ug / f"{key}_benchmarks.inc", text)
