"""skood._utils: devices, a fit's seed and random streams, the fit's generators, model input."""

from __future__ import annotations

import importlib
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from torch import nn

from skood._utils import (
    SEED_STREAMS,
    FitGenerators,
    batch_slices,
    check_range_pair,
    fit_generators,
    fit_rng,
    fit_seed,
    resolve_device,
    seed_stream,
    to_model_input,
)


# ----------------------------------------------------------------- devices
def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cpu:0", ""):
        with pytest.raises(ValueError, match="device must be 'auto', 'cpu'"):
            resolve_device(bad)
    with pytest.raises(ValueError, match="must be a string"):
        resolve_device(torch.device("cpu"))
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(ValueError, match="no CUDA GPU is available"):
                resolve_device(name)
    else:
        n = torch.cuda.device_count()
        assert resolve_device(f"cuda:{n - 1}") == f"cuda:{n - 1}"
        for bad in (f"cuda:{n}", "cuda:x"):
            with pytest.raises(ValueError, match=f"has {n} CUDA"):
                resolve_device(bad)
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS backend is not available"):
            resolve_device("mps")


# ------------------------------------------------------------------ seeds
def test_fit_seed_from_random_state():
    high = 2**31 - 1
    assert fit_seed(0) == fit_seed(0) == check_random_state(0).randint(high)
    assert fit_seed(1) != fit_seed(0)
    rs, ref = np.random.RandomState(5), np.random.RandomState(5)
    assert [fit_seed(rs), fit_seed(rs)] == [ref.randint(high), ref.randint(high)]  # advanced
    before = np.random.get_state()  # noqa: NPY002 (numpy's global RNG is the point)
    seeds = {fit_seed(None) for _ in range(5)}
    after = np.random.get_state()  # noqa: NPY002
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    assert len(seeds) > 1 and all(0 <= s < high for s in seeds)  # fresh entropy, in range
    assert all(type(fit_seed(r)) is int for r in (0, np.random.RandomState(0), None))


def test_seed_stream_shared_and_own_streams():
    # values fix every fit's scores
    assert SEED_STREAMS == {"net": 0, "net_cpu": 1, "bank": 4, "dropout": 6, "calibration": 10,
                            "train_scores": 14}
    assert seed_stream(10, "net") == 10 and seed_stream(10, "bank") == 14
    own = {"pool": 2}
    assert seed_stream(10, "pool", own) == 12
    assert seed_stream(10, "bank", own) == 14  # a detector's fit uses the shared ones too
    with pytest.raises(KeyError, match="unknown seed stream 'pool'.*'bank'"):
        seed_stream(10, "pool")
    with pytest.raises(KeyError, match="known streams: .*'other'"):
        seed_stream(10, "missing", {"other": 9})


#: each detector module's own streams; their offsets fix the scores, so they never change
OWN_STREAMS = {
    "semsad": {"pool": 2, "discriminator": 3, "partners": 8},
    "dum": {"variance_net": 1},
    "distillneg": {"affine": 5, "kernel": 9},
    "rotaux_msp": {"affine": 7, "centres": 11},
}


@pytest.mark.parametrize("detector", sorted(OWN_STREAMS))
def test_each_detector_declares_its_own_streams(detector):
    own = importlib.import_module(f"skood._detectors.{detector}")._SEED_STREAMS
    assert own == OWN_STREAMS[detector]
    assert not set(own) & set(SEED_STREAMS), "an own stream shadows a shared one"
    assert len(set(own.values())) == len(own), "two own streams share an offset"
    # the one documented overlap: DUM's variance network reuses the offset of "net_cpu"
    shared = set(SEED_STREAMS.values()) - ({1} if detector == "dum" else set())
    assert not set(own.values()) & shared


def test_refinement_declares_its_own_streams():
    # RefinedDetector's split into parts and its part models' seeds; they fix which rows it keeps
    own = importlib.import_module("skood._refine")._SEED_STREAMS
    assert own == {"split": 12, "parts": 13}
    assert not set(own) & set(SEED_STREAMS) and not set(own.values()) & set(SEED_STREAMS.values())


# ------------------------------------------------------- the fit's generators
def _global_numbers(seed: int, n: int = 5) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.randn(n)


def test_fit_generators_stand_in_for_the_global_rng():
    before = torch.get_rng_state()
    gens = FitGenerators(3)
    with gens:
        a = torch.randn(5)  # no generator named: the fit's
        explicit = torch.randn(5, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a, _global_numbers(3))  # the global RNG's numbers for seed 3 ...
    assert torch.equal(torch.get_rng_state(), before)  # ... without reading or advancing it
    assert torch.equal(explicit, torch.randn(5, generator=torch.Generator().manual_seed(11)))
    with gens:  # a second block continues the same stream
        b = torch.randn(5)
    assert torch.equal(torch.cat([a, b]), _global_numbers(3, 10))
    cpu = torch.device("cpu")
    assert gens.generator(cpu) is gens.generator(cpu) and list(gens.generators) == [cpu]


def test_module_initialisation_under_fit_generators_matches_manual_seed():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        want = nn.Linear(4, 3)
    before = torch.get_rng_state()
    with FitGenerators(7):
        got = nn.Linear(4, 3)
    assert torch.equal(got.weight, want.weight) and torch.equal(got.bias, want.bias)
    assert torch.equal(torch.get_rng_state(), before)


