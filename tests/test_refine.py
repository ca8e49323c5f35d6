"""skood.RefinedDetector: training-set refinement of any detector (skood._refine)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from pyod.models.knn import KNN
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skood import FeatureKNNDetector, RefinedDetector
from skood._refine import _SEED_STREAMS
from skood._testing import tiny
from skood._utils import fit_seed, seed_stream
from skood.metrics import make_outlier_scorer


def _contaminated(n=300, n_out=30, clustered=False, seed=0):
    """Normal rows N(0, I) in 5 dimensions, then ``n_out`` anomalies: scattered far away, or
    one tight cluster (the case where a kNN detector takes anomalies for normal data)."""
    rng = np.random.default_rng(seed)
    out = (rng.normal(4.0, 0.3, size=(n_out, 5)) if clustered
           else rng.normal(0, 1, size=(n_out, 5)) * 6 + rng.choice([-6, 6], size=(n_out, 5)))
    return np.r_[rng.normal(size=(n, 5)), out], np.r_[np.zeros(n), np.ones(n_out)].astype(bool)


class _Recorder(OutlierMixin, BaseEstimator):
    """A detector that records what each fit saw (rows by their first column, and y)."""

    fits: list = []

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y=None):
        _Recorder.fits.append((np.asarray(X)[:, 0].copy(), None if y is None else np.asarray(y),
                               self.random_state))
        self.center_ = np.asarray(X).mean(axis=0)
        return self

    def score_samples(self, X):
        return -np.linalg.norm(np.asarray(X) - self.center_, axis=1)


# ------------------------------------------------------------------ the algorithm
def test_parts_are_disjoint_seeded_and_the_final_fit_sees_the_kept_rows():
    X, _ = _contaminated()
    X[:, 0] = np.arange(len(X))  # row ids
    y = np.arange(len(X)) % 3
    _Recorder.fits.clear()
    det = RefinedDetector(_Recorder(random_state=7), n_parts=4, random_state=3).fit(X, y)
    assert len(_Recorder.fits) == 5
    parts = [f[0].astype(int) for f in _Recorder.fits[:4]]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(X)))
    seed = fit_seed(3)
    order = np.random.default_rng(seed_stream(seed, "split", _SEED_STREAMS)).permutation(len(X))
    for got, want in zip(parts, np.array_split(order, 4), strict=True):
        np.testing.assert_array_equal(got, want)
    seeds = np.random.default_rng(seed_stream(seed, "parts", _SEED_STREAMS)).integers(
        np.iinfo(np.int32).max, size=4)
    assert [f[2] for f in _Recorder.fits[:4]] == [int(s) for s in seeds]
    for ids, y_seen, _ in _Recorder.fits:  # y travels with its rows
        np.testing.assert_array_equal(y_seen, y[ids.astype(int)])
    final_ids, _, final_seed = _Recorder.fits[4]
    np.testing.assert_array_equal(final_ids.astype(int), np.flatnonzero(det.kept_))
    assert final_seed == 7  # the final fit keeps the estimator's own random_state
    assert det.kept_.sum() == len(X) - round(0.1 * len(X))


def test_vote_is_the_mean_or_min_rank_under_the_models_that_did_not_see_the_row():
    X, _ = _contaminated()
    det = RefinedDetector(IsolationForest(random_state=0), n_parts=3, random_state=0).fit(X)
    order = np.random.default_rng(
        seed_stream(fit_seed(0), "split", _SEED_STREAMS)).permutation(len(X))
    seeds = np.random.default_rng(seed_stream(fit_seed(0), "parts", _SEED_STREAMS)).integers(
        np.iinfo(np.int32).max, size=3)
    ranks = np.full((3, len(X)), np.nan)
    for k, rows in enumerate(np.array_split(order, 3)):
        m = IsolationForest(random_state=int(seeds[k])).fit(X[rows])
        out = np.setdiff1d(np.arange(len(X)), rows)
        ranks[k, out] = rankdata(m.score_samples(X[out])) / len(out)
    np.testing.assert_allclose(det.vote_scores_, np.nanmean(ranks, axis=0))
    low = RefinedDetector(IsolationForest(random_state=0), n_parts=3, vote="min",
                          random_state=0).fit(X)
    np.testing.assert_allclose(low.vote_scores_, np.nanmin(ranks, axis=0))
    dropped = np.argsort(det.vote_scores_, kind="stable")[: round(0.1 * len(X))]
    np.testing.assert_array_equal(np.flatnonzero(~det.kept_), np.sort(dropped))


def test_scattered_contamination_is_dropped_and_scores_are_the_final_fits():
    X, is_out = _contaminated()
    det = RefinedDetector(IsolationForest(random_state=0), random_state=0).fit(X)
    assert (~det.kept_[is_out]).mean() >= 0.9  # the far-away rows are voted out
    ref = IsolationForest(random_state=0).fit(X[det.kept_])
    np.testing.assert_array_equal(det.score_samples(X), ref.score_samples(X))
    np.testing.assert_array_equal(det.train_scores_, ref.score_samples(X))
    assert det.offset_ == pytest.approx(np.percentile(det.train_scores_, 10))
    np.testing.assert_allclose(det.decision_function(X), det.score_samples(X) - det.offset_)
    np.testing.assert_array_equal(det.predict(X), np.where(det.decision_function(X) >= 0, 1, -1))
    assert det.n_features_in_ == 5 and not hasattr(det, "feature_names_in_")


def test_skood_train_scores_are_kept_rows_own_and_dropped_rows_out_of_sample():
    X, _ = _contaminated(n=200, n_out=20)
    det = RefinedDetector(FeatureKNNDetector(random_state=0, device="cpu"),
                          random_state=0).fit(X)
    np.testing.assert_array_equal(det.train_scores_[det.kept_], det.estimator_.train_scores_)
    np.testing.assert_allclose(det.train_scores_[~det.kept_],
                               det.estimator_.score_samples(X[~det.kept_]))
    assert det.contamination_ == 0.1 == det.drop_  # contamination="auto" -> 0.1


def test_pvalues_decisions_and_pyod_conveniences():
    """The same decisions as every skood detector: calibration scores from the final fit's
    own (a skood detector) or the kept rows' training scores (any other detector)."""
    from skood._conformal import benjamini_hochberg, conformal_pvalues

    X, is_out = _contaminated()
    det = RefinedDetector(IsolationForest(random_state=0), random_state=0).fit(X)
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(det.train_scores_[det.kept_]))
    p = det.pvalues(X)
    np.testing.assert_array_equal(p, conformal_pvalues(det.calibration_scores_,
                                                       det.score_samples(X)))
    np.testing.assert_array_equal(det.predict(X, alpha=0.05), np.where(p <= 0.05, -1, 1))
    np.testing.assert_array_equal(det.predict(X, fdr=0.1),
                                  np.where(benjamini_hochberg(p, 0.1), -1, 1))
    assert (det.predict(X, alpha=0.01)[is_out] == -1).mean() > 0.9
    np.testing.assert_array_equal(det.decision_scores_, -det.train_scores_)
    assert det.threshold_ == -det.offset_
    np.testing.assert_array_equal(det.labels_, (det.train_scores_ < det.offset_).astype(int))
    proba = det.predict_proba(X[:10])
    assert proba.shape == (10, 2) and np.allclose(proba.sum(1), 1)
    assert det.predict_confidence(X[:10]).shape == (10,)
    with pytest.raises(ValueError, match="at most one of alpha"):
        det.predict(X, alpha=0.1, fdr=0.1)
    skood_det = RefinedDetector(FeatureKNNDetector(calibration=0.2, random_state=0,
                                                   device="cpu"), random_state=0).fit(X)
    np.testing.assert_array_equal(skood_det.calibration_scores_,
                                  skood_det.estimator_.calibration_scores_)
    assert len(skood_det.calibration_scores_) == round(0.2 * skood_det.kept_.sum())


