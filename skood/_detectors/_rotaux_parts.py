"""RotAuxMSP's own building blocks: its confidence scores and its class-step augmentation.

Only :mod:`skood._detectors.rotaux_msp` uses them; they live in this private
sibling module to keep that one short.

* :func:`msp`: the maximum softmax probability (Hendrycks & Gimpel 2017).
* :func:`odin`: MSP with temperature scaling and input perturbation (Liang,
  Li & Srikant 2018).
* :class:`PadCropFlip`: pad-crop and horizontal flip of image batches.

Higher scores mean more normal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._augment import pad_crop, random_hflip

__all__ = ["PadCropFlip", "msp", "odin"]


def msp(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Maximum softmax probability.

    .. math::  s(x) = \max_c \operatorname{softmax}(f(x) / T)_c

    Higher means more confident, i.e. more normal; no sign flip is needed
    for ``score_samples``. Returns a float32 tensor of shape (n,).
    Hendrycks & Gimpel (2017), "A Baseline for Detecting Misclassified and
    Out-of-Distribution Examples in Neural Networks"
    (https://arxiv.org/abs/1610.02136).

    Parameters
    ----------
    logits : Tensor of shape (n, n_classes)
    temperature : float
        Softmax temperature T (1 for plain MSP).
    """
    return torch.softmax(logits.float() / temperature, dim=1).amax(dim=1)


def odin(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    temperature: float = 1000.0,
    epsilon: float = 5e-5,
) -> torch.Tensor:
    r"""ODIN score: temperature scaling plus input perturbation.

    Liang, Li & Srikant (2018), "Enhancing The Reliability of
    Out-of-distribution Image Detection in Neural Networks"
    (https://arxiv.org/abs/1706.02690), eq. 1-2:

    .. math::  \tilde x = x - \epsilon\operatorname{sign}(-\nabla_x \log S_{\hat y}(x; T)),
       \qquad s(x) = \max_c S_c(\tilde x; T),
       \qquad S(x; T) = \operatorname{softmax}(f(x) / T)

    with :math:`\hat y` the predicted class: the input is nudged to raise the
    temperature-scaled confidence of its own prediction, which raises it more
    for in-distribution inputs. Higher = more normal. The gradient is taken
    with respect to the input only (``torch.autograd.grad``; parameter
    gradients are neither computed nor accumulated), so this must not run
    under :func:`torch.inference_mode` / :func:`torch.no_grad`: it enables
    gradients itself. Put ``model`` in eval mode first.

    Parameters
    ----------
    model : callable
        Maps a float batch ``x`` to logits (n, n_classes).
    x : Tensor
        Model input (one batch, on the model's device).
    temperature : float
        T (paper and Ahmed & Courville: 1000).
    epsilon : float
        Perturbation size in model-input units (paper setting: 5e-5).

    Returns
    -------
    Tensor of shape (n,), float32, detached.
    """
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().float().requires_grad_(True)
        logits = model(xg).float() / temperature
        logp = torch.log_softmax(logits, dim=1)
        top = logp.max(dim=1).values.sum()  # log S_yhat, per-sample terms are independent
        (grad,) = torch.autograd.grad(top, xg)
        x_tilde = xg.detach() + epsilon * grad.sign()
        with torch.no_grad():
            return msp(model(x_tilde), temperature)


@dataclass(eq=False)
class PadCropFlip:
    """The class step's augmentation of images: :func:`~skood._augment.pad_crop` then
    :func:`~skood._augment.random_hflip` (the standard CIFAR "random crop after padding"
    and horizontal flip)."""

    padding: int = 4

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_hflip(pad_crop(x, generator, self.padding), generator)
