"""An on-disk cache of a frozen encoder's features, one file per input image.

A frozen pretrained encoder maps the same image to the same features in every
fit, so a grid search, a cross-validation or a benchmark sweep that fits many
detectors on the same images needs each image's features only once.
:class:`FeatureCache` keeps them under a directory:

``<directory>/<encoder fingerprint>/<k[:2]>/<k>.npy``

where the encoder fingerprint is a hash of everything that decides the
features (the encoder's class, resolution, normalisation and every tensor of
its state_dict) and ``k`` is the SHA-1 of the image's bytes (with its dtype
and shape). Files are written atomically (a temporary file, then a rename),
so several processes can share a cache. A feature read back is the one
computed when the image was first seen, in whatever batch it came in: equal
to a fresh computation up to floating-point rounding of batched kernels.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

__all__ = ["FeatureCache", "image_keys", "module_fingerprint"]


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


class FeatureCache:
    """Features of one frozen encoder per image, kept under ``directory``.

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
                 compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Features (N, d) of the images ``x``: read from the cache, ``compute`` for the rest.

        ``compute`` maps a batch of images to a batch of feature rows; it runs
        once, on the images not in the cache (if any), whose features are then
        written there. The result is float32 on ``x``'s device.
        """
        keys = image_keys(x)
        rows: list[np.ndarray | None] = []
        for k in keys:
            path = self._path(encoder_key, k)
            try:
                rows.append(np.load(path))
            except (OSError, ValueError):  # not cached (or a file being replaced)
                rows.append(None)
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            new = compute(x[missing]).detach().float().cpu().numpy()
            for j, i in enumerate(missing):
                rows[i] = new[j]
                self._write(self._path(encoder_key, keys[i]), new[j])
        return torch.from_numpy(np.stack(rows).astype(np.float32, copy=False)).to(x.device)

    def _write(self, path: Path, row: np.ndarray) -> None:
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(tmp, row)
            tmp.replace(path)
        except OSError as e:  # a read-only or full disk: the features are still returned
            warnings.warn(f"feature cache {self.directory}: cannot write {path.name} ({e}); "
                          "features are computed but not kept", RuntimeWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r})"
