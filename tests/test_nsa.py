"""NSADetector: scorers, whitening, ensemble, history, real data."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV

from skood import _testing
from skood._detectors.nsa import (
    NSADetector,
    SimCLRNet,
    SimSiamNet,
    center_cosine,
    minmax_ensemble,
)
from skood._nn.heads import SimCLRModel, SimSiamModel
from skood._nn.losses import simsiam_loss
from skood._scoring import covariance_chunked, fit_whitening, nearest_cosine, whiten
from skood._utils import to_model_input

tiny = partial(_testing.tiny, "NSADetector")


@pytest.fixture(scope="module")
def fitted(fitted_tiny):
    return fitted_tiny("NSADetector")


@pytest.fixture(scope="module")
def fitted_images(digit_images):
    return tiny(batch_size=32, ensemble=True).fit(digit_images[0])


# ------------------------------------------------------------------ scorers
def test_auto_scorer_on_tabular_rows(fitted, blobs):
    s = fitted.score_samples(blobs[1])
    assert fitted.terms_ == [(0, "ccos-mah")]  # "auto" on tabular rows
    # a centre term keeps the (whitened) mean, no per-row data
    assert fitted.train_store_ is None and fitted.banks_[0].dim() == 1
    # scores are negated angles, in [-pi, 0]
    assert (s <= 0).all() and (s >= -np.pi).all()


@pytest.mark.parametrize("scoring", ["kcos-mah", "kcos"])
def test_knn_training_scores_are_leave_one_out(blobs, scoring):
    X_train = blobs[0]
    det = tiny(scoring=scoring, n_neighbors=1).fit(X_train)
    np.testing.assert_allclose(det.score_samples(X_train), det.train_scores_)
    # with self-matches every training angle would be 0; leave-one-out ones are not
    assert (det.train_scores_ < -1e-3).all()
    # the leave-one-out angle is the angle to the nearest *other* training sample
    # the bank: the training features (whitened for kcos-mah), all rows
    f = det.banks_[0]
    assert f.shape[0] == len(X_train) and det.train_store_ is not None
    f = torch.nn.functional.normalize(f, dim=1)
    cos = f @ f.T
    cos.fill_diagonal_(-2.0)
    expected = -np.arccos(np.clip(cos.max(1).values.double().numpy(), -1, 1))
    np.testing.assert_allclose(det.train_scores_, expected, atol=2e-3)


def test_scoring_variants_and_methods(blobs):
    X_train, X_test, y_test = blobs
    for kw in ({"scoring": "ccos"}, {"method": "simclr"}, {"ensemble": True},
               {"normalize_features": False, "normalize_projection": False},
               {"whitening": "eigen-clip"}):
        s = tiny(**kw).fit(X_train).score_samples(X_test)
        assert np.isfinite(s).all() and s.dtype == np.float64, kw
        assert roc_auc_score(y_test, s) > 0.6, kw


def test_normalisation_switches_reach_the_model(blobs):
    det = tiny(normalize_features=False, normalize_projection=False).fit(blobs[0][:60])
    assert not det.model_.normalize_features and not det.model_.normalize_projection
    clr = tiny(method="simclr", temperature=0.3).fit(blobs[0][:60])
    assert clr.model_.normalize_features and not hasattr(clr.model_, "predictor")


def test_auto_method_and_scorer_follow_the_data(fitted, fitted_tiny):
    # tabular rows: the paper's SimSiam (a predictor), scored by the angle to the centre
    assert fitted._resolved_method() == "simsiam" and hasattr(fitted.model_, "predictor")
    assert fitted.terms_ == [(0, "ccos-mah")]
    # images: SimCLR (no predictor), k-Cos without whitening
    img = fitted_tiny("NSADetector", "images")
    assert img._resolved_method() == "simclr" and not hasattr(img.model_, "predictor")
    assert img.terms_ == [(0, "kcos")] and img.whitening_ == [None]


def test_auto_learning_rate_follows_the_data(fitted, fitted_tiny):
    """lr="auto": the paper's 1e-4 for the image encoder, 1e-3 for the tabular MLP; the
    optimiser starts at it (the first epoch's lr before the cosine decay)."""
    assert fitted.lr == "auto" and fitted._resolved_lr() == 1e-3
    assert fitted.history_["encoder"][0, "event_lr"] == pytest.approx(1e-3)
    img = fitted_tiny("NSADetector", "images")
    assert img._resolved_lr() == 1e-4
    assert img.history_["encoder"][0, "event_lr"] == pytest.approx(1e-4)
    own = tiny(lr=5e-3, max_epochs=1).fit(np.random.RandomState(0).normal(size=(40, 3)))
    assert own.history_["encoder"][0, "event_lr"] == pytest.approx(5e-3)
    assert "lr='auto' (here 0.001)" in fitted._lower_lr_hint()
    with pytest.raises(ValueError, match="lr"):
        tiny(lr="fast").fit(np.zeros((20, 3)))


def test_paper_presets_keep_the_paper_setting():
    for name, method in (("paper", "simsiam"), ("paper-simclr", "simclr")):
        p = NSADetector.from_preset(name).get_params()
        assert (p["method"], p["scoring"], tuple(p["crop_scale"])) == (method, "kcos-mah",
                                                                     (0.08, 1.0))
        assert p["n_neighbors"] == 1  # the paper's nearest-neighbour score


@pytest.mark.parametrize("method", ["simclr", "simsiam"])
def test_batchnorm_statistics_are_those_of_clean_samples(digit_images, method):
    # 120 images in batches of 40: the mean of the batch means is the mean over all
    train = digit_images[0]
    det = tiny(method=method, batch_size=40).fit(train)
    x = to_model_input(torch.as_tensor(train)[:, None], "cpu")
    with torch.no_grad():
        h = det.encoder_.features[0](x)  # the first convolution, before its BatchNorm
    bn = det.encoder_.features[1]
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)


