"""Models built from an encoder plus a head, shared by several detectors."""

from __future__ import annotations

import torch
from torch import nn

from .encoders import ProjectionHead

__all__ = ["ContrastiveModel"]


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
