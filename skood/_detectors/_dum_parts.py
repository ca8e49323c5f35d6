"""DUM's building blocks: the embedding g, the variance network f1, the set objective, the score.

Used only by :class:`~skood._detectors.dum.DUMDetector` (which holds the
detector and its trainer, :class:`~skood._detectors.dum.DUMNet`):

* g, the frozen embedding: :class:`SphereLift`, :class:`AffineMap`,
  :func:`whitening_lift` (fitted) / :func:`whitening_lift_skeleton`
  (unfitted, for loading), :class:`FeatureView`, :class:`UnitEmbedding`;
* f1: :class:`DUMVarianceMLP`;
* the objective: :func:`product_of_experts`, :func:`dum_set_loss`
  (computed in float32, :func:`skood._nn.losses.float32_loss`);
* the score: :func:`variance_norm`.

Reference: M. Wu and N. Goodman, "A Simple Framework for Uncertainty in
Contrastive Learning", https://arxiv.org/abs/2010.02038.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .._nn.losses import float32_loss

__all__ = [
    "AffineMap",
    "DUMVarianceMLP",
    "FeatureView",
    "SphereLift",
    "UnitEmbedding",
    "dum_set_loss",
    "product_of_experts",
    "variance_norm",
    "whitening_lift",
    "whitening_lift_skeleton",
]

#: epsilon of :func:`whitening_lift`: eigenvalues shrunk by epsilon x their mean
_WHITEN_SHRINKAGE = 0.1


# --------------------------------------------------------------------------
# Networks: g and f1


class DUMVarianceMLP(nn.Module):
    r"""f1 of DUM: an embedding z to the Gaussian :math:`N(z, \sigma^2(z))`.

    The mean is fixed to the embedding (paper section 3); an MLP (``n_layers``
    hidden ReLU layers of ``width`` units, then a linear layer r that starts
    at zero, i.e. at equal variances) predicts the log-variance, bounded to
    :math:`(-b, b)` with :math:`b` = ``max_log_var``, since the objective
    sees only ratios of precisions and would let the variances drift:

    .. math::  \log\sigma^2(z) = b \tanh(r(z) / b).

    ``isotropic=True``: one variance per sample (r has one output); else one
    per dimension. ``forward`` returns the (n, d) log-variances either way.
    """

    def __init__(self, dim: int, width: int = 256, n_layers: int = 3,
                 max_log_var: float = 5.0, isotropic: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        w_in = dim
        for _ in range(n_layers):
            layers += [nn.Linear(w_in, width), nn.ReLU(inplace=True)]
            w_in = width
        out = nn.Linear(w_in, 1 if isotropic else dim)
        nn.init.zeros_(out.weight)  # start from equal variances: sigma^2 = 1 everywhere
        nn.init.zeros_(out.bias)
        layers.append(out)
        self.net = nn.Sequential(*layers)
        self.dim = int(dim)
        self.max_log_var = float(max_log_var)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = self.max_log_var
        return (b * torch.tanh(self.net(z) / b)).expand(-1, self.dim)


class SphereLift(nn.Module):
    r"""Tabular g: scaled, centred rows lifted onto the unit sphere :math:`S^d \subset R^{d+1}`.

    .. math::  u = \frac{x - \text{low}}{\text{scale}} - c, \qquad
       g(x) = \frac{(u, s)}{\lVert (u, s) \rVert}

    with c the training mean of the scaled rows and s their root-mean-square
    distance to it. The map is injective: a row's distance to the data centre
    becomes its angle to the pole :math:`(0, \dots, 0, 1)`, on the sphere,
    where DUM's dot-product objective is bounded.
    """

    def __init__(self, low: torch.Tensor, scale: torch.Tensor, center: torch.Tensor,
                 radius: float) -> None:
        super().__init__()
        self.register_buffer("low", low.float().clone())
        self.register_buffer("scale", scale.float().clone())
        self.register_buffer("center", center.float().clone())
        self.radius = float(radius)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x - self.low) / self.scale - self.center
        lifted = torch.cat([u, torch.full_like(u[:, :1], self.radius)], dim=1)
        return F.normalize(lifted, dim=1)


class AffineMap(nn.Module):
    r"""A fixed affine map :math:`x \mapsto x W^\top + b` held in buffers (never trained).

    Buffers, not parameters, so building it draws nothing from any RNG.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.clone())
        self.register_buffer("bias", bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def whitening_lift(features: torch.Tensor, shrinkage: float = _WHITEN_SHRINKAGE) -> nn.Sequential:
    r"""g's last step: whiten the training embeddings, then :class:`SphereLift` them.

    With :math:`\bar f` the mean and :math:`C = V \Lambda V^\top` the
    covariance of ``features`` (n, d),

    .. math::  u = W (f - \bar f), \qquad
       W = V (\Lambda + \epsilon \bar\lambda I)^{-1/2} V^\top,

    :math:`\bar\lambda` the mean eigenvalue and :math:`\epsilon` =
    ``shrinkage`` (it keeps W finite for rank-deficient C, e.g. more
    features than rows); then u is lifted with centre 0 and radius the
    root-mean-square norm of the training u. A row's angle to the pole is
    then monotone in its (shrunk) Mahalanobis distance to the training mean,
    the ranking that DUM's trained variances approach (Notes of
    :class:`~skood._detectors.dum.DUMDetector`).

    Returns ``nn.Sequential(AffineMap, SphereLift)``, frozen (buffers only).
    """
    f = features.detach().double().cpu()
    mean = f.mean(dim=0)
    d = f.shape[1]
    if len(f) > 1:
        cov = torch.cov((f - mean).T).reshape(d, d)
    else:
        cov = torch.zeros(d, d, dtype=f.dtype)
    ev, V = torch.linalg.eigh(cov)
    ev = ev.clamp_min(0)
    ev = ev + shrinkage * (float(ev.mean()) if float(ev.mean()) > 1e-12 else 1.0)
    W = (V / ev.sqrt()) @ V.T
    lin = AffineMap(W.float(), (-(W @ mean)).float())
    u = (f - mean) @ W.T
    radius = float(u.square().sum(dim=1).mean().sqrt())
    lift = SphereLift(torch.zeros(d), torch.ones(d), torch.zeros(d),
                      radius if radius > 1e-12 else 1.0)
    return nn.Sequential(lin, lift).eval()


def whitening_lift_skeleton(d: int) -> nn.Sequential:
    """An unfitted :func:`whitening_lift` of d features (for loading saved detectors)."""
    return nn.Sequential(AffineMap(torch.zeros(d, d), torch.zeros(d)),
                         SphereLift(torch.zeros(d), torch.ones(d), torch.zeros(d), 1.0))


class FeatureView(nn.Module):
    """``model.features(x)``: the representation of a contrastive model before its head."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


class UnitEmbedding:
    r"""The frozen embedding g as a plain callable, projected onto the unit sphere.

    :math:`x \mapsto g(x) / \lVert g(x) \rVert` (a no-op for :class:`SphereLift`
    and for a unit-norm projection head). A plain callable because skorch
    refuses module attributes on a net that are not its own modules.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.module(x).float(), dim=1)


