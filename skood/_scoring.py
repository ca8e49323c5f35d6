"""Feature-space scorers, chunked so memory stays bounded.

Contract: every scorer takes feature matrices (torch tensors or numpy
arrays), computes on ``device`` in float32 (float64 where a docstring says
so) and returns CPU tensors. None materialises an ``n_query x n_bank``
matrix: queries and bank are processed in blocks of ``chunk_size`` rows
(:func:`unit_row_blocks`), so the largest temporary is
``chunk_size x chunk_size``. Each docstring states its sign; every
detector's ``score_samples`` is "higher = more normal".

* Blocks and banks: :func:`as_float_tensor`, :func:`unit_row_blocks`,
  :func:`bank_subset` (the capped reference bank, ``max_bank``).
* Leave-one-out, one rule for every scorer: a bank row is a query's own
  copy when the two samples' model inputs are bitwise equal, i.e. their
  :func:`row_fingerprints` are equal. :func:`skip_self_matches`,
  :func:`knn_loo` / :func:`nearest_cosine` compute the fingerprints of the
  candidate rows from the inputs; :func:`kernel_cosine` and
  :func:`nearest_cosine_gap` take precomputed ``keys``. Scoring the training
  set against itself thereby gives leave-one-out scores.
* Cosine neighbours (SemSAD, NSA, FeatureKNN): :func:`knn_cosine`,
  :func:`skip_self_matches`, :func:`nearest_cosine`,
  :func:`angular_distance`, :func:`nearest_cosine_gap`.
* Kernel density (DistillNeg): :func:`kernel_cosine`.
* Mahalanobis geometry (NSA): :func:`covariance_chunked`,
  :func:`fit_whitening`, :func:`whiten`.
* Transformation prediction (RotAuxMSP's auxiliary task, GOAD):
  :func:`transformation_confidence`, :func:`transformation_log_likelihood`.

"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ._utils import to_model_input

__all__ = [
    "angular_distance",
    "as_float_tensor",
    "bank_subset",
    "covariance_chunked",
    "fit_whitening",
    "kernel_cosine",
    "knn_cosine",
    "knn_euclidean",
    "knn_loo",
    "nearest_cosine",
    "nearest_cosine_gap",
    "row_fingerprints",
    "skip_self_matches",
    "transformation_confidence",
    "transformation_log_likelihood",
    "unit_row_blocks",
    "whiten",
]


def as_float_tensor(a: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Return ``a`` as a float32 tensor on ``device`` (no copy when already so)."""
    t = torch.as_tensor(a) if isinstance(a, np.ndarray) else a
    return t.to(device=device, dtype=torch.float32)


def unit_row_blocks(
    a: np.ndarray | torch.Tensor, chunk_size: int, device: str | torch.device, normalized: bool
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, rows)`` for each block of ``chunk_size`` rows of ``a``.

    ``rows`` is ``a[start : start + chunk_size]`` as float32 on ``device``,
    L2-normalised unless ``normalized`` says the rows already have unit norm.
    """
    for start in range(0, len(a), chunk_size):
        blk = as_float_tensor(a[start : start + chunk_size], device)
        yield start, blk if normalized else F.normalize(blk, dim=1)


#: the bank size of ``max_bank="auto"``: every training row up to this many,
#: a seeded uniform subset of this many beyond (see ``docs/user_guide/scaling.rst``)
AUTO_MAX_BANK = 10_000


def bank_subset(n: int, max_bank: int | str | None, seed: int) -> torch.Tensor | None:
    """Sorted indices of a uniform random subset of ``max_bank`` of ``n`` rows (None: keep all).

    The reference bank of the feature-space scorers, capped for huge
    training sets (the detectors' ``max_bank``; ``"auto"`` is
    :data:`AUTO_MAX_BANK`), and the training rows ``fit`` scores
    (``max_train_scores``, with its own seed stream); drawn from its own
    generator, so it leaves every other random stream untouched.
    """
    if max_bank == "auto":
        max_bank = AUTO_MAX_BANK
    if max_bank is None or n <= max_bank:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)[:max_bank].sort().values


# --------------------------------------------------------------------------
# Cosine neighbours (SemSAD, NSA)


def _merge_topk(
    best: torch.Tensor, best_idx: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor, k: int,
    largest: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of the running ``(best, best_idx)`` and a bank block's ``(vals, idx)``."""
    merged, pos = torch.cat([best, vals], dim=1).topk(k, dim=1, largest=largest)
    return merged, torch.cat([best_idx, idx], dim=1).gather(1, pos)


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
    bank_blocks = list(unit_row_blocks(bank, chunk_size, device, normalized))
    for q0, q in unit_row_blocks(query, chunk_size, device, normalized):
        best_s = torch.full((len(q), k), float("-inf"), device=device)
        best_i = torch.zeros((len(q), k), dtype=torch.int64, device=device)
        for b0, blk in bank_blocks:
            sims = q @ blk.T
            kk = min(k, sims.shape[1])
            s, i = sims.topk(kk, dim=1)
            best_s, best_i = _merge_topk(best_s, best_i, s, i + b0, k, largest=True)
        out_s[q0 : q0 + len(q)] = best_s.cpu()
        out_i[q0 : q0 + len(q)] = best_i.cpu()
    return out_s, out_i


