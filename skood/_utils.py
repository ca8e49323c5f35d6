"""Small utilities shared across skood's layers: devices, a fit's random streams, model input.

* :func:`resolve_device`: a ``device`` parameter as a usable device name.
* The seed helpers, the only ones in skood:

  * :func:`fit_seed`: the seed of a fit from ``random_state``, never drawing
    from numpy's global RNG;
  * :func:`seed_stream`: the seed of one named consumer of randomness in a
    fit (a shared stream of :data:`SEED_STREAMS` or a detector's own), so
    each part of a fit draws from its own stream;
  * :func:`fit_generators` (:class:`FitGenerators`) and :func:`fit_rng`: the
    fit's own generators for the draws that name no generator (torch's module
    initialisation, dropout), in place of torch's process-wide RNG, so fits in
    threads neither share nor change it.

* :func:`to_model_input`: a stored batch (uint8 images or float rows) as the
  float32 input every network and scorer sees.
* :func:`batch_slices`: consecutive batches of rows.
* :func:`check_range_pair`: a ``(low, high)`` parameter, validated.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import threading
from collections.abc import Iterator, Mapping
from numbers import Real
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from torch.overrides import TorchFunctionMode

__all__ = [
    "SEED_STREAMS",
    "resolve_device",
    "FitGenerators",
    "fit_generators",
    "fit_rng",
    "fit_seed",
    "seed_stream",
    "batch_slices",
    "check_range_pair",
    "to_model_input",
]

#: The random streams that any fit may use, as offsets of its seed (``fit`` draws the
#: seed from ``random_state``). Each consumer of randomness takes its own stream, so
#: adding or reordering draws in one part of a fit leaves the others' unchanged. A
#: detector's own streams are declared in its module (``_SEED_STREAMS``, passed to
#: :func:`seed_stream`), at offsets that none of these takes; a training phase started
#: with seed ``s`` (:class:`skood._training.SkoodNet`) uses ``s + 0``, ``s + 1`` and, for
#: dropout, ``s + 6``.
SEED_STREAMS: dict[str, int] = {
    "net": 0,  # a training phase: initial weights, data order, the objective's device generator
    "net_cpu": 1,  # a training phase's CPU generator (scalars drawn without a device sync)
    "bank": 4,  # the subsample of the training set kept as the scoring bank (``max_bank``)
    "dropout": 6,  # a training phase's dropout masks (only a module with dropout draws them)
    "calibration": 10,  # the training rows held out for conformal calibration (``calibration``)
    "train_scores": 14,  # the fitted rows fit scores beyond ``max_train_scores``
}


def resolve_device(device: str) -> str:
    """Resolve ``"auto"``, ``"cpu"``, ``"cuda"``/``"cuda:i"`` or ``"mps"`` to a usable device.

    Raises
    ------
    ValueError
        When a GPU is asked for and none is available, or the name is unknown.
    """
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device='mps' was requested but the MPS backend is not available")
        return "mps"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but no CUDA GPU is available "
                "(torch.cuda.is_available() is False); use device='auto' or 'cpu'"
            )
        if ":" in device:
            idx = device.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise ValueError(
                    f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA "
                    "device(s)"
                )
        return device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:<i>' or 'mps', got {device!r}")


def check_range_pair(
    name: str, value: Any, high_max: float | None = None
) -> tuple[float, float]:
    """``value`` as ``(low, high)`` floats with ``0 < low <= high`` (``<= high_max``).

    Raises
    ------
    ValueError
        Naming the parameter ``name`` and the value given, when ``value`` is not
        two finite numbers in that order and range.
    """
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    bound = "" if high_max is None else f" <= {high_max:g}"
    if (len(pair) != 2
            or not all(isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v)
                       for v in pair)
            or not 0 < pair[0] <= pair[1]
            or (high_max is not None and pair[1] > high_max)):
        raise ValueError(
            f"{name} must be two finite numbers 0 < low <= high{bound}, got {value!r}"
        )
    return float(pair[0]), float(pair[1])


def batch_slices(n: int, batch_size: int, min_size: int = 1) -> list[slice]:
    """Consecutive slices of ``range(n)`` of ``batch_size`` rows, the last one merged
    into the one before it when it would be shorter than ``min_size`` rows.

    ``min_size=2`` keeps every batch normalisable by BatchNorm's batch
    statistics (a batch of one sample has no variance).
    """
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < min_size:
        del bounds[-2]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def seed_stream(seed: int, name: str, own: Mapping[str, int] | None = None) -> int:
    """The seed of the random stream ``name`` of the fit seeded with ``seed``.

    ``name`` is a key of ``own`` (a detector's own streams: the
    ``_SEED_STREAMS`` of its module) or of the shared :data:`SEED_STREAMS`;
    the stream's seed is ``seed`` plus its offset.

    Raises
    ------
    KeyError
        ``name`` is neither.
    """
    if own is not None and name in own:
        return seed + own[name]
    if name not in SEED_STREAMS:
        known = sorted({*SEED_STREAMS, *(own or {})})
        raise KeyError(f"unknown seed stream {name!r}; known streams: {known}")
    return seed + SEED_STREAMS[name]


def fit_seed(random_state: Any) -> int:
    """The seed of a fit, in ``[0, 2**31 - 1)``.

    An int or a :class:`numpy.random.RandomState` gives
    ``check_random_state(random_state).randint(2**31 - 1)`` (a RandomState is
    advanced, as scikit-learn does); ``None`` gives a fresh seed from the
    operating system's entropy (:mod:`secrets`), so an unseeded fit neither
    reads nor advances numpy's global RNG.
    """
    high = int(np.iinfo(np.int32).max)
    if random_state is None:
        return secrets.randbelow(high)
    return int(check_random_state(random_state).randint(high))


#: draws that take a ``generator=`` argument (torch functions and Tensor methods)
_DRAWS = frozenset({
    "uniform_", "normal_", "random_", "bernoulli_", "exponential_", "geometric_", "cauchy_",
    "log_normal_", "bernoulli", "multinomial", "rand", "randn", "randint", "randperm", "normal",
    "poisson",
})


class FitGenerators(TorchFunctionMode):
    """The generators of one fit, standing in for torch's process-wide RNG.

    While active (``with generators:``, in the entering thread only: torch's
    function modes are thread-local), every torch draw that names no
    generator (``generator=None``: module initialisation in
    ``reset_parameters``, ``torch.nn.init``) gets this fit's generator for
    the tensor's device, created on first use and seeded with ``seed``, as
    ``torch.manual_seed(seed)`` seeds the global ones: the numbers are those
    of the global RNG seeded with ``seed``, and the global RNG is neither read
    nor advanced. The dropouts of :mod:`torch.nn.functional` (``dropout``,
    ``dropout1d/2d/3d``, ``alpha_dropout``, ``feature_alpha_dropout``, hence
    the ``nn.Dropout`` layers), which take no generator, are computed here
    with the mask drawn from this generator: on the CPU the numbers of
    torch's own dropout after ``torch.manual_seed(seed)``. Attention dropout
    inside fused kernels (``scaled_dot_product_attention``'s ``dropout_p``)
    is not covered. A fit's training steps pass their own generators; a
    training phase whose module has dropout layers runs under this mode
    (:meth:`skood._training.SkoodNet.partial_fit`).
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)
        self.generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        """This fit's generator on ``device``."""
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        g = self.generators.get(device)
        if g is None:
            g = self.generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return g

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _DROPOUTS:
            x = args[0] if args else kwargs["input"]
            p, shape = kwargs.get("p", 0.5), _dropout_mask_shape(func, x.shape)
            if kwargs.get("training", True) and 0 < p <= 1 and shape is not None:
                return _dropout(func, x, p, shape, kwargs.get("inplace", False),
                                self.generator(x.device))
            return func(*args, **kwargs)  # no draw (eval, p=0) or torch's own error
        if kwargs.get("generator") is None and (
            "generator" in kwargs or getattr(func, "__name__", None) in _DRAWS
        ):
            kwargs["generator"] = self.generator(_draw_device(args, kwargs))
        return func(*args, **kwargs)


