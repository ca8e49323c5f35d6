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


def test_auto_bank_is_all_rows_up_to_its_size_then_a_seeded_subset():
    from skood import FeatureKNNDetector, SemSADDetector
    from skood._scoring import AUTO_MAX_BANK

    assert AUTO_MAX_BANK >= 10_000  # the 10,000-row suites keep every row in the bank
    for cls in (SemSADDetector, NSADetector, DistillNegDetector, FeatureKNNDetector):
        assert cls().max_bank == "auto"
    assert bank_subset(AUTO_MAX_BANK, "auto", 0) is None
    idx = bank_subset(AUTO_MAX_BANK + 5, "auto", 0)
    torch.testing.assert_close(idx, bank_subset(AUTO_MAX_BANK + 5, AUTO_MAX_BANK, 0))


@pytest.mark.parametrize("max_bank", [None, "auto"])
def test_auto_and_none_keep_small_banks_whole(max_bank, blobs):
    X_train, X_test, _ = blobs
    det = tiny("FeatureKNNDetector", max_bank=max_bank).fit(X_train)
    assert len(det.bank_) == len(X_train)


def test_capped_training_scores_are_leave_one_out_and_out_of_sample():
    """A bank row never matches itself; rows outside the bank are scored against it."""
    from skood import FeatureKNNDetector

    rng = np.random.RandomState(1)
    X = rng.normal(size=(300, 6))
    det = FeatureKNNDetector(n_neighbors=1, max_bank=100, random_state=0).fit(X)
    idx = bank_subset(len(X), 100, _bank_seed(det)).numpy()
    inside = np.zeros(len(X), bool)
    inside[idx] = True
    # the training scores are the scores of the training rows (the same rule)
    np.testing.assert_allclose(det.train_scores_, det.score_samples(X))
    # a bank row's nearest neighbour is another bank row, never itself (distance 0)
    assert (det.train_scores_[inside] < 0).all()
    # a bank row: its distance to the nearest *other* bank row
    feats = det.bank_.double()
    d = torch.cdist(feats, feats)
    d.fill_diagonal_(float("inf"))
    np.testing.assert_allclose(-det.train_scores_[idx], d.min(1).values.numpy(), rtol=1e-4,
                               atol=1e-5)
    # a row outside the bank: its plain distance to the nearest bank row (out of sample)
    out = np.flatnonzero(~inside)
    q = det._map_batches(det.encoder_, det._validate_input(X[out], reset=False)).double()
    np.testing.assert_allclose(-det.train_scores_[out], torch.cdist(q, feats).min(1).values,
                               rtol=1e-4, atol=1e-5)


def _bank_seed(det) -> int:
    """The "bank" stream seed of a fit with an int random_state (as the detectors draw it)."""
    from skood._utils import fit_seed, seed_stream

    return seed_stream(fit_seed(det.random_state), "bank")
