"""The benchmark engine (in process) and smoke runs of the benchmark scripts (subprocesses at
tiny budgets, real outputs).

The scripts are not on ``sys.path``: :func:`skood._testing.benchmark_module` imports one
from its file (its sibling modules first), and every run of a script, and every sweep with
several workers (whose workers import the scripts' modules), is a subprocess.
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from skood._testing import benchmark_module

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

_suite = benchmark_module("_suite")


def run(args, progress_flag=True):
    res = subprocess.run([sys.executable, *args, *(["--no-progress"] if progress_flag else [])],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_main_job_smoke(tmp_path):
    out = run(["benchmarks/main_job.py", "--budget", "smoke", "--digits", "0",
               "--detectors", "SemSAD", "IsolationForest", "LOF", "--out", str(tmp_path)])
    table = (tmp_path / "table.md").read_text()
    for name in ("breast_cancer", "wine", "digits-0", "SemSAD", "IsolationForest", "LOF",
                 "mean rank", "AP", "Cost per run", "| SemSAD | 3 |"):
        assert name in table
    assert "**mean**" in out
    # one sentence on where skood stands against the two baselines, and where to look next
    verdict = [ln for ln in out.splitlines() if ln.startswith("On scikit-learn's small tables")]
    assert len(verdict) == 1 and "LOF" in verdict[0] and "docs/benchmarks" in verdict[0]
    rows = read_rows(tmp_path / "runs.csv")
    assert len(rows) == 3 * 3 and not any(r["error"] for r in rows)
    for r in rows:
        assert 0.0 <= float(r["auroc"]) <= 1.0 and float(r["fit_s"]) > 0.0  # a measured time
    assert (tmp_path / "figure.png").stat().st_size > 1000
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert {"versions", "device", "wall_s_this_call"} <= set(meta)
    assert meta["versions"]["torch"].startswith("2.")


def test_main_job_verdict_is_computed_from_the_runs():
    main_job = benchmark_module("main_job")

    def rows(**means):
        return [{"dataset": d, "detector": det, "seed": 0, "auroc": v}
                for det, v in means.items() for d in ("wine", "digits-0")]

    behind = main_job.verdict(rows(IsolationForest=0.9, LOF=0.8, SemSAD=0.7, NSA=0.79))
    assert "every skood detector is behind IsolationForest and LOF" in behind
    assert behind.startswith("On scikit-learn's small tables and 8x8 digits")
    mixed = main_job.verdict(rows(IsolationForest=0.9, LOF=0.8, SemSAD=0.85, NSA=0.7))
    assert "SemSAD is level with or ahead of LOF" in mixed and "the other skood" in mixed
    assert "docs/benchmarks" in behind and "docs/benchmarks" in mixed


def test_main_job_default_detectors_are_skood_plus_if_lof():
    import skood

    avail = _suite.available_detectors()
    assert [d for d in avail if d in _suite.SKOOD] == [
        k for k, cls in _suite.SKOOD.items() if hasattr(skood, cls)]
    assert "SemSAD" in avail and "IsolationForest" in avail


def test_tabular_suite_resumes_from_cache(tmp_path, data_home):
    args = ["benchmarks/tabular_suite.py", "--data-home", str(data_home), "--datasets",
            "breastw", "--sources", "adbench", "--detectors", "IsolationForest", "ECOD",
            "--seeds", "0", "1", "--budget", "smoke", "--out", str(tmp_path)]
    run(args)
    cache = tmp_path / "inductive" / "smoke" / "cache"
    files = sorted(cache.glob("*.json"))
    assert len(files) == 2 * 2
    stamps = [f.stat().st_mtime_ns for f in files]
    first = read_rows(tmp_path / "inductive" / "smoke" / "runs.csv")
    # an interrupted sweep (one run not cached, no runs.csv written): the rerun
    # recomputes only that run
    files[0].unlink()
    (tmp_path / "inductive" / "smoke" / "runs.csv").unlink()
    run(args)
    again = sorted(cache.glob("*.json"))
    assert [f.name for f in again] == [f.name for f in files]
    assert [f.stat().st_mtime_ns for f in again[1:]] == stamps[1:]
    again_rows = read_rows(tmp_path / "inductive" / "smoke" / "runs.csv")
    # same runs, same scores (timings of the recomputed run differ, of course)
    assert [(r["dataset"], r["detector"], r["seed"], r["auroc"]) for r in again_rows] == \
        [(r["dataset"], r["detector"], r["seed"], r["auroc"]) for r in first]


def test_committed_runs_csv_counts_as_done_without_the_cache(tmp_path):
    """On a fresh clone (runs.csv and the tables, no cache) a report writes the same
    runs.csv and table.md (timings included: nothing is recomputed) and restores the
    cache; a row of another key (another skood version or parameters) does not count."""
    import shutil

    task = _suite.Task("blobs", "tabular", _blobs)
    kw = dict(detectors=["IsolationForest", "ECOD"], seeds=[0, 1], budget="smoke", out=tmp_path,
              progress=False)

    def tables(rows):
        _suite.write_outputs(rows, tmp_path, {}, figure=False)
        return {f: (tmp_path / f).read_bytes() for f in ("runs.csv", "table.md")}

    made = tables(_suite.run_sweep([task], **kw))
    cached = {p.name: p.read_text() for p in (tmp_path / "cache").iterdir()}
    shutil.rmtree(tmp_path / "cache")
    report = _suite.run_sweep([task], cached_only=True, **kw)
    assert isinstance(report[0]["seed"], int) and isinstance(report[0]["auroc"], float)
    assert tables(report) == made
    assert {p.name for p in (tmp_path / "cache").iterdir()} == set(cached)
    assert tables(_suite.run_sweep([task], **kw)) == made
    shutil.rmtree(tmp_path / "cache")
    rows = read_rows(tmp_path / "runs.csv")
    rows[0]["key"] = rows[0]["key"][:-10] + "0123456789"
    _suite.write_csv(tmp_path / "runs.csv", rows)
    assert len(_suite.run_sweep([task], cached_only=True, **kw)) == 3
    assert len(_suite.run_sweep([task], **kw)) == 4
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {*cached, rows[0]["key"] + ".json"}


@pytest.mark.slow
def test_tabular_suite_transductive(tmp_path, data_home):
    run(["benchmarks/tabular_suite.py", "--data-home", str(data_home), "--datasets", "wine",
         "--sources", "adbench", "--protocol", "transductive", "--detectors", "SemSAD", "KNN",
         "--seeds", "0", "--budget", "smoke", "--out", str(tmp_path)])
    rows = read_rows(tmp_path / "transductive" / "smoke" / "runs.csv")
    assert {r["detector"] for r in rows} == {"SemSAD", "KNN"}
    assert all(r["n_train"] == r["n_test"] for r in rows)  # fit and score the same rows


@pytest.mark.slow
def test_image_suite_protocols(tmp_path, data_home):
    common = ["--dataset", "fashion", "--budget", "smoke", "--data-home", str(data_home),
              "--detectors", "SemSAD", "IsolationForest", "--out", str(tmp_path)]
    run(["benchmarks/image_suite.py", "--protocol", "one-class", "--classes", "1",
         "--pollution", "0.1", *common])
    rows = read_rows(tmp_path / "fashion-one-class" / "smoke" / "runs.csv")
    assert {r["dataset"] for r in rows} == {"fashion-1-p10"}
    # 64 normal images plus 10% pollution
    assert {int(r["n_train"]) for r in rows} == {64 + 7}
    out = run(["benchmarks/image_suite.py", "--protocol", "holdout", "--classes", "3", *common])
    assert out.splitlines()[0].startswith("| dataset |") and "AUROC:" in out
    run(["benchmarks/image_suite.py", "--protocol", "vs", "--ood", "mnist", *common])
    rows = read_rows(tmp_path / "fashion-vs" / "smoke" / "runs.csv")
    assert rows[0]["dataset"] == "fashion-vs-mnist" and int(rows[0]["n_test"]) == 300


def test_image_suite_two_workers_equal_one(tmp_path):
    # the script's tasks must unpickle in joblib's worker processes
    common = ["benchmarks/image_suite.py", "--dataset", "digits", "--classes", "0", "1",
              "--budget", "smoke", "--detectors", "FeatureKNN", "IsolationForest"]
    run([*common, "--out", str(tmp_path / "serial")])
    run([*common, "--n-jobs", "2", "--out", str(tmp_path / "two")])
    rows = {}
    for name in ("serial", "two"):
        got = read_rows(tmp_path / name / "digits-one-class" / "smoke" / "runs.csv")
        assert not any(r["error"] for r in got)
        rows[name] = {(r["dataset"], r["detector"]): r["auroc"] for r in got}
    assert len(rows["two"]) == 4 and rows["two"] == rows["serial"]


def test_failed_run_is_recorded_not_fatal(tmp_path):
    def bad(seed):
        import numpy as np

        return np.full((5, 2), np.nan), None, np.zeros((5, 2)), np.array([0, 0, 0, 1, 1])

    rows = _suite.run_sweep([_suite.Task("nan-data", "tabular", bad)], ["SemSAD"], [0],
                            "smoke", tmp_path, progress=False)
    assert len(rows) == 1 and "NaN" in rows[0]["error"]
    table = _suite.markdown_table(rows)
    assert "1 failed runs" in table


def test_table_spread_over_seeds_is_the_sd_of_each_seeds_mean():
    rows = [{"dataset": d, "detector": "A", "seed": s, "auroc": v, "error": ""}
            for d, s, v in [("x", 0, 0.6), ("y", 0, 0.8), ("x", 1, 0.7), ("y", 1, 1.0)]]
    # seed means 0.7 and 0.85: sd (ddof 1) = 0.15 / sqrt(2)
    assert _suite.seed_spread(rows, ["A"], "auroc")[0] == pytest.approx(0.15 / 2**0.5)
    table = _suite.markdown_table(rows)
    assert "| **mean** | **77.5** |" in table and "| **sd over seeds** | 10.6 |" in table
    assert "sd over seeds" not in _suite.markdown_table([r for r in rows if r["seed"] == 0])


def test_table_says_when_a_mean_or_rank_leaves_datasets_out():
    """A detector missing datasets: its mean says over how many; the mean rank says it
    is over the datasets every detector finished."""
    rows = [{"dataset": d, "detector": det, "seed": 0, "auroc": v, "error": ""}
            for d, det, v in [("x", "A", 0.9), ("y", "A", 0.5), ("z", "A", 0.6),
                              ("x", "B", 0.8), ("y", "B", 0.7), ("z", "B", 0.7),
                              ("x", "C", 0.95)]]
    table = _suite.markdown_table(rows)
    assert "| 95.0 (1 of 3) | 66.7 | **73.3** |" in table  # bold: best of the complete
    assert "mean rank** (on the 1 datasets every detector finished) | 1.00 | 2.00 | 3.00 |" in table
    full = _suite.markdown_table([r for r in rows if r["detector"] != "C"])
    assert "of 3)" not in full and "| **mean rank** | 1.33 | 1.67 |" in full


@pytest.mark.parametrize(("detector", "kind", "n_train", "adopted"), [
    ("DUM", "tabular", 100, True),  # feature_scaling, max_steps and friends hold
    ("DUM", "tabular", 20_000, False),  # max_steps="auto" caps a phase on 20,000 rows
    ("SemSAD(backbone='efficientnet_lite0')", "image", 100, False),  # feature_scaling moved
])
def test_sweep_cache_adopts_runs_made_before_an_added_parameter(tmp_path, detector, kind,
                                                                n_train, adopted):
    """A run cached under the key it had before parameters of ADDED_PARAMS existed counts
    under the current key when each missing parameter's condition holds for it."""
    task = _suite.Task("t", kind, None)
    ident = _suite._identity(detector, 0, "smoke", kind)
    missing = ("feature_scaling", "max_steps", "max_train_scores", "calibration")
    old = {**ident, "params": {k: v for k, v in ident["params"].items() if k not in missing}}
    old_key = _suite.run_key(task, detector, 0, "smoke", old)
    cache = tmp_path / "cache"
    cache.mkdir()
    row = {"dataset": "t", "detector": detector, "seed": 0, "n_train": n_train, "auroc": 0.7,
           "key": old_key}
    _suite._write_cached(cache, old_key, [row])
    rows = _suite.run_sweep([task], [detector], [0], "smoke", tmp_path, progress=False,
                            cached_only=True)
    if adopted:
        assert rows == [{**row, "key": _suite.run_key(task, detector, 0, "smoke", ident)}]
    else:
        assert rows == []


