"""Tests for skood.datasets.

Synthetic tests always run. Real-data tests read the shared benchmark data through
conftest's ``data_home`` fixture (:func:`skood._testing.shared_data_home`: checked out next
to the repository, ``<repo>/../shared/data``, else ``$SKOOD_DATA``) and are skipped only
when neither exists.
"""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from skood import datasets as ds

# --------------------------------------------------------------------------- data home


def test_get_data_home_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("SKOOD_DATA", str(tmp_path / "env"))
    assert ds.get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert ds.get_data_home(str(tmp_path / "arg")) == tmp_path / "arg"
    assert ds.get_data_home() == tmp_path / "env"
    monkeypatch.delenv("SKOOD_DATA")
    assert ds.get_data_home() == Path.home() / "skood_data"
    assert not (tmp_path / "arg").exists()  # never created


def test_env_var_is_used_by_loaders(tmp_path, monkeypatch):
    monkeypatch.setenv("SKOOD_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "odds" / "cardio.mat")):
        ds.load_odds("cardio")


# --------------------------------------------------------------------------- IDX


def _write_idx(path, arr, code, compress):
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    be = arr.astype(arr.dtype.newbyteorder(">"))
    payload = header + be.tobytes()
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_uint8(tmp_path, compress):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / ("a.idx.gz" if compress else "a.idx")
    _write_idx(p, arr, 0x08, compress)
    out = ds.load_idx(p)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    ("code", "dtype"), [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32)]
)
def test_load_idx_other_dtypes(tmp_path, code, dtype):
    arr = (np.arange(6) - 3).astype(dtype).reshape(6)
    p = tmp_path / "b.idx"
    _write_idx(p, arr, code, compress=False)
    out = ds.load_idx(p)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_load_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        ds.load_idx(tmp_path / "nope.idx")
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic"):
        ds.load_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="payload"):
        ds.load_idx(short)


# --------------------------------------------------------------------------- missing files


def test_missing_files_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match="ADBench"):
        ds.load_adbench("breastw", data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="ADBench"):
        ds.list_adbench(data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="ODDS"):
        ds.load_odds("cardio", data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="ODDS"):
        ds.list_odds(data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        ds.load_fashion_mnist("test", data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="torchvision"):
        ds.load_mnist("test", data_home=tmp_path)
    p = tmp_path / "images" / "cifar10_jpeg" / "test.tar.gz"
    with pytest.raises(FileNotFoundError, match=str(p)):
        ds.load_cifar10("test", data_home=tmp_path)


def test_bad_split_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        ds.load_fashion_mnist("valid", data_home=tmp_path)
    with pytest.raises(ValueError, match="split"):
        ds.load_cifar10("valid", data_home=tmp_path)
    with pytest.raises(ValueError, match="class"):
        ds.load_cifar10("test", data_home=tmp_path, classes=["unicorn"])


# --------------------------------------------------------------------------- name resolution


def test_adbench_name_resolution_synthetic(tmp_path):
    folder = tmp_path / "adbench" / "classical"
    folder.mkdir(parents=True)
    X = np.arange(12, dtype=np.uint8).reshape(4, 3)
    y = np.array([0, 1, 0, 0])
    for stem in ["4_breastw", "10_cover", "2_Annthyroid", "22_magic.gamma"]:
        np.savez(folder / f"{stem}.npz", X=X, y=y)
    assert ds.list_adbench(tmp_path) == ["2_Annthyroid", "4_breastw", "10_cover", "22_magic.gamma"]
    for name in ["4_breastw", "breastw", "4_breastw.npz", "BreastW", "breastw.npz"]:
        Xl, yl = ds.load_adbench(name, data_home=tmp_path)
        assert Xl.dtype == np.float64 and yl.dtype == np.int64
        np.testing.assert_array_equal(Xl, X)
        np.testing.assert_array_equal(yl, y)
    ds.load_adbench("annthyroid", data_home=tmp_path)
    ds.load_adbench("magic.gamma", data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"5_breastw\.npz"):
        ds.load_adbench("5_breastw", data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="Available here"):
        ds.load_adbench("nothing", data_home=tmp_path)


# --------------------------------------------------------------------------- digits


def test_load_digits_images():
    X, y = ds.load_digits_images()
    assert X.shape == (1797, 8, 8) and X.dtype == np.uint8
    assert X.max() == 255 and X.min() == 0
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))
    from sklearn.datasets import load_digits

    raw = load_digits().images
    np.testing.assert_array_equal(X, np.round(raw * 255 / 16).astype(np.uint8))


