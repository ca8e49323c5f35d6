"""RotAuxMSPDetector: alternating objective, scorers, both modes, labels, real data."""

from __future__ import annotations

import copy
import pickle
from functools import partial

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags

from skood import RotAuxMSPDetector, _testing
from skood._augment import RandomAffineMaps, flip_transpose, rotate90
from skood._detectors._rotaux_parts import PadCropFlip, msp, odin
from skood._detectors.rotaux_msp import RotAuxModel, RotAuxNet
from skood._nn.encoders import MLP
from skood._scoring import transformation_confidence
from skood.metrics import auroc_scorer, average_precision

tiny = partial(_testing.tiny, "RotAuxMSPDetector")


@pytest.fixture(scope="module")
def labelled(blobs):
    """The blobs with two in-distribution classes (sign of the first feature)."""
    X_train, X_test, y_test = blobs
    return X_train, (X_train[:, 0] > 0).astype(int), X_test, y_test


@pytest.fixture(scope="module")
def fitted(labelled):
    """Fitted with the class labels (the unlabelled fit: ``fitted_tiny``)."""
    X, y, _, _ = labelled
    return tiny().fit(X, y)


@pytest.fixture(scope="module")
def digits_holdout():
    """Digits 0-4 with labels for training; test: held-in 0-4 (+1) and unseen 5-9 (-1)."""
    from skood.datasets import load_digits_images

    X, y = load_digits_images()
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(X))
    tr, te = idx[:900], idx[900:1300]
    keep = tr[y[tr] < 5]
    return X[keep], y[keep], X[te], np.where(y[te] < 5, 1, -1)


@pytest.fixture(scope="module")
def fitted_images(digits_holdout):
    X, y, _, _ = digits_holdout
    return tiny(max_epochs=3, batch_size=32).fit(X, y)


def _x(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a[:, None] / 255.0).float()


# ------------------------------------------------------------------ with labels
def test_labelled_fit_and_separation(fitted, labelled):
    _, _, X_test, y_test = labelled
    s = fitted.score_samples(X_test)
    assert fitted.supervised_ and fitted.scoring_ == "msp*rotation"  # "auto", lam > 0
    np.testing.assert_array_equal(fitted.classes_, [0, 1])
    assert roc_auc_score(y_test, s) > 0.9
    assert (s > 0).all() and (s <= 1).all()  # product of two probabilities


def test_msp_alone_misses_far_tabular_outliers(labelled):
    # why "auto" multiplies by the affine-map confidence on tabular data: a
    # ReLU classifier is most confident far from the data (Hein et al. 2019)
    X, y, X_test, y_test = labelled
    s = tiny(scoring="msp").fit(X, y).score_samples(X_test)
    assert roc_auc_score(y_test, s) < 0.5


def test_fit_predict_passes_the_labels(labelled, capsys):
    X, y, _, _ = labelled
    det = tiny(contamination=0.25, verbose=1)
    labels = det.fit_predict(X, y)
    assert det.supervised_ and "\rRotAuxMSP: 100%" in capsys.readouterr().err  # its own bar
    np.testing.assert_array_equal(labels, det.predict(X))
    assert abs(np.mean(labels == -1) - 0.25) <= 0.01


