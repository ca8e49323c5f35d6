"""The on-disk feature cache of frozen encoders: hits, misses, invalidation by weights,
trainable encoders bypass it, detectors score the same with it, and the benchmark sweep
extracts each image once."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from skood import FeatureKNNDetector
from skood._nn.feature_cache import FeatureCache, image_keys, module_fingerprint
from skood._testing import tiny
from skood.pretrained import PretrainedEncoder, load_pretrained

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _cached_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/*.npy"))


class Counting:
    """A feature function that records the batches it is asked for."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        flat = x.flatten(1)
        return torch.cat([flat.mean(1, keepdim=True), flat.amax(1, keepdim=True)], 1)


def _small_encoder(seed: int = 0, **kw) -> PretrainedEncoder:
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    return PretrainedEncoder(body, resolution=16, **kw)


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 12, 12, generator=g)


def test_image_keys_follow_content_dtype_and_shape(images):
    k = image_keys(images)
    assert len(set(k)) == len(images)
    assert image_keys(images.clone()) == k
    assert image_keys(images.double()) != k
    assert image_keys(images.reshape(6, 1, 6, 24)) != k
    changed = images.clone()
    changed[2, 0, 0, 0] += 1e-3
    same = [a == b for a, b in zip(image_keys(changed), k, strict=True)]
    assert same == [True, True, False, True, True, True]


def test_cache_computes_only_what_it_has_not_seen(tmp_path, images):
    f = Counting()
    cache = FeatureCache(tmp_path)
    first = cache.features("enc", images[:4], f)
    assert f.calls == [4]
    again = cache.features("enc", images, f)  # four hits, two new images
    assert f.calls == [4, 2]
    assert torch.equal(again[:4], first)
    assert torch.allclose(again, f(images))
    assert len(_cached_files(tmp_path)) == 6
    cache.features("enc", images, f)
    assert f.calls == [4, 2, 6]  # the last call (6) is the check above, not the cache
    cache.features("other", images[:1], f)  # another encoder key: its own entries
    assert f.calls[-1] == 1


def test_unwritable_cache_warns_and_still_returns_features(tmp_path, images, monkeypatch):
    f = Counting()
    cache = FeatureCache(tmp_path / "ro")

    def refuse(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(np, "save", refuse)
    with pytest.warns(RuntimeWarning, match="cannot write"):
        out = cache.features("enc", images, f)
    assert torch.allclose(out, f(images))
    assert not _cached_files(tmp_path)


def test_encoder_with_cache_matches_without_and_reads_back(tmp_path, images):
    enc = _small_encoder(cache_dir=tmp_path)
    plain = _small_encoder()
    with torch.no_grad():
        ref = plain(images)
        a = enc(images)
        assert len(_cached_files(tmp_path)) == len(images)
        b = enc(images)
    assert torch.allclose(a, ref, atol=1e-6) and torch.equal(a, b)
    assert enc.fingerprint() == plain.fingerprint()
    assert "cache_dir" in repr(enc)
    back = pickle.loads(pickle.dumps(enc))
    assert back.cache_dir == os.fspath(tmp_path) and torch.equal(back(images), a)


def test_other_weights_or_resolution_never_read_stale_features(tmp_path, images):
    enc = _small_encoder(cache_dir=tmp_path)
    enc(images)
    other = _small_encoder(seed=1, cache_dir=tmp_path)
    assert other.fingerprint() != enc.fingerprint()
    assert not torch.allclose(other(images), enc(images))
    assert torch.allclose(other(images), _small_encoder(seed=1)(images), atol=1e-6)
    assert _small_encoder(cache_dir=tmp_path).fingerprint() == enc.fingerprint()
    low = PretrainedEncoder(enc.backbone, resolution=14, cache_dir=tmp_path)
    assert low.fingerprint() != enc.fingerprint()
    with torch.no_grad():  # moved BatchNorm statistics are other weights too
        enc.backbone[1].running_mean += 1.0
    assert module_fingerprint(enc) != module_fingerprint(_small_encoder())


def test_a_trainable_encoder_bypasses_the_cache(tmp_path, images):
    enc = _small_encoder(trainable="all", cache_dir=tmp_path)
    out = enc(images)
    assert out.requires_grad and not _cached_files(tmp_path)


def test_bad_images_are_still_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="C = 1"):
        _small_encoder(cache_dir=tmp_path)(torch.rand(2, 2, 12, 12))


def test_detectors_score_the_same_with_the_cache(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (40, 12, 12)).astype(np.uint8)
    plain = tiny("NSADetector", backbone=_small_encoder()).fit(X).score_samples(X[:10])
    cold = tiny("NSADetector", backbone=_small_encoder(cache_dir=tmp_path)).fit(X)
    n_files = len(_cached_files(tmp_path))
    warm = tiny("NSADetector", backbone=_small_encoder(cache_dir=tmp_path)).fit(X)
    assert n_files == len(X) == len(_cached_files(tmp_path))
    np.testing.assert_allclose(cold.score_samples(X[:10]), plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(warm.score_samples(X[:10]), cold.score_samples(X[:10]))
    knn = FeatureKNNDetector(backbone=_small_encoder(cache_dir=tmp_path)).fit(X)
    assert len(_cached_files(tmp_path)) == len(X)  # the same images, the same encoder: all hits
    assert np.isfinite(knn.score_samples(X[:10])).all()


def test_load_pretrained_passes_the_cache_dir(tmp_path):
    enc = load_pretrained("efficientnet_lite0", resolution=32, cache_dir=tmp_path)
    assert enc.cache_dir == os.fspath(tmp_path)
    enc(torch.rand(2, 3, 32, 32))
    assert len(_cached_files(tmp_path)) == 2


def test_sweep_extracts_each_image_once_and_runs_read_the_cache(tmp_path, monkeypatch):
    sys.path.insert(0, str(BENCH))
    try:
        import _suite
    finally:
        sys.path.remove(str(BENCH))
    from functools import partial

    monkeypatch.setattr(_suite, "FEATURE_CACHE", tmp_path / "features")
    rng = np.random.RandomState(0)
    pool = rng.randint(0, 256, (30, 16, 16)).astype(np.uint8)

    def tasks():
        return [_suite.Task(f"t{k}", "image", partial(_split, pool, k)) for k in (0, 1)]

    det = "FeatureKNN(backbone='efficientnet_lite0')"
    assert _suite.pretrained_backbones([det, "KNN", "NSA(backbone='resnet18_imagenet')"]) == [
        "efficientnet_lite0", "resnet18_imagenet"]
    got = _suite.warm_feature_cache(tasks(), [det, "IsolationForest"], seeds=[0])
    m = got["efficientnet_lite0"]
    assert m["images_passed"] == 2 * 20 and m["features_computed"] == 25  # images 0-19 and 25-29
    again = _suite.warm_feature_cache(tasks(), [det], seeds=[0])
    assert again["efficientnet_lite0"]["features_computed"] == 0
    n_files = len(_cached_files(tmp_path / "features"))
    row = _suite.run_one(tasks()[0], det, 0, "smoke")
    assert not row["error"] and 0.0 <= row["auroc"] <= 1.0
    assert len(_cached_files(tmp_path / "features")) == n_files  # the run computed nothing


def _split(pool: np.ndarray, k: int, seed: int):
    """Two overlapping tasks over one pool of 30 images: 10 + 10 each, 10 shared."""
    tr = pool[10 * k: 10 * k + 10]
    te = pool[10:20] if k == 0 else pool[np.r_[0:5, 25:30]]
    return tr, None, te, np.r_[np.zeros(5, int), np.ones(5, int)]