# --------------------------------------------------------------------------- real data


def test_real_adbench(data_home):
    names = ds.list_adbench(data_home)
    assert names[:3] == ["1_ALOI", "2_annthyroid", "4_breastw"]
    assert len(names) == 34
    X, y = ds.load_adbench("breastw", data_home=data_home)
    assert X.shape == (683, 9) and X.dtype == np.float64
    assert y.dtype == np.int64 and int(y.sum()) == 239
    X2, _ = ds.load_adbench("4_BREASTW.npz", data_home=data_home)
    np.testing.assert_array_equal(X, X2)
    Xc, yc = ds.load_adbench("CIFAR10_0", data_home=data_home, subset="cv_resnet18")
    assert Xc.shape == (5263, 512) and int(yc.sum()) == 263


def test_real_odds(data_home):
    names = ds.list_odds(data_home)
    assert "cardio" in names and names == sorted(names)
    X, y = ds.load_odds("wbc", data_home=data_home)
    assert X.shape == (378, 30) and X.dtype == np.float64
    assert y.shape == (378,) and y.dtype == np.int64 and int(y.sum()) == 21
    # identical to the ADBench copy
    Xo, yo = ds.load_odds("cardio.mat", data_home=data_home)
    Xa, ya = ds.load_adbench("cardio", data_home=data_home)
    np.testing.assert_allclose(Xo, Xa)
    np.testing.assert_array_equal(yo, ya)


def test_real_fashion_mnist_test(data_home):
    X, y = ds.load_fashion_mnist("test", data_home=data_home)
    assert X.shape == (10000, 28, 28) and X.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 1000))


