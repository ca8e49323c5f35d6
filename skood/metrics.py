"""Evaluation metrics for anomaly / out-of-distribution detection.

Sign convention
---------------
skood detectors follow scikit-learn: ``score_samples`` and
``decision_function`` are **higher for more normal** samples. Every metric in
this module therefore takes ``scores`` in that sign and internally uses the
anomaly score ``-scores``. Labels ``y_outlier`` are 1 (or ``True``) for an
anomaly and 0 (or ``False``) for a normal sample; the anomaly is the positive
class of every metric.

The scorers (:func:`make_outlier_scorer`, :data:`auroc_scorer`,
:data:`ap_scorer`, :data:`fpr95_scorer`) instead take labels in the
scikit-learn outlier convention (``+1`` inlier, ``-1`` or ``0`` outlier) so
they can be passed directly as ``GridSearchCV(..., scoring=auroc_scorer)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "auroc",
    "average_precision",
    "fpr_at_95_tpr",
    "precision_at_n",
    "evaluate",
    "make_outlier_scorer",
    "auroc_scorer",
    "ap_scorer",
    "fpr95_scorer",
]


_PARAMETERS = """\
Parameters
----------
y_outlier : array-like of shape (n_samples,)
    1/True for anomalies, 0/False for normal samples.
scores : array-like of shape (n_samples,)
    Scores, higher = more normal (scikit-learn sign, e.g. ``score_samples``)."""


def _shared_parameters(func: Callable) -> Callable:
    """Expand the ``{parameters}`` line of ``func``'s docstring to :data:`_PARAMETERS`."""
    if func.__doc__:
        lines = []
        for line in func.__doc__.splitlines():
            if line.strip() == "{parameters}":
                indent = line[: len(line) - len(line.lstrip())]
                lines += [indent + row if row else row for row in _PARAMETERS.splitlines()]
            else:
                lines.append(line)
        func.__doc__ = "\n".join(lines)
    return func


