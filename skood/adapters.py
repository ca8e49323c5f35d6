"""Adapters that let skood detectors run inside other libraries' tools.

:class:`PyODAdapter` presents any skood detector (or any scikit-learn outlier
detector with ``score_samples``) as a PyOD detector, so PyOD's evaluation
helpers (``evaluate_print``, ``precision_n_scores``), its combination
frameworks (``LSCP``, ``SUOD``) and benchmark harnesses written for PyOD take
it unchanged.

The two libraries use opposite signs: scikit-learn's ``score_samples`` is
higher for *normal* samples, PyOD's ``decision_function`` is higher for
*abnormal* ones. The adapter negates, so nothing else changes. A skood
detector passed straight to PyOD code that calls its ``decision_function``
warns about the sign; a fitted skood detector also has PyOD's
``decision_scores_``, ``threshold_``, ``labels_``, ``predict_proba`` and
``predict_confidence`` itself (:class:`~skood.BaseDeepDetector`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyod.models.base import BaseDetector
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

__all__ = ["PyODAdapter"]


class PyODAdapter(BaseDetector):
    """Any skood detector seen as a PyOD detector.

    Parameters
    ----------
    detector : estimator
        An unfitted skood detector (or any scikit-learn outlier detector with
        ``score_samples``, higher = more normal); it is cloned in ``fit``, so
        the object passed here stays unfitted. Not a PyOD detector: its
        scores already have PyOD's sign (``fit`` raises a ValueError).
    contamination : float in (0, 0.5], default=0.1
        PyOD's contamination: the fraction of training samples labelled 1 in
        ``labels_`` and the quantile that sets ``threshold_``.

    Attributes
    ----------
    detector_ : estimator
        The fitted clone of ``detector``.
    decision_scores_ : ndarray of shape (n_samples,)
        Outlier scores of the training data, higher = more abnormal. For skood
        detectors these are the stored ``train_scores_`` negated (no second
        pass; leave-one-out for the kNN-based detectors) when they hold
        every training row; other estimators, and skood detectors whose
        ``max_train_scores`` capped them, are scored on their training data.
    threshold_ : float
        ``decision_scores_`` quantile at ``1 - contamination``.
    labels_ : ndarray of shape (n_samples,)
        0 for inliers, 1 for outliers, on the training data.

    Examples
    --------
    >>> from pyod.utils.data import evaluate_print
    >>> from skood import SemSADDetector
    >>> from skood.adapters import PyODAdapter
    >>> clf = PyODAdapter(SemSADDetector(random_state=0))  # doctest: +SKIP
    >>> clf.fit(X_train)  # doctest: +SKIP
    >>> evaluate_print("SemSAD", y_test, clf.decision_function(X_test))  # doctest: +SKIP
    """

    def __init__(self, detector: Any = None, contamination: float = 0.1) -> None:
        super().__init__(contamination=contamination)
        self.detector = detector

    def fit(self, X: Any, y: Any = None) -> PyODAdapter:
        """Fit a clone of ``detector`` on ``X`` (unsupervised; ``y`` is ignored, as in PyOD).

        Parameters
        ----------
        X : array-like
            Training data in any layout the wrapped detector accepts.
        y : ignored
            PyOD passes ground-truth outlier labels here in some helpers; a
            detector must never see them, so they are not forwarded.

        Returns
        -------
        self : PyODAdapter

        Raises
        ------
        ValueError
            ``detector`` is missing, has no ``score_samples``, or is a PyOD detector.
        """
        if isinstance(self.detector, BaseDetector):
            raise ValueError(
                f"PyODAdapter got the PyOD detector {type(self.detector).__name__}, whose "
                "decision_function already has PyOD's sign (higher = more abnormal); use it "
                "directly. PyODAdapter is for scikit-learn-signed detectors (score_samples "
                "higher = more normal), such as skood's."
            )
        if self.detector is None or not hasattr(self.detector, "score_samples"):
            raise ValueError(
                "PyODAdapter needs `detector`: an outlier detector with fit and score_samples, "
                f"e.g. PyODAdapter(SemSADDetector()); got {self.detector!r}."
            )
        est = clone(self.detector).fit(X)
        train = getattr(est, "train_scores_", None)
        if train is None or getattr(est, "train_score_rows_", None) is not None:
            train = est.score_samples(X)  # none kept, or only a subset (max_train_scores)
        self.detector_ = est
        self._set_n_classes(None)  # PyOD's predict_proba reads it; y is never used here
        self.decision_scores_ = -np.asarray(train, dtype=np.float64)
        self._process_decision_scores()
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Outlier scores, higher = more abnormal (``-detector_.score_samples(X)``).

        Parameters
        ----------
        X : array-like

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "detector_")
        return -np.asarray(self.detector_.score_samples(X), dtype=np.float64)
