"""DINO self-distillation, the training machinery of DistillNeg.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski & Joulin (2021), "Emerging
Properties in Self-Supervised Vision Transformers"
(https://arxiv.org/abs/2104.14294), as Rafiee et al. (2022) write it in
section 3.1 of "Self-Supervised Anomaly Detection by Self-Distillation
and Negative Sampling" (https://arxiv.org/abs/2201.06378); the equation
numbers below are theirs. :class:`DINONet` trains a :class:`DINOModel`
(:class:`skood._detectors.distillneg.DistillNegNet` adds the negatives); one
step uses, in order:

* :class:`MultiCrop`: the global and local views of a batch (with
  :func:`random_solarize`);
* :class:`DINOModel`: student and teacher, each an encoder plus a
  :class:`DINOHead` (K soft classes), and the centre of the teacher's
  outputs; :class:`SmallViT` is the small Vision Transformer encoder;
* :func:`dino_loss` (eq. 1 and 3) and :func:`dino_center_update`;
* :func:`cosine_schedule`: the per-step learning rate, weight decay and
  teacher momentum; :func:`clip_grad_per_param_`: DINO's gradient clipping;
  :func:`ema_update_`: the EMA teacher (eq. 2).

Everything here is used by DistillNeg alone; what a second detector needs
lives in the shared layer (:mod:`skood._augment`, :mod:`skood._nn`,
:mod:`skood._training`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VisionTransformer

from .._augment import flip_and_distort, random_resized_crop
from .._nn.losses import float32_loss
from .._training import SkoodNet

__all__ = [
    "DINOHead",
    "DINOModel",
    "DINONet",
    "EncoderWithHead",
    "MultiCrop",
    "SmallViT",
    "clip_grad_per_param_",
    "cosine_schedule",
    "dino_center_update",
    "dino_loss",
    "ema_update_",
    "random_solarize",
]

#: final learning rate of the cosine schedule (DINO's min_lr)
_MIN_LR = 1e-6


# --------------------------------------------------------------------------
# Multi-crop views


def random_solarize(
    x: torch.Tensor, generator: torch.Generator, p: float = 0.2, threshold: float = 0.5
) -> torch.Tensor:
    """Invert the values at or above ``threshold`` (``x -> 1 - x``) of each sample with prob. p."""
    m = torch.rand((len(x),), generator=generator, device=generator.device) < p
    m = m.view(-1, *([1] * (x.dim() - 1)))
    return torch.where(m & (x >= threshold), 1.0 - x, x)


@dataclass(eq=False)
class MultiCrop:
    r"""DINO's multi-crop views of an image batch (after SwAV).

    ``n_global`` global views are random resized crops covering a fraction
    ``global_scale`` of the image, resized to the full size; ``n_local`` local
    views cover ``local_scale`` and are resized to ``local_size`` times each
    side (at least 4 pixels, at most the full side). Every view is then
    flipped (p 0.5), colour-jittered (p ``jitter_p``), turned grey (p
    ``gray_p``) and blurred as in DINO: the first global view always, the
    other global views with p 0.1 (and solarised with p 0.2), local views
    with p 0.5.

    Parameters
    ----------
    n_global, n_local : int
        Numbers of global and local views.
    global_scale, local_scale : tuple of float
        Area fractions of the crops.
    local_size : float
        Side of the local views relative to the image side.
    jitter : tuple of four floats
        Brightness, contrast, saturation, hue of
        :func:`skood._augment.color_jitter`.
    jitter_p, gray_p : float
        Probabilities of colour jitter and grayscale.

    Calling it on a batch (N, C, H, W) returns ``(global_views, local_views)``,
    two lists of tensors of shapes (N, C, H, W) and (N, C, h, w).
    """

    n_global: int = 2
    n_local: int = 8
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    local_size: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2

    def local_shape(self, h: int, w: int) -> tuple[int, int]:
        """(h, w) of the local views of an H x W image."""

        def side(s: int) -> int:
            return min(s, max(int(round(self.local_size * s)), 4))

        return side(h), side(w)

    def _finish(
        self, v: torch.Tensor, g: torch.Generator, blur_p: float, solarize_p: float
    ) -> torch.Tensor:
        v = flip_and_distort(v, g, self.jitter, self.jitter_p, self.gray_p, blur_p)
        if solarize_p > 0:
            v = random_solarize(v, g, p=solarize_p)
        return v

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        g = generator
        views_g = []
        for i in range(self.n_global):
            v = random_resized_crop(x, g, scale=self.global_scale)
            views_g.append(self._finish(v, g, 1.0 if i == 0 else 0.1, 0.0 if i == 0 else 0.2))
        size = self.local_shape(*x.shape[-2:])
        views_l = [
            self._finish(random_resized_crop(x, g, scale=self.local_scale, size=size), g, 0.5, 0.0)
            for _ in range(self.n_local)
        ]
        return views_g, views_l


# --------------------------------------------------------------------------
# Networks: the head with K soft classes, student and EMA teacher, a small ViT


class DINOHead(nn.Module):
    r"""DINO's head: MLP, L2 normalisation, weight-normalised linear layer to K soft classes.

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
        z = F.normalize(self.mlp(x), dim=-1)
        w = self.weight_g[:, None] * F.normalize(self.weight_v, dim=1)
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
    student by an exponential moving average (eq. 2, :func:`ema_update_`),

    .. math::  \theta_t \leftarrow m\,\theta_t + (1 - m)\,\theta_s .

    ``center`` (a buffer of shape (1, K)) is the running mean of the
    teacher's outputs that :func:`dino_loss` subtracts.

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


