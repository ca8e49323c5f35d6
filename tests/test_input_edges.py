"""Edge cases of the input contract, for every detector.

Bad or extreme input gives a clear ValueError (TypeError for sparse data, as
in scikit-learn) or finite scores, never a torch error, a NaN or an
infinite score: values too large to standardise, finite values so far out
that the networks overflow, sparse input, images too small for the backbone,
a non-finite ``gamma_range``, boolean images, and a refit on images after a
fit on tables.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning

import skood
from skood._nn.encoders import MIN_IMAGE_SIDE, build_encoder
from skood._testing import DETECTORS, tiny
from skood.metrics import auroc


def _rows(n: int = 40, d: int = 4) -> np.ndarray:
    return np.random.RandomState(0).normal(size=(n, d))


# ------------------------------------------------- 1. standardiser overflow
@pytest.mark.parametrize("where", ["one cell", "two cells", "scaled column"])
def test_values_too_large_to_standardise(name, where):
    X = _rows()
    if where == "one cell":
        X[0, 2] = 1e300  # finite, but the column's std overflows float64
    elif where == "two cells":
        X[:2, 2] = 1.7e308  # the column's mean overflows float64
    else:
        X[:, 2] *= 1e300
    with pytest.raises(ValueError, match=r"too large to standardise.*column\(s\) \[2\]"):
        tiny(name).fit(X)


# ----------------------------------------------- 2. finite, extreme inputs
@pytest.mark.parametrize("value, dtype", [(1e38, np.float64), (3e38, np.float32),
                                          (1e20, np.float64), (1e300, np.float64)])
def test_extreme_rows_give_finite_scores_or_value_error(fitted, blobs, value, dtype):
    X = blobs[1][:6].astype(dtype)
    X[0, 0] = value
    try:
        s = fitted.score_samples(X)
    except ValueError as e:
        assert "standardis" in str(e)
        if "cannot score" in str(e):
            assert "rows [0]" in str(e) and "1 of 6" in str(e)
    else:
        assert np.isfinite(s).all(), s
        np.testing.assert_allclose(fitted.score_samples(X[1:]), s[1:], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------ 3. sparse input
def test_sparse_at_fit_and_score_time(name, fitted, fitted_images, blobs, digit_images):
    match = "Sparse data was passed"
    with pytest.raises(TypeError, match=match):
        tiny(name).fit(sp.csr_matrix(blobs[0]))
    with pytest.raises(TypeError, match=match):
        fitted.score_samples(sp.csr_matrix(blobs[1][:5]))
    with pytest.raises(TypeError, match=match):
        fitted_images.score_samples(sp.csr_matrix(digit_images[1][:5].reshape(5, -1)))
    with pytest.raises(TypeError, match=match):
        tiny(name, image_shape=(8, 8)).fit(sp.csr_matrix(digit_images[0].reshape(120, -1)))


# ------------------------------------------- 4. images too small to encode
def _backbones(name):
    return ["auto", "cnn", "resnet18", "resnet34"] + (["vit"] * (name == "DistillNegDetector"))


def _min_side(name, backbone):
    bb = "cnn" if backbone == "auto" else backbone
    return max(MIN_IMAGE_SIDE[bb], getattr(skood, name)._min_image_side)


@pytest.mark.parametrize("hw", [(1, 1), (3, 3), (5, 1), (2, 7)])
def test_images_too_small_for_the_backbone(name, hw):
    X = np.random.RandomState(0).randint(0, 256, size=(40, *hw)).astype(np.uint8)
    for bb in _backbones(name):
        m = _min_side(name, bb)
        if min(hw) >= m:
            continue
        with pytest.raises(ValueError, match=rf"backbone='{bb}'.* at least {m} x {m} pixels"):
            tiny(name, backbone=bb).fit(X)
        flat = X.reshape(len(X), -1)  # the same images, flattened
        with pytest.raises(ValueError, match=rf"at least {m} x {m} pixels.*got {hw[0]} x {hw[1]}"):
            tiny(name, backbone=bb, image_shape=hw).fit(flat)


@pytest.mark.parametrize("backbone", ["cnn", "resnet18", "vit"])
def test_images_of_the_minimum_size_train(name, backbone):
    if backbone == "vit" and name != "DistillNegDetector":
        pytest.skip("only DistillNeg has the ViT")
    m = _min_side(name, backbone)
    X = np.random.RandomState(0).randint(0, 256, size=(40, m, m)).astype(np.uint8)
    s = tiny(name, backbone=backbone, batch_size=16).fit(X).score_samples(X[:5])
    assert np.isfinite(s).all()


@pytest.mark.parametrize("backbone", ["cnn", "resnet18", "resnet34"])
def test_min_image_side_is_the_encoders_true_minimum(backbone):
    m = MIN_IMAGE_SIDE[backbone]
    enc = build_encoder(backbone, (1, m, m)).train()
    assert enc(torch.rand(2, 1, m, m)).shape[0] == 2
    if m > 1:
        with pytest.raises(RuntimeError):
            build_encoder(backbone, (1, m - 1, m - 1)).train()(torch.rand(2, 1, m - 1, m - 1))


# --------------------------------------------------- 6. gamma_range finite
@pytest.mark.skipif("SemSADDetector" not in DETECTORS, reason="SemSAD not in this build")
@pytest.mark.parametrize("gamma_range", [(1.0, np.inf), (1, float("nan")), (-np.inf, 1.0)])
def test_gamma_range_must_be_finite(gamma_range):
    with pytest.raises(ValueError, match="gamma_range must be two finite numbers"):
        tiny("SemSADDetector", gamma_range=gamma_range).fit(_rows())


# ---------------------------------------------------------- boolean images
def test_boolean_images_are_zero_one_float_images(name, digit_images):
    masks = digit_images[0][:60] > 8
    det = tiny(name, batch_size=32).fit(masks)
    s = det.score_samples(masks)
    np.testing.assert_allclose(s, det.score_samples(masks.astype(np.float32)), rtol=1e-6)
    np.testing.assert_allclose(s, det.score_samples(masks.astype(np.uint8) * 255), rtol=1e-6)
    np.testing.assert_allclose(det.train_scores_, s, rtol=1e-5, atol=1e-6)


# --------------------------------------------- refit on images after tables
def test_refit_on_images_drops_the_tabular_standardiser(name, digit_images):
    det = tiny(name, batch_size=32).fit(_rows())
    assert det.feature_mean_.shape == det.feature_scale_.shape == (4,)
    det.fit(digit_images[0][:60])
    assert not hasattr(det, "feature_mean_") and not hasattr(det, "feature_scale_")
    assert det.input_kind_ == "image" and det.image_shape_ == (1, 8, 8)
    det.fit(_rows(d=3))  # and back to tables
    assert det.feature_mean_.shape == (3,) and det.image_shape_ is None


# ------------------------------------------- units: tiny scales and constant columns
@pytest.mark.parametrize("unit", [2.0**-43, 1e-13])
def test_units_do_not_change_the_scores(name, fitted, blobs, unit):
    """Data in units of 1e-13 score as the data themselves: no column is read as constant,
    no ConvergenceWarning, no constant scores. A power of two scales every step of the
    standardisation exactly, so its scores are bit-identical."""
    X_train, X_test, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = tiny(name).fit(X_train * unit)
    s, ref = det.score_samples(X_test * unit), fitted.score_samples(X_test)
    if unit == 2.0**-43:
        np.testing.assert_array_equal(s, ref)
        np.testing.assert_array_equal(det.train_scores_, fitted.train_scores_)
    else:
        np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-6 * np.ptp(ref))
    assert auroc(y == -1, s) == pytest.approx(auroc(y == -1, ref), abs=1e-3)
    assert auroc(y == -1, s) > 0.9


def test_a_tiny_column_carries_its_signal_and_constant_ones_are_named(name, blobs):
    """An anomaly only in a column in units of 1e-13 is detected as well as in the same column
    unscaled; constant columns beside it (exact, and 1e6 plus a few ulps of rounding noise)
    get one UserWarning that names them."""
    X_train, X_test, _ = blobs
    rng = np.random.RandomState(1)
    test = np.vstack([X_test[:200], X_test[:40]])
    test[200:, 3] += 6.0  # outliers only in column 3
    y = np.r_[np.zeros(200), np.ones(40)]
    const = np.c_[np.full(len(X_train), 0.1), 1e6 + rng.randint(-3, 4, len(X_train)) * 2.0**-33]
    const_test = np.c_[np.full(len(test), 0.1), np.full(len(test), 1e6)]
    results = []
    for unit in (1.0, 1e-13):
        scale = np.ones(8)
        scale[3] = unit
        with pytest.warns(UserWarning, match=r"2 constant column\(s\) \[8, 9\]") as rec:
            det = tiny(name).fit(np.c_[X_train * scale, const])
        assert len([w for w in rec if "constant" in str(w.message)]) == 1
        assert not [w for w in rec if issubclass(w.category, ConvergenceWarning)]
        results.append(auroc(y, det.score_samples(np.c_[test * scale, const_test])))
    assert results[1] == pytest.approx(results[0], abs=1e-3), results
    assert results[0] > 0.8, results