def test_fit_rng_uses_the_running_fit_of_this_thread_only():
    with fit_generators(1) as gens:
        assert isinstance(gens, FitGenerators) and gens.seed == 1
        with fit_rng():
            a = torch.randn(3)
        with fit_generators(2):  # nested: its own stream, then the outer one again
            with fit_rng():
                inner = torch.randn(3)
        with fit_rng():
            b = torch.randn(3)
        other = {}

        def worker():  # another thread has no running fit: fit_rng changes nothing there
            torch.manual_seed(5)
            with fit_rng():
                other["x"] = torch.randn(3)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert torch.equal(torch.cat([a, b]), _global_numbers(1, 6))
    assert torch.equal(inner, _global_numbers(2, 3))
    assert torch.equal(other["x"], _global_numbers(5, 3))
    # outside a fit, fit_rng draws from (and advances) torch's global RNG as usual
    torch.manual_seed(9)
    with fit_rng():
        c = torch.randn(3)
    assert torch.equal(c, _global_numbers(9, 3))


_DROPOUT_CASES = [  # (layer, input shape, mask shape)
    (nn.Dropout(0.3), (6, 4, 3), (6, 4, 3)),
    (nn.AlphaDropout(0.3), (6, 4, 3), (6, 4, 3)),
    (nn.Dropout1d(0.3), (6, 4, 3), (6, 4, 1)),
    (nn.Dropout1d(0.3), (4, 3), (4, 1)),  # no batch axis
    (nn.Dropout2d(0.3), (6, 4, 3, 3), (6, 4, 1, 1)),
    (nn.Dropout3d(0.3), (6, 4, 2, 3, 3), (6, 4, 1, 1, 1)),
    (nn.Dropout3d(0.3), (4, 2, 3, 3), (4, 1, 1, 1)),  # no batch axis
    (nn.FeatureAlphaDropout(0.3), (6, 4, 3, 3), (6, 4, 1, 1)),
]


@pytest.mark.parametrize("layer, shape, mask", _DROPOUT_CASES,
                         ids=[f"{type(c[0]).__name__}-{len(c[1])}d" for c in _DROPOUT_CASES])
def test_dropout_under_fit_generators_is_torchs_dropout_seeded(layer, shape, mask):
    """Each dropout layer draws its mask from the fit's generator: the numbers of torch's
    own dropout after ``torch.manual_seed`` (CPU), the global RNG untouched."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        want = layer(x)
    before = torch.get_rng_state()
    with FitGenerators(3) as gens:
        got = layer(x)
        again = layer(x)  # the stream goes on
        inplace = F.dropout(x.clone(), 0.3, True, inplace=True)
    assert torch.equal(got, want) and not torch.equal(again, got)
    assert torch.equal(torch.get_rng_state(), before)
    assert list(gens.generators) == [torch.device("cpu")]
    # one draw per element of the mask: what is dropped is dropped along the other axes
    axes = tuple(d for d in range(len(shape)) if mask[d] == 1 and shape[d] > 1)
    if axes and not isinstance(layer, nn.FeatureAlphaDropout):  # alpha: dropped = constant
        dropped = got == 0
        assert torch.equal(dropped.all(dim=axes), dropped.any(dim=axes))
    assert inplace.shape == x.shape
    layer.eval()
    with FitGenerators(3):
        assert layer(x) is x or torch.equal(layer(x), x)  # eval: no dropout, no draw
    assert torch.equal(torch.get_rng_state(), before)


def test_dropout_edge_rates_under_fit_generators():
    x = torch.randn(5, 4)
    before = torch.get_rng_state()
    with FitGenerators(0) as gens:
        assert torch.equal(F.dropout(x, 0.0, True), x)  # p = 0: torch's, no draw
        assert not gens.generators
        assert torch.equal(F.dropout(x, 1.0, True), torch.zeros_like(x))
        assert torch.equal(F.alpha_dropout(x, 1.0, True), torch.zeros_like(x))
        y = x.clone()
        assert F.dropout(y, 0.5, True, inplace=True) is y
        with pytest.raises(ValueError, match="probability"):
            F.dropout(x, 1.5, True)
    assert torch.equal(torch.get_rng_state(), before)


# ------------------------------------------------------------ model input
def test_to_model_input():
    u8 = torch.tensor([[0, 128, 255]], dtype=torch.uint8)
    x = to_model_input(u8, "cpu")
    assert x.dtype == torch.float32 and torch.equal(x, u8.float() / 255.0)
    f64 = torch.tensor([[0.25, -1.5]], dtype=torch.float64)
    assert to_model_input(f64, "cpu").dtype == torch.float32
    assert torch.equal(to_model_input(f64, "cpu"), f64.float())
    f32 = torch.ones(2, 3)
    assert to_model_input(f32, torch.device("cpu")) is f32  # nothing to convert: no copy


def test_batch_slices():
    def bounds(*args):
        return [(s.start, s.stop) for s in batch_slices(*args)]

    assert bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert bounds(9, 4, 2) == [(0, 4), (4, 9)]  # a last batch of 1 joins the one before
    assert bounds(10, 4, 2) == [(0, 4), (4, 8), (8, 10)]
    assert bounds(8, 4, 2) == [(0, 4), (4, 8)]
    assert bounds(1, 4, 2) == [(0, 1)]  # the only batch stays, however short
    assert bounds(0, 4) == []


def test_check_range_pair():
    assert check_range_pair("scale", (0.2, 1)) == (0.2, 1.0)
    assert check_range_pair("scale", [np.float32(0.5), 0.5]) == (0.5, 0.5)
    assert check_range_pair("scale", (0.2, 1.0), high_max=1.0) == (0.2, 1.0)
    for bad in [(0.5, 0.2), (0.0, 1.0), (0.1,), (0.1, 0.2, 0.3), 0.5, "ab", (True, 1),
                (0.1, float("nan")), (0.1, np.inf)]:
        with pytest.raises(ValueError, match=r"scale must be two finite numbers.*got"):
            check_range_pair("scale", bad)
    with pytest.raises(ValueError, match=r"<= 1"):
        check_range_pair("scale", (0.2, 1.5), high_max=1.0)
