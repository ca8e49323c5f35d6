"""skood: scikit-learn-compatible deep anomaly and out-of-distribution detectors."""

from .base import BaseDeepDetector
from .detectors import (
    DistillNegDetector,
    NSADetector,
    SemSADDetector,
)

__version__ = "0.1.0"

__all__ = [
    "BaseDeepDetector",
    "DistillNegDetector",
    "NSADetector",
    "SemSADDetector",
    "__version__",
]