def test_scores_do_not_depend_on_batch(fitted_images, digits_holdout):
    X_test = digits_holdout[2]
    for scoring in ("msp*rotation", "odin"):
        det = copy.copy(fitted_images)
        det.scoring_ = scoring
        full = det.score_samples(X_test)
        parts = np.concatenate([det.score_samples(X_test[i : i + 7])
                                for i in range(0, len(X_test), 7)])
        np.testing.assert_allclose(full, parts, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the method
def test_scorers_match_their_definitions(fitted_images, digits_holdout):
    X_test = digits_holdout[2][:50]
    model = fitted_images.model_
    x = _x(X_test)
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
        p_rot = torch.stack([torch.softmax(model.aux_head(model.trunk(rotate90(x, k))), 1)[:, k]
                             for k in range(4)])
        rot = p_rot.mean(0)
        geo = p_rot.double().log().mean(0).exp()  # geometric mean of P(k | rho_k x)
    scores = {}
    for scoring in ("msp", "odin", "rotation", "msp*rotation"):
        scores[scoring] = fitted_images.score_samples_by(X_test, scoring)
    np.testing.assert_array_equal(fitted_images.score_samples_by(X_test, "auto"),
                                  fitted_images.score_samples(X_test))
    assert fitted_images.scoring_ == "msp*rotation"  # the fitted scorer is untouched
    with pytest.raises(ValueError, match="scoring must be one of"):
        fitted_images.score_samples_by(X_test, "energy")
    np.testing.assert_allclose(scores["msp"], p.max(1).values.numpy(), rtol=1e-5)
    np.testing.assert_allclose(scores["rotation"], rot.numpy(), rtol=1e-5)
    np.testing.assert_allclose(scores["msp*rotation"], scores["msp"] * geo.numpy(), rtol=1e-5)
    np.testing.assert_allclose(scores["odin"], odin(model, x, 1000.0, 5e-5).numpy(), rtol=1e-6)
    # ODIN is temperature-scaled MSP of a nudged input: eps = 0 gives MSP at T
    np.testing.assert_allclose(odin(model, x, 1000.0, 0.0).numpy(),
                               msp(model(x).detach(), 1000.0).numpy(), rtol=1e-6)
    # 5 classes at T = 1000: close to uniform
    assert (scores["odin"] >= 0.2).all() and (scores["odin"] < 0.25).all()


def test_pad_crop_flip_keeps_the_content_and_is_seeded():
    """Each image is shifted by at most ``padding`` pixels (zeros come in) and maybe flipped."""
    x = torch.rand(16, 1, 8, 8)
    out = PadCropFlip(2)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    assert torch.equal(out, PadCropFlip(2)(x, torch.Generator().manual_seed(0)))
    for img, o in zip(x[:, 0], out[:, 0], strict=True):
        shifts = [(dy, dx, f) for dy in range(-2, 3) for dx in range(-2, 3) for f in (0, 1)
                  if torch.equal(o, _shift(img.flip(-1) if f else img, dy, dx))]
        assert shifts, "not a padded crop of the image or of its mirror"
    flipped = PadCropFlip(0)(x, torch.Generator().manual_seed(0))  # no padding: only flips
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(-1))
               for o, i in zip(flipped, x, strict=True))


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``img`` moved by (dy, dx) pixels, zeros where nothing is."""
    h, w = img.shape
    out = torch.zeros_like(img)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_rotation_task_is_learned(fitted_images, digits_holdout):
    h = fitted_images.history_
    first, last = h[0, "batches", 0], h[-1, "batches", -1]
    assert last["loss_rotation"] < first["loss_rotation"]
    x = _x(digits_holdout[0][:64])
    with torch.no_grad():
        conf = transformation_confidence(fitted_images.model_.aux_logits_all(x))
    assert conf.mean() > 0.4  # chance is 0.25


def _net(lam: float, targets: torch.Tensor | None, seed: int = 0) -> RotAuxNet:
    torch.manual_seed(seed)
    model = RotAuxModel(MLP(6, (16, 16)), 0 if targets is None else 3, 4, "affine",
                        RandomAffineMaps(4, 6))
    net = RotAuxNet(model, targets=targets, lam=lam, name="t", max_epochs=1, batch_size=16,
                    lr=0.1, device="cpu", seed=seed, verbose=0, optimizer=torch.optim.SGD,
                    optimizer__momentum=0.9, optimizer__nesterov=True,
                    optimizer__weight_decay=5e-4)
    net.precise_bn = False
    return net


def test_alternating_steps_update_the_right_heads():
    X = torch.randn(16, 6)  # one batch: one iteration
    y = torch.randint(0, 3, (16,))
    nets = {lam: _net(lam, y).fit(X) for lam in (0.0, 0.5)}
    a, b = (n.module_ for n in nets.values())
    # step (a) comes first and is the same in both: the class head moved identically,
    # step (b) then moved the trunk and the rotation head only with lam > 0
    torch.testing.assert_close(a.class_head.weight, b.class_head.weight)
    init = _net(0.0, y).initialize().module_
    torch.testing.assert_close(a.aux_head.weight, init.aux_head.weight)  # lam = 0: untouched
    assert not torch.allclose(b.aux_head.weight, init.aux_head.weight)
    assert not torch.allclose(a.trunk.net[0].weight, b.trunk.net[0].weight)
    # two optimisers, each over trunk + its own head
    opt_a, opt_b = nets[0.5].optimizer_, nets[0.5].rotation_optimizer_
    ids = lambda o: {id(p) for g in o.param_groups for p in g["params"]}  # noqa: E731
    trunk = {id(p) for p in b.trunk.parameters()}
    assert ids(opt_a) == trunk | {id(p) for p in b.class_head.parameters()}
    assert ids(opt_b) == trunk | {id(p) for p in b.aux_head.parameters()}
    assert opt_b.param_groups[0]["nesterov"] and opt_b.param_groups[0]["momentum"] == 0.9
    assert nets[0.0].rotation_optimizer_ is None
    # the recorded loss is the paper's eq. 5: l_class + lam * l_rot
    batch = nets[0.5].history[-1, "batches", -1]
    assert batch["train_loss"] == pytest.approx(batch["loss_class"] + 0.5 * batch["loss_rotation"])
    assert "loss_rotation" not in nets[0.0].history[-1, "batches", -1]


def test_rotation_step_runs_at_the_class_steps_learning_rate():
    X, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    net = _net(0.5, y).initialize()
    net.on_train_begin(net, X)
    net.history.new_epoch()
    net.history.new_batch()
    for group in net.optimizer_.param_groups:  # as the step schedule would set it
        group["lr"] = 0.004
    net.train_step((X, torch.arange(16)))
    assert net.rotation_optimizer_.param_groups[0]["lr"] == 0.004


def test_lam_zero_is_the_classifier_alone(labelled):
    X, y, X_test, _ = labelled
    det = tiny(lam=0).fit(X, y)
    assert det.scoring_ == "msp"  # "auto" has no auxiliary head to use
    assert "loss_rotation" not in det.history_[-1, "batches", -1]
    with pytest.raises(ValueError, match="lam=0 does not train"):
        tiny(lam=0, scoring="msp*rotation").fit(X, y)
    assert np.isfinite(tiny(lam=0, scoring="odin").fit(X, y).score_samples(X_test)).all()


def test_flip_transpose_is_the_reference_set():
    x = torch.arange(2 * 3 * 9.0).view(2, 3, 3, 3)
    # reference: data, data[:, :, ::-1, :], transpose(data), transpose(data[:, :, ::-1, :])
    ref = [x, x.flip(2), x.transpose(2, 3), x.flip(2).transpose(2, 3)]
    for k, r in enumerate(ref):
        torch.testing.assert_close(flip_transpose(x, k), r)
    torch.testing.assert_close(flip_transpose(x, 3), rotate90(x, 3))  # a 90 degree rotation
    ks = torch.tensor([3, 1])
    torch.testing.assert_close(flip_transpose(x, ks), torch.stack([ref[3][0], ref[1][1]]))


@pytest.mark.parametrize("rotations", ["rotate", "flip-transpose"])
def test_image_rotation_options(digits_holdout, rotations):
    X, y, X_test, y_test = digits_holdout
    det = tiny(rotations=rotations, batch_size=32, padding=0).fit(X[:200], y[:200])
    assert det.model_.transform_name == rotations
    assert np.isfinite(det.score_samples(X_test)).all()


# ------------------------------------------------------------------ both modes
def test_unlabelled_fit_is_the_rotation_detector(fitted_tiny, labelled, digits_holdout):
    X, _, X_test, y_test = labelled
    det = fitted_tiny("RotAuxMSPDetector")
    assert not det.supervised_ and det.scoring_ == "rotation-centres"  # tabular "auto"
    assert not hasattr(det, "classes_") and det.model_.class_head is None
    assert roc_auc_score(y_test, det.score_samples(X_test)) > 0.9
    assert "loss_class" not in det.history_[-1, "batches", -1]
    # images: the classic rotation detector, unseen digits are less predictable
    Xi, _, Xi_test, yi_test = digits_holdout
    s = tiny(batch_size=32, max_epochs=3).fit(Xi).score_samples(Xi_test)
    assert roc_auc_score(yi_test, s) > 0.6
    with pytest.raises(ValueError, match="needs a class head"):
        tiny(scoring="odin").fit(X)


def test_score_samples_by_refuses_untrained_heads(fitted_tiny, labelled):
    X = labelled[0]
    det = fitted_tiny("RotAuxMSPDetector")  # no labels
    assert det.score_samples_by(X[:5], "rotation").shape == (5,)
    with pytest.raises(ValueError, match="needs a class head"):
        det.score_samples_by(X[:5], "msp")


def test_score_samples_by_scores_chunk_by_chunk_with_the_same_bits(fitted, labelled,
                                                                   monkeypatch):
    """Every scorer of ``score_samples_by``, with chunks of 256 rows: one store per chunk and
    the bits of one pass over the store of all rows."""
    X_train, _, X_test, _ = labelled
    X = np.concatenate([X_test, X_train] * 4)
    whole = {s: fitted._score_store(fitted._validate_input(X, reset=False),
                                    fitted._resolve_scoring(s))
             for s in ("auto", "msp", "odin", "rotation", "msp*rotation")}
    monkeypatch.setattr(RotAuxMSPDetector, "_score_chunk_rows", lambda self: 256)
    seen = []
    build = RotAuxMSPDetector._tabular_store
    monkeypatch.setattr(RotAuxMSPDetector, "_tabular_store",
                        lambda self, Xv, *a, **k: seen.append(len(Xv)) or build(self, Xv, *a, **k))
    for scoring, ref in whole.items():
        seen.clear()
        np.testing.assert_array_equal(fitted.score_samples_by(X, scoring), ref)
        assert len(seen) >= 3 and max(seen) <= 2 * 256 and sum(seen) == len(X)


def test_supervised_parameter_and_tags(fitted_tiny, labelled):
    X, y, X_test, _ = labelled
    assert not get_tags(tiny()).target_tags.required  # labels used when given
    assert not get_tags(tiny(supervised=False)).target_tags.required
    assert get_tags(tiny(supervised=True)).target_tags.required
    ignored = tiny(supervised=False).fit(X, y)
    assert not ignored.supervised_ and ignored.scoring_ == "rotation-centres"
    np.testing.assert_array_equal(ignored.score_samples(X_test),
                                  fitted_tiny("RotAuxMSPDetector").score_samples(X_test))
    with pytest.raises(ValueError, match="requires y to be passed"):
        tiny(supervised=True).fit(X)


def test_refit_with_and_without_labels(labelled, digits_holdout):
    X, y, X_test, _ = labelled
    det = tiny().fit(X, y)
    det.fit(digits_holdout[0][:100])  # now unlabelled images
    assert not hasattr(det, "classes_") and not det.supervised_ and det.input_kind_ == "image"
    det.fit(X, y)
    assert det.supervised_ and det.input_kind_ == "tabular"
    assert np.isfinite(det.score_samples(X_test)).all()


def _novel_class_ap(estimator, X, y) -> float:
    """AP with the classes unseen in fit as positives (the paper's metric)."""
    classes = estimator[-1].classes_ if hasattr(estimator, "steps") else estimator.classes_
    return average_precision(~np.isin(y, classes), estimator.score_samples(X))


def test_grid_search_supervised_hold_out_folds(digits_holdout):
    X, y, _, _ = digits_holdout
    X, y = X[:400], y[:400]
    # each fold trains with labels on four digits and tests on all five
    folds = [(np.flatnonzero((y != k) & (np.arange(400) < 300)), np.arange(300, 400))
             for k in (0, 1)]
    grid = {"lam": [0.0, 0.5]}
    gs = GridSearchCV(tiny(batch_size=32, scoring="odin"), grid, scoring=_novel_class_ap, cv=folds,
                      error_score="raise").fit(X, y)
    scores = gs.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores[0] != scores[1]  # lam reaches the model
    assert gs.best_score_ > 0.2  # one of five test digits is novel: chance is about 0.2
    assert len(gs.best_estimator_.classes_) == 5  # refit on all the labels


def test_grid_search_unsupervised(one_class_folds):
    X, y, folds = one_class_folds  # y: outlier labels, for the scorer only
    gs = GridSearchCV(tiny(supervised=False), {"n_affine_maps": [4, 8]}, scoring=auroc_scorer,
                      cv=folds, error_score="raise").fit(X, y)
    assert gs.best_score_ > 0.9
    best = gs.best_estimator_
    assert not best.supervised_  # y was not taken as class labels
    assert best.model_.affine_maps.n_maps == gs.best_params_["n_affine_maps"]


def test_pipeline_both_modes(labelled):
    X, y, X_test, y_test = labelled
    pipe = make_pipeline(StandardScaler(), tiny()).fit(X, y)
    np.testing.assert_array_equal(pipe[-1].classes_, [0, 1])
    assert roc_auc_score(y_test, pipe.score_samples(X_test)) > 0.9
    assert _novel_class_ap(pipe, X_test, np.where(y_test == 1, 0, 7)) > 0.5
    unsup = make_pipeline(StandardScaler(), tiny()).fit(X)
    assert not unsup[-1].supervised_
    assert roc_auc_score(y_test, unsup.score_samples(X_test)) > 0.9


def test_string_labels(fitted, labelled):
    X, y, X_test, _ = labelled
    names = np.array(["neg", "pos"])[y]
    det = tiny().fit(X, names)
    np.testing.assert_array_equal(det.classes_, ["neg", "pos"])
    np.testing.assert_array_equal(det.score_samples(X_test), fitted.score_samples(X_test))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (lambda y: y[:-1], "y has 399 labels but X has 400 samples"),
        (lambda y: y + np.linspace(0, 0.5, len(y)), "Unknown label type"),
        (lambda y: np.c_[y, y], "y should be a 1d array"),
        (lambda y: np.zeros_like(y), "at least 2 classes"),
        (lambda y: np.where(y == 0, np.nan, 1.0), "NaN"),
    ],
)
def test_bad_labels(labelled, labels, match):
    X, y, _, _ = labelled
    with pytest.raises(ValueError, match=match):
        tiny().fit(X, labels(y))


