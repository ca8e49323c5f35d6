import numpy as np

from skood import NSADetector
from skood.metrics import auroc

rng = np.random.RandomState(0)
X_train = rng.normal(size=(300, 8))                                  # normal rows only
X_test = np.vstack([rng.normal(size=(90, 8)), rng.normal(3, 1, size=(10, 8))])
y_test = np.r_[np.zeros(90), np.ones(10)]                            # 1 = anomaly

det = NSADetector(random_state=0).fit(X_train)
print(f"AUROC {auroc(y_test, det.score_samples(X_test)):.2f}")       # higher score = more normal
print(det.predict(X_test[-10:]))                                     # -1 = outlier, +1 = inlier
