"""SemSADDetector: neighbourhoods, leave-one-out training scores, parameters, real data."""

from __future__ import annotations

import math
import pickle
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV

from skood import SemSADDetector, _testing
from skood._detectors.semsad import SemSADNegative, SemSADPositive, gamma_weighted_pair_loss

tiny = partial(_testing.tiny, "SemSADDetector")


@pytest.fixture(scope="module")
def fitted(fitted_tiny):
    return fitted_tiny("SemSADDetector")


# ----------------------------------------------------------------- building blocks
def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("op", [SemSADPositive(), SemSADNegative()], ids=["pos", "neg"])
@pytest.mark.parametrize("shape", [(8, 3, 32, 32), (8, 1, 28, 28)], ids=["rgb", "gray"])
def test_pair_transforms(op, shape):
    images = torch.rand(shape, generator=gen(123))
    before, rng_state = images.clone(), torch.get_rng_state()
    a = op(images, gen(0))
    assert a.shape == images.shape and a.dtype == torch.float32
    assert a.min() >= -1e-6 and a.max() <= 1 + 1e-6
    assert torch.equal(images, before)  # input untouched
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    assert torch.equal(a, op(images, gen(0)))  # same seed, same output
    out = op(images[:1].expand(*shape).contiguous(), gen(1))
    assert not torch.allclose(out[0], out[1])  # randomness per sample
    assert repr(pickle.loads(pickle.dumps(op))) == repr(op)


def test_gamma_weighted_pair_loss_matches_the_formula():
    s_pos, s_neg = torch.randn(16, 4, generator=gen(0)), torch.randn(16, 4, generator=gen(1))
    for gamma in (1.0, 3.0):
        a_pos, a_neg = s_pos - math.log(gamma), s_neg - math.log(gamma)
        objective = (F.logsigmoid(a_pos).mean()
                     + gamma * torch.log(1 - torch.sigmoid(a_neg)).mean())
        torch.testing.assert_close(gamma_weighted_pair_loss(s_pos, s_neg, gamma), -objective)


# ----------------------------------------------------------------------- detector
def test_neighbourhoods(fitted):
    assert fitted.neighbors_.shape == (400, 4)
    # neighbourhoods never contain the sample itself
    assert not (fitted.neighbors_ == torch.arange(400)[:, None]).any()


def test_training_scores_are_leave_one_out(fitted, blobs):
    X_train, _, _ = blobs
    # scoring the training data never pairs a sample with itself
    np.testing.assert_allclose(fitted.score_samples(X_train), fitted.train_scores_)
    # a pair of a sample with itself would score much higher than its neighbour pair
    a = fitted.train_store_[:50]
    with torch.no_grad():
        self_pair = fitted.discriminator_(a, a).sum(1).double().numpy()
    assert np.mean(self_pair > fitted.train_scores_[:50]) > 0.9


@pytest.mark.parametrize("scoring", ["partners", "nearest"])
def test_batch_statistics_mode_runs(blobs, scoring):
    X_train, X_test, _ = blobs
    det = tiny(batch_norm="batch", scoring=scoring).fit(X_train)
    assert np.isfinite(det.score_samples(X_test)).all()
    # 257 rows: one more than the scoring batch; BatchNorm never sees a batch of one
    big = np.vstack([X_test] * 3)[:257]
    assert np.isfinite(det.score_samples(big)).all()
    if scoring == "partners":
        assert np.isfinite(det.score_samples(X_test[:1])).all()
    else:
        with pytest.raises(ValueError, match="at least 2 samples"):
            det.score_samples(X_test[:1])


def test_batch_statistics_fit_with_one_row_past_a_batch():
    X = np.random.RandomState(0).normal(size=(257, 3))
    det = tiny(batch_norm="batch").fit(X)
    assert np.isfinite(det.train_scores_).all()


