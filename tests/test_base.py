"""skood._base.BaseDeepDetector: what a detector of one's own inherits, on a detector with no
network whose scores are known by hand (minus the distance to the training mean)."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from skood import BaseDeepDetector, TrainingDivergedError
from skood._testing import tiny


class MeanDistance(BaseDeepDetector):
    """Minus the Euclidean norm of the stored row (standardised rows: distance to the mean)."""

    _presets: ClassVar[dict] = {"big": {"batch_size": 64, "lr": 0.5}}

    def __init__(self, *, batch_size=32, device="cpu", random_state=0, contamination="auto",
                 backbone="auto", lr=1e-3, verbose=0, image_shape=None, constant=False,
                 broken=False):
        self.batch_size, self.device, self.random_state = batch_size, device, random_state
        self.contamination, self.backbone, self.lr = contamination, backbone, lr
        self.verbose, self.image_shape = verbose, image_shape
        self.constant, self.broken = constant, broken

    def _fit_store(self, Xs, y, seed):
        self.store_ = Xs.clone()
        self.seed_ = seed

    def _score_store(self, Xs):
        if self.broken:
            return np.full(len(Xs), np.nan)
        if self.constant:
            return np.zeros(len(Xs))
        x = Xs.flatten(1).double()
        return -torch.linalg.vector_norm(x, dim=1).numpy()


X10 = np.arange(10, dtype=np.float64)[:, None]  # 0 .. 9: mean 4.5, std sqrt(8.25)


def test_tabular_rows_are_standardised_and_the_callers_array_kept():
    X = np.c_[X10, np.full(10, 7.0)]  # a constant column: scale max(1, its largest |value|)
    before = X.copy()
    with pytest.warns(UserWarning, match=r"1 constant column\(s\) \[1\]"):
        det = MeanDistance().fit(X)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_allclose(det.feature_mean_, [4.5, 7.0])
    np.testing.assert_allclose(det.feature_scale_, [np.sqrt(8.25), 7.0])
    expected = (X - [4.5, 7.0]) / [np.sqrt(8.25), 7.0]
    np.testing.assert_allclose(det.store_.numpy(), expected, rtol=1e-6)
    assert det.store_.dtype == torch.float32
    assert det.input_kind_ == "tabular" and det.n_features_in_ == 2 and det.device_ == "cpu"


def test_offset_predict_and_decision_function_by_hand():
    """Scores -|x - 4.5| / sd: -4.5, -3.5, ..., -0.5, each twice (in sd units). The 20th
    percentile of the ten is -3.7 (linear interpolation between -4.5 and -3.5), so 0 and 9
    are the outliers."""
    sd = np.sqrt(8.25)
    det = MeanDistance(contamination=0.2).fit(X10)
    scores = -np.abs(X10[:, 0] - 4.5) / sd
    np.testing.assert_allclose(det.train_scores_, scores, rtol=1e-6)
    assert det.offset_ == pytest.approx(-3.7 / sd, rel=1e-6)
    np.testing.assert_allclose(det.score_samples(X10), scores, rtol=1e-6)
    np.testing.assert_allclose(det.decision_function(X10), scores - det.offset_, rtol=1e-5)
    labels = [-1, 1, 1, 1, 1, 1, 1, 1, 1, -1]
    assert det.predict(X10).tolist() == labels
    assert MeanDistance(contamination=0.2).fit_predict(X10).tolist() == labels
    assert MeanDistance().fit(X10).offset_ == pytest.approx(  # "auto" is 0.1
        np.percentile(scores, 10), rel=1e-6)


def test_scoring_before_fit_and_mismatched_inputs_raise():
    with pytest.raises(NotFittedError):
        MeanDistance().score_samples(X10)
    det = MeanDistance().fit(X10)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(np.ones((2, 3)))
    with pytest.raises(ValueError, match="tabular data"):
        det.score_samples(np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="at least 2 training samples"):
        MeanDistance().fit(X10[:1])


def test_images_are_stored_as_given_in_nchw():
    imgs = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)
    det = MeanDistance().fit(imgs)
    assert det.input_kind_ == "image" and det.image_shape_ == (1, 8, 8)
    assert det.n_features_in_ == 64
    assert det.store_.dtype == torch.uint8 and torch.equal(det.store_[:, 0], torch.from_numpy(imgs))
    nhwc = np.random.RandomState(0).rand(4, 8, 8, 3)
    det = MeanDistance().fit(nhwc)
    assert det.image_shape_ == (3, 8, 8) and det.store_.dtype == torch.float32
    np.testing.assert_allclose(det.store_.numpy(), nhwc.transpose(0, 3, 1, 2), rtol=1e-6)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        MeanDistance().fit(nhwc * 255)
    flat = MeanDistance(image_shape=(8, 8)).fit(imgs.reshape(5, 64))
    assert flat.image_shape_ == (1, 8, 8)
    assert torch.equal(flat.store_, torch.from_numpy(imgs[:, None]))


def test_from_preset_with_overrides():
    det = MeanDistance.from_preset("big", lr=0.1)
    assert (det.batch_size, det.lr) == (64, 0.1)
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; MeanDistance has \['big'\]"):
        MeanDistance.from_preset("huge")


def test_the_fit_seed_comes_from_random_state_only():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global RNG)
    a = MeanDistance(random_state=3).fit(X10).seed_
    assert MeanDistance(random_state=3).fit(X10).seed_ == a
    assert MeanDistance(random_state=4).fit(X10).seed_ != a
    MeanDistance(random_state=None).fit(X10)
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002 (not drawn from)


def test_broken_training_scores_raise_or_warn():
    with pytest.raises(TrainingDivergedError, match=r"10 of 10 training scores are not "
                                                    r"finite.*lr=0\.001"):
        MeanDistance(broken=True).fit(X10)
    with pytest.warns(ConvergenceWarning, match="10 of 10 training scores are the same value"):
        det = MeanDistance(constant=True).fit(X10)
    assert det.offset_ == 0.0  # the fit completes


# -------------------------------------------- units: tiny scales and constant columns
def _units_rows() -> np.ndarray:
    return np.random.RandomState(0).normal(size=(50, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -2.0]


@pytest.mark.parametrize("unit", [2.0**-43, 1e-13, 1e-200, 1e-310])
def test_the_standardised_rows_do_not_depend_on_the_units(unit):
    """Rows in units of 1e-13 (or 1e-310, subnormal) standardise like the rows themselves: no
    column is read as constant because its values are small. A power of two scales every
    step exactly, so its rows come out bit-identical."""
    X = _units_rows()
    ref = MeanDistance().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no constant-column warning, no ConvergenceWarning
        det = MeanDistance().fit(X * unit)
    np.testing.assert_allclose(det.feature_scale_ / unit, ref.feature_scale_, rtol=1e-9)
    if unit == 2.0**-43:
        assert torch.equal(det.store_, ref.store_)
    else:
        np.testing.assert_allclose(det.store_.numpy(), ref.store_.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(det.score_samples(X * unit), ref.score_samples(X),
                               rtol=1e-5, atol=1e-6)


def test_one_tiny_column_carries_its_signal():
    """A column in units of 1e-13 beside ordinary ones is standardised, not dropped: an
    outlier only in that column scores as an outlier."""
    X = _units_rows()
    X[:, 2] *= 1e-13
    det = MeanDistance().fit(X)
    assert det.feature_scale_[2] == pytest.approx(X[:, 2].std(), rel=1e-12)
    assert det.store_[:, 2].std() > 0.9
    out = X[:2].copy()
    out[0, 2] = X[:, 2].mean() + 8 * X[:, 2].std()
    s = det.score_samples(out)
    assert s[0] < det.train_scores_.min() <= s[1]


def test_constant_columns_are_ignored_with_a_warning_that_names_them():
    """Exactly constant columns, and columns constant up to float rounding at a large offset
    (1e6 or 1e20 plus noise of a few ulps, std 1e-16 of the magnitude), are not standardised
    and get one UserWarning naming them; a column with a relative spread of 1e-9 is data."""
    rng = np.random.RandomState(0)
    X = np.c_[rng.normal(size=50), np.full(50, 7.0), 1e6 + rng.randint(-3, 4, 50) * 2.0**-33,
              np.full(50, 0.1), 1e6 * (1 + 1e-9 * rng.normal(size=50)),
              1e20 + rng.randint(-3, 4, 50) * 2.0**14]
    X = X[:, [0, 1, 2, 3, 5, 4]]
    with pytest.warns(UserWarning, match=r"constant .*column\(s\) \[1, 2, 3, 4\]") as rec:
        det = MeanDistance().fit(X)
    assert len([w for w in rec if "constant" in str(w.message)]) == 1
    # scale: the largest |value|, at least 1 (a constant column of small values keeps the raw
    # differences, as before); the standardised training values are 0 up to rounding
    np.testing.assert_array_equal(det.feature_scale_[1:5], np.maximum(abs(X[:, 1:5]).max(0), 1))
    assert abs(det.store_[:, 1:5]).max() < 1e-6
    assert det.feature_scale_[5] == pytest.approx(X[:, 5].std(), rel=1e-6)
    assert det.store_[:, 5].std() > 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.score_samples(X)  # scoring does not warn again
        MeanDistance().fit(X[:, [0, 5]])  # no constant column: no warning


@pytest.mark.parametrize("kind", ["tabular", "images"])
def test_scoring_in_chunks_is_bit_identical(name, fitted_tiny, blobs, digit_images, kind,
                                            monkeypatch):
    """With a small chunk size, every detector scores rows chunk by chunk (several chunks,
    training rows among them: leave-one-out across chunk boundaries) with the same bits as
    all rows at once, and the training rows get their ``train_scores_``."""
    det = fitted_tiny(name, kind)
    X_train, X_test = (blobs if kind == "tabular" else digit_images)[:2]
    X = np.concatenate([X_test, X_train] * 4)
    whole = det.score_samples(X)
    assert det._score_chunk_rows() >= len(X) // 2  # one pass, no chunks
    rows = 256
    monkeypatch.setattr(type(det), "_score_chunk_rows", lambda self: rows)
    assert len(X) >= 3 * rows
    calls, stores = [], []
    score_store = type(det)._score_store
    monkeypatch.setattr(type(det), "_score_store",
                        lambda self, Xs, *a: calls.append(len(Xs)) or score_store(self, Xs, *a))
    for method in ("_tabular_store", "_image_store"):  # the store is built chunk by chunk
        build = getattr(type(det), method)
        monkeypatch.setattr(type(det), method, lambda self, Xv, *a, build=build, **k:
                            stores.append(len(Xv)) or build(self, Xv, *a, **k))
    chunked = det.score_samples(X)
    assert len(calls) >= 3 and max(calls) <= 2 * rows
    assert stores == calls  # one store per chunk, none of all rows
    np.testing.assert_array_equal(chunked, whole)
    # the store of all rows at once (the former path) gives the same bits
    np.testing.assert_array_equal(det._score_in_chunks(det._validate_input(X, reset=False)),
                                  whole)
    n_te, n_tr = len(X_test), len(X_train)
    for k in range(4):
        start = k * (n_te + n_tr) + n_te
        np.testing.assert_array_equal(chunked[start:start + n_tr], det.train_scores_)


class NanBeyond(MeanDistance):
    """MeanDistance, with a NaN score for rows more than 50 standard deviations out."""

    def _score_store(self, Xs):
        s = super()._score_store(Xs)
        return np.where(Xs.flatten(1).abs().amax(1).numpy() > 50, np.nan, s)


def test_a_non_finite_score_in_a_later_chunk_names_its_row(monkeypatch):
    """Rows 777 and 901 (of 1000, chunks of 100) score NaN: the error names their rows in the
    caller's array and their largest standardised value, as scoring them in one pass does."""
    rng = np.random.RandomState(0)
    det = NanBeyond().fit(rng.normal(size=(50, 3)))
    X = rng.normal(size=(1000, 3))
    X[777, 1], X[901, 2] = 1e3 * det.feature_scale_[1], -2e3 * det.feature_scale_[2]
    z = float(np.abs((X[[777, 901]] - det.feature_mean_) / det.feature_scale_).max())
    with pytest.raises(ValueError) as whole:
        det.score_samples(X)
    monkeypatch.setattr(NanBeyond, "_score_chunk_rows", lambda self: 100)
    with pytest.raises(ValueError) as chunked:
        det.score_samples(X)
    msg = str(chunked.value)
    assert "2 of 1000 sample(s) (rows [777, 901])" in msg
    assert f"reach {z:.3g} training standard deviations" in msg
    assert msg == str(whole.value)


