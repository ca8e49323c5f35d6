"""DistillNegDetector: contract, negatives, kernel scorer, building blocks, real data."""

from __future__ import annotations

import math
import pickle
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV

from skood import DistillNegDetector, _testing
from skood._augment import random_rotate90
from skood._detectors.dino import (
    DINOHead,
    DINOModel,
    MultiCrop,
    SmallViT,
    cosine_schedule,
    dino_center_update,
    dino_loss,
    ema_update_,
    random_solarize,
)
from skood._detectors.distillneg import (
    feature_permutation,
    kernel_cosine,
    nearest_cosine_gap,
    patch_permutation,
    pixel_permutation,
    row_fingerprints,
    uniform_cross_entropy,
)

tiny = partial(_testing.tiny, "DistillNegDetector")


@pytest.fixture(scope="module")
def fitted(fitted_tiny):
    return fitted_tiny("DistillNegDetector")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ the method
def test_auto_negatives_and_two_kernels_on_rows(fitted, blobs):
    assert fitted.negatives_ == "affine"  # "auto" on tabular rows
    wide, narrow = fitted.kernel_temperature_  # "auto" on tabular rows: two kernels
    assert wide == 0.2
    f = fitted.bank_.double()
    assert narrow == pytest.approx(_brute_force_gap(f, fitted.bank_keys_), rel=1e-5)
    # one kernel (a float temperature): a log of a mean of exp(cos / tau), within +-1/tau
    one = tiny(kernel_temperature=0.3).fit(blobs[0])
    assert one.kernel_standardization_ is None
    assert (np.abs(one.score_samples(blobs[1])) <= 1 / 0.3 + 1e-6).all()


def _loo_kernel(f: torch.Tensor, tau: float) -> np.ndarray:
    """log mean over the *other* rows of exp(cos / tau), computed directly."""
    logits = (f @ f.T) / tau
    logits.fill_diagonal_(float("-inf"))
    return (torch.logsumexp(logits, dim=1) - math.log(len(f) - 1)).numpy()


def test_training_scores_are_leave_one_out(fitted, blobs):
    X_train = blobs[0]
    np.testing.assert_allclose(fitted.score_samples(X_train), fitted.train_scores_)
    # direct computation: each kernel over the *other* training samples, standardised by the
    # median and interquartile range of those leave-one-out scores, summed
    f = fitted.bank_.double()  # lifted and normalised teacher features
    expected = 0.0
    for tau, (loc, scale) in zip(fitted.kernel_temperature_, fitted.kernel_standardization_,
                                 strict=True):
        loo = _loo_kernel(f, tau)
        q25, q50, q75 = np.quantile(loo, [0.25, 0.5, 0.75])
        assert (loc, scale) == pytest.approx((q50, q75 - q25), rel=1e-5, abs=1e-6)
        expected = expected + (loo - q50) / (q75 - q25)
    np.testing.assert_allclose(fitted.train_scores_, expected, rtol=1e-4, atol=1e-4)
    # one kernel (a float temperature): the leave-one-out log kernel sum itself
    one = tiny(kernel_temperature=0.3).fit(X_train)
    np.testing.assert_allclose(one.train_scores_, _loo_kernel(one.bank_.double(), 0.3),
                               rtol=1e-5, atol=1e-4)


def test_teacher_is_an_ema_of_the_student(fitted):
    model = fitted.model_
    assert not any(p.requires_grad for p in model.teacher.parameters())
    s = torch.cat([p.flatten() for p in model.student.parameters()])
    t = torch.cat([p.flatten() for p in model.teacher.parameters()])
    assert not torch.equal(s, t)  # it moved towards the student, not onto it
    h = fitted.history_["dino"]
    assert len(h) == fitted.max_epochs and np.isfinite(h[:, "train_loss"]).all()
    batch = h[-1, "batches", -1]
    # L = L_pos + lam * L_neg
    assert batch["train_loss"] == pytest.approx(batch["loss_pos"] + batch["loss_neg"], rel=1e-5)
    assert batch["loss_neg"] >= math.log(64) - 1e-4  # cross-entropy to uniform >= log K


def test_lam_zero_is_plain_dino(blobs):
    det = tiny(lam=0.0).fit(blobs[0][:100])
    assert "loss_neg" not in det.history_["dino"][-1, "batches", -1]
    h = det.history_["dino"][-1, "batches", -1]
    assert h["train_loss"] == pytest.approx(h["loss_pos"], rel=1e-6)


