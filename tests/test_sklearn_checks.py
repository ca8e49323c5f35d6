"""scikit-learn's own estimator checks on every skood detector (small budgets).

Every check runs; the few that cannot pass by design are listed below with the
reason, so a regression in any other check fails the suite.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from skood import SemSADDetector

EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "SemSADDetector": {
        # float32 networks: BLAS picks different kernels for different batch
        # sizes, so a subset's scores differ from the full batch's at ~1e-6
        # relative, above this check's 1e-7 tolerance. Batch independence at
        # float32 precision is tested in test_semsad.py.
        "check_methods_subset_invariance": "float32 batch-size rounding (~1e-6 relative)",
    },
}


def _tiny_detectors():
    return [
        SemSADDetector(encoder_epochs=1, discriminator_epochs=1, n_neighbors=2, batch_size=32,
                       device="cpu", random_state=0),
    ]


@parametrize_with_checks(
    _tiny_detectors(),
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
