"""Tune SemSAD's neighbourhood size and gamma range with GridSearchCV.

A user has a small labelled validation set (a few known anomalies) and wants
the best `n_neighbors` and `gamma_range`. Folds train on normal rows only and
are scored by AUROC on held-out normal rows plus the known anomalies.
Set SKOOD_SMOKE=1 for a seconds-long run.
"""

import os

import numpy as np
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from skood import SemSADDetector

smoke = os.environ.get("SKOOD_SMOKE") == "1"
budget = {"encoder_epochs": 2, "discriminator_epochs": 2} if smoke else {}

X, y = load_wine(return_X_y=True)
normal, anomalies = X[y == 1], X[y != 1][:12]  # class 1 is "normal"
X_all = np.vstack([normal, anomalies])
y_all = np.r_[np.ones(len(normal), int), np.zeros(len(anomalies), int)]  # 1 = inlier

# two one-class folds: fit on half of the normals, test on the rest + anomalies
half = len(normal) // 2
idx_anom = np.arange(len(normal), len(X_all))
folds = [
    (np.arange(half), np.r_[np.arange(half, len(normal)), idx_anom]),
    (np.arange(half, len(normal)), np.r_[np.arange(half), idx_anom]),
]

pipe = make_pipeline(MinMaxScaler(), SemSADDetector(random_state=0, **budget))
grid = {
    "semsaddetector__n_neighbors": [2, 4, 8],
    "semsaddetector__gamma_range": [(1.0, 1.0), (1.0, 10.0), (1.0, 100.0)],
}
search = GridSearchCV(pipe, grid, scoring="roc_auc", cv=folds).fit(X_all, y_all)
print("best parameters:", search.best_params_)
print(f"best mean AUROC: {search.best_score_:.3f}")
for params, score in zip(
    search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
):
    print(f"  {params}: {score:.3f}")