@pytest.mark.parametrize(
    ("kw", "X", "match"),
    [
        ({}, np.full((20, 8), np.inf), "infinity"),
        ({}, np.ones((20, 2, 2, 2, 2)), "5 dimensions"),
        ({}, np.zeros((20, 8, 6), np.uint8), "square images"),
        ({"lam": -1.0}, np.ones((20, 3)), "lam"),
        ({"scoring": "energy"}, np.ones((20, 3)), "scoring"),
        ({"supervised": "yes"}, np.ones((20, 3)), "supervised"),
        ({"padding": -1}, np.ones((20, 3)), "padding"),
        ({"rotations": "shear"}, np.ones((20, 3)), "rotations"),
    ],
)
def test_bad_input_and_parameters_at_fit_time(kw, X, match):
    y = np.arange(len(X)) % 2
    with pytest.raises(ValueError, match=match):
        tiny(**kw).fit(X, y)


# ------------------------------------------------------------------ images, pickle
def test_unseen_digits_are_less_confident(fitted_images, digits_holdout):
    _, _, X_test, y_test = digits_holdout
    assert fitted_images.input_kind_ == "image" and fitted_images.supervised_
    assert roc_auc_score(y_test, fitted_images.score_samples(X_test)) > 0.6  # digits 5-9


