"""skorch plumbing shared by every detector.

Each training phase of a detector is a thin :class:`skorch.NeuralNet` subclass
that overrides :meth:`~skorch.NeuralNet.train_step_single` (its objective) and
nothing else; skorch owns the epoch loop, optimiser, callbacks and history.
This module provides the pieces those subclasses share:

* :class:`TensorLoader`: a batch iterator over in-memory tensors that slices
  whole batches (no per-sample collation) and shuffles with its own
  :class:`torch.Generator`; it yields ``(X_batch, index_batch)`` so objectives
  can look up per-sample side information (e.g. SemSAD's neighbourhoods).
* :class:`SkoodNet`: the common base (devices, seeded generators, mixed
  precision, the ``(x, idx)`` batch convention).
* :class:`PhaseProgress`: a tqdm progress bar per training phase.
* :func:`make_net_kwargs`: the skorch keyword arguments every phase uses
  (``train_split=None``: no silent validation split; shuffled batches).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, LRScheduler

from .nn.losses import nt_xent
from .utils import to_model_input

__all__ = [
    "TensorLoader",
    "SkoodNet",
    "PhaseProgress",
    "make_net_kwargs",
    "piecewise_lr",
    "ContrastiveNet",
]


class TensorLoader:
    """Iterate over a skorch ``Dataset`` of tensors in whole-batch slices.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Its ``X`` must be a tensor (``y`` is ignored).
    batch_size : int
    shuffle : bool
        Draw a fresh permutation every epoch from ``generator``.
    generator : torch.Generator, optional
        CPU generator for the permutation (reproducible data order).

    Yields
    ------
    (X_batch, idx_batch) : the rows and their indices in ``dataset.X``.
    A last batch of a single sample is dropped (BatchNorm cannot train on it).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 128,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        **_: Any,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def _n(self) -> int:
        return len(self.dataset.X)

    def __len__(self) -> int:
        n, b = self._n(), self.batch_size
        full, rest = divmod(n, b)
        return full + (1 if rest >= 2 or (full == 0 and rest > 0) else 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        X = self.dataset.X
        n = self._n()
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if len(idx) < 2 and start > 0:
                break
            yield X[idx.to(X.device)], idx


class SkoodNet(NeuralNet):
    """Base skorch net for skood's training phases.

    Subclasses implement :meth:`compute_loss` ``(x, idx) -> loss``, where ``x``
    is the float batch on the training device and ``idx`` the batch's indices
    into the training set. Randomness inside the objective must come from
    ``self.generator_`` (on the training device) or ``self.cpu_generator_``,
    both seeded from ``seed`` when training starts.

    Parameters
    ----------
    module : torch.nn.Module
        The network(s) trained in this phase.
    seed : int
        Seed of the objective's generators.
    amp : bool
        bfloat16 autocast on CUDA devices that support it (ignored on CPU).
    precise_bn : bool
        Recompute BatchNorm statistics with the final weights when training
        ends (see :meth:`recalibrate_batchnorm`).
    **kwargs
        Passed to :class:`skorch.NeuralNet`.
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        seed: int = 0,
        amp: bool = True,
        precise_bn: bool = True,
        **kwargs: Any,
    ):
        kwargs.setdefault("criterion", torch.nn.Identity)
        super().__init__(module, *args, **kwargs)
        self.seed = seed
        self.amp = amp
        self.precise_bn = precise_bn

    # --- hooks --------------------------------------------------------------
    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        super().on_train_begin(net, X=X, y=y, **kwargs)
        dev = torch.device(self.device)
        self.generator_ = torch.Generator(device=dev).manual_seed(self.seed)
        self.cpu_generator_ = torch.Generator().manual_seed(self.seed + 1)

    def _autocast(self) -> contextlib.AbstractContextManager:
        dev = torch.device(self.device)
        if self.amp and dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        self._set_training(True)
        xb, idx = batch
        x = to_model_input(xb, self.device)
        with self._autocast():
            loss = self.compute_loss(x, idx)
        loss.backward()
        return {"loss": loss, "y_pred": None}

    @torch.no_grad()
    def recalibrate_batchnorm(self, X: torch.Tensor) -> None:
        """Recompute BatchNorm running statistics with the final weights ("precise BN").

        After training, BatchNorm's running averages still mix in the
        statistics of early weights (and, after a few steps, their
        initial values), so the eval-mode network differs from the one the
        objective trained. One forward-only pass over the training data,
        through the objective's own input pipeline and with cumulative
        averaging, replaces them with the statistics of the final network.
        """
        bn_type = torch.nn.modules.batchnorm._BatchNorm
        bns = [m for m in self.module_.modules() if isinstance(m, bn_type)]
        if not bns:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        self._set_training(True)
        loader = self.get_iterator(self.get_dataset(X), training=True)
        for xb, idx in loader:
            with self._autocast():
                self.compute_loss(to_model_input(xb, self.device), idx)
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        self._set_training(False)

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        super().on_train_end(net, X=X, y=y, **kwargs)
        if self.precise_bn:
            self.recalibrate_batchnorm(X)

    def uniform(self, low: float, high: float) -> float:
        """A scalar from U(low, high) drawn from the CPU generator (no device sync)."""
        u = torch.rand((), generator=self.cpu_generator_).item()
        return low + (high - low) * u


class PhaseProgress(Callback):
    """tqdm progress bar over the epochs of one training phase, with the last loss."""

    def __init__(self, name: str = "train") -> None:
        self.name = name

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=net.max_epochs, desc=self.name, leave=True)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.bar_.set_postfix(loss=f"{net.history[-1, 'train_loss']:.4f}")
        self.bar_.update(1)

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        self.bar_.close()
        del self.bar_


def piecewise_lr(milestones: tuple[float, ...], factors: tuple[float, ...], max_epochs: int):
    """LRScheduler callback: lr = base x ``factors[j]`` from epoch ``milestones[j] * max_epochs``.

    Milestones are fractions of the training budget, so a schedule written for
    the paper's budget keeps its shape at any number of epochs.
    """
    bounds = [round(m * max_epochs) for m in milestones]

    def factor(epoch: int) -> float:
        f = 1.0
        for b, fac in zip(bounds, factors, strict=True):
            if epoch >= b:
                f = fac
        return f

    return LRScheduler(policy=torch.optim.lr_scheduler.LambdaLR, lr_lambda=factor)


def make_net_kwargs(
    *,
    name: str,
    max_epochs: int,
    batch_size: int,
    lr: float,
    device: str,
    seed: int,
    verbose: int,
    optimizer: Any = torch.optim.Adam,
    callbacks: list | None = None,
    **optimizer_kwargs: Any,
) -> dict[str, Any]:
    """Keyword arguments shared by every training phase's :class:`SkoodNet`."""
    cbs = list(callbacks or [])
    if verbose == 1:
        cbs.append(("progress", PhaseProgress(name)))
    kw: dict[str, Any] = {
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "device": device,
        "seed": seed,
        "optimizer": optimizer,
        "train_split": None,
        "iterator_train": TensorLoader,
        "iterator_train__shuffle": True,
        "iterator_train__generator": torch.Generator().manual_seed(seed),
        "callbacks": cbs,
        "verbose": 1 if verbose >= 2 else 0,
    }
    kw.update({f"optimizer__{k}": v for k, v in optimizer_kwargs.items()})
    return kw


class ContrastiveNet(SkoodNet):
    r"""Contrastive (SimCLR-style) training of an encoder with NT-Xent.

    Each step draws two augmented views of the batch, embeds them in one
    forward pass and minimises :func:`skood.nn.losses.nt_xent`.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch to embeddings (e.g. :class:`skood.nn.heads.ContrastiveModel`).
    augment : callable
        ``augment(x, generator) -> view``, batched and per-sample random.
    temperature : float
        NT-Xent temperature :math:`\tau`.
    symmetric : bool
        2B x 2B SimCLR loss (True) or the one-directional B x B form (False).
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        augment: Any = None,
        temperature: float = 0.5,
        symmetric: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, *args, **kwargs)
        self.augment = augment
        self.temperature = temperature
        self.symmetric = symmetric

    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        v1 = self.augment(x, self.generator_)
        v2 = self.augment(x, self.generator_)
        z1, z2 = self.module_(torch.cat([v1, v2])).chunk(2)
        return nt_xent(z1, z2, self.temperature, self.symmetric)


# --------------------------------------------------------------------------
# Per-step schedules and the EMA teacher update (DINO-style training).


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
def ema_update_(target: torch.nn.Module, source: torch.nn.Module, momentum: float) -> None:
    r"""In place :math:`\theta_t \leftarrow m\,\theta_t + (1 - m)\,\theta_s` for every parameter.

    The EMA ("mean") teacher of DINO and BYOL (Rafiee et al. 2022, eq. 2);
    buffers (e.g. BatchNorm statistics) are left to the target's own forward
    passes.
    """
    for pt, ps in zip(target.parameters(), source.parameters(), strict=True):
        pt.mul_(momentum).add_(ps.detach(), alpha=1.0 - momentum)


__all__ += ["cosine_schedule", "ema_update_"]