@_shared_parameters
def _check_inputs(y_outlier: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and scores; return ``(y, anomaly_score)``.

    {parameters}

    Returns
    -------
    y : ndarray of shape (n_samples,), dtype int64
        0/1 labels with 1 = anomaly.
    anomaly_score : ndarray of shape (n_samples,), dtype float64
        ``-scores`` (higher = more anomalous).

    Raises
    ------
    ValueError
        If the inputs are not 1-D, differ in length, are empty, contain
        non-finite scores or labels other than 0/1, or hold a single class.
    """
    y = np.asarray(y_outlier)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1:
        y = y.ravel() if y.ndim == 2 and 1 in y.shape else y
    if s.ndim != 1:
        s = s.ravel() if s.ndim == 2 and 1 in s.shape else s
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(
            f"y_outlier and scores must be 1-D; got shapes {np.shape(y_outlier)} and "
            f"{np.shape(scores)}."
        )
    if y.shape[0] != s.shape[0]:
        raise ValueError(
            f"y_outlier and scores have different lengths: {y.shape[0]} != {s.shape[0]}."
        )
    if y.shape[0] == 0:
        raise ValueError("y_outlier and scores are empty.")
    if not np.all(np.isfinite(s)):
        n_bad = int(np.sum(~np.isfinite(s)))
        raise ValueError(f"scores contain {n_bad} non-finite value(s) (NaN or inf).")
    if y.dtype == bool:
        y = y.astype(np.int64)
    values = np.unique(y)
    if not np.all(np.isin(values, [0, 1])):
        raise ValueError(
            f"y_outlier must contain only 0/1 (1 = anomaly); got values {values.tolist()}."
        )
    y = y.astype(np.int64)
    if values.shape[0] < 2:
        raise ValueError(
            "y_outlier contains a single class "
            f"({'anomalies' if values[0] == 1 else 'normals'} only); the metric needs "
            "both normal (0) and anomalous (1) samples."
        )
    return y, -s


@_shared_parameters
def auroc(y_outlier: Any, scores: Any) -> float:
    """Area under the ROC curve with anomalies as the positive class.

    {parameters}

    Returns
    -------
    float
        AUROC in [0, 1]; 1 when every anomaly scores below every normal sample,
        0.5 for random scores, ties counted as one half.
    """
    y, a = _check_inputs(y_outlier, scores)
    return float(roc_auc_score(y, a))


@_shared_parameters
def average_precision(y_outlier: Any, scores: Any) -> float:
    """Average precision with anomalies as the positive class.

    {parameters}

    Returns
    -------
    float
        Average precision (scikit-learn's step-wise definition,
        :func:`sklearn.metrics.average_precision_score`) of ranking anomalies
        first; its chance level is the anomaly fraction.
    """
    y, a = _check_inputs(y_outlier, scores)
    return float(average_precision_score(y, a))


@_shared_parameters
def fpr_at_95_tpr(y_outlier: Any, scores: Any) -> float:
    """False-positive rate on normal samples at 95% true-positive rate.

    Samples are flagged as anomalies when their anomaly score ``-scores`` is
    at least a threshold ``t``. ``t`` is the largest threshold that flags at
    least 95% of the anomalies: with ``k = ceil(0.95 * n_anomalies)`` and the
    anomalies' anomaly scores sorted in decreasing order, ``t`` is the k-th
    of them. The result is the fraction of normal samples whose anomaly score
    is ``>= t`` (normal samples tied with ``t`` count as false positives).
    This is the first point of the ROC curve with TPR >= 0.95, without
    interpolation.

    {parameters}

    Returns
    -------
    float
        FPR in [0, 1]; lower is better (0 for perfect separation).
    """
    y, a = _check_inputs(y_outlier, scores)
    pos = np.sort(a[y == 1])[::-1]
    neg = a[y == 0]
    k = max(1, math.ceil(0.95 * pos.shape[0] - 1e-9))
    threshold = pos[k - 1]
    return float(np.mean(neg >= threshold))


@_shared_parameters
def precision_at_n(y_outlier: Any, scores: Any, n: int | None = None) -> float:
    """Precision among the ``n`` samples ranked most anomalous (precision@n).

    As in PyOD/ADBench, ``n`` defaults to the number of anomalies, in which
    case precision@n equals recall@n (R-precision). The samples flagged are
    those whose anomaly score ``-scores`` is at least the n-th largest anomaly
    score; samples tied with it are all included, so with ties more than
    ``n`` samples may be flagged.

    {parameters}
    n : int, default=None
        Number of top-ranked samples, ``1 <= n <= n_samples``. None means the
        number of anomalies in ``y_outlier``.

    Returns
    -------
    float
        Fraction of anomalies among the flagged samples, in [0, 1].
    """
    y, a = _check_inputs(y_outlier, scores)
    if n is None:
        n = int(y.sum())
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"n must be an integer or None; got {n!r}.")
    if not 1 <= n <= y.shape[0]:
        raise ValueError(f"n must be in [1, {y.shape[0]}]; got {n}.")
    threshold = np.sort(a)[::-1][n - 1]
    flagged = a >= threshold
    return float(np.mean(y[flagged]))


@_shared_parameters
def evaluate(y_outlier: Any, scores: Any) -> dict[str, float]:
    """Compute all metrics of this module at once.

    {parameters}

    Returns
    -------
    dict of str to float
        Keys ``"auroc"``, ``"ap"``, ``"fpr95"`` and ``"precision_at_n"``
        (``n`` = number of anomalies).
    """
    _check_inputs(y_outlier, scores)
    return {
        "auroc": auroc(y_outlier, scores),
        "ap": average_precision(y_outlier, scores),
        "fpr95": fpr_at_95_tpr(y_outlier, scores),
        "precision_at_n": precision_at_n(y_outlier, scores),
    }


_METRICS: dict[str, tuple[Callable[..., float], bool]] = {
    "auroc": (auroc, True),
    "roc_auc": (auroc, True),
    "ap": (average_precision, True),
    "average_precision": (average_precision, True),
    "fpr95": (fpr_at_95_tpr, False),
    "fpr_at_95_tpr": (fpr_at_95_tpr, False),
    "precision_at_n": (precision_at_n, True),
}


def _sklearn_labels_to_outlier(y: Any) -> np.ndarray:
    """Map scikit-learn outlier labels (+1 inlier; -1 or 0 outlier) to 0/1 (1 = anomaly)."""
    if y is None:
        raise ValueError(
            "An outlier scorer needs labels: pass y with +1 for inliers and -1 (or 0) for "
            "outliers to fit/GridSearchCV."
        )
    y = np.asarray(y).ravel()
    if y.dtype == bool:
        raise ValueError(
            "Boolean labels are ambiguous for outlier scorers; use +1 for inliers and -1 "
            "(or 0) for outliers."
        )
    values = np.unique(y)
    if not np.all(np.isin(values, [-1, 0, 1])):
        raise ValueError(
            "Outlier scorers expect labels in the scikit-learn outlier convention (+1 inlier, "
            f"-1 or 0 outlier); got values {values.tolist()}."
        )
    return (y != 1).astype(np.int64)


class _OutlierScorer:
    """Callable ``scorer(estimator, X, y) -> float`` built by :func:`make_outlier_scorer`."""

    def __init__(self, metric: Callable[..., float], sign: int, name: str) -> None:
        self._metric = metric
        self._sign = sign
        self._name = name

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        y_outlier = _sklearn_labels_to_outlier(y)
        if hasattr(estimator, "decision_function"):
            scores = estimator.decision_function(X)
        elif hasattr(estimator, "score_samples"):
            scores = estimator.score_samples(X)
        else:
            raise TypeError(
                f"{type(estimator).__name__} has neither decision_function nor score_samples."
            )
        return float(self._sign * self._metric(y_outlier, np.asarray(scores)))

    def __repr__(self) -> str:
        sign = "" if self._sign > 0 else ", greater_is_better=False"
        return f"make_outlier_scorer({self._name}{sign})"


def make_outlier_scorer(
    metric: str | Callable[..., float], greater_is_better: bool | None = None
) -> Callable[[Any, Any, Any], float]:
    """Build a scorer for model selection of outlier detectors.

    The scorer has the signature ``scorer(estimator, X, y) -> float`` accepted
    by ``GridSearchCV(scoring=...)`` and ``cross_val_score``. It scores ``X``
    with ``estimator.decision_function`` (or ``score_samples`` if there is no
    ``decision_function``), higher = more normal, and converts ``y`` from the
    scikit-learn outlier convention (``+1`` inlier, ``-1`` or ``0`` outlier)
    to 0/1 with 1 = anomaly before calling the metric.

    Parameters
    ----------
    metric : {"auroc", "ap", "fpr95", "precision_at_n"} or callable
        A metric name of this module (aliases ``"roc_auc"``,
        ``"average_precision"``, ``"fpr_at_95_tpr"`` are accepted) or a
        callable ``metric(y_outlier, scores) -> float`` with the conventions
        of this module.
    greater_is_better : bool, default=None
        Whether a larger metric is better. When False the scorer returns the
        negated metric, so that the scorer is always maximised. None means
        True for every metric except ``"fpr95"``, and True for callables.

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float``.
    """
    if isinstance(metric, str):
        key = metric.lower()
        if key not in _METRICS:
            raise ValueError(
                f"Unknown metric {metric!r}; choose one of {sorted(_METRICS)} or pass a callable."
            )
        func, default_gib = _METRICS[key]
        name = repr(key)
    elif callable(metric):
        func, default_gib = metric, True
        name = getattr(metric, "__name__", repr(metric))
    else:
        raise TypeError(f"metric must be a string or a callable; got {type(metric).__name__}.")
    gib = default_gib if greater_is_better is None else bool(greater_is_better)
    return _OutlierScorer(func, 1 if gib else -1, name)


#: GridSearchCV scorer: AUROC (outliers positive) from ``decision_function``.
auroc_scorer = make_outlier_scorer("auroc")
#: GridSearchCV scorer: average precision with outliers as the positive class.
ap_scorer = make_outlier_scorer("ap")
#: GridSearchCV scorer: *negated* FPR at 95% TPR (greater is better).
fpr95_scorer = make_outlier_scorer("fpr95")