def test_scoring_validates_without_copying_and_builds_no_full_store(monkeypatch):
    """A float64 or float32 C-contiguous array is validated in place (no copy), and with
    chunks of 100 rows each chunk gets its own store; float images are checked over all
    images at once (the message gives the range of all of them)."""
    rng = np.random.RandomState(0)
    det = MeanDistance().fit(rng.normal(size=(50, 3)))
    for dtype in (np.float64, np.float32):
        X = rng.normal(size=(1000, 3)).astype(dtype)
        assert det._validate_array(X, reset=False) is X
    monkeypatch.setattr(MeanDistance, "_score_chunk_rows", lambda self: 100)
    seen = []
    build = MeanDistance._tabular_store
    monkeypatch.setattr(MeanDistance, "_tabular_store",
                        lambda self, Xv, *a, **k: seen.append(len(Xv)) or build(self, Xv, *a, **k))
    np.testing.assert_allclose(det.score_samples(X), -np.linalg.norm(
        ((X - det.feature_mean_) / det.feature_scale_).astype(np.float32).astype(np.float64),
        axis=1), rtol=1e-12)
    assert seen == [100] * 8 + [200]  # the last chunk takes the remainder
    imgs = MeanDistance().fit(rng.rand(10, 8, 8))
    bad = rng.rand(1000, 8, 8)
    bad[900, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]; got values in "
                                         r"\[.*, 1.5\]"):
        imgs.score_samples(bad)


