import numpy as np

from skood import FeatureKNNDetector

rng = np.random.RandomState(0)
X_train = rng.normal(size=(500, 8))                                  # normal rows only
X_test = np.vstack([rng.normal(size=(450, 8)), rng.normal(4, 1, size=(50, 8))])

det = FeatureKNNDetector(calibration=0.2, random_state=0).fit(X_train)
p = det.pvalues(X_test)                              # small p: unlikely under normal data
print(f"false-alarm rate at alpha=0.05: {np.mean(p[:450] <= 0.05):.3f}")
print(f"flagged at FDR 10%: {np.sum(det.predict(X_test, fdr=0.1) == -1)} of 500 rows")
