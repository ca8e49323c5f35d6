"""skood._scoring: the chunked feature-space scorers, on small cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf, empirical_covariance

from skood._scoring import (
    angular_distance,
    as_float_tensor,
    bank_subset,
    covariance_chunked,
    fit_whitening,
    kernel_cosine,
    knn_cosine,
    knn_euclidean,
    knn_loo,
    nearest_cosine,
    nearest_cosine_gap,
    row_fingerprints,
    skip_self_matches,
    unit_row_blocks,
    whiten,
)

#: unit rows [1, 0], [0, 1] and a row of norm 5 whose direction is [0.6, 0.8]
BANK = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]], dtype=np.float32)
QUERY = np.array([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]], dtype=np.float32)


# ---------------------------------------------------------------- blocks and banks


def test_as_float_tensor_converts_numpy_and_keeps_a_float32_tensor():
    t = as_float_tensor(np.arange(3, dtype=np.int64), "cpu")
    assert t.dtype == torch.float32 and t.tolist() == [0.0, 1.0, 2.0]
    x = torch.ones(2, dtype=torch.float32)
    assert as_float_tensor(x, "cpu") is x  # no copy when it already is


def test_unit_row_blocks_covers_every_row_once_with_unit_norms():
    a = np.arange(1, 15, dtype=np.float32).reshape(7, 2)
    blocks = list(unit_row_blocks(a, 3, "cpu", normalized=False))
    assert [s for s, _ in blocks] == [0, 3, 6] and [len(b) for _, b in blocks] == [3, 3, 1]
    rows = torch.cat([b for _, b in blocks])
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(7))
    torch.testing.assert_close(rows, torch.nn.functional.normalize(torch.from_numpy(a), dim=1))
    raw = torch.cat([b for _, b in unit_row_blocks(a, 3, "cpu", normalized=True)])
    torch.testing.assert_close(raw, torch.from_numpy(a))  # normalized=True: taken as they are


def test_bank_subset_is_a_sorted_seeded_subset_or_none():
    assert bank_subset(10, None, 0) is None and bank_subset(10, 10, 0) is None
    idx = bank_subset(100, 7, seed=3)
    assert len(idx) == 7 and len(set(idx.tolist())) == 7
    assert idx.tolist() == sorted(idx.tolist()) and 0 <= idx.min() and idx.max() < 100
    assert torch.equal(idx, bank_subset(100, 7, seed=3))
    assert not torch.equal(idx, bank_subset(100, 7, seed=4))


# ---------------------------------------------------------------- nearest neighbours


@pytest.mark.parametrize("chunk_size", [1, 2, 4096])
def test_knn_cosine_by_hand(chunk_size):
    """cos to [1, 0], [0, 1], [0.6, 0.8]: [2, 0] -> 1, 0, 0.6; [0, 5] -> 0, 1, 0.8;
    [-1, 0] -> -1, 0, -0.6 (top two, decreasing, whatever the chunking)."""
    sims, idx = knn_cosine(QUERY, BANK, k=2, chunk_size=chunk_size)
    torch.testing.assert_close(sims, torch.tensor([[1.0, 0.6], [1.0, 0.8], [0.0, -0.6]]))
    assert idx.tolist() == [[0, 2], [1, 2], [1, 2]]
    assert sims.dtype == torch.float32 and idx.dtype == torch.int64


def test_knn_cosine_normalized_inputs_skip_the_normalisation():
    unit = torch.nn.functional.normalize(torch.from_numpy(BANK), dim=1)
    a = knn_cosine(QUERY / np.linalg.norm(QUERY, axis=1, keepdims=True), unit, k=3,
                   normalized=True)
    b = knn_cosine(QUERY, BANK, k=3)
    torch.testing.assert_close(a[0], b[0])
    assert torch.equal(a[1], b[1])
    # unnormalised inputs marked normalized give raw dot products: [2, 0] . [3, 4] = 6
    assert knn_cosine(QUERY[:1], BANK, k=1, normalized=True)[0].item() == pytest.approx(6.0)


@pytest.mark.parametrize("k", [0, 4])
def test_knn_cosine_rejects_k_outside_the_bank(k):
    with pytest.raises(ValueError, match="k must be in"):
        knn_cosine(QUERY, BANK, k=k)


def test_knn_euclidean_by_hand():
    """Distances of [0, 0] to [0, 0], [3, 4], [1, 0]: 0, 5, 1; of [4, 4]: sqrt(32), 1, 5."""
    bank = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    d, idx = knn_euclidean(np.array([[0.0, 0.0], [4.0, 4.0]]), bank, k=2, chunk_size=1)
    torch.testing.assert_close(d, torch.tensor([[0.0, 1.0], [1.0, 5.0]]))
    assert idx.tolist() == [[0, 2], [1, 2]]
    with pytest.raises(ValueError, match="k must be in"):
        knn_euclidean(bank, bank, k=4)


def test_knn_loo_leaves_out_one_copy_of_the_query():
    """Rows 0, 0, 5 scored against themselves: each leaves out one copy of itself, so the
    two equal rows are each other's neighbour (distance 0) and row 5 is 5 from them."""
    X = torch.tensor([[0.0], [0.0], [5.0]])
    d = knn_loo(X, X, k=1, query_inputs=X, bank_inputs=X, metric="euclidean")
    assert d[:, 0].tolist() == [0.0, 0.0, 5.0]
    # without the inputs every row finds itself
    assert knn_loo(X, X, k=1, metric="euclidean")[:, 0].tolist() == [0.0, 0.0, 0.0]
    # k = 2 on 0, 1, 3: the two nearest others, increasing
    Y = torch.tensor([[0.0], [1.0], [3.0]])
    d2 = knn_loo(Y, Y, k=2, query_inputs=Y, bank_inputs=Y, metric="euclidean")
    assert d2.tolist() == [[1.0, 3.0], [1.0, 2.0], [2.0, 3.0]]


