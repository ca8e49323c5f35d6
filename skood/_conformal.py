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
transforms of the same training scores, and :class:`ConformalDecisionsMixin`,
which gives a fitted detector all of these methods (``pvalues``,
``predict(alpha=...)``, ``predict(fdr=...)``, PyOD's attributes).
"""

from __future__ import annotations

import sys
import warnings
from numbers import Real
from typing import Any

import numpy as np
from scipy.special import erf
from scipy.stats import binom
from sklearn.utils.validation import check_is_fitted

__all__ = ["ConformalDecisionsMixin", "conformal_pvalues", "benjamini_hochberg",
           "calibration_split", "check_level", "outlier_probability", "prediction_confidence"]


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


class ConformalDecisionsMixin:
    """Decisions from a fitted detector's normality scores: the ``contamination`` rule, the
    conformal p-values with their per-row (``alpha``) and batch (``fdr``) decisions, and
    PyOD's conveniences in PyOD's sign (shared by :class:`~skood.BaseDeepDetector` and
    :class:`~skood.RefinedDetector`).

    A scikit-learn estimator using it (before ``BaseEstimator`` in its bases) has
    ``score_samples`` (higher = more normal) and, after ``fit``,
    ``offset_``, ``train_scores_`` (the training rows' scores, or those of the rows
    ``train_score_rows_`` only) and ``calibration_scores_`` (sorted; without it the sorted
    ``train_scores_``), and defines ``_contamination_level()`` (the fraction behind
    ``offset_``).
    """

    def _contamination_level(self) -> float:
        raise NotImplementedError

    def _all_train_scores(self, name: str) -> np.ndarray:
        """``train_scores_`` when it holds every training row; else an ``AttributeError``
        (raised by PyOD's per-row attributes ``name``) saying what to do."""
        check_is_fitted(self, "offset_")
        rows = self.__dict__.get("train_score_rows_")
        if rows is not None:
            raise AttributeError(
                f"{type(self).__name__}.{name} is not available: fit scored {len(rows)} of its "
                "training rows (max_train_scores="
                f"{getattr(self, 'max_train_scores', None)!r}; the rows are train_score_rows_, "
                "their scores train_scores_). Refit with max_train_scores=None to score every "
                "training row, or score the rows you need with decision_function (PyOD's "
                "sign: -score_samples)."
            )
        return self.train_scores_

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers.

        scikit-learn's sign: higher = more normal, the opposite of PyOD's
        ``decision_function``. Called directly from PyOD's code (``LSCP``,
        ``SUOD``, ...), it warns: wrap the detector in
        :class:`~skood.adapters.PyODAdapter` there.

        Warns
        -----
        UserWarning
            The caller is a module of the ``pyod`` package.
        """
        _warn_if_pyod_caller(type(self).__name__)
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any, *, alpha: float | None = None,
                fdr: float | None = None) -> np.ndarray:
        """+1 for inliers, -1 for outliers.

        Parameters
        ----------
        X : array-like, same kind and shape per sample as in ``fit``
        alpha : float in (0, 1) or None
            Flag each row whose conformal p-value (:meth:`pvalues`) is at most
            ``alpha``: the false-alarm rate per normal row is at most ``alpha``
            (under the conditions stated in :meth:`pvalues`).
        fdr : float in (0, 1) or None
            Flag the rows of ``X`` that the Benjamini-Hochberg procedure at
            level ``fdr`` rejects on their conformal p-values: the expected share
            of normal rows among the flagged ones is at most ``fdr`` (same
            conditions). The decision of a row depends on the other rows of ``X``.

        With neither (the default) the ``contamination`` rule: -1 where
        ``decision_function(X) < 0``. At most one of ``alpha`` and ``fdr``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int: +1 inlier, -1 outlier
        """
        if alpha is not None and fdr is not None:
            raise ValueError("pass at most one of alpha (per-row false-alarm rate) and fdr "
                             "(false-discovery rate of the batch)")
        if alpha is None and fdr is None:
            return np.where(self.decision_function(X) >= 0, 1, -1)
        level = check_level(alpha if fdr is None else fdr, "alpha" if fdr is None else "fdr")
        p = self.pvalues(X)
        flagged = p <= level if fdr is None else benjamini_hochberg(p, level)
        return np.where(flagged, -1, 1)

    def pvalues(self, X: Any) -> np.ndarray:
        r"""Conformal p-value of each row: small means unlikely under normal data.

        .. math::  p(x) = \frac{1 + \#\{i : c_i \le s(x)\}}{n + 1},

        with :math:`s` = :meth:`score_samples` (higher = more normal) and
        :math:`c_1, \dots, c_n` = ``calibration_scores_`` (Laxhammar & Falkman
        2015; Bates et al., "Testing for outliers with conformal p-values",
        Annals of Statistics 2023, https://arxiv.org/abs/2104.08279). Computed by
        binary search in the sorted calibration scores.

        Guarantee. With a float ``calibration`` the calibration rows were held
        out of training and scored out of sample, as a test row is: for a
        normal test row exchangeable with them, :math:`P(p(x) \le \alpha) \le
        \alpha` for every :math:`\alpha` (exactly, for any n), provided the
        training data are normal. Anomalies among the held-out rows lower the
        calibration scores, which makes the p-values of normal rows larger:
        conservative (fewer false alarms, less power); anomalies among the
        fitted rows change the networks but not this argument.

        ``calibration="loo"`` uses the training scores, which is cheaper (no
        row is held out) but guarantees nothing in general. For a scorer that
        matches a row against the other training rows (kNN-type scores with
        the network fixed) the leave-one-out score treats a training row almost
        as a test row, and the p-values are close to valid; but every trained
        network saw the training rows, so their in-sample scores tend to look
        more normal than a test row's: the calibration scores are too high and
        the p-values too small, *anti-conservative* (more false alarms than
        ``alpha``). Contaminated training data pull the other way (their low
        scores make normal test rows look more normal): conservative.

        Parameters
        ----------
        X : array-like, same kind and shape per sample as in ``fit``

        Returns
        -------
        pvalues : ndarray of shape (n_samples,), float64, in ``[1 / (n + 1), 1]``
        """
        scores = self.score_samples(X)
        return conformal_pvalues(self._calibration_scores(), scores)

    @property
    def decision_scores_(self) -> np.ndarray:
        """PyOD's outlier scores of the training rows, higher = more abnormal:
        ``-train_scores_`` (PyOD's sign, the opposite of ``score_samples``)."""
        return -self._all_train_scores("decision_scores_")

    @property
    def threshold_(self) -> float:
        """PyOD's threshold on outlier scores (higher = more abnormal): ``-offset_``; a row
        is an outlier when its outlier score ``-score_samples`` exceeds it."""
        check_is_fitted(self, "offset_")
        return -self.offset_

    @property
    def labels_(self) -> np.ndarray:
        """PyOD's labels of the training rows: 1 outlier, 0 inlier (``predict``'s -1 and +1
        with the ``contamination`` rule; ``fit_predict(X) == 1 - 2 * labels_``)."""
        return (self._all_train_scores("labels_") - self.offset_ < 0).astype(np.int64)

    def predict_proba(self, X: Any, method: str = "linear",
                      return_confidence: bool = False) -> Any:
        """PyOD's outlier probability of each row: ``[:, 1]`` P(outlier), ``[:, 0]`` 1 - that.

        As PyOD's ``BaseDetector.predict_proba``, on the outlier scores
        ``-score_samples`` (higher = more abnormal) against ``decision_scores_``.
        Not a calibrated probability; see :meth:`pvalues` for a statement with
        a guarantee.

        Parameters
        ----------
        X : array-like, same kind and shape per sample as in ``fit``
        method : {"linear", "unify"}
            "linear": the outlier score min-max scaled by the training scores'
            range, clipped to [0, 1]. "unify": ``erf((t - mu) / (sigma sqrt(2)))``
            clipped to [0, 1], with the mean and standard deviation of
            ``decision_scores_`` (Kriegel et al. 2011).
        return_confidence : bool
            Also return :meth:`predict_confidence`.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
            Column 0 inlier, column 1 outlier (PyOD's order, not ``predict``'s labels).
        confidence : ndarray of shape (n_samples,)
            Only with ``return_confidence``.
        """
        check_is_fitted(self, "offset_")
        train = -self.train_scores_  # decision_scores_, or its scored subset
        test = -self.score_samples(X)
        proba = outlier_probability(train, test, method)
        if return_confidence:
            return proba, self._confidence(train, test)
        return proba

    def predict_confidence(self, X: Any) -> np.ndarray:
        """PyOD's confidence in each row's ``predict`` label, in [0, 1].

        As PyOD's ``BaseDetector.predict_confidence`` (Perini et al. 2020): the
        probability that the row keeps its label (``contamination`` rule) if
        the training set were drawn again, from the rank of its outlier score
        ``-score_samples`` among ``decision_scores_``.

        Parameters
        ----------
        X : array-like, same kind and shape per sample as in ``fit``

        Returns
        -------
        confidence : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "offset_")
        train = -self.train_scores_  # decision_scores_, or its scored subset
        return self._confidence(train, -self.score_samples(X))

    def _confidence(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return prediction_confidence(train, test, self._contamination_level(),
                                     test > self.threshold_)

    def _calibration_scores(self) -> np.ndarray:
        """``calibration_scores_``, or the sorted ``train_scores_`` of a detector saved
        before it existed (skood 0.1.2 files and pickles)."""
        cal = self.__dict__.get("calibration_scores_")
        return np.sort(self.train_scores_) if cal is None else cal


def _warn_if_pyod_caller(name: str) -> None:
    """A UserWarning when the caller of the caller (of ``decision_function``) is PyOD's code,
    which reads the scores with the opposite sign."""
    caller = sys._getframe(2).f_globals.get("__name__", "")
    if caller == "pyod" or caller.startswith("pyod."):
        warnings.warn(
            f"{caller} called {name}.decision_function, which follows scikit-learn's sign "
            "(higher = more normal), the opposite of PyOD's (higher = more abnormal). Wrap the "
            "detector in skood.adapters.PyODAdapter, or use decision_scores_ / "
            "-score_samples(X) as PyOD scores.",
            UserWarning, stacklevel=3,
        )
