"""Saving and loading fitted detectors without pickle.

:meth:`BaseDeepDetector.save <skood.BaseDeepDetector.save>` writes one
file with :func:`torch.save`; :meth:`BaseDeepDetector.load
<skood.BaseDeepDetector.load>` (or :func:`~skood.persistence.load`, which picks the class
named in the file) reads it with ``torch.load(weights_only=True)``, which
rebuilds only tensors and plain containers and never runs code from the file.

File format (version :data:`FORMAT_VERSION`): a dict of tensors and plain
Python values (None, bool, int, float, str, lists, dicts)::

    format          "skood-detector"
    format_version  1
    skood_version   skood.__version__ of the writer
    torch_version   torch.__version__ of the writer
    class           "module:QualName" of the detector class
    params          {name: value}: the constructor parameters (get_params(deep=False))
    module_params   {name: {...}}: parameters that are user nn.Modules (see below)
    fitted          {name: value}: the fitted attributes except networks
    attr_order      the attribute names in their order on the detector
    modules         {attr: {...}}: each fitted network (state_dict, structure, ...)
    aliases         {attr: [owner attr, submodule path]}: attributes that are
                    submodules of a stored network (e.g. NSA's ``encoder_``)
    checksum        "sha256:<hex>": the SHA-256 of every entry above (see Integrity)

Values that are neither tensors nor plain values are stored as tagged dicts
(``{"__skood__": tag, ...}``): numpy arrays (dtype string, shape and raw
bytes; object arrays of plain values as lists), numpy scalars, tuples,
dicts, a ``numpy.random.RandomState`` parameter (its state),
skorch ``History`` objects (``history_``, kept as plain lists of dicts:
numbers, strings, bools and None; values of other types are dropped) and
tensors (with whether they lived on the fitting device). Anything else makes
``save`` raise a ``TypeError`` naming the attribute.

Networks: a network cannot be stored without pickling its class, so the
file holds its ``state_dict`` (plus non-persistent buffers, the training
flags, ``requires_grad`` flags and the plain attributes of every submodule)
and the class name of every submodule. ``load`` rebuilds an untrained network
of the fitted architecture from the parameters and fitted attributes (the
detector's ``_module_skeletons`` hook), checks that its submodules match the
file's and loads the state dict strictly. ``save`` does this check too, so a
file it writes loads.

A constructor parameter that is an ``nn.Module`` (DUM's ``encoder``) is not
stored as an object: the file holds its class name, structure and
``state_dict``, and ``load`` requires the caller to pass a module of the same
architecture under the parameter's name (``DUMDetector.load(path,
encoder=MyEncoder())``). The loaded detector gets a copy of that module with
the saved weights (the caller's module is not modified).

Classes are found by name: the file's ``class`` entry among the subclasses of
the registered detector base (:class:`skood.BaseDeepDetector`, which registers
itself, so this module imports no detector), by qualified name alone when
its module moved and exactly one known class has that name; the networks'
submodules are compared by qualified class name. Files of skood 0.1.2, which
name the modules before skood's internals became private
(``skood.detectors.semsad``), therefore load.

Integrity: ``save`` writes a SHA-256 of the payload: of every entry but ``checksum``, in
order, each value with its type and length, each tensor with its dtype, shape and bytes
(``_payload_checksum``). ``load`` reads the file once, checks every record of the zip
file against its CRC-32 (``torch.load`` does not), then the payload against the checksum;
a mismatch raises a ``ValueError`` naming the file and saying it is corrupt. A file without
a checksum (skood 0.1.2 and earlier, same format version) loads with a
:class:`SkoodVersionWarning` that its integrity cannot be verified.

Atomic saves: ``save`` to a path writes a temporary file beside it (named after the
target, the process and the thread, created exclusively), flushes it to the disk
(``fsync``), gives it the mode of the file it replaces and renames it over the target
(``os.replace``; then the folder is synced). Any failure removes the temporary file and
leaves a file that was there untouched; an I/O failure raises an ``OSError`` of its kind
(``errno`` kept: ``ENOSPC``, ``EFBIG``, ``ENOENT``...) naming the file and the cause. A
binary file object is written in place, its write errors raised the same way.

Validation at load: the parameters must satisfy the class's ``_parameter_constraints`` (as
``fit`` checks them). The fitted attributes are checked against what the class declares it
stores: ``_fitted_attributes`` of the class and of each of its bases (merged along the MRO),
``{name: kinds}`` with kinds joined by ``"|"`` (e.g. ``"tensor|None"``), a trailing ``"?"``
for attributes set only in some settings, from ``_KINDS`` (``"real"``: a finite
number; ``"count"``: a positive int; ``"per_feature"``: a 1-d float array, of
``n_features_in_`` values in a tabular fit, required in tabular and frozen-feature fits;
``"image_shape"``: (C, H, W) with C*H*W = ``n_features_in_`` for images, None for tables;
``"store"``: training rows of one sample's shape; ``"network"``; ``"{a,b}"``: one of those
strings; ...). The rule: a file holds either no fitted attribute (an unfitted detector) or
every required one; every fitted entry, network and alias must be declared (a method's
name, a parameter's or any other name is refused); each value must be of one of its
declared kinds; every network the class rebuilds for these attributes
(``_network_skeletons``) must be in the file. Failures raise a ``ValueError`` naming the
file and the attributes. ``save`` applies the same rule to the detector first (an
undeclared attribute or a fit that did not finish is a ``ValueError``), so every file it
writes loads; a subclass that adds fitted attributes declares them.

Compatibility: ``load`` raises ``ValueError`` for a file that is not a skood
detector file (or holds anything but tensors and plain values), a different
format version, a class other than the one ``load`` is called on, or a file
written by a newer skood; it warns (:class:`SkoodVersionWarning`) for a file
written by an older skood or another torch version, whose scores may differ
(state dicts themselves are stable across torch versions).
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import os
import re
import secrets
import stat
import struct
import threading
import warnings
import zipfile
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from skorch.history import History
from torch import nn

from ._utils import resolve_device
from ._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "SkoodVersionWarning", "load", "save"]

#: the ``format`` entry of every skood detector file
FORMAT = "skood-detector"
#: the version of the file layout this skood writes and reads
FORMAT_VERSION = 1
_TAG = "__skood__"
_KEYS = ("class", "params", "module_params", "fitted", "attr_order", "modules", "aliases")
_PLAIN = (type(None), bool, int, float, str)
#: numpy dtype kinds stored as raw bytes: bool, integers, floats, complex, bytes, str, times
_RAW_KINDS = "biufcSUmM"


class SkoodVersionWarning(UserWarning):
    """A saved detector was written by another skood or torch version."""


# ----------------------------------------------------------------- encoding
def _is_plain(v: Any) -> bool:
    """None, bool, int, float or str exactly (not a subclass such as numpy's float64)."""
    return type(v) in _PLAIN


def _encode(v: Any, where: str) -> Any:
    """``v`` as tensors and plain values (tagged dicts for other supported types)."""
    if _is_plain(v):
        return v
    if isinstance(v, torch.Tensor):
        return {_TAG: "tensor", "data": v.detach().cpu(), "on_device": v.device.type != "cpu"}
    if isinstance(v, np.ndarray):
        if v.dtype.kind in _RAW_KINDS and v.dtype.fields is None:
            buf = np.ascontiguousarray(v).tobytes()
            data = torch.frombuffer(bytearray(buf), dtype=torch.uint8) if buf else \
                torch.zeros(0, dtype=torch.uint8)
            return {_TAG: "ndarray", "dtype": v.dtype.str, "shape": list(v.shape), "data": data}
        if v.dtype.kind == "O" and all(_is_plain(e) for e in v.flat):
            return {_TAG: "objarray", "shape": list(v.shape), "items": list(v.flat)}
        raise TypeError(f"cannot store {where}: a numpy array of dtype {v.dtype} (only "
                        "numeric, string and object arrays of plain values are supported)")
    if isinstance(v, np.generic) and v.dtype.kind in _RAW_KINDS:
        return {_TAG: "npscalar", "value": _encode(np.asarray(v), where)}
    if type(v) is tuple:
        return {_TAG: "tuple", "items": [_encode(e, f"{where}[{i}]") for i, e in enumerate(v)]}
    if type(v) is list:
        return [_encode(e, f"{where}[{i}]") for i, e in enumerate(v)]
    if type(v) is dict:
        return {_TAG: "dict", "items": [[_encode(k, where), _encode(e, f"{where}[{k!r}]")]
                                        for k, e in v.items()]}
    if isinstance(v, np.random.RandomState):
        return {_TAG: "randomstate", "state": _encode(v.get_state(legacy=True), where)}
    if isinstance(v, History):
        return {_TAG: "history", "entries": _encode(_plain(list(v)), where)}
    raise TypeError(
        f"cannot store {where} of type {type(v).__module__}.{type(v).__qualname__} without "
        "pickling it; skood's save stores tensors, numpy arrays and plain values only"
    )


def _plain(v: Any) -> Any:
    """``v`` with every value that is not a number, string, bool or None dropped
    (dicts with string keys and lists are kept; numpy and 0-d tensor scalars become numbers)."""
    if _is_plain(v):
        return v
    if isinstance(v, np.generic) and v.dtype.kind in "biuf":
        return v.item()
    if isinstance(v, torch.Tensor) and v.dim() == 0:
        return v.item()
    if isinstance(v, Mapping):
        out = {}
        for k, e in v.items():
            if type(k) is str and (p := _plain(e)) is not _DROP:
                out[k] = p
        return out
    if isinstance(v, (list, tuple)):
        return [p for e in v if (p := _plain(e)) is not _DROP]
    return _DROP


_DROP = object()


def _decode(v: Any, ctx: _LoadContext) -> Any:
    if _is_plain(v) or isinstance(v, torch.Tensor):
        return v
    if isinstance(v, list):
        return [_decode(e, ctx) for e in v]
    if not isinstance(v, dict) or not isinstance(v.get(_TAG), str):
        raise ctx.corrupt(f"unexpected value of type {type(v).__name__}")
    tag = v[_TAG]
    try:
        if tag == "tensor":
            t = v["data"]
            if not isinstance(t, torch.Tensor):
                raise ctx.corrupt("a tensor entry holds no tensor")
            return t.to(ctx.device) if v["on_device"] and ctx.device != "cpu" else t
        if tag == "ndarray":
            dtype = np.dtype(str(v["dtype"]))
            if dtype.kind not in _RAW_KINDS or dtype.fields is not None:
                raise ctx.corrupt(f"array dtype {dtype} is not allowed")
            shape = tuple(int(s) for s in v["shape"])
            raw = v["data"].numpy().tobytes()
            return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        if tag == "objarray":
            items = [_decode(e, ctx) for e in v["items"]]
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            return arr.reshape(tuple(int(s) for s in v["shape"]))
        if tag == "npscalar":
            return _decode(v["value"], ctx)[()]
        if tag == "tuple":
            return tuple(_decode(e, ctx) for e in v["items"])
        if tag == "dict":
            return {_decode(k, ctx): _decode(e, ctx) for k, e in v["items"]}
        if tag == "randomstate":
            rs = np.random.RandomState()
            rs.set_state(_decode(v["state"], ctx))
            return rs
        if tag == "history":
            return History(_decode(v["entries"], ctx))
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as e:
        if isinstance(e, _CorruptFile):
            raise
        raise ctx.corrupt(f"bad {tag!r} entry ({e})") from None
    raise ctx.corrupt(f"unknown entry tag {tag!r}")


class _CorruptFile(ValueError):
    pass


class _LoadContext:
    def __init__(self, path: Any, device: str) -> None:
        self.path, self.device = path, device

    def corrupt(self, what: str) -> _CorruptFile:
        return _CorruptFile(f"{self.path!r} is not a valid skood detector file: {what}")


# ----------------------------------------------------------------- networks
def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _structure(module: nn.Module) -> list[list[str]]:
    return [[name, _qualname(m)] for name, m in module.named_modules()]


def _module_record(module: nn.Module, with_state: bool = True) -> dict:
    rec: dict[str, Any] = {"class": _qualname(module), "structure": _structure(module)}
    if not with_state:
        return rec
    attrs, extra = {}, {}
    for name, m in module.named_modules():
        plain = {k: _encode(a, k) for k, a in vars(m).items()
                 if not k.startswith("_") and k != "training" and _is_plain_attr(a)}
        if plain:
            attrs[name] = plain
        for b in getattr(m, "_non_persistent_buffers_set", ()):
            if m._buffers.get(b) is not None:
                extra[f"{name}.{b}" if name else b] = m._buffers[b].detach().cpu()
    rec.update(
        state={k: t.detach().cpu() for k, t in module.state_dict().items()},
        buffers=extra,
        training=[name for name, m in module.named_modules() if m.training],
        frozen=[name for name, p in module.named_parameters() if not p.requires_grad],
        attrs=attrs,
    )
    return rec


def _is_plain_attr(a: Any) -> bool:
    return _is_plain(a) or (type(a) is tuple and all(_is_plain(e) for e in a))


def _class_name(qualname: str) -> str:
    """``"module:QualName"`` without its module."""
    return str(qualname).rpartition(":")[2]


def _check_structure(skeleton: nn.Module, rec: dict, what: str) -> None:
    """The submodules of ``skeleton`` are those of the saved network ``rec``: the same names
    and classes, in the same order. Classes are matched by qualified name, not module path:
    skood's classes may move between its private modules from one release to the next."""
    got, want = _structure(skeleton), [list(s) for s in rec["structure"]]
    if [[n, _class_name(c)] for n, c in got] != [[n, _class_name(c)] for n, c in want]:
        pairs = enumerate(zip(got, want, strict=False))
        diff = next((i for i, (a, b) in pairs if a != b), min(len(got), len(want)))
        g = got[diff] if diff < len(got) else "nothing"
        w = want[diff] if diff < len(want) else "nothing"
        raise ValueError(
            f"{what}: the saved network does not match the architecture rebuilt from the "
            f"parameters (submodule {diff}: saved {w}, rebuilt {g})"
        )


def _restore_module(skeleton: nn.Module, rec: dict, what: str) -> nn.Module:
    _check_structure(skeleton, rec, what)
    try:
        skeleton.load_state_dict(rec["state"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"{what}: the saved weights do not fit the rebuilt network: {e}") from None
    mods = dict(skeleton.named_modules())
    for key, t in rec["buffers"].items():
        owner, _, b = key.rpartition(".")
        mods[owner]._buffers[b] = t
    for name, attrs in rec["attrs"].items():
        for k, a in attrs.items():
            mods[name].__dict__[k] = _decode(a, _LoadContext(what, "cpu"))
    training = set(rec["training"])
    for name, m in mods.items():
        m.training = name in training
    frozen = set(rec["frozen"])
    for name, p in skeleton.named_parameters():
        p.requires_grad_(name not in frozen)
    return skeleton


def _split_modules(mods: dict[str, nn.Module]) -> tuple[list[str], dict[str, list[str]]]:
    """The stored networks and the aliases (attributes that are submodules of a stored one)."""
    names = list(mods)
    primary = []
    for i, b in enumerate(names):
        inside = any(
            a != b and any(m is mods[b] for _, m in mods[a].named_modules())
            and not (mods[a] is mods[b] and names.index(a) > i)
            for a in names
        )
        if not inside:
            primary.append(b)
    aliases = {}
    for b in names:
        if b in primary:
            continue
        for a in primary:
            path = next((p for p, m in mods[a].named_modules() if m is mods[b]), None)
            if path is not None:
                aliases[b] = [a, path]
                break
    return primary, aliases


# ---------------------------------------------------------------- integrity
def _digest(v: Any, h: Any) -> None:
    """Feed ``v`` (tensors and plain values in lists, tuples and dicts) to the hash ``h``,
    unambiguously: every value with its type and length, tensors with dtype and shape."""
    if v is None:
        h.update(b"N")
    elif type(v) is bool:
        h.update(b"T" if v else b"F")
    elif type(v) is int:
        _digest_bytes(b"i", str(v).encode(), h)
    elif type(v) is float:
        h.update(b"f" + struct.pack("<d", v))
    elif type(v) is str:
        _digest_bytes(b"s", v.encode("utf-8", "surrogatepass"), h)
    elif isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous().reshape(-1)
        _digest_bytes(b"t", f"{t.dtype}{tuple(v.shape)}".encode(), h)
        _digest_bytes(b"", t.view(torch.uint8).numpy().tobytes() if t.numel() else b"", h)
    elif isinstance(v, (list, tuple)):
        h.update(b"%s%d:" % (b"l" if isinstance(v, list) else b"u", len(v)))
        for e in v:
            _digest(e, h)
    elif isinstance(v, dict):
        h.update(b"d%d:" % len(v))
        for k, e in v.items():
            _digest(k, h)
            _digest(e, h)
    else:
        raise TypeError(f"a value of type {type(v).__name__}")


def _digest_bytes(tag: bytes, b: bytes, h: Any) -> None:
    h.update(b"%s%d:" % (tag, len(b)))
    h.update(b)


def _payload_checksum(payload: Mapping) -> str:
    """``"sha256:<hex>"`` of every entry of ``payload`` but ``"checksum"``, in order."""
    h = hashlib.sha256()
    _digest({k: v for k, v in payload.items() if k != "checksum"}, h)
    return f"sha256:{h.hexdigest()}"


# ------------------------------------------------------------------ writing
class _Writer:
    """The file object :func:`torch.save` writes to: every byte through ``os.write`` to ``fd``
    (or through ``write`` of a caller's file object). torch's writer turns an exception of
    ``write`` into a ``RuntimeError`` naming neither the file nor the cause (and writes on):
    the first exception is kept in ``error`` and raised again at every later write."""

    def __init__(self, fd: int | None = None, file: Any = None) -> None:
        self.fd, self.file, self.error = fd, file, None

    def write(self, data: Any) -> int:
        if self.error is not None:
            raise self.error
        try:
            if self.fd is None:
                self.file.write(data)
            else:
                view = memoryview(data).cast("B")
                while view:
                    view = view[os.write(self.fd, view):]
        except BaseException as e:
            self.error = e
            raise
        return len(data)

    def flush(self) -> None:
        if self.fd is None and callable(getattr(self.file, "flush", None)):
            self.file.flush()


def _torch_save(payload: dict, writer: _Writer) -> None:
    try:
        torch.save(payload, writer)
    except BaseException as e:
        if writer.error is not None and writer.error is not e:
            raise writer.error from None
        raise


def _save_error(e: OSError, path: Any, unchanged: bool) -> OSError:
    """An OSError of ``e``'s kind naming ``path`` and the cause."""
    why = e.strerror or str(e) or type(e).__name__
    what = (f"{why} (the detector was not saved; a file there before is unchanged)" if unchanged
            else f"{why} (the detector was not saved)")
    if e.errno is None:
        return OSError(f"{what}: {path!r}")
    return OSError(e.errno, what, str(path))  # the subclass of the errno (FileNotFoundError, ...)


def _write(payload: dict, path: Any) -> None:
    """Write ``payload`` to ``path`` atomically: into a temporary file beside it (a name of
    this process and thread), flushed to the disk, then renamed over ``path``; any failure
    removes the temporary file and leaves ``path`` as it was. A file object is written
    directly."""
    if not isinstance(path, (str, os.PathLike)):
        writer = _Writer(file=path)
        try:
            _torch_save(payload, writer)
        except OSError as e:
            raise _save_error(e, getattr(path, "name", path), unchanged=False) from e
        return
    target = os.path.realpath(os.fspath(path))  # a symbolic link keeps pointing to the file
    folder, base = os.path.split(target)
    tmp = os.path.join(folder, f".{base}.{os.getpid()}-{threading.get_ident()}-"
                               f"{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    except OSError as e:
        raise _save_error(e, path, unchanged=True) from e
    try:
        try:
            _torch_save(payload, _Writer(fd))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))  # keep the file's mode
        except FileNotFoundError:
            pass
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _save_error(e, path, unchanged=True) from e
        raise
    if os.name == "posix":  # the rename itself reaches the disk with the folder's entry
        try:
            dir_fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)


