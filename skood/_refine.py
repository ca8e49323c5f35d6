r"""Training-set refinement: refit any detector on the rows an ensemble of its own fits keeps.

:class:`RefinedDetector` wraps any outlier detector (skood's, scikit-learn's, PyOD's)
for training data that holds anomalies (the inductive protocol). It follows the
data-refinement step of Yoon, Sohn, Li, Arik, Lee & Pfister, "Self-supervise,
Refine, Repeat: Improving Unsupervised Anomaly Detection" (TMLR 2022,
https://openreview.net/forum?id=b3v1UrtF6G, SRR): detectors fitted on disjoint parts
of the training data vote out the rows they find least normal, and the final
detector is fitted on the rest.

With the training rows split at random into :math:`K` disjoint parts
:math:`D_1, \dots, D_K`, detector :math:`f_k` is fitted on :math:`D_k` and scores
every row outside it. Its scores turn into ranks among the rows it scored,

.. math::  r_k(x) = \frac{\#\{x' \notin D_k : f_k(x') \le f_k(x)\}}{|D \setminus D_k|}
           \in (0, 1],

small for the rows that :math:`f_k` finds least normal: a scale on which every
model, fitted or not on the same number of rows, of any kind, is comparable, and
on which no row is scored by a model that saw it. A row's vote is the mean (or
the minimum: SRR's consensus, a row is dropped when any model flags it) of the
:math:`K - 1` ranks of the models that did not see it; the ``drop`` fraction of
rows with the smallest votes is left out, and the detector is fitted again on
the rest.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context, clone
from sklearn.utils import ClassifierTags, get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._conformal import ConformalDecisionsMixin
from ._utils import fit_seed, seed_stream

__all__ = ["RefinedDetector"]

#: this module's own random streams (offsets of the refinement's fit seed)
_SEED_STREAMS = {"split": 12, "parts": 13}
#: the contamination a wrapped detector without a numeric one is taken to have (PyOD's default)
_DEFAULT_CONTAMINATION = 0.1


def _normality(est: Any, X: Any) -> np.ndarray:
    """Scores of ``X`` with scikit-learn's sign (higher = more normal), for any detector.

    PyOD's detectors (module ``pyod.*``) score with the opposite sign in
    ``decision_function``; every other detector is read through ``score_samples``.
    """
    if type(est).__module__.startswith("pyod."):
        return -np.asarray(est.decision_function(X), dtype=np.float64)
    return np.asarray(est.score_samples(X), dtype=np.float64)


def _training_normality(est: Any, X: Any) -> np.ndarray:
    """Scores of the rows ``est`` was fitted on: its own training scores where it keeps
    them (skood's ``train_scores_``, leave-one-out for the kNN scorers; PyOD's
    ``decision_scores_``), else ``X`` scored again."""
    n = X.shape[0]
    own = getattr(est, "train_scores_", None)
    if own is not None and len(own) == n:
        return np.asarray(own, dtype=np.float64)
    if type(est).__module__.startswith("pyod."):
        own = getattr(est, "decision_scores_", None)
        if own is not None and len(own) == n:
            return -np.asarray(own, dtype=np.float64)
    return _normality(est, X)


def _rows(X: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of an array, a CSR matrix or a DataFrame / Series (by position)."""
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def _fit(est: Any, X: Any, y: Any) -> Any:
    return est.fit(X) if y is None else est.fit(X, y)


