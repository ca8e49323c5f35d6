"""skorch plumbing shared by every detector.

Each training phase of a detector is a thin :class:`SkoodNet` subclass that
implements :meth:`SkoodNet.compute_loss` (its objective) and, where its method
needs them, the step hooks :meth:`~SkoodNet.before_step`,
:meth:`~SkoodNet.after_backward`, :meth:`~SkoodNet.after_step`,
:meth:`~SkoodNet.batchnorm_forward` / :meth:`~SkoodNet.batchnorm_module` and
skorch's ``get_all_learnable_params``; skorch owns the epoch loop, optimiser,
callbacks and history. This module provides the pieces those subclasses share:

* :class:`TensorLoader`: a batch iterator over in-memory tensors that slices
  whole batches (no per-sample collation) and shuffles with its own
  :class:`torch.Generator`; it yields ``(X_batch, index_batch)`` so objectives
  can look up per-sample side information (e.g. SemSAD's neighbourhoods).
* :class:`SkoodNet`: the common base (skood's skorch defaults, devices,
  seeded generators, mixed precision, channels-last images on CUDA, the
  ``(x, idx)`` batch convention, the step hooks, per-batch history values
  recorded without host-device synchronisation, a
  :class:`TrainingDivergedError` when the loss stops being finite, and a
  ``KeyboardInterrupt`` that propagates instead of ending training early).
* :func:`flush_denormals` (a context manager) and
  :func:`is_flushing_denormals` (the query): the training epochs run with
  subnormal floats flushed to zero on the CPU (dead units' optimiser state
  slows steps).
* :func:`cumulative_batchnorm`: the BatchNorm statistics of the final
  weights ("precise BN", :meth:`SkoodNet.recalibrate_batchnorm`).
* :class:`PhaseProgress`: a tqdm progress bar per training phase.
* :class:`ContrastiveNet`: SimCLR-style NT-Xent training of an encoder.
* :func:`step_budget` (:class:`StepBudget`): the epochs and batches per epoch of a
  phase under a cap on its optimiser steps (``max_steps``, :data:`AUTO_EPOCH_ROWS`).
* :class:`PhaseLRScheduler`, :func:`piecewise_lr` and :func:`cosine_lr`: epoch
  learning-rate schedules over the epochs a phase runs (its step budget's).

DINO's per-step schedules, gradient clipping and EMA teacher serve
DistillNeg alone and live with it (:mod:`skood._detectors.dino`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, LRScheduler
from skorch.dataset import get_len
from skorch.utils import TeeGenerator
from torch import nn

from ._nn.losses import nt_xent
from ._utils import FitGenerators, seed_stream, to_model_input

__all__ = [
    "AUTO_EPOCH_ROWS",
    "ContrastiveNet",
    "PhaseLRScheduler",
    "PhaseProgress",
    "SkoodNet",
    "StepBudget",
    "TensorLoader",
    "TrainingDivergedError",
    "cosine_lr",
    "cumulative_batchnorm",
    "flush_denormals",
    "is_flushing_denormals",
    "piecewise_lr",
    "step_budget",
]

#: ``max_steps="auto"``: a phase's epochs each visit at most this many training rows
#: (``epochs * ceil(AUTO_EPOCH_ROWS / batch_size)`` optimiser steps), so no phase on at most
#: this many rows is capped, whatever its epochs and batch size.
AUTO_EPOCH_ROWS = 10_000


@dataclass(frozen=True)
class StepBudget:
    """The epochs a training phase runs and the batches of each (:func:`step_budget`).

    Attributes
    ----------
    epochs : int
    batches_per_epoch : int or None
        At most this many batches per epoch; None: every batch of the epoch.
    """

    epochs: int
    batches_per_epoch: int | None

    def steps(self, full_batches: int) -> int:
        """Optimiser steps of the phase when an uncapped epoch has ``full_batches``."""
        per_epoch = full_batches if self.batches_per_epoch is None else self.batches_per_epoch
        return self.epochs * per_epoch


def step_budget(epochs: int, full_batches: int, batch_size: int,
                max_steps: int | str | None) -> StepBudget:
    """The epochs and batches per epoch of a phase capped at ``max_steps`` optimiser steps.

    The phase runs its ``epochs`` with ``full_batches`` batches each while that is at most
    the cap. Beyond it, every epoch runs ``max_steps // epochs`` batches (the first ones of
    the epoch's fresh permutation, see :class:`TensorLoader`), and a cap below ``epochs``
    runs ``max_steps`` epochs of one batch: never more than ``max_steps`` steps.

    Why a random subset per epoch, not fewer passes over all rows: the phase keeps its
    epochs, so epoch schedules (:func:`piecewise_lr`, :func:`cosine_lr`) keep their shape
    and resolution, where one or two capped passes would squeeze a schedule into a few
    epochs; each epoch's rows are the first of the permutation the uncapped epoch draws
    anyway (the data-order generator of the phase's seed, stream "net" of
    :data:`skood._utils.SEED_STREAMS`), so a cap that is not reached changes no draw
    (bit-identical fits) and no new random stream is needed; and every epoch draws from
    all rows, so the run covers the data in proportion to its steps instead of stopping
    part-way through one fixed order.

    Parameters
    ----------
    epochs : int
    full_batches : int
        Batches of an uncapped epoch (the loader's length).
    batch_size : int
        The loader's batch size (for "auto").
    max_steps : int, "auto" or None
        The cap; "auto" is ``epochs * ceil(AUTO_EPOCH_ROWS / batch_size)``, so every epoch
        visits at most :data:`AUTO_EPOCH_ROWS` rows, rounded up to whole batches; None: no
        cap (the epochs alone).
    """
    if max_steps is None:
        return StepBudget(epochs, None)
    if max_steps == "auto":
        max_steps = epochs * math.ceil(AUTO_EPOCH_ROWS / batch_size)
    max_steps = int(max_steps)
    if max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, 'auto' or None, got {max_steps}")
    if epochs * full_batches <= max_steps:
        return StepBudget(epochs, None)
    epochs = min(epochs, max_steps)
    return StepBudget(epochs, max(1, min(full_batches, max_steps // epochs)))


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
        CPU generator for the permutation (reproducible data order, the same
        on every device).
    min_batch : int, default=2
        A last batch of fewer samples is dropped, unless it is the epoch's
        only batch (BatchNorm cannot train on one sample; DUM's sets need
        whole sets).
    max_batches : int or None, default=None
        At most this many batches per epoch (a phase's step cap,
        :func:`step_budget`): the epoch draws its permutation of all rows as
        usual and stops after that many batches, so with ``shuffle`` every
        epoch trains on a fresh random subset of the rows (all rows are drawn
        from; the same permutation draw as uncapped, so a cap that is not
        reached changes nothing). None: every batch.

    Yields
    ------
    (X_batch, idx_batch) : the rows and their indices in ``dataset.X``, both
    on the device of ``dataset.X``. The epoch's permutation is drawn on the
    CPU and copied to that device once (asynchronously), so slicing a batch
    needs no host-device transfer.
    A last batch smaller than ``min_batch`` is dropped.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 128,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        min_batch: int = 2,
        max_batches: int | None = None,
        **_: Any,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.min_batch = min_batch
        self.max_batches = max_batches

    def _n(self) -> int:
        return len(self.dataset.X)

    def full_len(self) -> int:
        """Batches of an uncapped epoch."""
        n, b = self._n(), self.batch_size
        full, rest = divmod(n, b)
        if full == 0:
            return 1 if rest > 0 else 0
        return full + (1 if rest >= self.min_batch else 0)

    def __len__(self) -> int:
        full = self.full_len()
        return full if self.max_batches is None else min(full, self.max_batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        X = self.dataset.X
        n = self._n()
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        if self.max_batches is not None and self.max_batches < self.full_len():
            n = self.max_batches * self.batch_size
            order = order[:n]
        order = order.to(X.device, non_blocking=True)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if start > 0 and len(idx) < self.min_batch:
                break
            yield X[idx], idx


class TrainingDivergedError(ValueError):
    """A training phase's loss is not finite: training diverged (typically: the learning rate is
    too large for the objective).

    Attributes
    ----------
    phase : str or None
        The phase's name (``SkoodNet.name``); None when the losses stayed
        finite and the trained network's output is not (a detector's check of
        its training scores).
    epoch : int or None
        The epoch (1-based) whose recorded losses are not all finite.
    lr : float or None
        The phase's learning rate (its ``lr``).
    loss : float or None
        The first non-finite loss of that epoch.
    """

    def __init__(self, message: str, phase: str | None = None, epoch: int | None = None,
                 lr: float | None = None, loss: float | None = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.epoch = epoch
        self.lr = lr
        self.loss = loss


class _Interrupted(BaseException):
    """Carries a ``KeyboardInterrupt`` past skorch's ``partial_fit``, which would swallow it."""


