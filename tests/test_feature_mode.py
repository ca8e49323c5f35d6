"""Frozen-feature mode: images with a frozen pretrained backbone train the tabular algorithm
on the frozen encoder's features, computed once (skood._base)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from skood._testing import DETECTORS, tiny
from skood.pretrained import PretrainedEncoder

#: the detectors with the mode (FeatureKNN scores encoder features directly, without it)
FEATURE_DETECTORS = [n for n in DETECTORS if n != "FeatureKNNDetector"]
#: those that train on the features, in the representation ``feature_scaling``
SCALED = [n for n in FEATURE_DETECTORS if n != "NSADetector"]


def small_backbone(trainable: str = "none") -> PretrainedEncoder:
    """A tiny frozen "pretrained" encoder (8-d features at 16 px), the same weights every call."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return PretrainedEncoder(body, resolution=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                             trainable=trainable)


@torch.inference_mode()
def features(encoder: nn.Module, images: np.ndarray) -> np.ndarray:
    """``encoder``'s float32 features of uint8 (N, H, W) images, in one batch."""
    return encoder.eval()(torch.from_numpy(images)[:, None].float().div_(255.0)).numpy()


@pytest.fixture(scope="module")
def digit_features(digit_images):
    enc = small_backbone()
    return features(enc, digit_images[0]), features(enc, digit_images[1])


@pytest.fixture(scope="module")
def fitted_feature_mode(digit_images):
    """``get(name)``: ``tiny(name, backbone=small_backbone())`` fitted on the digit images
    (once a module; a test must not refit or modify it)."""
    cache = {}

    def get(name: str, **params):
        key = (name, *sorted(params.items()))
        if key not in cache:
            cache[key] = tiny(name, backbone=small_backbone(), **params).fit(digit_images[0])
        return cache[key]

    return get


# ------------------------------------------------ the tabular algorithm on frozen features
@pytest.mark.parametrize("name", FEATURE_DETECTORS)
def test_feature_mode_is_the_tabular_fit_on_the_features(name, fitted_feature_mode,
                                                          digit_images, digit_features):
    # NSA scores the frozen features without training by default (tested below); the
    # others' standardised features are the tabular rows (other representations below)
    params = ({"frozen_features": "train"} if name == "NSADetector"
              else {"feature_scaling": "standardize"})
    det = fitted_feature_mode(name, **params)
    assert det.feature_mode_ and isinstance(det.feature_encoder_, PretrainedEncoder)
    assert not det.feature_encoder_.training
    # the user-facing facts are the images'
    assert det.input_kind_ == "image" and det.image_shape_ == (1, 8, 8)
    assert det.n_features_in_ == 64 and det.feature_mean_.shape == (8,)
    # default backbone: the tabular networks (DUM's covariance="auto" is isotropic for images)
    ref_kw = {"covariance": "isotropic"} if name == "DUMDetector" else {}
    ref = tiny(name, **ref_kw, **params).fit(digit_features[0])
    assert ref.input_kind_ == "tabular" and "feature_scaling_" not in vars(ref)
    np.testing.assert_array_equal(det.feature_mean_, ref.feature_mean_)
    np.testing.assert_array_equal(det.train_scores_, ref.train_scores_)
    assert det.offset_ == ref.offset_
    np.testing.assert_array_equal(det.score_samples(digit_images[1]),
                                  ref.score_samples(digit_features[1]))
    np.testing.assert_array_equal(det.predict(digit_images[1]), ref.predict(digit_features[1]))
    with pytest.raises(ValueError, match="images of shape"):
        det.score_samples(np.zeros((3, 9, 9), np.uint8))


def test_scale_features_unit_rows_keep_their_angles():
    from skood._base import FEATURE_SCALINGS, scale_features

    assert FEATURE_SCALINGS == ("standardize", "unit", "unit-standardize")

    f = np.abs(np.random.RandomState(0).normal(size=(6, 5))).astype(np.float32)
    f[2] = 0.0
    for mode in ("none", "standardize"):
        assert scale_features(f, mode) is f
    u = scale_features(f, "unit")
    assert u.dtype == np.float32 and u.shape == f.shape
    norms = np.linalg.norm(u, axis=1)
    np.testing.assert_allclose(np.delete(norms, 2), np.sqrt(5), rtol=1e-6)
    assert (u[2] == 0).all()  # an all-zero row stays zero
    cos = (f[0] @ f[1]) / np.linalg.norm(f[0]) / np.linalg.norm(f[1])
    np.testing.assert_allclose(u[0] @ u[1] / 5, cos, rtol=1e-5)  # the angle survives
    np.testing.assert_array_equal(scale_features(f, "unit-standardize"), u)  # then standardised
    np.testing.assert_allclose(scale_features(3 * f[:2], "unit"), u[:2], rtol=1e-6)  # row-wise


