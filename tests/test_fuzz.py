"""Property-based fuzzing of the input contract: a clear error, or finite scores.

Hypothesis draws arrays of many shapes, dtypes and extreme values (zeros,
subnormals, 1e30-1e300, the float32 limit, NaN, infinities) and feeds them to
every detector, at fit and at score time. Whatever the input, a detector must
either raise a ``ValueError`` (``TypeError`` for a wrong container type, as
scikit-learn does) whose message says what was wrong, or return float64
scores of the right shape that are all finite; and it must never change the
caller's array. The examples are derandomised so that CI runs the same ones
every time.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skood
from skood._nn.feature_cache import FeatureCache
from skood._testing import DETECTORS, tiny
from skood.persistence import SkoodVersionWarning

#: values that break naive arithmetic, beside ordinary ones
EXTREMES = [0.0, -0.0, 5e-324, 1e-300, -1e-30, 1.0, -1.0, 3.0, 1e30, -1e30, 1e38, 3e38,
            -3.4e38, 1e300, -1e300, 1.7e308, np.nan, np.inf, -np.inf]
FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _values(dtype: np.dtype) -> st.SearchStrategy:
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.sampled_from([0, 1, 255, 256, -1, int(info.max), int(info.min)]).filter(
            lambda v: info.min <= v <= info.max)
    limit = float(np.finfo(dtype).max)
    ordinary = st.floats(-3.0, 3.0, width=32)
    extreme = st.sampled_from([v for v in EXTREMES if not abs(v) > limit])
    return st.one_of(ordinary, ordinary, extreme)


def arrays(shapes: st.SearchStrategy) -> st.SearchStrategy:
    dtypes = st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_])
    return dtypes.flatmap(lambda dt: shapes.flatmap(
        lambda shape: hnp.arrays(np.dtype(dt), shape, elements=_values(np.dtype(dt)))))


def _check_clear_error_or_finite(run, X: np.ndarray) -> None:
    """``run(X)`` raises a clear ValueError/TypeError or returns finite float64 scores."""
    before = X.copy()
    try:
        scores = run(X)
    except (ValueError, TypeError) as e:
        assert str(e).strip(), "an error without a message"
    else:
        assert scores.dtype == np.float64 and scores.shape == (len(X),)
        assert np.isfinite(scores).all(), scores
    np.testing.assert_array_equal(X, before)  # the caller's data is never altered


tabular_shapes = st.tuples(st.integers(1, 12), st.sampled_from([8, 8, 8, 3]))
image_shapes = st.one_of(
    st.tuples(st.integers(1, 6), st.just(8), st.just(8)),
    st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(1, 9)),
    st.tuples(st.integers(1, 4), st.just(8), st.just(8), st.sampled_from([1, 3])),
)


@pytest.mark.parametrize("name", DETECTORS)
@FUZZ
@given(X=arrays(tabular_shapes))
def test_scoring_tabular_input_gives_clear_error_or_finite_scores(name, fitted_tiny, X):
    _check_clear_error_or_finite(fitted_tiny(name, "tabular").score_samples, X)


@pytest.mark.parametrize("name", DETECTORS)
@FUZZ
@given(X=arrays(image_shapes))
def test_scoring_image_input_gives_clear_error_or_finite_scores(name, fitted_tiny, X):
    _check_clear_error_or_finite(fitted_tiny(name, "images").score_samples, X)


def _fit_then_score(name: str, **params):
    def run(X: np.ndarray) -> np.ndarray:
        det = tiny(name, **params).fit(X)
        assert np.isfinite(det.train_scores_).all() and np.isfinite(det.offset_)
        return det.score_samples(X)
    return run


@pytest.mark.parametrize("name", DETECTORS)
@settings(FUZZ, max_examples=6)
@given(X=arrays(st.tuples(st.integers(1, 40), st.integers(1, 5))))
def test_fitting_tabular_input_gives_clear_error_or_finite_scores(name, X):
    _check_clear_error_or_finite(_fit_then_score(name, batch_size=16), X)


@pytest.mark.parametrize("name", DETECTORS)
@settings(FUZZ, max_examples=4)
@given(X=arrays(st.tuples(st.integers(1, 24), st.integers(1, 9), st.integers(1, 9))))
def test_fitting_image_input_gives_clear_error_or_finite_scores(name, X):
    _check_clear_error_or_finite(_fit_then_score(name, batch_size=16), X)


# ----------------------------------------------- feature cache entries of any content
def _doubled(x: torch.Tensor) -> torch.Tensor:
    """Features that do not depend on the batch: exact whatever the batch size."""
    return x.flatten(1)[:, :8] * 2


def _check_cache_entry(damage) -> None:
    """Whatever ``damage(good_bytes)`` leaves in an entry, the cache returns the right
    features, rewrites the entry as it was and warns (naming it) unless nothing changed."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4) / 16
    want = _doubled(x)
    with tempfile.TemporaryDirectory() as root:
        cache = FeatureCache(root)
        cache.features("enc", x, _doubled, width=8)
        (path,) = Path(root).glob("*/*/*.npy")
        good = path.read_bytes()
        content = damage(good)
        path.write_bytes(content)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = cache.features("enc", x, _doubled, width=8)
        assert torch.equal(got, want)
        assert path.read_bytes() == good
        assert len(caught) == (content != good)
        assert all(str(path) in str(w.message) for w in caught)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@settings(FUZZ, max_examples=40)
