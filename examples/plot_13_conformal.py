"""
Thresholds with a stated false-alarm rate
=========================================

An analyst does not know what share of her data is anomalous, so the
``contamination`` guess behind ``predict`` means little to her. What she can
state is an error rate: "flag a row when it is unlikely under normal data,
with at most 5% false alarms", or "among what you flag, at most 10% may be
false".

Every skood detector turns its scores into conformal p-values
(``pvalues``): the rank of a row's score among the scores of held-out normal
calibration rows (``calibration=0.2``: a fifth of the training rows, never
seen by the networks). On normal rows the p-values are uniform, so flagging
``p <= alpha`` raises false alarms on at most a share ``alpha`` of them, and
``predict(X, fdr=q)`` runs the Benjamini-Hochberg procedure over a batch.
Here a :class:`~skood.FeatureKNNDetector` learns normal handwritten digits of
one class; the other digits are the anomalies.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from skood import FeatureKNNDetector
from skood.datasets import load_digits_images

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
classes = [0, 1] if smoke else list(range(10))

images, digit = load_digits_images()  # uint8, (1797, 8, 8)
rng = np.random.RandomState(0)
alphas = np.linspace(0.01, 0.3, 30)

# %%
# For each normal digit: train on 120 of its images, test on the rest of them
# and on 200 images of other digits; record the realised false-alarm rate on
# the normal test images at each alpha, and the batch decision at FDR 10%.
far, pvals_normal, pvals_anomaly = [], [], []
for k in classes:
    normal = rng.permutation(np.flatnonzero(digit == k))
    others = rng.permutation(np.flatnonzero(digit != k))[:200]
    X_test = images[np.r_[normal[120:], others]]
    is_anomaly = np.r_[np.zeros(len(normal) - 120, bool), np.ones(200, bool)]
    det = FeatureKNNDetector(calibration=0.2, random_state=0).fit(images[normal[:120]])
    p = det.pvalues(X_test)
    far.append([np.mean(p[~is_anomaly] <= a) for a in alphas])
    pvals_normal.append(p[~is_anomaly])
    pvals_anomaly.append(p[is_anomaly])
    flagged = det.predict(X_test, fdr=0.1) == -1
    false = np.sum(flagged & ~is_anomaly)
    print(f"digit {k}: {flagged.sum():3d} flagged at FDR 10%, {false} of them normal; "
          f"false alarms at alpha=0.05: {np.mean(p[~is_anomaly] <= 0.05):.3f}")

# %%
# Left: the realised false-alarm rate follows the diagonal (the nominal rate)
# up to the sampling noise of about 30 normal test images and 24 calibration
# images per digit. Right: normal rows' p-values spread evenly over [0, 1],
# anomalies' pile up near 0.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
for rates in far:
    ax1.plot(alphas, rates, color="C0", alpha=0.35, lw=1)
ax1.plot(alphas, np.mean(far, axis=0), color="C0", lw=2.5, label="mean over digits")
ax1.plot(alphas, alphas, "k--", lw=1, label="nominal")
ax1.set(xlabel="alpha", ylabel="realised false-alarm rate",
        title="False alarms on normal test digits")
ax1.legend()
bins = np.linspace(0, 1, 11)
ax2.hist(np.concatenate(pvals_normal), bins, alpha=0.6, density=True, label="normal")
ax2.hist(np.concatenate(pvals_anomaly), bins, alpha=0.6, density=True, label="anomalies")
ax2.set(xlabel="conformal p-value", ylabel="density", title="p-values of the test digits")
ax2.legend()
plt.show()
