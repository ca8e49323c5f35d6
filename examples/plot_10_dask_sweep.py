"""
A detector sweep on a Dask cluster
==================================

A data team wants to know which detector suits which of its tables, so it
fits every detector on every table with several random seeds: many small,
independent fits. skood's fits are plain scikit-learn estimator calls, so
joblib spreads them over a `Dask <https://www.dask.org>`_ cluster with no
change to the fitting code: ``parallel_config(backend="dask")`` sends every
``joblib.Parallel`` task (and every ``n_jobs`` search of scikit-learn, such as
``GridSearchCV``) to the cluster's workers.

Here the cluster is a local one in this process; on real hardware, connect to
a running scheduler instead, ``Client("tcp://scheduler:8786")``, and nothing
else changes (install with ``pip install "skood[distributed]"``).
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from dask.distributed import Client, LocalCluster
from joblib import Parallel, delayed, parallel_config
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_blobs
from sklearn.ensemble import IsolationForest
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
seeds = [0] if smoke else [0, 1, 2]

# %%
# Four tables, each with one normal class (the third item) and anomalies from the
# other classes, and the detectors at their defaults (a second or two per fit on
# tables this small).
blobs, blob = make_blobs(n_samples=400, centers=4, n_features=8, random_state=0)
tables = {
    "breast cancer": (*load_breast_cancer(return_X_y=True), 1),
    "wine": (*load_wine(return_X_y=True), 1),
    "digits": (*load_digits(return_X_y=True), 0),
    "blobs": (blobs, blob, 0),
}
detectors = {
    "SemSAD": SemSADDetector(),
    "NSA": NSADetector(),
    "DUM": DUMDetector(),
    "DistillNeg": DistillNegDetector(),
    "RotAuxMSP": RotAuxMSPDetector(),
    "FeatureKNN": FeatureKNNDetector(),
    "IsolationForest": make_pipeline(StandardScaler(), IsolationForest()),
    "LOF": make_pipeline(StandardScaler(), LocalOutlierFactor(novelty=True)),
}


def fit_and_score(table, detector, seed):
    """One task of the sweep: split, fit on normal rows, return the test AUROC."""
    X, y, normal_class = tables[table]
    rng = np.random.RandomState(seed)
    normal = rng.permutation(np.flatnonzero(y == normal_class))
    others = rng.permutation(np.flatnonzero(y != normal_class))[:len(normal) // 2]
    n_train = len(normal) * 2 // 3
    X_test = X[np.r_[normal[n_train:], others]]
    is_anomaly = np.r_[np.zeros(len(normal) - n_train), np.ones(len(others))]
    det = clone(detectors[detector])
    # seed every random_state, inside pipelines too
    det.set_params(**{p: seed for p in det.get_params() if p.endswith("random_state")})
    det.fit(X[normal[:n_train]])
    return table, detector, seed, auroc(is_anomaly, det.score_samples(X_test))


# %%
# The cluster: one worker with two threads here. Fits in parallel threads are
# reproducible, as each seeds its own random generators from ``random_state``.
cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                       dashboard_address=None)
client = Client(cluster)
tasks = [(t, d, s) for t in tables for d in detectors for s in seeds]
with parallel_config(backend="dask"):
    results = Parallel(n_jobs=-1)(delayed(fit_and_score)(*task) for task in tasks)
client.close()
cluster.close()
print(f"{len(results)} fits on the cluster")

table_names, detector_names = list(tables), list(detectors)
mean_auroc = np.zeros((len(table_names), len(detector_names)))
for table, detector, _, value in results:
    mean_auroc[table_names.index(table), detector_names.index(detector)] += value / len(seeds)

# %%
# The mean AUROC over the seeds, one row per table and one column per
# detector.
fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
image = ax.imshow(mean_auroc, cmap="viridis", vmin=0.5, vmax=1.0, aspect="auto")
for i, j in np.ndindex(mean_auroc.shape):
    ax.text(j, i, f"{mean_auroc[i, j]:.3f}", ha="center", va="center",
            color="w" if mean_auroc[i, j] < 0.8 else "k", fontsize="small")
ax.set_xticks(range(len(detector_names)), detector_names, rotation=30, ha="right")
ax.set_yticks(range(len(table_names)), table_names)
ax.set_title(f"Mean AUROC over {len(seeds)} seed{'s' * (len(seeds) > 1)}, "
             f"{len(results)} fits on a Dask cluster")
fig.colorbar(image, ax=ax, label="AUROC")
plt.show()
