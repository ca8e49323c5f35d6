"""Models built from an encoder f plus a head g: what the contrastive objectives train.

Contract: each model keeps its encoder as ``encoder`` and exposes
``out_features`` (the width of what ``forward`` returns); the detectors
score the encoder's features or the projection, as each docstring says.

* :class:`ContrastiveModel`: f and a SimCLR projection head with unit-norm
  output (SemSAD's and DUM's encoders, trained with
  :class:`skood._training.ContrastiveNet`);
* :class:`SimSiamModel` and :class:`SimCLRModel`: NSA's two self-supervised
  models, with its normalisations of the features and the projection
  ("No Shifted Augmentations (NSA): compact distributions for robust
  self-supervised Anomaly Detection", https://arxiv.org/abs/2203.10344,
  sections 2.3-2.4).

DistillNeg's student/teacher model is with it (:mod:`skood._detectors.dino`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ProjectionHead

__all__ = ["ContrastiveModel", "SimCLRModel", "SimSiamModel"]


class ContrastiveModel(nn.Module):
    """Encoder f followed by a projection head g with unit-norm output, ``g(f(x))``.

    ``features(x)`` returns the encoder's representation f(x) (used by scorers
    that work before the head), ``forward(x)`` the normalised projection.
    """

    def __init__(self, encoder: nn.Module, projection_dim: int = 128) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.out_features, projection_dim, normalize=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _bn_mlp(dims: list[int], last_bn: bool, last_affine: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU blocks; the last block has no ReLU (and BN only if ``last_bn``)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        last = i == len(dims) - 2
        if not last:
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        elif last_bn:
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b, affine=last_affine)]
        else:
            layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


class _FeatureProjection(nn.Module):
    """``project(x)``: the projector g on f(x), L2-normalised first with ``normalize_features``."""

    encoder: nn.Module
    projector: nn.Module
    normalize_features: bool

    def project(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        if self.normalize_features:
            h = F.normalize(h, dim=1)
        return self.projector(h)


class SimSiamModel(_FeatureProjection):
    r"""SimSiam (Chen & He 2021): encoder f, projector g and predictor h.

    g is a 3-layer MLP with BatchNorm after every layer (the last one without
    affine parameters), h a 2-layer bottleneck MLP. With NSA's two
    modifications (sections 2.3-2.4):

    .. math::  z = g\Big(\frac{f(x)}{\lVert f(x)\rVert}\Big) \ (\text{normalize\_features}),
       \qquad \hat z = \frac{z}{\lVert z\rVert} \ (\text{normalize\_projection}),
       \qquad p = h(\hat z).

    ``project(x)`` returns :math:`\hat z` (or z), ``forward(x)`` the pair
    ``(z_hat, p)`` that :func:`skood._nn.losses.simsiam_loss` takes.

    Parameters
    ----------
    encoder : nn.Module
        Exposes ``out_features``.
    projection_dim : int
        Width of the projector's layers (SimSiam: 2048).
    predictor_dim : int
        Bottleneck width of the predictor (SimSiam: 512).
    normalize_features, normalize_projection : bool
        The two normalisations above (differentiable L2).
    """

    def __init__(
        self, encoder: nn.Module, projection_dim: int = 2048, predictor_dim: int = 512,
        *, normalize_features: bool = True, normalize_projection: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        d, p = encoder.out_features, projection_dim
        self.projector = _bn_mlp([d, p, p, p], last_bn=True, last_affine=False)
        self.predictor = _bn_mlp([p, predictor_dim, p], last_bn=False)
        self.normalize_features = normalize_features
        self.normalize_projection = normalize_projection
        self.out_features = p

    def project(self, x: torch.Tensor) -> torch.Tensor:
        z = super().project(x)
        return F.normalize(z, dim=1) if self.normalize_projection else z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.project(x)
        return z, self.predictor(z)


class SimCLRModel(_FeatureProjection):
    r"""SimCLR (Chen et al. 2020): encoder f and a 2-layer MLP head g.

    ``forward(x)`` :math:`= g(f(x)/\lVert f(x)\rVert)` with
    ``normalize_features`` (NSA's modification, section 2.3), else
    :math:`g(f(x))`; the NT-Xent loss normalises the output itself.
    """

    def __init__(
        self, encoder: nn.Module, projection_dim: int = 128, normalize_features: bool = True
    ) -> None:
        super().__init__()
        self.encoder = encoder
        d = encoder.out_features
        self.projector = nn.Sequential(
            nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, projection_dim)
        )
        self.normalize_features = normalize_features
        self.out_features = projection_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x)

