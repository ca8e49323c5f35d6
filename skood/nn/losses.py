"""Training objectives shared by the detectors (each written once)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["nt_xent", "gamma_weighted_pair_loss"]


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
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, target)


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
