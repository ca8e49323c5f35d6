"""kNN on the features of a fixed encoder: the reference detector of every deep detector.

With an untrained backbone this is the "untrained encoder" reference row of
skood's benchmarks (a detector whose training does not beat its own
initial network has not learnt anything useful); with a pretrained backbone
it is DN2, Bergman, Cohen & Hoshen, "Deep Nearest Neighbor Anomaly
Detection" (https://arxiv.org/abs/2002.10445).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .._base import BaseDeepDetector
from .._nn.encoders import build_encoder
from .._scoring import bank_subset, knn_loo
from .._training import cumulative_batchnorm
from .._utils import fit_rng, seed_stream
from ..pretrained import PretrainedEncoder

__all__ = ["FeatureKNNDetector"]


class FeatureKNNDetector(BaseDeepDetector):
    r"""kNN score on the features of a fixed (untrained or pretrained) encoder.

    Read more in the :ref:`User Guide <feature_knn>`.

    ``fit`` builds the encoder f of ``backbone`` with its initial weights
    (drawn from ``random_state``; no gradient step), sets its BatchNorm
    statistics to those of the training samples (one forward pass; the
    statistics every trained detector's encoder also has), keeps it in
    evaluation mode and stores the features of the training samples (the
    bank). The score is
    the mean cosine similarity, or the negated mean Euclidean distance, to
    the k nearest bank features:

    .. math::  s(x) = \frac{1}{k} \sum_{m \in N_k(x)} \cos\big(f(x), f(x_m)\big)
               \quad\text{or}\quad
               -\frac{1}{k} \sum_{m \in N_k(x)} \lVert f(x) - f(x_m)\rVert_2,

    where :math:`N_k(x)` are the k training samples nearest to f(x), an
    exact copy of x excepted (training scores are leave-one-out). Higher is
    more normal.

    Parameters
    ----------
    n_neighbors : int, default=2
        k (DN2's default).
    metric : {"auto", "cosine", "euclidean"}, default="auto"
        "auto" is "cosine" for images (skood's untrained-encoder reference)
        and "euclidean" for tabular rows, where an angle would ignore how
        far out a row lies.
    recalibrate_batchnorm : bool, default=True
        Replace the BatchNorm running statistics by the mean statistics of
        the training samples' batches (``skood._training.cumulative_batchnorm``),
        those of the bank when ``max_bank`` draws a subset, so the cost of a
        fit stops growing with the rows; False keeps the initial ones (mean 0,
        variance 1: the identity). A pretrained encoder always keeps its own
        (ImageNet) statistics.
    backbone : str or nn.Module, default="auto"
        Encoder f, as in the other detectors ("auto": the small CNN for
        images, an MLP for tabular rows). A pretrained name such as
        "efficientnet_lite0" (frozen ImageNet features) makes this DN2.
    batch_size : int, default=256
        Rows per forward pass.
    max_train_scores : int, "auto" or None, default="auto"
        Most training rows ``fit`` scores (a seeded subset beyond); see
        :class:`~skood.BaseDeepDetector`.
    contamination, calibration, device, random_state, verbose, max_bank, image_shape
        See :class:`~skood.BaseDeepDetector`; ``verbose`` has no effect
        (nothing is trained).

    Attributes
    ----------
    encoder_ : nn.Module
        The encoder f, in evaluation mode.
    bank_ : Tensor of shape (n_bank, d)
        Features of the training samples (of the ``max_bank`` subset).
    train_store_ : Tensor
        The training samples of the bank (to skip a sample's own match).
    offset_, train_scores_, n_features_in_, input_kind_, image_shape_, device_
        See :class:`~skood.BaseDeepDetector`.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import FeatureKNNDetector
    >>> X = np.random.RandomState(0).normal(size=(100, 4))
    >>> FeatureKNNDetector(random_state=0).fit(X).score_samples(X[:2]).shape
    (2,)
    """

    #: the fitted attributes it adds to the base class's (skood.persistence checks them)
    _fitted_attributes: ClassVar[dict[str, str]] = {
        "encoder_": "network", "train_store_": "store", "bank_": "tensor",
    }
    _parameter_constraints: ClassVar[dict] = {
        **{k: v for k, v in BaseDeepDetector._parameter_constraints.items() if k != "lr"},
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"auto", "cosine", "euclidean"})],
        "recalibrate_batchnorm": ["boolean"],
        "max_bank": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    }

    def __init__(
        self,
        *,
        n_neighbors: int = 2,
        metric: str = "auto",
        recalibrate_batchnorm: bool = True,
        backbone: str = "auto",
        batch_size: int = 256,
        contamination: str | float = "auto",
        calibration: str | float = "loo",
        max_train_scores: int | str | None = "auto",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        max_bank: int | str | None = "auto",
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.recalibrate_batchnorm = recalibrate_batchnorm
        self.backbone = backbone
        self.batch_size = batch_size
        self.contamination = contamination
        self.calibration = calibration
        self.max_train_scores = max_train_scores
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.max_bank = max_bank
        self.image_shape = image_shape

    def _min_samples(self) -> int:
        return self.n_neighbors + 1

    def _lower_lr_hint(self) -> str:
        return "Nothing is trained: the encoder's features are not finite for this input."

    def _build(self, shape: tuple[int, ...]) -> nn.Module:
        return build_encoder(self.backbone, shape).eval()

    def _fit_store(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        with fit_rng():  # initial weights from the fit's generators
            self.encoder_ = self._build(tuple(Xs.shape[1:])).to(self.device_)
        idx = bank_subset(len(Xs), self.max_bank, seed_stream(seed, "bank"))
        self.train_store_ = Xs if idx is None else Xs[idx]
        if self.recalibrate_batchnorm and not isinstance(self.encoder_, PretrainedEncoder):
            with cumulative_batchnorm(self.encoder_) as has_bn:
                if has_bn:  # forward passes in training mode update the statistics only
                    self._map_batches(self.encoder_.train(), self.train_store_, min_batch=2)
            self.encoder_.eval()
        self.bank_ = self._map_batches(self.encoder_, self.train_store_)

    @torch.inference_mode()
    def _score_store(self, Xs: torch.Tensor) -> np.ndarray:
        feats = self._map_batches(self.encoder_, Xs)
        k = min(self.n_neighbors, len(self.bank_))
        metric = self.metric
        if metric == "auto":
            metric = "cosine" if self.input_kind_ == "image" else "euclidean"
        near = knn_loo(feats, self.bank_, k, Xs, self.train_store_, metric,
                       self._chunk_size, self._inference_device).double().mean(1)
        return (near if metric == "cosine" else -near).numpy()

    def _module_skeletons(self, shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """The untrained encoder of the fitted architecture (for ``load``)."""
        return {"encoder_": self._build(shape)}