# ------------------------------------------------------- fitted attributes
#: the kinds a class may declare for a fitted attribute (``_fitted_attributes``)
_KINDS = {
    "network": "a network",
    "tensor": "a tensor",
    "array": "a numpy array",
    "real": "a finite real number",
    "count": "a positive int",
    "flag": "a bool",
    "text": "a str",
    "device": "a torch device name of type cpu, cuda or mps",
    "list": "a list",
    "tuple": "a tuple",
    "dict": "a dict",
    "history": "a skorch History",
    "None": "None",
    "any": "anything",
    "scores": "a 1-d float array of finite scores",
    "per_feature": "a 1-d float array of finite values, one per feature",
    "names": "a 1-d array of n_features_in_ str",
    "image_shape": "the (C, H, W) of an image fit, None for a tabular one",
    "store": "a tensor of the training rows (n_samples, *shape of one sample)",
}
#: kinds whose check reads other attributes (n_features_in_, input_kind_, ...): checked last
_RELATIONAL = {"per_feature", "names", "image_shape", "store"}


def _declared_attributes(cls: type) -> dict[str, tuple[tuple[str, ...], bool]]:
    """``{name: (kinds, required)}``: the ``_fitted_attributes`` declared by ``cls`` and its
    bases (a subclass's entry replaces its base's)."""
    out: dict[str, tuple[tuple[str, ...], bool]] = {}
    for c in reversed(cls.__mro__):
        for name, spec in vars(c).get("_fitted_attributes", {}).items():
            kinds = tuple(spec.rstrip("?").split("|"))
            bad = [k for k in kinds if k not in _KINDS and not re.fullmatch(r"\{[\w,-]+\}", k)]
            if bad:
                raise TypeError(f"{c.__qualname__}._fitted_attributes[{name!r}]: unknown kinds "
                                f"{bad} (known: {sorted(_KINDS)} or {{a,b,...}})")
            out[name] = (kinds, not spec.endswith("?"))
    return out


