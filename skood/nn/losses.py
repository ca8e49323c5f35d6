"""Training objectives shared by the detectors (each written once).

Every loss here is computed in float32: under CUDA autocast (mixed precision
training, :class:`skood.training.SkoodNet`) the network's outputs may be
bfloat16, and autocast would run the losses' matrix products in bfloat16
too; :func:`float32_loss` switches autocast off inside the loss and the
losses cast their inputs to float32. Without autocast (e.g. on the CPU)
nothing changes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

__all__ = ["float32_loss", "cross_entropy", "nt_xent", "gamma_weighted_pair_loss"]

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
    * ``symmetric=True`` (SimCLR, Chen et al. 2020, eq. 1): the 2B x 2B version
      in which every view is an anchor and every other view of the batch (its
      own excluded) is a candidate.

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
    r"""SemSAD's discriminator objective (Gorji et al., eq. 4 with its shifted logit).

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
    r"""SimSiam's symmetric negative cosine with stop-gradient (Chen & He 2021, eq. 1-2).

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


__all__ += ["simsiam_loss"]


@float32_loss
def product_of_experts(
    mu: torch.Tensor, log_var: torch.Tensor, dim: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Product of diagonal Gaussian experts :math:`\prod_i N(\mu_i, \mathrm{diag}\,\sigma_i^2)`.

    With precisions :math:`w_i = 1/\sigma_i^2` (per dimension), the product is
    Gaussian with

    .. math::  \mu = \frac{\sum_i w_i \mu_i}{\sum_i w_i}, \qquad
       \Sigma = \Big(\sum_i w_i\Big)^{-1}

    (DUM, Wu et al., section 3; Cao & Fleet 2014). Computed in float32 with
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
    r"""DUM's set objective (Wu et al., "Deep uncertainty model", eq. for :math:`\mathcal L_{DUM}`).

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


__all__ += ["product_of_experts", "dum_set_loss"]


# --------------------------------------------------------------------------
# DINO self-distillation (Caron et al. 2021) and DistillNeg's negative term.


@float32_loss
def dino_loss(
    student_logits: list[torch.Tensor],
    teacher_logits: list[torch.Tensor],
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    r"""DINO's cross-entropy between centred, sharpened teacher and student outputs.

    Rafiee et al. (2022), eq. 1 and 3: with :math:`p = \operatorname{softmax}(g/\tau)`,

    .. math::  \mathcal{L}_{pos} = \frac{1}{|P|} \sum_{(t, s) \in P}
       \Big\langle -\sum_{k=1}^{K} p_t^k(x_t) \log p_s^k(x_s) \Big\rangle_{batch},
       \qquad p_t = \operatorname{softmax}\big((g_t - c)/\tau_t\big),\;
       p_s = \operatorname{softmax}(g_s / \tau_s),

    where P holds every pair of a teacher view t and a different student view
    s, c is the centre (:func:`dino_center_update`) and no gradient flows
    through the teacher. The teacher sees the global views only; teacher
    view i and student view i are the same view (global views first in both
    lists), and those pairs are skipped. The paper sums over pairs; the mean
    (as in DINO's code) keeps the scale independent of the number of views.

    Parameters
    ----------
    student_logits : list of Tensor of shape (B, K)
        Student outputs g_s, one tensor per view (global views first).
    teacher_logits : list of Tensor of shape (B, K)
        Teacher outputs g_t on the global views.
    center : Tensor of shape (1, K)
    student_temp, teacher_temp : float
        :math:`\tau_s` and :math:`\tau_t` (DistillNeg: 0.1 and 0.055 -> 0.01).
    """
    targets = [
        F.softmax((t.detach().float() - center) / teacher_temp, dim=-1) for t in teacher_logits
    ]
    log_ps = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits]
    total, n_terms = None, 0
    for i, q in enumerate(targets):
        for j, log_p in enumerate(log_ps):
            if i == j:
                continue
            term = -(q * log_p).sum(dim=-1).mean()
            total = term if total is None else total + term
            n_terms += 1
    if total is None:
        raise ValueError("dino_loss needs a student view other than each teacher view")
    return total / n_terms


@float32_loss
def uniform_cross_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Cross-entropy of the uniform distribution to ``softmax(logits / temperature)``.

    DistillNeg's negative objective (Rafiee et al. 2022, eq. 4): for K soft
    classes,

    .. math::  \mathcal{L}_{neg} = \Big\langle -\frac{1}{K}\sum_{k=1}^{K} \log p_s^k(x') \Big\rangle

    averaged over the batch; minimal (:math:`= \log K`) when the student's
    output on the negative view x' is uniform. This is eq. 3 with an
    infinitely hot teacher, :math:`\tau_t \to \infty`.
    """
    return -F.log_softmax(logits.float() / temperature, dim=-1).mean(dim=-1).mean()


@float32_loss
@torch.no_grad()
def dino_center_update(
    center: torch.Tensor, teacher_logits: list[torch.Tensor], momentum: float = 0.9
) -> torch.Tensor:
    r"""DINO's centre update :math:`c \leftarrow m c + (1 - m)\,\overline{g_t}`.

    :math:`\overline{g_t}` is the mean teacher output over the batch and its
    views. Subtracting c from the teacher's logits keeps one soft class from
    dominating, sharpening keeps the output from becoming uniform; together
    they prevent collapse. Returns the new centre (shape (1, K)).
    """
    batch_center = torch.cat([t.float() for t in teacher_logits]).mean(dim=0, keepdim=True)
    return center * momentum + batch_center * (1.0 - momentum)


__all__ += ["dino_loss", "uniform_cross_entropy", "dino_center_update"]