#: torch.nn.functional's dropouts -> {input dims: leading axes with a draw each}
#: (None: every axis); the feature dropouts draw one value per sample and channel
_DROPOUTS: dict[Any, dict[int, int] | None] = {
    F.dropout: None,
    F.alpha_dropout: None,
    F.dropout1d: {2: 1, 3: 2},  # (C, L) and (N, C, L)
    F.dropout2d: {3: 2, 4: 2},  # a 3-D input is (N, C, L) for torch
    F.dropout3d: {4: 1, 5: 2},  # (C, D, H, W) and (N, C, D, H, W)
    F.feature_alpha_dropout: {d: 2 for d in range(2, 9)},
}
_SELU_SATURATION = 1.7580993408473766  # -SELU's lower limit, as torch's alpha dropout


def _dropout_mask_shape(func: Any, shape: torch.Size) -> tuple[int, ...] | None:
    """The shape of ``func``'s mask for an input of ``shape``; None for the shapes left to
    torch (which it refuses, or reads otherwise with a warning)."""
    axes = _DROPOUTS[func]
    lead = len(shape) if axes is None else axes.get(len(shape))
    return None if lead is None else (*shape[:lead], *[1] * (len(shape) - lead))


def _dropout(func: Any, x: torch.Tensor, p: float, shape: tuple[int, ...], inplace: bool,
             generator: torch.Generator) -> torch.Tensor:
    """``func(x, p, training=True, inplace)`` with its mask drawn from ``generator``
    (the arithmetic of torch's ``_dropout_impl``)."""
    if p == 1:
        zero = x.new_zeros(())
        return x.mul_(zero) if inplace else x * zero
    keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p,
                                                                          generator=generator)
    if func not in (F.alpha_dropout, F.feature_alpha_dropout):
        keep.div_(1 - p)
        return x.mul_(keep) if inplace else x * keep
    a = 1 / math.sqrt((_SELU_SATURATION**2 * p + 1) * (1 - p))
    b = keep.sub(1).mul_(_SELU_SATURATION * a).add_(_SELU_SATURATION * a * p)
    keep.mul_(a)
    return x.mul_(keep).add_(b) if inplace else x * keep + b