@pytest.mark.parametrize(("data", "negatives"), [
    ("blobs", "affine"), ("blobs", "feature-perm"), ("blobs", "corruption"),
    ("digit_images", "perm-4"), ("digit_images", "perm-16"), ("digit_images", "pixel-perm")])
def test_negatives(request, data, negatives):
    X_train, X_test, y_test = request.getfixturevalue(data)
    det = tiny(negatives=negatives).fit(X_train)
    assert det.negatives_ == negatives
    s = det.score_samples(X_test)
    assert np.isfinite(s).all() and roc_auc_score(y_test, s) > 0.7


def test_tabular_auxiliary_negatives(blobs):
    X_train, X_test, y_test = blobs
    aux = np.random.RandomState(5).normal(loc=3.0, size=(50, 8))
    det = tiny(negatives=aux).fit(X_train)
    assert det.negatives_ == "array"
    assert roc_auc_score(y_test, det.score_samples(X_test)) > 0.7
    assert det.get_params()["negatives"] is aux  # stored verbatim
    clone(det)


# ------------------------------------------------------------------ bad input


def test_bad_parameters(blobs, digit_images):
    X = blobs[0][:40]
    for kw, match in [({"lam": -1.0}, "lam"), ({"negatives": "rotate"}, "negatives"),
                      ({"negatives": 3}, "negatives"), ({"backbone": "vgg"}, "backbone"),
                      ({"kernel_temperature": 0.0}, "kernel_temperature"),
                      ({"teacher_momentum": 1.5}, "teacher_momentum"),
                      ({"n_local_crops": -1}, "n_local_crops"),
                      ({"negatives": "rotation"}, "needs images"),
                      ({"negatives": "pixel-perm"}, "needs images"),
                      ({"backbone": "resnet18"}, "needs images"),
                      ({"n_global_crops": 1, "n_local_crops": 0}, "n_local_crops >= 1")]:
        with pytest.raises(ValueError, match=match):
            tiny(**kw).fit(X)
    imgs = digit_images[0]
    for kw, match in [({"negatives": "affine"}, "for tabular data"),
                      ({"negatives": "feature-perm"}, "for tabular data"),
                      ({"backbone": "mlp"}, "for tabular data")]:
        with pytest.raises(ValueError, match=match):
            tiny(**kw).fit(imgs)


@pytest.mark.parametrize(
    ("aux", "match"),
    [
        (np.ones((5, 7)), "2-D with 8 features"),
        (np.full((5, 8), np.nan), "negatives array: .*NaN"),
        (np.ones((0, 8)), "negatives array: .*0 sample"),
        (np.array([["a"] * 8] * 5), "negatives array"),
        (np.ones((5, 8, 8)), "2-D with 8 features"),
    ],
)
def test_bad_tabular_auxiliary_array(blobs, aux, match):
    with pytest.raises(ValueError, match=match):
        tiny(negatives=aux).fit(blobs[0][:40])


@pytest.mark.parametrize(
    ("aux", "match"),
    [
        (np.zeros((5, 8, 8, 3), np.uint8), "3 channel"),
        (np.ones((5, 64)), "negatives array is 2-D"),
        (np.full((5, 8, 8), 2.0), r"float images must lie in \[0, 1\]"),
        (np.full((5, 8, 8), np.inf), "negatives array: .*infinity"),
        (np.ones((5, 2, 2, 2, 2)), "negatives array: .*5 dimensions"),
    ],
)
def test_bad_image_auxiliary_array(digit_images, aux, match):
    with pytest.raises(ValueError, match=match):
        tiny(negatives=aux).fit(digit_images[0][:40])


def test_grid_search_over_lam_and_negatives(one_class_folds):
    X, y, folds = one_class_folds
    grid = {"lam": [0.0, 1.0], "negatives": ["affine", "feature-perm"]}
    gs = GridSearchCV(tiny(), grid, scoring="roc_auc", cv=folds, error_score="raise").fit(X, y)
    assert np.all(gs.cv_results_["mean_test_score"] > 0.8)  # every candidate separates
    assert gs.best_estimator_.negatives_ == gs.best_params_["negatives"]  # refit with its own


# ------------------------------------------------------------------- images

def test_auxiliary_images_in_other_layout_and_size(digit_images):
    X_train, X_test, y_test = digit_images
    from skood.datasets import load_digits_images

    Xd, yd = load_digits_images()
    aux = np.repeat(np.repeat(Xd[yd == 7][:30], 2, axis=1), 2, axis=2)  # 16 x 16: resized
    det = tiny(negatives=aux[..., None].astype(np.float32) / 255).fit(X_train)  # NHWC floats
    assert det.negatives_ == "array"
    assert roc_auc_score(y_test, det.score_samples(X_test)) > 0.7