class SmallViT(nn.Module):
    r"""A small ViT for small images, built from torchvision's ``VisionTransformer``.

    torchvision's patch embedding (a ``patch_size`` stride convolution, here
    with ``in_channels`` inputs), class token, transformer blocks and final
    LayerNorm; the classifier is dropped and the output is the class
    token's ``dim``-d representation. Unlike torchvision's forward, inputs
    of any size work: the positional embedding of the ``image_size`` grid is
    bicubically interpolated to the input's patch grid (as DINO does for its
    local crops); pixels beyond the last whole patch are ignored.

    Parameters
    ----------
    in_channels : int
    image_size : tuple of int
        (H, W) of the images the positional embedding is laid out for.
    patch_size : int or None
        None: ``max(1, round(min(H, W) / 8))``, an 8 x 8 grid for CIFAR-size
        images (4-pixel patches on 28-32 pixel images).
    dim, depth, heads, mlp_ratio : int
        Token width, number of blocks, attention heads, MLP width / dim
        (default 192, 6, 3, 4: ViT-Tiny's width at half its depth).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        patch_size: int | None = None,
        dim: int = 192,
        depth: int = 6,
        heads: int = 3,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        p = patch_size or max(1, int(round(min(h, w) / 8)))
        if p > min(h, w):
            raise ValueError(f"patch_size {p} exceeds the image side {min(h, w)}")
        grid = max(h // p, w // p)
        vit = VisionTransformer(
            image_size=grid * p, patch_size=p, num_layers=depth, num_heads=heads,
            hidden_dim=dim, mlp_dim=mlp_ratio * dim,
        )
        vit.conv_proj = nn.Conv2d(in_channels, dim, kernel_size=p, stride=p)
        fan_in = in_channels * p * p
        nn.init.trunc_normal_(vit.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(vit.conv_proj.bias)
        vit.heads = nn.Identity()
        self.vit = vit
        self.patch_size = p
        self.grid = grid
        self.out_features = dim

    def _pos_embedding(self, gh: int, gw: int) -> torch.Tensor:
        pos = self.vit.encoder.pos_embedding  # (1, 1 + grid^2, dim)
        if gh == gw == self.grid:
            return pos
        cls, patches = pos[:, :1], pos[:, 1:]
        d = patches.shape[-1]
        patches = patches.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, gh * gw, d)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        if min(x.shape[-2:]) < self.patch_size:
            raise ValueError(
                f"inputs of {tuple(x.shape[-2:])} pixels are smaller than one "
                f"{self.patch_size} x {self.patch_size} patch"
            )
        t = vit.conv_proj(x)  # (n, dim, gh, gw)
        gh, gw = t.shape[-2:]
        t = t.flatten(2).transpose(1, 2)
        t = torch.cat([vit.class_token.expand(len(t), -1, -1), t], dim=1)
        t = t + self._pos_embedding(gh, gw)
        t = vit.encoder.ln(vit.encoder.layers(vit.encoder.dropout(t)))
        return t[:, 0]


# --------------------------------------------------------------------------
# The objective: centred, sharpened teacher targets


@float32_loss
def dino_loss(
    student_logits: list[torch.Tensor],
    teacher_logits: list[torch.Tensor],
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    r"""DINO's cross-entropy between centred, sharpened teacher and student outputs.

    Eq. 1 and 3: with :math:`p = \operatorname{softmax}(g/\tau)`,

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


# --------------------------------------------------------------------------
# The optimisation: per-step schedules, gradient clipping, the EMA teacher


