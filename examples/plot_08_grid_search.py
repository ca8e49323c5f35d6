"""
Tune SemSAD with GridSearchCV
=============================

A winery has the analyses of one cultivar's wines and a dozen bottles it
knows to be wrong (other cultivars). It wants the
:class:`~skood.SemSADDetector` settings that best separate the two:
``n_neighbors``, how many nearest training neighbours each test sample is
compared with, and ``gamma_range``, the range of the discriminator's
similarity-sharpening parameter.

Anomaly detectors train on normal data only, so the cross-validation folds
are built by hand: each fold trains on part of the normal rows and is scored
on the other normal rows plus the known anomalies. The scorer
:data:`skood.metrics.auroc_scorer` reads labels in scikit-learn's outlier
convention (+1 inlier, -1 outlier) and computes the AUROC with the anomalies as
the positive class.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV

from skood import SemSADDetector
from skood.metrics import auroc_scorer

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
epochs = 1 if smoke else 10

X, cultivar = load_wine(return_X_y=True)
rng = np.random.RandomState(0)
normal = X[rng.permutation(np.flatnonzero(cultivar == 1))]
anomalies = X[rng.permutation(np.flatnonzero(cultivar != 1))[:12]]
X_all = np.vstack([normal, anomalies])
y_all = np.r_[np.ones(len(normal), int), -np.ones(len(anomalies), int)]  # +1 = inlier

# %%
# Two one-class folds: train on one half of the normal rows, test on the other
# half plus every known anomaly, then the other way round.
half = len(normal) // 2
first, second = np.arange(half), np.arange(half, len(normal))
known_anomalies = np.arange(len(normal), len(X_all))
folds = [(first, np.r_[second, known_anomalies]), (second, np.r_[first, known_anomalies])]

# %%
# The search. ``refit=False``: refitting on ``X_all`` would train on the
# anomalies too; the final detector is fitted on the normal rows below.
grid = {
    "n_neighbors": [1, 2, 4, 8],
    "gamma_range": [(1.0, 1.0), (1.0, 10.0), (1.0, 100.0)],
}
search = GridSearchCV(
    SemSADDetector(encoder_epochs=epochs, discriminator_epochs=epochs, random_state=0),
    grid, scoring=auroc_scorer, cv=folds, refit=False,
).fit(X_all, y_all)
print("best parameters:", search.best_params_, f"mean AUROC {search.best_score_:.3f}")

best = SemSADDetector(encoder_epochs=epochs, discriminator_epochs=epochs, random_state=0,
                      **search.best_params_).fit(normal)
print(f"the final detector flags {(best.predict(anomalies) == -1).sum()} of the "
      f"{len(anomalies)} known anomalies")

# %%
# The mean AUROC over the two folds of every setting.
gammas, neighbours = grid["gamma_range"], grid["n_neighbors"]
table = np.empty((len(gammas), len(neighbours)))
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"],
                         strict=True):
    table[gammas.index(params["gamma_range"]), neighbours.index(params["n_neighbors"])] = score

fig, ax = plt.subplots(figsize=(5.6, 4.2), layout="constrained")
image = ax.imshow(table, cmap="viridis", origin="lower", aspect="auto")
for i, j in np.ndindex(table.shape):
    ax.text(j, i, f"{table[i, j]:.3f}", ha="center", va="center",
            color="w" if table[i, j] < table.mean() else "k")
ax.set_xticks(range(len(neighbours)), neighbours)
ax.set_yticks(range(len(gammas)), [str(g) for g in gammas])
ax.set_xlabel("n_neighbors")
ax.set_ylabel("gamma_range")
ax.set_title("SemSAD: mean AUROC over two one-class folds")
fig.colorbar(image, ax=ax, label="AUROC")
plt.show()
