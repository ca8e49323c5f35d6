"""The estimator contract every skood detector keeps, tested once for all five.

Each detector's own test file holds what is its own (its method, its
parameters, its real-data run); what design.md asks of every detector lives
here, parametrised over a registry of tiny budgets.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skood

#: detector -> the smallest budget that still trains every part of it
TINY: dict[str, dict] = {
    "SemSADDetector": {"encoder_epochs": 2, "discriminator_epochs": 2},
    "NSADetector": {"max_epochs": 2},
    "DistillNegDetector": {"max_epochs": 1, "n_soft_classes": 64, "head_hidden_dim": 32,
                           "n_local_crops": 2, "batch_size": 32},
    "DUMDetector": {"dum_epochs": 2, "encoder_epochs": 1},
    "RotAuxMSPDetector": {"max_epochs": 2, "batch_size": 64},
}
NAMES = [n for n in TINY if hasattr(skood, n)]


def tiny(name: str, **kw):
    return getattr(skood, name)(**{**TINY[name], "device": "cpu", "random_state": 0, **kw})


@pytest.fixture(scope="module", params=NAMES)
def name(request):
    return request.param


@pytest.fixture(scope="module")
def fitted(name, blobs):
    return tiny(name).fit(blobs[0])


@pytest.fixture(scope="module")
def fitted_images(name, digit_images):
    return tiny(name, batch_size=32).fit(digit_images[0])


# ---------------------------------------------------------------- contract
def test_contract_and_separation(fitted, blobs):
    _, X_test, y_test = blobs
    s, d, p = fitted.score_samples(X_test), fitted.decision_function(X_test), fitted.predict(X_test)
    assert s.dtype == np.float64 and s.shape == (240,) and np.isfinite(s).all()
    np.testing.assert_allclose(d, s - fitted.offset_)
    np.testing.assert_array_equal(p, np.where(d >= 0, 1, -1))
    assert fitted.n_features_in_ == 8 and fitted.input_kind_ == "tabular"
    assert roc_auc_score(y_test, s) > 0.8  # shifted blobs: higher = more normal


@pytest.mark.parametrize("contamination", [0.05, 0.25])
def test_contamination_sets_training_outlier_fraction(name, blobs, contamination):
    X_train = blobs[0]
    det = tiny(name, contamination=contamination).fit(X_train)
    assert abs(np.mean(det.predict(X_train) == -1) - contamination) <= 0.01


def test_auto_contamination_is_pyod_default(fitted):
    assert fitted.offset_ == pytest.approx(np.percentile(fitted.train_scores_, 10))


def test_same_random_state_same_scores(name, blobs):
    X_train, X_test, _ = blobs
    a = tiny(name).fit(X_train).score_samples(X_test)
    np.testing.assert_array_equal(a, tiny(name).fit(X_train).score_samples(X_test))
    assert not np.allclose(a, tiny(name, random_state=1).fit(X_train).score_samples(X_test))


def test_global_rng_untouched(name, blobs):
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global RNG)
    torch_state = torch.get_rng_state().clone()
    tiny(name).fit(blobs[0][:100])
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_scores_do_not_depend_on_batch(fitted, blobs):
    X_test = blobs[1]
    full = fitted.score_samples(X_test)
    parts = np.concatenate([fitted.score_samples(X_test[i : i + 7]) for i in range(0, 240, 7)])
    np.testing.assert_allclose(full, parts, rtol=1e-4, atol=1e-4)


def test_input_arrays_are_not_modified(name, blobs, digit_images):
    X = blobs[0][:100].copy()
    tiny(name).fit(X)
    np.testing.assert_array_equal(X, blobs[0][:100])
    imgs = digit_images[0].copy()
    tiny(name, batch_size=32).fit(imgs)
    np.testing.assert_array_equal(imgs, digit_images[0])


def test_pickle_round_trip_in_fresh_process(fitted_images, digit_images, tmp_path):
    X_test = digit_images[1]
    path = tmp_path / "det.pkl"
    path.write_bytes(pickle.dumps(fitted_images))
    np.save(tmp_path / "x.npy", X_test)
    code = ("import pickle, sys, numpy as np;"
            "m = pickle.load(open(sys.argv[1], 'rb'));"
            "np.save(sys.argv[3], m.score_samples(np.load(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"),
                    str(tmp_path / "s.npy")], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), fitted_images.score_samples(X_test))


def test_gpu_requested_without_gpu_is_a_clear_error(name, blobs):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        tiny(name, device="cuda").fit(blobs[0])


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((5, 8), np.nan), "NaN"),
        (np.full((5, 8), np.inf), "infinity"),
        (np.ones((5, 7)), "X has 7 features, but .* is expecting 8"),
        (np.ones(8), "tabular data with 8 features"),
        (np.ones((0, 8)), "0 sample"),
        (np.ones((5, 8, 2)), "tabular data with 8 features"),
        (np.array([["a"] * 8] * 5), "could not convert"),
    ],
)
def test_bad_input_at_score_time(fitted, bad, match):
    with pytest.raises(ValueError, match=match):
        fitted.score_samples(bad)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((50, 8), np.inf), "infinity"),
        (np.ones((1, 8)), "needs at least .* training samples; got n_samples = 1"),
        (np.ones((0, 8)), "0 sample"),
        (np.ones((10, 2, 2, 2, 2)), "5 dimensions"),
        (np.full((10, 1, 4, 4), 2.0), r"float images must lie in \[0, 1\]"),
        (np.ones((10, 5, 4, 4)), r"\(N, H, W, C\) or \(N, C, H, W\)"),
    ],
)
def test_bad_input_at_fit_time(name, bad, match):
    with pytest.raises(ValueError, match=match):
        tiny(name).fit(bad)


def test_bad_common_parameters(name):
    X = np.random.RandomState(0).normal(size=(40, 3))
    for kw, match in [({"contamination": 0.7}, "contamination"), ({"batch_size": 0}, "batch_size"),
                      ({"lr": -1.0}, "lr"), ({"device": "tpu"}, "device")]:
        with pytest.raises(ValueError, match=match):
            tiny(name, **kw).fit(X)


def test_unfitted(name):
    with pytest.raises(NotFittedError, match="fit"):
        getattr(skood, name)().score_samples(np.ones((3, 2)))


def test_pipeline_with_scaler(name, blobs):
    X_train, X_test, y_test = blobs
    pipe = make_pipeline(StandardScaler(), tiny(name)).fit(X_train)
    assert roc_auc_score(y_test, pipe.score_samples(X_test)) > 0.8
    assert pipe.predict(X_test).shape == (240,)


# ------------------------------------------------------------------ images
def test_image_layouts_give_identical_scores(fitted_images, digit_images):
    det, X_test = fitted_images, digit_images[1]
    assert det.input_kind_ == "image" and det.image_shape_ == (1, 8, 8)
    assert det.n_features_in_ == 64
    s = det.score_samples(X_test)  # (N, H, W) uint8
    np.testing.assert_array_equal(s, det.score_samples(X_test[..., None]))  # NHWC
    np.testing.assert_array_equal(s, det.score_samples(X_test[:, None]))  # NCHW
    np.testing.assert_allclose(s, det.score_samples(X_test / 255.0), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="fitted on images"):
        det.score_samples(X_test.reshape(len(X_test), -1))
    with pytest.raises(ValueError, match=r"images of shape \(C, H, W\) = \(1, 8, 8\)"):
        det.score_samples(np.zeros((3, 9, 9), np.uint8))


def test_flattened_images_with_image_shape(name, fitted_images, digit_images):
    X_train, X_test, _ = digit_images
    flat = tiny(name, batch_size=32, image_shape=(1, 8, 8)).fit(X_train.reshape(len(X_train), -1))
    np.testing.assert_array_equal(flat.score_samples(X_test.reshape(len(X_test), -1)),
                                  fitted_images.score_samples(X_test))
    with pytest.raises(ValueError, match="image_shape"):
        tiny(name, image_shape=(1, 9, 9)).fit(X_train.reshape(len(X_train), -1))


def test_rgb_images_channels_last(name):
    X = (np.random.RandomState(0).rand(40, 16, 16, 3) * 255).astype(np.uint8)
    det = tiny(name, batch_size=16).fit(X)
    assert det.image_shape_ == (3, 16, 16)
    np.testing.assert_array_equal(det.score_samples(X[:5]),
                                  det.score_samples(X[:5].transpose(0, 3, 1, 2)))