def test_tabular_affine_maps_are_seeded_and_pickled(fitted, labelled):
    maps = fitted.model_.affine_maps
    assert maps.n_maps == 64 and torch.equal(maps.weight[0], torch.eye(8))
    again = pickle.loads(pickle.dumps(fitted))  # with its class head
    torch.testing.assert_close(again.model_.affine_maps.weight, maps.weight)
    X, y, X_test, _ = labelled
    np.testing.assert_array_equal(again.score_samples(X_test), fitted.score_samples(X_test))
    other = tiny(random_state=1).fit(X, y).model_.affine_maps
    assert not torch.allclose(other.weight[1], maps.weight[1])



# ------------------------------------------------------------------ real data
@pytest.mark.slow
def test_fashion_mnist_hold_one_class_out(data_home):
    from skood.datasets import hold_one_class_out, load_fashion_mnist

    X, y = load_fashion_mnist("test", data_home=data_home)
    rng = np.random.RandomState(0)
    tr, te = rng.permutation(5000)[:600], 5000 + rng.permutation(5000)[:600]
    X_tr, y_tr, X_te, y_out = hold_one_class_out(X[tr], y[tr], X[te], y[te], held_out=9,
                                                 random_state=0)
    det = RotAuxMSPDetector(max_epochs=2, device="cpu", random_state=0).fit(X_tr, y_tr)
    s = det.score_samples(X_te)
    # held-out ankle boots: chance AP is their share of the test set (about 0.1). (Held-out
    # trousers fail at this budget: they are classified and rotated confidently.)
    assert average_precision(y_out, s) > 2 * y_out.mean(), average_precision(y_out, s)
    assert roc_auc_score(y_out, -s) > 0.7


