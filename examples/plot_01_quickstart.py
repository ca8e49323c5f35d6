"""
Quickstart: flag unusual rows of a table
========================================

A lab has measurements of tumours it knows to be benign and wants a detector
that flags new measurements that do not look like them. It fits
:class:`~skood.SemSADDetector` on benign rows only, then scores new rows that
mix benign and malignant tumours. The detector never sees a malignant row
during training: malignant tumours play the anomalies.
"""

# %%
# The data: scikit-learn's breast cancer table (30 features per tumour). The
# smoke line shrinks the training epochs when the documentation is built.
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer

from skood import SemSADDetector
from skood.metrics import evaluate

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
epochs = 1 if smoke else 10

X, y = load_breast_cancer(return_X_y=True)
benign, malignant = X[y == 1], X[y == 0]
rng = np.random.RandomState(0)
order = rng.permutation(len(benign))
X_train = benign[order[:250]]  # normal data only
X_test = np.vstack([benign[order[250:]], malignant[:60]])
is_anomaly = np.r_[np.zeros(len(benign) - 250), np.ones(60)]

# %%
# Fit and score. Scores follow scikit-learn: **higher = more normal**.
# ``predict`` thresholds them at ``offset_`` (+1 inlier, -1 outlier); the
# threshold is set so that ``contamination`` (10 % by default) of the training
# rows fall below it. :func:`skood.metrics.evaluate` gives AUROC, average
# precision (AP) and the false-positive rate at 95 % true positives.
det = SemSADDetector(encoder_epochs=epochs, discriminator_epochs=epochs, random_state=0)
det.fit(X_train)
scores = det.score_samples(X_test)
flagged = det.predict(X_test) == -1

print({name: round(value, 3) for name, value in evaluate(is_anomaly, scores).items()})
print(f"flagged {flagged.sum()} of {len(X_test)} test rows; "
      f"{flagged[is_anomaly == 1].mean():.0%} of the malignant ones")

# %%
# The scores of the two groups, and the threshold ``predict`` uses. Every
# metric in ``skood.metrics`` takes scores in this sign and treats the anomaly
# as the positive class.
fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
bins = np.histogram_bin_edges(scores, bins=30)
ax.hist(scores[is_anomaly == 0], bins=bins, alpha=0.7, label="benign (normal)")
ax.hist(scores[is_anomaly == 1], bins=bins, alpha=0.7, label="malignant (anomaly)")
ax.axvline(det.offset_, color="k", linestyle="--", label="threshold (offset_)")
ax.set_xlabel("score_samples (higher = more normal)")
ax.set_ylabel("test rows")
ax.set_title("SemSAD fitted on benign tumours only")
ax.legend()
plt.show()
