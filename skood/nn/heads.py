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


class SimSiamModel(nn.Module):
    r"""SimSiam (Chen & He 2021): encoder f, projector g and predictor h.

    g is a 3-layer MLP with BatchNorm after every layer (the last one without
    affine parameters), h a 2-layer bottleneck MLP. With NSA's two
    modifications (Abdelzad et al. 2022, sections 2.3-2.4):

    .. math::  z = g\Big(\frac{f(x)}{\lVert f(x)\rVert}\Big) \ (\text{normalize\_features}),
       \qquad \hat z = \frac{z}{\lVert z\rVert} \ (\text{normalize\_projection}),
       \qquad p = h(\hat z).

    ``project(x)`` returns :math:`\hat z` (or z), ``forward(x)`` the pair
    ``(z_hat, p)`` that :func:`skood.nn.losses.simsiam_loss` takes.

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
        self,
        encoder: nn.Module,
        projection_dim: int = 2048,
        predictor_dim: int = 512,
        normalize_features: bool = True,
        normalize_projection: bool = True,
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
        h = self.encoder(x)
        if self.normalize_features:
            h = nn.functional.normalize(h, dim=1)
        z = self.projector(h)
        return nn.functional.normalize(z, dim=1) if self.normalize_projection else z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.project(x)
        return z, self.predictor(z)


class SimCLRModel(nn.Module):
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

    def project(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        if self.normalize_features:
            h = nn.functional.normalize(h, dim=1)
        return self.projector(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x)


__all__ += ["SimSiamModel", "SimCLRModel"]


# --------------------------------------------------------------------------
# DINO: projection head with K soft classes, student and EMA teacher.

import copy  # noqa: E402


class DINOHead(nn.Module):
    r"""DINO's head (Caron et al. 2021): MLP, L2 normalisation, weight-normalised linear to K.

    .. math::  g(f) = W\,\frac{h(f)}{\lVert h(f)\rVert}, \qquad
       W_k = \gamma_k \frac{v_k}{\lVert v_k\rVert}

    with h a GELU MLP ``in -> hidden -> ... -> bottleneck`` (``n_layers``
    linear layers) and K = ``out_features`` soft classes. With
    ``norm_last_layer`` the gains :math:`\gamma_k` are fixed to 1, so the
    logits are cosine similarities in [-1, 1]. The weight normalisation is
    written out (not ``torch.nn.utils.parametrizations.weight_norm``), so
    the module pickles like any other.

    Parameters
    ----------
    in_features : int
    out_features : int
        K, the number of soft classes (DINO: 65536; DistillNeg: 4096).
    hidden_features : int
        Width of the hidden layers (DINO: 2048).
    bottleneck_features : int
        Width of the normalised bottleneck (DINO: 256).
    n_layers : int
        Linear layers of h (DINO: 3).
    norm_last_layer : bool
    use_bn : bool
        BatchNorm after each hidden linear layer of h (DINO's ``use_bn_in_head``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 4096,
        hidden_features: int = 2048,
        bottleneck_features: int = 256,
        n_layers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        dims = [in_features] + [hidden_features] * (n_layers - 1) + [bottleneck_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < n_layers - 1:
                if use_bn:
                    layers.append(nn.BatchNorm1d(b))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.weight_v = nn.Parameter(torch.empty(out_features, bottleneck_features))
        nn.init.trunc_normal_(self.weight_v, std=0.02)
        if norm_last_layer:
            self.register_buffer("weight_g", torch.ones(out_features))
        else:
            self.weight_g = nn.Parameter(torch.ones(out_features))
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = nn.functional.normalize(self.mlp(x), dim=-1)
        w = self.weight_g[:, None] * nn.functional.normalize(self.weight_v, dim=1)
        return z @ w.T


class EncoderWithHead(nn.Module):
    """``head(encoder(x))``; ``encoder`` and ``head`` stay reachable as attributes."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class DINOModel(nn.Module):
    r"""Student and teacher of identical architecture (encoder + :class:`DINOHead`), and the centre.

    The teacher starts as an exact copy of the student and is never trained
    by gradients (its parameters do not require them); it follows the
    student by an exponential moving average,
    :math:`\theta_t \leftarrow m\theta_t + (1 - m)\theta_s`
    (:func:`skood.training.ema_update_`). ``center`` (a buffer of shape
    (1, K)) is the running mean of the teacher's outputs used by
    :func:`skood.nn.losses.dino_loss`.

    ``features(x)`` is the teacher's encoder output f, the representation
    DINO and DistillNeg evaluate. ``hidden_features``, ``bottleneck_features``
    and ``use_bn`` configure the :class:`DINOHead`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_soft_classes: int = 4096,
        hidden_features: int = 2048,
        bottleneck_features: int = 256,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        head = DINOHead(encoder.out_features, n_soft_classes, hidden_features, bottleneck_features,
                        use_bn=use_bn)
        self.student = EncoderWithHead(encoder, head)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, n_soft_classes))
        self.out_features = encoder.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)


__all__ += ["DINOHead", "EncoderWithHead", "DINOModel"]
