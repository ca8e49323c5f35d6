"""``max_bank``: the scorers' reference bank capped for huge training sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skood import DistillNegDetector, NSADetector, SemSADDetector
from skood.scoring import bank_subset

TINY = {
    SemSADDetector: {"encoder_epochs": 1, "discriminator_epochs": 1},
    NSADetector: {"max_epochs": 1, "scoring": "kcos-mah"},
    DistillNegDetector: {"max_epochs": 1, "n_soft_classes": 64, "head_hidden_dim": 32,
                         "n_local_crops": 2},
}


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


@pytest.mark.parametrize("cls", list(TINY))
def test_max_bank_caps_the_bank_and_stays_reproducible(cls, blobs):
    X_train, X_test, y_out = blobs
    full = cls(random_state=0, device="cpu", **TINY[cls]).fit(X_train)
    capped = cls(random_state=0, device="cpu", max_bank=60, **TINY[cls]).fit(X_train)
    again = cls(random_state=0, device="cpu", max_bank=60, **TINY[cls]).fit(X_train)
    assert bank_rows(full) == len(X_train) and bank_rows(capped) == 60
    s = capped.score_samples(X_test)
    assert s.shape == (len(X_test),) and np.isfinite(s).all()
    np.testing.assert_array_equal(s, again.score_samples(X_test))
    assert np.isfinite(capped.train_scores_).all() and len(capped.train_scores_) == len(X_train)
    # a cap above the training size changes nothing
    same = cls(random_state=0, device="cpu", max_bank=10_000, **TINY[cls]).fit(X_train)
    np.testing.assert_allclose(same.score_samples(X_test), full.score_samples(X_test))


@pytest.mark.parametrize("cls", list(TINY))
def test_bad_max_bank(cls, blobs):
    with pytest.raises(ValueError, match="max_bank"):
        cls(max_bank=0, **TINY[cls]).fit(blobs[0])
