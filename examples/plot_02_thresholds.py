"""
Thresholds and contamination
============================

A team screens new tumour measurements and can afford to review a fixed share
of them. Its training data were not curated: a few malignant rows hide among
the benign ones. The ``contamination`` parameter says what fraction of the
training rows to treat as outliers, and so where ``predict`` draws the line
between +1 (inlier) and -1 (outlier). This example fits
:class:`~skood.DUMDetector` at several contaminations and shows what moves:
only the threshold ``offset_``, never the scores.
"""

# %%
# Training data: 250 benign rows with 15 malignant ones mixed in (about 6 %);
# test data: the other benign rows and 60 other malignant ones.
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer

from skood import DUMDetector

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
epochs = 20 if smoke else 100

X, y = load_breast_cancer(return_X_y=True)
benign, malignant = X[y == 1], X[y == 0]
rng = np.random.RandomState(0)
benign, malignant = benign[rng.permutation(len(benign))], malignant[rng.permutation(len(malignant))]
X_train = np.vstack([benign[:250], malignant[:15]])
hidden = np.r_[np.zeros(250), np.ones(15)]  # unknown to the detector
X_test = np.vstack([benign[250:], malignant[15:75]])
is_anomaly = np.r_[np.zeros(len(benign) - 250), np.ones(60)]

# %%
# One fit per contamination. ``offset_`` is the ``contamination`` quantile of
# the training scores (``train_scores_``), ``decision_function`` is
# ``score_samples - offset_`` and ``predict`` is its sign. With the same
# ``random_state`` every fit trains the same network, so the scores are the same
# and only the threshold moves. ``contamination="auto"`` means 0.1, PyOD's
# default: deep scores have no natural scale for a fixed threshold.
contaminations = [0.02, 0.05, 0.1, 0.2]
offsets, false_alarms, recalls = [], [], []
for c in contaminations:
    det = DUMDetector(dum_epochs=epochs, contamination=c, random_state=0).fit(X_train)
    assert np.isclose(det.offset_, np.percentile(det.train_scores_, 100 * c))
    flagged = det.predict(X_test) == -1
    offsets.append(det.offset_)
    false_alarms.append(flagged[is_anomaly == 0].mean())
    recalls.append(flagged[is_anomaly == 1].mean())
    print(f"contamination={c:<4}  offset_={det.offset_:8.3f}  flagged {flagged.sum():3d} "
          f"of {len(X_test)} test rows ({recalls[-1]:.0%} of the anomalies, "
          f"{false_alarms[-1]:.0%} of the normal rows)")

# %%
# A threshold can also come from elsewhere, e.g. the score below which 1 % of
# a held-out set of known-normal rows fall; compare ``score_samples`` with it.
# Here, the 1 % quantile of the benign test rows' scores:
scores = det.score_samples(X_test)
threshold = np.percentile(scores[is_anomaly == 0], 1)
print(f"own threshold {threshold:.3f}: flags {(scores < threshold)[is_anomaly == 1].mean():.0%} "
      "of the anomalies")

# %%
# Left, the training scores with the hidden anomalies and each contamination's
# threshold; right, what each threshold flags on the test rows.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
train_scores = det.train_scores_
bins = np.histogram_bin_edges(train_scores, bins=30)
ax1.hist(train_scores[hidden == 0], bins=bins, alpha=0.7, label="benign")
ax1.hist(train_scores[hidden == 1], bins=bins, alpha=0.7, label="malignant (hidden)")
for c, offset, color in zip(contaminations, offsets, plt.cm.viridis([0.0, 0.35, 0.65, 0.9]),
                            strict=True):
    ax1.axvline(offset, color=color, linestyle="--", label=f"offset_, contamination={c}")
ax1.set_xlabel("training score (higher = more normal)")
ax1.set_ylabel("training rows")
ax1.set_title("Thresholds on the training scores")
ax1.legend(fontsize="small")

ax2.plot(contaminations, recalls, "o-", label="anomalies flagged (recall)")
ax2.plot(contaminations, false_alarms, "s-", label="normal rows flagged (false alarms)")
ax2.set_xlabel("contamination")
ax2.set_ylabel("fraction of test rows predicted -1")
ax2.set_ylim(0, 1.05)
ax2.set_title("What predict flags on new rows")
ax2.legend(fontsize="small")
plt.show()