def _describe(v: Any) -> str:
    if isinstance(v, (np.ndarray, torch.Tensor)):
        kind = "array" if isinstance(v, np.ndarray) else "tensor"
        return f"a {kind} of dtype {v.dtype} and shape {tuple(v.shape)}"
    text = repr(v)
    return f"{type(v).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _is_real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, (bool, np.bool_)) and v >= 1


def _is_device(v: Any) -> bool:
    try:
        return isinstance(v, str) and torch.device(v).type in ("cpu", "cuda", "mps")
    except (RuntimeError, ValueError):
        return False


def _kind_problem(kind: str, v: Any, state: dict) -> str | None:
    """None when ``v`` is of ``kind``, else what it should be (``state``: the other fitted
    attributes, already checked, for the kinds that depend on them)."""
    n = state.get("n_features_in_")
    tabular = state.get("input_kind_") == "tabular"
    ok: bool
    if kind.startswith("{"):
        options = kind[1:-1].split(",")
        return None if isinstance(v, str) and v in options else f"one of {options}"
    if kind in ("scores", "per_feature"):
        ok = (isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f"
              and len(v) > 0 and bool(np.isfinite(v).all()))
        if kind == "per_feature" and ok and tabular and not state.get("feature_mode_"):
            return None if len(v) == n else f"a 1-d float array of n_features_in_={n} values"
        return None if ok else _KINDS[kind]
    if kind == "names":
        ok = (isinstance(v, np.ndarray) and v.shape == (n,)
              and all(isinstance(e, str) for e in v.flat))
        return None if ok else f"a 1-d array of n_features_in_={n} str"
    if kind == "image_shape":
        if tabular:
            return None if v is None else "None (input_kind_ is 'tabular')"
        ok = (isinstance(v, tuple) and len(v) == 3 and all(_is_count(e) for e in v)
              and math.prod(v) == n)
        return None if ok else f"a (C, H, W) tuple of positive ints with C*H*W = n_features_in_={n}"
    if kind == "store":
        if state.get("feature_mode_"):
            mean = state.get("feature_mean_")
            shape = (len(mean),) if isinstance(mean, np.ndarray) else None
        else:
            shape = (n,) if tabular else state.get("image_shape_")
        ok = isinstance(v, torch.Tensor) and v.dim() >= 1 and tuple(v.shape[1:]) == shape
        return None if ok else f"a tensor of training rows of shape {shape}"
    checks = {
        "network": lambda: False,  # networks are stored as networks, never as values
        "tensor": lambda: isinstance(v, torch.Tensor),
        "array": lambda: isinstance(v, np.ndarray),
        "real": lambda: _is_real(v),
        "count": lambda: _is_count(v),
        "flag": lambda: isinstance(v, (bool, np.bool_)),
        "text": lambda: isinstance(v, str),
        "device": lambda: _is_device(v),
        "list": lambda: type(v) is list,
        "tuple": lambda: type(v) is tuple,
        "dict": lambda: type(v) is dict,
        "history": lambda: isinstance(v, History),
        "None": lambda: v is None,
        "any": lambda: True,
    }
    return None if checks[kind]() else _KINDS[kind]


