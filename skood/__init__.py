"""skood: scikit-learn-compatible deep anomaly and out-of-distribution detectors."""

from .base import BaseDeepDetector
from .detectors import (
    DistillNegDetector,
    DUMDetector,
    NSADetector,
    RotAuxMSPDetector,
    SemSADDetector,
)

__version__ = "0.1.0"

__all__ = [
    "BaseDeepDetector",
    "DUMDetector",
    "DistillNegDetector",
    "NSADetector",
    "RotAuxMSPDetector",
    "SemSADDetector",
    "__version__",
]