class RefinedDetector(ConformalDecisionsMixin, OutlierMixin, BaseEstimator):
    r"""Any detector, fitted on the training rows that an ensemble of its own fits keeps.

    For training data contaminated with anomalies: ``n_parts`` clones of
    ``estimator`` are fitted on disjoint random parts of the training rows;
    each scores the rows outside its part; the ``drop`` fraction of rows with
    the least normal votes is left out, and a last clone, ``estimator_``, is
    fitted on the kept rows (Yoon et al., "Self-supervise, Refine, Repeat",
    TMLR 2022; the module docstring states the vote). Scoring is
    ``estimator_``'s. The fit costs about two fits of ``estimator`` (the parts
    together see the training set once, the final fit sees ``1 - drop`` of it),
    more where a fit's cost does not shrink with its rows (fixed epochs of a
    few batches each).

    Parameters
    ----------
    estimator : estimator
        An unfitted outlier detector with ``fit`` and either ``score_samples``
        (higher = more normal: skood's and scikit-learn's) or, for PyOD's
        detectors (module ``pyod.*``), ``decision_function`` (higher = more
        abnormal, negated here). It is cloned; the object passed stays unfitted.
        The part models' ``random_state`` (where it has one) is drawn from
        this detector's ``random_state``; the final fit keeps ``estimator``'s own.
    n_parts : int >= 2, default=5
        Disjoint parts of the training rows, one model each. Each row's vote
        comes from the ``n_parts - 1`` models that did not see it. Each part
        must hold as many rows as ``estimator`` needs (2, or its
        ``_min_samples()``).
    drop : "contamination" or float in (0, 0.5), default="contamination"
        Fraction of the training rows left out of the final fit.
        ``"contamination"``: ``estimator``'s ``contamination`` where it is a
        number, else 0.1.
    vote : {"mean", "min"}, default="mean"
        How a row's ranks under the models that did not see it combine:
        their mean, or their minimum (the row is as anomalous as the model
        that finds it most anomalous says: SRR's consensus rule, which keeps
        only the rows that every model calls normal).
    refiner : estimator or None, default=None
        The detector the part models are clones of; None: ``estimator``
        itself. Any detector that ``estimator`` may be (same signs). A
        detector of another kind can see what ``estimator`` cannot: kNN
        distances take a tight cluster of anomalies for normal data once a few
        of its rows are in the fitted part, while random axis-parallel splits
        (``IsolationForest``) isolate a cluster that lies apart from the rest.
    random_state : int, RandomState instance or None, default=None
        Seeds the split into parts and the part models' ``random_state``.

    Attributes
    ----------
    estimator_ : estimator
        The clone of ``estimator`` fitted on the kept rows; it scores.
    contamination_ : float
        The fraction that sets ``offset_``: ``estimator``'s ``contamination``
        where it is a number, else 0.1.
    drop_ : float
        The fraction of rows left out (``drop`` resolved).
    kept_ : ndarray of shape (n_samples,), bool
        Training rows the final fit saw.
    vote_scores_ : ndarray of shape (n_samples,)
        Each training row's vote, in (0, 1]: small = least normal by the part models.
    train_scores_ : ndarray of shape (n_samples,)
        ``estimator_``'s normality scores of every training row: for the kept
        rows its own training scores where it keeps them (skood's
        ``train_scores_``, PyOD's ``decision_scores_`` negated), else the rows
        scored again; the left-out rows scored out of sample.
    offset_ : float
        The ``100 * contamination_`` percentile of ``train_scores_``:
        ``decision_function < 0`` (``predict`` -1) below it.
    calibration_scores_ : ndarray of shape (n_calibration,)
        The calibration scores of :meth:`pvalues` (and of ``predict``'s
        ``alpha`` and ``fdr``), sorted: ``estimator_``'s own
        ``calibration_scores_`` where it has them (skood's detectors, by
        their ``calibration``), else the kept rows' ``train_scores_``. The
        left-out rows, the likely anomalies, are not among them.
    decision_scores_, threshold_, labels_
        PyOD's names, in PyOD's sign (higher = more abnormal):
        ``-train_scores_``, ``-offset_`` and 1 for the training rows
        ``predict`` calls outliers, else 0.
    n_features_in_ : int
        Copied from ``estimator_`` (and ``feature_names_in_`` where it has it).

    Notes
    -----
    ``drop`` is a fixed fraction: on training data without anomalies the
    refinement leaves out normal rows (those at the edge of the data), so use
    it where the training data is contaminated. The part models are not kept.

    Examples
    --------
    Training data with 20 anomalies among 220 rows; the 10% of rows voted out are
    the 20 anomalies and 2 normal rows:

    >>> import numpy as np
    >>> from sklearn.ensemble import IsolationForest
    >>> from skood import RefinedDetector
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(size=(200, 4)), rng.normal(6, 1, size=(20, 4))]
    >>> det = RefinedDetector(IsolationForest(random_state=0), random_state=0).fit(X)
    >>> int((~det.kept_).sum()), bool((~det.kept_[200:]).all())
    (22, True)
    """

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [HasMethods(["fit"])],
        "n_parts": [Interval(Integral, 2, None, closed="left")],
        "drop": [StrOptions({"contamination"}), Interval(Real, 0, 0.5, closed="neither")],
        "vote": [StrOptions({"mean", "min"})],
        "refiner": [HasMethods(["fit"]), None],
        "random_state": ["random_state"],
    }
    _fitted_attributes: ClassVar[dict[str, str]] = {
        "estimator_": "estimator", "contamination_": "real", "drop_": "real", "kept_": "mask",
        "vote_scores_": "scores", "train_scores_": "scores", "offset_": "real",
        "calibration_scores_": "scores",
        "n_features_in_": "count", "feature_names_in_": "names?",
    }

    def __init__(self, estimator: Any, *, n_parts: int = 5, drop: str | float = "contamination",
                 vote: str = "mean", refiner: Any = None, random_state: Any = None) -> None:
        self.estimator = estimator
        self.n_parts = n_parts
        self.drop = drop
        self.vote = vote
        self.refiner = refiner
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: Any, y: Any = None) -> RefinedDetector:
        """Fit the part models, vote, and fit ``estimator_`` on the kept rows.

        Parameters
        ----------
        X : array-like
            Training data in any layout ``estimator`` accepts (rows first).
        y : array-like of shape (n_samples,) or None
            Passed on, subset like ``X``, to every fit of ``estimator`` when
            given (skood's RotAuxMSP uses class labels); None fits ``fit(X)``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Fewer rows than ``n_parts`` parts of ``estimator``'s minimum, or
            (from the wrapped detector) data it cannot fit.
        """
        for attr in ("n_features_in_", "feature_names_in_"):
            self.__dict__.pop(attr, None)
        if sp.issparse(X):  # rows of every sparse format (COO, DIA, ... index no rows)
            X = X.tocsr()
        elif not hasattr(X, "iloc"):  # lists and array-likes: rows by numpy's indexing
            X = np.asarray(X)
        if y is not None and not hasattr(y, "iloc"):
            y = np.asarray(y)
        if X.ndim == 0:
            raise ValueError(f"X must hold rows (an array of one sample per row); got {X!r}")
        n = X.shape[0]
        if y is not None and len(y) != n:
            raise ValueError(f"y has {len(y)} rows but X has {n}")
        refiner = self.estimator if self.refiner is None else self.refiner
        least = max(2, int(getattr(refiner, "_min_samples", lambda: 2)()))
        if n < self.n_parts * least:
            raise ValueError(
                f"RefinedDetector(n_parts={self.n_parts}) needs at least "
                f"{self.n_parts * least} training samples ({self.n_parts} parts of at least "
                f"{least} for {type(refiner).__name__}); got {n} sample(s). Pass more "
                "rows or a smaller n_parts."
            )
        self.contamination_ = self._resolved_contamination()
        self.drop_ = self.contamination_ if self.drop == "contamination" else float(self.drop)

        seed = fit_seed(self.random_state)
        order = np.random.default_rng(seed_stream(seed, "split", _SEED_STREAMS)).permutation(n)
        parts = np.array_split(order, self.n_parts)
        part_seeds = np.random.default_rng(seed_stream(seed, "parts", _SEED_STREAMS)).integers(
            np.iinfo(np.int32).max, size=self.n_parts)
        seeded = "random_state" in refiner.get_params(deep=False)
        ranks = np.full((self.n_parts, n), np.nan)
        for k, rows in enumerate(parts):
            est = clone(refiner)
            if seeded:
                est.set_params(random_state=int(part_seeds[k]))
            _fit(est, _rows(X, rows), None if y is None else _rows(y, rows))
            out = np.setdiff1d(order, rows)  # sorted: the rows this model did not see
            ranks[k, out] = rankdata(_normality(est, _rows(X, out))) / len(out)
        agg = np.nanmean if self.vote == "mean" else np.nanmin
        self.vote_scores_ = agg(ranks, axis=0)

        n_drop = int(round(self.drop_ * n))
        kept = np.ones(n, dtype=bool)
        kept[np.argsort(self.vote_scores_, kind="stable")[:n_drop]] = False
        kept_rows, dropped_rows = np.flatnonzero(kept), np.flatnonzero(~kept)
        est = _fit(clone(self.estimator), _rows(X, kept_rows),
                   None if y is None else _rows(y, kept_rows))
        self.train_scores_ = np.empty(n, dtype=np.float64)
        self.train_scores_[kept_rows] = _training_normality(est, _rows(X, kept_rows))
        if len(dropped_rows):
            self.train_scores_[dropped_rows] = _normality(est, _rows(X, dropped_rows))
        self.estimator_, self.kept_ = est, kept
        self.offset_ = float(np.percentile(self.train_scores_, 100.0 * self.contamination_))
        own = getattr(est, "calibration_scores_", None)
        self.calibration_scores_ = (np.sort(self.train_scores_[kept_rows]) if own is None
                                    else np.asarray(own, dtype=np.float64))
        for attr in ("n_features_in_", "feature_names_in_"):
            if hasattr(est, attr):
                setattr(self, attr, getattr(est, attr))
        return self

    def _contamination_level(self) -> float:
        """``contamination_``: the fraction behind ``offset_`` (and PyOD's conveniences)."""
        return self.contamination_

    def _resolved_contamination(self) -> float:
        c = getattr(self.estimator, "contamination", None)
        if isinstance(c, Real) and not isinstance(c, bool) and 0.0 < float(c) < 0.5:
            return float(c)
        return _DEFAULT_CONTAMINATION

    # -------------------------------------------------------------- scoring
    def score_samples(self, X: Any) -> np.ndarray:
        """``estimator_``'s normality scores: higher = more normal.

        Parameters
        ----------
        X : array-like, same kind and shape per sample as in ``fit``

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self, "estimator_")
        return _normality(self.estimator_, X)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.input_tags = copy.deepcopy(inner.input_tags)
        tags.non_deterministic = inner.non_deterministic
        tags.target_tags.required = inner.target_tags.required
        # predict_proba gives two columns (PyOD's inlier / outlier), which scikit-learn's
        # checks read from the classifier tags
        tags.classifier_tags = ClassifierTags(multi_class=False)
        return tags
