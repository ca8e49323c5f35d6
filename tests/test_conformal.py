"""Conformal p-values, alpha / FDR decisions and PyOD's conveniences on every detector.

Validity is tested statistically: with fixed seeds, the realised false-alarm rate over
many independent draws must stay below alpha plus a binomial (or beta-binomial) margin
computed here, not a single lucky draw.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import binom
from sklearn.exceptions import NotFittedError
from torch import nn

from skood._conformal import (
    benjamini_hochberg,
    calibration_split,
    check_level,
    conformal_pvalues,
    outlier_probability,
    prediction_confidence,
)
from skood._testing import DETECTORS, tiny
from skood._utils import fit_seed, seed_stream
from skood.pretrained import PretrainedEncoder


# ------------------------------------------------------------ the formulas
def test_pvalues_equal_the_formula():
    rng = np.random.default_rng(0)
    cal = np.sort(np.round(rng.normal(size=37), 1))  # ties inside the calibration set
    s = np.r_[np.round(rng.normal(size=200), 1), cal[:5], -np.inf, np.inf, cal.min() - 1]
    want = np.array([(1 + np.sum(cal <= x)) / (len(cal) + 1) for x in s])
    np.testing.assert_array_equal(conformal_pvalues(cal, s), want)
    p = conformal_pvalues(cal, s)
    assert p.min() == 1 / 38 and p.max() == 1.0  # never 0: the test row counts itself
    # calibration scores in any order (a caller's unsorted training scores): the same
    np.testing.assert_array_equal(conformal_pvalues(rng.permutation(cal), s), want)


def test_pvalues_of_exchangeable_rows_are_valid():
    """Normal scores: calibration and test drawn from the same distribution, 20,000
    independent (calibration set, test row) draws; P(p <= alpha) = floor(alpha (n+1))/(n+1)
    exactly, and the realised rate stays within the binomial's 1e-6 quantile of it."""
    rng = np.random.default_rng(1)
    draws, n = 20_000, 49
    cal = np.sort(rng.normal(size=(draws, n)), axis=1)
    test = rng.normal(size=draws)
    p = np.array([conformal_pvalues(c, [t])[0] for c, t in zip(cal, test, strict=True)])
    for alpha in (0.01, 0.05, 0.1, 0.3):
        exact = np.floor(alpha * (n + 1)) / (n + 1)
        assert exact <= alpha
        hits = int(np.sum(p <= alpha))
        assert binom.ppf(1e-6, draws, exact) <= hits <= binom.isf(1e-6, draws, exact)


