"""PyODAdapter: skood detectors inside PyOD's own tools."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyod.models.knn import KNN
from pyod.models.lscp import LSCP
from pyod.utils.data import evaluate_print, generate_data
from pyod.utils.utility import precision_n_scores
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from skood._testing import tiny
from skood.adapters import PyODAdapter


def tiny_semsad():
    return tiny("SemSADDetector", batch_size=32)  # 270 rows: several batches


@pytest.fixture(scope="module")
def pyod_data():
    # PyOD's own generator (y = 1 for outliers); novelty setting: fit on the
    # inliers of the training part (SemSAD's density ratio is not robust to
    # contaminated training data, see the README), score the contaminated test part
    X_tr, X_te, y_tr, y_te = generate_data(n_train=300, n_test=200, n_features=4,
                                           contamination=0.1, random_state=0)
    return X_tr[y_tr == 0], X_te, y_tr[y_tr == 0], y_te


@pytest.fixture(scope="module")
def fitted(pyod_data):
    X_tr = pyod_data[0]
    return PyODAdapter(tiny_semsad(), contamination=0.1).fit(X_tr)


def test_pyod_attributes(fitted, pyod_data):
    X_tr, X_te = pyod_data[:2]
    n = len(X_tr)
    assert fitted.decision_scores_.shape == (n,)
    # the stored training scores are used, negated: higher = more abnormal
    np.testing.assert_array_equal(fitted.decision_scores_, -fitted.detector_.train_scores_)
    assert set(np.unique(fitted.labels_)) <= {0, 1}
    assert fitted.labels_.sum() == pytest.approx(0.1 * n, abs=2)
    assert fitted.threshold_ == pytest.approx(np.percentile(fitted.decision_scores_, 90))
    pred = fitted.predict(X_te)
    assert pred.shape == (len(X_te),) and set(np.unique(pred)) <= {0, 1}
    # predict agrees with the threshold on decision_function
    np.testing.assert_array_equal(pred, (fitted.decision_function(X_te) > fitted.threshold_))
    proba = fitted.predict_proba(X_te)
    assert proba.shape == (len(X_te), 2) and np.allclose(proba.sum(1), 1)


def test_sign_matches_pyod(fitted, pyod_data):
    X_tr, X_te, _, y_te = pyod_data
    scores = fitted.decision_function(X_te)
    np.testing.assert_allclose(scores, -fitted.detector_.score_samples(X_te))
    # higher = more abnormal, like PyOD's own KNN: both rank outliers first
    assert roc_auc_score(y_te, scores) > 0.8
    assert roc_auc_score(y_te, KNN().fit(X_tr).decision_function(X_te)) > 0.8


def test_pyod_evaluation_helpers(fitted, pyod_data, capsys):
    _, X_te, _, y_te = pyod_data
    scores = fitted.decision_function(X_te)
    evaluate_print("SemSAD", y_te, scores)
    out = capsys.readouterr().out
    assert "SemSAD ROC:" in out and "precision @ rank n:" in out
    assert precision_n_scores(y_te, scores) > 0.4


def test_inside_lscp_combination(pyod_data):
    """PyOD's LSCP combines the adapted skood detector with PyOD's own detectors."""
    X_tr, X_te, _, y_te = pyod_data
    lscp = LSCP([PyODAdapter(tiny_semsad()), KNN(n_neighbors=10), KNN(n_neighbors=20)],
                random_state=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*sign", category=UserWarning)
        lscp.fit(X_tr)  # the adapter's path never warns about the sign
        scores = lscp.decision_function(X_te)
    assert scores.shape == (len(X_te),) and np.isfinite(scores).all()
    assert roc_auc_score(y_te, scores) > 0.8


def test_contamination_and_clone(pyod_data):
    X_tr = pyod_data[0]
    adapter = PyODAdapter(tiny_semsad(), contamination=0.05).fit(X_tr)
    assert adapter.labels_.sum() == pytest.approx(0.05 * len(X_tr), abs=2)
    assert not hasattr(adapter.detector, "offset_")  # the detector passed in stays unfitted
    c = clone(adapter)
    assert c.get_params()["contamination"] == 0.05
    assert c.get_params()["detector__n_neighbors"] == 4


def test_wraps_sklearn_detectors_too(pyod_data):
    X_tr, X_te, _, y_te = pyod_data
    adapter = PyODAdapter(IsolationForest(random_state=0)).fit(X_tr)
    assert roc_auc_score(y_te, adapter.decision_function(X_te)) > 0.8


def test_bad_arguments():
    with pytest.raises(ValueError, match="needs `detector`"):
        PyODAdapter().fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="contamination"):
        PyODAdapter(tiny_semsad(), contamination=0.7)


def test_skood_detector_in_pyod_code_warns_about_the_sign(pyod_data):
    """PyOD's LSCP calling a bare skood detector's decision_function (scikit-learn's sign)
    warns and names the adapter; the detector's own calls do not."""
    X_tr, X_te = pyod_data[:2]
    lscp = LSCP([tiny("NSADetector"), tiny("FeatureKNNDetector")], random_state=0)
    with pytest.warns(UserWarning, match=r"pyod\.models\.lscp called NSADetector\."
                      r"decision_function.*higher = more normal.*PyODAdapter"):
        lscp.fit(X_tr)
    det = lscp.detector_list[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*sign", category=UserWarning)
        det.decision_function(X_te)
        det.predict(X_te)


def test_pyod_detector_is_refused():
    with pytest.raises(ValueError, match="already has PyOD's sign"):
        PyODAdapter(KNN()).fit(np.zeros((10, 2)))


@pytest.mark.parametrize("name", ["NSADetector", "FeatureKNNDetector"])
def test_native_pyod_conveniences_equal_pyods_own_code(name, pyod_data):
    """A skood detector's decision_scores_, threshold_, labels_, predict_proba and
    predict_confidence equal what PyOD's BaseDetector computes through the adapter."""
    X_tr, X_te = pyod_data[:2]
    det = tiny(name).fit(X_tr)  # contamination "auto" = 0.1, the adapter's default
    ref = PyODAdapter(tiny(name)).fit(X_tr)
    np.testing.assert_array_equal(det.decision_scores_, ref.decision_scores_)
    assert det.threshold_ == pytest.approx(ref.threshold_, rel=1e-12)
    np.testing.assert_array_equal(det.labels_, ref.labels_)
    np.testing.assert_array_equal(det.labels_, det.fit_predict(X_tr) == -1)
    for method in ("linear", "unify"):
        np.testing.assert_allclose(det.predict_proba(X_te, method=method),
                                   ref.predict_proba(X_te, method=method), rtol=0, atol=1e-12)
    np.testing.assert_allclose(det.predict_confidence(X_te), ref.predict_confidence(X_te),
                               rtol=0, atol=1e-12)
    proba, conf = det.predict_proba(X_te, return_confidence=True)
    np.testing.assert_array_equal(conf, det.predict_confidence(X_te))
    np.testing.assert_array_equal(ref.predict(X_te), det.predict(X_te) == -1)


def test_a_detector_that_scored_a_subset_of_its_rows_is_scored_again(pyod_data):
    """max_train_scores below the training rows: the detector keeps the scores of a subset
    only, so the adapter scores every training row for PyOD's per-row attributes."""
    X_tr = pyod_data[0]
    adapter = PyODAdapter(tiny("DUMDetector", max_train_scores=50)).fit(X_tr)
    assert len(adapter.detector_.train_scores_) == 50
    np.testing.assert_allclose(adapter.decision_scores_,
                               -adapter.detector_.score_samples(X_tr))
    assert adapter.labels_.shape == (len(X_tr),)
