"""Fits in threads: reproducible, and the caller's global random state is never touched.

A fit draws its initial weights from its own generators (``skood._utils.fit_generators``
and ``fit_rng``), never from torch's process-wide RNG, so fits in joblib's threading backend give
the scores of the same fits run one after another, and a caller's global torch
and numpy streams are the same with or without fits running beside them.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed

from skood._testing import DETECTORS, tiny

_RNG = np.random.RandomState(0)
_DATA = {
    "tabular": _RNG.normal(size=(96, 5)),
    "image": (_RNG.rand(64, 1, 8, 8) * 255).astype(np.uint8),
}


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    """Switch threads every microsecond, so concurrent fits interleave at every draw."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _numpy_global(seed: int | None = None) -> tuple:
    """numpy's global RNG state as a comparable tuple, after seeding it with ``seed`` if given."""
    if seed is not None:
        np.random.seed(seed)  # noqa: NPY002 (the legacy global RNG is the subject)
    kind, key, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return kind, key.tobytes(), pos, has_gauss, gauss


def _scores(name: str, kind: str, seed: int | None) -> np.ndarray:
    X = _DATA[kind]
    return tiny(name, random_state=seed).fit(X).score_samples(X[:16])


def _fit_in_threads(jobs: list[tuple[str, str]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=_scores, args=(name, kind, i % 2))
               for i, (name, kind) in enumerate(jobs)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("name", DETECTORS)
def test_threaded_fits_equal_sequential_fits(name):
    """joblib's threading backend, 4 jobs, seeds 0, 1, 0, 1: the scores of sequential fits."""
    seeds = (0, 1, 0, 1)
    start = threading.Barrier(len(seeds))  # the four fits start together

    def job(kind, seed):
        start.wait()
        return _scores(name, kind, seed)

    for kind in _DATA:
        sequential = {s: _scores(name, kind, s) for s in (0, 1)}
        threaded = Parallel(n_jobs=len(seeds), backend="threading")(
            delayed(job)(kind, s) for s in seeds
        )
        for s, got in zip(seeds, threaded, strict=True):
            np.testing.assert_array_equal(got, sequential[s], err_msg=f"{kind}, random_state={s}")


def test_fit_ignores_the_global_rng_of_other_threads():
    """Another thread reseeding and drawing from torch's global RNG changes no fit."""
    expected = {(name, kind): _scores(name, kind, 0) for name in DETECTORS for kind in _DATA}
    stop = threading.Event()

    def meddle():
        while not stop.is_set():
            torch.manual_seed(12345)
            torch.rand(8)

    meddler = threading.Thread(target=meddle)
    meddler.start()
    try:
        for (name, kind), want in expected.items():
            np.testing.assert_array_equal(_scores(name, kind, 0), want, err_msg=name)
    finally:
        stop.set()
        meddler.join()


def test_caller_global_rng_untouched_while_other_threads_fit():
    """The caller's torch and numpy streams are the same with fits running in other threads."""
    torch.manual_seed(7)
    np_state = _numpy_global(7)
    threads = _fit_in_threads([(name, kind) for name in DETECTORS for kind in _DATA])
    draws = []
    while any(t.is_alive() for t in threads):
        draws.append(torch.rand(4))
    for t in threads:
        t.join()
    assert len(draws) > 0
    reference = torch.rand(len(draws), 4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(torch.stack(draws), reference, rtol=0, atol=0)
    assert _numpy_global() == np_state


@pytest.mark.parametrize("name", DETECTORS)
def test_fit_leaves_the_global_rng_alone(name):
    torch.manual_seed(3)
    torch_state, np_state = torch.get_rng_state(), _numpy_global(3)
    _scores(name, "tabular", None)
    _scores(name, "image", 0)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert _numpy_global() == np_state


def test_random_state_none_draws_fresh_seeds_without_numpy_global_rng():
    """``random_state=None``: a fresh seed per fit from OS entropy; numpy's global state intact."""
    np_state = _numpy_global(5)
    a = _scores("NSADetector", "tabular", None)
    b = _scores("NSADetector", "tabular", None)
    assert _numpy_global() == np_state
    assert not np.array_equal(a, b)
    _numpy_global(5)  # an unseeded fit is not a function of numpy's global seed either
    c = _scores("NSADetector", "tabular", None)
    assert not np.array_equal(a, c)


@pytest.mark.skipif("RotAuxMSPDetector" not in DETECTORS, reason="RotAuxMSP not in this build")
def test_dropout_fits_in_threads_equal_sequential_fits():
    """Dropout masks come from each fit's own stream, in the fit's thread: threaded fits with
    dropout give the sequential fits' scores while another thread reseeds the global RNG."""
    X = _DATA["tabular"]

    def scores(seed):
        return tiny("RotAuxMSPDetector", dropout=0.3, random_state=seed).fit(X).score_samples(X)

    sequential = {s: scores(s) for s in (0, 1)}
    stop = threading.Event()

    def meddle():
        while not stop.is_set():
            torch.manual_seed(12345)
            torch.rand(8)

    meddler = threading.Thread(target=meddle)
    meddler.start()
    try:
        threaded = Parallel(n_jobs=4, backend="threading")(delayed(scores)(s) for s in (0, 1, 0, 1))
    finally:
        stop.set()
        meddler.join()
    for s, got in zip((0, 1, 0, 1), threaded, strict=True):
        np.testing.assert_array_equal(got, sequential[s], err_msg=f"random_state={s}")
