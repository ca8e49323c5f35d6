from skood import NSADetector
from skood.datasets import load_digits_images, one_class_split, split_half
from skood.metrics import auroc

X, y = load_digits_images()                          # 1,797 8x8 uint8 images, shipped with sklearn
X_a, y_a, X_b, y_b = split_half(X, y, random_state=0)
X_train, X_test, is_anomaly = one_class_split(X_a, y_a, X_b, y_b, normal_class=0)

det = NSADetector(random_state=0).fit(X_train)       # trained on zeros only
print(f"AUROC {auroc(is_anomaly, det.score_samples(X_test)):.2f}")
# a frozen ImageNet encoder instead: NSADetector(backbone="efficientnet_lite0")
