"""DUMDetector: the PoE objective, variances, the sphere lift, encoders, real data."""

from __future__ import annotations

import pickle
from functools import partial

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from torch import nn

from skood import _testing
from skood._detectors._dum_parts import (
    FeatureView,
    dum_set_loss,
    product_of_experts,
    variance_norm,
    whitening_lift,
)
from skood._detectors.dum import DUMDetector
from skood._nn.heads import ContrastiveModel

tiny = partial(_testing.tiny, "DUMDetector")


@pytest.fixture(scope="module")
def fitted(fitted_tiny):
    return fitted_tiny("DUMDetector")


# ----------------------------------------------------------------- building blocks
def test_product_of_experts_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(6, 3, generator=g), 3 * torch.randn(6, 3, generator=g)
    mean, var = product_of_experts(mu, lv, dim=0)
    w = torch.exp(-lv.double())
    torch.testing.assert_close(mean.double(), (w * mu).sum(0) / w.sum(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var.double(), 1 / w.sum(0), rtol=1e-5, atol=1e-6)


def test_set_loss_literal_and_infonce():
    z = torch.rand(32, 5)
    lv = torch.zeros(32, 5, requires_grad=True)
    loss = dum_set_loss(z, lv, set_size=4)
    a = torch.nn.functional.normalize(z.view(4, 8, 5)[:, :4].mean(1), dim=1)
    p = torch.nn.functional.normalize(z.view(4, 8, 5).mean(1), dim=1)
    assert loss.item() == pytest.approx(-(a * p).sum(1).mean().item(), abs=1e-6)
    loss.backward()
    assert lv.grad.abs().sum() > 0  # the variances enter the objective (m > 1)
    nce = dum_set_loss(z, lv, set_size=4, objective="infonce", temperature=0.07)
    assert np.isfinite(nce.item()) and nce.item() >= 0
    with pytest.raises(ValueError, match="m > 1"):
        dum_set_loss(z, lv, set_size=1)


def test_variance_norms():
    lv = torch.log(torch.tensor([[1.0, 4.0], [2.0, 2.0]]))
    np.testing.assert_allclose(variance_norm(lv, "l2"), [17 ** 0.5, 8 ** 0.5])
    np.testing.assert_allclose(variance_norm(lv, "trace"), [5.0, 4.0])
    np.testing.assert_allclose(variance_norm(lv, "logdet"), [np.log(4), np.log(4)])


# ----------------------------------------------------------------- variances
def test_scores_are_minus_the_norm_of_the_variance(fitted, blobs):
    X_test = blobs[1]
    s = fitted.score_samples(X_test)
    var = fitted.predict_variance(X_test)  # in the space of g: 8 features lifted to S^8
    assert fitted.embedding_dim_ == 9 and var.shape == (240, 9) and (var > 0).all()
    np.testing.assert_allclose(-np.linalg.norm(var, axis=1), s, rtol=1e-5)
    lo, hi = np.exp(-fitted.max_log_var), np.exp(fitted.max_log_var)
    assert (var >= lo * 0.999).all() and (var <= hi * 1.001).all()  # bounded log-variance


def test_sphere_lift_keeps_distance_to_the_centre_as_angle(fitted, blobs):
    g = fitted.encoder_
    z = g(torch.as_tensor(fitted._validate_input(blobs[1], reset=False)))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(240))
    angle = torch.arccos(z[:, -1].clamp(-1, 1))  # angle to the pole (0, ..., 0, 1)
    assert angle[200:].min() > angle[:200].median()  # the shifted blob lies far from it


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_trained_dum_gives_outliers_large_variance(blobs, seed):
    # Default budget (100 epochs). Outliers must get the LOWER score_samples
    # (larger variance): an earlier version without the sphere lift ranked them
    # as the most normal rows (AUROC 0.003 on these data).
    X_train, X_test, y_test = blobs
    det = tiny(dum_epochs=100, random_state=seed).fit(X_train)  # inductive
    s = det.score_samples(X_test)
    assert s[y_test == -1].mean() < s[y_test == 1].mean()
    assert roc_auc_score(y_test, s) > 0.9  # y_test: +1 inlier, so higher score = inlier
    X = np.vstack([X_train, X_test[200:]])  # transductive: fit on contaminated rows
    det = tiny(dum_epochs=100, random_state=seed).fit(X)
    assert roc_auc_score(np.r_[np.ones(400), np.zeros(40)], det.train_scores_) > 0.9