def cosine_schedule(
    base: float,
    final: float,
    n_steps: int,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> np.ndarray:
    r"""Per-step values: linear warm-up, then a half cosine from ``base`` to ``final``.

    Steps :math:`0 \ldots w-1` rise linearly from ``warmup_start`` to
    ``base``; then, over the remaining :math:`T = n - w` steps,

    .. math::  v_t = \text{final} + \tfrac12(\text{base} - \text{final})
       \big(1 + \cos(\pi t / T)\big)

    (DINO's ``cosine_scheduler``, used for the learning rate, the weight
    decay and the teacher momentum). Returns an array of ``n_steps`` floats.
    """
    warmup_steps = int(min(max(warmup_steps, 0), n_steps))
    warm = np.linspace(warmup_start, base, warmup_steps, endpoint=False)
    rest = n_steps - warmup_steps
    t = np.arange(rest)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * t / max(rest, 1)))
    return np.concatenate([warm, cos])


@torch.no_grad()
def clip_grad_per_param_(parameters: Iterable[torch.Tensor], max_norm: float) -> None:
    r"""Scale each parameter's gradient to an L2 norm of at most ``max_norm``, in place.

    Per parameter :math:`g \leftarrow g \min\big(1, c / (\lVert g\rVert_2 + 10^{-6})\big)`,
    DINO's ``clip_gradients`` (each tensor on its own, unlike the global norm
    of :func:`torch.nn.utils.clip_grad_norm_`). Parameters without a
    gradient are skipped. Computed with multi-tensor (``torch._foreach_*``)
    ops, elementwise the same arithmetic as one tensor at a time, and
    without reading a norm back to the host.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    coefs = torch._foreach_norm(grads, 2)
    coefs = torch._foreach_add(coefs, 1e-6)
    torch._foreach_reciprocal_(coefs)  # c / n is computed as (1 / n) * c, as torch does
    torch._foreach_mul_(coefs, max_norm)
    torch._foreach_clamp_max_(coefs, 1.0)
    torch._foreach_mul_(grads, coefs)


@torch.no_grad()
def ema_update_(target: torch.nn.Module, source: torch.nn.Module, momentum: float) -> None:
    r"""In place :math:`\theta_t \leftarrow m\,\theta_t + (1 - m)\,\theta_s` for every parameter.

    The EMA ("mean") teacher of DINO and BYOL (eq. 2); buffers (e.g.
    BatchNorm statistics) are left to the target's own forward passes.
    """
    targets = list(target.parameters())
    sources = [p.detach() for p in source.parameters()]
    if len(targets) != len(sources):
        raise ValueError(
            f"ema_update_: the target has {len(targets)} parameters, the source {len(sources)}"
        )
    if not targets:
        return
    # one multi-tensor kernel per op instead of two kernels per parameter
    torch._foreach_mul_(targets, momentum)
    torch._foreach_add_(targets, sources, alpha=1.0 - momentum)


# --------------------------------------------------------------------------
# The training step


class DINONet(SkoodNet):
    r"""skorch net: DINO self-distillation of a :class:`DINOModel` (eq. 1-3).

    Every step:

    1. views of the batch (``views(x, generator)``, e.g. :class:`MultiCrop`):
       the teacher sees the global views, the student every view;
       :math:`\mathcal{L}_{pos}` is :func:`dino_loss` with the centred
       teacher output at temperature :math:`\tau_t` (linear warm-up
       ``teacher_temp``) and the student's at ``student_temp``;
    2. :math:`\mathcal{L} = \mathcal{L}_{pos}`, plus the term of
       :meth:`extra_loss` when it returns one (DistillNeg's negatives);
    3. per-parameter gradient-norm clipping at ``clip_grad`` (DINO's
       ``clip_gradients``, :func:`clip_grad_per_param_`); an AdamW step with
       the learning rate and weight decay of this step (linear warm-up then
       cosine, :func:`cosine_schedule`; no decay on biases and normalisation
       weights); the EMA teacher update (:func:`ema_update_`) with this
       step's momentum (cosine from ``teacher_momentum`` to 1) and the centre
       update (:func:`dino_center_update`).

    The steps are :class:`~skood._training.SkoodNet`'s hooks: the schedules in
    :meth:`before_step`, the clipping in :meth:`after_backward`, the teacher
    update in :meth:`after_step`. The optimiser (``optimizer``, e.g. AdamW)
    gets only the student's parameters (:meth:`get_all_learnable_params`),
    biases and normalisation weights without weight decay
    (``decay_1d=False``); its ``weight_decay`` starts at ``weight_decay[0]``
    (``optimizer__weight_decay`` overrides it). When training ends, the
    teacher's BatchNorm statistics are recomputed with its final weights
    over the clean training data (precise BN: :meth:`batchnorm_module`,
    :meth:`batchnorm_forward`). The per-batch term :math:`\mathcal{L}_{pos}`
    is recorded in the history as ``loss_pos``.

    Parameters
    ----------
    module : DINOModel
    views : callable
        ``views(x, generator) -> (global_views, local_views)``.
    student_temp : float
    teacher_temp : tuple (start, end, warm-up fraction)
    center_momentum : float
    teacher_momentum : float
    weight_decay : tuple (start, end)
    lr_warmup : float
        Fraction of the steps of linear learning-rate warm-up.
    clip_grad : float
        0 disables clipping.
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        views: Any = None,
        student_temp: float = 0.1,
        teacher_temp: tuple[float, float, float] = (0.055, 0.01, 1.0),
        center_momentum: float = 0.9,
        teacher_momentum: float = 0.996,
        weight_decay: tuple[float, float] = (0.04, 0.4),
        lr_warmup: float = 0.1,
        clip_grad: float = 3.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("decay_1d", False)
        kwargs.setdefault("optimizer__weight_decay", weight_decay[0])
        super().__init__(module, *args, **kwargs)
        self.views = views
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.center_momentum = center_momentum
        self.teacher_momentum = teacher_momentum
        self.weight_decay = weight_decay
        self.lr_warmup = lr_warmup
        self.clip_grad = clip_grad

    # --- optimiser and schedules ---------------------------------------------
    def get_all_learnable_params(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The student's parameters (the teacher follows by EMA)."""
        for name, p in self.module_.student.named_parameters(prefix="student"):
            if p.requires_grad:
                yield name, p

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        super().on_train_begin(net, X=X, y=y, **kwargs)
        per_epoch = len(self.get_iterator(self.get_dataset(X), training=True))
        n = max(1, self.budget_.epochs * per_epoch)  # the steps of the (capped) run
        self.lr_schedule_ = cosine_schedule(self.lr, _MIN_LR, n, round(self.lr_warmup * n))
        self.wd_schedule_ = cosine_schedule(self.weight_decay[0], self.weight_decay[1], n)
        self.momentum_schedule_ = cosine_schedule(self.teacher_momentum, 1.0, n)
        t0, t1, frac = self.teacher_temp
        warm = max(1, round(frac * n))
        self.teacher_temp_schedule_ = np.concatenate(
            [np.linspace(t0, t1, warm), np.full(n - warm, t1)]
        )[:n]
        self.step_ = 0

    def _at(self, schedule: np.ndarray) -> float:
        return float(schedule[min(self.step_, len(schedule) - 1)])

    def before_step(self) -> None:
        """This step's learning rate and weight decay (biases and norms: no decay)."""
        decay, no_decay = self.optimizer_.param_groups
        decay["lr"] = no_decay["lr"] = self._at(self.lr_schedule_)
        decay["weight_decay"] = self._at(self.wd_schedule_)

    def after_backward(self) -> None:
        """DINO's per-parameter gradient clipping at ``clip_grad``."""
        if self.clip_grad > 0:
            clip_grad_per_param_(self.module_.student.parameters(), self.clip_grad)

    def after_step(self, x: torch.Tensor, idx: torch.Tensor, step: dict[str, Any]) -> None:
        """The EMA teacher update with this step's momentum (eq. 2)."""
        ema_update_(self.module_.teacher, self.module_.student, self._at(self.momentum_schedule_))
        self.step_ += 1

    # --- objective ---------------------------------------------------------------
    def student_logits(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Student logits of each view; views of one size go through in one forward pass."""
        if not views:
            return []
        return list(self.module_.student(torch.cat(views)).chunk(len(views)))

    def extra_loss(self, x: torch.Tensor) -> torch.Tensor | None:
        r"""A term added to :math:`\mathcal{L}_{pos}` after the views' draws (None: none).

        Called once per step, after the views of ``x`` are drawn from
        ``generator_`` and before the centre update.
        """
        return None

    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        model = self.module_
        views_g, views_l = self.views(x, self.generator_)
        with torch.no_grad():
            teacher = list(model.teacher(torch.cat(views_g)).chunk(len(views_g)))
        student = self.student_logits(views_g) + self.student_logits(views_l)
        tau_t = self._at(self.teacher_temp_schedule_)
        loss_pos = dino_loss(student, teacher, model.center, self.student_temp, tau_t)
        extra = self.extra_loss(x)
        loss = loss_pos if extra is None else loss_pos + extra
        self.record_batch_value("loss_pos", loss_pos)
        model.center.copy_(dino_center_update(model.center, teacher, self.center_momentum))
        return loss

    # --- precise BatchNorm: the teacher's, on clean training data -------------
    def batchnorm_module(self) -> nn.Module:
        """The teacher: scoring uses its features."""
        return self.module_.teacher

    def batchnorm_forward(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        """The teacher on the unaugmented batch: scoring compares features of clean samples."""
        self.module_.teacher(x)