def test_partner_score_is_the_mean_pair_score(fitted, blobs):
    _, X_test, _ = blobs
    Xs = fitted._validate_input(X_test[:7], reset=False)
    P = fitted.train_store_[fitted.partners_]
    with torch.no_grad():
        expect = torch.stack([fitted.discriminator_(P, x.expand(len(P), -1)).sum(1).mean()
                              for x in Xs]).double().numpy()
    np.testing.assert_allclose(fitted.score_samples(X_test[:7]), expect, rtol=1e-4, atol=1e-3)
    assert len(fitted.partners_) == 32 and len(set(fitted.partners_.tolist())) == 32


def test_partner_scores_skip_the_sample_itself(fitted, blobs):
    X_train, _, _ = blobs
    np.testing.assert_allclose(fitted.score_samples(X_train), fitted.train_scores_)
    i = int(fitted.partners_[0])  # a training row that is one of the partners
    P = fitted.train_store_[fitted.partners_[1:]]
    x = fitted.train_store_[i].expand(len(P), -1)
    with torch.no_grad():
        loo = float(fitted.discriminator_(P, x).sum(1).mean())
    assert fitted.train_scores_[i] == pytest.approx(loo, rel=1e-4, abs=1e-3)


def test_partners_beat_nearest_on_a_contaminated_cluster():
    # 10% anomalies in one tight cluster, inside the training data: each one's
    # nearest training row is another anomaly, so the paper's score calls it
    # normal, while its similarity to random training rows is low.
    rng = np.random.RandomState(0)
    normal = rng.normal(size=(540, 6))
    anomalies = rng.normal(loc=4.0, scale=0.05, size=(60, 6))
    X = np.vstack([normal, anomalies])
    X_test = np.vstack([rng.normal(size=(200, 6)), rng.normal(loc=4.0, scale=0.05, size=(20, 6))])
    y_test = np.r_[np.zeros(200), np.ones(20)]
    from sklearn.metrics import roc_auc_score

    auc = {s: roc_auc_score(y_test, -tiny(scoring=s).fit(X).score_samples(X_test))
           for s in ("partners", "nearest")}
    assert auc["partners"] > 0.9 and auc["partners"] > auc["nearest"] + 0.1, auc


def test_bad_parameters():
    X = np.random.RandomState(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="gamma_range"):
        tiny(gamma_range=(5, 1)).fit(X)
    with pytest.raises(ValueError, match="n_neighbors"):
        tiny(n_neighbors=0).fit(X)


def test_grid_search_over_neighbourhood_and_gamma(one_class_folds):
    X, y, folds = one_class_folds
    grid = {"n_neighbors": [2, 8], "gamma_range": [(1.0, 1.0), (1.0, 10.0)]}
    gs = GridSearchCV(tiny(), grid, scoring="roc_auc", cv=folds, error_score="raise").fit(X, y)
    assert np.all(gs.cv_results_["mean_test_score"] > 0.8)  # every candidate separates
    # the best candidate is refit on all rows, with its own neighbourhood size
    assert gs.best_estimator_.neighbors_.shape == (len(X), gs.best_params_["n_neighbors"])
    # skood's own scorers work the same way
    from skood.metrics import auroc_scorer

    gs2 = GridSearchCV(tiny(), {"n_neighbors": [2]}, scoring=auroc_scorer, cv=folds).fit(X, y)
    assert gs2.best_score_ == pytest.approx(gs.cv_results_["mean_test_score"][
        gs.cv_results_["params"].index({"gamma_range": (1.0, 10.0), "n_neighbors": 2})])


