"""skood: scikit-learn-compatible deep anomaly and out-of-distribution detectors.

The public API is what this package and its public modules export:

* ``skood``: the detectors, :class:`RefinedDetector` (training-set refinement of any
  detector), :class:`PyODAdapter`, :func:`load`,
  :class:`TrainingDivergedError` and :class:`BaseDeepDetector` (to write a
  detector of one's own);
* :mod:`skood.metrics`: AUROC, AP, FPR@95TPR and scorers for ``GridSearchCV``;
* :mod:`skood.datasets`: loaders of the benchmark data sets and splits;
* :mod:`skood.pretrained`: frozen ImageNet encoders and the feature cache;
* :mod:`skood.persistence`: ``save`` / ``load`` without pickle.

Modules and names with a leading underscore are private and may change
without notice.
"""

from ._base import BaseDeepDetector
from ._detectors import (
    DistillNegDetector,
    DUMDetector,
    FeatureKNNDetector,
    NSADetector,
    RotAuxMSPDetector,
    SemSADDetector,
)
from ._refine import RefinedDetector
from ._training import TrainingDivergedError
from ._version import __version__
from .adapters import PyODAdapter
from .persistence import load

__all__ = [
    "BaseDeepDetector",
    "DUMDetector",
    "DistillNegDetector",
    "FeatureKNNDetector",
    "NSADetector",
    "PyODAdapter",
    "RefinedDetector",
    "RotAuxMSPDetector",
    "SemSADDetector",
    "TrainingDivergedError",
    "__version__",
    "load",
]