class MeanDistanceCapped(MeanDistance):
    """:class:`MeanDistance` with ``max_train_scores`` and ``calibration``."""

    def __init__(self, *, max_train_scores="auto", calibration="loo", random_state=0,
                 contamination="auto"):
        super().__init__(random_state=random_state, contamination=contamination)
        self.max_train_scores, self.calibration = max_train_scores, calibration


X50 = np.arange(50, dtype=np.float64)[:, None] ** 1.5  # distinct rows, skewed scores


def test_max_train_scores_scores_a_seeded_subset_of_the_fitted_rows():
    det = MeanDistanceCapped(max_train_scores=20, contamination=0.2).fit(X50)
    rows = det.train_score_rows_
    assert rows.shape == (20,) and np.all(np.diff(rows) > 0) and rows.max() < 50
    all_scores = det.score_samples(X50)
    np.testing.assert_array_equal(det.train_scores_, all_scores[rows])
    assert det.offset_ == np.percentile(det.train_scores_, 20)
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(det.train_scores_))
    # the subset is drawn from random_state only: same seed, same rows; another seed, others
    np.testing.assert_array_equal(MeanDistanceCapped(max_train_scores=20).fit(X50)
                                  .train_score_rows_, rows)
    assert not np.array_equal(MeanDistanceCapped(max_train_scores=20, random_state=1)
                              .fit(X50).train_score_rows_, rows)
    # every training row still gets its label, from the same offset_
    labels = MeanDistanceCapped(max_train_scores=20, contamination=0.2).fit_predict(X50)
    np.testing.assert_array_equal(labels, np.where(all_scores >= det.offset_, 1, -1))
    # PyOD's per-row attributes say why they are missing; the per-sample conveniences work
    for attr in ("decision_scores_", "labels_"):
        with pytest.raises(AttributeError, match=rf"{attr} is not available: fit scored 20 of "
                           r"its training rows \(max_train_scores=20.*max_train_scores=None"):
            getattr(det, attr)
        assert not hasattr(det, attr)
    assert det.threshold_ == -det.offset_
    assert det.predict_proba(X50[:5]).shape == (5, 2)
    assert det.predict_confidence(X50[:5]).shape == (5,)