def row_fingerprints(X: np.ndarray | torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """A 64-bit fingerprint of each row's exact values, on the model-input scale.

    The leave-one-out rule of every scorer here: two samples are the same
    when their fingerprints are equal. Rows are read as the networks see them
    (:func:`skood._utils.to_model_input`: float32, uint8 images divided by
    255), so the same image stored as uint8 or as float in [0, 1] gets the
    same fingerprint, and -0.0 counts as 0.0. Equal rows get equal
    fingerprints; different rows collide with probability about 2^-64.

    Returns
    -------
    LongTensor of shape (n_rows,)
    """
    out = []
    for s in range(0, len(X), chunk_size):
        blk = X[s : s + chunk_size]
        blk = torch.as_tensor(blk) if isinstance(blk, np.ndarray) else blk
        rows = (to_model_input(blk, "cpu").flatten(1) + 0.0).numpy()  # + 0.0: -0.0 -> 0.0
        out += [int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little",
                               signed=True) for r in rows]
    return torch.tensor(out, dtype=torch.int64)


@torch.inference_mode()
def skip_self_matches(
    query: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor, chunk_size: int = 4096
) -> torch.Tensor:
    """Pick each query's nearest bank row that is not an exact copy of the query.

    Scoring a training sample against the training bank would otherwise pair
    it with itself. Given the two nearest bank indices per query (``idx`` of
    shape (n, 2), nearest first), return the first unless that bank row is
    the query's copy (equal :func:`row_fingerprints`, whatever dtype the
    images came in), in which case the second. Scores of the training data
    are thereby leave-one-out scores, and a test sample that duplicates a
    training sample is treated the same way.

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
        block = slice(s, s + chunk_size)
        same = row_fingerprints(query[block]) == row_fingerprints(bank[idx[block, 0]])
        out[block] = torch.where(same, idx[block, 1], out[block])
    return out


def angular_distance(cos: torch.Tensor | np.ndarray) -> torch.Tensor:
    r"""Angle :math:`\arccos(c)` in radians, with ``c`` clipped to [-1, 1] (float32 safety)."""
    return torch.arccos(torch.as_tensor(cos).clamp(-1.0, 1.0))


@torch.inference_mode()
def nearest_cosine(
    query: np.ndarray | torch.Tensor,
    bank: np.ndarray | torch.Tensor,
    query_inputs: torch.Tensor | None = None,
    bank_inputs: torch.Tensor | None = None,
    chunk_size: int = 4096,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    r"""Cosine similarity of each query row to its nearest bank row, :math:`\max_m \cos(b_m, q)`.

    With ``query_inputs`` and ``bank_inputs`` (the samples the features came
    from, in the detector's stored form), a bank row that is an exact copy
    of the query's input is skipped in favour of the next nearest (see
    :func:`skip_self_matches`): scoring the training set against itself then
    gives leave-one-out scores instead of a trivial cosine of 1.

    This is :func:`knn_loo` with ``k = 1``.

    Returns
    -------
    Tensor of shape (n_query,), float32.
    """
    return knn_loo(query, bank, 1, query_inputs, bank_inputs, "cosine", chunk_size, device)[:, 0]


@torch.inference_mode()
def knn_euclidean(
    query: np.ndarray | torch.Tensor,
    bank: np.ndarray | torch.Tensor,
    k: int = 1,
    chunk_size: int = 4096,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Euclidean distances of each query row to its ``k`` nearest bank rows, increasing.

    .. math::  d(q, b) = \lVert q - b\rVert_2

    Same chunking and return types as :func:`knn_cosine` (distances in
    float32, computed in float64 for accuracy).
    """
    n_bank = len(bank)
    if not 1 <= k <= n_bank:
        raise ValueError(f"k must be in [1, n_bank={n_bank}], got {k}")
    out_d = torch.empty((len(query), k), dtype=torch.float32)
    out_i = torch.empty((len(query), k), dtype=torch.int64)
    bank_t = as_float_tensor(bank, device).double()
    query_t = as_float_tensor(query, device).double()
    for q0 in range(0, len(query_t), chunk_size):
        q = query_t[q0 : q0 + chunk_size]
        best_d = torch.full((len(q), k), float("inf"), dtype=torch.float64, device=device)
        best_i = torch.zeros((len(q), k), dtype=torch.int64, device=device)
        for b0 in range(0, n_bank, chunk_size):
            d = torch.cdist(q, bank_t[b0 : b0 + chunk_size])
            dd, ii = d.topk(min(k, d.shape[1]), dim=1, largest=False)
            best_d, best_i = _merge_topk(best_d, best_i, dd, ii + b0, k, largest=False)
        out_d[q0 : q0 + len(q)] = best_d.float().cpu()
        out_i[q0 : q0 + len(q)] = best_i.cpu()
    return out_d, out_i