@pytest.mark.slow
def test_contaminated_cardio_is_not_inverted(data_home):
    # ADBench cardio under the inductive protocol: the training part holds anomalies whose
    # near-copies are the test anomalies' nearest neighbours. The paper's nearest-partner
    # score ranks them as the most normal rows (AUROC far below chance); the partner mean
    # must not.
    from skood.datasets import load_adbench, tabular_split

    X, y = load_adbench("6_cardio", data_home)
    X_tr, X_te, _, y_te = tabular_split(X, y, protocol="inductive", random_state=0)
    det = SemSADDetector(random_state=0, device="cpu").fit(X_tr)
    partners = roc_auc_score(y_te, -det.score_samples(X_te))
    nearest = roc_auc_score(y_te, -det.set_params(scoring="nearest").score_samples(X_te))
    assert partners > 0.85 and partners > nearest + 0.2, (partners, nearest)


@pytest.mark.slow
def test_one_class_fashion_mnist_beats_chance(fashion_auroc):
    # At this tiny budget (5 + 5 epochs, 600 images) SemSAD varies a lot with
    # the seed and the machine; so two seeds, each above chance, and their mean
    # clearly above it.
    # (8 partners: scoring 1000 images against 32 took most of this test's time)
    aurocs = [fashion_auroc(SemSADDetector(encoder_epochs=5, discriminator_epochs=5, n_partners=8,
                                           random_state=seed, device="cpu")) for seed in (0, 1)]
    assert min(aurocs) > 0.5 and np.mean(aurocs) > 0.65, aurocs  # chance is 0.5


def test_training_history_is_kept(fitted):
    assert len(fitted.history_["encoder"]) == 2
    assert len(fitted.history_["discriminator"]) == 2
    assert np.isfinite(fitted.history_["discriminator"][:, "train_loss"]).all()


# ---------------------------------------------------------------- SemSAD's parts


def test_semantic_neighbourhoods_by_hand():
    """Unit vectors at 0, 10, 25, 100 and 120 degrees: each one's two nearest others."""
    from skood._detectors.semsad import semantic_neighbourhoods

    deg = torch.tensor([0.0, 10.0, 25.0, 100.0, 120.0]) * math.pi / 180
    emb = torch.stack([deg.cos(), deg.sin()], dim=1)
    nb = semantic_neighbourhoods(emb, 2, pool_size=100, generator=torch.Generator())
    assert nb.tolist() == [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]]
    pooled = semantic_neighbourhoods(emb, 2, pool_size=3, generator=torch.Generator())
    assert pooled.shape == (5, 2)
    assert not (pooled == torch.arange(5)[:, None]).any()  # never the sample itself
    assert len(set(pooled.flatten().tolist())) <= 3  # drawn from a pool of three


def test_neighbourhoods_on_demand_are_those_of_the_up_front_search():
    """SemanticNeighbourhoods.lookup searches the wanted samples only, with the same pool
    (same generator) and the same neighbours as semantic_neighbourhoods over every sample."""
    from skood._detectors.semsad import SemanticNeighbourhoods, semantic_neighbourhoods

    emb = F.normalize(torch.randn(300, 6, generator=gen(0)), dim=1)
    every = semantic_neighbourhoods(emb, 3, pool_size=50, generator=gen(5))
    calls = []

    def embed(rows):
        calls.append(len(rows))
        return F.normalize(rows, dim=1)

    hoods = SemanticNeighbourhoods(embed, emb, 3, 50, gen(5))
    idx = torch.tensor([4, 9, 200, 4, 17])
    wanted = torch.tensor([True, False, True, True, False])
    nb = hoods.lookup(idx, wanted)
    assert torch.equal(nb[wanted], every[idx[wanted]])
    assert torch.equal(nb[~wanted], idx[~wanted, None].expand(-1, 3))  # not searched: itself
    assert sorted(torch.nonzero(hoods.table[:, 0] >= 0).flatten().tolist()) == [4, 200]
    assert (hoods.table[[9, 17]] == -1).all()
    assert calls == [50, 2]  # the pool once, then the two wanted samples (4 only once)
    hoods.lookup(torch.tensor([4, 200]), torch.tensor([True, True]))
    assert calls == [50, 2]  # searched already: no new search
    hoods.search_all()
    assert torch.equal(hoods.table, every) and hoods.embeddings.shape == (300, 6)
    upfront = SemanticNeighbourhoods(embed, emb, 3, 50, gen(5), on_demand=False)
    assert torch.equal(upfront.lookup(idx, wanted), every[idx])  # first lookup searches all