def test_transductive_protocol_without_second_pass(blobs):
    X = np.vstack([blobs[0], blobs[1][200:]])
    det = tiny(contamination=0.1)
    labels = det.fit_predict(X)
    np.testing.assert_array_equal(labels, np.where(det.train_scores_ >= det.offset_, 1, -1))
    np.testing.assert_array_equal(det.train_scores_, det.score_samples(X))
    np.testing.assert_array_equal(labels, det.predict(X))
    assert abs(np.mean(labels == -1) - 0.1) <= 0.01


@pytest.mark.parametrize("kw", [{"objective": "infonce"}, {"objective": "infonce", "set_size": 4},
                                {"set_size": 8}, {"score_norm": "trace"},
                                {"score_norm": "logdet"}, {"augment": False},
                                {"normalize_means": False}, {"covariance": "diagonal"},
                                {"tabular_scaling": "standard", "n_layers": 0}])
def test_variants_run(blobs, kw):
    det = tiny(**kw).fit(blobs[0])
    assert np.isfinite(det.score_samples(blobs[1])).all()
    assert np.isfinite(det.history_["dum"][:, "train_loss"]).all()


def test_bad_parameters(blobs):
    with pytest.raises(ValueError, match="needs at least 8 training samples; got n_samples = 3"):
        tiny().fit(np.ones((3, 8)))  # one set of 2m with the default m = 4
    tiny(set_size=None).fit(np.random.RandomState(0).rand(4, 8))  # m = 2: one set of 4
    X = blobs[0][:40]
    with pytest.raises(ValueError, match="set_size"):
        tiny(set_size=1).fit(X)  # m = 1 is trivial (paper section 3)
    with pytest.raises(ValueError, match="needs 32 samples per minibatch"):
        tiny(objective="infonce", set_size=None, batch_size=16).fit(X)
    with pytest.raises(ValueError, match="needs 16 samples per minibatch"):
        tiny(set_size=8, batch_size=8).fit(X)
    with pytest.raises(ValueError, match="score_norm"):
        tiny(score_norm="max").fit(X)
    with pytest.raises(ValueError, match="encoder is for image input"):
        tiny(encoder=nn.Flatten()).fit(X)
    for backbone in ("cnn", "mlp"):  # tabular g is the identity: no encoder to choose
        with pytest.raises(ValueError, match=f"backbone='{backbone}' is for images"):
            tiny(backbone=backbone).fit(X)


def test_every_step_sees_whole_sets_of_one_size(blobs):
    # 70 rows, batch 32, m = 4: batches of 32, 32 and 6 rows; the last holds no whole set of
    # 2m = 8 and is dropped instead of being trained as a set of m = 3
    det = tiny(batch_size=32, dum_epochs=2).fit(blobs[0][:70])
    sizes = [[b["train_batch_size"] for b in e["batches"]] for e in det.history_["dum"]]
    assert sizes == [[32, 32]] * 2
    # a last batch of 14 rows trains its one whole set of 8
    det = tiny(batch_size=32, dum_epochs=1).fit(blobs[0][:78])
    assert [b["train_batch_size"] for b in det.history_["dum"][-1]["batches"]] == [32, 32, 14]
    # set_size=None (one set per batch of 32, m = 16): a partial batch is dropped
    det = tiny(batch_size=32, set_size=None, dum_epochs=1).fit(blobs[0][:78])
    assert [b["train_batch_size"] for b in det.history_["dum"][-1]["batches"]] == [32, 32]
    # fewer rows than a batch: one batch of them all
    det = tiny(batch_size=64, dum_epochs=1, set_size=None).fit(blobs[0][:40])
    assert [b["train_batch_size"] for b in det.history_["dum"][-1]["batches"]] == [40]


