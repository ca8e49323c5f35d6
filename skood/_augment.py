"""Batched, on-device augmentations with per-sample randomness.

Contract: every op takes a batch and an explicit :class:`torch.Generator`
living on the batch's device (never the global RNG) and returns a new
tensor; it never modifies its input. Images are float tensors (N, C, H, W)
in [0, 1]; tabular rows are float (N, D) standardised features. All ops are
vectorised over the batch, and none of them synchronises the host with a
CUDA device: no value is read back to the host, no output size depends on
random values, and constant tensors are copied to the device once
(:func:`_constant`). The random draws of an op come from its generator in a
fixed order, so a seeded generator reproduces a batch of views exactly.

* Views of images: :func:`random_resized_crop`, :func:`random_hflip`,
  :func:`color_jitter`, :func:`random_grayscale`, :func:`gaussian_blur`,
  composed by :func:`flip_and_distort` and :class:`SimCLRAugment` (SemSAD,
  whose positive and negative transforms are in :mod:`skood._detectors.semsad`,
  NSA, DUM; DistillNeg's multi-crop in :mod:`skood._detectors.dino`).
* Views of tabular rows: :class:`TabularCorruption` (SCARF-style) and
  :class:`BoundCorruption`.
* Permutations, which keep a sample's content and destroy its structure
  (DistillNeg's negatives): :func:`patch_permutation`,
  :func:`pixel_permutation`, and for tabular rows :func:`feature_permutation`.
* Discrete transformations, deterministic given a per-sample index
  (RotAuxMSP's auxiliary task, DistillNeg's rotated negatives):
  :func:`rotate90`, :func:`random_rotate90`, :func:`flip_transpose`,
  :func:`pad_crop`, and for tabular rows
  :class:`RandomAffineMaps`.

References: Chen, Kornblith, Norouzi & Hinton (2020), "A Simple Framework
for Contrastive Learning of Visual Representations"
(https://arxiv.org/abs/2002.05709), for the SimCLR views; Bergman & Hoshen
(2020), "Classification-Based Anomaly Detection for General Data"
(https://arxiv.org/abs/2005.02359), for the random affine maps.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "FLIP_TRANSPOSE_OPS",
    "BoundCorruption",
    "RandomAffineMaps",
    "SimCLRAugment",
    "TabularCorruption",
    "color_jitter",
    "feature_permutation",
    "flip_and_distort",
    "flip_transpose",
    "gaussian_blur",
    "pad_crop",
    "patch_permutation",
    "pixel_permutation",
    "random_grayscale",
    "random_hflip",
    "random_resized_crop",
    "random_rotate90",
    "rotate90",
]

_GRAY = (0.299, 0.587, 0.114)


def _rand(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=generator, device=generator.device)


def _per_sample(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (x.dim() - 1)))


@functools.lru_cache(maxsize=64)
def _constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor on ``device``, built once per process (read-only: shared).

    ``torch.tensor(values, device=cuda)`` would copy from the host and wait
    for the device at every call.
    """
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)


@functools.lru_cache(maxsize=16)
def _yiq_matrices(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB -> YIQ matrix and its inverse (computed on the CPU), on ``device``; read-only."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=dtype
    )
    from_yiq = torch.linalg.inv(to_yiq)
    return to_yiq.to(device, non_blocking=True), from_yiq.to(device, non_blocking=True)


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
    w = _constant(_GRAY, x.dtype, x.device).view(1, 3, 1, 1)
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
    to_yiq, from_yiq = _yiq_matrices(x.dtype, x.device)
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
    ker = ker[:, None].expand(n, c, k).reshape(n * c, k)  # each sample's kernel c times
    y = x.reshape(1, n * c, h, w)
    pad = k // 2
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), ker.view(n * c, 1, 1, k), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), ker.view(n * c, 1, k, 1), groups=n * c)
    y = y.view(n, c, h, w)
    m = _per_sample(_rand((n,), generator) < p, x)
    return torch.where(m, y, x)


