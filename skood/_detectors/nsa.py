"""NSA: normalised self-supervised features scored by angular Mahalanobis distance.

Reference: M. Yousef, M. Ackermann, U. Kurup and T. Bishop, "No Shifted
Augmentations (NSA): compact distributions for robust self-supervised Anomaly
Detection", https://arxiv.org/abs/2203.10344.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .._augment import BoundCorruption, SimCLRAugment, TabularCorruption
from .._base import BaseDeepDetector
from .._nn.encoders import block_modules, build_encoder, capture_outputs
from .._nn.heads import SimCLRModel, SimSiamModel
from .._nn.losses import simsiam_loss
from .._scoring import (
    angular_distance,
    as_float_tensor,
    bank_subset,
    fit_whitening,
    knn_loo,
    unit_row_blocks,
    whiten,
)
from .._training import ContrastiveNet, SkoodNet, cosine_lr
from .._utils import check_range_pair, fit_rng, seed_stream, to_model_input

__all__ = ["NSADetector", "SimCLRNet", "SimSiamNet", "center_cosine", "minmax_ensemble"]

#: the scorers of the feature ensemble ("Ens." of the paper's appendix C)
_ENCODER_TERMS = ("kcos", "kcos-mah")
_HEAD_TERMS = ("ccos", "ccos-mah")


@torch.inference_mode()
def center_cosine(
    query: np.ndarray | torch.Tensor,
    center: np.ndarray | torch.Tensor,
    chunk_size: int = 4096,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    r"""Cosine similarity of each query row to one centre vector, :math:`\cos(\mu, q)`.

    Returns a float32 CPU tensor of shape (n_query,); a zero row gives 0.
    """
    c = F.normalize(as_float_tensor(center, device).reshape(1, -1), dim=1)
    out = [(q @ c.T)[:, 0].cpu() for _, q in unit_row_blocks(query, chunk_size, device, False)]
    return torch.cat(out) if out else torch.empty(0)


def minmax_ensemble(
    scores: list[np.ndarray], ranges: list[tuple[float, float]]
) -> np.ndarray:
    r"""Sum of scores, each min-max normalised with a reference range (NSA's feature ensemble).

    .. math::  s(x) = \sum_l \frac{s_l(x) - a_l}{\max(b_l - a_l, \epsilon)}

    where :math:`[a_l, b_l]` is the range of term l's scores on the training
    data (leave-one-out scores for kNN terms, or every training kNN score
    would be 0). Each term then contributes about [0, 1] on training-like data.

    Parameters
    ----------
    scores : list of arrays of shape (n,)
    ranges : list of (low, high), one per array
    """
    if len(scores) != len(ranges):
        raise ValueError(f"{len(scores)} score arrays but {len(ranges)} ranges")
    total = np.zeros(len(scores[0]) if scores else 0, dtype=np.float64)
    for s, (lo, hi) in zip(scores, ranges, strict=True):
        total += (np.asarray(s, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    return total


class _CleanBatchNorm:
    """Precise BN on the unaugmented training data (the samples NSA scores).

    The default of :class:`~skood._training.SkoodNet` recomputes BatchNorm's
    statistics with the objective's own input, augmented views; NSA's features
    are computed on clean samples, so their statistics are the ones to use.
    """

    module_: nn.Module

    def batchnorm_forward(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        self.module_(x)


class SimSiamNet(_CleanBatchNorm, SkoodNet):
    """skorch net that trains a :class:`~skood._nn.heads.SimSiamModel` on two views per sample.

    Each step draws two augmented views of the batch, embeds them in one
    forward pass and minimises :func:`~skood._nn.losses.simsiam_loss`. The
    BatchNorm statistics are recomputed on the clean training data at the end.

    Parameters
    ----------
    module : SimSiamModel
    augment : callable
        ``augment(x, generator) -> view``, batched and per-sample random.
    """

    def __init__(self, module: Any, *args: Any, augment: Any = None, **kwargs: Any) -> None:
        super().__init__(module, *args, **kwargs)
        self.augment = augment

    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        v1 = self.augment(x, self.generator_)
        v2 = self.augment(x, self.generator_)
        z, p = self.module_(torch.cat([v1, v2]))
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        return simsiam_loss(p1, p2, z1, z2)


class SimCLRNet(_CleanBatchNorm, ContrastiveNet):
    """:class:`~skood._training.ContrastiveNet` (2B x 2B NT-Xent) with the BatchNorm
    statistics recomputed on the clean training data at the end."""


class NSADetector(BaseDeepDetector):
    r"""Self-supervised features with NSA's normalisations, scored by angular distance.

    Read more in the :ref:`User Guide <nsa>`.

    Fit (Yousef et al., section 2):

    1. train an encoder f self-supervised on two augmented views per sample
       (SimCLR's augmentations, crops of area ``crop_scale``; *no*
       shifted/rotation negatives):

       * ``method="simsiam"``: projector g (3-layer MLP with BatchNorm) and
         predictor h (2-layer bottleneck MLP), loss
         :math:`\tfrac12 D(p_1, \mathrm{sg}(\hat z_2)) + \tfrac12 D(p_2, \mathrm{sg}(\hat z_1))`
         with :math:`D` the negative cosine and :math:`p_i = h(\hat z_i)`;
       * ``method="simclr"``: a 2-layer MLP head and NT-Xent with temperature
         :math:`\tau`.

       The paper's two modifications, both on by default:
       ``normalize_features`` feeds :math:`f(x)/\lVert f(x)\rVert` to g
       (section 2.3) and ``normalize_projection`` (SimSiam only) trains on
       :math:`\hat z = g(\cdot)/\lVert g(\cdot)\rVert` (section 2.4);
       Adam with cosine learning-rate decay; the BatchNorm statistics are
       then recomputed with the final weights on the clean training samples
       (the samples the score compares with);
    2. compute the training features :math:`f(x_m)` (the encoder's globally
       pooled last block), their mean :math:`\mu` and covariance
       :math:`\Sigma` (``whitening``), and :math:`W = \Sigma^{-1/2}`.

    Score (section 2.5, eq. 2): with :math:`u_m = W(f(x_m) - \mu)` and
    :math:`v = W(f(y) - \mu)`,

    .. math::  S_{k\text{-Cos}}(y) = \arccos \max_m
       \frac{u_m \cdot v}{\lVert u_m\rVert\,\lVert v\rVert}

    (the angular Mahalanobis distance to the nearest training sample) and
    ``score_samples(y)`` :math:`= -S`. With ``n_neighbors`` = k > 1 (skood's
    default k = 5; the paper's is k = 1) the kNN terms average the angles to
    the k nearest training samples,
    :math:`S = \tfrac1k \sum_{j=1}^{k} \arccos c_{(j)}` with :math:`c_{(j)}`
    the j-th largest cosine. A training sample is never its own
    neighbour, so training scores (and ``offset_``) are leave-one-out.
    ``scoring`` selects the variants: "kcos" (no whitening), "ccos"
    :math:`= \arccos\cos(\mu, f(y))` (angle to the training mean) and
    "ccos-mah" :math:`= \arccos\cos(W\mu, W f(y))` (the angle to the mean
    measured in the whitened space; centring first would send the mean to
    the origin, where no angle is defined).

    Feature ensemble (``ensemble=True``, the paper's "Ens."): in one forward
    pass, every block of the encoder (conv stages average-pooled to
    ``ensemble_pool`` x ``ensemble_pool`` and flattened; hidden layers for
    the tabular MLP) is scored with k-Cos and k-Cos(Mah), every layer of the
    projection head with c-Cos and c-Cos(Mah); each term is min-max
    normalised with the range of its leave-one-out training scores and the
    terms are summed: ``score_samples`` :math:`= -\sum_l (S_l - a_l)/(b_l - a_l)`.

    Defaults at a CPU budget (skood's, from measured probes on one-class
    Fashion-MNIST; the paper trains for 500-4000 epochs): images train with
    ``method="simclr"`` (SimSiam's features collapse onto a few directions
    within a few hundred steps), crops of at least half the image
    (``crop_scale=(0.5, 1)``; the paper's SimCLR set crops down to 8%) and
    are scored with "kcos" (whitening a covariance that a few directions
    dominate amplifies its noise directions; the paper's "kcos-mah" wins only
    after long training), at the paper's learning rate 1e-4 (``lr="auto"``;
    at 1e-3 twelve epochs move the small CNN away from initial features whose
    k-Cos is already better than the trained ones').
    The kNN terms average the angles to the 5 nearest training samples
    (``n_neighbors=5``; the paper's is the nearest one).
    ``NSADetector.from_preset("paper")`` is the paper's setting (SimSiam,
    k-Cos(Mah) with k = 1, crops of 8-100%, ResNet-18 for 4000 epochs);
    ``method="simsiam", scoring="kcos-mah", n_neighbors=1,
    crop_scale=(0.08, 1)`` with the default budget is the paper's method at
    skood's budget.

    Tabular data (skood's choice, not in the paper): the views are SCARF-style
    corruptions (30% of features resampled from the training marginals,
    Gaussian noise 0.1 on standardised features) and the encoder is an MLP.

    Frozen pretrained backbone (images with ``backbone`` a name of
    :data:`~skood.pretrained.PRETRAINED_BACKBONES`, a plain ``nn.Module`` or a
    frozen :class:`~skood.pretrained.PretrainedEncoder`; frozen-feature
    mode of :class:`~skood.BaseDeepDetector`): the frozen encoder (``feature_encoder_``)
    maps every image once, at fit and at scoring, and

    * ``frozen_features="score"`` (default; the paper's pretrained rows,
      Table 5 rows 5-7 and its appendix: "pretrained ResNet, no fine-tuning;
      scoring = kNN + Mahalanobis cosine, last layer features"): nothing is
      trained; the scorer compares the frozen feature vectors f(x) as they
      are (not standardised: the angle to the origin is what the cosine
      measures). ``scoring="auto"`` is "kcos" here: the whitening of
      k-Cos(Mah) centres the features, and centring ImageNet features
      (non-negative, pooled after a ReLU) discards the angle that separates
      classes (see the README's pretrained tables);
    * ``frozen_features="train"``: SimSiam or SimCLR trains the MLP encoder
      on the standardised feature vectors with the tabular corruption views,
      scored by the tabular default (``scoring="auto"``: "ccos-mah").

    A trainable ``PretrainedEncoder`` is fine-tuned on the images with the
    SimCLR views instead.

    Parameters
    ----------
    method : {"auto", "simsiam", "simclr"}, default="auto"
        Self-supervised objective; "auto" is "simclr" for an encoder trained
        on images and "simsiam" (the paper's) for tabular rows and the
        frozen-feature mode.
    normalize_features : bool, default=True
        L2-normalise f(x) before the projector (both methods).
    normalize_projection : bool, default=True
        L2-normalise the projection before the predictor (SimSiam only;
        ignored by SimCLR, whose loss normalises already).
    scoring : {"auto", "kcos-mah", "kcos", "ccos", "ccos-mah"}, default="auto"
        Feature scorer (ignored when ``ensemble=True``). "auto" is "kcos"
        for an encoder trained on images (the paper's "kcos-mah" after long
        training; see above) and for scored frozen features, and "ccos-mah"
        for tabular rows: an angle to the nearest neighbour discards the
        feature norm, so it misses outliers that are shifted away from the
        data but not rotated.
    n_neighbors : int, default=5
        Neighbours k whose angles the kNN terms ("kcos", "kcos-mah" and the
        ensemble's) average; 1 is the paper's nearest-neighbour score. Capped
        at the bank size minus one (so that training scores stay
        leave-one-out). Averaging a few angles steadies the score of a
        briefly trained encoder, of frozen pretrained features and of a
        polluted training set (see the README's NSA results).
    ensemble : bool, default=False
        Score with the feature ensemble described above (scored frozen
        features: k-Cos and k-Cos(Mah) of the feature vectors).
    ensemble_pool : int, default=1
        Spatial size to which conv feature maps are average-pooled in the
        ensemble (1: the paper's "conv_block (1x1)" features; larger values
        keep more of the map at d = C x pool^2 features per block).
    whitening : {"ledoit-wolf", "eigen-clip"}, default="ledoit-wolf"
        Covariance estimate of the whitening (see
        ``skood._scoring.fit_whitening``).
    frozen_features : {"score", "train"}, default="score"
        With a frozen pretrained backbone: score its features directly (the
        paper's pretrained baseline) or train NSA's self-supervised MLP on
        them first (see above). Ignored otherwise.
    crop_scale : tuple of two floats, default=(0.5, 1.0)
        Area fraction range of the random resized crop of the image views
        (SimCLR and the paper: (0.08, 1.0)); 0 < low <= high <= 1.
    max_epochs : int, default=12
        Epochs of self-supervised training (paper: 4000 SimSiam, 500 SimCLR).
    max_steps : int, "auto" or None, default="auto"
        Cap on the optimiser steps of each training phase. A phase runs its
        epochs while they take at most ``max_steps`` steps; beyond that, each
        epoch trains on the first ``max_steps // epochs`` batches of a fresh
        seeded permutation of all the rows, and the learning-rate schedules
        span the capped run. "auto": ``epochs * ceil(10000 / batch_size)``
        steps, i.e. each epoch sees at most 10,000 rows, so training costs
        what it costs on 10,000 rows whatever the number of rows (sets of up
        to 10,000 rows are never capped). None: the epochs alone (the "paper"
        preset). See :ref:`scaling`.
    backbone : str or nn.Module, default="auto"
        "auto", "mlp", "cnn", "resnet18", "resnet34", a pretrained name or an
        ``nn.Module``.
        Encoder f (paper: "resnet18"); a frozen pretrained encoder for
        images: see above.
    batch_size : int, default=64
        Training batch size (paper: 512).
    lr : float or "auto", default="auto"
        Adam learning rate, decayed to 0 with a cosine schedule over
        ``max_epochs``. "auto" is the paper's 1e-4 for an encoder trained on
        images (at the default budget a larger step moves the small CNN
        away from features whose k-Cos already beats the trained ones: see
        the README's NSA results) and 1e-3 for the MLP on tabular rows and
        frozen features.
    weight_decay : float, default=0.0
    temperature : float, default=0.2
        NT-Xent temperature (SimCLR only).
    projection_dim : int or None, default=None
        Projector width; None: 512 for SimSiam, 128 for SimCLR
        (SimSiam paper: 2048).
    predictor_dim : int or None, default=None
        SimSiam predictor bottleneck; None: ``projection_dim // 4``.
    max_train_scores : int, "auto" or None, default="auto"
        Most training rows ``fit`` scores (a seeded subset beyond); see
        :class:`~skood.BaseDeepDetector`.
    contamination, calibration, device, random_state, verbose, max_bank, image_shape
        See :class:`~skood.BaseDeepDetector`; the bank is what the kNN
        terms search.

    Attributes
    ----------
    model_ : SimSiamModel or SimCLRModel or None
        The trained network (encoder f and projector g; the predictor too);
        None when frozen features are scored without training.
    encoder_ : nn.Module or None
        The trained encoder f (``model_.encoder``); None as ``model_``.
    layer_names_ : list of str
        The feature layers scored (one, "encoder", without the ensemble).
    whitening_ : list of (mean, W) or None
        Per layer, the whitening fitted on the training features.
    terms_ : list of (layer index, scorer)
        The scored terms.
    banks_ : list of Tensor
        Per term, what a test feature is compared with: the training
        features of its layer (kNN terms) or their mean (centre terms),
        whitened for "-mah"; a centre-scored model keeps no per-row data.
    train_store_ : Tensor or None
        The training rows the kNN terms search (to skip a sample's own
        match); None when every term compares with a centre.
    ensemble_ranges_ : list of (float, float) or None
        Training range of each term's angular distance (ensemble only).
    history_ : dict
        skorch history of the training phase ("encoder"); empty when nothing
        was trained.
    offset_, train_scores_, n_features_in_, input_kind_, image_shape_, device_
        See :class:`~skood.BaseDeepDetector`.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import NSADetector
    >>> X = np.random.RandomState(0).normal(size=(200, 4))
    >>> det = NSADetector(max_epochs=1, random_state=0).fit(X)
    >>> det.predict(X[:3]).shape
    (3,)
    """

    #: the fitted attributes it adds to the base class's (skood.persistence checks them)
    _fitted_attributes: ClassVar[dict[str, str]] = {
        "model_": "network|None", "encoder_": "network|None", "history_": "dict",
        "bank_index_": "tensor|None", "layer_names_": "list", "layer_dims_": "list?",
        "terms_": "list", "whitening_": "list", "banks_": "list", "train_store_": "store|None",
        "ensemble_ranges_": "list|None",
    }
    _parameter_constraints: ClassVar[dict] = {
        **BaseDeepDetector._parameter_constraints,
        "max_bank": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "method": [StrOptions({"auto", "simsiam", "simclr"})],
        "crop_scale": [tuple, list],
        "normalize_features": ["boolean"],
        "normalize_projection": ["boolean"],
        "scoring": [StrOptions({"auto", "kcos-mah", "kcos", "ccos", "ccos-mah"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "ensemble": ["boolean"],
        "ensemble_pool": [Interval(Integral, 1, None, closed="left")],
        "whitening": [StrOptions({"ledoit-wolf", "eigen-clip"})],
        "frozen_features": [StrOptions({"score", "train"})],
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "projection_dim": [Interval(Integral, 1, None, closed="left"), None],
        "predictor_dim": [Interval(Integral, 1, None, closed="left"), None],
    }
    _frozen_feature_mode: ClassVar[bool] = True  # see skood._base
    _presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {
            "method": "simsiam",
            "scoring": "kcos-mah",
            "n_neighbors": 1,
            "crop_scale": (0.08, 1.0),
            "backbone": "resnet18",
            "max_epochs": 4000,
            "max_steps": None,
            "batch_size": 512,
            "lr": 1e-4,
            "projection_dim": 2048,
            "predictor_dim": 512,
        },
        "paper-simclr": {
            "method": "simclr",
            "scoring": "kcos-mah",
            "n_neighbors": 1,
            "crop_scale": (0.08, 1.0),
            "backbone": "resnet18",
            "max_epochs": 500,
            "max_steps": None,
            "batch_size": 512,
            "lr": 1e-4,
            "projection_dim": 128,
            "temperature": 0.2,
        },
    }

    def __init__(
        self,
        *,
        method: str = "auto",
        normalize_features: bool = True,
        normalize_projection: bool = True,
        scoring: str = "auto",
        n_neighbors: int = 5,
        ensemble: bool = False,
        ensemble_pool: int = 1,
        whitening: str = "ledoit-wolf",
        frozen_features: str = "score",
        crop_scale: tuple[float, float] = (0.5, 1.0),
        max_epochs: int = 12,
        max_steps: int | str | None = "auto",
        backbone: str = "auto",
        batch_size: int = 64,
        lr: float | str = "auto",
        weight_decay: float = 0.0,
        temperature: float = 0.2,
        projection_dim: int | None = None,
        predictor_dim: int | None = None,
        contamination: str | float = "auto",
        calibration: str | float = "loo",
        max_train_scores: int | str | None = "auto",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        max_bank: int | str | None = "auto",
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.method = method
        self.normalize_features = normalize_features
        self.normalize_projection = normalize_projection
        self.scoring = scoring
        self.n_neighbors = n_neighbors
        self.ensemble = ensemble
        self.ensemble_pool = ensemble_pool
        self.whitening = whitening
        self.frozen_features = frozen_features
        self.crop_scale = crop_scale
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.backbone = backbone
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.predictor_dim = predictor_dim
        self.contamination = contamination
        self.calibration = calibration
        self.max_train_scores = max_train_scores
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.max_bank = max_bank
        self.image_shape = image_shape

    # ------------------------------------------------------------------ fit
    def _build_model(self, shape: tuple[int, ...]) -> nn.Module:
        encoder = build_encoder(self._net_backbone, shape)
        if self._resolved_method() == "simsiam":
            p = self.projection_dim or 512
            return SimSiamModel(
                encoder,
                projection_dim=p,
                predictor_dim=self.predictor_dim or max(p // 4, 1),
                normalize_features=self.normalize_features,
                normalize_projection=self.normalize_projection,
            )
        return SimCLRModel(encoder, self.projection_dim or 128, self.normalize_features)

    @property
    def _scores_frozen_features(self) -> bool:
        """Frozen-feature mode with ``frozen_features="score"``: no training."""
        return self.frozen_features == "score" and getattr(self, "feature_mode_", False)

    @property
    def _standardizes_features(self) -> bool:
        return self.frozen_features != "score"

    def _fit_store(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        if self._scores_frozen_features:
            self.model_ = self.encoder_ = None
            self.history_ = {}
        else:
            self._train_encoder(Xs, seed)
        self.bank_index_ = bank_subset(len(Xs), self.max_bank, seed_stream(seed, "bank"))
        if hasattr(self, "layer_dims_"):
            del self.layer_dims_
        self._fit_scorer(Xs)

    def _fit_scorer(self, Xs: torch.Tensor) -> None:
        """Step 2 on the trained (or frozen) encoder: the scored terms of ``scoring`` /
        ``ensemble``, their feature banks and whitenings and (ensemble) their training
        ranges. Training does not depend on these, so another scorer of the same encoder
        needs only this step."""
        if self.ensemble and self.model_ is None:
            self.layer_names_ = ["features"]
            self.terms_ = [(0, t) for t in _ENCODER_TERMS]
        elif self.ensemble:
            enc = [(f"encoder.{n}", m) for n, m in block_modules(self.encoder_)]
            head = [(f"projector.{n}", m) for n, m in block_modules(self.model_.projector)]
            self.layer_names_ = [n for n, _ in enc + head]
            self.terms_ = [(i, t) for i in range(len(enc)) for t in _ENCODER_TERMS] + [
                (len(enc) + i, t) for i in range(len(head)) for t in _HEAD_TERMS
            ]
        else:
            self.layer_names_ = ["encoder" if self.model_ is not None else "features"]
            self.terms_ = [(0, self._resolved_scoring())]
        feats = self._layer_features(Xs)
        needs_w = {i for i, t in self.terms_ if t.endswith("-mah")}
        self.whitening_ = [
            fit_whitening(f, method=self.whitening) if i in needs_w else None
            for i, f in enumerate(feats)
        ]
        self.banks_ = [self._make_bank(feats[i], i, t) for i, t in self.terms_]
        # the rows the kNN terms search (the bank's rows); centre terms need none
        self.train_store_ = None
        if any(t.startswith("kcos") for _, t in self.terms_):
            self.train_store_ = Xs if self.bank_index_ is None else Xs[self.bank_index_]
        self.ensemble_ranges_ = None
        if self.ensemble:
            dists = self._term_distances(feats, Xs)
            self.ensemble_ranges_ = [(float(d.min()), float(d.max())) for d in dists]

    def _train_encoder(self, Xs: torch.Tensor, seed: int) -> None:
        """Self-supervised training (step 1): sets ``model_``, ``encoder_``, ``history_``."""
        dev = self.device_
        data = Xs.to(dev)
        crop_scale = check_range_pair("crop_scale", self.crop_scale, high_max=1.0)
        method = self._resolved_method()
        if self._trains_on_images:
            view = SimCLRAugment(crop_scale=crop_scale)
        else:
            view = BoundCorruption(TabularCorruption(frac=0.3, noise=0.1), data)
        with fit_rng():  # initial weights from the fit's generators
            model = self._build_model(tuple(Xs.shape[1:]))
        net_kwargs = {
            "name": f"NSA encoder ({method})",
            "max_epochs": self.max_epochs,
            "max_steps": self.max_steps,
            "batch_size": self.batch_size,
            "lr": self._resolved_lr(),
            "device": dev,
            "seed": seed,
            "verbose": self.verbose,
            "callbacks": [("cosine_lr", cosine_lr())],
            "optimizer__weight_decay": self.weight_decay,
        }
        if method == "simsiam":
            net = SimSiamNet(model, augment=view, **net_kwargs)
        else:
            net = SimCLRNet(
                model, augment=view, temperature=self.temperature, symmetric=True, **net_kwargs
            )
        net.fit(data)
        self.model_ = net.module_.eval()
        self.encoder_ = self.model_.encoder
        self.history_ = {"encoder": net.history}

    def _resolved_method(self) -> str:
        if self.method != "auto":
            return self.method
        return "simclr" if self._trains_on_images else "simsiam"

    def _resolved_lr(self) -> float:
        if self.lr != "auto":
            return float(self.lr)
        return 1e-4 if self._trains_on_images else 1e-3

    def _lower_lr_hint(self) -> str:
        return (f"Lower the learning rate: lr={self.lr!r}"
                + (f" (here {self._resolved_lr():g})." if self.lr == "auto" else "."))

    def _resolved_scoring(self) -> str:
        if self.scoring != "auto":
            return self.scoring
        return "kcos" if self._trains_on_images or self._scores_frozen_features else "ccos-mah"

    # ---------------------------------------------------------------- score
    def _layer_modules(self) -> list[nn.Module]:
        mods = dict(block_modules(self.encoder_))
        mods = {f"encoder.{n}": m for n, m in mods.items()}
        mods.update({f"projector.{n}": m for n, m in block_modules(self.model_.projector)})
        return [mods[n] for n in self.layer_names_]

    def _layer_features(self, Xs: torch.Tensor) -> list[torch.Tensor]:
        """Features of every scored layer, in one forward pass per batch."""
        if self.model_ is None:  # scored frozen features: the store is the feature vectors
            return [Xs.float()]
        self.model_.eval()
        if not self.ensemble:
            return [self._map_batches(self.encoder_, Xs)]
        taps = capture_outputs(self._layer_modules(), pool=self.ensemble_pool)

        def forward(x: torch.Tensor) -> torch.Tensor:
            with taps as outs:
                self.model_.project(x)
            return torch.cat([o.float() for o in outs], dim=1)

        if not hasattr(self, "layer_dims_"):  # in fit: the widths, from two samples
            with torch.inference_mode(), taps as outs:
                self.model_.project(to_model_input(Xs[:2], self._inference_device))
            self.layer_dims_ = [o.shape[1] for o in outs]
        return list(self._map_batches(forward, Xs).split(self.layer_dims_, dim=1))

    def _make_bank(self, feats: torch.Tensor, i: int, term: str) -> torch.Tensor:
        """The bank (kNN terms) or centre (centre terms) of layer ``i`` for ``term``.

        ``feats`` are the training features of layer ``i``.
        """
        if term.startswith("kcos") and self.bank_index_ is not None:
            feats = feats[self.bank_index_]
        dev = self._inference_device
        if term == "kcos":
            return feats
        if term == "kcos-mah":
            mean, W = self.whitening_[i]
            return whiten(feats, mean, W, self._chunk_size, dev)
        if term == "ccos":
            return feats.double().mean(0).float()
        # ccos-mah: the mean, whitened without centring
        mean, W = self.whitening_[i]
        return whiten(mean[None], None, W, self._chunk_size, dev)[0]

    def _term_distances(
        self, feats: list[torch.Tensor], Xs: torch.Tensor
    ) -> list[np.ndarray]:
        """Angular distance S of every term (float64 arrays, radians)."""
        dev, cs = self._inference_device, self._chunk_size
        out = []
        for (i, term), bank in zip(self.terms_, self.banks_, strict=True):
            if term in ("kcos", "kcos-mah"):
                q = feats[i]
                if term == "kcos-mah":
                    mean, W = self.whitening_[i]
                    q = whiten(q, mean, W, cs, dev)
                k = min(self.n_neighbors, max(len(bank) - 1, 1))  # leave-one-out stays possible
                cos = knn_loo(q, bank, k, Xs, self.train_store_, "cosine", cs, dev)
                out.append(angular_distance(cos).double().mean(1).numpy())
                continue
            if term == "ccos":
                cos = center_cosine(feats[i], bank, cs, dev)
            else:
                q = whiten(feats[i], None, self.whitening_[i][1], cs, dev)
                cos = center_cosine(q, bank, cs, dev)
            out.append(angular_distance(cos).double().numpy())
        return out

    @torch.inference_mode()
    def _score_store(self, Xs: torch.Tensor) -> np.ndarray:
        dists = self._term_distances(self._layer_features(Xs), Xs)
        if self.ensemble:
            return -minmax_ensemble(dists, self.ensemble_ranges_)
        return -dists[0]

    # ---------------------------------------------------------- persistence
    def _module_skeletons(self, shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """Untrained model of the fitted architecture (for ``load``; ``encoder_`` is its
        encoder); none when frozen features were scored without training."""
        if getattr(self, "model_", True) is None:
            return {}
        return {"model_": self._build_model(shape)}
