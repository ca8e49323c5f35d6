"""BaseDeepDetector: the estimator contract every skood detector shares.

A detector subclasses :class:`BaseDeepDetector` and implements two methods:

* ``_fit_store(Xs, y)``: train on the validated training data ``Xs`` (a torch
  tensor in the *store* form below), inside a seeded RNG context;
* ``_score_store(Xs)``: return float64 scores, higher = more normal.

Everything else (validation of every input kind, device and seed resolution,
``offset_`` from the contamination, ``decision_function``/``predict``,
batched inference, tags, pickling across devices, the frozen-feature mode
below) lives here.

Store form: tabular rows are float32 ``(N, D)`` standardised with the
training mean and standard deviation (learned in ``fit``; the caller's
array is never modified); images are ``(N, C, H, W)`` tensors, uint8 when
the input was uint8 (0-255), else float32 in [0, 1]; boolean images (masks)
are the float images 0 (False) and 1 (True).

Frozen-feature mode: a detector that sets ``_frozen_feature_mode = True``,
fitted on images with a frozen pretrained backbone (a name of
``PRETRAINED_BACKBONES``, a user's plain ``nn.Module``, which
``build_encoder`` wraps frozen, or a
:class:`~skood.pretrained.PretrainedEncoder` none of whose parameters
requires a gradient), builds that encoder once (``feature_encoder_``, eval
mode), maps the training images to feature vectors in batches and runs its
own *tabular* algorithm on them. The store is then the feature rows,
standardised like tabular rows (``feature_mean_``/``feature_scale_`` of the
training features; a detector that scores the frozen features themselves, such
as NSA's default, keeps them unchanged: ``_standardizes_features``); every
scoring call maps its images the same way. The
detectors' internal image-or-tabular branches ask
:attr:`BaseDeepDetector._trains_on_images` (False here) and build their
networks from :attr:`BaseDeepDetector._net_backbone` ("auto": an MLP for the
1-D features). ``input_kind_`` stays "image", and ``image_shape_`` and
``n_features_in_`` describe the images the user passes. A trainable
``PretrainedEncoder`` (``trainable="last"`` or ``"all"``) is not frozen: the
detector trains on the images through it (fine-tuning, for a GPU).
Cost: one encoder forward pass per image, at fit and per scoring call (about
30-100 ms per image for EfficientNet-Lite0 at 160 px on one CPU core), in
batches of ``max(batch_size, 256)``; the tabular training after it is as
cheap as on tabular rows.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import math
import sys
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import persistence
from ._conformal import ConformalDecisionsMixin, calibration_split
from ._nn.encoders import BACKBONES, PRETRAINED_BACKBONES, build_encoder, check_image_size
from ._scoring import bank_subset
from ._training import TrainingDivergedError
from ._utils import (
    batch_slices,
    fit_generators,
    fit_rng,
    fit_seed,
    resolve_device,
    seed_stream,
    to_model_input,
)
from .pretrained import PretrainedEncoder, _pretrained_skeleton

__all__ = ["AUTO_MAX_TRAIN_SCORES", "FEATURE_SCALINGS", "BaseDeepDetector", "scale_features"]

#: the training rows ``fit`` scores under ``max_train_scores="auto"``: every fitted row up to
#: this many, a seeded uniform subset of this many beyond (``docs/user_guide/scaling.rst``)
AUTO_MAX_TRAIN_SCORES = 10_000


#: the representations of frozen features (the detectors' ``feature_scaling``)
FEATURE_SCALINGS = ("standardize", "unit", "unit-standardize")


def scale_features(feats: np.ndarray, mode: str) -> np.ndarray:
    r"""Frozen-encoder feature rows in the representation ``mode``, before standardisation.

    * ``"none"`` and ``"standardize"``: unchanged (``"standardize"`` then
      standardises each column with the training mean and standard deviation);
    * ``"unit"``: each row scaled to norm :math:`\sqrt{d}`,
      :math:`f \mapsto \sqrt{d}\, f / \lVert f\rVert` (an all-zero row stays zero),
      and not centred, so the angles between rows, and to the origin, are those of the
      features (what a cosine kNN on them sees) at a per-coordinate scale of about one;
    * ``"unit-standardize"``: the same unit rows, then standardised per column: the
      norm of a feature vector (the image's contrast, mostly) no longer counts, and
      the networks get centred, unit-variance inputs.

    Row-wise, so a scoring row's representation does not depend on the others.
    """
    if mode not in ("unit", "unit-standardize"):
        return feats
    norm = np.linalg.norm(feats, axis=1, keepdims=True)
    return (feats / np.maximum(norm, 1e-12) * np.sqrt(feats.shape[1])).astype(np.float32)


class BaseDeepDetector(ConformalDecisionsMixin, OutlierMixin, BaseEstimator):
    """Base class of skood's detectors (not for direct use).

    Common parameters, with the same names and meaning in every detector:

    backbone : {"auto", "mlp", "cnn", "resnet18", "resnet34"}, pretrained name or nn.Module
        Encoder family; "auto" is an MLP for tabular data and the small CNN
        for images. For images also a pretrained ImageNet encoder,
        :data:`~skood.pretrained.PRETRAINED_BACKBONES` ("efficientnet_lite0",
        "resnet18_imagenet", "resnet50_imagenet"), or a user's own
        ``torch.nn.Module`` (copied and wrapped in a
        :class:`~skood.pretrained.PretrainedEncoder`), see
        ``skood._nn.encoders.build_encoder``. A frozen pretrained encoder
        maps the images once and the detector trains its tabular networks on
        the features (frozen-feature mode, :class:`~skood.BaseDeepDetector`); a trainable
        ``PretrainedEncoder`` is fine-tuned on the images.
    batch_size : int
        Training batch size (also the inference batch size).
    lr : float
        Learning rate of the main optimiser.
    contamination : "auto" or float in (0, 0.5]
        Expected fraction of outliers in the training data, which sets
        ``offset_``: the threshold is that quantile of the (leave-one-out)
        training scores. "auto" means 0.1, PyOD's default: deep normality
        scores have no natural scale on which a fixed threshold could be set
        (unlike IsolationForest's 0.5 or LOF's 1.5).
    calibration : "loo" or float in (0, 0.5)
        The calibration scores of :meth:`pvalues` (and of ``predict``'s
        ``alpha``/``fdr``). "loo": the training scores (``train_scores_``,
        leave-one-out for the scorers that match samples with the training
        set); the fit is unchanged. A float: that fraction of the training
        rows (a uniform random subset drawn from ``random_state``,
        ``calibration_rows_``) is held out: the networks (and any bank) are
        fitted on the other rows only and the held-out rows are scored out
        of sample, which makes the p-values exactly valid (see
        :meth:`pvalues`).
    device : str
        "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:<i>", "mps".
    random_state : int, RandomState or None
        Seeds every random choice of ``fit`` (initialisation, data order,
        augmentations), also when fits run in parallel threads; ``None`` takes
        a fresh seed from the operating system's entropy. The global torch
        and numpy random states are neither read nor changed.
    verbose : int
        0 silent, 1 a progress bar per training phase, 2 a log line per epoch.
    image_shape : tuple of int or None
        ``(C, H, W)`` or ``(H, W)``: read 2-D input as flattened images of
        this shape (so images go through Pipelines and scikit-learn tools).
    max_train_scores : int, "auto" or None
        Largest number of training rows ``fit`` scores for ``train_scores_``
        (default "auto": 10,000 rows; None scores all). On a larger training
        set a uniform random subset of this many of the rows the networks
        were fitted on (drawn from ``random_state``, ``train_score_rows_``) is
        scored, so the cost of a fit stops growing with the rows; ``offset_``
        (the ``contamination`` quantile) and the "loo" calibration scores come
        from that subset. PyOD's ``decision_scores_`` and ``labels_``, which
        hold one value per training row, then raise an ``AttributeError``
        saying so; ``fit_predict`` scores the remaining rows as well.
    max_bank : int, "auto" or None
        (Detectors that score against training samples; default "auto".)
        Largest number of training samples kept as the scorer's reference
        bank: a uniform random subset (drawn from ``random_state``) when the
        training set is larger; "auto" is 10,000 rows; None keeps all.
        Training always uses every sample; the cap bounds the memory and time
        of scoring on large sets. Leave-one-out training scores stay exact:
        a bank row never matches itself and the rows outside the bank are
        scored against it out of sample.

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features (pixels times channels for images).
    input_kind_ : {"tabular", "image"}
        The kind of input the detector was fitted on (and takes).
    image_shape_ : tuple of int or None
        ``(C, H, W)`` of the training images.
    feature_mode_ : bool
        Whether the fit ran in frozen-feature mode (images, frozen pretrained
        backbone; see :class:`~skood.BaseDeepDetector`): the networks were trained on the
        frozen encoder's standardised feature vectors.
    feature_encoder_ : PretrainedEncoder
        (Frozen-feature mode only; other fits remove it.) The frozen encoder,
        in eval mode, that maps images to feature vectors.
    feature_mean_, feature_scale_ : ndarray of shape (n_features,)
        (Tabular fits and frozen-feature mode; other fits on images remove
        them.) The training columns' (feature vectors') mean and standard
        deviation (for a constant column 1, or its largest absolute value if that
        is larger) that standardise every row.
    device_ : str
        The device the networks were trained on.
    train_scores_ : ndarray of shape (n_samples,) or (n_scored,)
        ``score_samples`` of the training data, computed once at the end of
        ``fit``; kNN-based detectors never match a sample with itself, so
        these are leave-one-out scores. With a float ``calibration`` the
        held-out rows' scores are out-of-sample scores. Beyond
        ``max_train_scores`` fitted rows: the scores of the rows
        ``train_score_rows_`` only.
    train_score_rows_ : ndarray of shape (n_scored,)
        (Only when ``max_train_scores`` capped the scoring; other fits remove
        it.) Sorted indices of the training rows ``train_scores_`` holds: the
        scored subset of the fitted rows and, with a float ``calibration``,
        every held-out row.
    calibration_scores_ : ndarray of shape (n_calibration,)
        The calibration scores of :meth:`pvalues`, sorted ascending:
        ``train_scores_`` (``calibration="loo"``) or the held-out rows'
        scores (a float ``calibration``).
    calibration_rows_ : ndarray of shape (n_calibration,)
        (Float ``calibration`` only; other fits remove it.) Indices of the
        held-out rows of the training data, sorted.
    decision_scores_, threshold_, labels_
        PyOD's names (read-only properties computed from ``train_scores_``
        and ``offset_``, in PyOD's sign: higher = more abnormal):
        ``-train_scores_``, ``-offset_`` and 1 for the training rows
        ``predict`` calls outliers, else 0.
    """

    _parameter_constraints: ClassVar[dict] = {
        "backbone": [StrOptions({*BACKBONES, *PRETRAINED_BACKBONES}), torch.nn.Module],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "calibration": [StrOptions({"loo"}), Interval(Real, 0, 0.5, closed="neither")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": [Interval(Integral, 0, 2, closed="both")],
        "image_shape": [tuple, list, None],
        "max_train_scores": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}),
                             None],
    }
    #: the fitted attributes ``fit`` sets, with their kinds (``"?"``: only in some settings),
    #: checked by :mod:`skood.persistence` at save and load; each subclass declares those it adds
    _fitted_attributes: ClassVar[dict[str, str]] = {
        "n_features_in_": "count", "feature_names_in_": "names?",
        "input_kind_": "{tabular,image}", "image_shape_": "image_shape",
        "feature_mean_": "per_feature?", "feature_scale_": "per_feature?", "device_": "device",
        "feature_mode_": "flag", "feature_encoder_": "network?", "train_scores_": "scores",
        "offset_": "real", "calibration_scores_": "scores?", "calibration_rows_": "array?",
        "train_score_rows_": "array?",
        "feature_scaling_": "{none,standardize,unit,unit-standardize}?",
    }
    _presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: chunk size of the feature-space scorers (rows of query and bank at once)
    _chunk_size: ClassVar[int] = 4096
    #: smallest image side the detector's own augmentations take (the backbone's own minimum,
    #: ``skood._nn.encoders.MIN_IMAGE_SIDE``, is checked with it at fit)
    _min_image_side: ClassVar[int] = 1
    #: whether images with a frozen pretrained backbone train on frozen features (module doc)
    _frozen_feature_mode: ClassVar[bool] = False

    # ------------------------------------------------------------------ API
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> BaseDeepDetector:
        """Create a detector with a named parameter preset, e.g. ``"paper"``.

        ``overrides`` replace single parameters of the preset.
        """
        if name not in cls._presets:
            raise ValueError(f"unknown preset {name!r}; {cls.__name__} has {sorted(cls._presets)}")
        return cls(**{**cls._presets[name], **overrides})

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> BaseDeepDetector:
        """Train the detector on (mostly) normal data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or image array
            Tabular rows, images (N, H, W), (N, H, W, C) or (N, C, H, W) as
            uint8 0-255 or float 0-1, or flattened images with ``image_shape``.
        y : ignored
            Present for API consistency (Pipeline, GridSearchCV).

        Returns
        -------
        self

        Raises
        ------
        skood._training.TrainingDivergedError
            (A ``ValueError``.) A training phase's loss, or the training
            scores, are not finite; the message names the learning-rate
            parameters to lower.
        KeyboardInterrupt
            Propagates from training. A fit that raises leaves the detector
            without ``offset_`` and ``train_scores_`` (unfitted).

        Warns
        -----
        UserWarning
            Tabular ``X`` has constant columns (standard deviation at most
            n_samples times the float64 machine epsilon times the column's
            largest absolute value, so the test does not depend on the units);
            the warning names them. They are centred but not scaled to unit
            variance.
        sklearn.exceptions.ConvergenceWarning
            More than half of the training scores are one value, shared by
            more rows than are identical (the network collapsed, typically
            after a too large learning rate); the fit completes.
        """
        for attr in ("calibration_scores_", "calibration_rows_", "train_score_rows_"):
            self.__dict__.pop(attr, None)
        if getattr(self, "calibration", "loo") == "loo":  # a subclass without the parameter
            Xs, Xcal = self._validate_input(X, reset=True), None
        else:
            seed = fit_seed(self.random_state)
            Xs, Xcal, cal_rows = self._calibration_split(X, seed)
            y = _held_in(y, cal_rows, len(Xs) + len(Xcal))
        self.device_ = resolve_device(self.device)
        Xs = self._fit_feature_mode(Xs)
        if Xcal is None:
            seed = fit_seed(self.random_state)
        elif self.feature_mode_:
            Xcal = self._feature_store(Xcal, reset=False)
        with fit_generators(seed):
            self._train(Xs, y, seed)
        scored = self._train_score_subset(len(Xs), seed)
        Xt = Xs if scored is None else Xs[torch.as_tensor(scored)]
        scores = self._check_train_scores(self._score_in_chunks(Xt), Xt)
        del Xt
        if Xcal is None:
            self.train_scores_ = scores
            self.calibration_scores_ = np.sort(scores)
            if scored is not None:
                self.train_score_rows_ = scored
        else:
            cal = self._score_in_chunks(Xcal)
            if not np.isfinite(cal).all():
                self._check_train_scores(cal, Xcal)  # raises TrainingDivergedError
            fitted = np.ones(len(Xs) + len(cal), dtype=bool)
            fitted[cal_rows] = False
            if scored is None:
                self.train_scores_ = np.empty(len(fitted), dtype=np.float64)
                self.train_scores_[fitted], self.train_scores_[cal_rows] = scores, cal
            else:
                rows = np.concatenate([np.flatnonzero(fitted)[scored], cal_rows])
                order = np.argsort(rows, kind="stable")
                self.train_score_rows_ = rows[order]
                self.train_scores_ = np.concatenate([scores, cal])[order]
            self.calibration_rows_ = cal_rows
            self.calibration_scores_ = np.sort(cal)
        self.offset_ = self._offset_from(self.train_scores_)
        return self

    def _train_score_subset(self, n: int, seed: int) -> np.ndarray | None:
        """Sorted indices of the ``max_train_scores`` of the ``n`` fitted rows that ``fit``
        scores (a uniform subset drawn with the seed stream ``"train_scores"``), or None
        when it scores them all (a subclass without the parameter: all)."""
        cap = getattr(self, "max_train_scores", None)
        if cap == "auto":
            cap = AUTO_MAX_TRAIN_SCORES
        rows = bank_subset(n, cap, seed_stream(seed, "train_scores"))
        return None if rows is None else rows.numpy()

    def _calibration_split(self, X: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Split ``X`` for a float ``calibration``: the rows the networks are fitted on,
        validated as training data (``reset=True``: standardisation and input kind learned
        from them only), the held-out rows validated as scoring data (not yet mapped by a
        frozen encoder), and the held-out rows' sorted indices (drawn with the seed stream
        ``"calibration"``)."""
        arr = X if hasattr(X, "iloc") or sp.issparse(X) else np.asarray(X)
        if getattr(arr, "ndim", 0) < 2 or arr.shape[0] < 2:
            self._validate_input(X, reset=True)  # raises the usual error for such input
            raise ValueError(f"{type(self).__name__}: calibration={self.calibration!r} needs "
                             f"at least 2 training rows; got {arr.shape[0]}")
        n = arr.shape[0]
        cal_rows = calibration_split(n, self.calibration, seed_stream(seed, "calibration"))
        n_fit = n - len(cal_rows)
        if n_fit < self._min_samples():
            raise ValueError(
                f"{type(self).__name__}: calibration={self.calibration!r} holds out "
                f"{len(cal_rows)} of {n} training rows, leaving {n_fit}; with these parameters "
                f"the networks need at least {self._min_samples()}. Pass more rows, a smaller "
                "calibration fraction, or calibration='loo'."
            )
        fit_rows = np.setdiff1d(np.arange(n), cal_rows)
        take = (lambda rows: arr.iloc[rows]) if hasattr(arr, "iloc") else (lambda rows: arr[rows])
        Xs = self._validate_input(take(fit_rows), reset=True)
        self.__dict__.pop("feature_mode_", None)  # of an earlier fit; the held-out rows stay raw
        for attr in ("offset_", "train_scores_"):  # a failure below: unfitted
            self.__dict__.pop(attr, None)
        return Xs, self._validate_input(take(cal_rows), reset=False), cal_rows

    def _train(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        """``_fit_store``, after removing ``offset_`` and ``train_scores_``: a fit that fails or is
        interrupted (``KeyboardInterrupt`` propagates) leaves the detector unfitted. A
        :class:`~skood._training.TrainingDivergedError` of a training phase is raised again
        with this detector's learning-rate parameters."""
        for attr in ("offset_", "train_scores_"):
            self.__dict__.pop(attr, None)
        try:
            self._fit_store(Xs, y, seed)
        except TrainingDivergedError as err:
            what = "parameters are not finite" if err.loss is None else f"loss is {err.loss}"
            raise TrainingDivergedError(
                f"{type(self).__name__}: training diverged in phase {err.phase!r} (its {what} "
                f"at epoch {err.epoch}, learning rate {err.lr:g}). {self._lower_lr_hint()}",
                phase=err.phase, epoch=err.epoch, lr=err.lr, loss=err.loss,
            ) from err

    def _lower_lr_hint(self) -> str:
        params = self.get_params(deep=False)
        names = [k for k in sorted(params, key=lambda k: (k != "lr", k))
                 if k == "lr" or k.endswith("_lr")]
        return "Lower the learning rate: " + ", ".join(f"{k}={params[k]!r}" for k in names) + "."

    def _check_train_scores(self, scores: np.ndarray, Xs: torch.Tensor) -> np.ndarray:
        """``scores`` of the training data, checked for a broken fit.

        Non-finite scores mean the trained network is not finite (its losses
        stayed finite): :class:`~skood._training.TrainingDivergedError`.
        Degenerate scores give a ``ConvergenceWarning``: more than half of
        them (of three or more; two leave-one-out scores are equal by
        symmetry) are one value, shared by more rows than the largest group
        of identical training rows. The network is then (nearly) constant on
        the training data, typically after a too large learning rate, and the
        ``contamination`` threshold cannot separate the tied rows. It is a
        warning, not an error, as ties can be the honest result of a fit
        (e.g. most samples classified with probability 1).
        """
        name = type(self).__name__
        n = len(scores)
        bad = int((~np.isfinite(scores)).sum())
        if bad:
            raise TrainingDivergedError(
                f"{name}: {bad} of {n} training scores are not finite: the trained network's "
                f"output is not finite, training diverged. {self._lower_lr_hint()}",
                lr=getattr(self, "lr", None),
            )
        values, counts = np.unique(scores, return_counts=True)
        tied = int(counts.max()) if n > 2 else 0
        if 2 * tied > n:
            rows = int(torch.unique(Xs.reshape(n, -1), dim=0, return_counts=True)[1].max())
            if tied > rows:
                warnings.warn(
                    f"{name}: {tied} of {n} training scores are the same value "
                    f"{values[counts.argmax()]:.6g}, although at most {rows} training rows are "
                    "identical: the trained network is (nearly) constant on the training data "
                    "(did training diverge?), and the contamination threshold cannot separate "
                    f"the tied rows. {self._lower_lr_hint()}",
                    ConvergenceWarning, stacklevel=3,
                )
        return scores

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality score of each sample: higher means more normal.

        Parameters
        ----------
        X : array-like, same kind and shape per sample as in ``fit``

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self, "offset_")
        return self._score_validated(self._validate_array(X, reset=False))

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        """Fit on X and label its rows +1 (inlier) / -1 (outlier).

        The labels come from ``train_scores_`` (computed once by ``fit``, equal
        to ``score_samples`` of the training rows), so the data is not scored
        twice; equal to ``fit(X, y).predict(X)``. ``y`` is passed on to ``fit``.
        When ``max_train_scores`` capped the rows ``fit`` scored, it is
        ``fit(X, y).predict(X)``.
        """
        self.fit(X, y)
        if "train_score_rows_" in self.__dict__:  # max_train_scores capped fit's scoring
            return self.predict(X)
        return np.where(self.train_scores_ - self.offset_ >= 0, 1, -1)

    # ------------------------------------------------------- for subclasses
    def _fit_store(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        raise NotImplementedError

    def _score_store(self, Xs: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _score_batch_rows(self) -> list[int]:
        """Rows per batch of the scorer's forward passes (``max(batch_size, 256)`` by default);
        a detector whose scorer batches otherwise returns its own sizes."""
        bs = getattr(self, "batch_size", None)
        return [max(bs if isinstance(bs, Integral) else 0, 256)]

    def _score_chunk_rows(self) -> int:
        """Rows scored at once: the least common multiple of ``_chunk_size`` and the
        scorer's batch sizes, so that every forward-pass batch and every query chunk of the
        feature-space scorers holds the same rows as when all rows are scored at once."""
        return math.lcm(int(self._chunk_size), *(int(b) for b in self._score_batch_rows()))

    def _score_in_chunks(self, Xs: torch.Tensor) -> np.ndarray:
        """``_score_store`` of ``Xs`` in chunks of ``_score_chunk_rows()`` rows (the last chunk
        takes the remainder, between one and two chunks of rows, so that its last batch is
        the one of an unchunked pass), concatenated: the features of only one chunk exist at
        a time, and the scores equal those of one ``_score_store(Xs)`` bit for bit."""
        bounds = self._chunk_bounds(len(Xs))
        if len(bounds) == 2:
            return self._score_store(Xs)
        return np.concatenate([self._score_store(Xs[a:b])
                               for a, b in zip(bounds[:-1], bounds[1:], strict=True)])

    def _chunk_bounds(self, n: int) -> list[int]:
        """Start rows of the chunks of :meth:`_score_in_chunks` for ``n`` rows, and ``n``."""
        c = self._score_chunk_rows()
        if n < 2 * c:
            return [0, n]
        return [*range(0, n - c, c), n]

    def _score_validated(self, Xv: np.ndarray,
                         score: Callable[[torch.Tensor], np.ndarray] | None = None,
                         check: bool = True) -> np.ndarray:
        """Scores of validated input ``Xv`` (of :meth:`_validate_array`), with the store of
        one chunk at a time.

        The chunks are those of :meth:`_score_in_chunks`; each chunk's rows are brought to
        store form (:meth:`_chunk_store`: standardised rows, image tensors, frozen features)
        only when it is scored, so that scoring memory does not grow with the rows scored
        beyond the input and the result. Store building is row by row, so the scores equal
        ``_score_in_chunks(_validate_input(X))`` bit for bit. Between chunks the C heap's
        free pages go back to the operating system (:func:`_release_free_memory`), so that
        the chunks' short-lived buffers do not pile up in a fragmented heap. ``score``: the
        scorer of a
        store (default ``_score_store``); its results are written into one array of
        ``len(Xv)`` rows. ``check``: :meth:`_check_finite_scores` on the result, with row
        numbers of ``Xv``.
        """
        score = self._score_store if score is None else score
        bounds = self._chunk_bounds(len(Xv))
        out, zmax = None, 0.0
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            Xs = self._chunk_store(Xv[a:b])
            s = np.asarray(score(Xs))
            if check and self.input_kind_ == "tabular":
                bad = np.flatnonzero(~np.isfinite(s))
                if len(bad):
                    zmax = max(zmax, float(Xs[torch.from_numpy(bad)].abs().max()))
            if b == len(Xv) and a == 0:  # one chunk
                out = s
            else:
                if out is None:
                    out = np.empty((len(Xv), *s.shape[1:]), dtype=s.dtype)
                out[a:b] = s
            del Xs, s
            if len(bounds) > 2:
                _release_free_memory()
        return self._check_finite_scores(out, zmax) if check else out

    def _chunk_store(self, Xv: np.ndarray, reset: bool = False,
                     warn_constant: bool = False) -> torch.Tensor:
        """Validated rows (2-D) or images (N, C, H, W) of :meth:`_validate_array` in store
        form: standardised rows (learning the standardisation when ``reset``; see
        :meth:`_tabular_store` for ``warn_constant``), image tensors, or (scoring in
        frozen-feature mode) the images' standardised feature rows."""
        if Xv.ndim == 2:
            return self._tabular_store(Xv, reset, warn_constant=warn_constant)
        store = self._image_store(Xv)
        if not reset and getattr(self, "feature_mode_", False):
            return self._feature_store(store, reset=False)
        return store

    def _min_samples(self) -> int:
        """Fewest training samples the detector can work with."""
        return 2

    # ------------------------------------------------------ frozen features
    @property
    def _trains_on_images(self) -> bool:
        """Whether the detector's networks take images: fitted on images, not in feature mode.

        The detectors branch on this (not on ``input_kind_``) between their image and
        tabular algorithms; in frozen-feature mode the tabular one runs on feature vectors.
        """
        return (getattr(self, "input_kind_", "tabular") == "image"
                and not getattr(self, "feature_mode_", False))

    @property
    def _net_backbone(self) -> str | torch.nn.Module:
        """The ``backbone`` the detector's own networks are built from: "auto" (an MLP for
        the 1-D feature vectors) in frozen-feature mode, else the ``backbone`` parameter."""
        return "auto" if getattr(self, "feature_mode_", False) else self.backbone

    def _backbone_is_frozen(self) -> bool:
        """Whether ``backbone`` is a frozen pretrained encoder once built by ``build_encoder``.

        A pretrained name is loaded frozen; a plain ``nn.Module`` is wrapped in a frozen
        :class:`~skood.pretrained.PretrainedEncoder`; a ``PretrainedEncoder`` is used as
        it is (a copy), frozen when none of its parameters requires a gradient.
        """
        bb = self.backbone
        if isinstance(bb, PretrainedEncoder):
            return not any(p.requires_grad for p in bb.parameters())
        return isinstance(bb, torch.nn.Module) or bb in PRETRAINED_BACKBONES

    def _check_feature_mode(self) -> None:
        """Hook: raise a ValueError when the parameters do not allow frozen-feature mode."""

    def _build_feature_encoder(self) -> torch.nn.Module:
        """The frozen encoder of ``backbone`` for the training images, in eval mode, on the CPU.

        Built from generators of its own (a randomly initialised architecture whose
        pretrained weights then replace the random ones draws neither from the fit's
        random streams nor from torch's global RNG).
        """
        with fit_generators(0), fit_rng(), torch.device("cpu"):
            return build_encoder(self.backbone, tuple(self.image_shape_)).eval()

    def _fit_feature_mode(self, Xs: torch.Tensor) -> torch.Tensor:
        """Enter or leave frozen-feature mode for the fit of ``Xs`` (the validated store).

        Removes ``feature_encoder_`` of an earlier fit and sets ``feature_mode_``. In
        frozen-feature mode, builds ``feature_encoder_`` and returns the standardised
        training features (setting ``feature_mean_``/``feature_scale_``); else ``Xs``.
        """
        for attr in ("offset_", "train_scores_", "feature_encoder_", "feature_scaling_"):
            self.__dict__.pop(attr, None)
        self.feature_mode_ = False
        if (not self._frozen_feature_mode or self.input_kind_ != "image"
                or not self._backbone_is_frozen()):
            return Xs
        self._check_feature_mode()
        self.feature_encoder_ = self._build_feature_encoder().to(self.device_)
        self.feature_mode_ = True
        return self._feature_store(Xs, reset=True)

    def _feature_store(self, imgs: torch.Tensor, reset: bool) -> torch.Tensor:
        """Images in store form mapped by ``feature_encoder_`` (in batches of
        ``max(batch_size, 256)``) to feature rows in the representation
        ``feature_scaling_`` (:func:`scale_features`; ``reset``: resolved and set now)."""
        bs = getattr(self, "batch_size", None)
        bs = max(bs if isinstance(bs, Integral) else 0, 256)
        self.feature_encoder_.eval()
        feats = self._map_batches(self.feature_encoder_, imgs, batch_size=bs).numpy()
        if reset:
            self.feature_scaling_ = self._resolved_feature_scaling()
        mode = getattr(self, "feature_scaling_", None)
        if mode is None:  # saved before the attribute: standardised unless the detector scores
            mode = "standardize" if self._standardizes_features else "none"
        feats = scale_features(feats, mode)
        if reset and mode in ("none", "unit"):
            d = feats.shape[1]
            self.feature_mean_, self.feature_scale_ = np.zeros(d), np.ones(d)
            reset = False
        return self._tabular_store(feats, reset)

    #: ``feature_scaling="auto"``: the detector's representation of frozen features
    #: (chosen per detector on the pretrained suites, see ``docs/user_guide/pretrained.rst``)
    _auto_feature_scaling: ClassVar[str] = "standardize"

    def _resolved_feature_scaling(self) -> str:
        """The representation of this fit's frozen features: "none" when the detector scores
        them as they are, else the ``feature_scaling`` parameter ("auto": the detector's
        :attr:`_auto_feature_scaling`; a detector without the parameter: "standardize")."""
        if not self._standardizes_features:
            return "none"
        mode = getattr(self, "feature_scaling", "standardize")
        return self._auto_feature_scaling if mode == "auto" else mode

    @property
    def _standardizes_features(self) -> bool:
        """Whether frozen-feature mode standardises the feature vectors (the default: the
        tabular algorithms expect standardised rows). A detector that scores the frozen
        features themselves returns False and gets them unchanged (``feature_mean_`` 0,
        ``feature_scale_`` 1), which keeps their angles to the origin."""
        return True

    @property
    def _inference_device(self) -> str:
        dev = getattr(self, "device_", "cpu")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            return "cpu"
        return dev

    @torch.inference_mode()
    def _map_batches(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        Xs: torch.Tensor,
        batch_size: int | None = None,
        min_batch: int = 1,
    ) -> torch.Tensor:
        """Apply ``fn`` to ``Xs`` in batches on the inference device; concatenate on CPU.

        ``min_batch``: no batch smaller than this (see :func:`skood._utils.batch_slices`).
        """
        dev = self._inference_device
        bs = batch_size or max(self.batch_size, 256)
        outs = [fn(to_model_input(Xs[b], dev)).float().cpu()
                for b in batch_slices(len(Xs), bs, min_batch)]
        return torch.cat(outs)

    def _contamination_level(self) -> float:
        """``contamination``, with "auto" read as 0.1."""
        return 0.1 if self.contamination == "auto" else float(self.contamination)

    def _offset_from(self, scores: np.ndarray) -> float:
        return float(np.percentile(scores, 100.0 * self._contamination_level()))

    # ------------------------------------------------------- input handling
    def _validate_input(self, X: Any, reset: bool) -> torch.Tensor:
        """``X`` validated (:meth:`_validate_array`) and in store form, all rows at once:
        standardised rows (learning the standardisation when ``reset``), image tensors, or
        (scoring in frozen-feature mode) the images' standardised feature rows."""
        return self._chunk_store(self._validate_array(X, reset), reset, warn_constant=True)

    def _validate_array(self, X: Any, reset: bool) -> np.ndarray:
        """``X`` checked as training (``reset``: input kind, image shape and
        ``n_features_in_`` learned from it) or scoring input, without building the store.

        Returns the 2-D float64 or float32 rows (the caller's array itself when it is one
        already: no copy) or the images as an (N, C, H, W) array (a view where the layout
        allows), whose values were checked as :meth:`_image_store` checks them.
        """
        name = type(self).__name__
        arr = np.asarray(X) if not (hasattr(X, "iloc") or sp.issparse(X)) else X
        ndim = getattr(arr, "ndim", 2)
        if ndim == 2 and (self.image_shape is None if reset else self.input_kind_ == "tabular"):
            Xv = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                               ensure_min_samples=1)
            Xv = self._check_samples(Xv, reset)
            if reset:
                self.input_kind_ = "tabular"
                self.image_shape_ = None
            return Xv
        if not reset and self.input_kind_ == "tabular":
            raise ValueError(
                f"{name} was fitted on tabular data with {self.n_features_in_} features; got "
                f"an array of shape {np.shape(X)}. Reshape your data to a 2-D array "
                "(n_samples, n_features), e.g. with X.reshape(1, -1) for a single sample."
            )
        Xv = check_array(X, allow_nd=True, dtype=None, ensure_min_samples=1, input_name="X")
        if Xv.dtype.kind not in "biuf":
            raise ValueError(f"{name}: images must be uint8 (0-255) or float (0-1); got {Xv.dtype}")
        imgs = self._to_nchw(Xv, reset)
        imgs = self._check_samples(imgs, reset)
        if reset:
            check_image_size(getattr(self, "backbone", "auto"), imgs.shape[1:], name,
                             self._min_image_side)
            self.input_kind_ = "image"
            self.image_shape_ = tuple(int(s) for s in imgs.shape[1:])
            self.n_features_in_ = int(np.prod(self.image_shape_))
            for attr in ("feature_mean_", "feature_scale_"):  # of an earlier tabular fit
                self.__dict__.pop(attr, None)
        elif tuple(imgs.shape[1:]) != self.image_shape_:
            raise ValueError(
                f"{name} was fitted on images of shape (C, H, W) = {self.image_shape_}; got "
                f"images of shape {tuple(imgs.shape[1:])}"
            )
        self._check_image_values(imgs)
        return imgs

    def _check_samples(self, X: np.ndarray, reset: bool) -> np.ndarray:
        if reset and len(X) < self._min_samples():
            raise ValueError(
                f"{type(self).__name__} with these parameters needs at least "
                f"{self._min_samples()} training samples; got n_samples = {len(X)}."
            )
        return X

    def _check_finite_scores(self, scores: np.ndarray, zmax: float) -> np.ndarray:
        """``scores``, after checking that every one is finite (else a ValueError naming the
        rows; ``zmax``: for tabular rows the largest absolute standardised value of those rows).

        Finite inputs far outside the training data (tabular rows many orders of
        magnitude beyond it) can overflow float32 inside the networks.
        """
        bad = np.flatnonzero(~np.isfinite(scores))
        if len(bad) == 0:
            return scores
        rows = f"{bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}"
        msg = (f"{type(self).__name__} cannot score {len(bad)} of {len(scores)} sample(s) "
               f"(rows {rows}): the network's output is not finite for them.")
        if self.input_kind_ == "tabular":
            msg += (f" Their standardised values reach {zmax:.3g} training standard deviations, "
                    "outside the range the trained network can score in float32; check these "
                    "rows for unit or scaling errors.")
        else:
            msg += (" Image inputs are bounded, so the trained network itself is not finite "
                    "(did training diverge? try a smaller lr).")
        raise ValueError(msg)

    def _to_nchw(self, X: np.ndarray, reset: bool) -> np.ndarray:
        """Bring images in any accepted layout to (N, C, H, W)."""
        shape = self.image_shape if reset else getattr(self, "image_shape_", None)
        if X.ndim == 2:
            if self.image_shape is None:
                raise ValueError(
                    f"{type(self).__name__} was fitted on images of shape {self.image_shape_}; "
                    "got a 2-D array. Pass images, or set image_shape to use flattened images."
                )
            shape = tuple(int(s) for s in self.image_shape)
            if len(shape) == 2:
                shape = (1, *shape)
            if len(shape) != 3 or shape[0] not in (1, 3):
                raise ValueError(
                    f"image_shape must be (C, H, W) with C in (1, 3) or (H, W); got "
                    f"{self.image_shape!r}"
                )
            if X.shape[1] != int(np.prod(shape)):
                raise ValueError(
                    f"X has {X.shape[1]} features, but image_shape={tuple(self.image_shape)} "
                    f"needs {int(np.prod(shape))} per row"
                )
            return X.reshape(len(X), *shape)
        if X.ndim == 3:
            return X[:, None]
        if X.ndim == 4:
            if X.shape[1] in (1, 3):
                return X
            if X.shape[3] in (1, 3):
                return X.transpose(0, 3, 1, 2)
            raise ValueError(
                f"4-D images must be (N, H, W, C) or (N, C, H, W) with C = 1 or 3; got shape "
                f"{X.shape}"
            )
        raise ValueError(
            f"X must be 2-D (n_samples, n_features) or images with 3 or 4 dimensions; got "
            f"{X.ndim} dimensions (shape {X.shape})"
        )

    def _image_store(self, imgs: np.ndarray) -> torch.Tensor:
        """Images (N, C, H, W) in store form: uint8 0-255 as uint8, other integers checked to
        lie in 0-255 and cast to uint8, floats checked to lie in [0, 1], booleans (masks) as
        the float images 0 (False, black) and 1 (True, white)."""
        if imgs.dtype == np.bool_:
            return torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32))
        if imgs.dtype == np.uint8:
            return torch.from_numpy(np.ascontiguousarray(imgs).copy())
        self._check_image_values(imgs)
        if imgs.dtype.kind in "biu":
            return torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.uint8))
        return torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32))

    def _check_image_values(self, imgs: np.ndarray) -> None:
        """A ValueError unless integer images lie in 0-255 and float images in [0, 1]
        (boolean and uint8 images always do)."""
        name = type(self).__name__
        if imgs.dtype in (np.bool_, np.uint8):
            return
        if imgs.dtype.kind in "biu":
            lo, hi = imgs.min(), imgs.max()
            if lo < 0 or hi > 255:
                raise ValueError(f"{name}: integer images must lie in 0-255; got [{lo}, {hi}]")
            return
        lo, hi = float(imgs.min()), float(imgs.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name}: float images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]. "
                "Divide 0-255 images by 255 or pass them as uint8."
            )

    def _tabular_store(self, X: np.ndarray, reset: bool,
                       warn_constant: bool = False) -> torch.Tensor:
        """Rows (N, D) standardised with ``feature_mean_``/``feature_scale_`` (learned from
        ``X`` when ``reset``, by :func:`_column_scales`), as float32. ``warn_constant``: a
        ``UserWarning`` names the columns that are constant in ``X`` (user data; not the
        frozen encoder's features, whose dead units are no fault of the caller's)."""
        if reset:
            mean, scale, constant = _column_scales(X)
            if warn_constant and len(constant):
                cols = f"{constant[:10].tolist()}{' ...' if len(constant) > 10 else ''}"
                warnings.warn(
                    f"{type(self).__name__}: X has {len(constant)} constant column(s) {cols} "
                    "in the training data (standard deviation at most n_samples times the "
                    "float64 machine epsilon times the column's largest |value|); they are "
                    "centred but not scaled to unit variance, so the detector learns nothing "
                    "from them. Drop them, or check their values.",
                    UserWarning, stacklevel=5,
                )
            self.feature_mean_, self.feature_scale_ = mean, scale
        with np.errstate(over="ignore", invalid="ignore"):
            Z = (X.astype(np.float64) - self.feature_mean_) / self.feature_scale_
            Z = Z.astype(np.float32)
        if not np.isfinite(Z).all():
            raise ValueError(
                "X has values too large for float32 after standardisation; rescale the features"
            )
        return torch.from_numpy(Z)

    # ------------------------------------------------------------ metadata
    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        dev = self.device if isinstance(self.device, str) else "cpu"
        tags.non_deterministic = dev.startswith("cuda") or (
            dev == "auto" and torch.cuda.is_available()
        )
        return tags

    def __getstate__(self) -> dict:
        # Networks and tensors are pickled on the CPU so that a model fitted on a
        # GPU loads anywhere; __setstate__ moves them back when the GPU is there.
        state = super().__getstate__()
        return {k: _on_device(v, "cpu") for k, v in state.items()}

    def __setstate__(self, state: dict) -> None:
        dev = state.get("device_")
        if isinstance(dev, str) and dev.startswith("cuda"):
            if torch.cuda.is_available():
                state = {k: _on_device(v, dev) for k, v in state.items()}
            else:
                warnings.warn(
                    f"{type(self).__name__} was fitted on {dev}; no GPU here, scoring on the CPU",
                    stacklevel=2,
                )
        super().__setstate__(state)

    # ---------------------------------------------------------- persistence
    def save(self, path: Any) -> None:
        """Write the detector (parameters, fitted attributes, network weights) to ``path``.

        One :func:`torch.save` file of tensors and plain values only, with
        the format, skood and torch versions and the class recorded; no
        object is pickled (format and rules: :mod:`skood.persistence`).
        Read it back with :meth:`load`.

        Raises
        ------
        TypeError
            A parameter or fitted attribute of a type that cannot be stored
            without pickle.
        NotImplementedError
            The detector cannot rebuild its networks (no ``_module_skeletons``).
        ValueError
            A fitted attribute the class does not declare (``_fitted_attributes``), or a
            fit that did not finish.
        OSError
            Writing failed (disk full, no such folder, ...); the message names ``path`` and
            the cause. The file is written to a temporary file beside ``path`` and renamed
            over it, so a file already at ``path`` is unchanged.
        """
        persistence.save(self, path)

    @classmethod
    def load(cls, path: Any, *, map_location: str | None = None,
             **module_params: Any) -> BaseDeepDetector:
        """Read a detector written by :meth:`save`; its scores equal the saved detector's.

        Reading uses ``torch.load(weights_only=True)``, which never runs code
        from the file. ``BaseDeepDetector.load`` accepts any skood detector;
        a detector class accepts only its own files.

        Parameters
        ----------
        path : str, path-like or binary file
        map_location : str or None
            None: networks go back to the device they were fitted on when it is
            available, else to the CPU with a warning. A device name: the
            networks go there and ``device_`` becomes it.
        **module_params : nn.Module
            For a parameter that was a user ``nn.Module`` (DUM's ``encoder``):
            a module of the same architecture; the detector gets a copy of it
            with the saved weights.

        Raises
        ------
        ValueError
            The file is not a skood detector file, is corrupt (its checksum or a
            record's CRC-32 does not match), has another format version,
            holds another class, comes from a newer skood, a module
            parameter is missing or does not match, a parameter is outside the
            class's constraints, or fitted attributes are unknown, missing or of
            the wrong kind. A file from an older skood or another torch version
            (or without a checksum) loads with a
            :class:`~skood.persistence.SkoodVersionWarning`.
        OSError
            The file cannot be read.
        """
        return persistence.load(path, cls, map_location=map_location, **module_params)

    def _module_skeletons(self, shape: tuple[int, ...]) -> dict[str, torch.nn.Module]:
        """Untrained networks of the fitted architecture, one per fitted network attribute.

        Built from the parameters and the fitted attributes other than
        networks (``shape`` is one sample's store shape, ``(D,)`` or
        ``(C, H, W)``) without training; :meth:`load` fills in the weights.
        A detector that does not implement it cannot be saved.
        """
        raise NotImplementedError

    def _network_skeletons(self) -> dict[str, torch.nn.Module]:
        """``_module_skeletons`` of the store shape, with ``feature_encoder_`` in
        frozen-feature mode (what :mod:`skood.persistence` rebuilds on ``load``).

        The store shape is ``(D,)`` of the feature vectors in frozen-feature mode,
        ``image_shape_`` for other image fits and ``(n_features_in_,)`` for tabular ones.
        Built on the CPU from generators of their own (seed 0), so building them neither
        reads nor advances torch's global RNG.
        """
        with fit_generators(0), fit_rng(), torch.device("cpu"):
            if getattr(self, "feature_mode_", False):
                mods = self._module_skeletons((len(self.feature_mean_),))
                bb = self.backbone
                enc = (_pretrained_skeleton(bb) if isinstance(bb, str)
                       else build_encoder(bb, tuple(self.image_shape_)))
                return {**mods, "feature_encoder_": enc.eval()}
            shape = (tuple(self.image_shape_) if self.input_kind_ == "image"
                     else (self.n_features_in_,))
            return self._module_skeletons(shape)


