"""The on-disk feature cache of frozen encoders: hits, misses, invalidation by weights,
trainable encoders bypass it, detectors score the same with it, the benchmark sweep
extracts each image once, every corrupt entry is recomputed and rewritten (never returned)
and threads of one process lose no write."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from skood import FeatureKNNDetector
from skood._nn.feature_cache import FeatureCache, image_keys, module_fingerprint
from skood._testing import benchmark_module, tiny
from skood.pretrained import PretrainedEncoder, load_pretrained


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
    _suite = benchmark_module("_suite")
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


# --------------------------------------------------------------- corrupt entries
def _entry(enc: PretrainedEncoder, images: torch.Tensor, i: int) -> Path:
    """The cache file of image ``i`` of ``images`` for the encoder ``enc``."""
    k = image_keys(images)[i]
    return Path(enc.cache_dir) / enc.fingerprint() / k[:2] / f"{k}.npy"


def _stored(path: Path) -> np.ndarray:
    """The features an entry holds, whatever its format (a record or a plain vector)."""
    a = np.load(path)
    return a["features"].copy() if a.dtype.names else a


def _edit_features(path: Path, edit) -> None:
    """Change the features an entry holds, keeping its format (and any checksum) as it is."""
    a = np.load(path)
    if a.dtype.names:
        a["features"] = edit(a["features"].copy())
    else:
        a = edit(a)
    np.save(path, a)


def _flip(path: Path, pos: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= mask
    path.write_bytes(bytes(data))


#: each plants one kind of damage in the entry ``p``; ``q`` is another image's valid entry
CORRUPTIONS = {
    "empty file": lambda p, q: p.write_bytes(b""),
    "truncated by 3 bytes": lambda p, q: p.write_bytes(p.read_bytes()[:-3]),
    "truncated to half": lambda p, q: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]),
    "one trailing byte": lambda p, q: p.write_bytes(p.read_bytes() + b"\0"),
    "flipped low bit of a feature": lambda p, q: _flip(p, -5, 0x01),
    "flipped sign of a feature": lambda p, q: _flip(p, -1, 0x80),
    "all bytes zero": lambda p, q: p.write_bytes(bytes(len(p.read_bytes()))),
    "features zeroed": lambda p, q: _edit_features(p, np.zeros_like),
    "permuted vector": lambda p, q: _edit_features(p, lambda f: np.roll(f, 1)),
    "NaN features": lambda p, q: _edit_features(p, lambda f: np.full_like(f, np.nan)),
    "int64 vector": lambda p, q: np.save(p, (_stored(p) * 1000).astype(np.int64)),
    "float64 vector": lambda p, q: np.save(p, _stored(p).astype(np.float64)),
    "shorter vector": lambda p, q: np.save(p, _stored(p)[:5]),
    "longer vector": lambda p, q: np.save(p, np.tile(_stored(p), 2)),
    "another image's entry": lambda p, q: shutil.copyfile(q, p),
    "pickled objects": lambda p, q: np.save(p, np.array([_stored(p), None], dtype=object),
                                            allow_pickle=True),
    "text": lambda p, q: p.write_bytes(b"not features\n"),
}


def _no_cache(plain: PretrainedEncoder, images: torch.Tensor, recomputed: list[int]):
    """What an encoder without a cache returns when the rows ``recomputed`` come in a
    second batch of their own (batched kernels may round differently by batch size)."""
    with torch.no_grad():
        want = plain(images)
        want[recomputed] = plain(images[recomputed])
    return want.numpy()


def _check_repaired(enc: PretrainedEncoder, images: torch.Tensor, got: torch.Tensor) -> None:
    """Every entry of ``images`` verifies and holds ``got``; reading them warns nothing."""
    cache = FeatureCache(enc.cache_dir)
    for i, k in enumerate(image_keys(images)):
        row, why = cache._read(_entry(enc, images, i), f"{enc.fingerprint()}/{k}",
                               enc.out_features)
        assert why == "" and np.array_equal(row, got[i].numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(enc(images), got)


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS))
def test_a_corrupt_entry_is_recomputed_and_rewritten_never_returned(tmp_path, images, corrupt):
    enc = _small_encoder(cache_dir=tmp_path)
    with torch.no_grad():
        enc(images)
    path = _entry(enc, images, 2)
    good = path.read_bytes()
    CORRUPTIONS[corrupt](path, _entry(enc, images, 0))
    assert path.read_bytes() != good
    with pytest.warns(RuntimeWarning, match=re.escape(str(path))), torch.no_grad():
        got = enc(images)
    assert np.array_equal(got.numpy(), _no_cache(_small_encoder(), images, [2]))
    _check_repaired(enc, images, got)


def test_entries_in_the_earlier_format_or_crafted_are_rewritten(tmp_path, images):
    """A plain float32 vector (the format before checksums) is a miss and is rewritten;
    so are records whose checksum is right but whose width, values or image are not."""
    from skood._nn.feature_cache import _record

    enc = _small_encoder(cache_dir=tmp_path)
    with torch.no_grad():
        first = enc(images)
    tag = f"{enc.fingerprint()}/{image_keys(images)[1]}"
    row = first[1].numpy()
    plants = {
        1: (lambda p: np.save(p, row), "earlier format"),
        2: (lambda p: np.save(p, _record(f"{enc.fingerprint()}/{image_keys(images)[2]}",
                                         row[:5])), "width 5, expected 8"),
        3: (lambda p: np.save(p, _record(f"{enc.fingerprint()}/{image_keys(images)[3]}",
                                         np.full(8, np.nan, np.float32))), "non-finite"),
        4: (lambda p: np.save(p, _record(tag, row)), "checksum mismatch"),  # image 1's
    }
    for i, (plant, _) in plants.items():
        plant(_entry(enc, images, i))
    with pytest.warns(RuntimeWarning, match="4 entries failed verification") as rec, \
            torch.no_grad():
        got = enc(images)
    message = str(rec[0].message)
    for i, (_, why) in plants.items():
        assert re.search(re.escape(f"{_entry(enc, images, i)} (") + f"[^)]*{why}", message)
    assert np.array_equal(got.numpy(), _no_cache(_small_encoder(), images, [1, 2, 3, 4]))
    _check_repaired(enc, images, got)


def test_an_unreadable_entry_is_a_miss_and_never_an_error(tmp_path, images):
    enc = _small_encoder(cache_dir=tmp_path)
    with torch.no_grad():
        enc(images)
    path = _entry(enc, images, 2)
    path.unlink()
    path.mkdir()  # a directory where the entry should be: cannot be read nor replaced
    with pytest.warns(RuntimeWarning) as rec, torch.no_grad():
        got = enc(images)
    messages = " ".join(str(w.message) for w in rec)
    assert f"{path} (unreadable: " in messages and "cannot write" in messages
    assert np.array_equal(got.numpy(), _no_cache(_small_encoder(), images, [2]))


def _doubled(x: torch.Tensor) -> torch.Tensor:
    """Features that do not depend on the batch: exact whatever the batch size."""
    return x.flatten(1)[:, :8] * 2


def test_every_byte_flipped_and_every_truncation_of_an_entry_is_caught(tmp_path, images):
    cache = FeatureCache(tmp_path)
    x = images[:1]
    want = _doubled(x)
    cache.features("enc", x, _doubled, width=8)
    (path,) = _cached_files(tmp_path)
    good = path.read_bytes()
    damaged = [good[:n] for n in range(len(good))] + [good + b"\n"]
    damaged += [good[:p] + bytes([good[p] ^ 1 << p % 8]) + good[p + 1:]  # each bit in turn
                for p in range(len(good))]
    missed = []
    for data in damaged:
        path.write_bytes(data)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            got = cache.features("enc", x, _doubled, width=8)
        if not (torch.equal(got, want) and path.read_bytes() == good and len(w) == 1
                and str(path) in str(w[0].message)):
            missed.append(data)
    assert not missed, f"{len(missed)} of {len(damaged)} damaged entries not caught"


def test_threads_of_one_process_lose_no_write(tmp_path, images, monkeypatch):
    save = np.save

    def slow_save(*args, **kwargs):  # widen the window between writing and renaming
        save(*args, **kwargs)
        time.sleep(0.01)

    monkeypatch.setattr(np, "save", slow_save)
    cache = FeatureCache(tmp_path)
    batches = [images] * 8 + [images[i:i + 1] for i in range(6)] * 3  # same and own keys
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda b: cache.features("enc", b, _doubled, width=8),
                                 batches))
    assert not [str(m.message) for m in w]
    assert all(torch.equal(o, _doubled(b)) for o, b in zip(outs, batches, strict=True))
    assert len(_cached_files(tmp_path)) == 6
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".npy"] == []
    for k in image_keys(images):
        assert cache._read(cache._path("enc", k), f"enc/{k}", 8)[1] == ""


def test_a_permuted_cached_vector_does_not_change_feature_knn_scores(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (40, 12, 12)).astype(np.uint8)
    X[30:] = 255 - X[30:] // 4  # outliers: brighter images
    knn = FeatureKNNDetector(backbone=_small_encoder(cache_dir=tmp_path)).fit(X[:30])
    fit_files = set(_cached_files(tmp_path))
    ref = knn.score_samples(X[25:])
    test_files = sorted(set(_cached_files(tmp_path)) - fit_files)
    assert len(test_files) == 10
    for path in test_files:
        _edit_features(path, lambda f: np.roll(f, 3))
    with pytest.warns(RuntimeWarning, match="10 entries failed verification"):
        got = knn.score_samples(X[25:])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