def test_unknown_filters_fail_clearly():
    with pytest.raises(SystemExit, match="no detector matches"):
        _suite.select(["SemSAD", "KNN"], ["nope"], "detector")
    with pytest.raises(ValueError, match="unknown detector"):
        _suite.make_detector("nope", 0, "cpu", "tabular", 3)


def test_peak_memory_sees_an_allocation():
    import mmap
    import time

    import numpy as np

    # fresh anonymous pages: an array from malloc may reuse pages the allocator
    # kept resident after earlier tests freed them, which RSS cannot see
    with _suite.PeakMemory() as mem:
        buf = mmap.mmap(-1, 50 * 2**20)
        a = np.frombuffer(buf, dtype=np.uint8)
        a[::512] = 1  # touch every page
        time.sleep(0.05)
    del a
    buf.close()
    assert mem.peak_mib >= 40


def test_detector_variants_by_name():
    assert _suite.parse_variant("SemSAD") == ("SemSAD", {})
    assert _suite.parse_variant("SemSAD(gamma_range=(1.0, 1.0), n_neighbors=2)") == (
        "SemSAD", {"gamma_range": (1.0, 1.0), "n_neighbors": 2})
    det = _suite.make_detector("SemSAD(n_neighbors=2)", 3, "smoke", "tabular", 4)
    assert det.n_neighbors == 2 and det.random_state == 3 and det.encoder_epochs == 1
    for bad in ("SemSAD(2)", "SemSAD(n=foo())", "SemSAD(n_neighbors=1"):
        with pytest.raises(ValueError, match="bad detector variant"):
            _suite.parse_variant(bad)
    assert _suite.select(["SemSAD", "KNN"], ["KNN", "SemSAD(mu=0.5)"], "detector") == [
        "KNN", "SemSAD(mu=0.5)"]
    # an exact name selects itself only; other filters are substrings
    names = ["SemSAD", "KNN", "FeatureKNN"]
    assert _suite.select(names, ["KNN"], "detector") == ["KNN"]
    assert _suite.select(names, ["knn"], "detector") == ["KNN", "FeatureKNN"]


