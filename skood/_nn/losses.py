"""Training objectives of the detectors, each written once, with its paper's equation.

Contract: every loss returns a scalar to *minimise* and is computed in
float32: under CUDA autocast (mixed precision training,
:class:`skood._training.SkoodNet`) the network's outputs may be bfloat16, and
autocast would run the losses' matrix products in bfloat16 too;
:func:`float32_loss` switches autocast off inside the loss and the losses
cast their inputs to float32. Without autocast (e.g. on the CPU) nothing
changes.

* :func:`cross_entropy` (RotAuxMSP's classifier and rotation heads);
* :func:`nt_xent`: SimCLR's contrastive loss (SemSAD, NSA, DUM encoders);
* :func:`simsiam_loss`: SimSiam (NSA).

An objective that only one detector uses lives with it: SemSAD's
discriminator loss in :mod:`skood._detectors.semsad`, DUM's set objective
in :mod:`skood._detectors._dum_parts`, DistillNeg's in
:mod:`skood._detectors.dino` and :mod:`skood._detectors.distillneg`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

__all__ = [
    "cross_entropy",
    "float32_loss",
    "nt_xent",
    "simsiam_loss",
]

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def float32_loss(fn: _Fn) -> _Fn:
    """Decorator: run ``fn`` with CUDA autocast disabled, so the loss is computed in float32.

    The decorated loss must cast its tensor inputs with ``.float()`` itself
    (the outputs of an autocast forward pass may be bfloat16). When autocast
    is not active (CPU training, or ``amp=False``) ``fn`` is called as it is.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_autocast_enabled("cuda"):
            return fn(*args, **kwargs)
        with torch.autocast("cuda", enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@float32_loss
def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`torch.nn.functional.cross_entropy` of class indices, computed in float32."""
    return F.cross_entropy(logits.float(), target)


@float32_loss
def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, symmetric: bool = True
) -> torch.Tensor:
    r"""Normalised-temperature cross-entropy (InfoNCE) over two views.

    With unit vectors :math:`z^{(1)}_i, z^{(2)}_i` of the two views of sample i
    and :math:`\tau` the temperature:

    * ``symmetric=False`` (SemSAD reference code): the B x B cross-entropy
      :math:`-\frac1B\sum_i \log \frac{\exp(z^{(1)}_i\cdot z^{(2)}_i/\tau)}
      {\sum_j \exp(z^{(1)}_i\cdot z^{(2)}_j/\tau)}`.
    * ``symmetric=True`` (SimCLR, eq. 1): the 2B x 2B version in which every
      view is an anchor and every other view of the batch (its own excluded)
      is a candidate.

    Chen, Kornblith, Norouzi & Hinton (2020), "A Simple Framework for
    Contrastive Learning of Visual Representations"
    (https://arxiv.org/abs/2002.05709).

    Parameters
    ----------
    z1, z2 : Tensor of shape (B, d)
        Embeddings of the two views; they are L2-normalised here.
    temperature : float
        :math:`\tau > 0`.
    symmetric : bool
        Which of the two forms above.
    """
    z1 = F.normalize(z1.float(), dim=1)
    z2 = F.normalize(z2.float(), dim=1)
    b = z1.shape[0]
    if not symmetric:
        logits = z1 @ z2.T / temperature
        return F.cross_entropy(logits, torch.arange(b, device=z1.device))
    z = torch.cat([z1, z2], dim=0)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    # view i's positive is view i + b and vice versa; built on the device (no copy)
    target = torch.arange(2 * b, device=z.device).roll(b)
    return F.cross_entropy(logits, target)


@float32_loss
def simsiam_loss(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    r"""SimSiam's symmetric negative cosine with stop-gradient (eq. 1-2).

    Chen & He (2021), "Exploring Simple Siamese Representation Learning"
    (https://arxiv.org/abs/2011.10566).

    With predictions :math:`p_i = h(z_i)` and projections :math:`z_i` of the
    two views,

    .. math::  \mathcal{L} = \tfrac12 D(p_1, \mathrm{sg}(z_2)) + \tfrac12 D(p_2, \mathrm{sg}(z_1)),
       \qquad D(p, z) = -\frac{p}{\lVert p\rVert_2}\cdot\frac{z}{\lVert z\rVert_2},

    averaged over the batch; :math:`\mathrm{sg}` (stop-gradient) is
    ``detach``. The minimum is -1.

    Parameters
    ----------
    p1, p2 : Tensor of shape (B, d)
        Predictor outputs of the two views.
    z1, z2 : Tensor of shape (B, d)
        Projector outputs of the two views (no gradient flows through them).
    """

    def neg_cos(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -F.cosine_similarity(p.float(), z.detach().float(), dim=1).mean()

    return 0.5 * (neg_cos(p1, z2) + neg_cos(p2, z1))
