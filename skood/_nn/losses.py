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
* :func:`gamma_weighted_pair_loss`: SemSAD's discriminator;
* :func:`simsiam_loss`: SimSiam (NSA);
* :func:`product_of_experts`, :func:`dum_set_loss`: DUM.

DistillNeg's objectives are with it (:mod:`skood._detectors.dino`,
:mod:`skood._detectors.distillneg`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

__all__ = [
    "cross_entropy",
    "dum_set_loss",
    "float32_loss",
    "gamma_weighted_pair_loss",
    "nt_xent",
    "product_of_experts",
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


@float32_loss
def product_of_experts(
    mu: torch.Tensor, log_var: torch.Tensor, dim: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Product of diagonal Gaussian experts :math:`\prod_i N(\mu_i, \mathrm{diag}\,\sigma_i^2)`.

    With precisions :math:`w_i = 1/\sigma_i^2` (per dimension), the product is
    Gaussian with

    .. math::  \mu = \frac{\sum_i w_i \mu_i}{\sum_i w_i}, \qquad
       \Sigma = \Big(\sum_i w_i\Big)^{-1}

    (DUM, Wu & Goodman 2020, section 3; Cao & Fleet 2014). Computed in float32 with
    the precisions rescaled by their maximum along ``dim`` (the mean is
    invariant to it), so no exponential overflows.

    Parameters
    ----------
    mu, log_var : Tensor
        Means and log-variances of the experts, same shape; the experts run
        along ``dim``.
    dim : int
        Axis of the experts (reduced).

    Returns
    -------
    mean, var : Tensor
        The product's mean and (diagonal) variance.
    """
    mu, log_var = mu.float(), log_var.float()
    neg = -log_var
    top = neg.amax(dim=dim, keepdim=True)
    w = torch.exp(neg - top)  # precisions / max precision, in (0, 1]
    wsum = w.sum(dim=dim)
    mean = (w * mu).sum(dim=dim) / wsum
    var = torch.exp(-top.squeeze(dim)) / wsum
    return mean, var


@float32_loss
def dum_set_loss(
    mu: torch.Tensor,
    log_var: torch.Tensor,
    set_size: int,
    objective: str = "literal",
    temperature: float = 0.07,
    normalize: bool = True,
) -> torch.Tensor:
    r"""DUM's set objective, the "Deep Uncertainty Model" objective :math:`\mathcal L_{DUM}`.

    Wu & Goodman (2020), "A Simple Framework for Uncertainty in Contrastive
    Learning" (https://arxiv.org/abs/2010.02038), section 3.

    The rows are consecutive sets of :math:`2m` samples (``m = set_size``,
    :math:`m > 1`; the rows beyond the last whole set are ignored). For set
    s, :math:`a_s = \mu_{PoE}(x_{1:m})` is the product-of-experts mean of its
    first half and :math:`p_s = \mu_{PoE}(x_{1:2m})` that of the whole set
    (:func:`product_of_experts`), L2-normalised when ``normalize``.

    * ``"literal"``: maximise :math:`\frac1S\sum_s a_s^\top p_s` (the paper's
      written objective);
    * ``"infonce"``: InfoNCE over sets, other sets' means as negatives,
      :math:`-\frac1S\sum_s \log \frac{\exp(a_s^\top p_s/\tau)}
      {\sum_{s'} \exp(a_s^\top p_{s'}/\tau)}` (the paper's :math:`\tau = 0.07`).

    Returns the value to *minimise* (the negated objective, or the InfoNCE
    cross-entropy).

    Parameters
    ----------
    mu, log_var : Tensor of shape (n, d)
        Means (the fixed embeddings) and predicted log-variances of the rows.
    set_size : int
        m, half the size of a set; at least 2 (for m = 1 the variances leave
        the objective, paper section 3).
    objective : {"literal", "infonce"}
    temperature : float
        :math:`\tau` of the InfoNCE variant.
    normalize : bool
        L2-normalise the PoE means before the dot products.
    """
    if set_size < 2:
        raise ValueError(f"DUM needs sets of 2m samples with m > 1; got m = {set_size}")
    if objective not in ("literal", "infonce"):
        raise ValueError(f"objective must be 'literal' or 'infonce', got {objective!r}")
    n_sets = mu.shape[0] // (2 * set_size)
    if n_sets < 1:
        raise ValueError(f"{mu.shape[0]} rows cannot form one set of 2m = {2 * set_size}")
    d = mu.shape[1]
    mu = mu[: n_sets * 2 * set_size].reshape(n_sets, 2 * set_size, d)
    log_var = log_var[: n_sets * 2 * set_size].reshape(n_sets, 2 * set_size, d)
    a, _ = product_of_experts(mu[:, :set_size], log_var[:, :set_size], dim=1)
    p, _ = product_of_experts(mu, log_var, dim=1)
    if normalize:
        a, p = F.normalize(a, dim=1), F.normalize(p, dim=1)
    if objective == "literal":
        return -(a * p).sum(dim=1).mean()
    logits = a @ p.T / temperature
    return F.cross_entropy(logits, torch.arange(n_sets, device=logits.device))