def _fitted_problem(cls: type, state: dict[str, Any], networks: set[str]) -> str | None:
    """What is wrong with the fitted attributes ``state`` (values) and ``networks`` (names) of
    a ``cls`` against the class's declaration (module doc), or None."""
    if not state and not networks:
        return None  # an unfitted detector
    declared = _declared_attributes(cls)
    params = set(getattr(cls, "_get_param_names", list)())
    names = [*state, *sorted(networks - set(state))]
    unknown = [k for k in names if k not in declared]
    if unknown:
        notes = [f"{k!r}" + (" (a constructor parameter)" if k in params else
                             " (a method or attribute of the class)" if hasattr(cls, k) else "")
                 for k in unknown]
        return (f"unknown fitted attribute(s) {', '.join(notes)}: {cls.__name__} does not store "
                f"them (not declared in the _fitted_attributes of {cls.__name__} or its bases)")
    per_feature = state.get("input_kind_") == "tabular" or state.get("feature_mode_") is True
    missing = [k for k, (kinds, required) in declared.items() if k not in names
               and (required or (per_feature and "per_feature" in kinds))]
    if missing:
        return (f"missing fitted attribute(s) {missing}: every fitted {cls.__name__} has them "
                "(a detector whose fit did not finish cannot be saved)")
    twice = sorted(set(state) & networks)
    if twice:
        return f"fitted attribute(s) {twice} stored both as networks and as values"
    for k in networks:
        if "network" not in declared[k][0]:
            return f"{k!r} is stored as a network, but {cls.__name__} declares it as " \
                   f"{' or '.join(_KINDS.get(c, c) for c in declared[k][0])}"
    order = sorted(state, key=lambda k: any(c in _RELATIONAL for c in declared[k][0]))
    for k in order:
        wants = [_kind_problem(c, state[k], state) for c in declared[k][0]]
        if all(w is not None for w in wants):
            return f"the fitted attribute {k!r} must be {' or '.join(wants)}; got " \
                   f"{_describe(state[k])}"
    return None


