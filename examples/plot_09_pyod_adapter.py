"""
skood detectors in a PyOD ensemble
==================================

A team already runs PyOD detectors and combines their scores. It wants to add
skood detectors to the ensemble without changing its code.
:class:`~skood.PyODAdapter` presents any skood detector as a PyOD detector:
``fit`` sets ``decision_scores_``, ``threshold_`` and ``labels_``, and
``decision_function`` and ``predict`` follow PyOD's conventions.

**The sign convention.** skood follows scikit-learn: ``score_samples`` is
*higher for more normal* samples. PyOD's ``decision_function`` is *higher for
more abnormal* samples. The adapter negates the skood score, so every PyOD
tool (evaluation helpers, score standardisation, combination methods such as
LSCP) reads it the PyOD way. Mixing the two signs by hand is the classic bug
this avoids: an averaged ensemble in which one member counts backwards.
"""

# %%
# The data, the PyOD way: unsupervised, the training rows contain a few
# anomalies (here malignant tumours among benign ones) and nobody knows which.
import os

import matplotlib.pyplot as plt
import numpy as np
from pyod.models.iforest import IForest
from pyod.models.knn import KNN
from pyod.models.lscp import LSCP
from pyod.utils.utility import standardizer
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score

from skood import DUMDetector, PyODAdapter, SemSADDetector

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
epochs = 1 if smoke else 10

X, y = load_breast_cancer(return_X_y=True)
rng = np.random.RandomState(0)
benign = rng.permutation(np.flatnonzero(y == 1))
malignant = rng.permutation(np.flatnonzero(y == 0))
train = np.r_[benign[:250], malignant[:15]]
test = np.r_[benign[250:], malignant[15:75]]
X_train, X_test = X[train], X[test]
y_train, y_test = (y[train] == 0).astype(int), (y[test] == 0).astype(int)  # PyOD: 1 = outlier
X_train, X_test = standardizer(X_train, X_test)  # the PyOD detectors want scaled columns

# %%
# Members: two PyOD detectors and two skood detectors behind the adapter.
members = {
    "KNN (PyOD)": KNN(n_neighbors=10),
    "IForest (PyOD)": IForest(random_state=0),
    "SemSAD (skood)": PyODAdapter(SemSADDetector(
        encoder_epochs=epochs, discriminator_epochs=epochs, random_state=0)),
    "DUM (skood)": PyODAdapter(DUMDetector(dum_epochs=10 * epochs, random_state=0)),
}
train_scores, test_scores = [], []
for clf in members.values():
    clf.fit(X_train)
    train_scores.append(clf.decision_scores_)  # higher = more abnormal, for every member
    test_scores.append(clf.decision_function(X_test))

# %%
# The sign, checked: the adapter's ``decision_function`` is the negated
# ``score_samples`` of the fitted skood detector (``detector_``).
semsad = members["SemSAD (skood)"]
sk_scores = semsad.detector_.score_samples(X_test)
assert np.array_equal(semsad.decision_function(X_test), -sk_scores)

# %%
# Two combinations. **Average**: standardise each member's scores with the
# training scores' mean and standard deviation, then average them (what
# ``pyod.models.combination.average`` computes; that module needs the optional
# ``combo`` package). **LSCP** (Zhao et al., 2019) picks, for each test row,
# the members that do best on its neighbourhood of training rows.
train_std, test_std = standardizer(np.column_stack(train_scores), np.column_stack(test_scores))
combined = {"average (standardised)": test_std.mean(axis=1)}
lscp = LSCP([KNN(n_neighbors=10), IForest(random_state=0), PyODAdapter(SemSADDetector(
    encoder_epochs=epochs, discriminator_epochs=epochs, random_state=0))], n_bins=3, random_state=0)
combined["LSCP"] = lscp.fit(X_train).decision_function(X_test)

aurocs = {name: roc_auc_score(y_test, s) for name, s in zip(members, test_scores, strict=True)}
aurocs |= {name: roc_auc_score(y_test, s) for name, s in combined.items()}
for name, value in aurocs.items():
    print(f"{name:>23}: AUROC {value:.3f}")

# %%
# Left, the two signs side by side for SemSAD; right, each member's and each
# combination's test AUROC. PyOD's AUROC takes its outlier scores as they are.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
for label, mask, marker in [("benign", y_test == 0, "o"), ("malignant", y_test == 1, "x")]:
    ax1.scatter(sk_scores[mask], semsad.decision_function(X_test)[mask], marker=marker,
                label=label, alpha=0.7)
ax1.set_xlabel("skood score_samples (higher = more normal)")
ax1.set_ylabel("PyODAdapter decision_function\n(higher = more abnormal)")
ax1.set_title("One detector, two sign conventions")
ax1.legend()

names = list(aurocs)
colors = ["C0"] * len(members) + ["C3"] * len(combined)
ax2.barh(names, [aurocs[n] for n in names], color=colors)
for i, name in enumerate(names):
    ax2.text(aurocs[name], i, f" {aurocs[name]:.3f}", va="center")
ax2.set_xlim(min(aurocs.values()) - 0.05, 1.0)
ax2.invert_yaxis()
ax2.set_xlabel("test AUROC")
ax2.set_title("Members (blue) and combinations (red)")
plt.show()