@pytest.mark.parametrize("backbone", ["vit", "resnet18"])
def test_other_backbones(digit_images, backbone):
    X_train, X_test, _ = digit_images
    det = tiny(backbone=backbone, n_local_crops=1, batch_size=60).fit(X_train[:60])
    enc = det.model_.teacher.encoder
    assert isinstance(enc, SmallViT) if backbone == "vit" else enc.out_features == 512
    assert np.isfinite(det.score_samples(X_test[:20])).all()


# ------------------------------------------------- the kernel scorer (eq. 6)
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
    # the paper's tau = 0.04 still fits a direct float64 computation (exp(25))
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
    # a query whose every bank row is left out falls back to the full sum
    one = kernel_cosine(b[:1], b[:1], 0.3, query_keys=keys[:1], bank_keys=keys[:1])
    np.testing.assert_allclose(one.item(), 1 / 0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        kernel_cosine(b, b, temperature=0.0)


def _brute_force_gap(f: torch.Tensor, keys: torch.Tensor) -> float:
    u = F.normalize(f.double(), dim=1)
    sim = (u @ u.T).masked_fill(keys[:, None] == keys[None, :], -2.0)
    return float((1 - sim.max(dim=1).values).median())


def test_nearest_cosine_gap_matches_brute_force():
    x = torch.randn(300, 6, generator=_gen())
    keys = torch.arange(300)
    expected = _brute_force_gap(x, keys)
    assert nearest_cosine_gap(x, chunk_size=64) == pytest.approx(expected, abs=1e-6)
    # exact copies (equal keys) are not neighbours; without keys they are
    twice, twice_keys = torch.cat([x, x]), torch.cat([keys, keys])
    assert nearest_cosine_gap(twice, twice_keys, chunk_size=64) == pytest.approx(expected, abs=1e-6)
    assert nearest_cosine_gap(twice.numpy(), chunk_size=64) == 0.0
    # a subsample of queries: seeded, and close to the full median on a big bank
    big = torch.randn(3000, 6, generator=_gen(1))
    sub = nearest_cosine_gap(big, max_queries=1000, seed=3)
    assert sub == nearest_cosine_gap(big, max_queries=1000, seed=3)
    assert sub == pytest.approx(_brute_force_gap(big, torch.arange(3000)), rel=0.1)
    with pytest.raises(ValueError, match="at least 2"):
        nearest_cosine_gap(x[:1])


def test_auto_kernel_temperature_scales_with_the_features(digit_images):
    X = digit_images[0]
    det = tiny(random_state=0).fit(X)
    # images: a quarter of the bank's median nearest-neighbour cosine distance (copies of a
    # training image left out); this bank is under 2,048 rows: every row is a query
    assert det.kernel_standardization_ is None
    gap = _brute_force_gap(det.bank_, det.bank_keys_)
    assert det.kernel_temperature_ == pytest.approx(0.25 * gap, rel=1e-5)
    assert tiny(kernel_temperature=0.04).fit(X).kernel_temperature_ == 0.04
    for preset in ("paper", "paper-vit"):
        assert DistillNegDetector.from_preset(preset).kernel_temperature == 0.04
    # tabular rows: 0.2 and the median nearest-neighbour distance
    rows = tiny().fit(np.random.RandomState(0).normal(size=(60, 3)))
    assert rows.kernel_temperature_ == pytest.approx(
        (0.2, _brute_force_gap(rows.bank_, rows.bank_keys_)), rel=1e-5)


def test_row_fingerprints():
    X = torch.tensor(np.random.RandomState(0).randint(0, 256, (6, 1, 4, 4)), dtype=torch.uint8)
    k = row_fingerprints(X)
    assert k.dtype == torch.int64 and len(set(k.tolist())) == 6
    np.testing.assert_array_equal(k, row_fingerprints(X.float() / 255))  # scale-independent
    np.testing.assert_array_equal(k[[0, 0]], row_fingerprints(X[[0, 0]]))


# ---------------------------------------------------------- building blocks
def test_patch_and_pixel_permutations_move_but_keep_content():
    x = torch.rand(5, 3, 8, 8)
    def cells(t: torch.Tensor, n: int) -> torch.Tensor:  # (N, n cells, C * cell pixels)
        p = 8 // math.isqrt(n)
        c = t.unfold(2, p, p).unfold(3, p, p).reshape(len(t), t.shape[1], n, -1)
        return c.permute(0, 2, 1, 3).reshape(len(t), n, -1)

    for n in (4, 16):
        y = patch_permutation(x, _gen(), n)
        cx, cy = cells(x, n), cells(y, n)
        for i in range(5):  # the same cells, in another order
            assert sorted(map(tuple, cx[i].tolist())) == sorted(map(tuple, cy[i].tolist()))
        assert not torch.equal(x, y)
    y = pixel_permutation(x, _gen())
    assert torch.equal(x.flatten(2).sort(dim=2).values, y.flatten(2).sort(dim=2).values)
    # all channels move together: the (r, g, b) triples are kept
    trip = lambda t, i: sorted(map(tuple, t[i].flatten(1).T.tolist()))  # noqa: E731
    assert trip(x, 0) == trip(y, 0)
    # odd sides: the remainder rows/columns stay where they are
    z = torch.rand(2, 1, 9, 9)
    zz = patch_permutation(z, _gen(), 4)
    assert torch.equal(z[..., 8, :], zz[..., 8, :]) and torch.equal(z[..., :, 8], zz[..., :, 8])
    with pytest.raises(ValueError, match="square number"):
        patch_permutation(x, _gen(), 8)
    with pytest.raises(ValueError, match="cannot be cut"):
        patch_permutation(torch.rand(2, 1, 3, 3), _gen(), 16)


def test_feature_permutation_and_rotations():
    x = torch.randn(20, 6)
    y = feature_permutation(x, _gen())
    assert torch.equal(x.sort(dim=1).values, y.sort(dim=1).values) and not torch.equal(x, y)
    imgs = torch.rand(30, 1, 5, 5)
    rot = random_rotate90(imgs, _gen())
    for i in range(30):
        matches = [k for k in range(4) if torch.equal(rot[i], torch.rot90(imgs[i], k, (-2, -1)))]
        assert matches and 0 not in matches  # rotated by 90, 180 or 270 degrees, never 0


def test_multicrop_and_solarize():
    x = torch.rand(4, 3, 28, 28)
    mc = MultiCrop(n_global=2, n_local=3, local_scale=(0.15, 0.4))
    g, loc = mc(x, _gen())
    assert len(g) == 2 and len(loc) == 3
    assert all(v.shape == (4, 3, 28, 28) for v in g) and all(v.shape == (4, 3, 14, 14) for v in loc)
    assert all(((v >= 0) & (v <= 1)).all() for v in g + loc)
    assert mc.local_shape(6, 6) == (4, 4) and mc.local_shape(3, 40) == (3, 20)
    g2, _ = mc(x, _gen())
    assert torch.equal(g[0], g2[0])  # reproducible from the generator
    s = random_solarize(x, _gen(), p=1.0)
    torch.testing.assert_close(s, torch.where(x >= 0.5, 1 - x, x))


def test_dino_loss_matches_its_definition():
    torch.manual_seed(0)
    s = [torch.randn(3, 5) for _ in range(4)]
    t = [torch.randn(3, 5) for _ in range(2)]
    c = torch.randn(1, 5)
    terms = []
    for i in range(2):
        q = F.softmax((t[i] - c) / 0.04, dim=-1)
        for j in range(4):
            if i != j:
                terms.append(-(q * F.log_softmax(s[j] / 0.1, dim=-1)).sum(-1).mean())
    torch.testing.assert_close(dino_loss(s, t, c, 0.1, 0.04), torch.stack(terms).mean())
    # no gradient reaches the teacher
    tt = [v.clone().requires_grad_(True) for v in t]
    ss = [v.clone().requires_grad_(True) for v in s]
    dino_loss(ss, tt, c).backward()
    assert tt[0].grad is None and ss[0].grad is not None
    with pytest.raises(ValueError, match="other than"):
        dino_loss(s[:1], t[:1], c)


def test_uniform_cross_entropy_and_center():
    logits = torch.zeros(4, 10)
    assert uniform_cross_entropy(logits).item() == pytest.approx(math.log(10))
    assert uniform_cross_entropy(torch.randn(4, 10) * 5).item() > math.log(10)
    c = dino_center_update(torch.zeros(1, 3), [torch.ones(2, 3), 3 * torch.ones(2, 3)], 0.9)
    torch.testing.assert_close(c, torch.full((1, 3), 0.2))


def test_dino_head_model_and_ema():
    head = DINOHead(16, out_features=32, hidden_features=8, bottleneck_features=4)
    out = head(torch.randn(5, 16))
    assert out.shape == (5, 32) and (out.abs() <= 1 + 1e-5).all()  # cosines
    assert "weight_g" not in dict(head.named_parameters())  # fixed gains (norm_last_layer)
    enc = torch.nn.Sequential(torch.nn.Linear(3, 6))
    enc.out_features = 6
    model = DINOModel(enc, n_soft_classes=10, hidden_features=8, bottleneck_features=4)
    pickle.loads(pickle.dumps(model))
    for ps, pt in zip(model.student.parameters(), model.teacher.parameters(), strict=True):
        assert torch.equal(ps, pt) and not pt.requires_grad
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.teacher.parameters()]
    ema_update_(model.teacher, model.student, 0.9)
    for b, ps, pt in zip(before, model.student.parameters(), model.teacher.parameters(),
                         strict=True):
        torch.testing.assert_close(pt, 0.9 * b + 0.1 * ps)


