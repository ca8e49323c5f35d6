"""The detectors, one module per paper."""

from .distillneg import DistillNegDetector
from .dum import DUMDetector
from .nsa import NSADetector
from .rotaux_msp import RotAuxMSPDetector
from .semsad import SemSADDetector

__all__ = [
    "DUMDetector",
    "DistillNegDetector",
    "NSADetector",
    "RotAuxMSPDetector",
    "SemSADDetector",
]