@pytest.mark.parametrize("name", SCALED)
def test_unit_standardize_is_the_tabular_fit_on_the_unit_features(name, fitted_feature_mode,
                                                                   digit_images, digit_features):
    from skood._base import scale_features

    det = fitted_feature_mode(name, feature_scaling="unit-standardize")
    assert det.feature_scaling_ == "unit-standardize"
    ref_kw = {"covariance": "isotropic"} if name == "DUMDetector" else {}
    unit = [scale_features(f, "unit") for f in digit_features]
    ref = tiny(name, **ref_kw).fit(unit[0])
    np.testing.assert_array_equal(det.feature_mean_, ref.feature_mean_)
    np.testing.assert_array_equal(det.train_scores_, ref.train_scores_)
    np.testing.assert_array_equal(det.score_samples(digit_images[1]), ref.score_samples(unit[1]))


@pytest.mark.parametrize("name", SCALED)
def test_unit_features_are_not_centred(name, fitted_feature_mode, digit_images, digit_features):
    from skood._base import scale_features

    det = fitted_feature_mode(name, feature_scaling="unit")
    assert det.feature_scaling_ == "unit"
    assert (det.feature_mean_ == 0).all() and (det.feature_scale_ == 1).all()
    if name == "SemSADDetector":  # it keeps its training rows: the unit features
        np.testing.assert_allclose(det.train_store_.numpy(),
                                   scale_features(digit_features[0], "unit"), rtol=1e-6)
    scores = det.score_samples(digit_images[1])
    assert np.isfinite(scores).all()
    other = tiny(name, backbone=small_backbone(), feature_scaling="standardize")
    assert not np.allclose(other.fit(digit_images[0]).score_samples(digit_images[1]), scores)


@pytest.mark.parametrize("name", FEATURE_DETECTORS)
def test_feature_scaling_auto_is_per_detector_and_fixed_at_fit(name, fitted_feature_mode,
                                                               digit_images):
    det = fitted_feature_mode(name)
    expected = {"NSADetector": "none", "DUMDetector": "standardize",
                "SemSADDetector": "unit"}.get(name, "unit-standardize")
    assert det.feature_scaling_ == expected
    if name in SCALED:
        before = det.score_samples(digit_images[1])
        clone = pickle.loads(pickle.dumps(det))
        clone.set_params(feature_scaling="standardize")  # a parameter change after fit:
        np.testing.assert_array_equal(clone.score_samples(digit_images[1]), before)  # no effect


def _nearest_cosine(train: np.ndarray, test: np.ndarray, loo: bool) -> np.ndarray:
    """The largest cosine between each test row and the training rows (float64; ``loo``:
    test is train and a row is not its own neighbour)."""
    a = train / np.linalg.norm(train, axis=1, keepdims=True)
    b = test / np.linalg.norm(test, axis=1, keepdims=True)
    cos = b @ a.T
    if loo:
        np.fill_diagonal(cos, -np.inf)
    return cos.max(1)


def test_nsa_scores_the_frozen_features_themselves(fitted_feature_mode, digit_images,
                                                    digit_features):
    """NSA's pretrained rows (no fine-tuning, the last layer's features scored by the
    nearest angle): nothing trained, the features unchanged, k-Cos by hand."""
    det = fitted_feature_mode("NSADetector")
    assert det.feature_mode_ and det.model_ is None and det.encoder_ is None
    assert det.history_ == {} and det.terms_ == [(0, "kcos")]
    # not standardised: centring would move the origin the angles are measured from
    np.testing.assert_array_equal(det.feature_mean_, np.zeros(8))
    np.testing.assert_array_equal(det.feature_scale_, np.ones(8))
    train, test = (f.astype(np.float64) for f in digit_features)
    # the paper's k = 1: the score is -arccos(cos); compared as cosines (arccos amplifies
    # float32 rounding); the default k = 5 is tested below
    one = fitted_feature_mode("NSADetector", n_neighbors=1)
    np.testing.assert_allclose(np.cos(one.score_samples(digit_images[1])),
                               _nearest_cosine(train, test, loo=False), atol=1e-6)
    np.testing.assert_allclose(np.cos(one.train_scores_), _nearest_cosine(train, train, loo=True),
                               atol=1e-6)
    # the same detector with training is another model (the tabular algorithm, standardised)
    trained = fitted_feature_mode("NSADetector", frozen_features="train")
    assert trained.model_ is not None and trained.terms_ == [(0, "ccos-mah")]
    assert not np.allclose(trained.feature_mean_, 0)