def _draw_device(args: tuple, kwargs: dict) -> torch.device:
    """The device of a draw: its first tensor argument's, else ``device=``, else the default."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a.device
    if kwargs.get("device") is not None:
        return torch.device(kwargs["device"])
    return torch.empty(0).device  # the default device (torch.set_default_device)


_FIT = threading.local()


@contextlib.contextmanager
def fit_generators(seed: int) -> Iterator[FitGenerators]:
    """Make ``FitGenerators(seed)`` the current thread's fit for the block (see :func:`fit_rng`)."""
    previous = getattr(_FIT, "generators", None)
    _FIT.generators = gens = FitGenerators(seed)
    try:
        yield gens
    finally:
        _FIT.generators = previous


@contextlib.contextmanager
def fit_rng() -> Iterator[None]:
    """Draws naming no generator (module construction) come from the running fit's generators.

    Inside :func:`fit_generators` (a detector's ``fit``), the block runs with
    that fit's :class:`FitGenerators` active, continuing its stream from one
    block to the next; outside a fit it changes nothing (torch's global RNG,
    as usual). Wrap what draws without a generator, such as building a
    network, and not training loops, whose draws pass their own generators.
    """
    gens = getattr(_FIT, "generators", None)
    if gens is None:
        yield
        return
    with gens:
        yield


def to_model_input(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Move a stored batch to ``device`` as float32 (uint8 images are scaled to [0, 1])."""
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()