def test_ablation_table_verdicts():
    rows = []
    for seed, (ref, big, tiny) in enumerate([(0.70, 0.80, 0.71), (0.72, 0.83, 0.70),
                                             (0.68, 0.79, 0.69)]):
        for det, v in (("A", ref), ("A(x=1)", big), ("A(x=2)", tiny)):
            rows.append({"dataset": "t", "detector": det, "seed": seed, "auroc": v})
    table = _suite.ablation_table(rows, "A")
    lines = {ln.split(" | ")[0].strip("| "): ln for ln in table.splitlines()}
    assert "better" in lines["A(x=1)"] and "+10.7" in lines["A(x=1)"]
    assert "no effect" in lines["A(x=2)"]  # +0.0 ± 1.5: within its spread


def test_claims_summary_reads_each_scripts_csv(tmp_path):
    claims = benchmark_module("claims")

    d = tmp_path / "nsa_normalisation"
    d.mkdir()
    lines = ["class,pollution,setting,variant,seed,auroc"]
    for seed, (on, off) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.79, 0.70)]):
        for c in (0, 1):
            lines += [f"{c},0.1,\"kcos, pollution 10%\",norm on,{seed},{on}",
                      f"{c},0.1,\"kcos, pollution 10%\",norm off,{seed},{off}"]
    (d / "runs.csv").write_text("\n".join(lines) + "\n")
    text = claims.main(["--dry-run", "--only", "nsa", "semsad", "--out", str(tmp_path)])
    assert "setting = kcos, pollution 10%" in text and "better" in text and "+10.0" in text
    assert "not run yet (`python benchmarks/semsad_ablation.py`)" in text
    assert (tmp_path / "claims.md").read_text() == text


