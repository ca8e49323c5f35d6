"""An on-disk cache of a frozen encoder's features, one file per input image.

A frozen pretrained encoder maps the same image to the same features in every
fit, so a grid search, a cross-validation or a benchmark sweep that fits many
detectors on the same images needs each image's features only once.
:class:`FeatureCache` keeps them under a directory:

``<directory>/<encoder fingerprint>/<k[:2]>/<k>.npy``

where the encoder fingerprint is a hash of everything that decides the
features (the encoder's class, resolution, normalisation and every tensor of
its state_dict) and ``k`` is the SHA-1 of the image's bytes (with its dtype
and shape). A feature read back is the one computed when the image was first
seen, in whatever batch it came in: equal to a fresh computation up to
floating-point rounding of batched kernels.

Each entry verifies itself. It is a ``.npy`` file holding one record of
dtype ``[("checksum", "S32"), ("features", "<f4", (d,))]``: the ``.npy``
header states the dtype and the width d, and the checksum is a BLAKE2b hash
of the encoder fingerprint, the image key, d and the feature bytes, so an
entry cannot pass for another image's or another encoder's. An entry is used
only when its header is exactly that dtype with shape ``()``, its width is
the one expected for the encoder, its data has exactly the record's length,
its checksum matches and every feature is finite. Any other entry (an empty,
truncated or altered file, another dtype or width, NaN values, a file that
numpy cannot parse, or an entry of the earlier format: a plain float32 vector
without a checksum) is a miss: its features are computed again and the file
is rewritten, with one warning per call that names the files. Reading never
raises; a file that cannot be read at all is a miss too.

Files are written atomically: to a temporary file beside the entry whose
name holds the process id, the thread id and a random suffix, then renamed
over the entry (``os.replace``), so threads and processes can share a cache
and a reader sees either a whole entry or none. Nothing is fsynced: an entry
that a crash leaves empty or partly written fails verification and is
rewritten at its next use.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import threading
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

__all__ = ["FeatureCache", "image_keys", "module_fingerprint"]

#: how many files a warning about rejected entries names
_NAMED = 5
#: where an entry's header states its width: ('features', '<f4', (d,))
_WIDTH = re.compile(rb"\('features', '<f4', \((\d{1,12}),\)\)")
#: the header of a plain float32 vector: an entry of the format before checksums
_EARLIER = re.compile(rb"\{'descr': '<f4', 'fortran_order': False, 'shape': \(\d+,\), \}")
#: bytes searched for a header (numpy's version 1.0 headers hold at most 65535)
_HEAD_MAX = 65546


def image_keys(x: torch.Tensor) -> list[str]:
    """The SHA-1 of each image of the batch ``x`` (N, ...): its bytes, dtype and shape."""
    a = np.ascontiguousarray(x.detach().cpu().numpy())
    head = f"{a.dtype.str}{a.shape[1:]}".encode()
    return [hashlib.sha1(head + row.tobytes()).hexdigest() for row in a]


def module_fingerprint(module: torch.nn.Module, *extra: object) -> str:
    """A hash of ``module``'s class, every tensor of its state_dict and ``extra`` values."""
    h = hashlib.sha1(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for value in extra:
        h.update(repr(value).encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return h.hexdigest()[:20]


def _entry_dtype(width: int) -> np.dtype:
    """The record of one entry: a hex checksum and ``width`` float32 features."""
    return np.dtype([("checksum", "S32"), ("features", "<f4", (width,))])


@functools.lru_cache(maxsize=8)
def _header(width: int) -> bytes:
    """The exact ``.npy`` header :func:`numpy.save` writes before a record of ``width``."""
    buf = io.BytesIO()
    np.save(buf, np.zeros((), dtype=_entry_dtype(width)), allow_pickle=False)
    return buf.getvalue()[:-_entry_dtype(width).itemsize]


def _checksum(tag: str, row: np.ndarray) -> bytes:
    """BLAKE2b (128 bits, hex) of an entry's tag (encoder and image key), width and bytes."""
    h = hashlib.blake2b(f"{tag}/{len(row)}/".encode(), digest_size=16)
    h.update(np.ascontiguousarray(row, dtype="<f4").tobytes())
    return h.hexdigest().encode()


def _record(tag: str, row: np.ndarray) -> np.ndarray:
    """The 0-d record written for the features ``row`` (d,) of the entry ``tag``."""
    rec = np.zeros((), dtype=_entry_dtype(len(row)))
    rec["features"] = row
    rec["checksum"] = _checksum(tag, rec["features"])
    return rec


def _decode(data: bytes, tag: str, width: int | None) -> tuple[np.ndarray | None, str]:
    """The features stored in the bytes ``data`` of the entry ``tag``, or why there are none.

    ``width`` is the expected feature dimension (any when None). The file must
    be byte for byte what :meth:`FeatureCache._write` writes: the exact
    ``.npy`` header of a record of width d, the record's length, its checksum;
    and the features must be finite. Nothing is parsed or evaluated beyond
    finding d. Returns ``(row, "")`` for a valid entry and ``(None, reason)``
    otherwise; never raises.
    """
    if not data:
        return None, "empty file"
    if not data.startswith(b"\x93NUMPY"):
        return None, "not an .npy file"
    head = data[:_HEAD_MAX]
    if _EARLIER.search(head):
        return None, "an entry of the earlier format, without a checksum"
    found = _WIDTH.search(head)
    if found is None:
        return None, "not an entry of this cache (another dtype or shape)"
    d = int(found.group(1))
    if width is not None and d != width:
        return None, f"features of width {d}, expected {width}"
    if not 1 <= d <= len(data) // 4:  # bounds d before anything of that size is built
        return None, f"truncated: {len(data)} bytes for features of width {d}"
    header = _header(d)
    if not data.startswith(header):  # an equivalent but other spelling is not ours either
        return None, "not the .npy header this cache writes"
    dtype = _entry_dtype(d)
    body = data[len(header):]
    if len(body) != dtype.itemsize:
        what = "truncated" if len(body) < dtype.itemsize else "trailing bytes"
        return None, f"{what}: {len(body)} bytes of data, expected {dtype.itemsize}"
    rec = np.frombuffer(body, dtype=dtype)[0]
    row = np.array(rec["features"], dtype=np.float32)
    if rec["checksum"] != _checksum(tag, row):
        return None, "checksum mismatch"
    if not np.isfinite(row).all():
        return None, "non-finite features"
    return row, ""


class FeatureCache:
    """Features of one frozen encoder per image, kept under ``directory``.

    Every entry carries its dtype, width and a checksum, and is verified
    when read; an entry that fails (corrupt, truncated, altered, of another
    width, or written by an earlier skood without a checksum) is recomputed
    and rewritten, with a warning naming it, and never returned.

    Parameters
    ----------
    directory : str or os.PathLike
        Root of the cache; created on first write.

    Examples
    --------
    >>> import tempfile, torch
    >>> from skood.pretrained import FeatureCache
    >>> cache = FeatureCache(tempfile.mkdtemp())
    >>> f = lambda x: x.flatten(1).sum(1, keepdim=True)
    >>> x = torch.rand(3, 1, 4, 4)
    >>> torch.equal(cache.features("enc", x, f), cache.features("enc", x, f))
    True
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def _path(self, encoder_key: str, key: str) -> Path:
        return self.directory / encoder_key / key[:2] / f"{key}.npy"

    def features(self, encoder_key: str, x: torch.Tensor,
                 compute: Callable[[torch.Tensor], torch.Tensor],
                 width: int | None = None) -> torch.Tensor:
        """Features (N, d) of the images ``x``: read from the cache, ``compute`` for the rest.

        ``compute`` maps a batch of images to a batch of feature rows; it runs
        on the images without a valid entry in the cache (if any), whose
        features are then written there. ``width`` is the feature dimension d
        of the encoder: entries of another width are rejected. Without it,
        the entries read in one call must have the width of the rows computed
        in that call (or, when all are read, one width): ``compute`` then runs
        a second time for the entries that do not. The result is float32 on
        ``x``'s device.
        """
        keys = image_keys(x)
        paths = [self._path(encoder_key, k) for k in keys]
        tags = [f"{encoder_key}/{k}" for k in keys]
        rows: list[np.ndarray | None] = []
        rejected: list[str] = []
        for path, tag in zip(paths, tags, strict=True):
            row, why = self._read(path, tag, width)
            if why:
                rejected.append(f"{path} ({why})")
            rows.append(row)
        if width is None and len({len(r) for r in rows if r is not None}) > 1:
            for i, r in enumerate(rows):
                if r is not None:
                    rejected.append(f"{paths[i]} (its width differs from other entries')")
                    rows[i] = None
        missing = [i for i, r in enumerate(rows) if r is None]
        while missing:
            new = compute(x[missing]).detach().float().cpu().numpy()
            if width is not None and new.shape[1] != width:
                warnings.warn(f"feature cache {self.directory}: the encoder computed features "
                              f"of width {new.shape[1]}, not {width}; they are not kept",
                              RuntimeWarning, stacklevel=2)
            for j, i in enumerate(missing):
                rows[i] = new[j]
                if (width is None or new.shape[1] == width) and np.isfinite(new[j]).all():
                    self._write(paths[i], tags[i], new[j])
            missing = []
            if width is None:  # entries read before must have the width computed now
                width = new.shape[1]
                missing = [i for i, r in enumerate(rows) if len(r) != width]
                rejected += [f"{paths[i]} (features of width {len(rows[i])}, expected {width})"
                             for i in missing]
        if rejected:
            n = len(rejected)
            more = f", and {n - _NAMED} more" if n > _NAMED else ""
            warnings.warn(f"feature cache {self.directory}: {n} "
                          f"{'entry' if n == 1 else 'entries'} failed verification and "
                          f"{'was' if n == 1 else 'were'} computed again, not read, and "
                          f"rewritten: {', '.join(rejected[:_NAMED])}{more}",
                          RuntimeWarning, stacklevel=2)
        return torch.from_numpy(np.stack(rows).astype(np.float32, copy=False)).to(x.device)

    def _read(self, path: Path, tag: str, width: int | None) -> tuple[np.ndarray | None, str]:
        """The verified features of the entry at ``path``, or ``None`` and why (never raises)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # not cached yet: a plain miss
            return None, ""
        except OSError as e:
            return None, f"unreadable: {e}"
        return _decode(data, tag, width)

    def _write(self, path: Path, tag: str, row: np.ndarray) -> None:
        suffix = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:12]}"
        tmp = path.with_name(f"{path.name}.{suffix}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as f:
                np.save(f, _record(tag, row), allow_pickle=False)
            os.replace(tmp, path)
        except OSError as e:  # a read-only or full disk: the features are still returned
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            warnings.warn(f"feature cache {self.directory}: cannot write {path.name} ({e}); "
                          "features are computed but not kept", RuntimeWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r})"
