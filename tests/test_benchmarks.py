"""Smoke runs of the benchmark scripts (tiny budgets, real outputs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(args, tmp_path):
    res = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_main_job_smoke(tmp_path):
    out = run(["benchmarks/main_job.py", "--budget", "smoke", "--digits", "0",
               "--out", str(tmp_path)], tmp_path)
    table = (tmp_path / "table.md").read_text()
    for name in ("breast_cancer", "wine", "digits-0", "SemSAD", "IsolationForest", "LOF"):
        assert name in table
    assert "**mean**" in out
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 1 + 3 * 3


def test_tabular_suite_resumes(tmp_path, data_home):
    args = ["benchmarks/tabular_suite.py", "--data-home", str(data_home), "--datasets",
            "breastw", "--detectors", "IsolationForest", "--out", str(tmp_path)]
    run(args, tmp_path)
    first = (tmp_path / "runs.csv").read_text()
    out = run(args, tmp_path)  # everything cached: nothing recomputed
    assert (tmp_path / "runs.csv").read_text() == first
    assert "seed=" not in out and "breastw" in (tmp_path / "table.md").read_text()


@pytest.mark.slow
def test_tabular_suite_clean_protocol(tmp_path, data_home):
    run(["benchmarks/tabular_suite.py", "--data-home", str(data_home), "--datasets", "glass",
         "--protocol", "clean", "--out", str(tmp_path)], tmp_path)
    assert "SemSAD" in (tmp_path / "table.md").read_text()
