"""The detectors, one module per paper."""

from .semsad import SemSADDetector

__all__ = ["SemSADDetector"]
