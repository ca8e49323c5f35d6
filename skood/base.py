"""BaseDeepDetector: the estimator contract every skood detector shares.

A detector subclasses :class:`BaseDeepDetector` and implements two methods:

* ``_fit_store(Xs, y)``: train on the validated training data ``Xs`` (a torch
  tensor in the *store* form below), inside a seeded RNG context;
* ``_score_store(Xs)``: return float64 scores, higher = more normal.

Everything else (validation of every input kind, device and seed resolution,
``offset_`` from the contamination, ``decision_function``/``predict``,
batched inference, tags, pickling across devices) lives here.

Store form: tabular rows are float32 ``(N, D)`` standardised with the
training mean and standard deviation (learned in ``fit``; the caller's
array is never modified); images are ``(N, C, H, W)`` tensors, uint8 when
the input was uint8 (0-255), else float32 in [0, 1].
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterator
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .nn.encoders import BACKBONES
from .utils import to_model_input

__all__ = ["BaseDeepDetector", "resolve_device", "seeded"]


def resolve_device(device: str) -> str:
    """Resolve ``"auto"``, ``"cpu"``, ``"cuda"``/``"cuda:i"`` or ``"mps"`` to a usable device.

    Raises
    ------
    ValueError
        When a GPU is asked for and none is available, or the name is unknown.
    """
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device='mps' was requested but the MPS backend is not available")
        return "mps"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but no CUDA GPU is available "
                "(torch.cuda.is_available() is False); use device='auto' or 'cpu'"
            )
        if ":" in device:
            idx = device.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise ValueError(
                    f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA "
                    "device(s)"
                )
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:<i>' or 'mps', got {device!r}")


@contextlib.contextmanager
def seeded(seed: int, device: str) -> Iterator[None]:
    """Seed torch's global RNGs for the block and restore the caller's state afterwards.

    Module initialisation in torch draws from the global RNG; forking it makes a
    fit reproducible without side effects on the caller's random state.
    """
    devices = []
    if device.startswith("cuda"):
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class BaseDeepDetector(OutlierMixin, BaseEstimator):
    """Base class of skood's detectors (not for direct use).

    Common parameters, with the same names and meaning in every detector:

    backbone : {"auto", "mlp", "cnn", "resnet18", "resnet34"}
        Encoder family; "auto" is an MLP for tabular data and the small CNN
        for images.
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
    device : str
        "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:<i>", "mps".
    random_state : int, RandomState or None
        Seeds every random choice of ``fit`` (initialisation, data order,
        augmentations); the caller's global random state is left untouched.
    verbose : int
        0 silent, 1 a progress bar per training phase, 2 a log line per epoch.
    image_shape : tuple of int or None
        ``(C, H, W)`` or ``(H, W)``: read 2-D input as flattened images of
        this shape (so images go through Pipelines and scikit-learn tools).
    max_bank : int or None
        (Detectors that score against training samples.) Largest number of
        training samples kept as the scorer's reference bank: a uniform
        random subset (drawn from ``random_state``) when the training set is
        larger; None keeps all. Training always uses every sample; the cap
        bounds the memory and time of scoring on large sets.

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features (pixels times channels for images).
    input_kind_ : {"tabular", "image"}
    image_shape_ : tuple of int or None
        ``(C, H, W)`` of the training images.
    device_ : str
        The device the networks were trained on.
    train_scores_ : ndarray of shape (n_samples,)
        ``score_samples`` of the training data, computed once at the end of
        ``fit``; kNN-based detectors never match a sample with itself, so
        these are leave-one-out scores.
    """

    _parameter_constraints: ClassVar[dict] = {
        "backbone": [StrOptions(set(BACKBONES))],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": [Interval(Integral, 0, 2, closed="both")],
        "image_shape": [tuple, list, None],
    }
    _presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: chunk size of the feature-space scorers (rows of query and bank at once)
    _chunk_size: ClassVar[int] = 4096

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
        """
        Xs = self._validate_input(X, reset=True)
        self.device_ = resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with seeded(seed, self.device_):
            self._fit_store(Xs, y, seed)
        self.train_scores_ = self._score_store(Xs)
        self.offset_ = self._offset_from(self.train_scores_)
        return self

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
        Xs = self._validate_input(X, reset=False)
        return self._score_store(Xs)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        """Fit on X and label its rows +1 (inlier) / -1 (outlier).

        The labels come from ``train_scores_`` (computed once by ``fit``, equal
        to ``score_samples`` of the training rows), so the data is not scored
        twice; equal to ``fit(X, y).predict(X)``. ``y`` is passed on to ``fit``.
        """
        self.fit(X, y)
        return np.where(self.train_scores_ - self.offset_ >= 0, 1, -1)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for outliers (``decision_function(X) < 0``)."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    # ------------------------------------------------------- for subclasses
    def _fit_store(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        raise NotImplementedError

    def _score_store(self, Xs: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _min_samples(self) -> int:
        """Fewest training samples the detector can work with."""
        return 2

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
    ) -> torch.Tensor:
        """Apply ``fn`` to ``Xs`` in batches on the inference device; concatenate on CPU."""
        dev = self._inference_device
        bs = batch_size or max(self.batch_size, 256)
        outs = [fn(to_model_input(Xs[i : i + bs], dev)).float().cpu()
                for i in range(0, len(Xs), bs)]
        return torch.cat(outs)

    def _offset_from(self, scores: np.ndarray) -> float:
        contamination = 0.1 if self.contamination == "auto" else self.contamination
        return float(np.percentile(scores, 100.0 * contamination))

    # ------------------------------------------------------- input handling
    def _validate_input(self, X: Any, reset: bool) -> torch.Tensor:
        name = type(self).__name__
        arr = np.asarray(X) if not hasattr(X, "iloc") else X
        ndim = getattr(arr, "ndim", 2)
        if ndim == 2 and (self.image_shape is None if reset else self.input_kind_ == "tabular"):
            Xv = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                               ensure_min_samples=1)
            Xv = self._check_samples(Xv, reset)
            return self._tabular_store(Xv, reset)
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
            self.input_kind_ = "image"
            self.image_shape_ = tuple(int(s) for s in imgs.shape[1:])
            self.n_features_in_ = int(np.prod(self.image_shape_))
        elif tuple(imgs.shape[1:]) != self.image_shape_:
            raise ValueError(
                f"{name} was fitted on images of shape (C, H, W) = {self.image_shape_}; got "
                f"images of shape {tuple(imgs.shape[1:])}"
            )
        return self._image_store(imgs)

    def _check_samples(self, X: np.ndarray, reset: bool) -> np.ndarray:
        if reset and len(X) < self._min_samples():
            raise ValueError(
                f"{type(self).__name__} with these parameters needs at least "
                f"{self._min_samples()} training samples; got n_samples = {len(X)}."
            )
        return X

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
        name = type(self).__name__
        if imgs.dtype == np.uint8:
            return torch.from_numpy(np.ascontiguousarray(imgs).copy())
        if imgs.dtype.kind in "biu":
            lo, hi = imgs.min(), imgs.max()
            if lo < 0 or hi > 255:
                raise ValueError(f"{name}: integer images must lie in 0-255; got [{lo}, {hi}]")
            return torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.uint8))
        lo, hi = float(imgs.min()), float(imgs.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name}: float images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]. "
                "Divide 0-255 images by 255 or pass them as uint8."
            )
        return torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32))

    def _tabular_store(self, X: np.ndarray, reset: bool) -> torch.Tensor:
        if reset:
            self.input_kind_ = "tabular"
            self.image_shape_ = None
            mean = X.mean(axis=0, dtype=np.float64)
            scale = X.std(axis=0, dtype=np.float64)
            scale[~(scale > 1e-12)] = 1.0
            self.feature_mean_, self.feature_scale_ = mean, scale
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