# --------------------------------------------------------------------------
# The set objective (paper section 3)


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


# --------------------------------------------------------------------------
# The score


def variance_norm(log_var: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    r"""Size of a diagonal covariance given its log-variances (DUM's uncertainty score).

    With :math:`\sigma^2 = \exp(\text{log\_var})` per dimension:

    * ``"l2"``: :math:`\lVert \sigma^2 \rVert_2` (the norm of the variance vector);
    * ``"trace"``: :math:`\sum_j \sigma_j^2`;
    * ``"logdet"``: :math:`\log\det\Sigma = \sum_j \log\sigma_j^2`.

    Higher means *more uncertain*, i.e. more anomalous; a detector's
    ``score_samples`` is the negation. Computed in float64. Wu & Goodman
    (2020), "A Simple Framework for Uncertainty in Contrastive Learning"
    (https://arxiv.org/abs/2010.02038), section 3.

    Parameters
    ----------
    log_var : Tensor of shape (n, d)
    norm : {"l2", "trace", "logdet"}

    Returns
    -------
    Tensor of shape (n,), float64
    """
    lv = log_var.double()
    if norm == "l2":
        return torch.linalg.vector_norm(lv.exp(), dim=1)
    if norm == "trace":
        return lv.exp().sum(dim=1)
    if norm == "logdet":
        return lv.sum(dim=1)
    raise ValueError(f"norm must be 'l2', 'trace' or 'logdet', got {norm!r}")