@pytest.mark.slow
def test_holdout_benchmark_smoke(data_home, tmp_path):
    table, rows = _testing.run_benchmark(
        "rotaux_holdout.py", data_home, tmp_path, "--held-out", "8", "--seeds", "0", "1",
        "--n-train", "10", "--n-test", "100", "--epochs", "1", "--batch-size", "32")
    assert {r["variant"] for r in rows} == {"lam=0 MSP", "lam=0 ODIN", "lam=0.5 MSP",
                                            "lam=0.5 ODIN", "lam=0.5 MSP*rotation"}
    assert len(rows) == 2 * 5 and {r["held_out"] for r in rows} == {"8"}
    assert all(0 <= float(r["ap"]) <= 1 and 0 <= float(r["auroc"]) <= 1 for r in rows)
    assert "lam=0 MSP (reference)" in table and "AP x 100" in table


# ------------------------------------------------------------------ tabular (GOAD) defaults
def test_transformation_log_likelihood_is_goads_score_without_saturation():
    from skood._scoring import transformation_log_likelihood

    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(5, 7, 5, generator=gen)
    logp = torch.log_softmax(logits.double(), dim=2)
    idx = torch.arange(5)
    goad = logp[idx, :, idx].mean(0)  # (1/K) sum_k log P(k | T_k x)
    torch.testing.assert_close(transformation_log_likelihood(logits), -torch.log(-goad))
    # confident samples: log-softmax rounds to 0 for both, the score still ranks them
    sure = torch.zeros(3, 2, 3)
    sure[:, 0] = 100 * torch.eye(3)
    sure[:, 1] = 50 * torch.eye(3)
    assert torch.equal(torch.log_softmax(sure, 2)[idx[:3], :, idx[:3]].sum(0), torch.zeros(2))
    s = transformation_log_likelihood(sure)
    assert s[0] > s[1] + 40
    with pytest.raises(ValueError, match="shape"):
        transformation_log_likelihood(torch.zeros(3, 2, 4))