@pytest.mark.parametrize("batch_norm", ["running", "batch"])
def test_a_capped_discriminator_searches_only_the_samples_it_draws(batch_norm):
    """max_steps below the epochs: the neighbourhoods of the samples the steps draw as
    neighbour pairs are searched on demand (the others hold -1) and are those of the
    up-front search with the fitted encoder; batch statistics embed per batch, so
    batch_norm="batch" searches every sample."""
    from skood._detectors.semsad import semantic_neighbourhoods

    X = np.random.RandomState(0).normal(size=(600, 5)).astype(np.float32)
    det = SemSADDetector(encoder_epochs=1, discriminator_epochs=2, max_steps=4, mu=0.5,
                         batch_size=32, n_neighbors=3, batch_norm=batch_norm, device="cpu",
                         random_state=0).fit(X)
    searched = det.neighbors_[:, 0] >= 0
    if batch_norm == "batch":
        assert searched.all()
        return
    assert 0 < searched.sum() <= 4 * 32  # at most the rows of 4 steps
    assert (det.neighbors_[~searched] == -1).all()
    det._bn_mode(det.encoder_)
    every = semantic_neighbourhoods(det._embed(det.train_store_), 3, det.pool_size, gen(0))
    assert torch.equal(det.neighbors_[searched], every[searched])  # pool = every row here
    assert det.train_embeddings_.shape == (600, det.projection_dim)
    uncapped = SemSADDetector(encoder_epochs=1, discriminator_epochs=2, max_steps=None,
                              batch_size=32, n_neighbors=3, device="cpu", random_state=0).fit(X)
    assert (uncapped.neighbors_ >= 0).all()


def test_pair_discriminator_inputs_and_outputs():
    from skood._detectors.semsad import PairDiscriminator

    tab = PairDiscriminator((4,), "auto", n_logits=3).eval()
    a = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    assert tab(a, a.flip(0)).shape == (5, 3)
    assert tab.body.net[0].in_features == 12  # [x, x', |x - x'|]
    assert any(isinstance(m, torch.nn.ELU) for m in tab.modules())
    img = PairDiscriminator((3, 8, 8), "cnn", n_logits=2, norm="group").eval()
    x = torch.rand(2, 3, 8, 8)
    assert img(x, x).shape == (2, 2)
    assert img.body.features[0].in_channels == 6  # the pair on the channel axis


def test_semsad_pair_net_learns_to_tell_positive_from_negative_pairs():
    """Positives are two slightly jittered copies of a row, negatives a row and another row:
    after training the discriminator scores (summed logits) the positives higher."""
    from skood._detectors.semsad import (
        PairDiscriminator,
        SemSADPairNet,
        semantic_neighbourhoods,
    )

    def jitter(x, g):
        return x + 0.05 * torch.randn(x.shape, generator=g)

    torch.manual_seed(0)
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    neighbors = semantic_neighbourhoods(F.normalize(data, dim=1), 2, 64, torch.Generator())
    net = SemSADPairNet(PairDiscriminator((4,), "auto", n_logits=4), data=data,
                        neighbors=neighbors, positive=jitter, negative=lambda x, g: x,
                        gamma_range=(1.0, 2.0), mu=0.0, max_epochs=30, batch_size=32, lr=1e-3,
                        device="cpu")
    net.fit(data)
    disc = net.module_.eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(2)
        pos = disc(data, jitter(data, g)).sum(1)
        neg = disc(data, data.roll(1, 0)).sum(1)
    assert (pos > neg).float().mean() > 0.9
    losses = net.history[:, "train_loss"]
    assert losses[-1] < losses[0]

