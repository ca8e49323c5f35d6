"""SemSAD: semantic anomaly detection with a pair discriminator.

Reference: N. Rafiee, R. Gholamipoor and M. Kollmann, "Unsupervised Anomaly
Detection From Semantic Similarity Scores", https://arxiv.org/abs/2012.00461.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .._augment import BoundCorruption, SimCLRAugment, TabularCorruption
from .._base import FEATURE_SCALINGS, BaseDeepDetector
from .._nn.encoders import build_encoder
from .._nn.heads import ContrastiveModel
from .._nn.losses import float32_loss
from .._scoring import bank_subset, knn_cosine, row_fingerprints, skip_self_matches
from .._training import (
    ContrastiveNet,
    SkoodNet,
    piecewise_lr,
)
from .._utils import batch_slices, check_range_pair, fit_rng, seed_stream, to_model_input

#: SemSAD's own random streams, as offsets of the fit's seed (:func:`skood._utils.seed_stream`).
#: The discriminator's training phase (3) seeds its CPU generator with offset 4, the bank's
#: ("bank"); kept so that fits reproduce the scores of earlier skood versions.
_SEED_STREAMS = {
    "pool": 2,  # the random pool searched for semantic neighbourhoods
    "discriminator": 3,  # the pair discriminator's training phase
    "partners": 8,  # the training rows every sample is paired with to score it
}

__all__ = [
    "PairDiscriminator",
    "SemSADDetector",
    "SemSADNegative",
    "SemSADPairNet",
    "SemSADPositive",
    "gamma_weighted_pair_loss",
    "SemanticNeighbourhoods",
    "semantic_neighbourhoods",
]


class SemSADPositive(SimCLRAugment):
    """SemSAD's positive transform: crop scale (0.4, 1), flip, jitter p=0.8 (paper table 7)."""

    def __init__(self) -> None:
        super().__init__(crop_scale=(0.4, 1.0), gray_p=0.0)


class SemSADNegative(SimCLRAugment):
    """SemSAD's negative transform: crop (0.08, 1), flip, jitter p=0.8, blur sigma~U(0.1, 2).

    ``blur_p`` = 0.5 as in the reference code (paper table 6: 0.2).
    """

    def __init__(self, blur_p: float = 0.5) -> None:
        super().__init__(crop_scale=(0.08, 1.0), gray_p=0.0, blur_p=blur_p)


@float32_loss
def gamma_weighted_pair_loss(
    s_pos: torch.Tensor, s_neg: torch.Tensor, gamma: float
) -> torch.Tensor:
    r"""SemSAD's discriminator objective (eq. 4, with its shifted logit).

    "Unsupervised Anomaly Detection from Semantic Similarity Scores"
    (https://arxiv.org/abs/2012.00461).

    For raw discriminator outputs :math:`s` on positive and negative pairs, with
    :math:`a = s - \log\gamma` the objective (maximised, averaged over pairs
    and over the output logits) is

    .. math::  \mathbb{E}_{pos}[\log\sigma(a)] + \gamma\,\mathbb{E}_{neg}[\log(1-\sigma(a))].

    Its pointwise optimum is :math:`a^* = \log(p_{pos}/(\gamma\,p_{neg}))`, so
    :math:`s^* = \log(p_{pos}/p_{neg})` for every :math:`\gamma`: the weight
    reshapes the gradients (the paper's point) without moving the optimum of s.
    The returned value is the negated objective (to minimise), using
    :math:`\log\sigma(a) = -\mathrm{softplus}(-a)` and
    :math:`\log(1-\sigma(a)) = -\mathrm{softplus}(a)` for stability.
    """
    shift = math.log(gamma)
    a_pos = s_pos.float() - shift
    a_neg = s_neg.float() - shift
    return F.softplus(-a_pos).mean() + gamma * F.softplus(a_neg).mean()