def test_goad_affine_maps():
    maps = RandomAffineMaps(6, 5, seed=0, identity_first=False, out_dim=3, bias=False)
    assert maps.weight.shape == (6, 5, 3) and torch.equal(maps.bias, torch.zeros(6, 3))
    x = torch.randn(4, 5)
    every = maps.all_maps(x)
    assert every.shape == (6, 4, 3)
    for k in range(6):
        torch.testing.assert_close(every[k], maps(x, k))
        torch.testing.assert_close(every[k], x @ maps.weight[k])
    # the default draw is unchanged (DistillNeg's and the "shifted" family's maps)
    old = RandomAffineMaps(4, 5, seed=3)
    g = torch.Generator().manual_seed(3)
    W = torch.randn(4, 5, 5, generator=g) / 5 ** 0.5
    b = torch.randn(4, 5, generator=g)
    torch.testing.assert_close(old.weight[1:], W[1:])
    torch.testing.assert_close(old.bias[1:], b[1:])
    with pytest.raises(ValueError, match="identity_first"):
        RandomAffineMaps(2, 5, out_dim=3)


def test_unlabelled_tabular_default_is_goads_score(blobs):
    X, X_test, y_test = blobs
    det = tiny().fit(X)
    maps = det.model_.affine_maps
    assert det.scoring_ == "rotation-centres"
    assert maps.weight.shape == (64, 8, 8) and torch.equal(maps.weight[0], torch.eye(8))
    assert det.model_.trunk.out_features == 64
    # the centres are the training rows' mean features per map; the score is GOAD's
    model = det.model_
    Xs = torch.from_numpy(((X - det.feature_mean_) / det.feature_scale_).astype(np.float32))
    with torch.no_grad():
        z = model.aux_features_all(Xs)
        torch.testing.assert_close(model.centres, z.mean(1), rtol=1e-4, atol=1e-4)
        Zt = torch.from_numpy(((X_test - det.feature_mean_) / det.feature_scale_)
                              .astype(np.float32))
        zt = model.aux_features_all(Zt)
        d = ((zt[:, :, None] - model.centres[None, None]) ** 2).sum(-1)  # (K, n, K)
        logp = torch.log_softmax(-d.double(), dim=2)
        idx = torch.arange(64)
        goad = logp[idx, :, idx].mean(0)
    s = det.score_samples(X_test)
    assert roc_auc_score(y_test, s) > 0.9
    # the same ranking as GOAD's sum of log-probabilities wherever that does not round to 0
    ok = goad.numpy() < -1e-6
    assert ok.sum() > 20
    assert stats_spearman(s[ok], goad.numpy()[ok]) > 0.99
    # the other scorers of the same network
    for scoring in ("rotation", "rotation-loglik"):
        assert det.score_samples_by(X_test, scoring).shape == (240,)