persistence._register_detector_base(BaseDeepDetector)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _release_free_memory() -> None:
    """Return the free pages of the C heap to the operating system (``malloc_trim(0)``).

    glibc serves the buffers of a scoring chunk (a few MB each, under its adaptive
    mmap threshold) from the heap and keeps freed pages resident; after many chunks of
    varying allocations the fragmented heap's resident size creeps up with the number of
    chunks. Trimming between chunks keeps it at one chunk's working set. Where there is
    no ``malloc_trim`` this does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _held_in(y: Any, cal_rows: np.ndarray, n: int) -> Any:
    """``y`` (None, or one label per training row of the ``n``) without the held-out
    ``cal_rows``; a ValueError when its length is not ``n``."""
    if y is None:
        return None
    arr = y if hasattr(y, "iloc") else np.asarray(y)
    if arr.ndim == 0 or len(arr) != n:
        raise ValueError(f"y has {len(arr) if arr.ndim else 'no'} labels but X has {n} "
                         "samples; pass one label per sample")
    keep = np.setdiff1d(np.arange(n), cal_rows)
    return arr.iloc[keep] if hasattr(arr, "iloc") else arr[keep]


def _on_device(v: Any, device: str) -> Any:
    """``v`` moved to ``device`` if it is a module or tensor elsewhere, else ``v`` itself."""
    if isinstance(v, torch.nn.Module):
        p = next(iter(v.parameters()), None)
        if p is not None and p.device != torch.device(device):
            return copy.deepcopy(v).to(device)
        return v
    if isinstance(v, torch.Tensor) and v.device != torch.device(device):
        return v.to(device)
    return v


def _column_scales(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The mean and standard deviation of each column of ``X`` (float64), and the indices of
    the constant columns, whose scale is set to their largest absolute value, or to 1 if
    that is smaller (their standardised training values are then 0 up to rounding, and a
    constant column of values at most 1 in magnitude keeps the raw differences).

    A column is constant when its standard deviation is at most :math:`n\varepsilon` times
    its largest absolute value (n rows, :math:`\varepsilon` the float64 machine epsilon):
    within the error that rounding alone gives the mean of n equal values. The test is
    relative, so a column's units do not decide it: a column in units of 1e-13 is data, and
    one that is constant up to float rounding at an offset (1e6 plus a few ulps of noise) is
    constant. A column whose squares underflow float64 (values below about 1e-154) is
    measured again, relative to its first value and in units of its largest |value|.

    Raises
    ------
    ValueError
        The mean or standard deviation of a column overflows float64.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(scale)))
    if len(bad):
        big = float(np.abs(X[:, bad]).max())
        raise ValueError(
            f"X has values too large to standardise: the mean or standard deviation "
            f"of column(s) {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''} "
            f"overflows float64 (largest |value| {big:.3g}). Rescale these features "
            "(e.g. divide by a constant or take logarithms)."
        )
    lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    magnitude = np.maximum(np.abs(lo), np.abs(hi))
    tol = len(X) * np.finfo(np.float64).eps
    flat = ~(scale > tol * magnitude)
    again = np.flatnonzero(flat & (hi > lo))  # flat, or too small for the sum of squares
    if len(again):
        u = (X[:, again].astype(np.float64) - X[0, again]) / magnitude[again]
        sd = u.std(axis=0)
        s = sd * magnitude[again]
        data = (sd > tol) & (s > 0)
        cols = again[data]
        mean[cols] = X[0, cols] + u.mean(axis=0)[data] * magnitude[cols]
        scale[cols] = s[data]
        flat[cols] = False
    scale[flat] = np.maximum(magnitude[flat], 1.0)
    return mean, scale, np.flatnonzero(flat)
