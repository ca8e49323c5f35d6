"""The leaderboards (benchmarks/leaderboard.py): every row at the current defaults, the
committed files what the script writes, the suites' results folders merged, not replaced."""

from __future__ import annotations

import csv

import pytest

from skood._testing import benchmark_module as bench

_suite = bench("_suite")
leaderboard = bench("leaderboard")


@pytest.fixture(autouse=True)
def _fresh_identities():
    leaderboard._current_identity.cache_clear()
    yield
    leaderboard._current_identity.cache_clear()


def _suite_rows(name: str) -> list[dict]:
    with open(leaderboard.RESULTS / name / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_committed_leaderboards_are_current():
    """Every leaderboard row was made under its detector's current defaults, and the
    committed tables, CSVs and summary are what ``leaderboard.py`` writes now."""
    try:
        leaderboard.main(["--check"])
    except SystemExit as exc:  # pragma: no cover - the failure message is printed
        pytest.fail(f"leaderboards stale (exit {exc.code}): run python benchmarks/leaderboard.py")


def test_a_changed_default_takes_the_detectors_rows_off_the_leaderboard(monkeypatch, capsys):
    """A default changed in the code (here NSA's n_neighbors) makes every committed NSA
    row stale: the check fails and the table shows NSA as not run at current defaults."""
    real = _suite._identity

    def changed(detector, seed, budget, kind):
        ident = real(detector, seed, budget, kind)
        if detector == "NSA":
            ident["params"] = {**ident["params"], "n_neighbors": "7"}
        return ident

    monkeypatch.setattr(leaderboard, "_identity", changed)
    suite = next(s for s in leaderboard.SUITES if s.name == "t-clean")
    board = leaderboard.build(suite)
    assert "NSA" in board.missing and board.stale
    assert all(" NSA seed " in s for s in board.stale)
    assert "NSA: not run at current defaults" in leaderboard.table_md(board)
    with pytest.raises(SystemExit):
        leaderboard.main(["--check"])
    assert "made under other parameters" in capsys.readouterr().out


def test_equivalence_tables_are_what_admits_older_rows(monkeypatch):
    """DUM's rows were made with embedding='whitened' (now 'auto'), NSA's with
    max_bank=None (now 'auto'), every skood row before calibration and max_steps existed,
    and DistillNeg's by an older skood version: they count through the explicit tables,
    and only through them; a baseline's rows need none of them."""
    suite = next(s for s in leaderboard.SUITES if s.name == "t-ind")
    rows = {d: next(r for r in _suite_rows("t-ind") if r["detector"] == d)
            for d in ("DUM", "DistillNeg", "NSA", "RotAuxMSP", "IsolationForest")}
    assert all(leaderboard.current_status(suite, r) == "" for r in rows.values())
    for name in ("calibration", "max_steps", "max_train_scores"):
        without = {k: v for k, v in leaderboard.ADDED_PARAMS.items() if k != name}
        monkeypatch.setattr(leaderboard, "ADDED_PARAMS", without)
        assert leaderboard.current_status(suite, rows["RotAuxMSP"]), name
        monkeypatch.undo()
    monkeypatch.setattr(leaderboard, "SAME_CODE_PATH", {})
    assert leaderboard.current_status(suite, rows["DUM"])
    assert leaderboard.current_status(suite, rows["NSA"])  # max_bank=None
    monkeypatch.setattr(leaderboard, "SAME_AS_INSTALLED", {})
    assert leaderboard.current_status(suite, rows["DistillNeg"])
    monkeypatch.setattr(leaderboard, "ADDED_PARAMS", {})
    assert leaderboard.current_status(suite, rows["IsolationForest"]) == ""


def test_added_parameters_admit_only_runs_their_default_leaves_alone():
    """max_steps='auto', max_bank='auto' and max_train_scores='auto' run the old code only
    up to 10,000 training rows: an older row on more rows would not count."""
    suite = next(s for s in leaderboard.SUITES if s.name == "t-ind")
    row = next(r for r in _suite_rows("t-ind") if r["detector"] == "NSA")
    assert _suite._no_phase_is_capped(row)
    assert leaderboard._bank_takes_every_row(suite, row)
    assert _suite._every_fitted_row_is_scored(row)
    big = {**row, "n_train": "10001"}
    assert not _suite._no_phase_is_capped(big)
    assert not _suite._every_fitted_row_is_scored(big)
    assert not leaderboard._bank_takes_every_row(suite, big)
    assert leaderboard.current_status(suite, big)


def test_feature_scaling_admits_rows_outside_frozen_feature_mode_and_dum():
    """feature_scaling='auto' changed the pretrained rows of SemSAD, DistillNeg and
    RotAuxMSP only."""
    assert _suite._features_stay_standardised({"detector": "SemSAD"})
    assert _suite._features_stay_standardised({"detector": "DUM(backbone='efficientnet_lite0')"})
    assert not _suite._features_stay_standardised(
        {"detector": "SemSAD(backbone='efficientnet_lite0')"})
    suite = next(s for s in leaderboard.SUITES if s.name == "p-cifar10")
    row = next(r for r in _suite_rows("p-cifar10") if r["detector"].startswith("DUM("))
    assert leaderboard.current_status(suite, row) == ""


def test_dum_equivalence_needs_more_images_than_dimensions():
    """On images DUM's 'auto' is 'whitened' only with more training images than the
    encoder's representation has dimensions; with fewer the old rows would not count."""
    suite = next(s for s in leaderboard.SUITES if s.name == "f-oc")
    row = next(r for r in _suite_rows("f-oc") if r["detector"] == "DUM")
    width = leaderboard._cnn_width("f-oc")
    assert int(row["n_train"]) > width
    assert leaderboard.current_status(suite, row) == ""
    assert not leaderboard._dum_trains_no_image_encoder_or_whitens(
        suite, {**row, "n_train": str(width)})


def test_missing_detector_is_said_not_hidden():
    suite = next(s for s in leaderboard.SUITES if s.name == "c-oc")
    board = leaderboard.build(suite)
    md = leaderboard.table_md(board)
    for det in board.missing:
        assert f"{det}: not run at current defaults" in md
    assert set(board.missing) <= set(board.columns)
    assert "n/r" in leaderboard.summary_md([board])


def test_no_commit_hash_in_the_leaderboards():
    import re

    for path in leaderboard.BOARDS.rglob("*.md"):
        text = path.read_text()
        assert not re.search(r"\b(since|commit) [0-9a-f]{7}\b", text), path
        assert not re.search(r"\(\b[0-9a-f]{7}\b", text), path


def test_sweep_merges_into_the_suite_folder(tmp_path):
    """A sweep into a suite's folder replaces the older versions of its own runs and keeps
    every other run of the folder."""
    tabular_suite = bench("tabular_suite")

    def row(dataset, detector, key, auroc):
        return {"dataset": dataset, "detector": detector, "seed": 0, "budget": "cpu",
                "n_train": 10, "n_test": 10, "auroc": auroc, "ap": 0.5, "p_at_n": 0.5,
                "fit_s": 1.0, "score_s": 0.1, "peak_mib": 1.0, "cuda_peak_mib": float("nan"),
                "error": "", "key": key}

    old = [row("a", "NSA", "a__NSA__s0__cpu__0000000001", 0.6),
           row("a", "KNN", "a__KNN__s0__cpu__0000000002", 0.7)]
    _suite.write_outputs(old, tmp_path, {}, figure=False)
    before = _suite.read_runs(tmp_path / "runs.csv")
    # the sweep re-ran NSA under a new key and wrote only its own rows
    _suite.write_outputs([row("a", "NSA", "a__NSA__s0__cpu__0000000003", 0.8)], tmp_path, {},
                         figure=False)
    tabular_suite.merge_runs(tmp_path, before)
    merged = _suite.read_runs(tmp_path / "runs.csv")
    assert sorted(merged) == ["a__KNN__s0__cpu__0000000002", "a__NSA__s0__cpu__0000000003"]
    assert merged["a__NSA__s0__cpu__0000000003"]["auroc"] == 0.8


def test_default_folders_are_the_suites():
    image_suite, tabular_suite = bench("image_suite"), bench("tabular_suite")
    assert tabular_suite.suite_folder("t-ind", "cpu") == leaderboard.RESULTS / "t-ind"
    assert tabular_suite.suite_folder("t-ind", "smoke").name == "t-ind-smoke"
    assert image_suite.suite_name("fashion", "one-class", 0.0, ["NSA"]) == "f-oc"
    assert image_suite.suite_name("cifar10", "one-class", 0.0, ["NSA"]) == "c-oc"
    lite = ["NSA(backbone='efficientnet_lite0')", "KNN"]
    assert image_suite.suite_name("fashion", "one-class", 0.0, lite) == "p-fashion"
    assert image_suite.suite_name("fashion", "one-class", 0.1, ["NSA"]) == "fashion-one-class-p10"
    names = {s.name for s in leaderboard.SUITES}
    assert names == {"t-ind", "t-clean", "f-oc", "c-oc", "p-fashion", "p-cifar10"}
    assert {tabular_suite.SUITE_FOLDERS[p] for p in ("inductive", "clean")} <= names
