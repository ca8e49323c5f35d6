"""
Out-of-distribution detection with labels: MSP and ODIN
=======================================================

A digit classifier was trained on the digits 0 to 4 only. In use it will also
see 5 to 9, and its owners want it to say "I do not know this" instead of
confidently calling a 7 a 1. With class labels,
:class:`~skood.RotAuxMSPDetector` trains such a classifier together with an
auxiliary rotation-prediction head (which makes its features more
discriminative), and scores how sure the classifier is:

* **MSP**, the maximum softmax probability (Hendrycks & Gimpel, 2017);
* **ODIN** (Liang et al., 2018): the same after a temperature scaling of the
  logits and a small input perturbation that raises the confidence of
  in-distribution inputs more than that of the others;
* ``"msp*rotation"``, the default with labels: MSP times the rotation head's
  confidence.

One fit gives all three: ``score_samples_by`` rescores with another scorer of
the same trained network.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from skood import RotAuxMSPDetector
from skood.datasets import load_digits_images
from skood.metrics import auroc, fpr_at_95_tpr

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
epochs = 2 if smoke else 20

images, digit = load_digits_images()  # uint8, (1797, 8, 8)
known = digit < 5
X_in, X_in_test, y_in, _ = train_test_split(images[known], digit[known], test_size=300,
                                            random_state=0, stratify=digit[known])
X_out = images[~known][:300]
X_test = np.concatenate([X_in_test, X_out])
is_ood = np.r_[np.zeros(len(X_in_test)), np.ones(len(X_out))]

# %%
# Fit with the labels of the known classes. ``fit(X)`` without labels would
# train the unsupervised rotation detector instead.
det = RotAuxMSPDetector(max_epochs=epochs, random_state=0).fit(X_in, y_in)
print("classes:", det.classes_, " fitted scoring:", det.scoring_)

scores = {scoring: det.score_samples_by(X_test, scoring)
          for scoring in ["msp", "odin", "msp*rotation"]}
for scoring, s in scores.items():
    print(f"{scoring:>13}: AUROC {auroc(is_ood, s):.3f}, "
          f"FPR at 95% TPR {fpr_at_95_tpr(is_ood, s):.3f}")

# %%
# The score distributions of known (0-4) and unknown (5-9) digits under MSP
# and ODIN. ODIN's high temperature squeezes every score close to one over the
# number of classes; only their order matters for detection. Each title gives
# the AUROC of telling the two groups apart.
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8), layout="constrained")
for ax, scoring in zip(axes, ["msp", "odin"], strict=True):
    s = scores[scoring]
    bins = np.histogram_bin_edges(s, bins=30)
    ax.hist(s[is_ood == 0], bins=bins, alpha=0.7, label="digits 0-4 (known)")
    ax.hist(s[is_ood == 1], bins=bins, alpha=0.7, label="digits 5-9 (unknown)")
    ax.set_title(f"{scoring.upper()}: AUROC {auroc(is_ood, s):.3f}")
    ax.set_xlabel(f"score_samples_by(X, {scoring!r})")
    ax.set_ylabel("test images")
    ax.locator_params(axis="x", nbins=4)
    ax.legend(loc="upper left")
plt.show()