class PairDiscriminator(nn.Module):
    """The discriminator s(x, x') of SemSAD (no weights shared with the encoder).

    Images: the two inputs are concatenated on the channel axis (as in the
    reference code) and go through ``backbone`` with ELU activations (paper,
    section 4.1). Tabular rows (skood's choice): the MLP sees
    ``[x, x', |x - x'|]``.
    A linear layer maps the features to ``n_logits`` outputs, trained
    independently and summed at test time.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one input, ``(D,)`` or ``(C, H, W)``.
    backbone : str
        Encoder family of :func:`~skood._nn.encoders.build_encoder` (images).
    n_logits : int, default=64
    norm : str, default="batch"
        Normalisation layers of the image backbone.
    """

    def __init__(
        self, input_shape: tuple[int, ...], backbone: str, n_logits: int = 64, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.is_image = len(input_shape) == 3
        if self.is_image:
            pair_shape = (2 * input_shape[0], *input_shape[1:])
        else:
            pair_shape = (3 * input_shape[0],)
        self.body = build_encoder(
            backbone if self.is_image else "mlp", pair_shape, activation="elu",
            norm=norm if self.is_image else "batch",
        )
        self.out = nn.Linear(self.body.out_features, n_logits)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.is_image:
            z = torch.cat([a, b], dim=1)
        else:
            z = torch.cat([a, b, (a - b).abs()], dim=1)
        return self.out(self.body(z))


class SemSADPairNet(SkoodNet):
    r"""skorch net that trains SemSAD's discriminator (paper eq. 3).

    For a batch of training samples x (indices ``idx``):

    * positives: with probability ``mu`` the pair ``(x, x_nb)`` with ``x_nb``
      uniform from the semantic neighbourhood S(x), untransformed; otherwise
      ``(t_pos(x), t_pos(x))``, two independent positive transforms;
    * negatives: ``(x, t_neg(x'))`` with ``x'`` another training sample;
    * loss: :func:`gamma_weighted_pair_loss` with
      :math:`\gamma \sim U(\text{gamma\_range})` drawn anew every step.

    ``neighbors`` is a table of each sample's neighbourhood (LongTensor of
    shape (n, n_neighbors)) or a ``SemanticNeighbourhoods``, which
    searches them all when training begins, or, when ``max_steps`` caps the
    phase below its epochs, the drawn samples' on demand.
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        data: torch.Tensor | None = None,
        neighbors: torch.Tensor | SemanticNeighbourhoods | None = None,
        positive: Any = None,
        negative: Any = None,
        gamma_range: tuple[float, float] = (1.0, 10.0),
        mu: float = 1 / 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, *args, **kwargs)
        self.data = data
        self.neighbors = neighbors
        self.positive = positive
        self.negative = negative
        self.gamma_range = gamma_range
        self.mu = mu

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Search every neighbourhood up front unless the step cap leaves samples undrawn."""
        super().on_train_begin(net, X=X, y=y, **kwargs)
        hoods = self.neighbors
        if isinstance(hoods, SemanticNeighbourhoods) and self.budget_.batches_per_epoch is None:
            hoods.search_all()

    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        g, dev = self.generator_, x.device
        n, b = len(self.data), len(x)
        idx = idx.to(dev)
        # positives: neighbour pairs with probability mu, else two positive views
        use_nb = torch.rand(b, generator=g, device=dev) < self.mu
        hoods = self.neighbors
        if isinstance(hoods, SemanticNeighbourhoods):
            pick = torch.randint(0, hoods.n_neighbors, (b,), generator=g, device=dev)
            nb = hoods.lookup(idx, use_nb)
        else:
            pick = torch.randint(0, hoods.shape[1], (b,), generator=g, device=dev)
            nb = hoods[idx]
        x_nb = to_model_input(self.data[nb.gather(1, pick[:, None])[:, 0]], dev)
        mask = use_nb.view(-1, *([1] * (x.dim() - 1)))
        pos_a = torch.where(mask, x, self.positive(x, g))
        pos_b = torch.where(mask, x_nb, self.positive(x, g))
        # negatives: (x, t_neg(x')) with x' a different training sample
        other = (idx + torch.randint(1, n, (b,), generator=g, device=dev)) % n
        neg_b = self.negative(to_model_input(self.data[other], dev), g)
        s = self.module_(torch.cat([pos_a, x]), torch.cat([pos_b, neg_b]))
        gamma = self.uniform(*self.gamma_range)
        return gamma_weighted_pair_loss(s[:b], s[b:], gamma)


def _draw_pool(n: int, pool_size: int, generator: torch.Generator) -> torch.Tensor:
    """The random pool of ``pool_size`` of ``n`` training samples searched for neighbours."""
    return torch.randperm(n, generator=generator)[:pool_size] if n > pool_size else torch.arange(n)


def _neighbours_in_pool(
    emb: torch.Tensor,
    rows: torch.Tensor,
    pool: torch.Tensor,
    pool_emb: torch.Tensor,
    n_neighbors: int,
    device: str = "cpu",
) -> torch.Tensor:
    """The ``n_neighbors`` pool samples most cosine-similar to each of ``emb`` (the
    embeddings of training samples ``rows``), never the sample itself."""
    k = min(n_neighbors + 1, len(pool))
    sims, idx = knn_cosine(emb, pool_emb, k=k, device=device, normalized=True)
    gidx = pool[idx]
    sims = sims.masked_fill(gidx == rows[:, None], float("-inf"))
    order = sims.argsort(dim=1, descending=True, stable=True)[:, :n_neighbors]
    return gidx.gather(1, order)


def semantic_neighbourhoods(
    emb: torch.Tensor,
    n_neighbors: int,
    pool_size: int,
    generator: torch.Generator,
    device: str = "cpu",
) -> torch.Tensor:
    """Indices of each sample's ``n_neighbors`` most cosine-similar training samples.

    The search runs over a random pool of ``pool_size`` training samples (all
    of them when there are fewer), never returns the sample itself and
    returns a LongTensor of shape (n, n_neighbors).
    """
    n = len(emb)
    pool = _draw_pool(n, pool_size, generator)
    return _neighbours_in_pool(emb, torch.arange(n), pool, emb[pool], n_neighbors, device)


class SemanticNeighbourhoods:
    """The semantic neighbourhoods S(x) of the training samples, searched up front or on demand.

    S(x) is the ``n_neighbors`` training samples most cosine-similar to x in the
    encoder's embedding, among a random pool of ``pool_size`` samples (all of
    them when there are fewer), never x itself (Rafiee et al., section 3).
    :meth:`search_all` finds every sample's, as the paper does, at a cost of
    n x pool similarities; :meth:`lookup` finds, on demand, those of the samples
    a training step asks for. A discriminator phase whose step cap leaves most
    samples undrawn (``max_steps``) looks them up on demand, so the search
    costs what the drawn samples need, not what n does.

    Parameters
    ----------
    embed : callable
        Maps stored training rows to unit-norm embeddings (on the CPU); it
        must embed each row independently of the others in its batch for
        ``on_demand`` (no batch statistics).
    data : Tensor
        The stored training samples.
    n_neighbors, pool_size : int
    generator : torch.Generator
        Draws the pool (once, here).
    device : str
        Where the similarities are computed.
    on_demand : bool, default=True
        Whether :meth:`lookup` may search samples one batch at a time; False:
        the first lookup searches every sample.

    Attributes
    ----------
    table : LongTensor of shape (n, n_neighbors)
        The neighbourhoods found so far; -1 in the rows of samples not searched.
    embeddings : Tensor of shape (n, d) or None
        Every sample's embedding, after :meth:`search_all`.
    """

    def __init__(self, embed: Any, data: torch.Tensor, n_neighbors: int, pool_size: int,
                 generator: torch.Generator, device: str = "cpu", on_demand: bool = True) -> None:
        self.embed = embed
        self.data = data
        self.n_neighbors = n_neighbors
        self.device = device
        self.on_demand = on_demand
        self.pool = _draw_pool(len(data), pool_size, generator)
        self.pool_embeddings: torch.Tensor | None = None
        self.embeddings: torch.Tensor | None = None
        self.table = torch.full((len(data), n_neighbors), -1, dtype=torch.long)
        self.searched_all = False

    def search_all(self) -> None:
        """Search every sample's neighbourhood (embedding every sample once)."""
        emb = self.embed(self.data)
        self.embeddings, self.pool_embeddings = emb, emb[self.pool]
        self.table = _neighbours_in_pool(emb, torch.arange(len(emb)), self.pool,
                                         self.pool_embeddings, self.n_neighbors, self.device)
        self.searched_all = True

    def lookup(self, idx: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        """The neighbourhoods of samples ``idx`` (shape (len(idx), n_neighbors), on the device
        of ``idx``), searched for the ``wanted`` ones not searched yet; the rows of the others
        hold the sample's own index when not searched."""
        if not self.searched_all:
            if not self.on_demand:
                self.search_all()
            else:
                rows = idx[wanted].cpu()
                rows = rows[self.table[rows, 0] < 0].unique()
                if len(rows):
                    if self.pool_embeddings is None:
                        self.pool_embeddings = self.embed(self.data[self.pool])
                    self.table[rows] = _neighbours_in_pool(
                        self.embed(self.data[rows]), rows, self.pool, self.pool_embeddings,
                        self.n_neighbors, self.device)
                nb = self.table[idx.cpu()].to(idx.device)
                return torch.where(nb < 0, idx[:, None], nb)
        if self.table.device != idx.device:
            self.table = self.table.to(idx.device)
        return self.table[idx]


class SemSADDetector(BaseDeepDetector):
    r"""Semantic anomaly detection with a contrastive encoder and a pair discriminator.

    Read more in the :ref:`User Guide <semsad>`.

    Fit (Rafiee et al., section 3):

    1. train a contrastive encoder h (unit-norm projection) with the
       InfoNCE loss of eq. 1, one-directional as in the reference code,
       :math:`-\log \frac{\exp(h(x_1)\cdot h(x_2)/\tau)}{\sum_j \exp(h(x_1)\cdot h(x_{2,j})/\tau)}`;
    2. embed the training set and find each sample's semantic neighbourhood
       S(x): its ``n_neighbors`` most similar training samples among a random
       pool of ``pool_size`` (on demand, for the samples training draws, when
       ``max_steps`` caps step 3: ``SemanticNeighbourhoods``);
    3. train a separate discriminator s(x, x') on positive pairs (neighbour
       pairs with probability ``mu``, else two positive views of one sample)
       against negative pairs (a sample and a strongly transformed other
       sample) by maximising (eq. 3), with :math:`a = s - \log\gamma`,

       .. math:: \mathbb{E}_{pos}\log\sigma(a) + \gamma\,\mathbb{E}_{neg}\log(1-\sigma(a)),
          \qquad \gamma \sim U(\text{gamma\_range}) \text{ every step.}

    Score, ``scoring="partners"`` (default, skood's): the semantic similarity
    of x to the training distribution, estimated over ``n_partners`` training
    samples :math:`x_1..x_M` drawn once at fit,

    .. math:: \text{score}(x) = \frac{1}{M}\sum_{j=1}^{M} s(x_j, x).

    ``scoring="nearest"`` is the paper's eq. 2: :math:`s(x_{next}, x)` with
    :math:`x_{next} = \arg\max_{x_i} h(x_i)\cdot h(x)` over the training set.
    A single nearest partner fails in two ways: on contaminated training data
    an anomaly's near-copies are in the bank, so its pair looks maximally
    similar, and :math:`s(x, x')` for near-identical pairs grows with the
    input's norm, since training never shows matched pairs far from the data.
    Fixed random partners are immune to both. Scores are summed over the
    ``n_logits`` outputs; higher means more normal. A sample identical to a
    bank row is never paired with that row, so the training scores (and
    ``offset_``) are leave-one-out in both modes.

    Tabular data (skood's choice, not in the paper): the encoder's views are
    SCARF-style corruptions (30% of features resampled from the training
    marginals, Gaussian noise 0.1 on standardised features); positive
    transforms resample 15% of features (noise 0.05), negative transforms 60%
    with heavy noise (standard deviation 2). The heavy noise puts negatives
    off the data's support, where test outliers lie: a discriminator that
    only saw in-support pairs extrapolates arbitrarily there.

    Frozen pretrained backbone (images with ``backbone`` a name of
    :data:`~skood.pretrained.PRETRAINED_BACKBONES`, a plain ``nn.Module`` or a
    frozen :class:`~skood.pretrained.PretrainedEncoder`; frozen-feature
    mode of :class:`~skood.BaseDeepDetector`): the frozen encoder (``feature_encoder_``)
    maps every image once, at fit and at scoring, and the tabular
    algorithm above runs on the standardised feature vectors: the contrastive
    MLP encoder with the corruption views, and the pair discriminator on
    feature vectors ``[z, z', |z - z'|]`` with the corruption positives and
    negatives (image transforms cannot act on feature vectors). A trainable
    ``PretrainedEncoder`` is fine-tuned on the images instead.

    Parameters
    ----------
    n_neighbors : int, default=4
        Size of the semantic neighbourhood S(x).
    scoring : {"partners", "nearest"}, default="partners"
        "partners": mean of :math:`s(x_j, x)` over ``n_partners`` fixed random
        training samples; "nearest": the paper's :math:`s(x_{next}, x)`.
    n_partners : int, default=32
        Training samples each sample is paired with when ``scoring="partners"``
        (all of the bank when it has fewer).
    gamma_range : tuple of two floats, default=(1.0, 10.0)
        :math:`\gamma` is drawn uniformly from this range at every step;
        ``(g, g)`` fixes it.
    mu : float, default=1/32
        Fraction of positive pairs taken from semantic neighbourhoods.
    encoder_epochs : int, default=10
        Epochs of contrastive encoder training (paper: 1500).
    discriminator_epochs : int, default=10
        Epochs of discriminator training (the paper does not state it; its
        learning-rate steps at 200 and 500 epochs suggest about 1000).
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
        ``nn.Module``. Encoder and discriminator family (paper: "resnet18"); a frozen
        pretrained encoder for images: see above.
    batch_size : int, default=32
        Encoder batch size (paper: 2048).
    discriminator_batch_size : int or None, default=None
        Pairs per discriminator step, as many positives as negatives
        (None: ``batch_size``; paper: 128).
    lr : float, default=1e-3
        Encoder learning rate, Adam (paper: 3e-4).
    discriminator_lr : float or None, default=None
        Discriminator learning rate, AMSGrad (paper: 5e-5). None: ``lr``.
    lr_schedule : {"constant", "steps"}, default="constant"
        Discriminator learning-rate schedule. "steps" is the paper's: x0.2
        after 20% and a further x0.1 after 50% of the epochs (200 and 500 of
        the paper's budget); at a few epochs it starves training, hence the
        constant default.
    weight_decay : float, default=1e-6
        Weight decay of both optimisers.
    temperature : float, default=0.5
        InfoNCE temperature (reference code 0.5; the paper says 1.0).
    projection_dim : int, default=128
    n_logits : int, default=64
        Discriminator outputs (reference code: 64, summed at test time;
        paper: 1).
    pool_size : int, default=10000
        Random pool searched for semantic neighbours.
    batch_norm : {"running", "batch"}, default="running"
        "running" scores with BatchNorm's running statistics, so a sample's
        score does not depend on the rest of its batch. "batch" reproduces
        the reference code, which normalises with the statistics of each
        scoring batch (scores then depend on the batch composition).
    max_train_scores : int, "auto" or None, default="auto"
        Most training rows ``fit`` scores (a seeded subset beyond); see
        :class:`~skood.BaseDeepDetector`.
    feature_scaling : {"auto", "standardize", "unit", "unit-standardize"}, default="auto"
        The representation of frozen pretrained features (frozen-feature mode only; tabular
        rows are always standardised): "standardize" standardises each feature; "unit"
        scales each feature vector to norm sqrt(d), which keeps the angles between them;
        "unit-standardize" does that, then standardises. "auto" is "unit" (unit-norm rows,
        not centred), chosen on both pretrained suites, each half of their classes
        (:ref:`pretrained`).
    contamination, calibration, device, random_state, verbose, max_bank, image_shape
        See :class:`~skood.BaseDeepDetector`; the bank is the
        neighbour search's reference set.

    Attributes
    ----------
    encoder_ : ContrastiveModel
        The trained contrastive encoder h.
    discriminator_ : PairDiscriminator
        The trained discriminator s.
    train_embeddings_ : Tensor of shape (n_bank, projection_dim)
        h of the reference bank (all training samples unless ``max_bank``).
    neighbors_ : LongTensor of shape (n_samples, n_neighbors)
        Semantic neighbourhoods of the training samples. When ``max_steps``
        caps the discriminator's phase below its epochs (more than about
        10,000 rows with the default), only the samples its steps draw as
        neighbour pairs are searched, on demand, and the rows of the others
        hold -1 (with ``batch_norm="batch"`` every sample is searched).
    partners_ : LongTensor of shape (min(n_partners, n_bank),)
        Bank rows every sample is paired with under ``scoring="partners"``.
    history_ : dict
        skorch histories of the two training phases ("encoder", "discriminator").
    offset_, train_scores_, n_features_in_, input_kind_, image_shape_, device_
        See :class:`~skood.BaseDeepDetector`.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import SemSADDetector
    >>> X = np.random.RandomState(0).normal(size=(200, 4))
    >>> det = SemSADDetector(encoder_epochs=1, discriminator_epochs=1, random_state=0).fit(X)
    >>> det.predict(X[:3]).shape
    (3,)
    """

    #: the fitted attributes it adds to the base class's (skood.persistence checks them)
    _fitted_attributes: ClassVar[dict[str, str]] = {
        "encoder_": "network", "discriminator_": "network", "train_embeddings_": "tensor",
        "neighbors_": "tensor", "partners_": "tensor", "train_store_": "store",
        "history_": "dict",
    }
    _auto_feature_scaling: ClassVar[str] = "unit"
    _parameter_constraints: ClassVar[dict] = {
        **BaseDeepDetector._parameter_constraints,
        "feature_scaling": [StrOptions({"auto", *FEATURE_SCALINGS})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "scoring": [StrOptions({"partners", "nearest"})],
        "n_partners": [Interval(Integral, 1, None, closed="left")],
        "max_bank": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "gamma_range": [tuple, list],
        "mu": [Interval(Real, 0, 1, closed="both")],
        "encoder_epochs": [Interval(Integral, 1, None, closed="left")],
        "discriminator_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "discriminator_batch_size": [Interval(Integral, 2, None, closed="left"), None],
        "discriminator_lr": [Interval(Real, 0, None, closed="neither"), None],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "n_logits": [Interval(Integral, 1, None, closed="left")],
        "pool_size": [Interval(Integral, 2, None, closed="left")],
        "batch_norm": [StrOptions({"running", "batch"})],
        "lr_schedule": [StrOptions({"constant", "steps"})],
    }
    _min_image_side: ClassVar[int] = 2  # the Gaussian blur reflects 1 pixel of border
    _frozen_feature_mode: ClassVar[bool] = True
    _presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {
            "backbone": "resnet18",
            "encoder_epochs": 1500,
            "discriminator_epochs": 1000,
            "max_steps": None,
            "batch_size": 2048,
            "discriminator_batch_size": 128,
            "lr": 3e-4,
            "discriminator_lr": 5e-5,
            "lr_schedule": "steps",
            "scoring": "nearest",
        },
    }

    def __init__(
        self,
        *,
        n_neighbors: int = 4,
        scoring: str = "partners",
        n_partners: int = 32,
        gamma_range: tuple[float, float] = (1.0, 10.0),
        mu: float = 1 / 32,
        encoder_epochs: int = 10,
        discriminator_epochs: int = 10,
        max_steps: int | str | None = "auto",
        backbone: str = "auto",
        batch_size: int = 32,
        discriminator_batch_size: int | None = None,
        lr: float = 1e-3,
        discriminator_lr: float | None = None,
        lr_schedule: str = "constant",
        weight_decay: float = 1e-6,
        temperature: float = 0.5,
        projection_dim: int = 128,
        n_logits: int = 64,
        pool_size: int = 10_000,
        batch_norm: str = "running",
        feature_scaling: str = "auto",
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
        self.scoring = scoring
        self.n_partners = n_partners
        self.gamma_range = gamma_range
        self.mu = mu
        self.encoder_epochs = encoder_epochs
        self.discriminator_epochs = discriminator_epochs
        self.max_steps = max_steps
        self.backbone = backbone
        self.batch_size = batch_size
        self.discriminator_batch_size = discriminator_batch_size
        self.lr = lr
        self.discriminator_lr = discriminator_lr
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.n_logits = n_logits
        self.pool_size = pool_size
        self.batch_norm = batch_norm
        self.feature_scaling = feature_scaling
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

    # ------------------------------------------------------------------ fit
    def _fit_store(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        gamma_range = check_range_pair("gamma_range", self.gamma_range)
        if self.pool_size <= self.n_neighbors and len(Xs) > self.pool_size:
            raise ValueError(
                f"pool_size={self.pool_size} must exceed n_neighbors={self.n_neighbors}"
            )
        dev = self.device_
        data = Xs.to(dev)
        shape = tuple(Xs.shape[1:])
        is_image = self._trains_on_images
        common = {"device": dev, "verbose": self.verbose, "max_steps": self.max_steps,
                  "optimizer__weight_decay": self.weight_decay}

        # 1. contrastive encoder h
        if is_image:
            view = SimCLRAugment()
            pos, neg = SemSADPositive(), SemSADNegative()
        else:
            view = BoundCorruption(TabularCorruption(frac=0.3, noise=0.1), data)
            pos = BoundCorruption(TabularCorruption(frac=0.15, noise=0.05), data)
            neg = BoundCorruption(TabularCorruption(frac=0.6, noise=2.0), data)
        with fit_rng():  # initial weights from the fit's generators, encoder first
            nets = self._build_networks(shape)
        enc_net = ContrastiveNet(
            nets["encoder_"],
            augment=view,
            temperature=self.temperature,
            symmetric=False,
            name="SemSAD encoder",
            max_epochs=self.encoder_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            **common,
        )
        enc_net.fit(data)
        self.encoder_ = enc_net.module_.eval()

        # 2. semantic neighbourhoods with the frozen encoder: searched for every sample
        # before the discriminator trains, or, when its step cap leaves samples undrawn,
        # for each sample the first time a step draws it (SemSADPairNet.on_train_begin)
        gen = torch.Generator().manual_seed(seed_stream(seed, "pool", _SEED_STREAMS))
        hoods = SemanticNeighbourhoods(self._embed, Xs, self.n_neighbors, self.pool_size, gen,
                                       device=dev, on_demand=self.batch_norm == "running")

        # 3. pair discriminator s
        d_epochs = self.discriminator_epochs
        disc_net = SemSADPairNet(
            nets["discriminator_"],
            data=data,
            neighbors=hoods,
            positive=pos,
            negative=neg,
            gamma_range=gamma_range,
            mu=self.mu,
            name="SemSAD discriminator",
            max_epochs=d_epochs,
            batch_size=self.discriminator_batch_size or self.batch_size,
            lr=self.discriminator_lr or self.lr,
            seed=seed_stream(seed, "discriminator", _SEED_STREAMS),
            optimizer__amsgrad=True,
            callbacks=self._lr_callbacks(),
            **common,
        )
        disc_net.fit(data)
        self.discriminator_ = disc_net.module_.eval()
        self.history_ = {"encoder": enc_net.history, "discriminator": disc_net.history}
        self.neighbors_ = hoods.table.cpu()
        keep = bank_subset(len(Xs), self.max_bank, seed_stream(seed, "bank"))
        self.train_store_ = Xs if keep is None else Xs[keep]
        # the scorer's bank: nearest neighbours among these rows
        if hoods.embeddings is not None:
            emb = hoods.embeddings
            self.train_embeddings_ = emb if keep is None else emb[keep]
        else:
            self.train_embeddings_ = self._embed(self.train_store_)
        n_bank = len(self.train_store_)
        gen = torch.Generator().manual_seed(seed_stream(seed, "partners", _SEED_STREAMS))
        self.partners_ = torch.randperm(n_bank, generator=gen)[: self.n_partners].sort().values

    def _build_networks(self, shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """The untrained encoder h and discriminator s of inputs of ``shape``, built in
        this order (``fit`` trains them; ``load`` fills in their weights)."""
        return {
            "encoder_": ContrastiveModel(build_encoder(self._net_backbone, shape),
                                         self.projection_dim),
            "discriminator_": PairDiscriminator(shape, self._net_backbone, self.n_logits),
        }

    def _lr_callbacks(self) -> list:
        if self.lr_schedule == "steps":
            return [("lr_steps", piecewise_lr((0.2, 0.5), (0.2, 0.02)))]
        return []

    # ---------------------------------------------------------------- score
    def _bn_mode(self, module: nn.Module) -> None:
        """Eval mode; in "batch" mode BatchNorm normalises with each batch's statistics."""
        module.eval()
        if self.batch_norm == "batch":
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
                    m.momentum = 0.0

    @property
    def _min_batch(self) -> int:
        """Smallest batch a forward pass may see: 2 when BatchNorm uses batch statistics."""
        return 2 if self.batch_norm == "batch" else 1

    def _embed(self, Xs: torch.Tensor) -> torch.Tensor:
        self._bn_mode(self.encoder_)
        return self._map_batches(self.encoder_, Xs, min_batch=self._min_batch)

    @torch.inference_mode()
    def _score_store(self, Xs: torch.Tensor) -> np.ndarray:
        self._bn_mode(self.discriminator_)
        if self.scoring == "partners":
            return self._partner_scores(Xs)
        if self.batch_norm == "batch" and len(Xs) < 2:
            raise ValueError(
                'SemSADDetector(batch_norm="batch", scoring="nearest") normalises with the '
                f"statistics of each scoring batch and needs at least 2 samples; got {len(Xs)}. "
                'Score more samples at once, or use batch_norm="running".'
            )
        dev = self._inference_device
        q = self._embed(Xs)
        k = min(2, len(self.train_embeddings_))
        _, idx = knn_cosine(q, self.train_embeddings_, k=k, chunk_size=self._chunk_size,
                            device=dev, normalized=True)
        nb = skip_self_matches(Xs, self.train_store_, idx)
        out = []
        for b in batch_slices(len(Xs), max(self.batch_size, 256), self._min_batch):
            a = to_model_input(self.train_store_[nb[b]], dev)
            out.append(self.discriminator_(a, to_model_input(Xs[b], dev)).float().sum(dim=1).cpu())
        return torch.cat(out).double().numpy()

    def _score_batch_rows(self) -> list[int]:
        """The base batch sizes and, with partner scoring, the samples per batch of pairs."""
        rows = super()._score_batch_rows()
        if self.scoring == "partners":
            rows.append(max(1, max(self.batch_size, 256) // len(self.partners_)))
        return rows

    def _partner_scores(self, Xs: torch.Tensor) -> np.ndarray:
        r""":math:`\frac{1}{M}\sum_j s(x_j, x)` over the fixed partners, skipping copies of x."""
        dev = self._inference_device
        partners = to_model_input(self.train_store_[self.partners_], dev)
        partner_keys = row_fingerprints(self.train_store_[self.partners_])
        m = len(partners)
        rows = max(1, max(self.batch_size, 256) // m)  # samples per batch of pairs
        out = []
        for b in batch_slices(len(Xs), rows, 1 if m > 1 else self._min_batch):
            x = to_model_input(Xs[b], dev)
            r = len(x)
            a = partners.repeat(r, *([1] * (x.dim() - 1)))  # (r * m, ...), partner fastest
            xb = x.repeat_interleave(m, dim=0)
            s = self.discriminator_(a, xb).float().sum(dim=1).view(r, m)
            keep = (row_fingerprints(Xs[b])[:, None] != partner_keys[None, :]).to(s.device)
            keep |= ~keep.any(dim=1, keepdim=True)  # every partner a copy: keep them all
            out.append(((s * keep).sum(dim=1) / keep.sum(dim=1)).cpu())
        return torch.cat(out).double().numpy()

    # ---------------------------------------------------------- persistence
    def _module_skeletons(self, shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """Untrained encoder and discriminator of the fitted architecture (for ``load``)."""
        return self._build_networks(shape)