# --------------------------------------------------------------------- API
def save(det: Any, path: Any) -> None:
    """Write the detector ``det`` to ``path`` (a file name or binary file); see the module doc.

    Raises
    ------
    TypeError
        A parameter or fitted attribute of a type that cannot be stored without pickle.
    NotImplementedError
        ``det`` has networks but cannot rebuild them (its ``_network_skeletons``
        raises ``NotImplementedError``).
    ValueError
        A fitted attribute the class does not declare, or a fit that did not finish.
    OSError
        Writing failed (disk full, no such folder, ...): the message names ``path`` and
        the cause; a file already at ``path`` is unchanged.
    """
    cls = type(det)
    name = cls.__name__
    params, module_params = {}, {}
    for k, v in det.get_params(deep=False).items():
        if isinstance(v, nn.Module):
            module_params[k] = {**_module_record(v, with_state=False),
                                "state": {n: t.detach().cpu() for n, t in v.state_dict().items()}}
        else:
            params[k] = _encode(v, f"{name} parameter {k!r}")
    fitted, mods = {}, {}
    for k, v in vars(det).items():
        if k in params or k in module_params:
            continue
        if isinstance(v, nn.Module):
            mods[k] = v
        else:
            fitted[k] = _encode(v, f"{name}.{k}")
    primary, aliases = _split_modules(mods)
    modules = {}
    if mods:
        try:
            skeletons = det._network_skeletons()
        except NotImplementedError:
            raise NotImplementedError(
                f"{name} does not support save(): it cannot rebuild its networks "
                "(_module_skeletons is not implemented); pickle it instead"
            ) from None
        for k in primary:
            if k not in skeletons:
                raise NotImplementedError(f"{name} does not support save(): its network {k!r} "
                                          "cannot be rebuilt by _module_skeletons")
            modules[k] = _module_record(mods[k])
            _check_structure(skeletons[k], modules[k], f"{name}.{k}")
    state = {k: v for k, v in vars(det).items() if k not in params and k not in module_params
             and k not in mods}
    problem = _fitted_problem(cls, state, set(mods))
    if problem:
        raise ValueError(f"cannot save {name}: {problem}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skood_version": str(__version__),
        "torch_version": str(torch.__version__),
        "class": _qualname(cls),
        "params": params,
        "module_params": module_params,
        "fitted": fitted,
        "attr_order": list(vars(det)),
        "modules": modules,
        "aliases": aliases,
    }
    payload["checksum"] = _payload_checksum(payload)
    _write(payload, path)