def stats_spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def test_old_and_goad_settings_are_reachable(blobs):
    X, X_test, _ = blobs
    old = tiny(n_affine_maps=8, mlp_width=256, scoring="rotation").fit(X)  # skood 0.1's
    maps = old.model_.affine_maps
    assert old.scoring_ == "rotation" and maps.weight.shape == (8, 8, 8)
    assert old.model_.trunk.out_features == 256
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in old.model_.modules())
    goad = tiny(affine_family="goad", affine_dim=16, n_affine_maps=32).fit(X)  # GOAD's
    maps = goad.model_.affine_maps
    assert maps.weight.shape == (32, 8, 16) and not maps.bias.any()
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in goad.model_.modules())
    for det in (old, goad):
        again = pickle.loads(pickle.dumps(det))
        np.testing.assert_array_equal(again.score_samples(X_test), det.score_samples(X_test))


@pytest.mark.parametrize("seed", [0])
def test_adbench_cardio_unlabelled(data_home, seed):
    """Contaminated training rows (the T-ind protocol): 64 maps and GOAD's centre score find
    the anomalies that skood 0.1's 8 maps and mean confidence missed (AUROC 57 there)."""
    from skood.datasets import load_adbench, tabular_split

    X, y = load_adbench("6_cardio", data_home)
    X_tr, X_te, _, y_te = tabular_split(X, y, protocol="inductive", random_state=seed)
    s = RotAuxMSPDetector(device="cpu", random_state=seed).fit(X_tr).score_samples(X_te)
    assert roc_auc_score(y_te, -s) > 0.85


def test_wide_rows_get_projected_shifted_maps():
    X = np.random.RandomState(0).normal(size=(40, 300))
    det = tiny(max_epochs=1).fit(X)
    maps = det.model_.affine_maps
    assert maps.weight.shape == (64, 300, 256) and maps.bias.any()
    assert np.isfinite(det.score_samples(X[:5])).all()


def test_dropout_before_the_heads(labelled):
    X, y, X_test, _ = labelled
    det = tiny(dropout=0.3).fit(X, y)
    assert isinstance(det.model_.dropout, torch.nn.Dropout) and det.model_.dropout.p == 0.3
    np.testing.assert_array_equal(det.score_samples(X_test), det.score_samples(X_test))
    assert isinstance(tiny().fit(X, y).model_.dropout, torch.nn.Identity)
    with pytest.raises(ValueError, match="dropout"):
        tiny(dropout=1.0).fit(X, y)


@pytest.mark.parametrize("kind", ["tabular", "images"])
def test_dropout_is_seeded_by_random_state(labelled, digits_holdout, kind):
    """Dropout's masks come from the fit's seed: two fits with one ``random_state`` score
    alike (another seed does not), and the caller's global torch RNG is neither read nor
    advanced."""
    X, y = labelled[:2] if kind == "tabular" else (digits_holdout[0][:200], digits_holdout[1][:200])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = tiny(dropout=0.3).fit(X, y).score_samples(X[:50])
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(321)  # another global state: the same scores
    np.testing.assert_array_equal(tiny(dropout=0.3).fit(X, y).score_samples(X[:50]), a)
    assert not np.array_equal(tiny(dropout=0.3, random_state=1).fit(X, y).score_samples(X[:50]),
                              a)


def test_centres_over_a_seeded_subset_of_10000_rows_beyond_10000():
    from skood._detectors.rotaux_msp import _SEED_STREAMS
    from skood._scoring import bank_subset
    from skood._utils import fit_seed, seed_stream, to_model_input

    X = np.random.RandomState(0).normal(size=(10_300, 4)).astype(np.float32)
    det = RotAuxMSPDetector(max_epochs=1, max_steps=1, batch_size=64, device="cpu",
                            random_state=0).fit(X)
    keep = bank_subset(len(X), "auto", seed_stream(fit_seed(0), "centres", _SEED_STREAMS))
    assert len(keep) == 10_000
    rows = det._validate_input(X, reset=False)[keep]
    model = copy.deepcopy(det.model_)
    model.set_centres([to_model_input(rows, "cpu")])
    torch.testing.assert_close(model.centres, det.model_.centres)
