"""FeatureKNNDetector (the untrained-encoder reference) and its kNN scorers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from skood import FeatureKNNDetector
from skood._scoring import knn_euclidean, knn_loo, nearest_cosine


def test_knn_euclidean_matches_sklearn():
    rng = np.random.RandomState(0)
    bank, query = rng.normal(size=(300, 5)), rng.normal(size=(70, 5))
    d, i = knn_euclidean(query, bank, k=3, chunk_size=64)
    ref_d, ref_i = NearestNeighbors(n_neighbors=3).fit(bank).kneighbors(query)
    np.testing.assert_allclose(d.numpy(), ref_d, rtol=1e-6)
    np.testing.assert_array_equal(i.numpy(), ref_i)
    with pytest.raises(ValueError, match="k must be"):
        knn_euclidean(query, bank[:2], k=3)


def test_knn_loo_leaves_out_one_copy_only():
    rng = np.random.RandomState(1)
    bank = torch.from_numpy(rng.normal(size=(50, 4)).astype(np.float32))
    bank[7] = bank[3]  # a duplicated training row
    query = bank[:10]
    for metric in ("cosine", "euclidean"):
        loo = knn_loo(query, bank, 2, query, bank, metric=metric, chunk_size=4)
        full = knn_loo(query, bank, 3, metric=metric)
        np.testing.assert_allclose(loo.numpy(), full[:, 1:].numpy(), rtol=1e-6)  # self dropped
    # row 3 keeps its duplicate (row 7) as nearest neighbour: distance 0
    assert knn_loo(query, bank, 1, query, bank, metric="euclidean")[3, 0] == 0.0
    # k = 1, cosine: the same neighbours as nearest_cosine
    np.testing.assert_array_equal(knn_loo(query, bank, 1, query, bank)[:, 0].numpy(),
                                  nearest_cosine(query, bank, query, bank).numpy())
    with pytest.raises(ValueError, match="metric"):
        knn_loo(query, bank, 1, metric="manhattan")


def test_images_score_is_mean_cosine_to_k_nearest_training_features(digit_images):
    X_train, X_test = digit_images[0], digit_images[1]
    det = FeatureKNNDetector(n_neighbors=3, device="cpu", random_state=0).fit(X_train)
    assert not det.encoder_.training and det.bank_.shape == (len(X_train), 128)
    with torch.inference_mode():
        f = torch.nn.functional.normalize(det.encoder_(torch.as_tensor(X_test[:, None] / 255.0,
                                                                     dtype=torch.float32)), dim=1)
    bank = torch.nn.functional.normalize(det.bank_, dim=1)
    expected = (f @ bank.T).topk(3, dim=1).values.double().mean(1).numpy()
    np.testing.assert_allclose(det.score_samples(X_test), expected, rtol=1e-5)
    # training scores are leave-one-out: no sample is its own neighbour
    assert det.train_scores_.max() < 1.0 - 1e-4
    # the initial weights come from random_state
    again = FeatureKNNDetector(n_neighbors=3, device="cpu", random_state=0).fit(X_train)
    other = FeatureKNNDetector(n_neighbors=3, device="cpu", random_state=1).fit(X_train)
    np.testing.assert_array_equal(again.score_samples(X_test), det.score_samples(X_test))
    assert not np.allclose(other.score_samples(X_test), det.score_samples(X_test))


def test_tabular_default_is_euclidean(blobs):
    X_train, X_test, _ = blobs
    det = FeatureKNNDetector(device="cpu", random_state=0).fit(X_train)
    cos = FeatureKNNDetector(metric="cosine", device="cpu", random_state=0).fit(X_train)
    Z = (X_test - det.feature_mean_) / det.feature_scale_
    with torch.inference_mode():
        f = det.encoder_(torch.as_tensor(Z, dtype=torch.float32))
    d = torch.cdist(f.double(), det.bank_.double())
    expected = -d.topk(2, dim=1, largest=False).values.mean(1).numpy()
    np.testing.assert_allclose(det.score_samples(X_test), expected, rtol=1e-5)
    assert not np.allclose(cos.score_samples(X_test), det.score_samples(X_test))


def test_batchnorm_statistics_are_the_training_samples(digit_images):
    X_train = digit_images[0]
    det = FeatureKNNDetector(device="cpu", random_state=0).fit(X_train)  # one batch of 120
    conv, bn = det.encoder_.features[0], det.encoder_.features[1]
    with torch.inference_mode():
        out = conv(torch.as_tensor(X_train[:, None] / 255.0, dtype=torch.float32))
    np.testing.assert_allclose(bn.running_mean.numpy(), out.mean((0, 2, 3)).numpy(), atol=1e-6)
    assert bn.momentum == 0.1 and not det.encoder_.training  # restored, evaluation mode
    raw = FeatureKNNDetector(recalibrate_batchnorm=False, device="cpu", random_state=0)
    bn0 = raw.fit(X_train).encoder_.features[1]
    assert torch.equal(bn0.running_mean, torch.zeros_like(bn0.running_mean))
    # with a bank subset, the statistics are the bank's (a fit's cost stops growing with n)
    sub = FeatureKNNDetector(device="cpu", random_state=0, max_bank=50).fit(X_train)
    assert len(sub.train_store_) == 50
    bn_sub = sub.encoder_.features[1]
    with torch.inference_mode():
        out = conv(sub.train_store_.float() / 255.0)
    np.testing.assert_allclose(bn_sub.running_mean.numpy(), out.mean((0, 2, 3)).numpy(),
                               atol=1e-6)
    assert not torch.allclose(bn_sub.running_mean, bn.running_mean)


def test_pretrained_backbone_is_dn2(digit_images, tmp_path):
    # DN2: kNN on frozen ImageNet features (the weights of the installed package)
    from skood.pretrained import PretrainedEncoder

    X_train, X_test = digit_images[0][:30], digit_images[1][:10]
    det = FeatureKNNDetector(backbone="efficientnet_lite0", device="cpu", random_state=0)
    s = det.fit(X_train).score_samples(X_test)
    assert isinstance(det.encoder_, PretrainedEncoder) and det.bank_.shape == (30, 1280)
    # the ImageNet BatchNorm statistics are kept: features equal the packaged encoder's
    from skood.pretrained import load_pretrained

    ref = load_pretrained("efficientnet_lite0")
    with torch.inference_mode():
        x = torch.as_tensor(X_train[:4, None] / 255.0, dtype=torch.float32)
        np.testing.assert_allclose(det.encoder_(x).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-6)
    other_seed = FeatureKNNDetector(backbone="efficientnet_lite0", device="cpu", random_state=1)
    np.testing.assert_array_equal(other_seed.fit(X_train).score_samples(X_test), s)  # no init
    det.save(tmp_path / "dn2.skood")
    np.testing.assert_array_equal(FeatureKNNDetector.load(tmp_path / "dn2.skood").score_samples(
        X_test), s)
