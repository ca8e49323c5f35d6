"""Tests for skood.metrics (all fast, no data files)."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import LocalOutlierFactor

from skood.metrics import (
    ap_scorer,
    auroc,
    auroc_scorer,
    average_precision,
    evaluate,
    fpr95_scorer,
    fpr_at_95_tpr,
    make_outlier_scorer,
    precision_at_n,
)

# Scores are higher = more normal: the anomalies (y=1) have the low scores.
Y = np.array([0, 0, 0, 1, 1])
PERFECT = np.array([5.0, 4.0, 3.0, 1.0, 0.0])


def test_perfect_separation():
    assert auroc(Y, PERFECT) == 1.0
    assert average_precision(Y, PERFECT) == 1.0
    assert fpr_at_95_tpr(Y, PERFECT) == 0.0
    assert precision_at_n(Y, PERFECT) == 1.0


def test_reversed_scores():
    rev = -PERFECT
    assert auroc(Y, rev) == 0.0
    assert fpr_at_95_tpr(Y, rev) == 1.0
    assert precision_at_n(Y, rev) == 0.0


def test_sign_convention_higher_is_normal():
    # Anomaly score = -scores; passing anomaly scores directly gives 1 - AUROC.
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 50)
    s = rng.randn(50) - 2.0 * y  # anomalies score lower
    assert auroc(y, s) > 0.8
    assert auroc(y, -s) == pytest.approx(1.0 - auroc(y, s))
    assert auroc(y.astype(bool), s) == auroc(y, s)


def test_agreement_with_sklearn_random():
    rng = np.random.RandomState(42)
    for _ in range(5):
        y = rng.randint(0, 2, 200)
        s = rng.randn(200)
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, -s))
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, -s))


def test_auroc_ties_count_half():
    assert auroc([0, 1], [1.0, 1.0]) == 0.5


def test_fpr95_hand_computed():
    # 20 anomalies: k = ceil(0.95 * 20) = 19, so the threshold (on -scores) is the 19th
    # highest anomaly score. Anomalies have scores 0..19 (anomaly scores 0..-19): the 19th
    # highest anomaly score is -18, i.e. flag every sample with score <= 18.
    y = np.r_[np.ones(20), np.zeros(10)].astype(int)
    normals = np.array([-1, 5, 17.5, 18, 18.5, 19, 20, 30, 40, 50], dtype=float)
    s = np.r_[np.arange(20.0), normals]
    # normals with score <= 18: -1, 5, 17.5, 18 (tie counts as FP) -> 4 / 10
    assert fpr_at_95_tpr(y, s) == pytest.approx(0.4)
    # with 10 anomalies k = ceil(9.5) = 10: all anomalies must be flagged
    y2 = np.r_[np.ones(10), np.zeros(4)].astype(int)
    s2 = np.r_[np.arange(10.0), [3.0, 9.0, 9.5, 100.0]]
    assert fpr_at_95_tpr(y2, s2) == pytest.approx(0.5)


def test_precision_at_n_hand_computed():
    # sorted by score (most anomalous first): 0.1(a) 0.2(n) 0.3(a) 0.4(n) 0.5(a) 0.9(n)
    y = np.array([1, 0, 1, 0, 1, 0])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    # n = 3 anomalies -> top 3: a, n, a -> 2/3
    assert precision_at_n(y, s) == pytest.approx(2 / 3)
    assert precision_at_n(y, s, n=1) == 1.0
    assert precision_at_n(y, s, n=2) == 0.5
    assert precision_at_n(y, s, n=6) == 0.5
    # ties at the n-th score are all included: top-1 ties with a normal sample
    assert precision_at_n([1, 0, 0], [0.0, 0.0, 1.0], n=1) == 0.5


def test_evaluate_keys_and_values():
    res = evaluate(Y, PERFECT)
    assert set(res) == {"auroc", "ap", "fpr95", "precision_at_n"}
    assert res == {"auroc": 1.0, "ap": 1.0, "fpr95": 0.0, "precision_at_n": 1.0}
    assert all(isinstance(v, float) for v in res.values())


@pytest.mark.parametrize(
    "func", [auroc, average_precision, fpr_at_95_tpr, precision_at_n, evaluate]
)
def test_errors(func):
    with pytest.raises(ValueError, match="different lengths"):
        func([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        func([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="non-finite"):
        func([0, 1], [np.inf, 0.1])
    with pytest.raises(ValueError, match="single class"):
        func([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="single class"):
        func([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="0/1"):
        func([-1, 1], [0.1, 0.2])


def test_precision_at_n_bad_n():
    with pytest.raises(ValueError, match="n must be"):
        precision_at_n(Y, PERFECT, n=0)
    with pytest.raises(ValueError, match="n must be"):
        precision_at_n(Y, PERFECT, n=6)


class _FixedScore(OutlierMixin, BaseEstimator):
    """Toy detector: decision_function = -|x - center| (higher = more normal)."""

    def __init__(self, center=0.0):
        self.center = center

    def fit(self, X, y=None):
        self.is_fitted_ = True
        return self

    def decision_function(self, X):
        return -np.abs(np.asarray(X)[:, 0] - self.center)

    def predict(self, X):
        return np.where(self.decision_function(X) > -1.0, 1, -1)


def _toy_data():
    rng = np.random.RandomState(0)
    X_in = rng.randn(60, 1) * 0.3 + 2.0
    X_out = rng.uniform(-4, 0, size=(20, 1))
    X = np.r_[X_in, X_out]
    y = np.r_[np.ones(60), -np.ones(20)].astype(int)  # sklearn convention
    perm = rng.permutation(len(X))
    return X[perm], y[perm]


def test_scorers_sign_and_label_conventions():
    X, y = _toy_data()
    good, bad = _FixedScore(center=2.0), _FixedScore(center=-2.0)
    y_outlier = (y == -1).astype(int)
    assert auroc_scorer(good, X, y) == pytest.approx(auroc(y_outlier, good.decision_function(X)))
    assert auroc_scorer(good, X, y) > 0.95
    assert auroc_scorer(bad, X, y) < 0.5
    # 0 as the outlier label works the same as -1
    assert auroc_scorer(good, X, np.where(y == 1, 1, 0)) == auroc_scorer(good, X, y)
    assert ap_scorer(good, X, y) == pytest.approx(
        average_precision(y_outlier, good.decision_function(X))
    )
    fpr = fpr_at_95_tpr(y_outlier, good.decision_function(X))
    assert fpr95_scorer(good, X, y) == pytest.approx(-fpr)
    assert fpr95_scorer(good, X, y) >= fpr95_scorer(bad, X, y)
    with pytest.raises(ValueError, match="outlier convention"):
        auroc_scorer(good, X, y + 5)
    with pytest.raises(ValueError, match="needs labels"):
        auroc_scorer(good, X, None)


def test_grid_search_with_scorers():
    X, y = _toy_data()
    for scorer in (auroc_scorer, ap_scorer, fpr95_scorer):
        gs = GridSearchCV(_FixedScore(), {"center": [-2.0, 0.0, 2.0]}, scoring=scorer, cv=3)
        gs.fit(X, y)
        assert gs.best_params_ == {"center": 2.0}
    # a real sklearn detector with score_samples/decision_function
    scores = cross_val_score(LocalOutlierFactor(novelty=True), X, y, scoring=auroc_scorer, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_make_outlier_scorer_options():
    X, y = _toy_data()
    est = _FixedScore(center=2.0)
    y_outlier = (y == -1).astype(int)
    p_at_n = make_outlier_scorer("precision_at_n")
    assert p_at_n(est, X, y) == pytest.approx(precision_at_n(y_outlier, est.decision_function(X)))
    custom = make_outlier_scorer(lambda yo, s: float(np.mean(s[yo == 1])), greater_is_better=False)
    assert custom(est, X, y) == pytest.approx(-np.mean(est.decision_function(X)[y == -1]))
    with pytest.raises(ValueError, match="Unknown metric"):
        make_outlier_scorer("accuracy")
    with pytest.raises(TypeError):
        make_outlier_scorer(3)
