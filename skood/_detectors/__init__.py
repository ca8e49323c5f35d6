"""The detectors, one module per paper.

Where code lives (one rule): a building block that only one detector uses
lives in that detector's module, or, to keep the module short, in its private
sibling ``_<detector>_parts`` (:mod:`skood._detectors._rotaux_parts`,
:mod:`skood._detectors._dum_parts`); :mod:`skood._detectors.dino` holds the
DINO self-distillation parts that DistillNeg trains with. Generic building
blocks live in the shared layer: scorers in :mod:`skood._scoring`,
augmentations in :mod:`skood._augment`, networks and losses in
:mod:`skood._nn`, training plumbing in :mod:`skood._training`, seeds and
small helpers in :mod:`skood._utils`. A detector's random streams are
declared in its module (``_SEED_STREAMS``; see :func:`skood._utils.seed_stream`).
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