def test_grid_search(one_class_folds):
    X, y, folds = one_class_folds
    grid = {"objective": ["literal", "infonce"], "set_size": [4, 8]}
    gs = GridSearchCV(tiny(), grid, scoring="roc_auc", cv=folds, error_score="raise").fit(X, y)
    scores = gs.cv_results_["mean_test_score"]
    # both parameters reach the model: four different candidates, finite scores
    assert np.isfinite(scores).all() and len(set(scores)) == 4, scores


def test_images_get_a_simclr_encoder(fitted_tiny, digit_images):
    det = tiny(batch_size=32, embedding="whitened").fit(digit_images[0])
    assert "encoder" in det.history_ and det.embedding_dim_ == 129  # representation + pole
    assert det.embedding_ == "whitened"
    view, (lin, lift) = det.encoder_  # whitened and lifted
    assert isinstance(view, FeatureView) and lin.weight.shape == (128, 128)
    for kw, dim in (({"embedding": "projection"}, 128), ({"embedding": "features"}, 128)):
        other = tiny(batch_size=32, **kw).fit(digit_images[0])
        assert other.embedding_dim_ == dim
        assert np.isfinite(other.score_samples(digit_images[1])).all()


def test_auto_embedding_whitens_only_with_more_images_than_dimensions(digit_images):
    """120 training images and a 128-d representation: the covariance is singular, so
    "auto" takes the projection; with 250 images it whitens (the result of "whitened")."""
    few = tiny(batch_size=32).fit(digit_images[0])
    assert few.embedding == "auto" and few.embedding_ == "projection"
    assert few.embedding_dim_ == 128 and isinstance(few.encoder_, ContrastiveModel)
    np.testing.assert_array_equal(
        few.score_samples(digit_images[1]),
        tiny(batch_size=32, embedding="projection").fit(digit_images[0])
        .score_samples(digit_images[1]))
    from skood.datasets import load_digits_images

    X, y = load_digits_images()
    many = X[np.isin(y, [0, 6])][:250]
    auto = tiny(batch_size=32).fit(many)
    assert auto.embedding_ == "whitened" and auto.embedding_dim_ == 129
    np.testing.assert_array_equal(
        auto.score_samples(digit_images[1]),
        tiny(batch_size=32, embedding="whitened").fit(many).score_samples(digit_images[1]))


class _Enc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.conv(x).mean(dim=(2, 3)))


def test_user_encoder_is_copied_frozen_and_never_modified(digit_images):
    X_train, X_test, _ = digit_images
    torch.manual_seed(0)
    enc = _Enc().train()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    det = tiny(encoder=enc, batch_size=64, dum_epochs=3).fit(X_train)
    assert "encoder" not in det.history_  # no SimCLR phase with a user encoder
    assert det.encoder_ is not enc and not det.encoder_.training
    assert enc.training  # the user's module keeps its mode and weights
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    for k, v in det.encoder_.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)  # frozen copy
    assert det.embedding_dim_ == 4 and np.isfinite(det.score_samples(X_test)).all()
    c = clone(det)
    assert c.encoder is not enc and isinstance(c.encoder, _Enc)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(det)).score_samples(X_test),
                                  det.score_samples(X_test))


def test_user_encoder_with_wrong_output(digit_images):
    with pytest.raises(ValueError, match=r"tensor \(N, d\)"):
        tiny(encoder=nn.Identity(), batch_size=64).fit(digit_images[0])
    with pytest.raises(ValueError, match="encoder failed"):
        tiny(encoder=nn.Linear(3, 2), batch_size=64).fit(digit_images[0])


def test_transductive_wbc_beats_chance(data_home):
    from skood.datasets import load_odds, tabular_split

    X, y = load_odds("wbc", data_home=data_home)
    X, _, y, _ = tabular_split(X, y, protocol="transductive")
    det = DUMDetector(random_state=0, device="cpu").fit(X)  # default budget: 100 epochs
    auroc = roc_auc_score(y, -det.train_scores_)  # y: 1 = anomaly
    assert auroc > 0.8, auroc  # chance is 0.5