def _version_tuple(v: str) -> tuple[int, ...]:
    m = re.match(r"\d+(?:\.\d+)*", str(v))
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


#: the base classes whose subclasses :func:`load` finds by the class name in a file;
#: :class:`skood.BaseDeepDetector` registers itself (:func:`_register_detector_base`),
#: so this module imports no detector
_DETECTOR_BASES: list[type] = []


def _register_detector_base(base: type) -> None:
    """Make :func:`load` without a class (or with ``base``) accept every subclass of ``base``."""
    if base not in _DETECTOR_BASES:
        _DETECTOR_BASES.append(base)


def _detector_classes() -> dict[str, type]:
    """Every class defined so far below a registered base, by ``"module:QualName"``."""
    out, todo = {}, list(_DETECTOR_BASES)
    while todo:
        c = todo.pop()
        for s in c.__subclasses__():
            out.setdefault(_qualname(s), s)
            todo.append(s)
    return out


def _stored_class(stored: str) -> type | None:
    """The known detector class of the file's ``"module:QualName"`` entry, or None.

    A class whose module moved is matched by its qualified name alone when exactly one
    known class has it (files of skood 0.1.2 name the modules before skood's internals
    became private: ``skood.detectors.semsad``, now ``skood._detectors.semsad``).
    """
    known = _detector_classes()
    if stored in known:
        return known[stored]
    same_name = {c for c in known.values() if c.__qualname__ == _class_name(stored)}
    return same_name.pop() if len(same_name) == 1 else None


