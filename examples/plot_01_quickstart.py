"""Quickstart: fit SemSAD on normal data, flag anomalies in new data.

A user has tabular measurements of normal operation and wants to flag unusual
rows, then does the same with images. Set SKOOD_SMOKE=1 for a seconds-long run.
"""

import os

import numpy as np
from sklearn.datasets import load_breast_cancer

from skood import SemSADDetector
from skood.datasets import load_digits_images
from skood.metrics import evaluate

smoke = os.environ.get("SKOOD_SMOKE") == "1"
budget = {"encoder_epochs": 2, "discriminator_epochs": 2} if smoke else {}

# --- tabular: benign tumours are "normal", malignant ones the anomalies ---
X, y = load_breast_cancer(return_X_y=True)
benign, malignant = X[y == 1], X[y == 0]
rng = np.random.RandomState(0)
order = rng.permutation(len(benign))
X_train = benign[order[:250]]
X_test = np.vstack([benign[order[250:]], malignant[:30]])
y_outlier = np.r_[np.zeros(len(benign) - 250), np.ones(30)]

det = SemSADDetector(random_state=0, **budget).fit(X_train)
scores = det.score_samples(X_test)  # higher = more normal
print("tabular:", {k: round(v, 3) for k, v in evaluate(y_outlier, scores).items()})
print("flagged as outliers:", int((det.predict(X_test) == -1).sum()), "of", len(X_test))

# --- images: 8x8 digits, zeros are normal ---
images, digits = load_digits_images()  # uint8 (n, 8, 8)
zeros = images[digits == 0]
X_img_test = np.concatenate([zeros[100:], images[digits == 7][:40]])
y_img = np.r_[np.zeros(len(zeros) - 100), np.ones(40)]
det_img = SemSADDetector(random_state=0, **budget).fit(zeros[:100])
metrics = evaluate(y_img, det_img.score_samples(X_img_test))
print("images:", {k: round(v, 3) for k, v in metrics.items()})