def test_predict_variance_in_chunks_is_bit_identical(fitted_tiny, blobs, monkeypatch):
    """``predict_variance`` scores chunk by chunk (chunks of 256 rows here) with the bits of
    one pass over the store of all rows."""
    det = fitted_tiny("DUMDetector")
    X = np.concatenate([blobs[1], blobs[0]] * 4)
    whole = det._log_variance(det._validate_input(X, reset=False)).double().exp().numpy()
    monkeypatch.setattr(DUMDetector, "_score_chunk_rows", lambda self: 256)
    calls = []
    log_variance = DUMDetector._log_variance
    monkeypatch.setattr(DUMDetector, "_log_variance",
                        lambda self, Xs: calls.append(len(Xs)) or log_variance(self, Xs))
    np.testing.assert_array_equal(det.predict_variance(X), whole)
    assert len(calls) >= 3 and max(calls) <= 2 * 256


def test_covariance_auto_is_diagonal_on_tables_and_isotropic_on_images(fitted_tiny, blobs,
                                                                        digit_images):
    var = fitted_tiny("DUMDetector").predict_variance(blobs[1][:20])
    assert var.shape == (20, 9) and not np.allclose(var, var[:, :1])  # one per dimension
    var = fitted_tiny("DUMDetector", "images").predict_variance(digit_images[1][:20])
    assert np.allclose(var, var[:, :1])  # one per sample


def test_whitening_lift_maps_the_mahalanobis_distance_to_the_angle():
    rng = np.random.default_rng(0)
    f = torch.as_tensor(rng.normal(size=(500, 3)) @ np.array([[3.0, 0, 0], [2, 1, 0], [0, 0, 0.1]]),
                        dtype=torch.float32)
    g = whitening_lift(f, shrinkage=0.0)
    lin, lift = g
    u = lin(f).double()
    torch.testing.assert_close(u.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cov(u.T), torch.eye(3, dtype=torch.float64), atol=1e-3, rtol=0)
    assert lift.radius == pytest.approx(float(u.square().sum(1).mean().sqrt()), rel=1e-4)
    assert not any(p.requires_grad for p in g.parameters())
    x = torch.as_tensor(rng.normal(size=(50, 3)), dtype=torch.float32)
    d = f.double().mean(0) - x.double()
    maha = torch.einsum("ij,jk,ik->i", d, torch.linalg.inv(torch.cov(f.double().T)), d)
    angle = torch.arccos(g(x)[:, -1].double().clamp(-1, 1))
    assert np.corrcoef(np.argsort(np.argsort(maha.numpy())),
                       np.argsort(np.argsort(angle.numpy())))[0, 1] > 0.999
    # shrinkage keeps a rank-deficient covariance (more features than rows) finite
    g = whitening_lift(torch.as_tensor(rng.normal(size=(5, 20)), dtype=torch.float32))
    assert torch.isfinite(g(torch.zeros(2, 20))).all()


def test_tabular_scaling_whiten_by_default_minmax_in_the_paper_preset(blobs):
    X_train = blobs[0]
    det = tiny(dum_epochs=1, random_state=0).fit(X_train)
    lin, lift = det.encoder_  # whitening, then the lift
    Xs = det._validate_input(X_train, reset=False)
    u = lin(Xs).double()
    torch.testing.assert_close(torch.cov(u.T), torch.eye(8, dtype=torch.float64) / 1.1,
                               atol=0.05, rtol=0)  # shrunk by 0.1 x the mean eigenvalue
    paper = DUMDetector.from_preset("paper", backbone="auto", hidden_width=8, dum_epochs=1,
                                    random_state=0, device="cpu").fit(X_train)
    assert paper.tabular_scaling == "minmax"
    u = paper.encoder_.low + paper.encoder_.scale  # the standardised training maxima
    torch.testing.assert_close(u, Xs.max(dim=0).values)


@pytest.mark.slow
def test_whitened_rows_beat_minmax_on_musk(data_home):
    # ADBench musk, normal-only training (the T-clean protocol): on min-max
    # rows the variances fitted on normal rows give the anomalies, which lie
    # beyond every training row, the smallest variances (measured AUROC 1.3);
    # whitened, the variances follow the Mahalanobis distance (100.0).
    from skood.datasets import load_adbench, tabular_split

    X, y = load_adbench("25_musk", data_home)
    X_tr, X_te, y_tr, y_te = tabular_split(X, y, protocol="inductive", random_state=0)
    X_tr = X_tr[y_tr == 0]
    auc = {s: roc_auc_score(y_te, -DUMDetector(tabular_scaling=s, random_state=0, device="cpu")
                            .fit(X_tr).score_samples(X_te)) for s in ("whiten", "minmax")}
    assert auc["whiten"] > 0.9 and auc["minmax"] < 0.5, auc


