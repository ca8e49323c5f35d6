"""
Detectors in a scikit-learn Pipeline
====================================

A postal service stores scanned digits as rows of 64 pixel values in a table,
and wants to flag scans that are not a "3" (its sorting machine's current bin).
skood detectors are scikit-learn estimators, so preprocessing and detector go
into one :class:`~sklearn.pipeline.Pipeline` that is fitted, cloned,
cross-validated and saved as one object. Two pipelines are compared:

* the rows read as **images**: a scaler maps pixels to [0, 1] and
  ``image_shape=(1, 8, 8)`` tells :class:`~skood.NSADetector` to reshape each row
  into an 8x8 grey image, so it trains its convolutional encoder;
* the rows read as a **table**: standardisation and a PCA to 16 components feed
  :class:`~skood.DUMDetector`'s tabular networks.
"""

# %%
# The data: scikit-learn's digits as a table (pixel values 0-16). Threes are
# normal; the test set mixes unseen threes with every other digit.
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.metrics import RocCurveDisplay
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from skood import DUMDetector, NSADetector
from skood.metrics import auroc

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
epochs = 1 if smoke else 12

X, digit = load_digits(return_X_y=True)  # X: (1797, 64) floats in 0-16
rng = np.random.RandomState(0)
threes = rng.permutation(np.flatnonzero(digit == 3))
others = rng.permutation(np.flatnonzero(digit != 3))[:150]
X_train = X[threes[:120]]
X_test = X[np.r_[threes[120:], others]]
is_anomaly = np.r_[np.zeros(len(threes) - 120), np.ones(len(others))]

# %%
# Two pipelines. ``MinMaxScaler(clip=True)`` keeps test pixels inside [0, 1],
# the range skood checks for float images.
as_images = make_pipeline(
    MinMaxScaler(clip=True),
    NSADetector(image_shape=(1, 8, 8), max_epochs=epochs, random_state=0),
)
as_table = make_pipeline(
    StandardScaler(),
    PCA(n_components=16, random_state=0),
    DUMDetector(dum_epochs=10 * epochs, random_state=0),
)
scores = {}
for name, pipe in [("as images: NSA", as_images), ("as a table: PCA + DUM", as_table)]:
    pipe.fit(X_train)
    scores[name] = pipe.score_samples(X_test)  # the last step's score_samples
    print(f"{name}: AUROC {auroc(is_anomaly, scores[name]):.3f}, "
          f"{(pipe.predict(X_test) == -1).sum()} of {len(X_test)} test rows flagged")

# %%
# ROC curves (anomalies are the positive class, so the curves take
# ``-score_samples``) and the ten test scans the image pipeline finds least
# like a three.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
for name, s in scores.items():
    RocCurveDisplay.from_predictions(is_anomaly, -s, name=name, ax=ax1)
ax1.plot([0, 1], [0, 1], "k:", lw=1)
ax1.set_title("Scans that are not a 3")

worst = np.argsort(scores["as images: NSA"])[:10]
montage = np.vstack([np.hstack(list(X_test[worst[r * 5:(r + 1) * 5]].reshape(5, 8, 8)))
                     for r in range(2)])
ax2.imshow(montage, cmap="gray_r")
ax2.set_title("Least like a 3 (image pipeline)")
ax2.set_axis_off()
plt.show()