def test_claims_pass_the_engine_options_to_their_scripts():
    claims = benchmark_module("claims")
    args = claims.argparse.Namespace(n_jobs=2, no_progress=True, report_only=True, prune=False,
                                     rerun=False)
    assert claims.engine_flags(args) == ["--n-jobs", "2", "--no-progress", "--report-only"]
    for claim in claims.CLAIMS.values():  # every claim's script is on the engine
        source = (BENCH / f"{claim.script}.py").read_text()
        assert "sweep_arguments" in source or "engine_arguments" in source, claim.script


def test_cache_identity_holds_every_parameter():
    # defaults included: a changed default (SemSAD's scoring, say) must not read old results
    ident = _suite._identity("IsolationForest", 3, "cpu", "tabular")["params"]
    assert ident["random_state"] == "3" and ident["n_estimators"] == "100"
    semsad = _suite._identity("SemSAD", 0, "cpu", "tabular")["params"]
    assert semsad["scoring"] == "'partners'" and semsad["n_neighbors"] == "4"
    smoke = _suite._identity("SemSAD", 0, "smoke", "tabular")["params"]
    assert smoke["encoder_epochs"] == "1"
    variant = _suite._identity("SemSAD(n_neighbors=1)", 0, "cpu", "tabular")["params"]
    assert variant == {**semsad, "n_neighbors": "1"}