def _mean_angle(train: np.ndarray, test: np.ndarray, k: int, loo: bool) -> np.ndarray:
    """Mean angle (radians, float64) from each test row to its ``k`` nearest training rows by
    cosine (``loo``: test is train and a row is not its own neighbour)."""
    a = train / np.linalg.norm(train, axis=1, keepdims=True)
    b = test / np.linalg.norm(test, axis=1, keepdims=True)
    cos = b @ a.T
    if loo:
        np.fill_diagonal(cos, -np.inf)
    return np.arccos(np.clip(-np.sort(-cos, axis=1)[:, :k], -1, 1)).mean(1)


@pytest.mark.parametrize("k", [1, 3, None])
def test_nsa_n_neighbors_averages_the_k_nearest_angles(fitted_feature_mode, digit_images,
                                                       digit_features, k):
    """k-Cos with k neighbours: -(1/k) sum_j arccos c_(j), by hand; k = 1 is the paper's,
    None the default (5)."""
    det = fitted_feature_mode("NSADetector", **({} if k is None else {"n_neighbors": k}))
    k = k or 5
    train, test = (f.astype(np.float64) for f in digit_features)
    np.testing.assert_allclose(-det.score_samples(digit_images[1]),
                               _mean_angle(train, test, k, loo=False), atol=2e-3)
    np.testing.assert_allclose(-det.train_scores_, _mean_angle(train, train, k, loo=True),
                               atol=2e-3)
    if k > 1:  # another score than the nearest angle's
        one = fitted_feature_mode("NSADetector", n_neighbors=1)
        assert not np.allclose(det.score_samples(digit_images[1]),
                               one.score_samples(digit_images[1]))
    # capped at the bank size minus one: the training scores stay leave-one-out
    big = fitted_feature_mode("NSADetector", n_neighbors=10_000)
    n = len(train)
    np.testing.assert_allclose(-big.score_samples(digit_images[1]),
                               _mean_angle(train, test, n - 1, loo=False), atol=2e-3)
    np.testing.assert_allclose(-big.train_scores_, _mean_angle(train, train, n - 1, loo=True),
                               atol=2e-3)


def test_nsa_scored_frozen_features_ensemble_and_explicit_scorer(digit_images, digit_features):
    det = tiny("NSADetector", backbone=small_backbone(), ensemble=True).fit(digit_images[0])
    assert det.layer_names_ == ["features"] and det.terms_ == [(0, "kcos"), (0, "kcos-mah")]
    assert np.isfinite(det.score_samples(digit_images[1])).all()
    mah = tiny("NSADetector", backbone=small_backbone(), scoring="kcos-mah").fit(digit_images[0])
    assert mah.model_ is None and mah.terms_ == [(0, "kcos-mah")]
    # the whitening is fitted on the unstandardised features
    mean, _ = mah.whitening_[0]
    np.testing.assert_allclose(mean.double().numpy(), digit_features[0].mean(0, dtype=np.float64),
                               rtol=1e-5, atol=1e-6)


def test_frozen_encoder_runs_once_per_image_and_never_changes(digit_images):
    bb = small_backbone()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    rows = []
    # build_encoder deep-copies the backbone; the copy keeps this hook (the same function)
    bb.backbone.register_forward_hook(lambda _m, inp, _out: rows.append(len(inp[0])))
    det = tiny("NSADetector", backbone=bb, batch_size=32).fit(digit_images[0])
    assert sum(rows) == len(digit_images[0])  # once per training image, at fit
    det.score_samples(digit_images[1])
    assert sum(rows) == len(digit_images[0]) + len(digit_images[1])
    assert len(rows) == 2  # each in one batch (max(batch_size, 256) rows)
    for k, v in det.feature_encoder_.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)
    for k, v in bb.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)
    assert not any(p.requires_grad for p in det.feature_encoder_.parameters())


def test_a_plain_module_is_frozen_features_too(digit_images):
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    det = tiny("DUMDetector", backbone=body).fit(digit_images[0][:40])
    assert det.feature_mode_ and det.feature_encoder_.out_features == 4
    assert all(p.requires_grad for p in body.parameters())  # the user's module is not touched


def test_a_trainable_pretrained_encoder_fine_tunes_on_the_images(digit_images):
    det = tiny("NSADetector", backbone=small_backbone("all")).fit(digit_images[0])
    assert det.feature_mode_ is False and det.input_kind_ == "image"
    assert "feature_encoder_" not in vars(det) and "feature_mean_" not in vars(det)
    assert isinstance(det.encoder_, PretrainedEncoder)  # the network trained on the images
    assert np.isfinite(det.score_samples(digit_images[1])).all()