def _bh_direct(p, q):
    """Benjamini-Hochberg written out: the largest k with p_(k) <= k q / m, reject p_(1..k)."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    for k in range(m, 0, -1):
        if p[order[k - 1]] <= k * q / m:
            out = np.zeros(m, bool)
            out[order[:k]] = True
            return out
    return np.zeros(m, bool)


def test_benjamini_hochberg_hand_examples():
    np.testing.assert_array_equal(benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5]), 0.1),
                                  [True, True, True, False])
    # step-up: p_(1) = 0.02 > 0.0125 and p_(2) > 0.025, yet p_(3) = 0.035 <= 0.0375 rejects 3
    np.testing.assert_array_equal(benjamini_hochberg(np.array([0.9, 0.035, 0.03, 0.02]), 0.05),
                                  [False, True, True, True])
    assert not benjamini_hochberg(np.array([0.5, 0.6, 0.06]), 0.1).any()
    assert benjamini_hochberg(np.array([0.05, 0.05]), 0.05).all()  # ties rejected together
    assert benjamini_hochberg(np.zeros(0), 0.1).shape == (0,)


def test_benjamini_hochberg_equals_direct_implementation():
    rng = np.random.default_rng(2)
    for trial in range(300):
        m = int(rng.integers(1, 40))
        p = rng.uniform(size=m) ** rng.uniform(0.5, 4)
        if trial % 3 == 0:
            p = np.round(p, 2)  # ties
        q = float(rng.uniform(0.01, 0.5))
        np.testing.assert_array_equal(benjamini_hochberg(p, q), _bh_direct(p, q))


def test_benjamini_hochberg_on_conformal_pvalues_controls_fdr():
    """2,000 batches of 90 normal + 10 shifted rows against 99 normal calibration scores:
    the mean false-discovery proportion stays below q plus 4 standard errors."""
    rng = np.random.default_rng(3)
    q, fdp = 0.1, []
    for _ in range(2000):
        cal = np.sort(rng.normal(size=99))
        s = np.r_[rng.normal(size=90), rng.normal(loc=-3.5, size=10)]
        rej = benjamini_hochberg(conformal_pvalues(cal, s), q)
        fdp.append(rej[:90].sum() / max(rej.sum(), 1))
    fdp = np.array(fdp)
    assert fdp.mean() <= q + 4 * fdp.std() / np.sqrt(len(fdp))
    assert fdp.mean() > 0.5 * q * 0.9  # not trivially conservative: near q * m0 / m


def test_calibration_split_is_seeded_and_sized():
    a = calibration_split(101, 0.2, 7)
    assert len(a) == 20 and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 101
    np.testing.assert_array_equal(a, calibration_split(101, 0.2, 7))
    assert not np.array_equal(a, calibration_split(101, 0.2, 8))
    assert len(calibration_split(3, 0.1, 0)) == 1  # at least one row


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.1", None])
def test_check_level(bad):
    with pytest.raises(ValueError, match="must be a float in \\(0, 1\\)"):
        check_level(bad, "alpha")


def test_pyod_transforms_on_degenerate_training_scores():
    train = np.zeros(5)
    np.testing.assert_array_equal(outlier_probability(train, [-1.0, 0.0, 2.0], "unify")[:, 1],
                                  [0, 0, 1])
    np.testing.assert_array_equal(outlier_probability(train, [-1.0, 0.5, 2.0], "linear")[:, 1],
                                  [0, 0.5, 1])  # zero range scales by 1, as MinMaxScaler
    with pytest.raises(ValueError, match="'linear' or 'unify'"):
        outlier_probability(train, [0.0], "sigmoid")
    conf = prediction_confidence(np.arange(10.0), [9.5, -1.0], 0.1, np.array([True, False]))
    assert np.all((conf >= 0) & (conf <= 1)) and conf[1] > 0.9  # a clear inlier


# ------------------------------------------------------------ the detectors
@pytest.fixture(scope="module")
def split_fitted(name, blobs):
    return tiny(name, calibration=0.25).fit(blobs[0])


def test_loo_calibration_is_the_training_scores(fitted, blobs):
    X_test = blobs[1]
    assert fitted.calibration == "loo" and "calibration_rows_" not in vars(fitted)
    np.testing.assert_array_equal(fitted.calibration_scores_, np.sort(fitted.train_scores_))
    p = fitted.pvalues(X_test)
    np.testing.assert_array_equal(p, conformal_pvalues(np.sort(fitted.train_scores_),
                                                       fitted.score_samples(X_test)))
    np.testing.assert_array_equal(fitted.predict(X_test, alpha=0.05), np.where(p <= 0.05, -1, 1))
    np.testing.assert_array_equal(fitted.predict(X_test, fdr=0.1),
                                  np.where(benjamini_hochberg(p, 0.1), -1, 1))
    np.testing.assert_array_equal(fitted.predict(X_test),  # the contamination rule
                                  np.where(fitted.decision_function(X_test) >= 0, 1, -1))
    y = blobs[2]
    assert np.mean(fitted.predict(X_test, fdr=0.1)[y == -1] == -1) > 0.9  # shifted blobs found


def test_split_calibration(name, split_fitted, blobs):
    X_train, X_test, y_test = blobs
    det = split_fitted
    rows = det.calibration_rows_
    want = calibration_split(400, 0.25, seed_stream(fit_seed(0), "calibration"))
    np.testing.assert_array_equal(rows, want)
    assert rows.dtype.kind == "i" and len(rows) == 100
    assert det.train_scores_.shape == (400,)
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(det.train_scores_[rows]))
    # the held-out rows are scored out of sample, as any new row
    np.testing.assert_allclose(det.train_scores_[rows], det.score_samples(X_train[rows]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(det.predict(X_train),  # = fit_predict, rows held out or not
                                  np.where(det.train_scores_ - det.offset_ >= 0, 1, -1))
    assert det.offset_ == pytest.approx(np.percentile(det.train_scores_, 10))
    p = det.pvalues(X_test)
    np.testing.assert_array_equal(p, conformal_pvalues(det.calibration_scores_,
                                                       det.score_samples(X_test)))
    assert p[y_test == 1].mean() > 0.3 and np.mean(det.predict(X_test, fdr=0.1)[y_test == -1]
                                                     == -1) > 0.9
    # a refit with "loo" removes the held-out rows
    loo = copy.deepcopy(det).set_params(calibration="loo").fit(X_train[:200])
    assert "calibration_rows_" not in vars(loo) and len(loo.calibration_scores_) == 200


def test_split_fit_is_the_fit_of_the_other_rows(name, split_fitted, blobs):
    """The networks (and banks, standardisation) come from the fitted rows only: the split
    fit equals a "loo" fit on those rows, whose scores of the held-out rows are theirs."""
    X = blobs[0]
    rows = split_fitted.calibration_rows_
    kept = np.setdiff1d(np.arange(len(X)), rows)
    ref = tiny(name).fit(X[kept])
    np.testing.assert_array_equal(split_fitted.train_scores_[kept], ref.train_scores_)
    np.testing.assert_array_equal(split_fitted.train_scores_[rows], ref.score_samples(X[rows]))
    np.testing.assert_array_equal(split_fitted.score_samples(blobs[1]),
                                  ref.score_samples(blobs[1]))


def test_split_fit_passes_the_labels_of_the_fitted_rows():
    from skood.datasets import load_digits_images

    X, y = load_digits_images()
    X, y = X[:200], y[:200]
    det = tiny("RotAuxMSPDetector", supervised=True, batch_size=32, calibration=0.2).fit(X, y)
    kept = np.setdiff1d(np.arange(200), det.calibration_rows_)
    ref = tiny("RotAuxMSPDetector", supervised=True, batch_size=32).fit(X[kept], y[kept])
    np.testing.assert_array_equal(det.train_scores_[kept], ref.train_scores_)
    with pytest.raises(ValueError, match="y has 197 labels but X has 200 samples"):
        tiny("RotAuxMSPDetector", supervised=True, calibration=0.2).fit(X, y[:197])


def test_split_fit_trains_on_the_other_rows_only(blobs):
    """FeatureKNN's bank is the fitted rows: the held-out rows are not in it."""
    X = blobs[0]
    det = tiny("FeatureKNNDetector", calibration=0.3).fit(X)
    assert len(det.bank_) == 400 - len(det.calibration_rows_) == 280
    kept = np.setdiff1d(np.arange(400), det.calibration_rows_)
    np.testing.assert_array_equal(det.train_store_.numpy(),
                                  ((X[kept] - X[kept].mean(0)) / X[kept].std(0)).astype(np.float32))
    fit_predict = tiny("FeatureKNNDetector", calibration=0.3).fit_predict(X)
    np.testing.assert_array_equal(fit_predict, det.predict(X))


