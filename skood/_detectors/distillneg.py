r"""DistillNeg: self-distillation (DINO) with negative samples.

Rafiee, Gholamipoorfard, Adaloglou, Jaxy, Ramakers & Kollmann (2022),
"Self-Supervised Anomaly Detection by Self-Distillation and Negative
Sampling" (https://arxiv.org/abs/2201.06378); equation numbers are the
paper's. What is DistillNeg's own is here: the negatives
:math:`\mathcal{D}_{neg}` (sections 3.2, 4.1: :class:`NegativeSampler`), their
objective (eq. 4-5, :func:`uniform_cross_entropy`, :class:`DistillNegNet`)
and the scoring with two kernels, plus skood's tabular views
(:class:`TabularViews`). The DINO machinery it trains with (multi-crop, head,
loss, EMA teacher, schedules; eq. 1-3) is in :mod:`skood._detectors.dino`.
The generic pieces are in the shared layer: the kernel score (eq. 6,
:func:`skood._scoring.kernel_cosine`), its adaptive temperature
(:func:`skood._scoring.nearest_cosine_gap`), the leave-one-out fingerprints
(:func:`skood._scoring.row_fingerprints`) and the permutation negatives
(:func:`skood._augment.patch_permutation`, :func:`~skood._augment.pixel_permutation`,
:func:`~skood._augment.feature_permutation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array
from torch import nn

from .._augment import (
    RandomAffineMaps,
    TabularCorruption,
    feature_permutation,
    patch_permutation,
    pixel_permutation,
    random_rotate90,
)
from .._base import FEATURE_SCALINGS, BaseDeepDetector
from .._nn.encoders import BACKBONES, PRETRAINED_BACKBONES, build_encoder
from .._nn.losses import float32_loss
from .._scoring import bank_subset, kernel_cosine, nearest_cosine_gap, row_fingerprints
from .._utils import fit_rng, seed_stream, to_model_input
from .dino import DINOModel, DINONet, MultiCrop, SmallViT

#: DistillNeg's own random streams, as offsets of the fit's seed
#: (:func:`skood._utils.seed_stream`; the shared streams take 0, 1 and 4)
_SEED_STREAMS = {
    "affine": 5,  # the random affine maps of tabular negatives
    "kernel": 9,  # the bank rows that set the adaptive kernel temperature
}

__all__ = [
    "DistillNegDetector",
    "DistillNegNet",
    "NegativeSampler",
    "TabularViews",
    "uniform_cross_entropy",
]

_IMAGE_NEGATIVES = ("rotation", "perm-4", "perm-16", "pixel-perm")
_TABULAR_NEGATIVES = ("affine", "feature-perm", "corruption")
#: random affine maps drawn for the tabular "affine" negatives
_N_AFFINE_MAPS = 8
#: DINO's crop scales (global 0.4-1, local 0.15-0.4)
_GLOBAL_SCALE = (0.4, 1.0)
_LOCAL_SCALE = (0.15, 0.4)
#: kernel_temperature="auto": images' tau is _IMAGE_GAP_SCALE times the bank's median
#: nearest-neighbour cosine distance; tabular rows add a wide kernel of fixed tau (over lifted
#: features); the floor of an adaptive tau
_IMAGE_GAP_SCALE = 0.25
_TABULAR_WIDE_TEMPERATURE = 0.2
_MIN_KERNEL_TEMPERATURE = 1e-4
#: query rows of one kernel-sum block (against bank blocks of ``_chunk_size`` rows): a
#: quarter of the chunk bounds the similarity blocks that scoring holds at once
_KERNEL_QUERY_ROWS = 1024
#: the paper's training settings (section 4), shared by its ResNet and ViT presets
_PAPER_SETTINGS: dict[str, Any] = {
    "max_epochs": 500,
    "max_steps": None,
    "batch_size": 256,
    "lr": 0.004,
    "lr_warmup": 0.02,
    "n_local_crops": 8,
    "n_soft_classes": 4096,
    "head_hidden_dim": 2048,
    "teacher_momentum": 0.996,
    "warmup_teacher_temp": 0.055,
    "teacher_temp": 0.01,
    "head_bn": False,
    "kernel_temperature": 0.04,
}


# --------------------------------------------------------------------------
# Negatives (sections 3.2, 4.1): shifting transformations of the batch or of auxiliary data


@dataclass(eq=False)
class NegativeSampler:
    r"""Draws the source batch of negative samples :math:`\mathcal{D}_{neg}` for a training batch.

    ``kind``:

    * ``"rotation"``: the batch's images rotated by 90, 180 or 270 degrees
      (uniform per sample; the paper's "Rot. In-Dist");
    * ``"perm-4"`` / ``"perm-16"``: the images cut into 2 x 2 / 4 x 4 patches,
      shuffled ("Perm-N");
    * ``"pixel-perm"``: all pixel positions shuffled ("Pix. Perm.");
    * ``"array"``: as many rows of ``aux`` drawn uniformly with replacement,
      rotated like ``"rotation"`` when they are images ("Rot. ImgN");
    * tabular rows: ``"affine"`` maps each row by one of ``_N_AFFINE_MAPS``
      fixed random affine maps (GOAD-style,
      :class:`skood._augment.RandomAffineMaps`), ``"feature-perm"`` shuffles
      its features, ``"corruption"`` resamples 60% of them from the training
      marginals and adds Gaussian noise of standard deviation 1.

    The multi-crop views of the source batch are taken afterwards, so a
    negative view is :math:`t(r(x))` with r the shifting transformation and
    t the views' augmentation.
    """

    kind: str
    aux: torch.Tensor | None = field(default=None, repr=False)
    bank: torch.Tensor | None = field(default=None, repr=False)
    maps: RandomAffineMaps | None = field(default=None, repr=False)
    rotate: bool = False
    corruption: ClassVar[TabularCorruption] = TabularCorruption(frac=0.6, noise=1.0)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        g, kind = generator, self.kind
        if kind == "array":
            pick = torch.randint(0, len(self.aux), (len(x),), generator=g, device=g.device)
            src = to_model_input(self.aux[pick.to(self.aux.device)], x.device)
            return random_rotate90(src, g) if self.rotate else src
        if kind == "rotation":
            return random_rotate90(x, g)
        if kind in ("perm-4", "perm-16"):
            return patch_permutation(x, g, int(kind[5:]))
        if kind == "pixel-perm":
            return pixel_permutation(x, g)
        if kind == "feature-perm":
            return feature_permutation(x, g)
        if kind == "corruption":
            return self.corruption(x, g, self.bank)
        if kind == "affine":
            k = torch.randint(0, self.maps.n_maps, (len(x),), generator=g, device=g.device)
            return self.maps(x, k)
        raise ValueError(f"unknown kind of negatives {kind!r}")


# --------------------------------------------------------------------------
# Views of tabular rows (skood's choice; images take DINO's multi-crop)


@dataclass(eq=False)
class TabularViews:
    """skood's tabular analogue of multi-crop: global and local views of standardised rows.

    A global view resamples 20% of the features from the training marginals
    and adds Gaussian noise of 0.05; a local view, which like a small crop
    keeps less of the sample, resamples 50% and adds noise 0.1
    (:class:`skood._augment.TabularCorruption`).

    Returns ``(global_views, local_views)`` like :class:`skood._detectors.dino.MultiCrop`.
    """

    bank: torch.Tensor = field(repr=False)
    n_global: int = 2
    n_local: int = 8
    global_view: ClassVar[TabularCorruption] = TabularCorruption(frac=0.2, noise=0.05)
    local_view: ClassVar[TabularCorruption] = TabularCorruption(frac=0.5, noise=0.1)

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        g = [self.global_view(x, generator, self.bank) for _ in range(self.n_global)]
        loc = [self.local_view(x, generator, self.bank) for _ in range(self.n_local)]
        return g, loc


# --------------------------------------------------------------------------
# The objective: DINO's plus the negatives' (eq. 4-5)


@float32_loss
def uniform_cross_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Cross-entropy of the uniform distribution to ``softmax(logits / temperature)``.

    DistillNeg's negative objective (eq. 4): for K soft classes,

    .. math::  \mathcal{L}_{neg} = \Big\langle -\frac{1}{K}\sum_{k=1}^{K} \log p_s^k(x') \Big\rangle

    averaged over the batch; minimal (:math:`= \log K`) when the student's
    output on the negative view x' is uniform. This is eq. 3 with an
    infinitely hot teacher, :math:`\tau_t \to \infty`.
    """
    return -F.log_softmax(logits.float() / temperature, dim=-1).mean(dim=-1).mean()


class DistillNegNet(DINONet):
    r"""skorch net: :class:`~skood._detectors.dino.DINONet` with negatives (eq. 4-5).

    Every step as in :class:`~skood._detectors.dino.DINONet`; with
    ``lam > 0``, after the views of the batch, one global and ``n_local``
    local views of the negative batch (``negatives(x, generator)``) through
    the student, :math:`\mathcal{L}_{neg}` = :func:`uniform_cross_entropy`
    averaged over those views, and
    :math:`\mathcal{L} = \mathcal{L}_{pos} + \lambda\mathcal{L}_{neg}` (eq. 5).
    The per-batch :math:`\mathcal{L}_{neg}` is recorded in the history as
    ``loss_neg``.

    Parameters
    ----------
    module : DINOModel
    negative_views : callable or None
        ``negative_views(x, generator) -> (global_views, local_views)`` of the
        negatives (one global view).
    negatives : callable or None
        ``negatives(x, generator) -> negative source batch``.
    lam : float
    **kwargs
        :class:`~skood._detectors.dino.DINONet`'s (``views``, ``student_temp``, ...).
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        negative_views: Any = None,
        negatives: Any = None,
        lam: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, *args, **kwargs)
        self.negative_views = negative_views
        self.negatives = negatives
        self.lam = lam

    def extra_loss(self, x: torch.Tensor) -> torch.Tensor | None:
        r""":math:`\lambda\mathcal{L}_{neg}` on views of the negatives drawn for ``x``."""
        if not (self.lam > 0 and self.negatives is not None):
            return None
        g = self.generator_
        neg_g, neg_l = self.negative_views(self.negatives(x, g), g)
        neg = self.student_logits(neg_g) + self.student_logits(neg_l)
        loss_neg = torch.stack([uniform_cross_entropy(o, self.student_temp) for o in neg]).mean()
        self.record_batch_value("loss_neg", loss_neg)
        return self.lam * loss_neg


# --------------------------------------------------------------------------
# The score (eq. 6): a kernel sum in log space, leaving a sample's own copy out


def _robust_location_scale(scores: torch.Tensor) -> tuple[float, float]:
    """Median and interquartile range of ``scores`` (the standard deviation, else 1, when the
    range is 0), to put kernel scores of different temperatures on one scale."""
    s = scores.double()
    q25, q50, q75 = (float(v) for v in torch.quantile(s, torch.tensor([0.25, 0.5, 0.75],
                                                                      dtype=torch.float64)))
    scale = q75 - q25
    if not scale > 0:
        sd = float(s.std()) if len(s) > 1 else 0.0
        scale = sd if sd > 0 else 1.0
    return q50, scale


class DistillNegDetector(BaseDeepDetector):
    r"""Self-distillation (DINO) with negatives, scored by a kernel sum over the training set.

    Read more in the :ref:`User Guide <distillneg>`.

    Fit (section 3):

    1. a student g_s and a teacher g_t of identical architecture (encoder f
       and ``DINOHead``: MLP, L2 normalisation,
       weight-normalised linear layer to K soft classes); the teacher is the
       exponential moving average of the student,
       :math:`\theta_t \leftarrow m\theta_t + (1 - m)\theta_s` (eq. 2), with m
       rising from ``teacher_momentum`` to 1 on a cosine;
    2. multi-crop: ``n_global_crops`` global views (crop scale 0.4-1, full
       size) and ``n_local_crops`` local views (scale 0.15-0.4, half size),
       flipped, colour-jittered, grey, blurred and solarised as in DINO
       (``MultiCrop``); the teacher sees the global views,
       the student all of them;
    3. :math:`\mathcal{L}_{pos} = -\sum_{x''\in G}\sum_{x'\in V, x'\neq x''}
       p_t(x'')\log p_s(x')` (eq. 3) with
       :math:`p = \operatorname{softmax}(g/\tau)` (eq. 1), the teacher's
       output centred (centre momentum ``center_momentum``) and sharpened by
       :math:`\tau_t` falling linearly from ``warmup_teacher_temp`` to
       ``teacher_temp`` over the first ``teacher_temp_warmup`` of training,
       the student's at :math:`\tau_s` = ``student_temp``;
    4. negatives :math:`x' \sim \mathcal{D}_{neg}` (``negatives``; one global
       and ``n_local_crops`` local views each, as in the paper):
       :math:`\mathcal{L}_{neg} = -\frac1K\sum_{k}\log p_s^k(x')` (eq. 4),
       which pushes the student towards a uniform output on them, and
       :math:`\mathcal{L} = \mathcal{L}_{pos} + \lambda\mathcal{L}_{neg}`
       (eq. 5, :math:`\lambda` = ``lam``; ``lam=0`` is plain DINO and skips
       the negatives). Both terms are means over their view pairs / views;
    5. AdamW at a peak learning rate ``lr x batch_size / 256`` (linear
       warm-up over ``lr_warmup`` of the steps, cosine decay), weight decay
       rising from ``weight_decay`` to ``weight_decay_end`` on a cosine,
       per-parameter gradient clipping at ``clip_grad``.

    Score (eq. 6): with f the teacher's encoder features, L2-normalised, of
    a test sample and of the M training samples,

    .. math::  \texttt{score\_samples}(x) = \log \frac{1}{M}\sum_{m=1}^{M}
       \exp\Big(\frac{\cos(f_x, f_m)}{\tau}\Big), \qquad \tau = \texttt{kernel\_temperature}

    the logarithm of the paper's kernel sum :math:`-\mathcal{S}(x)`
    (monotone, so every ranking and AUROC is the paper's); higher means more
    normal. It is computed in log space and in blocks
    (``skood._scoring.kernel_cosine``), so it neither overflows nor holds
    an n_test x n_train matrix. A sample identical to a training sample is
    scored without that training sample, so the training scores (and
    ``offset_``) are leave-one-out.

    The temperature (``kernel_temperature``; the paper's is 0.04): the
    default "auto" (skood's choice) is, for images,
    :math:`\tau = \tfrac14\,\delta` with :math:`\delta` the bank's median
    cosine distance from a feature to its nearest other bank feature
    (``skood._scoring.nearest_cosine_gap``). A briefly trained network's features lie
    within a few hundredths of each other in cosine, where a fixed 0.04
    weighs the whole bank nearly alike and the score becomes a global
    density; the adaptive :math:`\tau` keeps the kernel local on the scale
    of the features actually learnt. For tabular rows "auto" sums two
    kernel scores, each standardised by the median and interquartile range
    of the bank's leave-one-out scores (``kernel_standardization_``):

    .. math::  \texttt{score\_samples}(x) = \sum_{\tau \in \{0.2,\ \delta\}}
       \frac{s_\tau(x) - \operatorname{med}_\tau}{\operatorname{IQR}_\tau}

    with :math:`s_\tau` the log kernel sum above: the wide kernel is a
    global density, which a cluster of anomalies inside contaminated
    training data does not fool; the narrow one finds anomalies that lie
    between normal clusters (both kinds occur among the ADBench sets).

    Tabular rows (skood's choice, not in the paper): an angle between
    features of a ReLU network cannot tell a row far out along some
    direction from a training row in that direction (the network is
    positively homogeneous far from the data). The features are therefore
    lifted, :math:`f \mapsto (f, c)` with c the median norm of the training
    features (of the bank's rows, see ``max_bank``), before normalisation,
    so the cosine falls with the distance of the norms too.

    Negatives (``negatives``): "rotation" (images rotated by 90/180/270
    degrees, the paper's "Rot. In-Dist"), "perm-4" / "perm-16" (2 x 2 / 4 x 4
    patches shuffled), "pixel-perm" (pixels shuffled), or an array of
    auxiliary samples (images are rotated, the paper's "Rot. ImgN"; images
    of another size are resized to the training size first, as in the
    paper). Tabular data (skood's choice, not in the paper): "affine" (each
    row mapped by one of 8 fixed random affine maps, GOAD-style),
    "feature-perm" (each row's features shuffled), "corruption" (60% of the
    features resampled from the training marginals plus Gaussian noise of
    standard deviation 1), or an array of auxiliary rows (used as given).
    "auto": "rotation" for images, "affine" for tabular rows. Tabular views
    (skood's choice): global views resample 20% of the features (noise
    0.05), local views 50% (noise 0.1), see ``TabularViews``.

    Frozen pretrained backbone (images with ``backbone`` a name of
    :data:`~skood.pretrained.PRETRAINED_BACKBONES`, a plain ``nn.Module`` or a
    frozen :class:`~skood.pretrained.PretrainedEncoder`; frozen-feature
    mode of :class:`~skood.BaseDeepDetector`): the frozen encoder (``feature_encoder_``)
    maps every image once, at fit and at scoring, and DINO with
    negatives runs on the standardised feature vectors: the MLP student and
    teacher, the tabular views and the tabular negatives ("auto": "affine";
    the image negatives cannot act on feature vectors and are refused; an
    array of auxiliary images is mapped by the frozen encoder too). A
    trainable ``PretrainedEncoder`` is fine-tuned on the images instead.

    Parameters
    ----------
    lam : float, default=1.0
        :math:`\lambda`, the weight of the negative objective (0: plain DINO).
    negatives : str or array-like, default="auto"
        "auto", "rotation", "perm-4", "perm-16", "pixel-perm", "affine",
        "feature-perm", "corruption", or an array of auxiliary samples.
        The negative distribution, see above. An array holds auxiliary
        samples in any input layout that ``fit`` accepts, with the training
        data's number of features (tabular) or channels (images).
    max_epochs : int, default=4
        Training epochs (paper: 500).
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
        "auto", "mlp", "cnn", "resnet18", "resnet34", "vit", a pretrained name or
        an ``nn.Module``.
        Encoder f (a frozen pretrained encoder for images: see above).
        "auto" is an MLP for tabular rows and the small CNN for images,
        which keeps the default budget small on a CPU; "resnet18" is the
        small-image ResNet (3x3 stem, no max-pool; much slower on a CPU),
        "vit" a
        small ViT (``skood._detectors.dino.SmallViT``; the paper uses ViT-S/16).
        The pretrained ImageNet encoders and a user's ``nn.Module`` are
        accepted as well (see :class:`~skood.BaseDeepDetector`).
    n_global_crops : int, default=2
        Global views per training sample (teacher and student); with fewer
        than 2, at least one local view is needed.
    n_local_crops : int, default=4
        Local views per training sample and per negative sample (paper: 8).
    n_soft_classes : int, default=4096
        K, the output dimension of the DINO head (paper: 4096).
    head_hidden_dim : int, default=512
        Width of the DINO head's hidden layers (DINO: 2048); its bottleneck
        has 256 dimensions.
    head_bn : bool, default=True
        BatchNorm in the DINO head's hidden layers (DINO's ``use_bn_in_head``;
        the paper's ViT runs have none). With a convolutional encoder and a
        budget of a few hundred steps, the head's outputs for different
        images start out so alike that the centred teacher targets are
        nearly uniform and training collapses to a uniform output;
        BatchNorm spreads them (skood's default).
    student_temp : float, default=0.1
        :math:`\tau_s`.
    teacher_temp : float, default=0.01
        Final teacher temperature :math:`\tau_t` (paper: 0.01).
    warmup_teacher_temp : float, default=0.02
        Initial :math:`\tau_t` (paper: 0.055 for CIFAR-10, 0.05 for CIFAR-100,
        over 500 epochs). At a few hundred steps a teacher that hot gives
        nearly uniform targets for most of the run and the student learns
        little.
    teacher_temp_warmup : float, default=1.0
        Fraction of training over which :math:`\tau_t` falls linearly (paper:
        the whole run).
    center_momentum : float, default=0.9
        Momentum of the centre of the teacher's outputs.
    teacher_momentum : float, default=0.99
        Initial EMA momentum m of the teacher, raised to 1 on a cosine (paper
        and DINO: 0.996, for some hundred thousand steps; at a few hundred
        steps the teacher would hardly leave its initialisation).
    batch_size : int, default=64
        Training samples per step (paper: 256); negatives come in batches of
        the same size.
    lr : float, default=0.004
        Base learning rate for a batch of 256; the peak is ``lr * batch_size / 256``
        (paper: 0.004).
    lr_warmup : float, default=0.1
        Fraction of the steps with a linear learning-rate warm-up (DINO: 10
        of 100 epochs).
    weight_decay, weight_decay_end : float, default=0.04, 0.4
        AdamW weight decay, raised from the first to the second on a cosine.
    clip_grad : float, default=3.0
        Maximum gradient norm per parameter tensor (0 disables clipping).
    kernel_temperature : "auto" or float, default="auto"
        :math:`\tau` of the scoring kernel (paper: 0.04, the "paper"
        presets' value). "auto" (see above): for images a quarter of the
        bank's median nearest-neighbour cosine distance :math:`\delta`; for
        tabular rows (and frozen pretrained features) two kernels, 0.2 and
        :math:`\delta`, standardised and summed. :math:`\delta` is measured
        over at most 2,048 bank rows; an adaptive :math:`\tau` is at least
        1e-4.
    max_bank : int, "auto" or None, default="auto"
        Largest number of training samples kept as the scorer's reference
        bank: a uniform random subset (drawn from ``random_state``) when the
        training set is larger; "auto" is 10,000 rows; None keeps all.
        Training always uses every sample; the cap bounds the memory and
        time of scoring on huge sets.
    max_train_scores : int, "auto" or None, default="auto"
        Most training rows ``fit`` scores (a seeded subset beyond); see
        :class:`~skood.BaseDeepDetector`.
    feature_scaling : {"auto", "standardize", "unit", "unit-standardize"}, default="auto"
        The representation of frozen pretrained features (frozen-feature mode only; tabular
        rows are always standardised): "standardize" standardises each feature; "unit"
        scales each feature vector to norm sqrt(d), which keeps the angles between them;
        "unit-standardize" does that, then standardises. "auto" is "unit-standardize"
        (unit-norm rows, then standardised), chosen on both pretrained suites, each half of
        their classes (:ref:`pretrained`).
    contamination, calibration, device, random_state, verbose, image_shape
        See :class:`~skood.BaseDeepDetector`.

    Attributes
    ----------
    model_ : DINOModel
        Student, teacher (used for scoring) and centre.
    bank_ : Tensor of shape (n_samples, d)
        L2-normalised teacher features of the training samples (tabular:
        lifted, see above).
    feature_lift_ : float or None
        Tabular data: the constant c appended to the features before
        normalisation (the median norm of the bank rows' features); None for
        images.
    kernel_temperature_ : float or tuple of two floats
        The resolved :math:`\tau`; for "auto" on tabular rows the pair
        (0.2, :math:`\delta`).
    kernel_standardization_ : tuple of two (median, scale) pairs or None
        With two kernels, the median and interquartile range of each
        kernel's leave-one-out scores of the bank; None with one kernel.
    bank_keys_ : LongTensor of shape (n_samples,)
        Fingerprints of the training samples (leave-one-out scoring).
    negatives_ : str
        The negatives used: a name, or "array".
    history_ : dict
        skorch history of the training phase ("dino"), with the per-batch
        terms "loss_pos" and (``lam > 0``) "loss_neg".
    offset_, train_scores_, n_features_in_, input_kind_, image_shape_, device_
        See :class:`~skood.BaseDeepDetector`.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import DistillNegDetector
    >>> rng = np.random.RandomState(0)
    >>> X, X_test = rng.normal(size=(200, 4)), rng.normal(size=(3, 4))
    >>> det = DistillNegDetector(negatives="feature-perm", max_epochs=1, random_state=0)
    >>> det.fit(X).score_samples(X_test).shape
    (3,)
    """

    #: the fitted attributes it adds to the base class's (skood.persistence checks them)
    _fitted_attributes: ClassVar[dict[str, str]] = {
        "model_": "network", "negatives_": "text", "history_": "dict",
        "feature_lift_": "real|None", "bank_": "tensor", "bank_keys_": "tensor",
        "kernel_temperature_": "real|tuple", "kernel_standardization_": "tuple|None",
    }
    _auto_feature_scaling: ClassVar[str] = "unit-standardize"
    _parameter_constraints: ClassVar[dict] = {
        **BaseDeepDetector._parameter_constraints,
        "feature_scaling": [StrOptions({"auto", *FEATURE_SCALINGS})],
        "max_bank": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "backbone": [StrOptions({*BACKBONES, *PRETRAINED_BACKBONES, "vit"}), nn.Module],
        "lam": [Interval(Real, 0, None, closed="left")],
        "negatives": [StrOptions({"auto", *_IMAGE_NEGATIVES, *_TABULAR_NEGATIVES}), "array-like"],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "n_global_crops": [Interval(Integral, 1, None, closed="left")],
        "n_local_crops": [Interval(Integral, 0, None, closed="left")],
        "n_soft_classes": [Interval(Integral, 2, None, closed="left")],
        "head_hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "head_bn": ["boolean"],
        "student_temp": [Interval(Real, 0, None, closed="neither")],
        "teacher_temp": [Interval(Real, 0, None, closed="neither")],
        "warmup_teacher_temp": [Interval(Real, 0, None, closed="neither")],
        "teacher_temp_warmup": [Interval(Real, 0, 1, closed="both")],
        "center_momentum": [Interval(Real, 0, 1, closed="both")],
        "teacher_momentum": [Interval(Real, 0, 1, closed="both")],
        "lr_warmup": [Interval(Real, 0, 1, closed="both")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "weight_decay_end": [Interval(Real, 0, None, closed="left")],
        "clip_grad": [Interval(Real, 0, None, closed="left")],
        "kernel_temperature": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
    }
    _min_image_side: ClassVar[int] = 2  # the Gaussian blur reflects 1 pixel of border
    _frozen_feature_mode: ClassVar[bool] = True  # see skood._base
    _presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"backbone": "resnet18", **_PAPER_SETTINGS},
        "paper-vit": {"backbone": "vit", **_PAPER_SETTINGS},
    }

    def __init__(
        self,
        *,
        lam: float = 1.0,
        negatives: str | Any = "auto",
        max_epochs: int = 4,
        max_steps: int | str | None = "auto",
        backbone: str = "auto",
        n_global_crops: int = 2,
        n_local_crops: int = 4,
        n_soft_classes: int = 4096,
        head_hidden_dim: int = 512,
        head_bn: bool = True,
        student_temp: float = 0.1,
        teacher_temp: float = 0.01,
        warmup_teacher_temp: float = 0.02,
        teacher_temp_warmup: float = 1.0,
        center_momentum: float = 0.9,
        teacher_momentum: float = 0.99,
        batch_size: int = 64,
        lr: float = 0.004,
        lr_warmup: float = 0.1,
        weight_decay: float = 0.04,
        weight_decay_end: float = 0.4,
        clip_grad: float = 3.0,
        kernel_temperature: str | float = "auto",
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
        self.lam = lam
        self.negatives = negatives
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.backbone = backbone
        self.n_global_crops = n_global_crops
        self.n_local_crops = n_local_crops
        self.n_soft_classes = n_soft_classes
        self.head_hidden_dim = head_hidden_dim
        self.head_bn = head_bn
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp_warmup = teacher_temp_warmup
        self.center_momentum = center_momentum
        self.teacher_momentum = teacher_momentum
        self.batch_size = batch_size
        self.lr = lr
        self.lr_warmup = lr_warmup
        self.weight_decay = weight_decay
        self.weight_decay_end = weight_decay_end
        self.clip_grad = clip_grad
        self.kernel_temperature = kernel_temperature
        self.feature_scaling = feature_scaling
        self.contamination = contamination
        self.calibration = calibration
        self.max_train_scores = max_train_scores
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.max_bank = max_bank
        self.image_shape = image_shape

    # ------------------------------------------------------------ validation
    def _check_config(self, shape: tuple[int, ...]) -> str:
        """Check the parameters against the data; return the resolved kind of negatives."""
        name = type(self).__name__
        if self.n_global_crops < 2 and self.n_local_crops < 1:
            raise ValueError(
                f"{name}: with n_global_crops={self.n_global_crops} the student needs at "
                "least one local view to learn from the teacher; set n_local_crops >= 1"
            )
        is_image = self._trains_on_images
        if not is_image and self._net_backbone not in ("auto", "mlp"):
            raise ValueError(
                f"backbone {self.backbone!r} needs images; tabular data takes 'mlp' or 'auto'"
            )
        if is_image and self.backbone == "mlp":
            raise ValueError("backbone 'mlp' is for tabular data; images take 'auto', 'cnn', "
                             "'resnet18', 'resnet34' or 'vit'")
        kind = self.negatives
        if not isinstance(kind, str):
            return "array"
        if kind == "auto":
            return "rotation" if is_image else "affine"
        if is_image and kind in _TABULAR_NEGATIVES:
            raise ValueError(
                f"negatives={kind!r} is for tabular data; images take 'rotation', 'perm-4', "
                "'perm-16', 'pixel-perm' or an array of auxiliary images"
            )
        if not is_image and kind in _IMAGE_NEGATIVES and self.feature_mode_:
            raise ValueError(
                f"negatives={kind!r} transforms images, but with the frozen pretrained backbone "
                f"{self.backbone!r} {name} trains on the encoder's feature vectors (frozen-"
                "feature mode); take 'auto' ('affine'), 'feature-perm', 'corruption' or an "
                "array of auxiliary images"
            )
        if not is_image and kind in _IMAGE_NEGATIVES:
            raise ValueError(
                f"negatives={kind!r} needs images; tabular data takes 'affine', "
                "'feature-perm', 'corruption' or an array of auxiliary rows"
            )
        if kind in ("perm-4", "perm-16"):
            g = 2 if kind == "perm-4" else 4
            if min(shape[1:]) < g:
                raise ValueError(f"negatives={kind!r} needs images of at least {g} x {g} pixels")
        return kind

    def _auxiliary_store(self) -> torch.Tensor:
        """The auxiliary negatives array, validated and in the training data's store form
        (auxiliary images resized to the training images' size; in frozen-feature mode then
        mapped to standardised feature rows like the training images)."""
        name = type(self).__name__
        try:
            A = check_array(self.negatives, allow_nd=True, dtype=None, input_name="negatives")
        except ValueError as e:
            raise ValueError(f"{name}: negatives array: {e}") from None
        if A.dtype.kind not in "biuf":
            raise ValueError(f"{name}: negatives array must be numeric; got dtype {A.dtype}")
        if self.input_kind_ == "tabular":
            if A.ndim != 2 or A.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"{name}: the negatives array must be 2-D with {self.n_features_in_} "
                    f"features like the training data; got shape {A.shape}"
                )
            return self._tabular_store(A.astype(np.float64), reset=False)
        if A.ndim == 2 and self.image_shape is None:
            raise ValueError(
                f"{name}: the negatives array is 2-D but the training data are images of "
                f"shape {self.image_shape_}; pass images (N, H, W[, C]) or (N, C, H, W)"
            )
        try:
            imgs = self._to_nchw(A, reset=False)
        except ValueError as e:
            raise ValueError(f"{name}: negatives array: {e}") from None
        shape = self.image_shape_  # (C, H, W) of the training images
        if imgs.shape[1] != shape[0]:
            raise ValueError(
                f"{name}: the negatives array has {imgs.shape[1]} channel(s), the training "
                f"images {shape[0]}"
            )
        store = self._image_store(imgs)
        if tuple(store.shape[2:]) != tuple(shape[1:]):  # resize to the training size (paper)
            store = F.interpolate(to_model_input(store, "cpu"), size=tuple(shape[1:]),
                                  mode="bilinear", antialias=True, align_corners=False)
            store = store.clamp_(0.0, 1.0)
        if self.feature_mode_:  # the training rows' features, standardised alike
            return self._feature_store(store, reset=False)
        return store

    # ------------------------------------------------------------------ fit
    def _build_model(self, shape: tuple[int, ...]) -> DINOModel:
        """Untrained student, teacher and centre for inputs of ``shape``: the networks of
        ``fit`` (which calls this under the fit's generators) and of ``load``."""
        encoder = (SmallViT(shape[0], (shape[1], shape[2])) if self.backbone == "vit"
                   else build_encoder(self._net_backbone, shape))
        return DINOModel(encoder, self.n_soft_classes, self.head_hidden_dim, use_bn=self.head_bn)

    def _fit_store(self, Xs: torch.Tensor, y: Any, seed: int) -> None:
        shape = tuple(Xs.shape[1:])
        kind = self._check_config(shape)
        is_image = self._trains_on_images
        aux = self._auxiliary_store() if kind == "array" else None
        if is_image and kind in ("rotation", "array") and shape[1] != shape[2]:
            raise ValueError(
                f"negatives={'an array' if aux is not None else repr(kind)} rotates images by "
                f"90 degrees, which needs square images; got {shape[1]} x {shape[2]}. Use "
                "negatives='perm-4', 'perm-16' or 'pixel-perm'"
            )
        dev = self.device_
        data = Xs.to(dev)
        if is_image:
            views = MultiCrop(self.n_global_crops, self.n_local_crops, _GLOBAL_SCALE, _LOCAL_SCALE)
            neg_views = MultiCrop(1, self.n_local_crops, _GLOBAL_SCALE, _LOCAL_SCALE)
        else:
            views = TabularViews(data, self.n_global_crops, self.n_local_crops)
            neg_views = TabularViews(data, 1, self.n_local_crops)
        maps = None
        if kind == "affine":
            maps = RandomAffineMaps(_N_AFFINE_MAPS, shape[0],
                                    seed=seed_stream(seed, "affine", _SEED_STREAMS),
                                    identity_first=False).to(dev)
        sampler = NegativeSampler(kind, aux=None if aux is None else aux.to(dev), bank=data,
                                  maps=maps, rotate=is_image)
        with fit_rng():  # initial weights from the fit's generators
            model = self._build_model(shape)
        net = DistillNegNet(
            model,
            views=views,
            negative_views=neg_views,
            negatives=sampler if self.lam > 0 else None,
            lam=self.lam,
            student_temp=self.student_temp,
            teacher_temp=(self.warmup_teacher_temp, self.teacher_temp, self.teacher_temp_warmup),
            center_momentum=self.center_momentum,
            teacher_momentum=self.teacher_momentum,
            weight_decay=(self.weight_decay, self.weight_decay_end),
            lr_warmup=self.lr_warmup,
            clip_grad=self.clip_grad,
            name="DistillNeg (DINO)",
            max_epochs=self.max_epochs,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            lr=self.lr * self.batch_size / 256,
            device=dev,
            seed=seed,
            verbose=self.verbose,
            optimizer=torch.optim.AdamW,
        )
        net.fit(data)
        self.model_ = net.module_.eval()
        self.negatives_ = kind
        self.history_ = {"dino": net.history}
        self.feature_lift_ = None
        keep = bank_subset(len(Xs), self.max_bank, seed_stream(seed, "bank"))
        bank_rows = Xs if keep is None else Xs[keep]
        if not is_image:  # the bank's median feature norm: one pass over at most the bank
            raw = self._map_batches(self.model_.features, bank_rows)
            self.feature_lift_ = float(raw.norm(dim=1).median())
        self.bank_ = self._features(bank_rows)
        self.bank_keys_ = row_fingerprints(bank_rows)
        self.kernel_temperature_ = self._resolve_kernel_temperature(is_image, seed)
        self.kernel_standardization_ = None
        if isinstance(self.kernel_temperature_, tuple):  # "auto" on rows: two kernels
            train = self._kernel_scores(self.bank_, self.bank_keys_)
            self.kernel_standardization_ = tuple(_robust_location_scale(c) for c in train)

    def _resolve_kernel_temperature(self, is_image: bool, seed: int) -> float | tuple:
        """The kernel's :math:`\\tau`: the given float; for "auto" on images a quarter of the
        bank's median nearest-neighbour cosine distance, on tabular rows the pair (wide, narrow)
        of ``_TABULAR_WIDE_TEMPERATURE`` and that distance."""
        if self.kernel_temperature != "auto":
            return float(self.kernel_temperature)
        if len(self.bank_) < 2:
            return 0.04 if is_image else _TABULAR_WIDE_TEMPERATURE
        gap = nearest_cosine_gap(self.bank_, self.bank_keys_,
                                 seed=seed_stream(seed, "kernel", _SEED_STREAMS),
                                 chunk_size=self._chunk_size, device=self._inference_device,
                                 normalized=True)
        if is_image:
            return max(_IMAGE_GAP_SCALE * gap, _MIN_KERNEL_TEMPERATURE)
        return (_TABULAR_WIDE_TEMPERATURE, max(gap, _MIN_KERNEL_TEMPERATURE))

    def _kernel_scores(self, feats: torch.Tensor, keys: torch.Tensor) -> list[torch.Tensor]:
        """:func:`~skood._scoring.kernel_cosine` of ``feats`` against the bank at each resolved
        temperature."""
        taus = self.kernel_temperature_
        return [kernel_cosine(feats, self.bank_, temperature=t, chunk_size=self._chunk_size,
                              device=self._inference_device, normalized=True,
                              query_keys=keys, bank_keys=self.bank_keys_,
                              query_rows=_KERNEL_QUERY_ROWS)
                for t in (taus if isinstance(taus, tuple) else (taus,))]

    # ---------------------------------------------------------------- score
    def _features(self, Xs: torch.Tensor) -> torch.Tensor:
        """L2-normalised teacher encoder features (float32, CPU); lifted for tabular rows."""
        self.model_.eval()
        f = self._map_batches(self.model_.features, Xs)
        if self.feature_lift_ is not None:
            f = torch.cat([f, torch.full((len(f), 1), self.feature_lift_)], dim=1)
        return F.normalize(f, dim=1)

    @torch.inference_mode()
    def _score_store(self, Xs: torch.Tensor) -> np.ndarray:
        scores = self._kernel_scores(self._features(Xs), row_fingerprints(Xs))
        if self.kernel_standardization_ is None:
            return scores[0].numpy()
        return sum((c - loc) / scale for c, (loc, scale)
                   in zip(scores, self.kernel_standardization_, strict=True)).numpy()

    # ---------------------------------------------------------- persistence
    def _module_skeletons(self, shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """Untrained student, teacher and centre of the fitted architecture (for ``load``)."""
        return {"model_": self._build_model(shape)}
