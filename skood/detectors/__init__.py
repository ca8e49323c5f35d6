"""The detectors, one module per paper."""

from .nsa import NSADetector
from .semsad import SemSADDetector

__all__ = ["NSADetector", "SemSADDetector"]