def test_split_mode_on_images(name, digit_images):
    X = digit_images[0]
    det = tiny(name, batch_size=32, calibration=0.2).fit(X)
    assert len(det.calibration_rows_) == 24 and det.train_scores_.shape == (120,)
    p = det.pvalues(digit_images[1])
    assert p.shape == (len(digit_images[1]),) and np.all((p > 0) & (p <= 1))


def test_split_mode_with_frozen_features_is_the_split_fit_on_the_features(digit_images):
    """Frozen-feature mode: the fitted rows' features set the standardisation, the held-out
    images are mapped by the same encoder; equal to the split fit on the features."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    enc = PretrainedEncoder(body, resolution=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    imgs = digit_images[0]
    det = tiny("SemSADDetector", backbone=enc, calibration=0.25, feature_scaling="standardize")
    det.fit(imgs)
    with torch.inference_mode():
        feats = enc.eval()(torch.from_numpy(imgs)[:, None].float().div_(255.0)).numpy()
    ref = tiny("SemSADDetector", calibration=0.25).fit(feats)
    assert det.feature_mode_
    np.testing.assert_array_equal(det.calibration_rows_, ref.calibration_rows_)
    np.testing.assert_array_equal(det.feature_mean_, ref.feature_mean_)
    np.testing.assert_array_equal(det.train_scores_, ref.train_scores_)
    np.testing.assert_array_equal(det.calibration_scores_, ref.calibration_scores_)


def test_pyod_conveniences(name, fitted, blobs):
    X_train, X_test, _ = blobs
    det = fitted
    np.testing.assert_array_equal(det.decision_scores_, -det.train_scores_)
    assert det.threshold_ == -det.offset_
    labels = det.labels_
    assert labels.dtype.kind == "i" and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, (det.predict(X_train) == -1).astype(int))
    for method in ("linear", "unify"):
        proba = det.predict_proba(X_test, method=method)
        assert proba.shape == (240, 2) and np.all((proba >= 0) & (proba <= 1))
        np.testing.assert_allclose(proba.sum(1), 1)
    lin = det.predict_proba(X_test)[:, 1]  # monotone in the outlier score -score_samples
    s = det.score_samples(X_test)
    assert np.all(np.diff(lin[np.argsort(-s)]) >= -1e-12)
    conf = det.predict_confidence(X_test)
    assert conf.shape == (240,) and np.all((conf >= 0) & (conf <= 1))
    with pytest.raises(ValueError, match="'linear' or 'unify'"):
        det.predict_proba(X_test, method="softmax")


def test_unfitted_detector_has_no_pyod_attributes(name):
    det = tiny(name)
    for attr in ("decision_scores_", "threshold_", "labels_"):
        assert not hasattr(det, attr)
        with pytest.raises(NotFittedError):
            getattr(det, attr)
    for method in (det.pvalues, det.predict_proba, det.predict_confidence):
        with pytest.raises(NotFittedError):
            method(np.zeros((3, 8)))


def test_decision_arguments_are_checked(fitted, blobs):
    X = blobs[1][:10]
    with pytest.raises(ValueError, match="at most one of alpha"):
        fitted.predict(X, alpha=0.1, fdr=0.1)
    for kw in ({"alpha": 0}, {"alpha": 1.0}, {"fdr": -0.1}, {"fdr": "0.1"}):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} must be a float in"):
            fitted.predict(X, **kw)


@pytest.mark.parametrize("bad", [0.0, 0.5, 0.7, "split", -0.2])
def test_calibration_parameter_is_validated(bad, blobs):
    with pytest.raises(ValueError, match="calibration"):
        tiny("FeatureKNNDetector", calibration=bad).fit(blobs[0][:50])


def test_split_needs_enough_rows(blobs):
    with pytest.raises(ValueError, match="calibration=0.4 holds out 2 of 5 training rows, "
                                         "leaving 3.*at least 5"):
        tiny("FeatureKNNDetector", n_neighbors=4, calibration=0.4).fit(blobs[0][:5])
    with pytest.raises(ValueError, match="2D array"):
        tiny("FeatureKNNDetector", calibration=0.2).fit(np.zeros(10))


def _split_false_alarms(name, n_fits, alpha, **params):
    """Split-mode fits on fresh Gaussian data (independent seeds); per fit the false-alarm
    rate on 200 fresh normal rows. Returns the rates and the calibration size."""
    rates = []
    for seed in range(n_fits):
        rng = np.random.default_rng(100 + seed)
        X, X_test = rng.normal(size=(160, 4)), rng.normal(size=(200, 4))
        det = tiny(name, calibration=0.25, random_state=seed, **params).fit(X)
        rates.append(np.mean(det.pvalues(X_test) <= alpha))
    return np.array(rates), len(det.calibration_rows_)


def _beta_binomial_bound(rates, n_cal, m, alpha, z=4.0):
    """Upper bound on the mean of ``rates``: given its calibration set a fit's false-alarm
    rate is Beta(k, n_cal + 1 - k) distributed (k = floor(alpha (n_cal + 1))) for a valid
    p-value, each observed on m test rows; mean + z standard errors of that mixture."""
    k = np.floor(alpha * (n_cal + 1))
    a, b = k, n_cal + 1 - k
    mean = a / (a + b)
    var_beta = a * b / ((a + b) ** 2 * (a + b + 1))
    var = var_beta + (mean - mean**2 - var_beta) / m
    return mean + z * np.sqrt(var / len(rates))


def test_split_pvalues_are_valid_over_seeds():
    """FeatureKNN, 40 independent split-mode fits: the mean false-alarm rate at alpha = 0.1
    stays below the beta-binomial bound of a valid p-value."""
    rates, n_cal = _split_false_alarms("FeatureKNNDetector", 40, 0.1)
    assert n_cal == 40
    assert rates.mean() <= _beta_binomial_bound(rates, n_cal, 200, 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("detector", DETECTORS)
def test_split_pvalues_are_valid_over_seeds_every_detector(detector):
    for alpha in (0.05, 0.1):
        rates, n_cal = _split_false_alarms(detector, 25, alpha)
        assert rates.mean() <= _beta_binomial_bound(rates, n_cal, 200, alpha)


def test_the_decisions_mixin_on_a_detector_of_ones_own():
    """ConformalDecisionsMixin gives any scorer with offset_, train_scores_ and
    _contamination_level the decisions of skood's detectors; both skood's bases use it."""
    from sklearn.base import BaseEstimator

    from skood import BaseDeepDetector, RefinedDetector
    from skood._conformal import ConformalDecisionsMixin

    class Negated(ConformalDecisionsMixin, BaseEstimator):
        def fit(self, X):
            self.train_scores_ = -np.abs(np.asarray(X, dtype=float))
            self.offset_ = float(np.percentile(self.train_scores_, 20))
            return self

        def score_samples(self, X):
            return -np.abs(np.asarray(X, dtype=float))

        def _contamination_level(self):
            return 0.2

    det = Negated().fit(np.arange(10.0))
    # no calibration_scores_: the sorted training scores calibrate
    np.testing.assert_array_equal(det.pvalues([0.0, 9.5]), [1.0, 1 / 11])
    assert det.predict([0.0, 9.5], alpha=0.1).tolist() == [1, -1]
    assert det.predict([0.0, 9.5]).tolist() == [1, -1]
    assert det.labels_.sum() == 2 and det.threshold_ == -det.offset_
    assert issubclass(BaseDeepDetector, ConformalDecisionsMixin)
    assert issubclass(RefinedDetector, ConformalDecisionsMixin)