def test_ensemble_terms_and_ranges(fitted_images, digit_images):
    det = fitted_images
    enc = [n for n in det.layer_names_ if n.startswith("encoder.")]
    head = [n for n in det.layer_names_ if n.startswith("projector.")]
    # three CNN stages; SimCLR's head (the default on images): ReLU and the last Linear
    assert det._resolved_method() == "simclr"
    assert len(enc) == 3 and len(head) == 2
    assert len(det.terms_) == 10
    for i, t in det.terms_:
        assert t in (("kcos", "kcos-mah") if i < 3 else ("ccos", "ccos-mah"))
    # training terms span [0, 1] each, so -train_scores_ lie in [0, n_terms]
    assert det.train_scores_.max() <= 0 and det.train_scores_.min() >= -len(det.terms_)
    s = det.score_samples(digit_images[1])
    assert roc_auc_score(digit_images[2], s) > 0.8


def test_bad_parameters():
    X = np.random.RandomState(0).normal(size=(20, 3))
    for kw, match in [({"method": "byol"}, "method"), ({"scoring": "gde"}, "scoring"),
                      ({"temperature": 0.0}, "temperature"),
                      ({"normalize_features": "yes"}, "normalize_features"),
                      ({"crop_scale": (0.5, 1.5)}, "crop_scale must be two finite numbers"),
                      ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
                      ({"crop_scale": (0.9, 0.5)}, "crop_scale"),
                      ({"crop_scale": (0.5,)}, "crop_scale"),
                      ({"crop_scale": [0.5, float("nan")]}, "crop_scale")]:
        with pytest.raises(ValueError, match=match):
            tiny(**kw).fit(X)


