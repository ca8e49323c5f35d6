"""Shared fixtures: small data, tiny budgets, the shared data directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

#: ../shared/data beside the repository (CI and the developers' machines have it)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
def blobs():
    """400 normal training rows, and a test set of 200 normals + 40 shifted outliers."""
    rng = np.random.RandomState(0)
    X_train = rng.normal(size=(400, 8))
    X_test = np.vstack([rng.normal(size=(200, 8)), rng.normal(loc=4.0, size=(40, 8))])
    y_test = np.r_[np.ones(200, int), -np.ones(40, int)]  # +1 inlier, -1 outlier
    return X_train, X_test, y_test


@pytest.fixture(scope="session")
def digit_images():
    """8x8 digit images (uint8): zeros for training, a mixed test set."""
    from skood.datasets import load_digits_images

    X, y = load_digits_images()
    train = X[y == 0][:120]
    test = np.concatenate([X[y == 0][120:], X[y == 1][:40]])
    y_test = np.r_[np.ones((y == 0).sum() - 120, int), -np.ones(40, int)]
    return train, test, y_test
