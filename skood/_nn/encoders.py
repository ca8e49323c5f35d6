"""Encoders shared by every detector: MLP, a small CNN and small-image ResNets.

Contract: every encoder maps a batch to a flat feature vector (N, F) and
exposes ``out_features`` = F. Images enter as float tensors (N, C, H, W) in
[0, 1]; tabular rows as (N, D). :func:`build_encoder` picks one by name
(``backbone``), including the pretrained ImageNet encoders of
:mod:`skood.pretrained` (:data:`PRETRAINED_BACKBONES`, or a user's own
``nn.Module``); :class:`ProjectionHead` is the SimCLR projection head;
:func:`block_modules` and :class:`capture_outputs` read the intermediate
features of one forward pass (NSA's feature ensemble). DistillNeg's small
Vision Transformer is with it (:class:`skood._detectors.dino.SmallViT`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.models import resnet18, resnet34

from ..pretrained import PRETRAINED_BACKBONES, PretrainedEncoder, load_pretrained

__all__ = [
    "BACKBONES",
    "MLP",
    "PRETRAINED_BACKBONES",
    "ProjectionHead",
    "SmallCNN",
    "SmallResNet",
    "block_modules",
    "MIN_IMAGE_SIDE",
    "build_encoder",
    "capture_outputs",
    "check_image_size",
    "make_activation",
    "make_norm_1d",
    "make_norm_2d",
]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name ("relu", "elu" or "gelu")."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        msg = f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}"
        raise ValueError(msg) from None


def make_norm_1d(norm: str, n: int) -> nn.Module:
    """Normalisation for (N, n) activations: "batch", "layer" or "none"."""
    if norm == "batch":
        return nn.BatchNorm1d(n)
    if norm == "layer":
        return nn.LayerNorm(n)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {norm!r}")


def make_norm_2d(norm: str, n: int) -> nn.Module:
    """Normalisation for (N, n, H, W) activations: "batch", "group" or "none"."""
    if norm == "batch":
        return nn.BatchNorm2d(n)
    if norm == "group":
        return nn.GroupNorm(min(32, n // 4) or 1, n)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {norm!r}")


class MLP(nn.Module):
    """Multi-layer perceptron encoder for tabular rows.

    Parameters
    ----------
    in_features : int
        Input dimension D.
    hidden : sequence of int
        Widths of the hidden layers; the last one is ``out_features``.
    activation : str
        "relu", "elu" or "gelu".
    norm : str
        "batch" (running statistics in eval mode), "layer" or "none".
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), make_norm_1d(norm, h), make_activation(activation)]
            width = h
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """A small, fast convolutional encoder for small images (CPU budgets, tests).

    Three stages of two 3x3 convolutions (widths w, 2w, 4w), each stage but the
    last followed by 2x2 max-pooling, then global average pooling: ``4 * width``
    features.
    """

    def __init__(
        self, in_channels: int, width: int = 32, activation: str = "relu", norm: str = "batch"
    ) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c in enumerate(chans):
            for _ in range(2):
                layers += [
                    nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                    make_norm_2d(norm, c),
                    make_activation(activation),
                ]
                c_in = c
            if i < len(chans) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class SmallResNet(nn.Module):
    """torchvision ResNet-18/34 adapted to small images (CIFAR-style stem).

    The 7x7 stride-2 stem and the max-pool are replaced by a 3x3 stride-1
    convolution, as in the SimCLR/NSA CIFAR experiments; the classifier is
    dropped, so the output is the 512-d globally pooled last block.
    """

    def __init__(
        self, in_channels: int, depth: int = 18, activation: str = "relu", norm: str = "batch"
    ) -> None:
        super().__init__()
        if depth not in (18, 34):
            raise ValueError(f"depth must be 18 or 34, got {depth}")
        norm_layer = (lambda c: make_norm_2d(norm, c)) if norm != "batch" else None
        net = (resnet18 if depth == 18 else resnet34)(weights=None, norm_layer=norm_layer)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        if activation != "relu":
            _replace_relu(net, activation)
        self.net = net
        self.out_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _replace_relu(module: nn.Module, activation: str) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, make_activation(activation))
        else:
            _replace_relu(child, activation)


