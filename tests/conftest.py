"""Shared fixtures: the tiny-budget detector registry, small data, the shared data directory."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import skood

#: detector -> the smallest budget that still trains every part of it (one line per detector)
TINY: dict[str, dict] = {
    "SemSADDetector": {"encoder_epochs": 2, "discriminator_epochs": 2},
    "NSADetector": {"max_epochs": 2},
    "DistillNegDetector": {"max_epochs": 1, "n_soft_classes": 64, "head_hidden_dim": 32,
                           "n_local_crops": 2, "batch_size": 32},
    "DUMDetector": {"dum_epochs": 10, "encoder_epochs": 1},
    "RotAuxMSPDetector": {"max_epochs": 2, "batch_size": 64},
    "FeatureKNNDetector": {},
}
#: the registered detectors this build of skood has
DETECTORS = [n for n in TINY if hasattr(skood, n)]


def tiny(name: str, **overrides):
    """The detector ``name`` at its tiny budget, on the CPU, seeded; ``overrides`` win."""
    return getattr(skood, name)(**{**TINY[name], "device": "cpu", "random_state": 0, **overrides})


@pytest.fixture(scope="module", params=DETECTORS)
def name(request):
    return request.param


ROOT = Path(__file__).resolve().parents[1]
#: ../shared/data beside the repository (CI and the developers' machines have it)
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data_home() -> Path | None:
    env = os.environ.get("SKOOD_DATA")
    for p in (SHARED_DATA, Path(env) if env else None):
        if p is not None and p.is_dir():
            return p
    return None


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


def run_benchmark(script: str, data_home: Path, out: Path, *args: str) -> tuple[str, list]:
    """Run ``benchmarks/<script>`` on the real data, writing to ``out``; it must succeed.
    Returns its table.md and the rows of its runs.csv."""
    res = subprocess.run([sys.executable, f"benchmarks/{script}", "--data-home", str(data_home),
                          "--out", str(out), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(out / "runs.csv") as f:
        return (out / "table.md").read_text(), list(csv.DictReader(f))


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
