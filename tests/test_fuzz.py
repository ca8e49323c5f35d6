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

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skood._testing import DETECTORS, tiny

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