class ProjectionHead(nn.Module):
    """MLP projection head ``in -> hidden -> out`` (SimCLR style), optional L2 output.

    With ``normalize=True`` the output lies on the unit sphere, as the contrastive
    encoders of SemSAD and SimCLR use.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 128,
        hidden: int | None = None,
        normalize: bool = True,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        hidden = hidden or in_features
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            make_norm_1d(norm, hidden),
            make_activation(activation),
            nn.Linear(hidden, out_features),
        )
        self.normalize = normalize
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return nn.functional.normalize(z, dim=1) if self.normalize else z


#: the encoders trained from scratch; the pretrained ImageNet encoders are
#: :data:`PRETRAINED_BACKBONES` (``skood.pretrained``)
BACKBONES = ("auto", "mlp", "cnn", "resnet18", "resnet34")

#: smallest image side, in pixels (for H and W alike), each backbone can take: the small CNN
#: max-pools 2 x 2 twice and needs 4; the CIFAR-stem ResNets' strided 3 x 3 convolutions are
#: padded and take 1 x 1 maps; the MLP flattens; DistillNeg's ViT picks its patch size from
#: the image side; the pretrained encoders resize every image to their own resolution
MIN_IMAGE_SIDE: dict[str, int] = {
    "mlp": 1, "cnn": 4, "resnet18": 1, "resnet34": 1, "vit": 1,
    **dict.fromkeys(PRETRAINED_BACKBONES, 1),
}


def _backbone_name(backbone: str | nn.Module) -> str:
    """``repr`` of a backbone name, or ``<ClassName>`` of a module (for messages)."""
    return repr(backbone) if isinstance(backbone, str) else f"<{type(backbone).__name__}>"


def check_image_size(
    backbone: str | nn.Module, image_shape: tuple[int, ...], owner: str, min_side: int = 1
) -> None:
    """Raise a ValueError when images of ``image_shape`` (C, H, W) are too small.

    The images must be at least ``m x m`` pixels, ``m`` the larger of
    ``MIN_IMAGE_SIDE[backbone]`` ("auto" is the small CNN for images) and
    ``min_side`` (what the caller's own augmentations need). ``owner`` names
    the caller in the message.
    """
    bb = "cnn" if backbone == "auto" else backbone
    # a user's module is wrapped in a PretrainedEncoder, which resizes: no minimum of its own
    m = max(MIN_IMAGE_SIDE.get(bb, 1) if isinstance(bb, str) else 1, int(min_side))
    h, w = int(image_shape[-2]), int(image_shape[-1])
    if min(h, w) < m:
        which = f"backbone={_backbone_name(backbone)}" + (
            " (the small CNN)" if backbone == "auto" else "")
        fits = [b for b in BACKBONES[2:] if max(MIN_IMAGE_SIDE[b], min_side) <= min(h, w)]
        hint = f", or backbone={' or '.join(map(repr, fits))}" if fits else ""
        raise ValueError(
            f"{owner} with {which} needs images of at least {m} x {m} pixels (H x W); got "
            f"{h} x {w}. Use larger (e.g. upsampled) images{hint}."
        )


def build_encoder(
    backbone: str | nn.Module,
    input_shape: tuple[int, ...],
    activation: str = "relu",
    norm: str = "batch",
    width: int | None = None,
) -> nn.Module:
    """Build an encoder for inputs of ``input_shape`` (without the batch axis).

    Parameters
    ----------
    backbone : str or torch.nn.Module
        "auto" picks "mlp" for tabular rows (1-D shape) and "cnn" for images;
        "mlp", "cnn", "resnet18", "resnet34" are trained from scratch. A name
        of :data:`PRETRAINED_BACKBONES` ("efficientnet_lite0",
        "resnet18_imagenet", "resnet50_imagenet") is a frozen
        :class:`~skood.pretrained.PretrainedEncoder` from
        :func:`~skood.pretrained.load_pretrained` with its defaults. A
        module is deep-copied (the one given is never changed) and, unless it
        is a ``PretrainedEncoder`` already, wrapped in one with its defaults
        (224 px, ImageNet normalisation, frozen). Pretrained encoders take
        images with 1 or 3 channels only.
    input_shape : tuple of int
        ``(D,)`` for tabular data or ``(C, H, W)`` for images.
    activation, norm : str
        Passed to the encoder (norm "batch" keeps running statistics); the
        pretrained encoders ignore them.
    width : int, optional
        Hidden width of the MLP (default 256) or base width of the CNN (default
        32); the pretrained encoders ignore it.
    """
    is_image = len(input_shape) == 3
    if backbone == "auto":
        backbone = "cnn" if is_image else "mlp"
    if backbone == "mlp":
        in_features = int(torch.tensor(input_shape).prod())
        w = width or 256
        return MLP(in_features, (w, w), activation=activation, norm=norm)
    if not is_image:
        raise ValueError(
            f"backbone {_backbone_name(backbone)} needs images; tabular data takes 'mlp' or 'auto'"
        )
    if isinstance(backbone, nn.Module) or backbone in PRETRAINED_BACKBONES:
        if input_shape[0] not in (1, 3):
            raise ValueError(
                f"backbone {_backbone_name(backbone)} (pretrained) takes images with 1 (grey) or "
                f"3 (RGB) channels; got {input_shape[0]} channels"
            )
        if isinstance(backbone, str):
            return load_pretrained(backbone)
        enc = copy.deepcopy(backbone)
        return enc if isinstance(enc, PretrainedEncoder) else PretrainedEncoder(enc)
    if backbone == "cnn":
        return SmallCNN(input_shape[0], width or 32, activation=activation, norm=norm)
    if backbone in ("resnet18", "resnet34"):
        return SmallResNet(input_shape[0], int(backbone[6:]), activation=activation, norm=norm)
    raise ValueError(
        f"backbone must be one of {BACKBONES + PRETRAINED_BACKBONES} or a torch.nn.Module, "
        f"got {backbone!r}"
    )


def block_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The submodules whose outputs are the successive blocks of an encoder or head.

    Used with :func:`capture_outputs` to read intermediate features in the
    same forward pass (NSA's feature ensemble):

    * :class:`SmallResNet`: ``layer1`` ... ``layer4``;
    * :class:`SmallCNN`: the last activation of each of its three stages;
    * :class:`MLP`: the activation of each hidden layer;
    * an ``nn.Sequential`` head: each activation and the final module;
    * anything else: the module itself (its output).
    """
    if isinstance(module, SmallResNet):
        return [(f"layer{i}", getattr(module.net, f"layer{i}")) for i in range(1, 5)]
    if isinstance(module, SmallCNN):
        mods = list(module.features)
        out, stage = [], 0
        for i, m in enumerate(mods):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.GroupNorm)) and (
                nxt is None or isinstance(nxt, nn.MaxPool2d)
            ):
                stage += 1
                out.append((f"stage{stage}", m))
        return out
    if isinstance(module, MLP):
        acts = [m for m in module.net if not isinstance(m, (nn.Linear, nn.BatchNorm1d,
                                                             nn.LayerNorm, nn.Identity))]
        return [(f"hidden{i + 1}", m) for i, m in enumerate(acts)]
    if isinstance(module, nn.Sequential):
        mods = list(module)
        out, n = [], 0
        for i, m in enumerate(mods):
            is_act = isinstance(m, (nn.ReLU, nn.ELU, nn.GELU))
            if is_act or i == len(mods) - 1:
                n += 1
                out.append((f"layer{n}", m))
        return out
    return [("output", module)]


class capture_outputs:  # noqa: N801 (used as a context manager, like torch.no_grad)
    """Context manager recording the outputs of ``modules`` with forward hooks.

    ``with capture_outputs(mods, pool=1) as outs: model(x)`` fills the list
    ``outs`` with one tensor per module, in the order of ``mods``: feature
    maps (N, C, H, W) are average-pooled to ``pool x pool`` and flattened,
    other outputs are flattened. The hooks are removed on exit, so the model
    stays picklable. ``outs`` is cleared at every entry.
    """

    def __init__(self, modules: Sequence[nn.Module], pool: int | None = 1) -> None:
        self.modules = list(modules)
        self.pool = pool
        self.outputs: list[torch.Tensor | None] = []
        self._handles: list = []

    def _hook(self, i: int) -> Callable:
        def hook(_mod: nn.Module, _inp: object, out: torch.Tensor) -> None:
            if out.dim() == 4 and self.pool is not None:
                out = nn.functional.adaptive_avg_pool2d(out, self.pool)
            self.outputs[i] = out.flatten(1).clone()

        return hook

    def __enter__(self) -> list:
        self.outputs[:] = [None] * len(self.modules)
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.modules)]
        return self.outputs

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

