"""Shared fixtures: small data, the shared data directory, fitted tiny detectors.

Helpers that tests import (the tiny-budget registry ``tiny``/``DETECTORS``, ``run_benchmark``)
live in :mod:`skood._testing`; this file holds only fixtures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skood._testing import DETECTORS, SHARED_DATA, shared_data_home, tiny


@pytest.fixture(scope="module", params=DETECTORS)
def name(request):
    return request.param


@pytest.fixture(scope="session")
def data_home() -> Path:
    home = shared_data_home()
    if home is None:
        pytest.skip(f"real data not found at {SHARED_DATA} (or $SKOOD_DATA)")
    return home


@pytest.fixture(scope="session")
def fashion_auroc(data_home):
    """``fashion_auroc(det, n_train=600)``: the AUROC of ``det`` fitted on ``n_train`` Fashion-MNIST
    trousers (one class), on 1000 test images of every class (chance is 0.5)."""
    from sklearn.metrics import roc_auc_score

    from skood.datasets import load_fashion_mnist

    X_tr, y_tr = load_fashion_mnist("train", data_home=data_home)
    X_te, y_te = load_fashion_mnist("test", data_home=data_home)
    rng = np.random.RandomState(0)
    train = rng.permutation(np.flatnonzero(y_tr == 1))[:600]  # trousers
    test = rng.permutation(len(X_te))[:1000]

    def auroc(det, n_train: int = 600) -> float:
        det.fit(X_tr[train[:n_train]])
        return roc_auc_score(y_te[test] == 1, det.score_samples(X_te[test]))

    return auroc


@pytest.fixture(scope="session")
def blobs():
    """400 normal training rows, and a test set of 200 normals + 40 shifted outliers."""
    rng = np.random.RandomState(0)
    X_train = rng.normal(size=(400, 8))
    X_test = np.vstack([rng.normal(size=(200, 8)), rng.normal(loc=4.0, size=(40, 8))])
    y_test = np.r_[np.ones(200, int), -np.ones(40, int)]  # +1 inlier, -1 outlier
    return X_train, X_test, y_test


@pytest.fixture(scope="session")
def one_class_folds(blobs):
    """The blobs as one data set for GridSearchCV (y: 1 inlier, 0 outlier) and two folds that
    train on inliers only and test on held-out inliers + outliers."""
    X_train, X_test, _ = blobs
    X = np.vstack([X_train, X_test[200:]])
    y = np.r_[np.ones(400, int), np.zeros(40, int)]
    folds = [(np.arange(0, 200), np.r_[200:300, 400:420]),
             (np.arange(200, 400), np.r_[0:100, 420:440])]
    return X, y, folds


@pytest.fixture(scope="session")
def digit_images():
    """8x8 digit images (uint8): zeros for training, a mixed test set."""
    from skood.datasets import load_digits_images

    X, y = load_digits_images()
    train = X[y == 0][:120]
    test = np.concatenate([X[y == 0][120:], X[y == 1][:40]])
    y_test = np.r_[np.ones((y == 0).sum() - 120, int), -np.ones(40, int)]
    return train, test, y_test


@pytest.fixture(scope="session")
def fitted_tiny(blobs, digit_images):
    """``fitted_tiny(name, "tabular" | "images")``: ``tiny(name)`` fitted on the blobs' training
    rows, or ``tiny(name, batch_size=32)`` on the digit images; each fitted once a session and
    shared by every test file, so a test must not refit or modify it."""
    cache = {}

    def get(name: str, kind: str = "tabular"):
        if (name, kind) not in cache:
            if kind == "tabular":
                cache[name, kind] = tiny(name).fit(blobs[0])
            else:
                cache[name, kind] = tiny(name, batch_size=32).fit(digit_images[0])
        return cache[name, kind]

    return get


@pytest.fixture(scope="module")
def fitted(name, fitted_tiny):
    """Each registered detector, fitted on the blobs (a detector's own file overrides this)."""
    return fitted_tiny(name)


@pytest.fixture(scope="module")
def fitted_images(name, fitted_tiny):
    """Each registered detector, fitted on the digit images."""
    return fitted_tiny(name, "images")