def test_a_refiner_of_another_kind_sees_the_cluster_that_knn_takes_for_normal():
    X, is_out = _contaminated(clustered=True)
    knn = FeatureKNNDetector(random_state=0, device="cpu")
    alone = RefinedDetector(knn, random_state=0).fit(X)
    assert (~alone.kept_[is_out]).mean() < 0.5  # the cluster's rows vouch for each other
    mixed = RefinedDetector(knn, refiner=IsolationForest(random_state=0), random_state=0).fit(X)
    assert (~mixed.kept_[is_out]).mean() >= 0.9
    assert isinstance(mixed.estimator_, FeatureKNNDetector)


def test_pyod_detector_is_read_with_the_opposite_sign_and_its_contamination():
    X, _ = _contaminated()
    det = RefinedDetector(KNN(contamination=0.05), random_state=0).fit(X)
    assert det.drop_ == det.contamination_ == 0.05
    np.testing.assert_allclose(det.score_samples(X[:20]), -det.estimator_.decision_function(X[:20]))
    np.testing.assert_allclose(det.train_scores_[det.kept_], -det.estimator_.decision_scores_)
    assert det.kept_.sum() == len(X) - round(0.05 * len(X))


def test_drop_fraction_and_numeric_contamination():
    X, _ = _contaminated()
    det = RefinedDetector(IsolationForest(contamination=0.2, random_state=0), drop=0.05,
                          random_state=0).fit(X)
    assert det.drop_ == 0.05 and det.contamination_ == 0.2
    assert (~det.kept_).sum() == round(0.05 * len(X))
    assert np.mean(det.predict(X) == -1) == pytest.approx(0.2, abs=0.01)