#: the layers whose training forward draws a mask (see :meth:`SkoodNet.seeded_dropout`)
_DROPOUT_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                   nn.FeatureAlphaDropout)


class SkoodNet(NeuralNet):
    """Base skorch net for skood's training phases.

    A subclass implements :meth:`compute_loss` ``(x, idx) -> loss``, where
    ``x`` is the float batch on the training device and ``idx`` the batch's
    indices into the training set (on the same device), and overrides, where
    its method needs them, these hooks and nothing else of skorch's loop:

    * :meth:`before_step`: before the step (per-step schedules);
    * :meth:`after_backward`: between ``loss.backward()`` and
      ``optimizer_.step()`` (gradient clipping);
    * :meth:`after_step`: after ``optimizer_.step()`` (an EMA teacher, a
      second optimiser's step);
    * :meth:`batchnorm_module` / :meth:`batchnorm_forward`: which BatchNorm
      layers are recomputed after training and the forward passes that
      recompute them (:meth:`recalibrate_batchnorm`);
    * skorch's ``get_all_learnable_params``: the parameters the optimiser gets;
    * ``initialize_optimizer``, calling ``super()`` first, only to add a
      second optimiser (built with :meth:`make_optimizer`) that the net's
      :meth:`after_step` steps itself.

    One step is :meth:`train_step`: ``x = model_input(xb)``;
    ``before_step()``; ``optimizer_.zero_grad()``;
    :meth:`train_step_single` (forward ``compute_loss(x, idx)`` under
    autocast, ``backward``, ``after_backward()``); ``optimizer_.step()``;
    ``after_step(x, idx, step)``. Randomness inside the objective must come
    from ``self.generator_`` (on the training device) or
    ``self.cpu_generator_``, both seeded from ``seed`` when training starts.
    Dropout layers, which take no generator, draw their masks from the
    phase's own stream (:meth:`seeded_dropout`).

    SkoodNet overrides eleven methods of :class:`skorch.NeuralNet`, each for
    one reason:

    * ``__init__``: skood's defaults (below) and its own parameters;
    * ``_default_callbacks``: skorch's, without ``PrintLog`` unless
      ``verbose=2``, plus :class:`PhaseProgress` at ``verbose=1``;
    * ``initialize_optimizer``: ``optimizer_`` built by :meth:`make_optimizer`
      (which knows ``decay_1d``);
    * ``on_train_begin``: the step budget (``budget_``, :func:`step_budget`),
      the seeded generators, and the autocast dtype and memory format,
      resolved once per phase;
    * ``get_iterator``: the training loader capped at the budget's batches
      per epoch (``TensorLoader.max_batches``);
    * :meth:`train_step` and :meth:`train_step_single`: one step of
      ``optimizer_`` alone, through the hooks, with the loss from
      :meth:`compute_loss` (skorch's step computes it from ``infer`` and the
      criterion, and steps every registered optimiser with its closure);
    * :meth:`run_single_epoch`: no host-device synchronisation on CUDA: the
      per-batch losses (``train_loss``, and the values subclasses record
      with :meth:`record_batch_value`) stay detached tensors on the device
      during an epoch and become Python floats all at once when its batches
      are done, so the history holds the same floats as skorch's per-batch
      ``loss.item()`` would give (on the CPU they are floats from the start);
      and the divergence check below;
    * :meth:`fit_loop` and :meth:`partial_fit`: the budget's epochs under
      :func:`flush_denormals`, the whole phase under :meth:`seeded_dropout`,
      the check of the final parameters, and the failure behaviour below;
    * ``on_train_end``: precise BatchNorm (:meth:`recalibrate_batchnorm`) and
      the module back in the contiguous memory format.

    Two behaviours differ from skorch's on failure. When an epoch's
    recorded training losses are not all finite, :meth:`run_single_epoch`
    raises :class:`TrainingDivergedError` (a ``ValueError``) at the end of
    that epoch, naming the phase, the epoch and ``lr``; the check reads the
    floats the epoch resolves anyway, so it adds no device synchronisation.
    Parameters that are not finite when the epochs are done raise it too
    (:meth:`check_finite_parameters`, once per phase).
    A ``KeyboardInterrupt`` during training propagates out of :meth:`fit` /
    ``partial_fit`` (skorch catches it and returns the partly trained net).
    In both cases training stops without the ``on_train_end`` notification
    (no BatchNorm recalibration); the progress bar is closed and the module
    is put back in the contiguous memory format (:meth:`abort_training`).

    Parameters
    ----------
    module : torch.nn.Module
        The network(s) trained in this phase.
    seed : int
        Seed of the objective's generators and of the data order.
    name : str
        The phase's name, shown by the progress bar.
    verbose : {0, 1, 2}
        The detector's ``verbose``: 0 silent, 1 a tqdm progress bar
        (:class:`PhaseProgress`), 2 skorch's per-epoch log (``PrintLog``,
        which is not among the callbacks otherwise: it tabulates the history
        every epoch even when silent).
    amp : bool
        bfloat16 autocast on CUDA devices that support it (ignored on CPU).
        The losses of :mod:`skood._nn.losses` are computed in float32.
    channels_last : bool
        On CUDA, train the module's 4-D weights and the 4-D image batches in
        the ``torch.channels_last`` memory format (faster convolutions with
        mixed precision); the module is put back in the contiguous format
        when training ends. Ignored on other devices, so CPU numerics do not
        depend on it.
    precise_bn : bool
        Recompute BatchNorm statistics with the final weights when training
        ends (see :meth:`recalibrate_batchnorm`).
    flush_denormals : bool
        Run the training epochs with subnormal floats flushed to zero in the
        CPU arithmetic of the training thread (:func:`flush_denormals`; the
        caller's mode is restored afterwards). ``False`` leaves the mode as
        the caller set it.
    decay_1d : bool
        Apply the optimiser's weight decay to one-dimensional parameters
        (biases, normalisation weights) too. ``False`` puts them in a second
        parameter group with ``weight_decay=0`` (DINO's
        ``get_params_groups``).
    max_steps : int, "auto" or None
        Cap on the phase's optimiser steps (:func:`step_budget`), resolved
        when training begins as ``budget_`` from the training loader's
        length: the phase runs ``budget_.epochs`` epochs (``max_epochs``
        unless the cap is below it) of at most ``budget_.batches_per_epoch``
        batches, each epoch's batches the first of a fresh permutation of all
        rows. Epoch schedules (:class:`PhaseLRScheduler`) and per-step
        schedules computed from ``len(get_iterator(...))`` span the capped
        run, and the precise-BN pass visits the capped number of batches.
        None (the default here; the detectors pass their own): epochs only.
    **kwargs
        Passed to :class:`skorch.NeuralNet`. Defaults: ``criterion``
        identity (the objective is :meth:`compute_loss`), ``optimizer``
        Adam, ``train_split=None`` (no silent validation split),
        ``iterator_train`` a shuffled :class:`TensorLoader` whose CPU
        generator is seeded from ``seed``.
    """

    def __init__(
        self,
        module: Any,
        *args: Any,
        seed: int = 0,
        name: str = "train",
        verbose: int = 0,
        amp: bool = True,
        channels_last: bool = True,
        precise_bn: bool = True,
        flush_denormals: bool = True,
        decay_1d: bool = True,
        max_steps: int | str | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("criterion", torch.nn.Identity)
        kwargs.setdefault("optimizer", torch.optim.Adam)
        kwargs.setdefault("train_split", None)
        kwargs.setdefault("iterator_train", TensorLoader)
        kwargs.setdefault("iterator_train__shuffle", True)
        kwargs.setdefault("iterator_train__generator", torch.Generator().manual_seed(seed))
        super().__init__(module, *args, verbose=verbose, **kwargs)
        self.seed = seed
        self.name = name
        self.amp = amp
        self.channels_last = channels_last
        self.precise_bn = precise_bn
        self.flush_denormals = flush_denormals
        self.decay_1d = decay_1d
        self.max_steps = max_steps

    @property
    def _default_callbacks(self) -> list[tuple[str, Callback]]:
        callbacks = [(n, cb) for n, cb in super()._default_callbacks
                     if n != "print_log" or self.verbose >= 2]
        if self.verbose == 1:
            callbacks.append(("progress", PhaseProgress(self.name)))
        return callbacks

    def initialize_optimizer(self, triggered_directly: Any = None) -> SkoodNet:
        """``optimizer_`` over ``get_all_learnable_params()`` (:meth:`make_optimizer`)."""
        self.optimizer_ = self.make_optimizer(self.get_all_learnable_params())
        return self

    def make_optimizer(self, named_params: Iterable[tuple[str, Any]]) -> torch.optim.Optimizer:
        """An ``optimizer`` with the ``optimizer__*`` arguments over ``named_params``.

        With ``decay_1d=False`` every parameter group is split in two, its
        1-D parameters in the second with ``weight_decay=0``.
        """
        args, kwargs = self.get_params_for_optimizer("optimizer", named_params)
        if not self.decay_1d:
            groups = []
            for group in args[0]:
                params = group.pop("params")
                groups.append({**group, "params": [p for p in params if p.ndim > 1]})
                groups.append({**group, "params": [p for p in params if p.ndim <= 1],
                               "weight_decay": 0.0})
            args = (groups, *args[1:])
        return self.optimizer(*args, **kwargs)

    # --- hooks --------------------------------------------------------------
    def compute_loss(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The objective of one step on the model input ``x`` (rows ``idx`` of the training set)."""
        raise NotImplementedError

    def before_step(self) -> None:
        """Called before each training step (e.g. per-step learning-rate schedules)."""

    def after_backward(self) -> None:
        """Called between ``loss.backward()`` and ``optimizer_.step()`` (gradient clipping)."""

    def after_step(self, x: torch.Tensor, idx: torch.Tensor, step: dict[str, Any]) -> None:
        """Called after ``optimizer.step()``; may change ``step["loss"]``, the recorded loss."""

    def batchnorm_module(self) -> nn.Module:
        """The module whose BatchNorm statistics :meth:`recalibrate_batchnorm` recomputes."""
        return self.module_

    def batchnorm_forward(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        """The forward passes that recompute the BatchNorm statistics: the objective's own."""
        self.compute_loss(x, idx)

    # --- skorch's loop, through the hooks -------------------------------------
    def fit_loop(self, X: Any, y: Any = None, epochs: int | None = None, **fit_params: Any) -> Any:
        """skorch's epoch loop, under :func:`flush_denormals` when ``flush_denormals`` is set.

        When the epochs are done, :meth:`check_finite_parameters` (the last
        step's update is in no recorded loss). On any exception,
        :meth:`abort_training` runs before it propagates; a
        ``KeyboardInterrupt`` leaves as an internal exception that
        :meth:`partial_fit` turns back into the original interrupt.
        """
        ctx = flush_denormals() if self.flush_denormals else contextlib.nullcontext()
        if epochs is None and getattr(self, "budget_", None) is not None:
            epochs = self.budget_.epochs
        try:
            with ctx:
                out = super().fit_loop(X, y, epochs=epochs, **fit_params)
            self.check_finite_parameters()
            return out
        except BaseException as err:
            self.abort_training()
            if isinstance(err, KeyboardInterrupt):
                raise _Interrupted() from err
            raise

    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params: Any) -> Any:
        """skorch's ``partial_fit`` under :meth:`seeded_dropout`, except that a
        ``KeyboardInterrupt`` in training propagates."""
        if not self.initialized_:
            self.initialize()  # as skorch's partial_fit does: seeded_dropout reads module_
        try:
            with self.seeded_dropout():
                return super().partial_fit(X, y, classes=classes, **fit_params)
        except _Interrupted as wrapped:
            interrupt = wrapped.__cause__
            raise interrupt.with_traceback(interrupt.__traceback__) from None

    def seeded_dropout(self) -> contextlib.AbstractContextManager:
        """Dropout masks from the phase's stream ``seed_stream(seed, "dropout")``, not the
        process-wide RNG.

        A :class:`skood._utils.FitGenerators` of that seed when the module has
        a dropout layer with ``p > 0`` (its training steps and the precise-BN
        passes draw masks; any other draw that names no generator is taken from
        that seed too), else nothing: a function mode adds Python work to
        every torch call of a step, which modules without dropout do not pay.
        Like ``generator_``, the stream starts again with each training call.
        """
        if any(isinstance(m, _DROPOUT_LAYERS) and m.p > 0 for m in self.module_.modules()):
            return FitGenerators(seed_stream(self.seed, "dropout"))
        return contextlib.nullcontext()

    def abort_training(self) -> None:
        """Clean up after training stopped by an exception (instead of ``on_train_end``).

        Closes the :class:`PhaseProgress` bar and puts the module back in the
        contiguous memory format; the partly trained module and its history
        stay as they are.
        """
        for _, cb in getattr(self, "callbacks_", []):
            if isinstance(cb, PhaseProgress) and hasattr(cb, "bar_"):
                cb.on_train_end(self)
        if getattr(self, "memory_format_", None) is not None:
            self.module_.to(memory_format=torch.contiguous_format)

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.budget_ = None  # the uncapped loader first
        loader = self.get_iterator(self.get_dataset(X), training=True)
        self.budget_ = step_budget(self.max_epochs, len(loader),
                                   getattr(loader, "batch_size", self.batch_size), self.max_steps)
        dev = torch.device(self.device)
        self.generator_ = torch.Generator(device=dev).manual_seed(self.seed)
        self.cpu_generator_ = torch.Generator().manual_seed(seed_stream(self.seed, "net_cpu"))
        cuda = dev.type == "cuda"
        # resolved once per fit: no device query inside the training loop
        self.autocast_dtype_ = (
            torch.bfloat16 if self.amp and cuda and torch.cuda.is_bf16_supported() else None
        )
        self.memory_format_ = torch.channels_last if self.channels_last and cuda else None
        if self.memory_format_ is not None:
            self.module_.to(memory_format=self.memory_format_)

    def get_iterator(self, dataset: Any, training: bool = False) -> Any:
        """skorch's loader; in training capped at ``budget_.batches_per_epoch`` batches."""
        loader = super().get_iterator(dataset, training=training)
        budget = getattr(self, "budget_", None)
        if training and budget is not None and budget.batches_per_epoch is not None:
            if not isinstance(loader, TensorLoader):
                raise TypeError(f"max_steps caps a TensorLoader; iterator_train is "
                                f"{type(loader).__name__}")
            loader.max_batches = budget.batches_per_epoch
        return loader

    def _autocast(self) -> contextlib.AbstractContextManager:
        if getattr(self, "autocast_dtype_", None) is not None:
            return torch.autocast("cuda", dtype=self.autocast_dtype_)
        return contextlib.nullcontext()

    def model_input(self, xb: torch.Tensor) -> torch.Tensor:
        """A stored batch as float model input on the training device.

        :func:`skood._utils.to_model_input`, then, for image batches on CUDA
        with ``channels_last``, the channels-last memory format (values are
        unchanged).
        """
        x = to_model_input(xb, self.device)
        fmt = getattr(self, "memory_format_", None)
        if fmt is not None and x.dim() == 4:
            x = x.contiguous(memory_format=fmt)
        return x

    def train_step(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """One step of ``optimizer_``, between :meth:`before_step` and :meth:`after_step`.

        skorch's step without its closure: ``zero_grad``,
        :meth:`train_step_single`, the ``on_grad_computed`` notification,
        ``optimizer_.step()``. Only ``optimizer_`` steps here: a second
        optimiser of a net is its hooks' to step (skorch would step every
        registered optimiser with this step's closure).
        """
        xb, idx = batch
        x = self.model_input(xb)
        self.before_step()
        self.optimizer_.zero_grad()
        step = self.train_step_single((x, idx), **fit_params)
        self.notify("on_grad_computed",
                    named_parameters=TeeGenerator(self.get_all_learnable_params()),
                    batch=batch)
        self.optimizer_.step()
        self.after_step(x, idx, step)
        return step

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """Forward :meth:`compute_loss` under autocast, backward, :meth:`after_backward`."""
        self._set_training(True)
        x, idx = batch
        with self._autocast():
            loss = self.compute_loss(x, idx)
        loss.backward()
        self.after_backward()
        return {"loss": loss, "y_pred": None}

    # --- history without host-device synchronisation --------------------------
    def record_batch_value(self, name: str, value: torch.Tensor | float) -> None:
        """Record ``value`` under ``name`` in the current batch of the history.

        A tensor (a scalar, e.g. one term of the loss) on an accelerator is
        stored detached, on its device, and turned into a Python float with
        the rest of the epoch's values when the epoch's batches are done (see
        :meth:`run_single_epoch`), instead of by a ``.item()`` that would
        wait for the device after every step. A CPU tensor becomes its float
        at once: there is nothing to wait for, and thousands of tiny tensors
        kept alive until the epoch ends fragment the CPU heap, so the
        process's memory would grow with the number of steps of an epoch.
        """
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if value.device.type == "cpu":
                value = value.item()
        self.history.record_batch(name, value)

    def resolve_batch_values(self) -> None:
        """Turn the tensors recorded in the current epoch's batches into Python floats.

        One transfer per device and dtype: the values are stacked and copied
        with ``tolist()``, which gives each element the float ``.item()``
        would give.
        """
        groups: dict[tuple[torch.device, torch.dtype], list[tuple[dict, str]]] = {}
        for row in self.history[-1]["batches"]:
            for key, value in row.items():
                if isinstance(value, torch.Tensor):
                    groups.setdefault((value.device, value.dtype), []).append((row, key))
        for slots in groups.values():
            values = torch.stack([row[key].reshape(()) for row, key in slots]).tolist()
            for (row, key), v in zip(slots, values, strict=True):
                row[key] = v

    def run_single_epoch(
        self, iterator: Any, training: bool, prefix: str, step_fn: Any, **fit_params: Any
    ) -> None:
        """skorch's epoch loop, with the per-batch losses kept on the device until its end.

        Records the same history entries as :meth:`skorch.NeuralNet.run_single_epoch`
        (``<prefix>_loss`` and ``<prefix>_batch_size`` per batch,
        ``<prefix>_batch_count`` per epoch); the losses, and the values
        recorded with :meth:`record_batch_value`, are (on an accelerator)
        tensors while the epoch runs and floats once it ends
        (:meth:`resolve_batch_values`, before the ``on_epoch_end`` callbacks
        read them). Callbacks that read a batch's
        loss in ``on_batch_end`` get it as the ``loss`` keyword argument.

        Raises
        ------
        TrainingDivergedError
            In training, when a recorded ``<prefix>_loss`` of the epoch is
            not finite (checked once the epoch's values are floats).
        """
        if iterator is None:
            return
        batch_count = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            self.record_batch_value(prefix + "_loss", step["loss"])
            batch_size = (get_len(batch[0]) if isinstance(batch, (tuple, list))
                          else get_len(batch))
            self.history.record_batch(prefix + "_batch_size", batch_size)
            self.notify("on_batch_end", batch=batch, training=training, **step)
            batch_count += 1
        self.history.record(prefix + "_batch_count", batch_count)
        self.resolve_batch_values()
        if training:
            self.check_finite_losses(prefix + "_loss")

    def check_finite_parameters(self) -> None:
        """Raise :class:`TrainingDivergedError` if a learnable parameter is not finite.

        Run once when the epochs are done (one device synchronisation per
        phase): the update of the last step shows in no recorded loss.
        """
        params = [p.detach() for _, p in self.get_all_learnable_params()]
        if not params or bool(torch.stack([p.isfinite().all() for p in params]).all()):
            return
        epoch = len(self.history)
        raise TrainingDivergedError(
            f"training phase {self.name!r} diverged: its parameters are not finite after "
            f"epoch {epoch} (its recorded losses are finite). Lower the learning rate "
            f"(lr={self.lr:g}).",
            phase=self.name, epoch=epoch, lr=self.lr,
        )

    def check_finite_losses(self, key: str = "train_loss") -> None:
        """Raise :class:`TrainingDivergedError` if a value ``key`` of the current epoch's batches
        is not finite (the values must be floats already, see :meth:`resolve_batch_values`)."""
        batches = self.history[-1]["batches"]
        for i, row in enumerate(batches):
            loss = row.get(key)
            if loss is None or math.isfinite(loss):
                continue
            epoch = self.history[-1].get("epoch", len(self.history))
            raise TrainingDivergedError(
                f"training phase {self.name!r} diverged: its loss is {loss} at epoch {epoch} "
                f"(batch {i + 1} of {len(batches)}). Lower the learning rate (lr={self.lr:g}).",
                phase=self.name, epoch=epoch, lr=self.lr, loss=loss,
            )

    # --- precise BatchNorm ----------------------------------------------------
    @torch.no_grad()
    def recalibrate_batchnorm(self, X: torch.Tensor) -> None:
        """Recompute BatchNorm running statistics with the final weights ("precise BN").

        After training, BatchNorm's running averages still mix in the
        statistics of early weights (and, after a few steps, their
        initial values), so the eval-mode network differs from the one the
        objective trained. One forward-only pass over the training data
        (:meth:`batchnorm_forward`, by default the objective's own input
        pipeline), with cumulative averaging (:func:`cumulative_batchnorm`),
        replaces the statistics of :meth:`batchnorm_module` with those of the
        final network.
        """
        loader = self.get_iterator(self.get_dataset(X), training=True)
        with cumulative_batchnorm(self.batchnorm_module()) as has_bn:
            if not has_bn:
                return
            self._set_training(True)
            for xb, idx in loader:
                with self._autocast():
                    self.batchnorm_forward(self.model_input(xb), idx)
        self._set_training(False)

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        super().on_train_end(net, X=X, y=y, **kwargs)
        if self.precise_bn:
            self.recalibrate_batchnorm(X)
        if getattr(self, "memory_format_", None) is not None:
            self.module_.to(memory_format=torch.contiguous_format)

    def uniform(self, low: float, high: float) -> float:
        """A scalar from U(low, high) drawn from the CPU generator (no device sync)."""
        u = torch.rand((), generator=self.cpu_generator_).item()
        return low + (high - low) * u


def is_flushing_denormals() -> bool:
    """Whether this thread's CPU arithmetic flushes subnormal floats to zero (the query;
    :func:`flush_denormals` is the context manager that sets the mode).

    Probed by one scalar multiplication whose exact result is subnormal
    (half the smallest normal float32): it is 0 when flushing is on.
    """
    tiny = torch.full((), torch.finfo(torch.float32).tiny, dtype=torch.float32)
    return (tiny * 0.5).item() == 0.0


@contextlib.contextmanager
def flush_denormals(on: bool = True) -> Iterator[bool]:
    """Flush subnormal floats to zero in this thread's CPU arithmetic, then restore the mode.

    Training drives some values towards zero until they become subnormal
    (magnitude below 1.2e-38 in float32): Adam's moment estimates of weights
    whose gradient is zero, e.g. those of a ReLU unit that never fires, decay
    by a factor ``beta`` per step. x86 CPUs compute with subnormal operands
    many times slower than with normal ones, so these dead entries slow
    whole optimiser steps. Flushing them to zero
    (``torch.set_flush_denormal``: the SSE flush-to-zero and
    denormals-are-zero modes) changes only values below 1.2e-38, which
    vanish next to any normal value they are added to
    (``benchmarks/speed.py`` times the training steps with and without it).

    The mode is a per-thread CPU setting: it covers this thread's
    arithmetic, which is all of it with one thread and the part that
    PyTorch does not split across its intra-op threads otherwise. It is
    restored on exit, so the caller's mode is unchanged. Yields whether
    flushing is on inside (``False`` where the CPU does not support it);
    :func:`is_flushing_denormals` reads the mode.
    """
    before = is_flushing_denormals()
    supported = torch.set_flush_denormal(on)
    try:
        yield on and supported
    finally:
        torch.set_flush_denormal(before)


@contextlib.contextmanager
def cumulative_batchnorm(module: nn.Module) -> Iterator[bool]:
    """Reset the BatchNorm statistics of ``module`` and average them cumulatively in the block.

    Inside the block every training-mode forward pass of a BatchNorm layer
    that tracks running statistics updates them with momentum ``1/k`` at its
    k-th pass, so they end as the plain mean over the block's batches
    (``momentum=None``). The count is kept on the host (a forward pre-hook),
    where ``momentum=None`` would read ``num_batches_tracked`` back from the
    device at every pass; the arithmetic is the same. The layers' momenta are
    restored afterwards. Yields whether ``module`` has any BatchNorm layer.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    counts = dict.fromkeys(bns, 0)

    def count_pass(m: nn.Module, args: Any) -> None:
        if m.training and m.track_running_stats:
            counts[m] += 1
            m.momentum = 1.0 / counts[m]

    handles = [m.register_forward_pre_hook(count_pass) for m in bns]
    for m in bns:
        m.reset_running_stats()
    try:
        yield bool(bns)
    finally:
        for h in handles:
            h.remove()
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom


class PhaseProgress(Callback):
    """tqdm progress bar over the epochs of one training phase, with the last loss."""

    def __init__(self, name: str = "train") -> None:
        self.name = name

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        from tqdm.auto import tqdm

        budget = getattr(net, "budget_", None)
        total = net.max_epochs if budget is None else budget.epochs
        self.bar_ = tqdm(total=total, desc=self.name, leave=True)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.bar_.set_postfix(loss=f"{net.history[-1, 'train_loss']:.4f}")
        self.bar_.update(1)

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        self.bar_.close()
        del self.bar_


class PhaseLRScheduler(LRScheduler):
    """skorch's ``LRScheduler`` whose epoch-dependent arguments follow the phase's epochs.

    ``schedule(epochs) -> dict`` gives the policy's arguments that depend on the
    number of epochs (``T_max``, the milestones of a ``lr_lambda``); it is called
    when training begins with the epochs the phase runs, ``budget_.epochs`` of
    :class:`SkoodNet` (``max_epochs`` unless ``max_steps`` caps it below that), so
    a capped phase runs the whole schedule.

    Parameters
    ----------
    policy : type
        A ``torch.optim.lr_scheduler`` class.
    schedule : callable
        ``schedule(epochs) -> dict`` of arguments of ``policy``.
    **kwargs
        Its other arguments, and ``LRScheduler``'s.
    """

    def __init__(self, policy: Any, schedule: Callable[[int], dict[str, Any]],
                 **kwargs: Any) -> None:
        super().__init__(policy=policy, **kwargs)
        self.schedule = schedule

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in super().kwargs.items() if k != "schedule"}

    def _get_scheduler(self, net: Any, policy: Any, **scheduler_kwargs: Any) -> Any:
        budget = getattr(net, "budget_", None)
        epochs = net.max_epochs if budget is None else budget.epochs
        return super()._get_scheduler(net, policy, **scheduler_kwargs, **self.schedule(epochs))


def _piecewise_factor(epoch: int, bounds: list[int], factors: tuple[float, ...]) -> float:
    f = 1.0
    for b, fac in zip(bounds, factors, strict=True):
        if epoch >= b:
            f = fac
    return f


def _piecewise_schedule(epochs: int, milestones: tuple[float, ...],
                        factors: tuple[float, ...]) -> dict[str, Any]:
    bounds = [round(m * epochs) for m in milestones]
    return {"lr_lambda": functools.partial(_piecewise_factor, bounds=bounds, factors=factors)}


def piecewise_lr(milestones: tuple[float, ...], factors: tuple[float, ...]) -> PhaseLRScheduler:
    """LRScheduler callback: lr = base x ``factors[j]`` from epoch ``round(milestones[j] * E)``.

    ``E`` is the number of epochs the phase runs (:class:`PhaseLRScheduler`).
    Milestones are fractions of the training budget, so a schedule written for
    the paper's budget keeps its shape at any number of epochs, capped or not.
    """
    return PhaseLRScheduler(
        torch.optim.lr_scheduler.LambdaLR,
        functools.partial(_piecewise_schedule, milestones=milestones, factors=factors),
    )


def _cosine_schedule(epochs: int) -> dict[str, Any]:
    return {"T_max": epochs}


def cosine_lr() -> PhaseLRScheduler:
    """LRScheduler callback: cosine annealing (``CosineAnnealingLR``) over the phase's epochs."""
    return PhaseLRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR, _cosine_schedule)


class ContrastiveNet(SkoodNet):
    r"""Contrastive (SimCLR-style) training of an encoder with NT-Xent.

    Each step draws two augmented views of the batch, embeds them in one
    forward pass and minimises :func:`skood._nn.losses.nt_xent`.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch to embeddings (e.g. :class:`skood._nn.heads.ContrastiveModel`).
    augment : callable
        ``augment(x, generator) -> view``, batched and per-sample random.
    temperature : float
        NT-Xent temperature :math:`\tau`.
    symmetric : bool
        2B x 2B SimCLR loss (True) or the one-directional B x B form (False).
    """

    def __init__(
        self, module: Any, *args: Any, augment: Any = None, temperature: float = 0.5,
        symmetric: bool = True, **kwargs: Any,
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
