"""
Save a fitted detector and load it elsewhere
============================================

A team trains a detector on images of normal parts once, on a machine with
time to spare, and ships it to a scoring service that should flag odd parts
exactly as the trained detector did. ``save`` writes one file of tensors and
plain values (no pickled objects, so loading it never runs code from the file);
:func:`skood.load` rebuilds the detector, whichever class it is, and scores
bit for bit as the saved one did. Here the "parts" are 8x8 digits: zeros are
normal.
"""

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import skood
from skood import SemSADDetector
from skood.datasets import load_digits_images

smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"
epochs = 1 if smoke else 10

images, digit = load_digits_images()  # uint8, (1797, 8, 8)
zeros = images[digit == 0]
X_train = zeros[:120]
X_test = np.concatenate([zeros[120:], images[digit != 0][:60]])
is_anomaly = np.r_[np.zeros(len(zeros) - 120), np.ones(60)]

det = SemSADDetector(encoder_epochs=epochs, discriminator_epochs=epochs, random_state=0)
det.fit(X_train)
scores = det.score_samples(X_test)

# %%
# Save, then load in a fresh object. ``skood.load`` reads the class from the
# file and puts the networks back on the device they were fitted on;
# ``SemSADDetector.load(path)`` also checks the class, and
# ``map_location="cpu"`` brings a detector trained on a GPU to a CPU-only host.
# The file records the skood and torch versions: a file from an older version
# loads with a warning, one from a newer version is refused.
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "zeros.skood"
    det.save(path)
    print(f"saved {path.name}: {path.stat().st_size / 1024:.0f} KiB")
    loaded = skood.load(path)

print(type(loaded).__name__, "with offset_", loaded.offset_, "==", det.offset_)
loaded_scores = loaded.score_samples(X_test)
print("identical scores:", np.array_equal(scores, loaded_scores))
print("identical predictions:", np.array_equal(det.predict(X_test), loaded.predict(X_test)))

# %%
# Every test image's score before and after the round trip lies on the
# diagonal: the differences are exactly zero.
fig, ax = plt.subplots(figsize=(4.8, 4.4), layout="constrained")
for label, mask, marker in [("zeros (normal)", is_anomaly == 0, "o"),
                            ("other digits", is_anomaly == 1, "x")]:
    ax.scatter(scores[mask], loaded_scores[mask], marker=marker, label=label)
lims = [min(scores.min(), loaded_scores.min()), max(scores.max(), loaded_scores.max())]
ax.plot(lims, lims, "k:", lw=1)
ax.set_xlabel("score of the fitted detector")
ax.set_ylabel("score of skood.load(path)")
ax.set_title(f"max |difference| = {np.abs(scores - loaded_scores).max():g}")
ax.legend()
plt.show()