def test_knn_loo_inputs_differ_from_features():
    """The copy is found from the inputs, not the features: a query whose features equal a
    bank row's but whose input differs keeps that neighbour."""
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    inputs = torch.tensor([[1.0], [2.0], [3.0]])
    sims = knn_loo(feats[:1], feats, k=1, query_inputs=torch.tensor([[9.0]]),
                   bank_inputs=inputs)
    assert sims.item() == pytest.approx(1.0)
    loo = knn_loo(feats, feats, k=1, query_inputs=inputs, bank_inputs=inputs)
    torch.testing.assert_close(loo[:, 0], torch.tensor([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="metric"):
        knn_loo(feats, feats, metric="manhattan")


def test_nearest_cosine_is_knn_loo_with_one_neighbour():
    rng = np.random.RandomState(0)
    F_ = rng.normal(size=(20, 4)).astype(np.float32)
    inp = torch.from_numpy(rng.normal(size=(20, 3)).astype(np.float32))
    a = nearest_cosine(F_, F_, query_inputs=inp, bank_inputs=inp, chunk_size=7)
    b = knn_loo(F_, F_, 1, inp, inp, "cosine", chunk_size=7)[:, 0]
    assert torch.equal(a, b)
    torch.testing.assert_close(a, nearest_cosine(F_, F_, query_inputs=inp, bank_inputs=inp))
    assert (a < 1.0 - 1e-6).all()  # no row paired with itself
    torch.testing.assert_close(nearest_cosine(F_, F_), torch.ones(20))


def test_skip_self_matches_picks_the_second_neighbour_for_a_copy():
    bank = torch.tensor([[0.0], [1.0], [2.0]])
    query = torch.tensor([[1.0], [5.0]])
    idx = torch.tensor([[1, 2], [2, 1]])
    assert skip_self_matches(query, bank, idx).tolist() == [2, 2]
    assert skip_self_matches(query, bank, idx, chunk_size=1).tolist() == [2, 2]
    # one column: nothing to skip
    assert skip_self_matches(query, bank, idx[:, :1]).tolist() == [1, 2]


def test_skip_self_matches_compares_model_inputs_whatever_the_dtype():
    """A uint8 image (0-255) and the same image as float in [0, 1] are one sample."""
    img = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    bank = torch.cat([img.float() / 255.0, torch.zeros(1, 1, 2, 2)])
    assert skip_self_matches(img, bank, torch.tensor([[0, 1]])).tolist() == [1]
    other = img.clone()
    other[0, 0, 0, 0] = 1
    assert skip_self_matches(other, bank, torch.tensor([[0, 1]])).tolist() == [0]


def test_angular_distance_clips_to_the_arccos_domain():
    a = angular_distance(torch.tensor([1.0, 0.0, -1.0, 1.0 + 1e-6, -1.0 - 1e-6]))
    torch.testing.assert_close(a, torch.tensor([0.0, np.pi / 2, np.pi, 0.0, np.pi]))
    assert not torch.isnan(a).any()


# ---------------------------------------------------------------- Mahalanobis geometry


@pytest.mark.parametrize("as_tensor", [False, True])
def test_covariance_chunked_equals_scikit_learn(as_tensor):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(53, 6)) @ rng.normal(size=(6, 6))
    Xin = torch.from_numpy(X) if as_tensor else X
    mean, cov = covariance_chunked(Xin, "ledoit-wolf", chunk_size=10)
    lw = LedoitWolf().fit(X)
    np.testing.assert_allclose(mean, lw.location_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov, lw.covariance_, rtol=1e-10, atol=1e-12)
    _, emp = covariance_chunked(Xin, "empirical", chunk_size=7)
    np.testing.assert_allclose(emp, empirical_covariance(X), rtol=1e-10, atol=1e-12)
    Xc = X.copy()
    covariance_chunked(Xc, chunk_size=10)
    assert np.array_equal(Xc, X)  # the input is not modified


def test_covariance_chunked_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        covariance_chunked(np.ones((3, 2)), "oas")
    with pytest.raises(ValueError, match="at least one row"):
        covariance_chunked(np.ones((0, 2)))


def test_fit_whitening_and_whiten_give_identity_covariance():
    rng = np.random.RandomState(1)
    A = np.array([[3.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 2.0, 0.1]])
    X = (rng.normal(size=(2000, 3)) @ A + [5.0, -1.0, 2.0]).astype(np.float32)
    mean, W = fit_whitening(X, "eigen-clip")
    torch.testing.assert_close(W, W.T)
    U = whiten(X, mean, W, chunk_size=300).double().numpy()
    np.testing.assert_allclose(U.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(U.T, bias=True), np.eye(3), atol=1e-3)
    # without a mean: x W
    torch.testing.assert_close(whiten(X[:5], None, W), torch.from_numpy(X[:5]) @ W)
    assert whiten(X[:0], mean, W).shape == (0, 3)
    with pytest.raises(ValueError, match="method"):
        fit_whitening(X, "pca")


# ---------------------------------------------------------------- leave-one-out: one rule


def test_row_fingerprints_are_equal_exactly_for_equal_model_inputs():
    X = torch.tensor(np.random.RandomState(0).randint(0, 256, (6, 1, 4, 4)), dtype=torch.uint8)
    k = row_fingerprints(X, chunk_size=4)
    assert k.dtype == torch.int64 and len(set(k.tolist())) == 6
    assert torch.equal(k, row_fingerprints(X.float() / 255))  # uint8 or [0, 1] floats alike
    assert torch.equal(k[[0, 0]], row_fingerprints(X[[0, 0]]))
    assert torch.equal(row_fingerprints(np.array([[0.0, 1.0]])),
                       row_fingerprints(torch.tensor([[-0.0, 1.0]])))  # -0.0 is 0.0
    # one float32 ulp apart: two samples
    a = torch.tensor([[1.0, 2.0]])
    b = torch.tensor([[np.nextafter(np.float32(1.0), np.float32(2.0)), 2.0]])
    assert row_fingerprints(a) != row_fingerprints(b)


def test_every_leave_one_out_scorer_uses_the_same_rule():
    """Bank inputs 0, 1, 2 (features equal to the inputs' directions); the query's input is a
    copy of row 1 (as float64), then one ulp away from it: every scorer leaves row 1 out in
    the first case and keeps it in the second."""
    bank_in = torch.tensor([[0.0], [1.0], [2.0]])
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    q_feats = feats[1:2]
    near = np.nextafter(np.float32(1.0), np.float32(2.0))
    for q_in, is_copy in [(np.array([[1.0]]), True), (torch.tensor([[near]]), False)]:
        _, idx = knn_cosine(q_feats, feats, k=2)
        assert (skip_self_matches(q_in, bank_in, idx).item() != 1) == is_copy
        nearest = nearest_cosine(q_feats, feats, q_in, bank_in).item()
        assert (nearest < 1 - 1e-6) == is_copy
        full = kernel_cosine(q_feats, feats, 1.0).item()
        loo = kernel_cosine(q_feats, feats, 1.0, query_keys=row_fingerprints(q_in),
                            bank_keys=row_fingerprints(bank_in)).item()
        assert (loo != full) == is_copy


# ---------------------------------------------------------------- kernel density


def test_kernel_cosine_by_hand():
    """Query [2, 0] against [1, 0], [0, 1] at tau = 1: log((e^1 + e^0) / 2); leaving the first
    bank row out by key: log(e^0 / 1) = 0."""
    q, b = np.array([[2.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    got = kernel_cosine(q, b, temperature=1.0)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(math.log((math.e + 1.0) / 2.0), rel=1e-6)
    # tau = 0.5 doubles the exponents: log((e^2 + e^0) / 2)
    assert kernel_cosine(q, b, 0.5).item() == pytest.approx(math.log((math.e**2 + 1) / 2), rel=1e-6)
    keys = torch.tensor([7, 8])
    loo = kernel_cosine(q, b, 1.0, query_keys=torch.tensor([7]), bank_keys=keys)
    assert loo.item() == pytest.approx(0.0, abs=1e-7)


def _direct_log_kernel(q: np.ndarray, b: np.ndarray, tau: float) -> np.ndarray:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.log(np.mean(np.exp(qn @ bn.T / tau), axis=1))


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 4096])
def test_kernel_cosine_matches_direct_computation(chunk_size):
    rng = np.random.RandomState(0)
    q, b = rng.normal(size=(11, 5)), rng.normal(size=(17, 5))
    expected = _direct_log_kernel(q, b, 0.5)
    got = kernel_cosine(q.astype(np.float32), b.astype(np.float32), temperature=0.5,
                        chunk_size=chunk_size)
    assert got.dtype == torch.float64 and got.shape == (11,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    # tau = 0.04 still fits a direct float64 computation (exp(25))
    np.testing.assert_allclose(kernel_cosine(q, b, 0.04, chunk_size).numpy(),
                               _direct_log_kernel(q, b, 0.04), rtol=1e-5, atol=1e-4)


def test_kernel_cosine_no_overflow_at_extreme_similarity():
    b = np.random.RandomState(1).normal(size=(50, 4))
    q = b[:3].copy()  # cos = 1 with one bank row each
    tau = 1e-3  # exp(1 / tau) = exp(1000) overflows float64
    with np.errstate(over="ignore"):
        assert not np.isfinite(_direct_log_kernel(q, b, tau)).all()
    got = kernel_cosine(q, b, temperature=tau, chunk_size=8).numpy()
    assert np.isfinite(got).all()
    # the sum is dominated by the identical row: log(exp(1/tau) / M) = 1/tau - log M
    np.testing.assert_allclose(got, 1 / tau - math.log(50), rtol=1e-6)
    # far-away (opposite) queries underflow gracefully instead of giving -inf or NaN
    far = kernel_cosine(-q[:1], b[:1], temperature=tau).numpy()  # cos = -1: exp(-1000)
    np.testing.assert_allclose(far, -1 / tau, rtol=1e-6)


def test_kernel_cosine_keys_leave_rows_out():
    rng = np.random.RandomState(2)
    b = rng.normal(size=(9, 3))
    keys = torch.arange(9)
    got = kernel_cosine(b, b, temperature=0.3, chunk_size=4, query_keys=keys, bank_keys=keys)
    for i in range(9):
        others = np.delete(b, i, axis=0)
        np.testing.assert_allclose(got[i].item(), _direct_log_kernel(b[i : i + 1], others, 0.3)[0],
                                   rtol=1e-5)
    # every copy is left out: two bank rows share the query's key
    twice = kernel_cosine(b[:1], b[[0, 0, 1]], 0.3, query_keys=keys[:1],
                          bank_keys=torch.tensor([0, 0, 1]))
    np.testing.assert_allclose(twice.item(), _direct_log_kernel(b[:1], b[1:2], 0.3)[0], rtol=1e-6)
    # a query whose every bank row is left out falls back to the full sum
    one = kernel_cosine(b[:1], b[:1], 0.3, query_keys=keys[:1], bank_keys=keys[:1])
    np.testing.assert_allclose(one.item(), 1 / 0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        kernel_cosine(b, b, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        kernel_cosine(b, b, chunk_size=0)
    with pytest.raises(ValueError, match="empty"):
        kernel_cosine(b, b[:0])
    with pytest.raises(ValueError, match="query_rows"):
        kernel_cosine(b, b, query_rows=0)


@pytest.mark.parametrize("query_rows", [1, 3, 7, 64])
def test_kernel_cosine_query_blocks_change_only_rounding(query_rows):
    """Each query's sum runs over the same bank blocks in the same order, so smaller query
    blocks (less memory) give the same scores up to the matrix product's rounding,
    leave-one-out keys included."""
    rng = np.random.RandomState(3)
    q, b = rng.normal(size=(50, 5)), rng.normal(size=(23, 5))
    qk, bk = torch.arange(50), torch.arange(23)
    bk[4] = qk[10]  # a copy of query 10 in the bank
    ref = kernel_cosine(q, b, 0.1, chunk_size=8, query_keys=qk, bank_keys=bk)
    got = kernel_cosine(q, b, 0.1, chunk_size=8, query_keys=qk, bank_keys=bk,
                        query_rows=query_rows)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    assert got[10] != kernel_cosine(q[10:11], b, 0.1, chunk_size=8)[0]  # its copy left out
    # query blocks with no copy in the bank (rows 24-31, keys 24-31) skip the masking
    plain = kernel_cosine(q[24:32], b, 0.1, chunk_size=8)
    torch.testing.assert_close(ref[24:32], plain, rtol=1e-12, atol=1e-12)


def _brute_force_gap(f: torch.Tensor, keys: torch.Tensor) -> float:
    u = torch.nn.functional.normalize(f.double(), dim=1)
    sim = (u @ u.T).masked_fill(keys[:, None] == keys[None, :], -2.0)
    return float((1 - sim.max(dim=1).values).median())


def test_nearest_cosine_gap_by_hand():
    """Directions 0, 90 and 180 degrees: nearest other row at 90 degrees for each (1 - cos =
    1), median 1; with the first two rows one sample (equal keys) the first two's nearest other
    rows are at 180 and 90 degrees (2 and 1), the third's at 90 (1): median 1."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert nearest_cosine_gap(x) == pytest.approx(1.0)
    assert nearest_cosine_gap(x, torch.tensor([5, 5, 6])) == pytest.approx(1.0)
    # [1, 0] twice and [0, 1]: without keys the copies are each other's neighbours (0, 0, 1)
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert nearest_cosine_gap(y) == 0.0
    assert nearest_cosine_gap(y, torch.tensor([3, 3, 4])) == pytest.approx(1.0)


def test_nearest_cosine_gap_matches_brute_force():
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(0))
    keys = torch.arange(300)
    expected = _brute_force_gap(x, keys)
    assert nearest_cosine_gap(x, chunk_size=64) == pytest.approx(expected, abs=1e-6)
    # exact copies (equal keys) are not neighbours; without keys they are
    twice, twice_keys = torch.cat([x, x]), torch.cat([keys, keys])
    assert nearest_cosine_gap(twice, twice_keys, chunk_size=64) == pytest.approx(expected, abs=1e-6)
    assert nearest_cosine_gap(twice.numpy(), chunk_size=64) == 0.0
    # a subsample of queries: seeded, and close to the full median on a big bank
    big = torch.randn(3000, 6, generator=torch.Generator().manual_seed(1))
    sub = nearest_cosine_gap(big, max_queries=1000, seed=3)
    assert sub == nearest_cosine_gap(big, max_queries=1000, seed=3)
    assert sub == pytest.approx(_brute_force_gap(big, torch.arange(3000)), rel=0.1)
    with pytest.raises(ValueError, match="at least 2"):
        nearest_cosine_gap(x[:1])