def test_refined_variants_by_name_and_their_identity():
    assert _suite.parse_variant("Refined(NSA(max_epochs=1), n_parts=3)") == (
        "Refined", {"estimator": "NSA(max_epochs=1)", "n_parts": 3})
    assert _suite.base_detector("Refined(NSA(max_epochs=1))") == "NSA"
    assert _suite.base_variant("Refined(NSA(max_epochs=1))") == "NSA(max_epochs=1)"
    det = _suite.make_detector("Refined(SemSAD(n_neighbors=2), refiner='IsolationForest')", 3,
                               "smoke", "tabular", 4)
    assert det.random_state == 3 and det.refiner.random_state == 3
    assert det.estimator.n_neighbors == 2 and det.estimator.encoder_epochs == 1
    for bad in ("Refined()", "Refined(NSA, KNN)", "Refined(NSA, estimator='KNN')"):
        with pytest.raises(ValueError, match="bad detector variant"):
            _suite.parse_variant(bad)
    assert _suite.select(["NSA", "KNN"], ["Refined(NSA)"], "detector") == ["Refined(NSA)"]
    # the wrapped detector counts with all its parameters, defaults included
    ident = _suite._identity("Refined(SemSAD)", 0, "cpu", "tabular")["params"]
    semsad = _suite._identity("SemSAD", 0, "cpu", "tabular")["params"]
    assert ident["estimator"] == {"class": "SemSADDetector", **semsad}
    assert ident["n_parts"] == "5" and ident["refiner"] == "None"


