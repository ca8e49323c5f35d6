"""The image suite's datasets and splits, as tasks (module level, so that joblib
workers can unpickle them: a function of a script's ``__main__`` cannot be).

``load_split`` caches one dataset per worker process; ``image_tasks`` builds
the :class:`_suite.Task` list of one protocol. ``image_suite.py`` is the CLI.
"""

from __future__ import annotations

import functools

import numpy as np
from _suite import Task

DATASETS = ("digits", "mnist", "fashion", "cifar10")
#: (training images, test images) per budget; None = all
SIZES = {"smoke": (64, 300), "cpu": (1000, 2000), "gpu": (None, None)}


@functools.lru_cache(maxsize=4)
def load_split(dataset: str, data_home: str | None) -> tuple[np.ndarray, ...]:
    """``(X_train, y_train, X_test, y_test)`` of one image dataset (cached per process)."""
    from skood import datasets as D

    if dataset == "digits":
        X, y = D.load_digits_images()
        return D.split_half(X, y, random_state=0)
    if dataset == "mnist":  # only the test set is shared: a fixed 50/50 split
        X, y = D.load_mnist("test", data_home)
        return D.split_half(X, y, random_state=0)
    if dataset == "fashion":
        return (*D.load_fashion_mnist("train", data_home), *D.load_fashion_mnist("test", data_home))
    if dataset == "cifar10":
        return (*D.load_cifar10("train", data_home), *D.load_cifar10("test", data_home))
    raise ValueError(f"unknown dataset {dataset!r}; choose from {DATASETS}")


def _subset(n: int, cap: int | None, rng: np.random.RandomState,
            y: np.ndarray | None = None) -> np.ndarray:
    """At most ``cap`` indices of ``range(n)``, stratified on ``y`` when given."""
    if cap is None or n <= cap:
        return np.arange(n)
    if y is None:
        return np.sort(rng.choice(n, cap, replace=False))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(n), train_size=cap, stratify=y, random_state=rng)
    return np.sort(keep)


def build_one_class(dataset, k, pollution, sizes, data_home, seed):
    from skood.datasets import one_class_split

    X_train, y_train, X_test, y_test = load_split(dataset, data_home)
    rng = np.random.RandomState(seed)
    normal = np.flatnonzero(y_train == k)
    normal = normal[_subset(len(normal), sizes[0], rng)]
    others = np.flatnonzero(y_train != k)
    idx = np.r_[normal, others]  # the pollution is drawn from the other classes' images
    te = _subset(len(X_test), sizes[1], rng, y_test)
    X_tr, X_te, y_out = one_class_split(X_train[idx], y_train[idx], X_test[te], y_test[te],
                                        normal_class=k, pollution=pollution, random_state=seed)
    return X_tr, None, X_te, y_out


def build_holdout(dataset, k, sizes, data_home, seed):
    from skood.datasets import hold_one_class_out

    X_train, y_train, X_test, y_test = load_split(dataset, data_home)
    rng = np.random.RandomState(seed)
    rest = np.flatnonzero(y_train != k)
    tr = np.r_[rest[_subset(len(rest), sizes[0], rng, y_train[rest])], np.flatnonzero(y_train == k)]
    te = _subset(len(X_test), sizes[1], rng, y_test)
    return hold_one_class_out(X_train[tr], y_train[tr], X_test[te], y_test[te], held_out=k,
                              random_state=seed)


def build_vs(dataset, ood, sizes, data_home, seed):
    from skood.datasets import dataset_vs_dataset

    X_train, y_train, X_in, y_in = load_split(dataset, data_home)
    X_out = load_split(ood, data_home)[2]
    if X_out.shape[1:] != X_in.shape[1:]:
        raise ValueError(f"{dataset} and {ood} images differ in shape: "
                         f"{X_in.shape[1:]} vs {X_out.shape[1:]}")
    rng = np.random.RandomState(seed)
    tr = _subset(len(X_train), sizes[0], rng, y_train)
    half = None if sizes[1] is None else sizes[1] // 2
    X_in = X_in[_subset(len(X_in), half, rng, y_in)]
    X_te, y_out = dataset_vs_dataset(X_in, X_out, max_out=len(X_in), random_state=seed)
    return X_train[tr], None, X_te, y_out


def image_tasks(dataset: str, protocol: str, classes, budget: str, data_home: str | None,
                pollution: float = 0.0, ood: str = "mnist") -> list[Task]:
    sizes = SIZES[budget]
    if protocol == "vs":
        return [Task(f"{dataset}-vs-{ood}", "image",
                     functools.partial(build_vs, dataset, ood, sizes, data_home),
                     meta={"sizes": sizes})]
    if protocol == "holdout":
        return [Task(f"{dataset}-holdout-{k}", "image",
                     functools.partial(build_holdout, dataset, k, sizes, data_home),
                     meta={"sizes": sizes}) for k in classes]
    suffix = f"-p{int(round(100 * pollution))}" if pollution else ""
    return [Task(f"{dataset}-{k}{suffix}", "image",
                 functools.partial(build_one_class, dataset, k, pollution, sizes, data_home),
                 meta={"sizes": sizes, "pollution": pollution}) for k in classes]