# ---------------------------------------------------------------- DUM's parts (_dum_parts)


def test_dum_variance_mlp_starts_at_equal_variances_and_stays_bounded():
    from skood._detectors._dum_parts import DUMVarianceMLP

    f1 = DUMVarianceMLP(3, width=8, n_layers=2, max_log_var=2.0)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(f1(z), torch.zeros(5, 3))  # r starts at zero: sigma^2 = 1
    per_dim = DUMVarianceMLP(3, width=8, isotropic=False)
    assert per_dim.net[-1].out_features == 3 and f1.net[-1].out_features == 1
    with torch.no_grad():
        f1.net[-1].bias.fill_(1e6)
    assert torch.allclose(f1(z), torch.full((5, 3), 2.0))  # b tanh(r / b) -> b
    assert f1(z).le(2.0).all()


def test_sphere_lift_and_affine_map_by_hand():
    from skood._detectors._dum_parts import AffineMap, SphereLift

    lift = SphereLift(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]),
                      torch.tensor([0.0, 1.0]), radius=1.0)
    # u = ([7, 5] - [1, 0]) / [2, 1] - [0, 1] = [3, 4]; g = [3, 4, 1] / sqrt(26)
    out = lift(torch.tensor([[7.0, 5.0]]))
    torch.testing.assert_close(out, torch.tensor([[3.0, 4.0, 1.0]]) / 26 ** 0.5)
    pole = lift(torch.tensor([[1.0, 1.0]]))  # the centre maps to the pole
    torch.testing.assert_close(pole, torch.tensor([[0.0, 0.0, 1.0]]))
    aff = AffineMap(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(aff(torch.tensor([[1.0, 1.0]])), torch.tensor([[4.0, 0.0]]))
    assert list(aff.parameters()) == [] and list(lift.parameters()) == []  # buffers only


def test_whitening_lift_skeleton_loads_a_fitted_lift():
    from skood._detectors._dum_parts import whitening_lift, whitening_lift_skeleton

    feats = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)) * 3 + 1
    fitted = whitening_lift(feats)
    skeleton = whitening_lift_skeleton(3)
    skeleton.load_state_dict(fitted.state_dict())
    skeleton[1].radius = fitted[1].radius  # a plain attribute, saved with the detector
    torch.testing.assert_close(skeleton(feats), fitted(feats))
    torch.testing.assert_close(fitted(feats).norm(dim=1), torch.ones(40))


def test_unit_embedding_projects_onto_the_sphere():
    from skood._detectors._dum_parts import UnitEmbedding

    g = UnitEmbedding(nn.Linear(4, 3))
    out = g(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)) * 5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(6))


def test_dum_net_set_size_and_loss():
    from torch.nn import functional as F

    from skood._detectors._dum_parts import DUMVarianceMLP, dum_set_loss
    from skood._detectors.dum import DUMNet

    def make(**kw):
        return DUMNet(DUMVarianceMLP(3, width=8), embed=lambda x: F.normalize(x, dim=1),
                      device="cpu", **kw)

    assert make(batch_size=16).resolved_set_size() == 8  # literal: one set per batch
    assert make(batch_size=16, set_size=4).resolved_set_size() == 4
    assert make(batch_size=16, set_size=4).iterator_train__min_batch == 8  # one whole set
    assert make(objective="infonce", set_size=3).iterator_train__min_batch == 12  # two sets
    net = make(batch_size=16, set_size=2).initialize()
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    z = F.normalize(x, dim=1)
    with torch.no_grad():
        expected = dum_set_loss(z, net.module_(z), 2)
        assert net.compute_loss(x, None).item() == pytest.approx(expected.item())
        # fewer rows than one set: a zero loss that keeps the graph
        assert net.compute_loss(x[:3], None).item() == 0.0