def test_grid_search_over_scoring(one_class_folds):
    X, y, folds = one_class_folds
    grid = {"scoring": ["kcos", "ccos-mah"], "normalize_features": [True, False]}
    gs = GridSearchCV(tiny(), grid, scoring="roc_auc", cv=folds, error_score="raise").fit(X, y)
    scores = dict(zip(map(str, gs.cv_results_["params"]), gs.cv_results_["mean_test_score"],
                      strict=True))
    assert gs.best_score_ > 0.9 and gs.best_params_["scoring"] == "ccos-mah"
    # both switches reach the model: the kcos candidates differ in normalize_features
    kcos = [v for k, v in scores.items() if "'kcos'" in k]
    assert len(kcos) == 2 and kcos[0] != kcos[1], scores


def test_history(fitted):
    h = fitted.history_["encoder"]
    assert len(h) == 2 and np.isfinite(h[:, "train_loss"]).all()
    assert h[-1, "event_lr"] < h[0, "event_lr"]  # cosine decay


# --------------------------------------------------------- building blocks
def test_simsiam_loss_stop_gradient():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    loss = simsiam_loss(p, p, z, z)
    loss.backward()
    assert z.grad is None and p.grad is not None
    assert simsiam_loss(z, z, z, z).item() == pytest.approx(-1.0)


def test_whitening_stable_when_n_below_d():
    X = np.random.RandomState(0).normal(size=(10, 50))
    for method in ("ledoit-wolf", "eigen-clip"):
        mean, W = fit_whitening(X, method=method)
        u = whiten(X, mean, W)
        assert torch.isfinite(u).all() and W.shape == (50, 50)
    Y = np.random.RandomState(1).normal(size=(2000, 5)) @ np.diag([1, 2, 3, 4, 5])
    mean, W = fit_whitening(Y, method="eigen-clip")  # exact whitening of the sample covariance
    np.testing.assert_allclose(np.cov(whiten(Y, mean, W).numpy().T, bias=True), np.eye(5),
                               atol=1e-4)
    mean, W = fit_whitening(Y)  # Ledoit-Wolf: shrunk towards the average variance
    np.testing.assert_allclose(np.cov(whiten(Y, mean, W).numpy().T), np.eye(5), atol=0.1)