def _read_bytes(path: Any) -> bytes:
    """The bytes of the file ``path`` (a path, or a binary file object from its position)."""
    try:
        if isinstance(path, (str, os.PathLike)):
            with open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read()
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, f"{e.strerror or e}: cannot read the detector file",
                      str(path)) from e
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{path!r} gave {type(data).__name__}, not bytes: open it in binary "
                        "mode ('rb')")
    return bytes(data)


def _check_zip(data: bytes, path: Any) -> None:
    """A zip file (what torch.save writes) whose records all match their CRC-32: torch.load
    does not check them."""
    buf = io.BytesIO(data)
    if data[:4] != b"PK\x03\x04" and not zipfile.is_zipfile(buf):
        return  # not a zip file at all: torch.load says what it is not
    try:
        with zipfile.ZipFile(buf) as z:
            bad = z.testzip()
    except Exception as e:  # noqa: BLE001 (any failure means: a damaged zip file)
        raise ValueError(f"{path!r} is corrupt or truncated: it is not a readable zip file "
                         f"({type(e).__name__}: {e})") from None
    if bad is not None:
        raise ValueError(f"{path!r} is corrupt: its record {bad!r} does not match its CRC-32 "
                         "checksum (the file was damaged after it was written)")


def _read(path: Any) -> dict:
    data = _read_bytes(path)
    _check_zip(data, path)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any failure means: not a readable skood file)
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "WeightsUnpickler error" in ln),
                   lines[0] if lines else "")
        raise ValueError(
            f"{path!r} is not a skood detector file: it cannot be read as a torch file of "
            f"tensors and plain values (weights_only=True; skood never unpickles other "
            f"objects): {type(e).__name__}: {why}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a skood detector file (no format={FORMAT!r} entry)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has skood file format version {version!r}, this skood reads version "
            f"{FORMAT_VERSION}"
            + (f"; it was written by skood {payload.get('skood_version')}: upgrade skood"
               if isinstance(version, int) and version > FORMAT_VERSION else "")
        )
    if "checksum" not in payload:
        warnings.warn(f"{path!r} carries no checksum (written by skood "
                      f"{payload.get('skood_version')}, before files had one): its integrity "
                      "cannot be verified", SkoodVersionWarning, stacklevel=4)
    else:
        try:
            actual = _payload_checksum(payload)
        except TypeError as e:
            raise ValueError(f"{path!r} is not a valid skood detector file: it holds {e}") \
                from None
        if payload["checksum"] != actual:
            raise ValueError(f"{path!r} is corrupt: its content does not match its checksum "
                             f"(stored {str(payload['checksum'])[:80]!r}, computed {actual!r}); "
                             "the file was damaged or changed after it was written")
    kinds = {"class": str, "attr_order": list}
    bad = [k for k in _KEYS if not isinstance(payload.get(k), kinds.get(k, dict))]
    if bad:
        raise ValueError(f"{path!r} is not a valid skood detector file: missing or malformed "
                         f"entries {bad}")
    return payload


