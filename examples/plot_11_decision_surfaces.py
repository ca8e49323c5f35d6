"""
What each detector calls normal: decision surfaces in 2-D
=========================================================

Before trusting a detector on data one cannot look at, it helps to watch it
on data one can. This example fits every skood detector and scikit-learn's
IsolationForest and LOF on two-dimensional data made of two clusters of
different spread, and draws each one's ``decision_function`` over the plane:
the solid line is its decision boundary (``decision_function = 0``, i.e.
``score_samples = offset_``), outside which ``predict`` says -1. The
detectors' default ``contamination`` of 0.1 puts a tenth of the training
points outside.

:class:`~skood.DUMDetector` on a table trains a variance network on the
(whitened) rows and scores the norm of the predicted variance. Its surface
shows the directions in which that variance grows, which need not surround the
data: a region far from every training point can still look normal to it.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_blobs
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from skood import (
    DistillNegDetector,
    DUMDetector,
    FeatureKNNDetector,
    NSADetector,
    RotAuxMSPDetector,
    SemSADDetector,
)

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
resolution = 30 if smoke else 100  # grid points per axis

X, _ = make_blobs(n_samples=300, centers=[[-2, -2], [2, 2]], cluster_std=[0.5, 1.2],
                  random_state=0)
detectors = {
    "SemSAD": SemSADDetector(random_state=0),
    "NSA": NSADetector(random_state=0),
    "DUM": DUMDetector(random_state=0),
    "DistillNeg": DistillNegDetector(random_state=0),
    "RotAuxMSP": RotAuxMSPDetector(random_state=0),
    "FeatureKNN": FeatureKNNDetector(random_state=0),
    "IsolationForest": IsolationForest(contamination=0.1, random_state=0),
    "LOF": LocalOutlierFactor(novelty=True, contamination=0.1),
}

xx, yy = np.meshgrid(np.linspace(-6, 7, resolution), np.linspace(-6, 7, resolution))
grid = np.c_[xx.ravel(), yy.ravel()]

# %%
# Each panel: the decision function (a colour scale per detector: their units
# differ), the boundary, and the training points.
fig, axes = plt.subplots(2, 4, figsize=(12, 6.4), layout="constrained", sharex=True,
                         sharey=True)
for ax, (name, det) in zip(axes.ravel(), detectors.items(), strict=True):
    det.fit(X)
    z = det.decision_function(grid).reshape(xx.shape)
    scale = np.abs(z).max()
    ax.contourf(xx, yy, z, levels=20, cmap="RdBu", vmin=-scale, vmax=scale)
    ax.contour(xx, yy, z, levels=[0], colors="k", linewidths=1.5)
    ax.scatter(X[:, 0], X[:, 1], s=4, c="k", alpha=0.5)
    ax.set_title(name)
for ax in axes[1]:
    ax.set_xlabel("feature 1")
for ax in axes[:, 0]:
    ax.set_ylabel("feature 2")
fig.suptitle("decision_function over the plane (blue: normal, red: outlier; "
             "black line: the boundary)")
plt.show()

# %%
# Two dimensions are a toy for these detectors, which are built for images and
# wider tables: the picture shows each one's inductive bias (smooth envelopes,
# kNN-shaped islands, directions), not its quality. For that, see the
# comparison on real tables earlier in this gallery and the leaderboards.
