"""The detectors, one module per paper."""

from .distillneg import DistillNegDetector
from .nsa import NSADetector
from .semsad import SemSADDetector

__all__ = ["DistillNegDetector", "NSADetector", "SemSADDetector"]