def test_real_mnist(data_home):
    X, y = ds.load_mnist("test", data_home=data_home)
    assert X.shape == (10000, 28, 28) and X.dtype == np.uint8
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert X.mean() == pytest.approx(33.79, abs=0.01)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        ds.load_mnist("train", data_home=data_home)
    labels = ds.load_idx(data_home / "images" / "mnist" / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and labels.dtype == np.uint8


def test_real_cifar10_subset(data_home):
    X, y = ds.load_cifar10("test", data_home=data_home, classes=["cat"], max_per_class=5)
    assert X.shape == (5, 32, 32, 3) and X.dtype == np.uint8
    assert y.dtype == np.int64 and np.all(y == 3)
    assert ds.CIFAR10_CLASSES[3] == "cat"
    X2, y2 = ds.load_cifar10("test", data_home=data_home, classes=[9, "cat"], max_per_class=2)
    assert y2.tolist() == [3, 3, 9, 9]  # sorted by class, then member name
    np.testing.assert_array_equal(X2[:2], X[:2])  # deterministic order


# --------------------------------------------------------------------------- split helpers


def _toy_images(n_per_class=20, n_classes=4, seed=0):
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = rng.randint(0, 255, size=(y.size, 3, 3)).astype(np.uint8)
    X[:, 0, 0] = y  # the class can be read back from the image
    return X, y


@pytest.mark.parametrize("pollution", [0.0, 0.1, 0.2])
def test_one_class_split(pollution):
    X_tr, y_tr = _toy_images(20)
    X_te, y_te = _toy_images(10, seed=1)
    Xa, Xt, yo = ds.one_class_split(X_tr, y_tr, X_te, y_te, 2, pollution, random_state=0)
    n_poll = round(pollution / (1 - pollution) * 20)
    assert Xa.shape == (20 + n_poll, 3, 3)
    cls = Xa[:, 0, 0]
    assert np.sum(cls == 2) == 20 and np.sum(cls != 2) == n_poll
    if pollution:
        assert np.sum(cls != 2) / len(cls) == pytest.approx(pollution, abs=0.02)
    np.testing.assert_array_equal(Xt, X_te)
    np.testing.assert_array_equal(yo, (y_te != 2).astype(int))
    assert yo.dtype == np.int64
    Xb, _, _ = ds.one_class_split(X_tr, y_tr, X_te, y_te, 2, pollution, random_state=0)
    np.testing.assert_array_equal(Xa, Xb)


def test_one_class_split_errors():
    X, y = _toy_images(5)
    with pytest.raises(ValueError, match="pollution"):
        ds.one_class_split(X, y, X, y, 0, pollution=0.5)
    with pytest.raises(ValueError, match="normal_class"):
        ds.one_class_split(X, y, X, y, 7)
    with pytest.raises(ValueError, match="rows"):
        ds.one_class_split(X, y[:-1], X, y, 0)


def test_split_half_stratified_and_deterministic():
    X, y = _toy_images(20)
    Xa, ya, Xb, yb = ds.split_half(X, y, random_state=3)
    assert len(Xa) == len(Xb) == 40
    assert np.bincount(ya).tolist() == [10] * 4 and np.bincount(yb).tolist() == [10] * 4
    np.testing.assert_array_equal(Xa[:, 0, 0], ya)
    # the halves are disjoint and cover everything
    rows = {r.tobytes() for r in np.r_[Xa, Xb]}
    assert len(rows) == len(X)
    again = ds.split_half(X, y, random_state=3)
    np.testing.assert_array_equal(again[0], Xa)
    other = ds.split_half(X, y, random_state=4)
    assert not np.array_equal(other[0], Xa)


def test_hold_one_class_out():
    X, y = _toy_images(10, n_classes=5)
    X_te, y_te = _toy_images(4, n_classes=5, seed=1)
    Xtr, ytr, Xte, yo = ds.hold_one_class_out(X, y, X_te, y_te, held_out=2, random_state=0)
    assert len(Xtr) == 40 and ytr.dtype == np.int64
    assert sorted(np.unique(ytr).tolist()) == [0, 1, 2, 3]
    orig = Xtr[:, 0, 0].astype(int)
    assert 2 not in orig
    np.testing.assert_array_equal(ytr, np.where(orig > 2, orig - 1, orig))
    np.testing.assert_array_equal(Xte, X_te)
    np.testing.assert_array_equal(yo, (y_te == 2).astype(int))
    again = ds.hold_one_class_out(X, y, X_te, y_te, held_out=2, random_state=0)
    np.testing.assert_array_equal(again[0], Xtr)
    with pytest.raises(ValueError, match="held_out"):
        ds.hold_one_class_out(X, y, X_te, y_te, held_out=9)


def test_dataset_vs_dataset():
    X_in = np.zeros((10, 2, 2))
    X_out = np.arange(30 * 4, dtype=float).reshape(30, 2, 2)
    X, y = ds.dataset_vs_dataset(X_in, X_out)
    assert X.shape == (40, 2, 2) and y.tolist() == [0] * 10 + [1] * 30
    X, y = ds.dataset_vs_dataset(X_in, X_out, max_out=5, random_state=0)
    assert X.shape == (15, 2, 2) and int(y.sum()) == 5
    X2, _ = ds.dataset_vs_dataset(X_in, X_out, max_out=5, random_state=0)
    np.testing.assert_array_equal(X, X2)
    with pytest.raises(ValueError, match="sample shapes"):
        ds.dataset_vs_dataset(X_in, np.zeros((3, 4)))


def _toy_tabular(n=1000, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4) * [1, 10, 100, 1] + [0, 5, -50, 0]
    X[:, 3] = 7.0  # constant column
    y = (rng.rand(n) < 0.1).astype(int)
    return X, y


def test_tabular_split_inductive():
    X, y = _toy_tabular(1000)
    Xtr, Xte, ytr, yte = ds.tabular_split(X, y, max_samples=500, random_state=0)
    assert len(Xtr) + len(Xte) == 500
    assert len(Xte) == 150
    assert Xtr.dtype == np.float64 and ytr.dtype == np.int64
    # stratified: anomaly rate preserved in both parts
    rate = y.mean()
    assert ytr.mean() == pytest.approx(rate, abs=0.02)
    assert yte.mean() == pytest.approx(rate, abs=0.02)
    # scaling fitted on the train part only: train spans exactly [0, 1]
    np.testing.assert_allclose(Xtr[:, :3].min(axis=0), 0.0)
    np.testing.assert_allclose(Xtr[:, :3].max(axis=0), 1.0)
    assert np.all(np.isfinite(Xtr)) and np.all(np.isfinite(Xte))
    assert np.all(Xtr[:, 3] == 0.0) and np.all(Xte[:, 3] == 0.0)  # constant column -> 0
    # determinism
    again = ds.tabular_split(X, y, max_samples=500, random_state=0)
    np.testing.assert_array_equal(again[0], Xtr)
    np.testing.assert_array_equal(again[3], yte)
    # the input is not modified
    X_copy = X.copy()
    ds.tabular_split(X, y, random_state=0)
    np.testing.assert_array_equal(X, X_copy)


def test_tabular_split_one_affine_map_fitted_on_train():
    # An id column 0..n-1: if train and test share the map fitted on train, the scaled ids of
    # all rows together are equally spaced; train spans exactly [0, 1], test is not clipped.
    rng = np.random.RandomState(0)
    n = 200
    X = np.c_[np.arange(n, dtype=float), rng.randn(n)]
    y = (rng.rand(n) < 0.2).astype(int)
    found_outside = False
    for seed in range(10):
        Xtr, Xte, _, _ = ds.tabular_split(X, y, random_state=seed)
        assert Xtr[:, 0].min() == pytest.approx(0.0, abs=1e-12)
        assert Xtr[:, 0].max() == pytest.approx(1.0)
        ids = np.sort(np.r_[Xtr[:, 0], Xte[:, 0]])
        np.testing.assert_allclose(np.diff(ids), np.diff(ids)[0], rtol=1e-9)
        found_outside |= bool(Xte[:, 0].min() < 0 or Xte[:, 0].max() > 1)
    assert found_outside  # some split puts an extreme row in the test part, unclipped


def test_tabular_split_transductive():
    X, y = _toy_tabular(300)
    Xa, Xb, ya, yb = ds.tabular_split(X, y, protocol="transductive")
    assert Xa is Xb and ya is yb
    assert Xa.shape == (300, 4)
    np.testing.assert_array_equal(ya, y)  # no subsample below max_samples: order kept
    np.testing.assert_allclose(Xa[:, :3].min(axis=0), 0.0)
    np.testing.assert_allclose(Xa[:, :3].max(axis=0), 1.0)
    assert np.all(Xa[:, 3] == 0.0)
    Xs, _, ys, _ = ds.tabular_split(X, y, protocol="transductive", max_samples=100)
    assert Xs.shape == (100, 4)
    assert ys.mean() == pytest.approx(y.mean(), abs=0.02)


def test_tabular_split_errors():
    X, y = _toy_tabular(50)
    with pytest.raises(ValueError, match="protocol"):
        ds.tabular_split(X, y, protocol="semi")
    with pytest.raises(ValueError, match="0/1"):
        ds.tabular_split(X, y + 1)
    with pytest.raises(ValueError, match="rows"):
        ds.tabular_split(X, y[:-1])
