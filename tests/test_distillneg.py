"""DistillNegDetector: contract, negatives, kernel temperature, uniform cross-entropy, real data."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV

from skood import DistillNegDetector, _testing
from skood._detectors.dino import SmallViT
from skood._detectors.distillneg import uniform_cross_entropy
from skood._scoring import kernel_cosine

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


# ------------------------------------------------- the kernel temperature
def _brute_force_gap(f: torch.Tensor, keys: torch.Tensor) -> float:
    u = F.normalize(f.double(), dim=1)
    sim = (u @ u.T).masked_fill(keys[:, None] == keys[None, :], -2.0)
    return float((1 - sim.max(dim=1).values).median())


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


def test_uniform_cross_entropy():
    logits = torch.zeros(4, 10)
    assert uniform_cross_entropy(logits).item() == pytest.approx(math.log(10))
    assert uniform_cross_entropy(torch.randn(4, 10) * 5).item() > math.log(10)
    # the temperature divides the logits
    z = torch.randn(3, 10)
    torch.testing.assert_close(uniform_cross_entropy(z, 0.5), uniform_cross_entropy(2 * z))


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


# ---------------------------------------------------------------- negatives, views, the net


def test_negative_sampler_kinds():
    from skood._detectors.distillneg import NegativeSampler

    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    rot = NegativeSampler("rotation")(x, g)
    for r, xi in zip(rot, x, strict=True):  # turned by 90, 180 or 270 degrees, never 0
        turns = [torch.equal(r, torch.rot90(xi, k, dims=(1, 2))) for k in range(4)]
        assert any(turns[1:]) and not turns[0]
    pix = NegativeSampler("pixel-perm")(x, g)  # the same pixel values, elsewhere
    assert torch.equal(pix.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    rows = torch.randn(5, 7, generator=torch.Generator().manual_seed(2))
    perm = NegativeSampler("feature-perm")(rows, g)
    assert torch.equal(perm.sort(1).values, rows.sort(1).values)
    aux = torch.full((3, 7), 9.0)
    assert torch.equal(NegativeSampler("array", aux=aux)(rows, g), torch.full((5, 7), 9.0))
    with pytest.raises(ValueError, match="unknown kind of negatives"):
        NegativeSampler("mixup")(rows, g)


def test_tabular_views_local_views_move_further_than_global_ones():
    from skood._detectors.distillneg import TabularViews

    bank = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    glob, loc = TabularViews(bank, n_global=2, n_local=3)(bank, torch.Generator().manual_seed(1))
    assert len(glob) == 2 and len(loc) == 3
    assert all(v.shape == bank.shape for v in glob + loc)
    d_glob = torch.stack([(v - bank).pow(2).mean() for v in glob]).mean()
    d_loc = torch.stack([(v - bank).pow(2).mean() for v in loc]).mean()
    assert d_glob < d_loc  # 20% resampled + noise 0.05 against 50% + noise 0.1


def test_distillneg_net_adds_lambda_times_the_negative_loss():
    from skood._detectors.dino import DINOModel
    from skood._detectors.distillneg import DistillNegNet, NegativeSampler

    def views(x, g):
        return [x, x + 0.1], [x + 0.2]

    enc = torch.nn.Sequential(torch.nn.Linear(3, 6))
    enc.out_features = 6
    model = DINOModel(enc, n_soft_classes=10, hidden_features=8, bottleneck_features=4)
    X = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))
    net = DistillNegNet(model, views=views, negative_views=lambda x, g: ([x], [x + 0.3]),
                        negatives=NegativeSampler("feature-perm"), lam=0.5, max_epochs=1,
                        batch_size=20, optimizer=torch.optim.AdamW, device="cpu", seed=0)
    net.fit(X)
    batch = net.history[-1, "batches", -1]
    # the negatives' loss is a cross-entropy to the uniform distribution: at least log K
    assert batch["loss_neg"] >= math.log(10) - 1e-5
    assert batch["train_loss"] == pytest.approx(batch["loss_pos"] + 0.5 * batch["loss_neg"],
                                                rel=1e-5)
    off = DistillNegNet(model, views=views, lam=0.0, device="cpu")
    assert off.extra_loss(X) is None  # lam = 0: DINO alone