def load(path: Any, cls: type | None = None, *, map_location: str | None = None,
         **module_params: nn.Module) -> Any:
    """Read a detector written by :func:`~skood.persistence.save`.

    Parameters
    ----------
    path : str, path-like or binary file
    cls : detector class or None
        The class the file must hold; None (or ``BaseDeepDetector``): any
        skood detector class, the one named in the file.
    map_location : str or None
        None: the networks go to the device they were fitted on when it is
        available (else the CPU, with a warning), as unpickling does. A
        device ("cpu", "cuda", ...): the networks (and the fitted tensors
        that were on the fitting device) go there, and ``device_`` becomes
        that device.
    **module_params : nn.Module
        One module per constructor parameter that was a user ``nn.Module``
        (e.g. DUM's ``encoder``), of the saved architecture.

    Raises
    ------
    ValueError
        Not a skood detector file, a corrupt one (CRC-32 or checksum mismatch), another
        format version, another class, a file from a newer skood, a missing or
        mismatching module parameter, a parameter outside the class's constraints, fitted
        attributes the class does not declare, missing or of the wrong kind.
    OSError
        The file cannot be read.
    """
    payload = _read(path)
    stored_cls = payload.get("class")
    if cls is None or cls in _DETECTOR_BASES:
        cls = _stored_class(stored_cls)
        if cls is None:
            raise ValueError(f"{path!r} holds a {stored_cls!r}, which is not a known skood "
                             "detector class (import the module that defines it first)")
    elif stored_cls != _qualname(cls) and _stored_class(stored_cls) is not cls:
        raise ValueError(f"{path!r} holds a {stored_cls!r}, not a {_qualname(cls)!r}; load it "
                         "with that class (or skood.persistence.load)")
    name = cls.__name__
    file_version = str(payload.get("skood_version"))
    if _version_tuple(file_version) > _version_tuple(__version__):
        raise ValueError(f"{path!r} was written by skood {file_version}, newer than this skood "
                         f"{__version__}; upgrade skood to load it")
    if _version_tuple(file_version) < _version_tuple(__version__):
        warnings.warn(f"{path!r} was written by skood {file_version} (this is {__version__}); "
                      "the scores may differ from that version's", SkoodVersionWarning,
                      stacklevel=3)
    if payload.get("torch_version") != str(torch.__version__):
        warnings.warn(f"{path!r} was written with torch {payload.get('torch_version')} (this is "
                      f"{torch.__version__}); the scores may differ slightly",
                      SkoodVersionWarning, stacklevel=3)

    # device of the networks and fitted tensors
    fitted_raw = payload["fitted"]
    fit_device = fitted_raw.get("device_")
    if map_location is not None:
        device = resolve_device(map_location)
    elif isinstance(fit_device, str) and fit_device.startswith("cuda"):
        device = fit_device if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            warnings.warn(f"{name} was fitted on {fit_device}; no GPU here, scoring on the CPU",
                          stacklevel=3)
    elif fit_device == "mps" and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    ctx = _LoadContext(path, device)

    # constructor parameters (user modules from the caller)
    params = {k: _decode(v, ctx) for k, v in payload["params"].items()}
    needed = payload["module_params"]
    unknown = set(module_params) - set(needed)
    if unknown:
        raise ValueError(f"{name}.load got module(s) {sorted(unknown)} for parameters that were "
                         f"not saved as modules (saved module parameters: {sorted(needed)})")
    for k, rec in needed.items():
        if k not in module_params:
            raise ValueError(
                f"{path!r} was saved with a user nn.Module as the parameter {k!r} (class "
                f"{rec['class']}), which skood does not store as code; pass a module of the "
                f"same architecture: {name}.load(path, {k}=...)"
            )
        m = module_params[k]
        if not isinstance(m, nn.Module):
            raise ValueError(f"{k} must be an nn.Module, got {type(m).__name__}")
        m = copy.deepcopy(m).cpu()
        _check_structure(m, rec, f"{name} parameter {k!r}")
        try:
            m.load_state_dict(rec["state"], strict=True)
        except RuntimeError as e:
            raise ValueError(f"{name} parameter {k!r}: the saved weights do not fit the module "
                             f"passed to load: {e}") from None
        params[k] = m
    try:
        det = cls(**params)
    except TypeError as e:
        raise ctx.corrupt(f"its parameters do not fit {name}: {e}") from None
    if callable(getattr(det, "_validate_params", None)):  # the class's _parameter_constraints
        try:
            det._validate_params()
        except (TypeError, ValueError) as e:
            raise ctx.corrupt(f"invalid parameter: {e}") from None

    # fitted attributes, checked against the class's declaration, then the networks
    attrs = {k: _decode(v, ctx) for k, v in fitted_raw.items()}
    problem = _fitted_problem(cls, attrs, set(payload["modules"]) | set(payload["aliases"]))
    if problem:
        raise ctx.corrupt(problem)
    if map_location is not None and "device_" in attrs:
        attrs["device_"] = device
    det.__dict__.update(attrs)
    mods: dict[str, nn.Module] = {}
    if payload["modules"]:
        try:
            skeletons = det._network_skeletons()
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ctx.corrupt(f"the {name} networks cannot be rebuilt: {e!r}") from None
        missing = [k for k in skeletons if k not in payload["modules"]
                   and k not in payload["aliases"]]
        if missing:
            raise ctx.corrupt(f"missing fitted network(s) {missing} of a fitted {name}")
        for k, rec in payload["modules"].items():
            if k not in skeletons:
                raise ctx.corrupt(f"{name} has no network {k!r} to rebuild")
            try:
                mods[k] = _restore_module(skeletons[k], rec, f"{path!r}: {name}.{k}")
            except (AttributeError, KeyError, TypeError) as e:
                raise ctx.corrupt(f"malformed network entry {k!r} ({e!r})") from None
            if device != "cpu":  # networks live on device_ (fitted tensors keep their place)
                mods[k].to(device)
    for k, (owner, sub) in payload["aliases"].items():
        if owner not in mods:
            raise ctx.corrupt(f"alias {k!r} of an unknown network {owner!r}")
        mods[k] = mods[owner].get_submodule(sub)
    order = [k for k in payload["attr_order"] if k not in params]
    state = {k: (mods[k] if k in mods else det.__dict__[k]) for k in order
             if k in mods or k in det.__dict__}
    for k in state:
        det.__dict__.pop(k, None)
    det.__dict__.update(state)
    return det