def test_max_train_scores_at_or_above_the_rows_changes_nothing():
    ref = MeanDistanceCapped(max_train_scores=None).fit(X50)
    for cap in (50, "auto"):
        det = MeanDistanceCapped(max_train_scores=cap).fit(X50)
        assert "train_score_rows_" not in vars(det)
        np.testing.assert_array_equal(det.train_scores_, ref.train_scores_)
        assert det.offset_ == ref.offset_
        np.testing.assert_array_equal(-det.decision_scores_, ref.train_scores_)
    # a refit that scores every row drops the subset of the earlier fit
    det = MeanDistanceCapped(max_train_scores=20).fit(X50)
    assert "train_score_rows_" not in vars(det.set_params(max_train_scores=None).fit(X50))


def test_max_train_scores_with_held_out_calibration_rows():
    """The held-out rows are all scored (they are the calibration set); the cap applies to
    the rows the networks were fitted on. train_scores_ follows train_score_rows_."""
    det = MeanDistanceCapped(max_train_scores=20, calibration=0.2).fit(X50)
    rows, cal = det.train_score_rows_, det.calibration_rows_
    assert len(cal) == 10 and len(rows) == 30 and np.all(np.diff(rows) > 0)
    assert np.isin(cal, rows).all()
    np.testing.assert_array_equal(det.train_scores_, det.score_samples(X50)[rows])
    np.testing.assert_array_equal(det.calibration_scores_,
                                  np.sort(det.train_scores_[np.isin(rows, cal)]))


def test_every_detector_caps_its_training_scores(name, blobs, tmp_path):
    from skood.persistence import load

    X = blobs[0]
    det = tiny(name, max_train_scores=60).fit(X)
    rows = det.train_score_rows_
    assert det.train_scores_.shape == rows.shape == (60,)
    # leave-one-out (kNN scorers) or not, score_samples of the same rows gives the same
    # scores up to float summation order
    np.testing.assert_allclose(det.train_scores_, det.score_samples(X[rows]), rtol=1e-5,
                               atol=1e-5)
    det.save(tmp_path / "m.skood")
    np.testing.assert_array_equal(load(tmp_path / "m.skood").train_score_rows_, rows)
    with pytest.raises(ValueError, match="max_train_scores"):
        tiny(name, max_train_scores=0).fit(X)