def test_cosine_schedule():
    s = cosine_schedule(1.0, 0.0, 10, warmup_steps=2)
    assert len(s) == 10 and s[0] == 0.0 and s[2] == pytest.approx(1.0)
    assert np.all(np.diff(s[2:]) <= 0) and s[-1] < 0.05
    np.testing.assert_allclose(cosine_schedule(0.99, 1.0, 3), [0.99, 0.9925, 0.9975])
    assert len(cosine_schedule(1.0, 0.0, 1, warmup_steps=5)) == 1


def test_small_vit_any_input_size():
    vit = SmallViT(1, (28, 28))
    assert vit.patch_size == 4 and vit.grid == 7
    assert vit(torch.rand(2, 1, 28, 28)).shape == (2, 192)
    assert vit(torch.rand(2, 1, 14, 14)).shape == (2, 192)  # interpolated positions
    with pytest.raises(ValueError, match="smaller than one"):
        vit(torch.rand(2, 1, 3, 3))


# ------------------------------------------------------------------ real data
@pytest.mark.slow
def test_one_class_fashion_mnist_beats_chance(fashion_auroc):
    auroc = fashion_auroc(DistillNegDetector(max_epochs=2, random_state=0, device="cpu"), 300)
    assert auroc > 0.8, auroc


def test_auto_kernel_beats_the_papers_on_a_briefly_trained_cnn(data_home):
    """One fit, two scores: on Fashion-MNIST T-shirts after a few steps the features lie
    within a few hundredths in cosine; the paper's tau = 0.04 then weighs the whole bank nearly
    alike, the adaptive tau keeps the score local."""
    from skood.datasets import load_fashion_mnist

    X_tr, y_tr = load_fashion_mnist("train", data_home=data_home)
    X_te, y_te = load_fashion_mnist("test", data_home=data_home)
    rng = np.random.RandomState(0)
    train = rng.permutation(np.flatnonzero(y_tr == 0))[:300]
    test = rng.permutation(len(X_te))[:600]
    det = DistillNegDetector(max_epochs=1, batch_size=64, random_state=0, device="cpu")
    det.fit(X_tr[train])
    y = y_te[test] == 0
    auto = roc_auc_score(y, det.score_samples(X_te[test]))
    feats = det._features(det._validate_input(X_te[test], reset=False))
    paper = roc_auc_score(y, kernel_cosine(feats, det.bank_, 0.04, normalized=True).numpy())
    assert det.kernel_temperature_ < 0.01
    assert auto > paper + 0.03, (auto, paper)


