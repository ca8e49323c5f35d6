"""Batched, on-device augmentations with per-sample randomness.

Every random choice comes from an explicit :class:`torch.Generator` living on
the tensor's device (never the global RNG). Images are float tensors
(N, C, H, W) in [0, 1]; tabular rows are float (N, D) standardised features.
All ops are vectorised over the batch and never modify their input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "random_resized_crop",
    "random_hflip",
    "color_jitter",
    "random_grayscale",
    "gaussian_blur",
    "TabularCorruption",
    "Compose",
    "SimCLRAugment",
    "SemSADPositive",
    "SemSADNegative",
]

_GRAY = (0.299, 0.587, 0.114)


def _rand(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=generator, device=generator.device)


def _per_sample(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (x.dim() - 1)))


def random_resized_crop(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Crop a random box per sample (area fraction in ``scale``, log-uniform aspect
    ratio in ``ratio``, clipped to the image) and resize it bilinearly to ``size``."""
    n, _, h, w = x.shape
    area = scale[0] + (scale[1] - scale[0]) * _rand((n,), generator)
    logr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _rand((n,), generator)
    r = torch.exp(logr)
    # box size as a fraction of the side lengths
    bw = torch.sqrt(area * r).clamp(max=1.0)
    bh = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - bw) * _rand((n,), generator) + bw / 2  # centre in [0, 1]
    cy = (1 - bh) * _rand((n,), generator) + bh / 2
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = bw
    theta[:, 0, 2] = 2 * cx - 1
    theta[:, 1, 1] = bh
    theta[:, 1, 2] = 2 * cy - 1
    out_h, out_w = size or (h, w)
    grid = F.affine_grid(theta, [n, x.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each sample left-right with probability ``p``."""
    m = _per_sample(_rand((len(x),), generator) < p, x)
    return torch.where(m, x.flip(-1), x)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def color_jitter(
    x: torch.Tensor,
    generator: torch.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
) -> torch.Tensor:
    """torchvision-style colour jitter per sample, applied with probability ``p``.

    Fixed order brightness, contrast, saturation, hue. Brightness multiplies
    by U[1-b, 1+b]; contrast and saturation blend with the grayscale mean /
    grayscale image by U[1-c, 1+c]; hue rotates the chroma in YIQ space by an
    angle U[-h, h] of a full turn (an approximation of torchvision's HSV hue
    shift). One-channel images get brightness and contrast only.
    """
    n = len(x)

    def factor(s: float) -> torch.Tensor:
        return (1 - s + 2 * s * _rand((n,), generator)).view(n, 1, 1, 1)

    fb, fc, fs = factor(brightness), factor(contrast), factor(saturation)
    hue_angle = (2 * _rand((n,), generator) - 1) * hue * 2 * math.pi
    y = (x * fb).clamp(0, 1)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = (fc * y + (1 - fc) * mean).clamp(0, 1)
    if x.shape[1] == 3:
        y = (fs * y + (1 - fs) * _gray(y)).clamp(0, 1)
        y = _rotate_hue(y, hue_angle).clamp(0, 1)
    apply = _per_sample(_rand((n,), generator) < p, x)
    return torch.where(apply, y, x)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        device=x.device,
        dtype=x.dtype,
    )
    from_yiq = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, x)
    c, s = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], dim=1)
    return torch.einsum("ij,njhw->nihw", from_yiq, yiq)


def random_grayscale(x: torch.Tensor, generator: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """Replace each sample by its ITU-R 601 grayscale (channel count kept) with probability p."""
    m = _per_sample(_rand((len(x),), generator) < p, x)
    return torch.where(m, _gray(x).expand_as(x), x)


def gaussian_blur(
    x: torch.Tensor,
    generator: torch.Generator,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
    kernel_size: int | None = None,
) -> torch.Tensor:
    """Separable Gaussian blur with per-sample sigma ~ U(sigma), applied with probability p.

    The kernel size defaults to the odd number nearest 10% of the image side
    (at least 3); borders are reflected.
    """
    n, c, h, w = x.shape
    k = kernel_size or max(3, int(round(0.1 * min(h, w))) // 2 * 2 + 1)
    s = sigma[0] + (sigma[1] - sigma[0]) * _rand((n,), generator)
    t = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
    ker = torch.exp(-(t[None] ** 2) / (2 * s[:, None] ** 2))
    ker = ker / ker.sum(1, keepdim=True)  # (n, k)
    ker = ker.repeat_interleave(c, dim=0)  # (n*c, k)
    y = x.reshape(1, n * c, h, w)
    pad = k // 2
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), ker.view(n * c, 1, 1, k), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), ker.view(n * c, 1, k, 1), groups=n * c)
    y = y.view(n, c, h, w)
    m = _per_sample(_rand((n,), generator) < p, x)
    return torch.where(m, y, x)


class Compose:
    """Apply transforms ``t(x, generator)`` in order."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms!r})"


class SimCLRAugment:
    """SimCLR's CIFAR set: resized crop, hflip, colour jitter (p 0.8), grayscale (p 0.2)."""

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        blur_p: float = 0.0,
    ) -> None:
        self.crop_scale = crop_scale
        self.jitter = jitter
        self.jitter_p = jitter_p
        self.gray_p = gray_p
        self.blur_p = blur_p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = random_resized_crop(x, generator, scale=self.crop_scale)
        x = random_hflip(x, generator)
        x = color_jitter(x, generator, *self.jitter, p=self.jitter_p)
        if self.gray_p > 0:
            x = random_grayscale(x, generator, p=self.gray_p)
        if self.blur_p > 0:
            x = gaussian_blur(x, generator, p=self.blur_p)
        return x

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(crop_scale={self.crop_scale}, jitter={self.jitter}, "
                f"jitter_p={self.jitter_p}, gray_p={self.gray_p}, blur_p={self.blur_p})")


class SemSADPositive(SimCLRAugment):
    """SemSAD's positive transform: crop scale (0.4, 1), flip, jitter p=0.8 (paper table 7)."""

    def __init__(self) -> None:
        super().__init__(crop_scale=(0.4, 1.0), gray_p=0.0)


class SemSADNegative(SimCLRAugment):
    """SemSAD's negative transform: crop (0.08, 1), flip, jitter p=0.8, blur sigma~U(0.1, 2).

    ``blur_p`` = 0.5 as in the reference code (paper table 6: 0.2).
    """

    def __init__(self, blur_p: float = 0.5) -> None:
        super().__init__(crop_scale=(0.08, 1.0), gray_p=0.0, blur_p=blur_p)


class TabularCorruption:
    """SCARF-style corruption of standardised rows: resample, then add noise.

    Each feature of each row is replaced with probability ``frac`` by the same
    feature of a uniformly drawn row of ``bank`` (the training marginals), then
    Gaussian noise of standard deviation ``noise`` is added.
    """

    def __init__(self, frac: float = 0.15, noise: float = 0.05) -> None:
        self.frac = frac
        self.noise = noise

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator, bank: torch.Tensor | None = None
    ) -> torch.Tensor:
        bank = x if bank is None else bank
        n, d = x.shape
        rows = (_rand((n, d), generator) * len(bank)).long().clamp_(max=len(bank) - 1)
        donor = bank.gather(0, rows).to(x.dtype)
        y = torch.where(_rand((n, d), generator) < self.frac, donor, x)
        if self.noise > 0:
            y = y + self.noise * torch.randn(n, d, generator=generator, device=generator.device)
        return y

    def __repr__(self) -> str:
        return f"{type(self).__name__}(frac={self.frac}, noise={self.noise})"
