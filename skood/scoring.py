"""Feature-space scorers, chunked so memory stays bounded.

Every scorer works on feature matrices (torch tensors or numpy arrays) and
never materialises an ``n_query x n_bank`` matrix: queries are processed in
blocks of ``chunk_size`` rows and the bank in blocks of ``chunk_size`` rows, so
the largest temporary is ``chunk_size x chunk_size``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .utils import to_model_input

__all__ = ["knn_cosine", "as_float_tensor", "skip_self_matches"]


def as_float_tensor(a: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Return ``a`` as a float32 tensor on ``device`` (no copy when already so)."""
    t = torch.as_tensor(a) if isinstance(a, np.ndarray) else a
    return t.to(device=device, dtype=torch.float32)


@torch.inference_mode()
def knn_cosine(
    query: np.ndarray | torch.Tensor,
    bank: np.ndarray | torch.Tensor,
    k: int = 1,
    chunk_size: int = 4096,
    device: str | torch.device = "cpu",
    normalized: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Top-k cosine similarities of each query row to the rows of ``bank``.

    .. math::  \cos(q, b) = \frac{q \cdot b}{\lVert q\rVert\,\lVert b\rVert}

    Parameters
    ----------
    query : array of shape (n_query, d)
    bank : array of shape (n_bank, d)
    k : int
        Number of neighbours, ``1 <= k <= n_bank``.
    chunk_size : int
        Rows of query and of bank handled at once; peak extra memory is
        about ``chunk_size * (chunk_size + 2 k)`` floats.
    device : str or torch.device
        Where to compute; results come back on the CPU.
    normalized : bool
        Set when both inputs already have unit rows (skips normalisation).

    Returns
    -------
    sims : Tensor of shape (n_query, k), float32, sorted in decreasing order.
    idx : Tensor of shape (n_query, k), int64 indices into ``bank``.
    """
    n_bank = len(bank)
    if not 1 <= k <= n_bank:
        raise ValueError(f"k must be in [1, n_bank={n_bank}], got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_s = torch.empty((len(query), k), dtype=torch.float32)
    out_i = torch.empty((len(query), k), dtype=torch.int64)
    bank_blocks = []
    for b0 in range(0, n_bank, chunk_size):
        blk = as_float_tensor(bank[b0 : b0 + chunk_size], device)
        bank_blocks.append((b0, blk if normalized else F.normalize(blk, dim=1)))
    for q0 in range(0, len(query), chunk_size):
        q = as_float_tensor(query[q0 : q0 + chunk_size], device)
        if not normalized:
            q = F.normalize(q, dim=1)
        best_s = torch.full((len(q), k), float("-inf"), device=device)
        best_i = torch.zeros((len(q), k), dtype=torch.int64, device=device)
        for b0, blk in bank_blocks:
            sims = q @ blk.T
            kk = min(k, sims.shape[1])
            s, i = sims.topk(kk, dim=1)
            cand_s = torch.cat([best_s, s], dim=1)
            cand_i = torch.cat([best_i, i + b0], dim=1)
            best_s, pos = cand_s.topk(k, dim=1)
            best_i = cand_i.gather(1, pos)
        out_s[q0 : q0 + len(q)] = best_s.cpu()
        out_i[q0 : q0 + len(q)] = best_i.cpu()
    return out_s, out_i


@torch.inference_mode()
def skip_self_matches(
    query: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor, chunk_size: int = 4096
) -> torch.Tensor:
    """Pick each query's nearest bank row that is not an exact copy of the query.

    Scoring a training sample against the training bank would otherwise pair
    it with itself. Given the two nearest bank indices per query (``idx`` of
    shape (n, 2), nearest first), return the first unless that bank row is
    identical to the query (up to 1e-6, on the [0, 1] scale for images,
    whatever dtype they came in), in which case the second. Scores of the
    training data are thereby leave-one-out scores, and a test sample that
    duplicates a training sample is treated the same way.

    Parameters
    ----------
    query : Tensor of shape (n, ...)
        Queries in the detector's stored input form.
    bank : Tensor of shape (m, ...)
        Bank rows in the same form.
    idx : LongTensor of shape (n, 2) or (n, 1)
        Nearest bank indices; with one column nothing can be skipped.

    Returns
    -------
    LongTensor of shape (n,)
    """
    if idx.shape[1] == 1:
        return idx[:, 0].clone()
    out = idx[:, 0].clone()
    for s in range(0, len(query), chunk_size):
        q = to_model_input(query[s : s + chunk_size], "cpu").flatten(1)
        first = to_model_input(bank[idx[s : s + chunk_size, 0]], "cpu").flatten(1)
        same = (q - first).abs().amax(dim=1) <= 1e-6
        block = slice(s, s + chunk_size)
        out[block] = torch.where(same, idx[block, 1], out[block])
    return out