@pytest.mark.parametrize("n, p", [(10, 50), (2000, 5), (1000, 1), (3, 2), (3001, 64)])
def test_covariance_chunked_matches_sklearn(n, p):
    from sklearn.covariance import LedoitWolf, empirical_covariance

    rs = np.random.RandomState(n + p)
    X = rs.normal(size=(n, p)) @ rs.normal(size=(p, p)) + 3.0
    ref = LedoitWolf(store_precision=False).fit(X)
    for data in (X, torch.tensor(X)):
        before = np.array(data, copy=True)
        mean, cov = covariance_chunked(data, "ledoit-wolf", chunk_size=37)
        np.testing.assert_array_equal(np.asarray(data), before)  # not centred in place
        np.testing.assert_allclose(mean, ref.location_, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(cov, ref.covariance_, rtol=1e-10, atol=1e-12)
        _, emp = covariance_chunked(data, "empirical", chunk_size=7)
        np.testing.assert_allclose(emp, empirical_covariance(X), rtol=1e-10, atol=1e-12)


def test_covariance_chunked_reads_only_blocks_of_rows():
    class Rows:
        """Array-like that records how many rows each read asks for."""

        def __init__(self, a):
            self.a, self.shape, self.reads = a, a.shape, []

        def __getitem__(self, sl):
            block = self.a[sl]
            self.reads.append(len(block))
            return block

    X = Rows(np.random.RandomState(0).normal(size=(1000, 8)).astype(np.float32))
    mean, W = fit_whitening(X, chunk_size=64)
    assert max(X.reads) == 64 and sum(X.reads) == 2 * 1000  # two passes, blocks only
    mean_all, W_all = fit_whitening(X.a)
    torch.testing.assert_close(W, W_all)
    with pytest.raises(ValueError, match="method must be"):
        covariance_chunked(X.a, "shrunk")
    with pytest.raises(ValueError, match="method must be"):
        fit_whitening(X.a, method="empirical")


def test_nearest_cosine_skips_self_and_minmax():
    X = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    np.testing.assert_allclose(nearest_cosine(X, X).numpy(), 1.0, atol=1e-6)
    loo = nearest_cosine(X, X, X, X).numpy()
    assert loo[0] < 1 and loo[2] < 0.2
    s = minmax_ensemble([np.array([0.0, 2.0]), np.array([1.0, 3.0])], [(0, 2), (1, 5)])
    np.testing.assert_allclose(s, [0.0, 1.5])
    with pytest.raises(ValueError, match="2 score arrays but 1 ranges"):
        minmax_ensemble([np.zeros(2), np.zeros(2)], [(0, 1)])


class _BatchNormFirst(torch.nn.Module):
    """An encoder whose first layer is BatchNorm: its running mean shows what input set it."""

    out_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.bn, self.lin = torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.lin(self.bn(x))


def _far_views(x, g):
    return x + 10.0 + torch.randn(x.shape, generator=g)


@pytest.mark.parametrize("net_cls", [SimSiamNet, SimCLRNet])
def test_nsa_nets_train_and_recompute_batchnorm_on_the_clean_rows(net_cls):
    """Both nets train on augmented views; precise BN then sees the unaugmented rows."""
    torch.manual_seed(0)
    X = torch.randn(64, 3) * 2 + 5
    model = (SimSiamModel(_BatchNormFirst(), projection_dim=8, predictor_dim=4)
             if net_cls is SimSiamNet else SimCLRModel(_BatchNormFirst(), projection_dim=8))
    net = net_cls(model, augment=_far_views, max_epochs=2, batch_size=16, lr=0.01, seed=0,
                  device="cpu")
    net.fit(X)
    assert np.isfinite(net.history[:, "train_loss"]).all()
    # four batches of 16 clean rows, averaged: the mean of X (the views' mean is near 15)
    torch.testing.assert_close(model.encoder.bn.running_mean, X.mean(0), rtol=1e-5, atol=1e-5)


def test_center_cosine():
    """Cosine to one centre, block by block; the centre's scale and a zero row do not matter."""
    rng = np.random.RandomState(0)
    X, c = rng.normal(size=(10, 4)).astype(np.float32), rng.normal(size=4)
    want = X @ c / (np.linalg.norm(X, axis=1) * np.linalg.norm(c))
    got = center_cosine(X, 3 * c, chunk_size=3)
    assert got.dtype == torch.float32 and got.shape == (10,)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    assert center_cosine(np.zeros((1, 4), np.float32), c).item() == 0.0
    assert center_cosine(np.zeros((0, 4), np.float32), c).shape == (0,)


# ------------------------------------------------------------------ real data
@pytest.mark.slow
def test_one_class_fashion_mnist_beats_chance(fashion_auroc):
    auroc = fashion_auroc(NSADetector(max_epochs=5, random_state=0, device="cpu"))
    assert auroc > 0.7, auroc


def test_normalisation_benchmark_smoke(data_home, tmp_path):
    table, runs = _testing.run_benchmark(
        "nsa_normalisation.py", data_home, tmp_path, "--classes", "1", "--n-train", "30",
        "--epochs", "1", "--seeds", "0", "1", "--n-test", "100", "--device", "cpu",
        "--scoring", "kcos-mah", "kcos", "--reference", "--n-jobs", "2")
    assert "norm on" in table and "norm off" in table and "10%" in table and "**mean**" in table
    assert "Scorer kcos-mah:" in table and "Scorer kcos:" in table and "untrained" in table
    # seeds x pollutions x (variants x scorers + the untrained reference once per scorer)
    assert len(runs) == 2 * 2 * (2 * 2 + 2)
    assert {r["setting"] for r in runs} == {f"{s}, pollution {p}" for s in ("kcos-mah", "kcos")
                                            for p in ("0%", "10%")}
