r"""Conformal p-values and the Benjamini-Hochberg procedure (the detectors' ``pvalues``).

A detector's normality score :math:`s` (higher = more normal) turns into a
conformal p-value by its rank among the scores :math:`c_1, \dots, c_n` of
normal calibration samples (Laxhammar & Falkman 2015; Bates, Candes, Lei,
Romano & Sesia, "Testing for outliers with conformal p-values", Annals of
Statistics 2023, https://arxiv.org/abs/2104.08279):

.. math::  p(x) = \frac{1 + \#\{i : c_i \le s(x)\}}{n + 1}.

When the calibration samples and a normal test sample are exchangeable
(scored by a function that did not see either), :math:`P(p(x) \le \alpha)
\le \alpha` for every :math:`\alpha`. Rejecting the rows whose p-values
pass the Benjamini-Hochberg step controls the false-discovery rate of a
batch (conformal p-values sharing one calibration set are positively
dependent, PRDS, which is what the procedure needs, as Bates et al. prove).

Also PyOD's probability and confidence of an outlier score (the detectors'
``predict_proba`` and ``predict_confidence``), which are rank and scale
transforms of the same training scores.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from scipy.special import erf
from scipy.stats import binom

__all__ = ["conformal_pvalues", "benjamini_hochberg", "calibration_split", "check_level",
           "outlier_probability", "prediction_confidence"]


def conformal_pvalues(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    r"""Conformal p-values of ``scores`` against the sorted ``calibration`` scores.

    :math:`p_j = (1 + \#\{i : c_i \le s_j\}) / (n + 1)`: small for scores below
    (less normal than) most calibration scores; ties count against the test
    row, which keeps the p-value valid. ``O((n + m) \log n)`` by binary search.

    Parameters
    ----------
    calibration : ndarray of shape (n,)
        Calibration scores (higher = more normal), in any order: they are sorted here
        (a no-op cost for the detectors' already sorted ``calibration_scores_``).
    scores : ndarray of shape (m,)
        Scores of the rows to test, same sign.

    Returns
    -------
    pvalues : ndarray of shape (m,), float64, in ``[1 / (n + 1), 1]``
    """
    cal = np.sort(np.asarray(calibration, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64)
    counts = np.searchsorted(cal, s, side="right")
    return (1.0 + counts) / (len(cal) + 1.0)


def benjamini_hochberg(pvalues: np.ndarray, q: float) -> np.ndarray:
    r"""Rows rejected by the Benjamini-Hochberg step-up procedure at level ``q``.

    With the p-values sorted, :math:`p_{(1)} \le \dots \le p_{(m)}`, let
    :math:`k` be the largest index with :math:`p_{(k)} \le k q / m`; the
    rows of the :math:`k` smallest p-values are rejected (none when there is
    no such :math:`k`). Rows tied with :math:`p_{(k)}` are all rejected.

    Parameters
    ----------
    pvalues : ndarray of shape (m,)
    q : float in (0, 1)
        Target false-discovery rate.

    Returns
    -------
    rejected : ndarray of shape (m,), bool
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return np.zeros(0, dtype=bool)
    ordered = np.sort(p)
    passed = np.flatnonzero(ordered <= q * np.arange(1, m + 1) / m)
    if len(passed) == 0:
        return np.zeros(m, dtype=bool)
    return p <= ordered[passed[-1]]


def calibration_split(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the ``round(fraction * n)`` rows (at least one) held out for
    calibration, a uniform random subset drawn from a generator seeded with ``seed``."""
    n_cal = max(1, round(fraction * n))
    rng = np.random.default_rng(int(seed))
    return np.sort(rng.choice(n, size=n_cal, replace=False)).astype(np.intp)


def check_level(value: object, name: str) -> float:
    """``value`` as a float if it is a real number in (0, 1), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a float in (0, 1); got {value!r}")
    return float(value)


# ------------------------------------------------ PyOD's probability and confidence
def outlier_probability(train: np.ndarray, test: np.ndarray, method: str) -> np.ndarray:
    r"""PyOD's ``predict_proba`` from outlier scores (higher = more abnormal).

    ``"linear"``: the test scores min-max scaled by the training scores' range
    (a range below 10 float64 epsilons counts as 1, as in scikit-learn's
    ``MinMaxScaler``) and clipped to [0, 1]. ``"unify"``: :math:`\mathrm{erf}((t -
    \mu) / (\sigma\sqrt 2))` clipped to [0, 1], with the training scores' mean
    and standard deviation (Kriegel et al. 2011); with :math:`\sigma = 0`, 1 above
    :math:`\mu` and 0 elsewhere.

    Returns
    -------
    proba : ndarray of shape (m, 2)
        ``[:, 0]`` = 1 - P(outlier), ``[:, 1]`` = P(outlier) (PyOD's column order).
    """
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if method == "linear":
        lo = train.min()
        span = train.max() - lo
        scale = 1.0 / (1.0 if span < 10 * np.finfo(np.float64).eps else span)
        out = (test * scale + (0.0 - lo * scale)).clip(0, 1)
    elif method == "unify":
        mu, sigma = train.mean(), train.std()
        if sigma > 0:
            out = erf((test - mu) / (sigma * np.sqrt(2))).clip(0, 1)
        else:
            out = (test > mu).astype(np.float64)
    else:
        raise ValueError(f"method must be 'linear' or 'unify'; got {method!r}")
    return np.column_stack([1.0 - out, out])


def prediction_confidence(train: np.ndarray, test: np.ndarray, contamination: float,
                          flagged: np.ndarray) -> np.ndarray:
    r"""PyOD's ``predict_confidence`` (Perini, Vercruyssen & Davis 2020, ExCeeD).

    With :math:`n` training outlier scores, :math:`k` of them at most the test
    score :math:`t` and :math:`\hat p = (1 + k) / (2 + n)`, the confidence that
    the row is an outlier is :math:`1 - F(n - \lfloor n\gamma\rfloor; n, \hat
    p)` (:math:`F` the binomial CDF, :math:`\gamma` the contamination): the
    probability that the row stays among the :math:`n\gamma` most abnormal of
    a training set drawn again. For the rows predicted inliers (``flagged``
    False) it is one minus that.

    Returns
    -------
    confidence : ndarray of shape (m,), in [0, 1]
    """
    ranked = np.sort(np.asarray(train, dtype=np.float64))
    n = len(ranked)
    below = np.searchsorted(ranked, np.asarray(test, dtype=np.float64), side="right")
    conf = 1.0 - binom.cdf(n - int(n * contamination), n, (1.0 + below) / (2.0 + n))
    return np.where(flagged, conf, 1.0 - conf)
