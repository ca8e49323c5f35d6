"""PyODAdapter: skood detectors inside PyOD's own tools."""

from __future__ import annotations

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
    lscp.fit(X_tr)
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