def test_dataframe_and_list_rows_as_arrays():
    pd = pytest.importorskip("pandas")
    X, _ = _contaminated()
    ref = RefinedDetector(IsolationForest(random_state=0), random_state=0).fit(X)
    det = clone(ref).fit(pd.DataFrame(X, columns=list("abcde")))
    np.testing.assert_array_equal(det.kept_, ref.kept_)
    assert list(det.feature_names_in_) == list("abcde")
    np.testing.assert_array_equal(clone(ref).fit(X.tolist()).kept_, ref.kept_)


def test_random_state_controls_the_split():
    X, _ = _contaminated()
    a = RefinedDetector(IsolationForest(random_state=0), random_state=0).fit(X)
    b = RefinedDetector(IsolationForest(random_state=0), random_state=0).fit(X)
    c = RefinedDetector(IsolationForest(random_state=0), random_state=1).fit(X)
    np.testing.assert_array_equal(a.vote_scores_, b.vote_scores_)
    assert not np.allclose(a.vote_scores_, c.vote_scores_)


def test_seed_streams_are_pinned():
    assert _SEED_STREAMS == {"split": 12, "parts": 13}


# ------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize(("params", "match"), [
    ({"n_parts": 1}, "n_parts"),
    ({"drop": 0.5}, "drop"),
    ({"drop": "auto"}, "drop"),
    ({"vote": "median"}, "vote"),
    ({"refiner": "IsolationForest"}, "refiner"),
])
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        RefinedDetector(IsolationForest(), **params).fit(_contaminated()[0])


def test_too_few_rows_for_the_parts():
    X = _contaminated()[0][:9]
    with pytest.raises(ValueError, match=r"n_parts=5\) needs at least 10 .*got 9 sample"):
        RefinedDetector(IsolationForest()).fit(X)
    with pytest.raises(ValueError, match="y has 3 rows but X has 9"):
        RefinedDetector(IsolationForest(), n_parts=2).fit(X, np.zeros(3))


def test_estimator_without_fit_is_refused():
    with pytest.raises(ValueError, match="estimator"):
        RefinedDetector("IsolationForest").fit(_contaminated()[0])


# ---------------------------------------------------------- the estimator contract
def test_clone_pickle_pipeline_and_grid_search():
    X, is_out = _contaminated()
    det = RefinedDetector(IsolationForest(random_state=0), random_state=0)
    assert clone(det).get_params()["estimator__random_state"] == 0
    fitted = clone(det).fit(X)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.score_samples(X), fitted.score_samples(X))
    pipe = make_pipeline(StandardScaler(), clone(det)).fit(X)
    assert pipe.score_samples(X).shape == (len(X),)
    y = np.where(is_out, -1, 1)  # sklearn's outlier labels
    folds = [(np.arange(0, len(X), 2), np.arange(1, len(X), 2))]
    gs = GridSearchCV(det, {"n_parts": [2, 3], "estimator__n_estimators": [20]},
                      scoring=make_outlier_scorer("auroc"), cv=folds, error_score="raise")
    gs.fit(X, y)
    assert set(gs.best_params_) == {"n_parts", "estimator__n_estimators"}


def test_sklearn_tags_follow_the_wrapped_detector():
    assert RefinedDetector(tiny("FeatureKNNDetector")).__sklearn_tags__().input_tags.three_d_array
    assert not RefinedDetector(IsolationForest()).__sklearn_tags__().input_tags.three_d_array


# float32 features: a subset's scores can differ from the full batch's at ~1e-6 relative
_FLOAT32 = {"check_methods_subset_invariance": "float32 batch-size rounding (~1e-6 relative)"}


@parametrize_with_checks(
    [RefinedDetector(IsolationForest(n_estimators=10, random_state=0), n_parts=2, random_state=0),
     RefinedDetector(tiny("FeatureKNNDetector"), n_parts=2, random_state=0)],
    expected_failed_checks=lambda est: (
        _FLOAT32 if isinstance(est.estimator, FeatureKNNDetector) else {}),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
