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

Compatibility: ``load`` raises ``ValueError`` for a file that is not a skood
detector file (or holds anything but tensors and plain values), a different
format version, a class other than the one ``load`` is called on, or a file
written by a newer skood; it warns (:class:`SkoodVersionWarning`) for a file
written by an older skood or another torch version, whose scores may differ
(state dicts themselves are stable across torch versions).
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Mapping
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
    torch.save(payload, path)


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


def _read(path: Any) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
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
        Not a skood detector file, another format version, another class, a
        file from a newer skood, a missing or mismatching module parameter.
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

    # fitted attributes, then the networks rebuilt from them
    attrs = {k: _decode(v, ctx) for k, v in fitted_raw.items()}
    if map_location is not None and "device_" in attrs:
        attrs["device_"] = device
    det.__dict__.update(attrs)
    mods: dict[str, nn.Module] = {}
    if payload["modules"]:
        try:
            skeletons = det._network_skeletons()
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ctx.corrupt(f"the {name} networks cannot be rebuilt: {e!r}") from None
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
