r"""DistillNeg: self-distillation (DINO) with negative samples.

Rafiee, Gholamipoorfard, Adaloglou, Jaxy, Ramakers & Kollmann (2022),
"Self-Supervised Anomaly Detection by Self-Distillation and Negative
Sampling" (https://arxiv.org/abs/2201.06378); equation numbers are the
paper's. What is DistillNeg's own is here: the negatives
:math:`\mathcal{D}_{neg}` (sections 3.2, 4.1: :class:`NegativeSampler`), their
objective (eq. 4-5, :func:`uniform_cross_entropy`, :class:`DistillNegNet`)
and the kernel score (eq. 6, :func:`kernel_cosine`), plus skood's tabular
views (:class:`TabularViews`). The DINO machinery it trains with (multi-crop,
head, loss, EMA teacher, schedules; eq. 1-3) is in :mod:`skood._detectors.dino`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array
from torch import nn

from .._augment import RandomAffineMaps, TabularCorruption, random_rotate90
from .._base import BaseDeepDetector
from .._nn.encoders import BACKBONES, PRETRAINED_BACKBONES, build_encoder
from .._nn.losses import float32_loss
from .._scoring import bank_subset, unit_row_blocks
from .._training import SkoodNet
from .._utils import fit_rng, seed_stream, to_model_input
from .dino import (
    DINOModel,
    MultiCrop,
    SmallViT,
    clip_grad_per_param_,
    cosine_schedule,
    dino_center_update,
    dino_loss,
    ema_update_,
)

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
    "feature_permutation",
    "kernel_cosine",
    "nearest_cosine_gap",
    "patch_permutation",
    "pixel_permutation",
    "row_fingerprints",
    "uniform_cross_entropy",
]

Rows = np.ndarray | torch.Tensor

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
#: final learning rate of the cosine schedule (DINO's min_lr)
_MIN_LR = 1e-6
#: the paper's training settings (section 4), shared by its ResNet and ViT presets
_PAPER_SETTINGS: dict[str, Any] = {
    "max_epochs": 500,
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


def _uniform(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def patch_permutation(
    x: torch.Tensor, generator: torch.Generator, n_patches: int = 4
) -> torch.Tensor:
    """Cut each image into a g x g grid (g^2 = ``n_patches``) and shuffle the cells per sample.

    DistillNeg's "Perm-N" negatives. When a side is not a multiple of g, its
    last (side mod g) rows or columns stay in place.
    """
    g = math.isqrt(n_patches)
    if n_patches < 1 or g * g != n_patches:
        raise ValueError(f"n_patches must be a square number (4, 16, ...), got {n_patches}")
    n, c, h, w = x.shape
    ph, pw = h // g, w // g
    if ph == 0 or pw == 0:
        raise ValueError(f"images of {h} x {w} pixels cannot be cut into {g} x {g} patches")
    core = x[:, :, : g * ph, : g * pw]
    cells = core.reshape(n, c, g, ph, g, pw).permute(0, 2, 4, 1, 3, 5).reshape(n, g * g, c, ph, pw)
    perm = _uniform((n, g * g), generator).argsort(dim=1)
    cells = cells[torch.arange(n, device=x.device)[:, None], perm]
    core = cells.reshape(n, g, g, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, g * ph, g * pw)
    out = x.clone()
    out[:, :, : g * ph, : g * pw] = core
    return out


def pixel_permutation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shuffle the pixel positions of each image (one permutation per sample, all channels alike).

    DistillNeg's "Pix. Perm." negatives: the colour histogram is kept, every
    spatial structure destroyed.
    """
    n, c, h, w = x.shape
    perm = _uniform((n, h * w), generator).argsort(dim=1)
    flat = x.reshape(n, c, h * w)
    return flat.gather(2, perm[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def feature_permutation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shuffle the features of each tabular row (one permutation per row).

    The tabular analogue of a pixel permutation: the row's multiset of
    values is kept, its assignment to features destroyed.
    """
    perm = _uniform(tuple(x.shape), generator).argsort(dim=1)
    return x.gather(1, perm)


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


class DistillNegNet(SkoodNet):
    r"""skorch net: DINO self-distillation of a :class:`~.dino.DINOModel` with negatives.

    Every step (section 3):

    1. multi-crop views of the batch: the teacher sees the global views, the
       student every view; :math:`\mathcal{L}_{pos}` is
       :func:`~skood._detectors.dino.dino_loss` with the centred teacher output at
       temperature :math:`\tau_t` (linear warm-up ``teacher_temp``) and the
       student's at ``student_temp``;
    2. with ``lam > 0``: one global and ``n_local`` local views of the
       negative batch (``negatives(x, generator)``) through the student, and
       :math:`\mathcal{L}_{neg}` = :func:`uniform_cross_entropy`
       averaged over those views;
    3. :math:`\mathcal{L} = \mathcal{L}_{pos} + \lambda\mathcal{L}_{neg}` (eq. 5);
       per-parameter gradient-norm clipping at ``clip_grad`` (DINO's
       ``clip_gradients``, :func:`~skood._detectors.dino.clip_grad_per_param_`); an
       AdamW step with the learning rate and weight decay of this step
       (linear warm-up then cosine; no decay on biases and normalisation
       weights); the EMA teacher update with this step's
       momentum (cosine from ``teacher_momentum`` to 1) and the centre update.

    The steps are :class:`~skood._training.SkoodNet`'s hooks: the schedules in
    :meth:`before_step`, the clipping in :meth:`after_backward`, the teacher
    update in :meth:`after_step`. The optimiser (``optimizer``, AdamW in the
    detector) gets only the student's parameters
    (:meth:`get_all_learnable_params`), biases and normalisation weights
    without weight decay (``decay_1d=False``); its ``weight_decay`` starts at
    ``weight_decay[0]`` (``optimizer__weight_decay`` overrides it). When
    training ends, the teacher's BatchNorm statistics are recomputed with its
    final weights over the clean training data (precise BN:
    :meth:`batchnorm_module`, :meth:`batchnorm_forward`).
    The per-batch loss terms are recorded in the history as ``loss_pos`` and
    (with negatives) ``loss_neg``.

    Parameters
    ----------
    module : DINOModel
    views : callable
        ``views(x, generator) -> (global_views, local_views)``.
    negative_views : callable or None
        The same for the negatives (one global view).
    negatives : callable or None
        ``negatives(x, generator) -> negative source batch``.
    lam : float
    student_temp : float
    teacher_temp : tuple (start, end, warm-up fraction)
    center_momentum : float
    teacher_momentum : float
    weight_decay : tuple (start, end)
    lr_warmup : float
        Fraction of the steps of linear learning-rate warm-up.
    clip_grad : float
        0 disables clipping.
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        views: Any = None,
        negative_views: Any = None,
        negatives: Any = None,
        lam: float = 1.0,
        student_temp: float = 0.1,
        teacher_temp: tuple[float, float, float] = (0.055, 0.01, 1.0),
        center_momentum: float = 0.9,
        teacher_momentum: float = 0.996,
        weight_decay: tuple[float, float] = (0.04, 0.4),
        lr_warmup: float = 0.1,
        clip_grad: float = 3.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("decay_1d", False)
        kwargs.setdefault("optimizer__weight_decay", weight_decay[0])
        super().__init__(module, *args, **kwargs)
        self.views = views
        self.negative_views = negative_views
        self.negatives = negatives
        self.lam = lam
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.center_momentum = center_momentum
        self.teacher_momentum = teacher_momentum
        self.weight_decay = weight_decay
        self.lr_warmup = lr_warmup
        self.clip_grad = clip_grad

    # --- optimiser and schedules ---------------------------------------------
    def get_all_learnable_params(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The student's parameters (the teacher follows by EMA)."""
        for name, p in self.module_.student.named_parameters(prefix="student"):
            if p.requires_grad:
                yield name, p

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        super().on_train_begin(net, X=X, y=y, **kwargs)
        per_epoch = len(self.get_iterator(self.get_dataset(X), training=True))
        n = max(1, self.max_epochs * per_epoch)
        self.lr_schedule_ = cosine_schedule(self.lr, _MIN_LR, n, round(self.lr_warmup * n))
        self.wd_schedule_ = cosine_schedule(self.weight_decay[0], self.weight_decay[1], n)
        self.momentum_schedule_ = cosine_schedule(self.teacher_momentum, 1.0, n)
        t0, t1, frac = self.teacher_temp
        warm = max(1, round(frac * n))
        self.teacher_temp_schedule_ = np.concatenate(
            [np.linspace(t0, t1, warm), np.full(n - warm, t1)]
        )[:n]
        self.step_ = 0

    def _at(self, schedule: np.ndarray) -> float:
        return float(schedule[min(self.step_, len(schedule) - 1)])

    def before_step(self) -> None:
        """This step's learning rate and weight decay (biases and norms: no decay)."""
        decay, no_decay = self.optimizer_.param_groups
        decay["lr"] = no_decay["lr"] = self._at(self.lr_schedule_)
        decay["weight_decay"] = self._at(self.wd_schedule_)

    def after_backward(self) -> None:
        """DINO's per-parameter gradient clipping at ``clip_grad``."""
        if self.clip_grad > 0:
            clip_grad_per_param_(self.module_.student.parameters(), self.clip_grad)

    def after_step(self, x: torch.Tensor, idx: torch.Tensor, step: dict[str, Any]) -> None:
        """The EMA teacher update with this step's momentum (eq. 2)."""
        ema_update_(self.module_.teacher, self.module_.student, self._at(self.momentum_schedule_))
        self.step_ += 1

    # --- objective ---------------------------------------------------------------
    def _student(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Student logits of each view; views of one size go through in one forward pass."""
        if not views:
            return []
        return list(self.module_.student(torch.cat(views)).chunk(len(views)))

    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        model, g = self.module_, self.generator_
        views_g, views_l = self.views(x, g)
        with torch.no_grad():
            teacher = list(model.teacher(torch.cat(views_g)).chunk(len(views_g)))
        student = self._student(views_g) + self._student(views_l)
        tau_t = self._at(self.teacher_temp_schedule_)
        loss_pos = dino_loss(student, teacher, model.center, self.student_temp, tau_t)
        loss = loss_pos
        if self.lam > 0 and self.negatives is not None:
            neg_g, neg_l = self.negative_views(self.negatives(x, g), g)
            neg = self._student(neg_g) + self._student(neg_l)
            loss_neg = torch.stack([uniform_cross_entropy(o, self.student_temp)
                                    for o in neg]).mean()
            loss = loss_pos + self.lam * loss_neg
            self.record_batch_value("loss_neg", loss_neg)
        self.record_batch_value("loss_pos", loss_pos)
        model.center.copy_(dino_center_update(model.center, teacher, self.center_momentum))
        return loss

    # --- precise BatchNorm: the teacher's, on clean training data -------------
    def batchnorm_module(self) -> nn.Module:
        """The teacher: scoring uses its features."""
        return self.module_.teacher

    def batchnorm_forward(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        """The teacher on the unaugmented batch: scoring compares features of clean samples."""
        self.module_.teacher(x)


# --------------------------------------------------------------------------
# The score (eq. 6): a kernel sum in log space, leaving a sample's own copy out


def row_fingerprints(X: np.ndarray | torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """A 64-bit fingerprint of each row's exact values, on the model-input scale.

    Rows are read as the networks see them (:func:`skood._utils.to_model_input`:
    float32, uint8 images divided by 255), so the same image stored as uint8
    or as float in [0, 1] gets the same fingerprint. Equal rows get equal
    fingerprints; different rows collide with probability about 2^-64.
    Used as ``query_keys`` / ``bank_keys`` of :func:`kernel_cosine` to leave
    a sample's own copy out of its score.

    Returns
    -------
    LongTensor of shape (n_rows,)
    """
    out = []
    for s in range(0, len(X), chunk_size):
        blk = X[s : s + chunk_size]
        blk = torch.as_tensor(blk) if isinstance(blk, np.ndarray) else blk
        rows = (to_model_input(blk, "cpu").flatten(1) + 0.0).numpy()  # + 0.0: -0.0 -> 0.0
        out += [int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little",
                               signed=True) for r in rows]
    return torch.tensor(out, dtype=torch.int64)


@torch.inference_mode()
def kernel_cosine(
    query: Rows, bank: Rows, temperature: float = 0.04, chunk_size: int = 4096,
    device: str | torch.device = "cpu", normalized: bool = False,
    query_keys: torch.Tensor | None = None, bank_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Log of the mean exponentiated cosine similarity of each query row to a bank.

    .. math::  s(q) = \log \frac{1}{M}\sum_{m=1}^{M}
       \exp\Big(\frac{1}{\tau}\,\frac{q \cdot b_m}{\lVert q\rVert\,\lVert b_m\rVert}\Big)
       = \operatorname{logsumexp}_m \frac{\cos(q, b_m)}{\tau} - \log M

    the logarithm of DistillNeg's temperature-weighted kernel sum (eq. 6,
    whose anomaly score is :math:`\mathcal{S} = -e^{s(q)}`). Higher
    means more similar to the bank, i.e. more normal. Computed in log space
    (a running logsumexp over bank blocks, accumulated in float64), so it
    neither overflows for small :math:`\tau` (:math:`e^{1/\tau}` is
    :math:`e^{25}` at 0.04, :math:`e^{1000}` at 0.001) nor ever holds more
    than a ``chunk_size x chunk_size`` block of similarities.

    Parameters
    ----------
    query : array of shape (n_query, d)
    bank : array of shape (M, d)
    temperature : float
        :math:`\tau > 0` (paper: 0.04).
    chunk_size : int
        Rows of query and of bank handled at once.
    device : str or torch.device
        Where to compute; the result comes back on the CPU.
    normalized : bool
        Set when both inputs already have unit rows.
    query_keys, bank_keys : LongTensor of shapes (n_query,) and (M,), optional
        Bank rows whose key equals the query's key are left out of its sum
        (and of M), e.g. :func:`row_fingerprints` of the samples the
        features came from: scoring the training set against itself then
        gives leave-one-out scores. A query whose every bank row is left
        out falls back to the full sum.

    Returns
    -------
    Tensor of shape (n_query,), float64.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_bank = len(bank)
    if n_bank < 1:
        raise ValueError("the bank is empty")
    use_keys = query_keys is not None and bank_keys is not None
    blocks = [(blk, bank_keys[b0 : b0 + chunk_size].to(device) if use_keys else None)
              for b0, blk in unit_row_blocks(bank, chunk_size, device, normalized)]
    out = torch.empty(len(query), dtype=torch.float64)
    for q0, q in unit_row_blocks(query, chunk_size, device, normalized):
        acc = torch.full((len(q),), float("-inf"), dtype=torch.float64, device=device)
        acc_kept = acc.clone()
        kept = torch.zeros(len(q), dtype=torch.float64, device=device)
        qk = query_keys[q0 : q0 + chunk_size].to(device) if use_keys else None
        for blk, bk in blocks:
            logits = (q @ blk.T) / temperature
            acc = torch.logaddexp(acc, torch.logsumexp(logits, dim=1).double())
            if use_keys:
                same = qk[:, None] == bk[None, :]
                lse = torch.logsumexp(logits.masked_fill(same, float("-inf")), dim=1)
                acc_kept = torch.logaddexp(acc_kept, lse.double())
                kept += (~same).sum(dim=1).double()
        score = acc - math.log(n_bank)
        if use_keys:
            score = torch.where(kept > 0, acc_kept - kept.clamp(min=1).log(), score)
        out[q0 : q0 + len(q)] = score.cpu()
    return out


@torch.inference_mode()
def nearest_cosine_gap(
    bank: Rows, bank_keys: torch.Tensor | None = None, max_queries: int = 2048, seed: int = 0,
    chunk_size: int = 4096, device: str | torch.device = "cpu", normalized: bool = False,
) -> float:
    r"""Median over the bank of :math:`1 - \cos` to the nearest *other* bank row.

    The typical nearest-neighbour distance of the reference features, the
    scale of the adaptive kernel temperature (``kernel_temperature="auto"``
    of :class:`DistillNegDetector`). Rows whose key equals the query's key
    (exact copies of the query sample, :func:`row_fingerprints`) are left
    out; without keys only the row itself is. At most ``max_queries`` bank
    rows, drawn uniformly from a generator seeded with ``seed``, are the
    queries; every bank row is a candidate neighbour.

    Returns
    -------
    float, in [0, 2]; 0 when the features have collapsed (every query has an
    identical feature vector among the other rows).
    """
    n = len(bank)
    if n < 2:
        raise ValueError("the bank needs at least 2 rows")
    gen = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(n, generator=gen)[: max_queries].sort().values
    keys = (torch.as_tensor(bank_keys) if bank_keys is not None
            else torch.arange(n, dtype=torch.int64))
    bank = torch.as_tensor(bank)
    blocks = list(unit_row_blocks(bank, chunk_size, device, normalized))
    best = []
    for q0, q in unit_row_blocks(bank[pick], chunk_size, device, normalized):
        qk = keys[pick[q0 : q0 + chunk_size]].to(device)
        top = torch.full((len(q),), -2.0, device=device)
        for b0, blk in blocks:
            sim = q @ blk.T
            same = qk[:, None] == keys[b0 : b0 + len(blk)].to(device)[None, :]
            top = torch.maximum(top, sim.masked_fill(same, -2.0).max(dim=1).values)
        best.append(top.cpu())
    top = torch.cat(best)
    top = top[top > -2.0]  # queries with no other row (all copies) have no neighbour
    if len(top) == 0:
        return 0.0
    return float((1.0 - top.double()).clamp(min=0.0).median())


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

    Fit (section 3):

    1. a student g_s and a teacher g_t of identical architecture (encoder f
       and :class:`~skood._detectors.dino.DINOHead`: MLP, L2 normalisation,
       weight-normalised linear layer to K soft classes); the teacher is the
       exponential moving average of the student,
       :math:`\theta_t \leftarrow m\theta_t + (1 - m)\theta_s` (eq. 2), with m
       rising from ``teacher_momentum`` to 1 on a cosine;
    2. multi-crop: ``n_global_crops`` global views (crop scale 0.4-1, full
       size) and ``n_local_crops`` local views (scale 0.15-0.4, half size),
       flipped, colour-jittered, grey, blurred and solarised as in DINO
       (:class:`~skood._detectors.dino.MultiCrop`); the teacher sees the global views,
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
    (:func:`kernel_cosine`), so it neither overflows nor holds
    an n_test x n_train matrix. A sample identical to a training sample is
    scored without that training sample, so the training scores (and
    ``offset_``) are leave-one-out.

    The temperature (``kernel_temperature``; the paper's is 0.04): the
    default "auto" (skood's choice) is, for images,
    :math:`\tau = \tfrac14\,\delta` with :math:`\delta` the bank's median
    cosine distance from a feature to its nearest other bank feature
    (:func:`nearest_cosine_gap`). A briefly trained network's features lie
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
    features, before normalisation, so the cosine falls with the distance
    of the norms too.

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
    0.05), local views 50% (noise 0.1), see :class:`TabularViews`.

    Frozen pretrained backbone (images with ``backbone`` a name of
    ``skood._nn.encoders.PRETRAINED_BACKBONES``, a plain ``nn.Module`` or a
    frozen :class:`~skood.pretrained.PretrainedEncoder`; frozen-feature
    mode of :mod:`skood._base`): the frozen encoder (``feature_encoder_``)
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
    negatives : {"auto", "rotation", "perm-4", "perm-16", "pixel-perm", "affine", \
            "feature-perm", "corruption"} or array-like, default="auto"
        The negative distribution, see above. An array holds auxiliary
        samples in any input layout that ``fit`` accepts, with the training
        data's number of features (tabular) or channels (images).
    max_epochs : int, default=4
        Training epochs (paper: 500).
    backbone : {"auto", "mlp", "cnn", "resnet18", "resnet34", "vit"}, pretrained name or \
            nn.Module, default="auto"
        Encoder f (a frozen pretrained encoder for images: see above).
        "auto" is an MLP for tabular rows and the small CNN for images,
        which keeps the default budget small on a CPU; "resnet18" is the
        small-image ResNet (3x3 stem, no max-pool; much slower on a CPU),
        "vit" a
        small ViT (:class:`skood._detectors.dino.SmallViT`; the paper uses ViT-S/16).
        The pretrained ImageNet encoders and a user's ``nn.Module`` are
        accepted as well (see :class:`skood._base.BaseDeepDetector`).
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
    max_bank : int or None, default=None
        Largest number of training samples kept as the scorer's reference
        bank: a uniform random subset (drawn from ``random_state``) when the
        training set is larger; None keeps all. Training always uses every
        sample; the cap bounds the memory and time of scoring on huge sets.
    contamination, device, random_state, verbose, image_shape
        See :class:`skood._base.BaseDeepDetector`.

    Attributes
    ----------
    model_ : DINOModel
        Student, teacher (used for scoring) and centre.
    bank_ : Tensor of shape (n_samples, d)
        L2-normalised teacher features of the training samples (tabular:
        lifted, see above).
    feature_lift_ : float or None
        Tabular data: the constant c appended to the features before
        normalisation (the median norm of the training features); None for
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
        See :class:`skood._base.BaseDeepDetector`.

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

    _parameter_constraints: ClassVar[dict] = {
        **BaseDeepDetector._parameter_constraints,
        "max_bank": [Interval(Integral, 1, None, closed="left"), None],
        "backbone": [StrOptions({*BACKBONES, *PRETRAINED_BACKBONES, "vit"}), nn.Module],
        "lam": [Interval(Real, 0, None, closed="left")],
        "negatives": [StrOptions({"auto", *_IMAGE_NEGATIVES, *_TABULAR_NEGATIVES}), "array-like"],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
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
        contamination: str | float = "auto",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        max_bank: int | None = None,
        image_shape: tuple[int, ...] | None = None,
    ) -> None:
        self.lam = lam
        self.negatives = negatives
        self.max_epochs = max_epochs
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
        self.contamination = contamination
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
    def _build_encoder(self, shape: tuple[int, ...]) -> nn.Module:
        if self.backbone == "vit":
            return SmallViT(shape[0], (shape[1], shape[2]))
        return build_encoder(self._net_backbone, shape)

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
            model = DINOModel(self._build_encoder(shape), self.n_soft_classes,
                              self.head_hidden_dim, use_bn=self.head_bn)
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
        if not is_image:
            raw = self._map_batches(self.model_.features, Xs)
            self.feature_lift_ = float(raw.norm(dim=1).median())
        keep = bank_subset(len(Xs), self.max_bank, seed_stream(seed, "bank"))
        bank_rows = Xs if keep is None else Xs[keep]
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
        """:func:`kernel_cosine` of ``feats`` against the bank at each resolved temperature."""
        taus = self.kernel_temperature_
        return [kernel_cosine(feats, self.bank_, temperature=t, chunk_size=self._chunk_size,
                              device=self._inference_device, normalized=True,
                              query_keys=keys, bank_keys=self.bank_keys_)
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
        return {"model_": DINOModel(self._build_encoder(shape), self.n_soft_classes,
                                    self.head_hidden_dim, use_bn=self.head_bn)}
