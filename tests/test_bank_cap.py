"""``max_bank``: the scorers' reference bank capped for huge training sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skood import DistillNegDetector, NSADetector
from skood._scoring import bank_subset
from skood._testing import tiny

#: the detectors that score against a bank of training rows, and what gives them one
BANKED = {"SemSADDetector": {}, "NSADetector": {"scoring": "kcos-mah"}, "DistillNegDetector": {}}


def bank_rows(det) -> int:
    if isinstance(det, DistillNegDetector):
        return len(det.bank_)
    if isinstance(det, NSADetector):
        return len(det.banks_[0])
    return len(det.train_embeddings_)


def test_bank_subset():
    assert bank_subset(10, None, 0) is None and bank_subset(10, 10, 0) is None
    idx = bank_subset(100, 7, 3)
    assert idx.shape == (7,) and torch.equal(idx, idx.sort().values)
    assert len(set(idx.tolist())) == 7 and idx.max() < 100
    torch.testing.assert_close(idx, bank_subset(100, 7, 3))
    assert not torch.equal(idx, bank_subset(100, 7, 4))


@pytest.mark.parametrize("name", list(BANKED))
def test_max_bank_caps_the_bank_and_stays_reproducible(name, fitted_tiny, blobs):
    X_train, X_test, _ = blobs
    kw = BANKED[name]
    full = tiny(name, **kw).fit(X_train) if kw else fitted_tiny(name)
    capped = tiny(name, max_bank=60, **kw).fit(X_train)
    again = tiny(name, max_bank=60, **kw).fit(X_train)
    assert bank_rows(full) == len(X_train) and bank_rows(capped) == 60
    s = capped.score_samples(X_test)
    assert s.shape == (len(X_test),) and np.isfinite(s).all()
    np.testing.assert_array_equal(s, again.score_samples(X_test))
    assert np.isfinite(capped.train_scores_).all() and len(capped.train_scores_) == len(X_train)
    # a cap above the training size changes nothing
    same = tiny(name, max_bank=10_000, **kw).fit(X_train)
    np.testing.assert_allclose(same.score_samples(X_test), full.score_samples(X_test))


@pytest.mark.parametrize("name", list(BANKED))
def test_bad_max_bank(name, blobs):
    with pytest.raises(ValueError, match="max_bank"):
        tiny(name, max_bank=0).fit(blobs[0])
