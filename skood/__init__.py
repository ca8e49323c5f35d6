"""skood: scikit-learn-compatible deep anomaly and out-of-distribution detectors."""

from .base import BaseDeepDetector
from .detectors import (
    DistillNegDetector,
    DUMDetector,
    FeatureKNNDetector,
    NSADetector,
    RotAuxMSPDetector,
    SemSADDetector,
)

__version__ = "0.1.2"

__all__ = [
    "BaseDeepDetector",
    "DUMDetector",
    "DistillNegDetector",
    "FeatureKNNDetector",
    "NSADetector",
    "RotAuxMSPDetector",
    "SemSADDetector",
    "__version__",
]