def test_two_kernels_find_local_anomalies_on_contaminated_rows(data_home):
    """ADBench vowels, contaminated (inductive) split: its anomalies lie between normal
    clusters, where the single wide kernel (tau = 0.2) ranks them as normal; the standardised
    sum with the narrow kernel finds them. Both scores from one fit."""
    from skood.datasets import load_adbench, tabular_split

    X, y = load_adbench("vowels", data_home)
    X_tr, X_te, _, y_te = tabular_split(X, y, protocol="inductive", random_state=0)
    det = DistillNegDetector(random_state=0, device="cpu").fit(X_tr)
    both = roc_auc_score(y_te, -det.score_samples(X_te))
    feats = det._features(det._validate_input(X_te, reset=False))
    wide = roc_auc_score(y_te, -kernel_cosine(feats, det.bank_, 0.2, normalized=True).numpy())
    assert both > 0.9 and both > wide + 0.1, (both, wide)


def test_negatives_benchmark_smoke(data_home, tmp_path):
    table, runs = _testing.run_benchmark(
        "distillneg_negatives.py", data_home, tmp_path, "--classes", "1", "--n-train", "40",
        "--epochs", "1", "--seeds", "0", "1", "--n-test", "60", "--device", "cpu")
    assert "lam=1" in table and "lam=0" in table and "Fashion-MNIST vs MNIST" in table
    assert len(runs) == 2 * 2 * 2