@given(content=st.one_of(st.binary(max_size=400), arrays(st.one_of(
    st.tuples(st.integers(0, 16)), tabular_shapes)).map(_npy_bytes)))
def test_a_cache_entry_of_any_bytes_or_any_array_gives_the_right_features(content):
    _check_cache_entry(lambda good: content)


@settings(FUZZ, max_examples=40)
@given(edits=st.lists(st.tuples(st.integers(0, 10**4), st.integers(1, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 10**4)), tail=st.binary(max_size=3))
def test_a_cache_entry_damaged_anywhere_gives_the_right_features(edits, cut, tail):
    def damage(good: bytes) -> bytes:
        data = bytearray(good)
        for pos, mask in edits:
            data[pos % len(data)] ^= mask
        return bytes(data[:None if cut is None else cut % len(data)]) + tail
    _check_cache_entry(damage)


@pytest.mark.parametrize("name", DETECTORS)
@settings(FUZZ, max_examples=6)
@given(unit=st.sampled_from([1e-13, 2.0**-43, 1e-200, 1e-310]),
       offset=st.sampled_from([0.0, 1e6, -3.0]), n_constant=st.integers(0, 2))
def test_units_and_constant_columns_do_not_change_the_scores(name, unit, offset, n_constant):
    """Rows in any units (down to subnormal numbers), at an offset, with constant columns:
    the scores of the same rows in units of 1, no ConvergenceWarning, and one warning that
    names exactly the constant columns."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    rows = np.random.RandomState(0).normal(size=(30, 3))
    X = np.c_[rows + offset, np.full((30, n_constant), 5.0)]
    fits = []
    for u in (1.0, unit):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            det = tiny(name, batch_size=16).fit(X * u)
        assert not [w for w in rec if issubclass(w.category, ConvergenceWarning)]
        named = [str(w.message) for w in rec if "constant column" in str(w.message)]
        assert len(named) == (n_constant > 0), named
        if n_constant:
            assert f"column(s) {list(range(3, 3 + n_constant))}" in named[0], named
        fits.append(det.score_samples(X * u))
    assert np.ptp(fits[1]) > 0
    np.testing.assert_allclose(fits[1], fits[0], rtol=1e-4, atol=1e-4 * np.ptp(fits[0]))


# ------------------------------------------------------------- saved files
# A saved detector damaged on the disk, or crafted by hand, is refused at load with a
# ValueError (OSError for I/O) naming the file, or loads and scores like the saved one.


@pytest.fixture(scope="session")
def saved_files(fitted_tiny, tmp_path_factory):
    """``get(name)``: (path, bytes, payload) of ``tiny(name)`` fitted on the blobs and saved."""
    folder, cache = tmp_path_factory.mktemp("fuzz_saved"), {}

    def get(name: str):
        if name not in cache:
            path = folder / f"{name}.skood"
            fitted_tiny(name).save(path)
            cache[name] = (path, path.read_bytes(), torch.load(path, weights_only=True))
        return cache[name]

    return get


def _load_refused_or_same(path, det, X) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkoodVersionWarning)
            det2 = skood.load(path)
    except (ValueError, OSError) as e:
        assert str(path) in str(e), e
        return
    np.testing.assert_array_equal(det2.score_samples(X), det.score_samples(X))


@pytest.mark.parametrize("name", DETECTORS)
@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_damaged_saved_file_is_refused_or_loads_unchanged(name, fitted_tiny, saved_files,
                                                        blobs, data):
    """One to three bytes of a saved file xor-ed anywhere (or the file cut short)."""
    path, raw, _ = saved_files(name)
    damaged = bytearray(raw)
    if data.draw(st.booleans(), label="truncate") and data.draw(st.booleans()):
        damaged = damaged[:data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 3), label="n_bytes")):
            pos = data.draw(st.integers(0, len(raw) - 1), label="position")
            damaged[pos] ^= data.draw(st.integers(1, 255), label="xor")
    bad = path.with_name(f"damaged-{name}.skood")
    bad.write_bytes(bytes(damaged))
    _load_refused_or_same(bad, fitted_tiny(name), blobs[1])


def _crafted(path, payload, section, key, value):
    """``payload`` with ``payload[section][key] = value`` and its checksum recomputed."""
    from skood import persistence

    changed = {**payload, section: {**payload[section], key: persistence._encode(value, key)}}
    changed["checksum"] = persistence._payload_checksum(changed)
    out = path.with_name(f"crafted-{path.name}")
    torch.save(changed, out)
    return out


#: values a crafted file may hold instead of a parameter or fitted attribute
_CRAFTED_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.sampled_from(EXTREMES),
    st.sampled_from(["", "auto", "cpu", "cuda", "meta", "tabular", "image", "x" * 40]),
    st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
    st.lists(st.integers(-1, 9), max_size=3),
    arrays(st.tuples(st.integers(0, 9)) | st.tuples(st.integers(1, 4), st.integers(1, 9))),
)


def _refused_or_finite(path, X) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = skood.load(path)
    except ValueError as e:
        assert str(path) in str(e) and not isinstance(e, TypeError), e
        return
    det._validate_params()  # its parameters are within the class's constraints
    _check_clear_error_or_finite(det.score_samples, X)


@pytest.mark.parametrize("name", DETECTORS)
@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_crafted_parameter_is_refused_or_loads_sane(name, saved_files, blobs, data):
    """A parameter replaced by an arbitrary plain value (checksum recomputed)."""
    path, _, payload = saved_files(name)
    key = data.draw(st.sampled_from(sorted(payload["params"])), label="parameter")
    crafted = _crafted(path, payload, "params", key, data.draw(_CRAFTED_VALUES, label="value"))
    _refused_or_finite(crafted, blobs[1])


#: the fitted attributes every detector has, whose kind and shape load checks in full
_BASE_ATTRIBUTES = ["n_features_in_", "input_kind_", "image_shape_", "feature_mean_",
                    "feature_scale_", "device_", "feature_mode_", "train_scores_", "offset_"]


@pytest.mark.parametrize("name", DETECTORS)
@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_crafted_fitted_attribute_is_refused_or_loads_sane(name, saved_files, blobs, data):
    """A fitted attribute of the base class replaced by an arbitrary value (checksum
    recomputed): refused naming the file, or a detector that still scores sanely."""
    path, _, payload = saved_files(name)
    key = data.draw(st.sampled_from(_BASE_ATTRIBUTES), label="attribute")
    crafted = _crafted(path, payload, "fitted", key, data.draw(_CRAFTED_VALUES, label="value"))
    _refused_or_finite(crafted, blobs[1])
