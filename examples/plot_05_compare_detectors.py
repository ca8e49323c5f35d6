"""
Every detector against IsolationForest and LOF
==============================================

A winery knows the chemistry of one cultivar's wines well and wants to flag
bottles whose analysis does not match it. Before picking a detector it tries
all six skood detectors and scikit-learn's two classics,
:class:`~sklearn.ensemble.IsolationForest` and
:class:`~sklearn.neighbors.LocalOutlierFactor`, on the same split, and
compares their ROC curves and fit times.

Small tables like this one are where the classics are hard to beat: read the
figure as a how-to, and the benchmark leaderboards for which detector to
choose on which kind of data.
"""

# %%
# The data: scikit-learn's wine table (13 measurements). Cultivar 1 is normal:
# 50 of its wines train the detectors; the test set holds its other wines and
# 30 of the other two cultivars. With so few rows one split says little, so the
# comparison repeats over random splits (one in the smoke run).
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_curve
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import (
    DistillNegDetector,
    DUMDetector,
    FeatureKNNDetector,
    NSADetector,
    RotAuxMSPDetector,
    SemSADDetector,
)
from skood.metrics import auroc

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
n_splits = 1 if smoke else 5

X, cultivar = load_wine(return_X_y=True)


def split(seed):
    """50 normal training rows; the remaining normal rows and 30 others for testing."""
    rng = np.random.RandomState(seed)
    normal = rng.permutation(np.flatnonzero(cultivar == 1))
    other = rng.permutation(np.flatnonzero(cultivar != 1))[:30]
    is_anomaly = np.r_[np.zeros(len(normal) - 50), np.ones(len(other))]
    return X[normal[:50]], X[np.r_[normal[50:], other]], is_anomaly


# %%
# The detectors at their defaults, which train in about a second each on a
# table this small. The skood detectors standardise table columns themselves;
# the classics get a :class:`~sklearn.preprocessing.StandardScaler` first.
# ``LocalOutlierFactor(novelty=True)`` scores new rows.
detectors = {
    "SemSAD": SemSADDetector(random_state=0),
    "NSA": NSADetector(random_state=0),
    "DUM": DUMDetector(random_state=0),
    "DistillNeg": DistillNegDetector(random_state=0),
    "RotAuxMSP": RotAuxMSPDetector(random_state=0),
    "FeatureKNN": FeatureKNNDetector(random_state=0),  # trains nothing
    "IsolationForest": make_pipeline(StandardScaler(), IsolationForest(random_state=0)),
    "LOF": make_pipeline(StandardScaler(), LocalOutlierFactor(novelty=True)),
}
classics = ("IsolationForest", "LOF")
results = {name: {"auroc": [], "seconds": []} for name in detectors}
for seed in range(n_splits):
    X_train, X_test, is_anomaly = split(seed)
    for name, template in detectors.items():
        det = clone(template)
        start = time.perf_counter()
        det.fit(X_train)
        results[name]["seconds"].append(time.perf_counter() - start)
        scores = det.score_samples(X_test)  # every detector here: higher = more normal
        results[name]["auroc"].append(auroc(is_anomaly, scores))
        if seed == 0:
            results[name]["roc"] = roc_curve(is_anomaly, -scores)[:2]
for name, r in results.items():
    print(f"{name:>15}: AUROC {np.mean(r['auroc']):.3f} +- {np.std(r['auroc']):.3f}, "
          f"fit {np.mean(r['seconds']):.2f} s")

# %%
# Left, the ROC curves of the first split (anomaly = positive class, so each
# curve takes ``-score_samples``); right, the AUROC over the splits against the
# fit time.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
for name, r in results.items():
    fpr, tpr = r["roc"]
    ax1.plot(fpr, tpr, "--" if name in classics else "-", label=f"{name} ({r['auroc'][0]:.3f})")
ax1.plot([0, 1], [0, 1], "k:", lw=1)
ax1.set_xlabel("false positive rate")
ax1.set_ylabel("true positive rate (anomalies found)")
ax1.set_title("ROC, first split (AUROC)")
ax1.legend(fontsize="small", loc="lower right")

for name, r in results.items():
    x, y = np.mean(r["seconds"]), np.mean(r["auroc"])
    ax2.errorbar(x, y, yerr=np.std(r["auroc"]), fmt="s" if name in classics else "o", capsize=3)
    ax2.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize="small")
ax2.set_xscale("log")
ax2.set_xlabel("fit time (s, log scale)")
ax2.set_ylabel(f"AUROC (mean and sd over {n_splits} split{'s' * (n_splits > 1)})")
ax2.set_title("Quality against cost")
plt.show()