@torch.inference_mode()
def knn_loo(
    query: np.ndarray | torch.Tensor,
    bank: np.ndarray | torch.Tensor,
    k: int = 1,
    query_inputs: torch.Tensor | None = None,
    bank_inputs: torch.Tensor | None = None,
    metric: str = "cosine",
    chunk_size: int = 4096,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    r"""Each query row's ``k`` nearest bank rows, by cosine similarity or Euclidean distance.

    With ``query_inputs`` and ``bank_inputs`` (the samples the features came
    from), the first of the ``k + 1`` nearest bank rows whose input is an
    exact copy of the query's (equal :func:`row_fingerprints`) is left out, so that the
    training set scored against itself gets leave-one-out neighbours (for
    ``k = 1`` and cosine this is :func:`nearest_cosine`).

    Parameters
    ----------
    metric : {"cosine", "euclidean"}
        :func:`knn_cosine` (similarities, decreasing) or :func:`knn_euclidean`
        (distances, increasing).

    Returns
    -------
    Tensor of shape (n_query, k), float32, nearest first.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    search = knn_cosine if metric == "cosine" else knn_euclidean
    skip = query_inputs is not None and len(bank) > k
    vals, idx = search(query, bank, k=k + skip, chunk_size=chunk_size, device=device)
    if not skip:
        return vals
    same = torch.zeros(idx.shape, dtype=torch.bool)
    for s in range(0, len(idx), chunk_size):
        block = slice(s, s + chunk_size)
        q = row_fingerprints(query_inputs[block])
        for j in range(k + 1):
            same[block, j] = q == row_fingerprints(bank_inputs[idx[block, j]])
    drop = torch.where(same.any(1), same.int().argmax(1), torch.full_like(idx[:, 0], k))
    keep = torch.arange(k + 1)[None, :] != drop[:, None]
    return vals[keep].view(len(idx), k)


@torch.inference_mode()
def nearest_cosine_gap(
    bank: np.ndarray | torch.Tensor, bank_keys: torch.Tensor | None = None,
    max_queries: int = 2048, seed: int = 0, chunk_size: int = 4096,
    device: str | torch.device = "cpu", normalized: bool = False,
) -> float:
    r"""Median over the bank of :math:`1 - \cos` to the nearest *other* bank row.

    The typical nearest-neighbour distance of a set of features, e.g. the
    scale of an adaptive kernel temperature (DistillNeg's
    ``kernel_temperature="auto"``). Rows whose key equals the query's key
    (exact copies of the query sample, :func:`row_fingerprints`) are left
    out; without keys only the row itself is. At most ``max_queries`` bank
    rows, drawn uniformly from a generator seeded with ``seed``, are the
    queries; every bank row is a candidate neighbour.

    Returns
    -------
    float, in [0, 2]; 0 when the features have collapsed (every query has an
    identical feature vector among the other rows).
    """
    n = len(bank)
    if n < 2:
        raise ValueError("the bank needs at least 2 rows")
    gen = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(n, generator=gen)[: max_queries].sort().values
    keys = (torch.as_tensor(bank_keys) if bank_keys is not None
            else torch.arange(n, dtype=torch.int64))
    bank = torch.as_tensor(bank)
    blocks = list(unit_row_blocks(bank, chunk_size, device, normalized))
    best = []
    for q0, q in unit_row_blocks(bank[pick], chunk_size, device, normalized):
        qk = keys[pick[q0 : q0 + chunk_size]].to(device)
        top = torch.full((len(q),), -2.0, device=device)
        for b0, blk in blocks:
            sim = q @ blk.T
            same = qk[:, None] == keys[b0 : b0 + len(blk)].to(device)[None, :]
            top = torch.maximum(top, sim.masked_fill(same, -2.0).max(dim=1).values)
        best.append(top.cpu())
    top = torch.cat(best)
    top = top[top > -2.0]  # queries with no other row (all copies) have no neighbour
    if len(top) == 0:
        return 0.0
    return float((1.0 - top.double()).clamp(min=0.0).median())


# --------------------------------------------------------------------------
# Kernel density (DistillNeg's score; generic: a kernel sum over a reference bank)


@torch.inference_mode()
def kernel_cosine(
    query: np.ndarray | torch.Tensor, bank: np.ndarray | torch.Tensor, temperature: float = 0.04,
    chunk_size: int = 4096, device: str | torch.device = "cpu", normalized: bool = False,
    query_keys: torch.Tensor | None = None, bank_keys: torch.Tensor | None = None,
    query_rows: int | None = None,
) -> torch.Tensor:
    r"""Log of the mean exponentiated cosine similarity of each query row to a bank.

    .. math::  s(q) = \log \frac{1}{M}\sum_{m=1}^{M}
       \exp\Big(\frac{1}{\tau}\,\frac{q \cdot b_m}{\lVert q\rVert\,\lVert b_m\rVert}\Big)
       = \operatorname{logsumexp}_m \frac{\cos(q, b_m)}{\tau} - \log M

    A kernel density on the unit sphere (a von Mises-Fisher kernel up to a
    constant); the logarithm of DistillNeg's temperature-weighted kernel sum
    (Rafiee et al. 2022, https://arxiv.org/abs/2201.06378, eq. 6, whose
    anomaly score is :math:`\mathcal{S} = -e^{s(q)}`). Higher means more
    similar to the bank, i.e. more normal. Computed in log space (a running
    logsumexp over bank blocks, accumulated in float64), so it neither
    overflows for small :math:`\tau` (:math:`e^{1/\tau}` is :math:`e^{25}`
    at 0.04, :math:`e^{1000}` at 0.001) nor ever holds more than a
    ``query_rows x chunk_size`` block of similarities.

    Parameters
    ----------
    query : array of shape (n_query, d)
    bank : array of shape (M, d)
    temperature : float
        :math:`\tau > 0` (DistillNeg's paper: 0.04).
    chunk_size : int
        Rows of query and of bank handled at once.
    device : str or torch.device
        Where to compute; the result comes back on the CPU.
    normalized : bool
        Set when both inputs already have unit rows.
    query_keys, bank_keys : LongTensor of shapes (n_query,) and (M,), optional
        Bank rows whose key equals the query's key are left out of its sum
        (and of M), e.g. :func:`row_fingerprints` of the samples the
        features came from: scoring the training set against itself then
        gives leave-one-out scores. A query whose every bank row is left
        out falls back to the full sum.
    query_rows : int or None
        Query rows handled at once (None: ``chunk_size``). Each query's sum
        runs over the same bank blocks in the same order whatever this is
        (the scores change at most by the matrix product's rounding);
        smaller blocks hold less memory.

    Returns
    -------
    Tensor of shape (n_query,), float64.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    query_rows = chunk_size if query_rows is None else query_rows
    if query_rows < 1:
        raise ValueError(f"query_rows must be >= 1, got {query_rows}")
    n_bank = len(bank)
    if n_bank < 1:
        raise ValueError("the bank is empty")
    use_keys = query_keys is not None and bank_keys is not None
    blocks = [(blk, bank_keys[b0 : b0 + chunk_size].to(device) if use_keys else None)
              for b0, blk in unit_row_blocks(bank, chunk_size, device, normalized)]
    all_keys = bank_keys.to(device) if use_keys else None
    out = torch.empty(len(query), dtype=torch.float64)
    for q0, q in unit_row_blocks(query, query_rows, device, normalized):
        acc = torch.full((len(q),), float("-inf"), dtype=torch.float64, device=device)
        acc_kept = acc.clone()
        kept = torch.zeros(len(q), dtype=torch.float64, device=device)
        qk = query_keys[q0 : q0 + len(q)].to(device) if use_keys else None
        # a block of queries with no copy in the bank (test rows, as a rule) leaves nothing
        # out: the kept sum is the full one, without masking (the same numbers)
        copies = use_keys and bool(torch.isin(qk, all_keys).any())
        for blk, bk in blocks:
            logits = (q @ blk.T) / temperature
            lse = torch.logsumexp(logits, dim=1).double()
            acc = torch.logaddexp(acc, lse)
            if use_keys:
                same = qk[:, None] == bk[None, :] if copies else None
                if same is not None and bool(same.any()):
                    lse = torch.logsumexp(logits.masked_fill(same, float("-inf")), dim=1).double()
                    kept += (~same).sum(dim=1).double()
                else:
                    kept += float(len(blk))
                acc_kept = torch.logaddexp(acc_kept, lse)
        score = acc - math.log(n_bank)
        if use_keys:
            score = torch.where(kept > 0, acc_kept - kept.clamp(min=1).log(), score)
        out[q0 : q0 + len(q)] = score.cpu()
    return out


# --------------------------------------------------------------------------
# Mahalanobis geometry: covariance and whitening, as in NSA,
# "No Shifted Augmentations (NSA): compact distributions for robust
# self-supervised Anomaly Detection" (https://arxiv.org/abs/2203.10344)


def _rows_float64(X: np.ndarray | torch.Tensor, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``X`` as float64 numpy (a view of a float64 ``X``)."""
    block = X[start:stop]
    if isinstance(block, torch.Tensor):
        return block.detach().cpu().double().numpy()
    return np.asarray(block, dtype=np.float64)


def covariance_chunked(
    X: np.ndarray | torch.Tensor, method: str = "ledoit-wolf", chunk_size: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and covariance of the rows of ``X``, in float64, one block of rows at a time.

    Same estimates as :class:`sklearn.covariance.LedoitWolf` and
    :func:`sklearn.covariance.empirical_covariance` (maximum-likelihood,
    divided by n), but only ``chunk_size`` rows are ever held in float64:
    scikit-learn's estimators make full float64 copies of ``X`` (the input,
    the centred data and its squares), several times the size of the
    features on large training sets. Two passes: the mean, then from the
    centred rows :math:`c_i` the statistics

    .. math::

        S = \sum_i c_i c_i^\top, \qquad
        b = \sum_i \lVert c_i \rVert^4 .

    With :math:`\hat\Sigma = S / n`, :math:`m = \operatorname{tr}(\hat\Sigma)/p`,
    :math:`\delta = \lVert \hat\Sigma - m I \rVert_F^2 / p` and
    :math:`\beta = \min\big(\delta, (b / n - \lVert \hat\Sigma \rVert_F^2) / (p n)\big)`,
    the Ledoit-Wolf estimate is :math:`(1 - \beta/\delta)\,\hat\Sigma + (\beta/\delta)\,m I`
    (Ledoit & Wolf 2004, "A well-conditioned estimator for large-dimensional
    covariance matrices", as computed by scikit-learn).

    Parameters
    ----------
    X : array or Tensor of shape (n_samples, n_features)
    method : {"ledoit-wolf", "empirical"}
    chunk_size : int
        Rows per block.

    Returns
    -------
    mean : ndarray of shape (n_features,), float64
    cov : ndarray of shape (n_features, n_features), float64
    """
    if method not in ("ledoit-wolf", "empirical"):
        raise ValueError(f"method must be 'ledoit-wolf' or 'empirical', got {method!r}")
    n, p = int(X.shape[0]), int(X.shape[1])
    if n == 0:
        raise ValueError("covariance_chunked needs at least one row")
    total = np.zeros(p)
    for s in range(0, n, chunk_size):
        total += _rows_float64(X, s, s + chunk_size).sum(axis=0)
    mean = total / n
    S = np.zeros((p, p))
    b = 0.0
    for s in range(0, n, chunk_size):
        c = _rows_float64(X, s, s + chunk_size) - mean  # new array: a view of X stays intact
        S += c.T @ c
        b += float(np.sum(np.einsum("ij,ij->i", c, c) ** 2))
    emp = S / n
    if method == "empirical" or p == 1:  # one feature: scikit-learn does not shrink
        return mean, emp
    trace = float(np.trace(emp))
    m = trace / p
    frob2 = float(np.sum(emp**2))  # ||S / n||_F^2
    beta = (b / n - frob2) / (p * n)
    delta = (frob2 - 2.0 * m * trace + p * m**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    cov = (1.0 - shrinkage) * emp
    cov.flat[:: p + 1] += shrinkage * m
    return mean, cov


def fit_whitening(
    X: np.ndarray | torch.Tensor,
    method: str = "ledoit-wolf",
    eps: float = 1e-6,
    chunk_size: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and whitening matrix :math:`W = \Sigma^{-1/2}` of the rows of ``X``.

    :math:`u = W (x - \mu)` has (approximately) identity covariance, so the
    Euclidean geometry of u is the Mahalanobis geometry of x. Stable when
    ``n_samples < n_features``:

    * ``"ledoit-wolf"``: :math:`\Sigma` is the Ledoit-Wolf shrinkage estimate
      (the estimate of :class:`sklearn.covariance.LedoitWolf`), well
      conditioned by design;
    * ``"eigen-clip"``: the empirical covariance.

    In both cases eigenvalues below ``eps`` times the largest are raised to
    that floor before the inverse square root (the only regularisation of
    "eigen-clip"). Computed in float64 by :func:`covariance_chunked`, one
    block of ``chunk_size`` rows at a time, so the memory beyond ``X``
    itself does not grow with the number of rows.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    method : {"ledoit-wolf", "eigen-clip"}
    eps : float
        Relative eigenvalue floor.
    chunk_size : int
        Rows per block of the covariance pass.

    Returns
    -------
    mean : Tensor of shape (n_features,), float32
    W : Tensor of shape (n_features, n_features), float32, symmetric
    """
    if method not in ("ledoit-wolf", "eigen-clip"):
        raise ValueError(f"method must be 'ledoit-wolf' or 'eigen-clip', got {method!r}")
    mean, cov = covariance_chunked(
        X, "ledoit-wolf" if method == "ledoit-wolf" else "empirical", chunk_size
    )
    evals, evecs = np.linalg.eigh(cov)
    floor = max(float(evals.max()) * eps, 1e-12)
    W = (evecs / np.sqrt(np.maximum(evals, floor))) @ evecs.T
    return torch.from_numpy(mean).float(), torch.from_numpy(W).float()


@torch.inference_mode()
def whiten(
    X: np.ndarray | torch.Tensor,
    mean: torch.Tensor | None,
    W: torch.Tensor,
    chunk_size: int = 4096,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    r""":math:`u = W (x - \mu)` for every row (:math:`x W` when ``mean`` is None), in chunks.

    ``W`` is symmetric (from :func:`fit_whitening`), so rows are multiplied
    on the right. Returns a float32 CPU tensor.
    """
    Wd = W.to(device)
    md = None if mean is None else mean.to(device)
    out = []
    for s in range(0, len(X), chunk_size):
        x = as_float_tensor(X[s : s + chunk_size], device)
        if md is not None:
            x = x - md
        out.append((x @ Wd).cpu())
    return torch.cat(out) if out else torch.empty((0, W.shape[0]))


# --------------------------------------------------------------------------
# Transformation-prediction scores (RotAuxMSP's auxiliary task, GOAD). Higher = more normal.


def transformation_confidence(logits: torch.Tensor) -> torch.Tensor:
    r"""Mean probability of the correct transformation (self-supervised rotation detector).

    For K transformations (e.g. the rotations by 0/90/180/270 degrees) and
    ``logits[k]`` the auxiliary head's logits on the k-th transformed copy:

    .. math::  s(x) = \frac{1}{K}\sum_{k=1}^{K} \operatorname{softmax}\big(g(T_k x)\big)_k

    (Golan & El-Yaniv 2018, "Deep Anomaly Detection Using Geometric
    Transformations"; Hendrycks et al. 2019, "Using Self-Supervised Learning
    Can Improve Model Robustness and Uncertainty"). Higher = more normal.

    Parameters
    ----------
    logits : Tensor of shape (K, n, K)

    Returns
    -------
    Tensor of shape (n,), float32.
    """
    K = logits.shape[0]
    if logits.dim() != 3 or logits.shape[2] != K:
        raise ValueError(f"logits must have shape (K, n, K), got {tuple(logits.shape)}")
    p = torch.softmax(logits.float(), dim=2)
    idx = torch.arange(K, device=p.device)
    return p[idx, :, idx].mean(dim=0)


def transformation_log_likelihood(logits: torch.Tensor) -> torch.Tensor:
    r"""Log-likelihood of the correct transformations (GOAD's score), without saturation.

    GOAD (Bergman & Hoshen 2020, "Classification-Based Anomaly Detection for
    General Data", eq. 6) scores a sample by the log-likelihood of the K
    transformations it was given, :math:`\sum_k \log P(k \mid T_k x)`. When
    the classifier is confident, :math:`\log P(k \mid T_k x) =
    -\log\big(1 + \sum_{j \ne k} e^{\ell_{kj} - \ell_{kk}}\big)` rounds to 0
    in floating point for most normal samples (a tie at the top of the ranking).
    This function returns the same ranking from a monotone transform that
    keeps the tiny terms:

    .. math::  s(x) = -\log\Big(-\frac{1}{K}\sum_{k=1}^{K} \log P(k \mid T_k x)\Big),
       \qquad -\log P(k \mid T_k x) = \operatorname{softplus}(L_k),\;
       L_k = \log\sum_{j \ne k} e^{\ell_{kj} - \ell_{kk}},

    computed in float64 as :math:`-\operatorname{logsumexp}_k \log\operatorname{softplus}(L_k)
    + \log K` with :math:`\log\operatorname{softplus}(L) = L` for
    :math:`L < -30`. Higher = more normal; it grows with
    :math:`\sum_k \log P(k \mid T_k x)`.

    Parameters
    ----------
    logits : Tensor of shape (K, n, K)
        ``logits[k, i, j]``: the score :math:`\ell_{kj}` of transformation j
        for the k-th transformed copy of sample i (a classifier's logits, or
        GOAD's negative squared distances to the per-transformation centres).

    Returns
    -------
    Tensor of shape (n,), float64.
    """
    K = logits.shape[0]
    if logits.dim() != 3 or logits.shape[2] != K:
        raise ValueError(f"logits must have shape (K, n, K), got {tuple(logits.shape)}")
    lg = logits.double()
    idx = torch.arange(K, device=lg.device)
    own = lg[idx, :, idx]  # (K, n): the correct transformation's logit
    other = (lg - own[..., None]).masked_fill(
        torch.eye(K, dtype=torch.bool, device=lg.device)[:, None, :], float("-inf"))
    L = torch.logsumexp(other, dim=2)  # (K, n)
    log_nll = torch.where(L < -30, L, torch.log(F.softplus(L.clamp_min(-30))))
    return -(torch.logsumexp(log_nll, dim=0) - math.log(K))


