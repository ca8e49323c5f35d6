"""skood._base.BaseDeepDetector: what a detector of one's own inherits, on a detector with no
network whose scores are known by hand (minus the distance to the training mean)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from skood import BaseDeepDetector, TrainingDivergedError


class MeanDistance(BaseDeepDetector):
    """Minus the Euclidean norm of the stored row (standardised rows: distance to the mean)."""

    _presets: ClassVar[dict] = {"big": {"batch_size": 64, "lr": 0.5}}

    def __init__(self, *, batch_size=32, device="cpu", random_state=0, contamination="auto",
                 backbone="auto", lr=1e-3, verbose=0, image_shape=None, constant=False,
                 broken=False):
        self.batch_size, self.device, self.random_state = batch_size, device, random_state
        self.contamination, self.backbone, self.lr = contamination, backbone, lr
        self.verbose, self.image_shape = verbose, image_shape
        self.constant, self.broken = constant, broken

    def _fit_store(self, Xs, y, seed):
        self.store_ = Xs.clone()
        self.seed_ = seed

    def _score_store(self, Xs):
        if self.broken:
            return np.full(len(Xs), np.nan)
        if self.constant:
            return np.zeros(len(Xs))
        x = Xs.flatten(1).double()
        return -torch.linalg.vector_norm(x, dim=1).numpy()


X10 = np.arange(10, dtype=np.float64)[:, None]  # 0 .. 9: mean 4.5, std sqrt(8.25)


def test_tabular_rows_are_standardised_and_the_callers_array_kept():
    X = np.c_[X10, np.full(10, 7.0)]  # a constant column: scale 1
    before = X.copy()
    det = MeanDistance().fit(X)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_allclose(det.feature_mean_, [4.5, 7.0])
    np.testing.assert_allclose(det.feature_scale_, [np.sqrt(8.25), 1.0])
    expected = (X - [4.5, 7.0]) / [np.sqrt(8.25), 1.0]
    np.testing.assert_allclose(det.store_.numpy(), expected, rtol=1e-6)
    assert det.store_.dtype == torch.float32
    assert det.input_kind_ == "tabular" and det.n_features_in_ == 2 and det.device_ == "cpu"


def test_offset_predict_and_decision_function_by_hand():
    """Scores -|x - 4.5| / sd: -4.5, -3.5, ..., -0.5, each twice (in sd units). The 20th
    percentile of the ten is -3.7 (linear interpolation between -4.5 and -3.5), so 0 and 9
    are the outliers."""
    sd = np.sqrt(8.25)
    det = MeanDistance(contamination=0.2).fit(X10)
    scores = -np.abs(X10[:, 0] - 4.5) / sd
    np.testing.assert_allclose(det.train_scores_, scores, rtol=1e-6)
    assert det.offset_ == pytest.approx(-3.7 / sd, rel=1e-6)
    np.testing.assert_allclose(det.score_samples(X10), scores, rtol=1e-6)
    np.testing.assert_allclose(det.decision_function(X10), scores - det.offset_, rtol=1e-5)
    labels = [-1, 1, 1, 1, 1, 1, 1, 1, 1, -1]
    assert det.predict(X10).tolist() == labels
    assert MeanDistance(contamination=0.2).fit_predict(X10).tolist() == labels
    assert MeanDistance().fit(X10).offset_ == pytest.approx(  # "auto" is 0.1
        np.percentile(scores, 10), rel=1e-6)


def test_scoring_before_fit_and_mismatched_inputs_raise():
    with pytest.raises(NotFittedError):
        MeanDistance().score_samples(X10)
    det = MeanDistance().fit(X10)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(np.ones((2, 3)))
    with pytest.raises(ValueError, match="tabular data"):
        det.score_samples(np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="at least 2 training samples"):
        MeanDistance().fit(X10[:1])


def test_images_are_stored_as_given_in_nchw():
    imgs = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)
    det = MeanDistance().fit(imgs)
    assert det.input_kind_ == "image" and det.image_shape_ == (1, 8, 8)
    assert det.n_features_in_ == 64
    assert det.store_.dtype == torch.uint8 and torch.equal(det.store_[:, 0], torch.from_numpy(imgs))
    nhwc = np.random.RandomState(0).rand(4, 8, 8, 3)
    det = MeanDistance().fit(nhwc)
    assert det.image_shape_ == (3, 8, 8) and det.store_.dtype == torch.float32
    np.testing.assert_allclose(det.store_.numpy(), nhwc.transpose(0, 3, 1, 2), rtol=1e-6)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        MeanDistance().fit(nhwc * 255)
    flat = MeanDistance(image_shape=(8, 8)).fit(imgs.reshape(5, 64))
    assert flat.image_shape_ == (1, 8, 8)
    assert torch.equal(flat.store_, torch.from_numpy(imgs[:, None]))


def test_from_preset_with_overrides():
    det = MeanDistance.from_preset("big", lr=0.1)
    assert (det.batch_size, det.lr) == (64, 0.1)
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; MeanDistance has \['big'\]"):
        MeanDistance.from_preset("huge")


def test_the_fit_seed_comes_from_random_state_only():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global RNG)
    a = MeanDistance(random_state=3).fit(X10).seed_
    assert MeanDistance(random_state=3).fit(X10).seed_ == a
    assert MeanDistance(random_state=4).fit(X10).seed_ != a
    MeanDistance(random_state=None).fit(X10)
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002 (not drawn from)


def test_broken_training_scores_raise_or_warn():
    with pytest.raises(TrainingDivergedError, match=r"10 of 10 training scores are not "
                                                    r"finite.*lr=0\.001"):
        MeanDistance(broken=True).fit(X10)
    with pytest.warns(ConvergenceWarning, match="10 of 10 training scores are the same value"):
        det = MeanDistance(constant=True).fit(X10)
    assert det.offset_ == 0.0  # the fit completes