# ------------------------------------------------------------------------ persistence
@pytest.mark.parametrize("name", FEATURE_DETECTORS)
def test_save_load_and_pickle_in_feature_mode(name, fitted_feature_mode, digit_images,
                                              tmp_path):
    det = fitted_feature_mode(name)
    expected = det.score_samples(digit_images[1])
    path = tmp_path / "det.skood"
    det.save(path)
    with pytest.raises(ValueError, match="backbone"):  # a user module is not stored as code
        type(det).load(path)
    det2 = type(det).load(path, backbone=small_backbone())
    assert det2.feature_mode_ and list(vars(det2)) == list(vars(det))
    assert not det2.feature_encoder_.training
    assert not any(p.requires_grad for p in det2.feature_encoder_.parameters())
    np.testing.assert_array_equal(det2.score_samples(digit_images[1]), expected)
    np.testing.assert_array_equal(det2.predict(digit_images[1]), det.predict(digit_images[1]))
    det3 = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(det3.score_samples(digit_images[1]), expected)


# ----------------------------------------------------------------------- the real encoder
def test_efficientnet_lite0_features(digit_images, tmp_path):
    X_train, X_test = digit_images[0][:30], digit_images[1][-20:]
    det = tiny("DUMDetector", backbone="efficientnet_lite0").fit(X_train)
    assert det.feature_mode_ and det.feature_encoder_.out_features == 1280
    assert det.feature_encoder_.resolution == (160, 160) and det.embedding_dim_ == 1281
    scores = det.score_samples(X_test)
    assert scores.shape == (20,) and np.isfinite(scores).all()
    det.save(tmp_path / "lite0.skood")
    det2 = type(det).load(tmp_path / "lite0.skood")
    np.testing.assert_array_equal(det2.score_samples(X_test), scores)


# ----------------------------------------------------------------------------- refits
@pytest.mark.parametrize("name", FEATURE_DETECTORS)
def test_tabular_refit_after_feature_mode_drops_the_encoder(name, fitted_tiny, blobs,
                                                            digit_images):
    det = tiny(name, backbone=small_backbone()).fit(digit_images[0])
    assert det.feature_mode_
    det.set_params(backbone="auto").fit(blobs[0])
    fresh = fitted_tiny(name)
    assert det.feature_mode_ is False and "feature_encoder_" not in vars(det)
    assert set(vars(det)) == set(vars(fresh))
    np.testing.assert_array_equal(det.score_samples(blobs[1]), fresh.score_samples(blobs[1]))


def test_image_refit_without_feature_mode_drops_the_feature_statistics(digit_images):
    det = tiny("DUMDetector", backbone=small_backbone()).fit(digit_images[0])
    det.set_params(backbone="auto").fit(digit_images[0])
    assert det.feature_mode_ is False
    assert not {"feature_encoder_", "feature_mean_", "feature_scale_"} & set(vars(det))


# --------------------------------------------------------------- per-detector specifics
def test_distillneg_auxiliary_images_become_features(digit_images, digit_features):
    from skood._base import scale_features

    aux = digit_images[1][-30:]
    det = tiny("DistillNegDetector", backbone=small_backbone(), negatives=aux)
    det.fit(digit_images[0])
    assert det.feature_scaling_ == "unit-standardize"  # the auxiliary features alike

    def unit(f):
        return scale_features(f, "unit")

    ref = tiny("DistillNegDetector", negatives=unit(features(small_backbone(), aux)))
    ref.fit(unit(digit_features[0]))
    np.testing.assert_array_equal(det.score_samples(digit_images[1]),
                                  ref.score_samples(unit(digit_features[1])))


def test_image_only_options_are_clear_errors_in_feature_mode(digit_images):
    with pytest.raises(ValueError, match="frozen-feature mode"):
        tiny("DistillNegDetector", backbone=small_backbone(),
             negatives="rotation").fit(digit_images[0])
    with pytest.raises(ValueError, match="two embeddings"):
        tiny("DUMDetector", backbone=small_backbone(), encoder=nn.Flatten()).fit(digit_images[0])


@pytest.mark.parametrize("name", FEATURE_DETECTORS)
def test_feature_mode_scores_chunk_by_chunk_with_the_same_bits(name, fitted_feature_mode,
                                                              digit_images, monkeypatch):
    """With chunks of 256 rows, the images are mapped to features one chunk at a time (no
    feature store of all rows) and the scores equal those of one pass, and those of the
    features of all rows at once."""
    det = fitted_feature_mode(name)
    X = np.concatenate([digit_images[1], digit_images[0]] * 4)
    whole = det.score_samples(X)
    monkeypatch.setattr(type(det), "_score_chunk_rows", lambda self: 256)
    seen = []
    build = type(det)._feature_store
    monkeypatch.setattr(type(det), "_feature_store", lambda self, imgs, reset, build=build:
                        seen.append(len(imgs)) or build(self, imgs, reset))
    chunked = det.score_samples(X)
    assert len(seen) >= 3 and max(seen) <= 2 * 256 and sum(seen) == len(X)
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_array_equal(det._score_store(det._validate_input(X, reset=False)), whole)