def flip_and_distort(
    x: torch.Tensor,
    generator: torch.Generator,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float = 0.0,
) -> torch.Tensor:
    """The steps of a SimCLR / DINO view after its crop, in this order.

    :func:`random_hflip` (p 0.5), :func:`color_jitter` with factors ``jitter``
    (p ``jitter_p``), then, where their probabilities are positive,
    :func:`random_grayscale` (p ``gray_p``) and :func:`gaussian_blur`
    (p ``blur_p``).
    """
    x = random_hflip(x, generator)
    x = color_jitter(x, generator, *jitter, p=jitter_p)
    if gray_p > 0:
        x = random_grayscale(x, generator, p=gray_p)
    if blur_p > 0:
        x = gaussian_blur(x, generator, p=blur_p)
    return x


@dataclass(eq=False)
class SimCLRAugment:
    """SimCLR's CIFAR views: resized crop, then :func:`flip_and_distort`.

    The defaults are SimCLR's (crop scale 0.08-1, jitter 0.4/0.4/0.4/0.1 with
    p 0.8, grayscale p 0.2, no blur).
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = random_resized_crop(x, generator, scale=self.crop_scale)
        return flip_and_distort(x, generator, self.jitter, self.jitter_p, self.gray_p,
                                self.blur_p)


@dataclass(eq=False)
class TabularCorruption:
    r"""SCARF-style corruption of standardised rows: resample, then add noise.

    Each feature of each row is replaced with probability ``frac`` by the same
    feature of a uniformly drawn row of ``bank`` (the training marginals), then
    Gaussian noise of standard deviation ``noise`` is added:

    .. math::  \tilde x_{ij} = (m_{ij}\, b_{r_{ij} j} + (1 - m_{ij})\, x_{ij})
       + \sigma \epsilon_{ij}, \qquad m_{ij} \sim \mathrm{Bernoulli}(\text{frac}),\;
       r_{ij} \sim U\{1..|B|\},\; \epsilon_{ij} \sim N(0, 1).
    """

    frac: float = 0.15
    noise: float = 0.05

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


@dataclass(eq=False)
class BoundCorruption:
    """A tabular corruption bound to its bank of rows: ``t(x, g) = corruption(x, g, bank)``.

    Makes a :class:`TabularCorruption` usable where a view function
    ``t(x, generator)`` is expected (e.g. :class:`skood._training.ContrastiveNet`),
    with features resampled from the rows of ``bank`` (the training marginals).
    """

    corruption: TabularCorruption
    bank: torch.Tensor

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.corruption(x, generator, bank=self.bank)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.corruption!r}, bank of {len(self.bank)} rows)"


# --------------------------------------------------------------------------
# Permutations: shuffles that keep a sample's content and destroy its structure
# (DistillNeg's permutation negatives; generic shifting transformations)


def patch_permutation(
    x: torch.Tensor, generator: torch.Generator, n_patches: int = 4
) -> torch.Tensor:
    """Cut each image into a g x g grid (g^2 = ``n_patches``) and shuffle the cells per sample.

    DistillNeg's "Perm-N" negatives. When a side is not a multiple of g, its
    last (side mod g) rows or columns stay in place.
    """
    g = math.isqrt(n_patches)
    if n_patches < 1 or g * g != n_patches:
        raise ValueError(f"n_patches must be a square number (4, 16, ...), got {n_patches}")
    n, c, h, w = x.shape
    ph, pw = h // g, w // g
    if ph == 0 or pw == 0:
        raise ValueError(f"images of {h} x {w} pixels cannot be cut into {g} x {g} patches")
    core = x[:, :, : g * ph, : g * pw]
    cells = core.reshape(n, c, g, ph, g, pw).permute(0, 2, 4, 1, 3, 5).reshape(n, g * g, c, ph, pw)
    perm = _rand((n, g * g), generator).argsort(dim=1)
    cells = cells[torch.arange(n, device=x.device)[:, None], perm]
    core = cells.reshape(n, g, g, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, g * ph, g * pw)
    out = x.clone()
    out[:, :, : g * ph, : g * pw] = core
    return out


def pixel_permutation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shuffle the pixel positions of each image (one permutation per sample, all channels alike).

    DistillNeg's "Pix. Perm." negatives: the colour histogram is kept, every
    spatial structure destroyed.
    """
    n, c, h, w = x.shape
    perm = _rand((n, h * w), generator).argsort(dim=1)
    flat = x.reshape(n, c, h * w)
    return flat.gather(2, perm[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def feature_permutation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shuffle the features of each tabular row (one permutation per row).

    The tabular analogue of :func:`pixel_permutation`: the row's multiset of
    values is kept, its assignment to features destroyed.
    """
    perm = _rand(tuple(x.shape), generator).argsort(dim=1)
    return x.gather(1, perm)


# --------------------------------------------------------------------------
# Discrete transformations (RotAuxMSP's rotation prediction, DistillNeg's rotated
# negatives): every op takes a per-sample index k and is deterministic given k.


def _per_sample_k(k: int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(k, int):
        return torch.full((n,), k, dtype=torch.long, device=device)
    k = torch.as_tensor(k, device=device).long()
    if k.shape != (n,):
        raise ValueError(f"k must be an int or have shape ({n},), got shape {tuple(k.shape)}")
    return k


def _select(x: torch.Tensor, k: torch.Tensor, ops: Sequence[Callable]) -> torch.Tensor:
    """Apply ``ops[k_i]`` to sample i (k_i in ``range(len(ops))``); the ops keep the sample shape.

    Every op runs on the whole batch and ``torch.where`` keeps each sample's
    own result: selecting the samples of each op by a boolean mask would
    need their number on the host, a device synchronisation per op on CUDA.
    Meant for cheap ops (rotations, flips, transposes). Returns a new,
    contiguous tensor.
    """
    out = ops[0](x)
    for j in range(1, len(ops)):
        y = ops[j](x)
        out = torch.where(_per_sample(k == j, y), y, out)
    return out.contiguous() if len(ops) > 1 else out.clone()


def rotate90(x: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` (N, C, H, W) by ``k_i`` x 90 degrees counter-clockwise.

    ``k`` is an int (the same rotation for all) or a LongTensor of shape (N,)
    with values in {0, 1, 2, 3}. Odd rotations swap H and W, so batches with
    mixed ``k`` need square images.
    """
    if isinstance(k, int):
        return torch.rot90(x, k % 4, dims=(-2, -1))
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"per-sample rotations need square images, got H x W = {tuple(x.shape[-2:])}"
        )
    k = _per_sample_k(k, len(x), x.device) % 4
    return _select(x, k, [lambda z, r=r: torch.rot90(z, r, dims=(-2, -1)) for r in range(4)])


def random_rotate90(
    x: torch.Tensor, generator: torch.Generator, rotations: Sequence[int] = (1, 2, 3)
) -> torch.Tensor:
    """Rotate each image by ``k`` x 90 degrees, k drawn uniformly per sample from ``rotations``.

    The default {90, 180, 270} degrees is the shifting transformation of CSI
    and DistillNeg ("Rot."); mixed rotations need square images.
    """
    ks = _constant(tuple(rotations), torch.long, x.device)
    pick = (_rand((len(x),), generator) * len(ks)).long().clamp_(max=len(ks) - 1)
    return rotate90(x, ks[pick])


def _transpose(z: torch.Tensor) -> torch.Tensor:
    return z.transpose(-2, -1)


#: the four "rotations" of Ahmed & Courville's reference code (``rot_preprocess``
#: in ``rotation/main.py``): identity, vertical flip, transpose, vertical flip
#: then transpose (= a 90 degree clockwise rotation)
FLIP_TRANSPOSE_OPS: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (
    lambda z: z,
    lambda z: z.flip(-2),
    _transpose,
    lambda z: _transpose(z.flip(-2)),
)


def flip_transpose(x: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Apply the reference code's transformation ``k_i`` in {0: identity, 1: vertical flip,
    2: transpose, 3: vertical flip then transpose} to each image of ``x`` (N, C, H, W).

    ``k`` is an int or a LongTensor of shape (N,); transposes need square images
    when ``k`` varies across the batch.
    """
    if isinstance(k, int):
        return FLIP_TRANSPOSE_OPS[k % 4](x)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"per-sample transposes need square images, got H x W = {tuple(x.shape[-2:])}"
        )
    return _select(x, _per_sample_k(k, len(x), x.device) % 4, FLIP_TRANSPOSE_OPS)


def pad_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Zero-pad each image by ``padding`` pixels and crop it back to (H, W) at a random offset.

    The standard CIFAR "random crop after padding": the offset is uniform in
    ``[0, 2 * padding]`` on each axis, drawn per sample from ``generator``.
    """
    if padding <= 0:
        return x.clone()
    n, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    oy = (_rand((n,), generator) * (2 * padding + 1)).long().clamp_(max=2 * padding)
    ox = (_rand((n,), generator) * (2 * padding + 1)).long().clamp_(max=2 * padding)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (n, w)
    out = xp[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()  # advanced indexing puts C last


class RandomAffineMaps(torch.nn.Module):
    r"""A fixed set of random affine maps of tabular rows, as auxiliary classes (GOAD-style).

    Map m sends a standardised row x to :math:`T_m(x) = x W_m + b_m` with
    :math:`W_m \in \mathbb{R}^{D \times r}` entries :math:`\sim N(0, 1/D)`
    and :math:`b_m \sim N(0, I_r)` (or :math:`b_m = 0` with ``bias=False``),
    drawn once from ``seed``; with ``identity_first`` map 0 is the identity (as
    rotation 0 is among the rotations; needs ``r = D``). A network trained to
    tell which map was applied learns the geometry of the normal rows (GOAD:
    Bergman & Hoshen 2020, "Classification-Based Anomaly Detection for General
    Data", whose tabular maps are linear, :math:`D \to r` with r = 32 or 64,
    and without bias). The maps are buffers, so they move and pickle with the
    module.

    Parameters
    ----------
    n_maps : int
    dim : int
        Row dimension D.
    seed : int
    identity_first : bool
    out_dim : int, optional
        Output dimension r of every map (default D: one encoder takes raw and
        mapped rows).
    bias : bool, default=True
        Random offsets :math:`b_m`; without them the maps differ only in
        :math:`W_m`, so a classifier must use the rows' geometry, not their
        location, to tell the maps apart.
    """

    def __init__(self, n_maps: int, dim: int, seed: int = 0, identity_first: bool = True,
                 out_dim: int | None = None, bias: bool = True) -> None:
        super().__init__()
        out_dim = dim if out_dim is None else int(out_dim)
        if identity_first and out_dim != dim:
            raise ValueError(f"identity_first needs out_dim == dim ({dim}); got out_dim={out_dim}")
        g = torch.Generator().manual_seed(int(seed))
        W = torch.randn(n_maps, dim, out_dim, generator=g) / math.sqrt(dim)
        b = torch.randn(n_maps, out_dim, generator=g) if bias else torch.zeros(n_maps, out_dim)
        if identity_first:
            W[0] = torch.eye(dim)
            b[0] = 0.0
        self.register_buffer("weight", W)
        self.register_buffer("bias", b)
        self.n_maps = n_maps

    def forward(self, x: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
        """:math:`T_k(x)`: map ``k`` (an int) of every row, or map ``k[i]`` of row i.

        One map is one matrix product. Per-row maps apply every map to every
        row (one ``(n, D) @ (D, M D)`` product) and keep row i's map ``k[i]``:
        M times the arithmetic of gathering a ``(D, D)`` matrix per row, but
        ``n M D`` floats of memory instead of ``n D^2``, and no host
        synchronisation.
        """
        if isinstance(k, int):
            if not 0 <= k < self.n_maps:
                raise ValueError(f"k must be in [0, {self.n_maps}), got {k}")
            return torch.addmm(self.bias[k], x, self.weight[k])
        k = _per_sample_k(k, len(x), x.device)
        m, d, e = self.weight.shape
        every = (x @ self.weight.permute(1, 0, 2).reshape(d, m * e)).view(len(x), m, e)
        rows = torch.arange(len(x), device=x.device)
        return every[rows, k] + self.bias[k]

    def all_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Every map of every row in one matrix product: shape ``(M, n, r)``, ``[m] = T_m(x)``."""
        m, d, e = self.weight.shape
        every = (x @ self.weight.permute(1, 0, 2).reshape(d, m * e)).view(len(x), m, e)
        return every.transpose(0, 1) + self.bias[:, None]
