"""The README a newcomer reads first: short, every snippet runs, its table is the leaderboards'."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from skood._testing import ROOT

README = Path(ROOT) / "README.md"
SUMMARY = Path(ROOT) / "benchmarks/results/leaderboards/summary.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_is_short_and_starts_with_the_two_commands():
    assert README.stat().st_size <= 12 * 1024, f"README.md is {README.stat().st_size} bytes"
    first = _blocks("bash")[0].strip().splitlines()
    assert len(first) == 2
    assert first[0].endswith("benchmarks/main_job.py")
    assert first[1].endswith("-m pytest -q")


def test_readme_python_snippets_run(tmp_path):
    snippets = _blocks("python")
    assert snippets, "the README has no python example"
    for i, code in enumerate(snippets):
        script = tmp_path / f"snippet_{i}.py"
        script.write_text(code)
        r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600, env={"OMP_NUM_THREADS": "1",
                                                        "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, f"README snippet {i} failed:\n{code}\n{r.stderr[-2000:]}"


def test_readme_summary_table_is_the_leaderboards():
    text = README.read_text()
    block = text.split("<!-- summary:begin -->")[1].split("<!-- summary:end -->")[0]
    readme_rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    summary_rows = [ln for ln in SUMMARY.read_text().splitlines() if ln.startswith("|")]
    assert readme_rows == summary_rows, (
        "README's summary table differs from benchmarks/results/leaderboards/summary.md: "
        "copy the table again after `python benchmarks/leaderboard.py`")


def test_readme_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        if "://" in target:
            continue
        assert (Path(ROOT) / target).exists(), f"README links to missing {target}"
