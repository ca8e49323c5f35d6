"""The detectors, one module per paper.

Each module holds what is its paper's own (objective, scorer, estimator);
:mod:`skood._detectors.dino` holds the DINO self-distillation parts that
DistillNeg trains with. Building blocks that two or more detectors use live
in the shared layer (:mod:`skood._augment`, :mod:`skood._nn`,
:mod:`skood._scoring`, :mod:`skood._training`).
"""

from .distillneg import DistillNegDetector
from .dum import DUMDetector
from .feature_knn import FeatureKNNDetector
from .nsa import NSADetector
from .rotaux_msp import RotAuxMSPDetector
from .semsad import SemSADDetector

__all__ = [
    "DUMDetector",
    "DistillNegDetector",
    "FeatureKNNDetector",
    "NSADetector",
    "RotAuxMSPDetector",
    "SemSADDetector",
]