def test_scale_smoke_full_rows_and_bank_cap(tmp_path, data_home):
    run(["benchmarks/scale.py", "--data-home", str(data_home), "--datasets", "42_WBC",
         "--detectors", "SemSAD", "IsolationForest", "--max-bank", "20", "--budget", "smoke",
         "--out", str(tmp_path)])
    rows = read_rows(tmp_path / "runs.csv")
    assert {r["detector"] for r in rows} == {"SemSAD", "SemSAD(max_bank=20)", "IsolationForest"}
    assert not any(r["error"] for r in rows)
    # no 10,000-row cap and no subsample: 70/30 split of all 223 WBC rows
    assert {int(r["n_train"]) + int(r["n_test"]) for r in rows} == {223}
    times = (tmp_path / "times.md").read_text()
    assert "SemSAD(max_bank=20)" in times and "fit min" in times
    # a report runs nothing: cached rows are kept, a detector never run is "not run yet"
    run(["benchmarks/scale.py", "--data-home", str(data_home), "--datasets", "42_WBC",
         "--detectors", "SemSAD", "IsolationForest", "RotAuxMSP", "--max-bank", "20",
         "--budget", "smoke", "--out", str(tmp_path), "--report-only"])
    assert len(read_rows(tmp_path / "runs.csv")) == 3
    lines = (tmp_path / "times.md").read_text().splitlines()
    assert [ln for ln in lines if "not run yet" in ln] == [
        "| 42_WBC | RotAuxMSP | 0 | | | not run yet | | | |"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert "--report-only" not in meta["argv"] and meta["report_only"] is True
    # the uncapped variant, and the runs beside a reference sweep's (here: the first one)
    new = tmp_path / "new"
    run(["benchmarks/scale.py", "--data-home", str(data_home), "--datasets", "42_WBC",
         "--detectors", "IsolationForest", "SemSAD", "--max-bank", "none", "--budget", "smoke",
         "--out", str(new), "--reference", str(tmp_path)])
    assert {r["detector"] for r in read_rows(new / "runs.csv")} == {
        "SemSAD", "SemSAD(max_bank=None)", "IsolationForest"}
    ref = (new / "reference.md").read_text()
    assert f"Reference: {tmp_path.name}, skood " in ref
    assert "| 42_WBC | SemSAD(max_bank=None) |" in ref and "not run" in ref
    assert "| 42_WBC | IsolationForest |" in ref


def test_scale_notes_only_for_runs_in_the_table_one_line_per_note():
    scale = benchmark_module("scale")

    notes = {("a", "NSA"): "old peak", ("b", "NSA"): "old peak", ("c", "NSA"): "old peak",
             ("a", "DUM"): "other"}
    assert scale.note_lines({("a", "NSA"), ("c", "NSA"), ("a", "DUM")}, notes) == [
        "- NSA on a, c: old peak", "- DUM on a: other"]
    assert scale.note_lines({("b", "DUM")}, notes) == []
    # every note names a dataset and detector of the default sweep (no orphan notes)
    assert all(name in scale.LARGEST and det in scale.DEFAULT_DETECTORS
               for name, det in scale.RUN_NOTES)


def _blobs(seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    X_te = np.vstack([rng.normal(size=(20, 3)), rng.normal(6, 1, size=(5, 3))])
    return rng.normal(size=(40, 3)), None, X_te, np.r_[np.zeros(20), np.ones(5)]


def test_prune_deletes_only_superseded_versions_of_the_sweeps_runs(tmp_path):
    import json

    task = _suite.Task("blobs", "tabular", _blobs)
    cache = tmp_path / "cache"
    cache.mkdir()
    prefix = _suite._key_prefix("blobs", "IsolationForest", 0, "smoke")
    stale = cache / f"{prefix}0123456789.json"
    # same readable start, other runs: a variant, another seed, a non-cache file
    variant = cache / (_suite._key_prefix("blobs", "IsolationForest(n_estimators=5)", 0, "smoke")
                       + "0123456789.json")
    other_seed = cache / (_suite._key_prefix("blobs", "IsolationForest", 1, "smoke")
                          + "0123456789.json")
    note = cache / f"{prefix}notes.json"
    for p in (stale, variant, other_seed, note):
        p.write_text(json.dumps({"auroc": -1.0}))
    kw = dict(detectors=["IsolationForest"], seeds=[0], budget="smoke", out=tmp_path,
              progress=False)
    rows = _suite.run_sweep([task], **kw)
    assert stale.exists() and rows[0]["auroc"] > 0.5  # never read, kept without prune
    rows = _suite.run_sweep([task], prune=True, **kw)
    assert not stale.exists() and variant.exists() and other_seed.exists() and note.exists()
    assert len(rows) == 1 and rows[0]["auroc"] > 0.5  # the current run's file stays
    key = _suite.run_key(task, "IsolationForest", 0, "smoke",
                         _suite._identity("IsolationForest", 0, "smoke", "tabular"))
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [f"{key}.json", variant.name, other_seed.name, note.name])


def test_pretrained_scorers_match_brute_force():
    """benchmarks/pretrained_scorers.py: each scorer against a direct numpy computation."""
    import numpy as np
    import torch
    from sklearn.covariance import LedoitWolf

    ps = benchmark_module("pretrained_scorers")
    rng = np.random.RandomState(0)
    train = np.abs(rng.normal(size=(60, 5))) + 0.1
    test = np.abs(rng.normal(size=(30, 5))) + 0.1

    def kcos(tr, te, k):
        a = tr / np.linalg.norm(tr, axis=1, keepdims=True)
        b = te / np.linalg.norm(te, axis=1, keepdims=True)
        return np.sort(b @ a.T, axis=1)[:, -k:].mean(1)

    mu, sd = train.mean(0), train.std(0, ddof=1)
    d2 = ((test[:, None] - train[None]) ** 2).sum(-1)
    cov = LedoitWolf().fit(train).covariance_
    maha = np.einsum("ij,jk,ik->i", test - mu, np.linalg.inv(cov), test - mu)
    expected = {
        "kcos k=1 (NSA paper)": kcos(train, test, 1),
        "kcos k=2 (DN2)": kcos(train, test, 2),
        "kcos k=5": kcos(train, test, 5),
        "kcos standardised": kcos((train - mu) / sd, (test - mu) / sd, 2),
        "kcos centred": kcos(train - mu, test - mu, 2),
        "L2 k=2": -np.sqrt(np.sort(d2, axis=1)[:, :2]).mean(1),
        "mahalanobis": -maha,
    }
    tr, te = torch.from_numpy(train).float(), torch.from_numpy(test).float()
    for name, want in expected.items():
        np.testing.assert_allclose(ps.SCORERS[name](tr, te), want, rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    assert set(ps.SCORERS) == {*expected, "kcos-mah"}


def test_nsa_scorers_share_one_trained_encoder(digit_images):
    """nsa_normalisation.py fits each scorer on its own: training does not depend on the
    scorer, so the fits of one seed train the same encoder (the scorers compare one
    encoder) and differ only in their scores."""
    import numpy as np
    import torch

    from skood import NSADetector

    train, test = digit_images[0], digit_images[1]
    fits = {s: NSADetector(scoring=s, max_epochs=1, batch_size=32, device="cpu",
                           random_state=0).fit(train) for s in ("kcos", "kcos-mah")}
    a, b = (f.encoder_.state_dict() for f in fits.values())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not np.array_equal(*(f.score_samples(test) for f in fits.values()))


# ------------------------------------------------------------------ the generic engine
def _rows(log: Path, name: str, n: int) -> list[dict]:
    """A job's rows (``n`` of them); each call appends ``name`` to ``log``."""
    with open(log, "a") as f:
        f.write(name + "\n")
    return [{"job": name, "i": i, "auroc": 0.5} for i in range(n)]


def test_run_jobs_caches_resumes_prunes_and_reruns(tmp_path):
    log, cache = tmp_path / "log", tmp_path / "cache"

    def jobs(size=1):
        return [_suite.job(name, functools.partial(_rows, log, name, n), {"size": size, "n": n})
                for name, n in (("one", 1), ("three", 3))]

    def ran():
        names = log.read_text().split() if log.exists() else []
        log.unlink(missing_ok=True)
        return names

    kw = dict(progress=False)
    first = _suite.run_jobs(jobs(), cache, **kw)
    assert [(r["job"], r["i"]) for r in first] == [("one", 0), *(("three", i) for i in range(3))]
    assert ran() == ["one", "three"]
    # done jobs are read from the cache (one row as a row, several as a list), in job order
    assert _suite.run_jobs(jobs()[::-1], cache, **kw) == first[1:] + first[:1]
    assert ran() == []
    assert json.loads((cache / f"{jobs()[0].key}.json").read_text()) == first[0]
    # an interrupted run: only the missing job runs; a report runs nothing
    (cache / f"{jobs()[1].key}.json").unlink()
    assert _suite.run_jobs(jobs(), cache, cached_only=True, **kw) == first[:1]
    assert _suite.run_jobs(jobs(), cache, **kw) == first and ran() == ["three"]
    # another identity is another job; prune deletes the superseded versions only
    assert jobs(size=2)[0].key != jobs()[0].key and jobs(2)[0].prefix == jobs()[0].prefix
    _suite.run_jobs(jobs(size=2), cache, **kw)
    assert ran() == ["one", "three"] and len(list(cache.glob("*.json"))) == 4
    _suite.run_jobs(jobs(size=2), cache, prune=True, **kw)
    assert ran() == [] and sorted(p.stem for p in cache.glob("*.json")) == sorted(
        j.key for j in jobs(size=2))
    # rerun: every job again
    _suite.run_jobs(jobs(size=2), cache, rerun=True, **kw)
    assert ran() == ["one", "three"]


def test_no_benchmark_uses_private_detector_api():
    """No script reaches into a detector (or any object) through a private attribute:
    ``obj._name`` only on ``self``/``cls`` or on an imported module."""
    bad = []
    for path in sorted(BENCH.glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {a.asname or a.name.split(".")[0] for node in ast.walk(tree)
                   if isinstance(node, ast.Import) for a in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name)
                             and node.value.id in {"self", "cls", *modules})):
                bad.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not bad, bad


def test_dum_tabular_on_the_engine_resumes_and_reruns(tmp_path, data_home):
    """A script that is not a (task, detector, seed) sweep gets the engine's cache: a second
    call computes nothing and writes the same table; --rerun computes every run again."""
    args = ["benchmarks/dum_tabular.py", "--data-home", str(data_home), "--datasets", "wbc",
            "--seeds", "0", "--dum-epochs", "1", "--out", str(tmp_path)]
    run(args)
    rows = read_rows(tmp_path / "dum_tabular.csv")
    assert [r["detector"] for r in rows] == ["DUM", "IsolationForest", "LOF"]
    assert all(0.5 < float(r["auroc"]) <= 1 for r in rows)
    cache = sorted((tmp_path / "cache" / "dum_tabular").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in cache]
    run(args)
    assert [p.stat().st_mtime_ns for p in cache] == stamps
    assert read_rows(tmp_path / "dum_tabular.csv") == rows  # timings included: nothing re-run
    run([*args, "--rerun"])
    assert all(p.stat().st_mtime_ns > t for p, t in zip(cache, stamps, strict=True))
    assert [r["auroc"] for r in read_rows(tmp_path / "dum_tabular.csv")] == [
        r["auroc"] for r in rows]


@pytest.mark.slow
def test_dum_orientation_smoke_on_two_workers(tmp_path, data_home):
    out = run(["benchmarks/dum_orientation.py", "--data-home", str(data_home), "--datasets",
               "45_wine", "--seeds", "0", "1", "--max-samples", "200", "--n-jobs", "2",
               "--out", str(tmp_path)])
    rows = read_rows(tmp_path / "runs.csv")
    bo = benchmark_module("dum_orientation")
    assert [r["variant"] for r in rows[:3]] == [*bo.VARIANTS, bo.ANCHOR] and len(rows) == 6
    assert "mean (flips)" in out and (tmp_path / "meta.json").exists()


def test_growth_smoke_sizes_table_figure_and_report(tmp_path):
    run(["benchmarks/growth.py", "--sizes", "300", "600", "--n-test", "200",
         "--detectors", "SemSAD", "IsolationForest", "--budget", "smoke", "--out", str(tmp_path)])
    rows = read_rows(tmp_path / "runs.csv")
    assert {(r["dataset"], int(r["n_train"]), int(r["n_test"])) for r in rows} == {
        ("gmm_300", 300, 200), ("gmm_600", 600, 200)}
    assert len(rows) == 4 and not any(r["error"] for r in rows)
    assert (tmp_path / "figure.png").stat().st_size > 0
    # a report runs nothing: a size never run is "not run"
    run(["benchmarks/growth.py", "--sizes", "300", "600", "1200", "--n-test", "200",
         "--detectors", "SemSAD", "IsolationForest", "--budget", "smoke", "--out", str(tmp_path),
         "--report-only"])
    table = (tmp_path / "table.md").read_text()
    assert "| SemSAD | " in table and table.count("not run") == 2
    growth = benchmark_module("growth")
    X_tr, y_tr, X_te, y_te = growth.gaussian_mixture(1000, seed=0, n_test=500)
    assert X_tr.shape == (1000, growth.N_FEATURES) and y_tr is None and y_te.sum() == 15
    assert (X_te == growth.gaussian_mixture(2000, seed=1, n_test=500)[2]).all()


def test_conformal_smoke_one_fit_three_modes_and_baselines(tmp_path, data_home):
    """One split-mode fit per run gives split, loo and contamination rows for the detector
    and for the baselines fitted on its split; the report and figure come from the runs."""
    args = ["benchmarks/conformal.py", "--data-home", str(data_home), "--suites", "t-clean",
            "--datasets", "42_WBC", "--detectors", "FeatureKNN", "--seeds", "0", "--budget",
            "smoke", "--out", str(tmp_path)]
    run(args)
    rows = read_rows(tmp_path / "runs.csv")
    assert [(r["detector"], r["mode"]) for r in rows] == [
        (d, m) for d in ("FeatureKNN", "IsolationForest", "KNN")
        for m in ("split", "loo", "contamination")]
    assert not any(r["error"] for r in rows)
    for r in rows:
        keys = ["rule_far", "rule_power"] if r["mode"] == "contamination" else [
            "far_0.01", "far_0.05", "far_0.1", "power_0.1", "bh_fdr", "bh_power"]
        assert all(0 <= float(r[k]) <= 1 for k in keys), r
    # the same held-out rows for the detector and the baselines
    assert len({(r["n_cal"], r["n_fit"]) for r in rows if r["mode"] == "split"}) == 1
    table = (tmp_path / "table.md").read_text()
    assert "| t-clean | KNN | split |" in table and "Validity" in table
    assert (tmp_path / "figure.png").stat().st_size > 0
    run([*args, "--report-only"])
    assert (tmp_path / "table.md").read_text() == table


def test_conformal_validity_check_accepts_valid_and_rejects_inflated_rates():
    """The pooled beta-binomial check of benchmarks/conformal.py: runs drawn under the
    guarantee pass, the same runs with twice the false alarms fail."""
    import numpy as np

    conformal = benchmark_module("conformal")
    rng = np.random.default_rng(1)
    runs = []
    for _ in range(40):
        n, m = 200, 300
        lo = int(np.floor(0.05 * 201))
        x = rng.binomial(m, rng.beta(lo, n + 1 - lo))
        runs.append({"n_cal": n, "n_test_normal": m, "far_0.05": x / m})
    assert conformal.validity(runs, 0.05)["ok"]
    inflated = [{**r, "far_0.05": min(1.0, 2 * r["far_0.05"])} for r in runs]
    assert not conformal.validity(inflated, 0.05)["ok"]
