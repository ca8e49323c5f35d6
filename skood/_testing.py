"""Test utilities: the tiny-budget detector registry and helpers shared by the test files.

Private, like :mod:`sklearn.utils._testing`: the test suite imports these
(``from skood._testing import tiny``) instead of importing ``conftest``,
which keeps only the pytest fixtures. Nothing here imports pytest.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import skood

__all__ = ["DETECTORS", "ROOT", "SHARED_DATA", "TINY", "benchmark_module", "run_benchmark",
           "shared_data_home", "tiny"]

#: detector -> the smallest budget that still trains every part of it (one line per detector)
TINY: dict[str, dict] = {
    "SemSADDetector": {"encoder_epochs": 2, "discriminator_epochs": 2},
    "NSADetector": {"max_epochs": 2},
    "DistillNegDetector": {"max_epochs": 1, "n_soft_classes": 64, "head_hidden_dim": 32,
                           "n_local_crops": 2, "batch_size": 32},
    "DUMDetector": {"dum_epochs": 10, "encoder_epochs": 1},
    "RotAuxMSPDetector": {"max_epochs": 2, "batch_size": 64},
    "FeatureKNNDetector": {},
}
#: the registered detectors this build of skood has
DETECTORS: list[str] = [n for n in TINY if hasattr(skood, n)]

#: the root of the source checkout (the folder holding ``skood/``, ``tests/``, ``benchmarks/``)
ROOT = Path(__file__).resolve().parents[1]
#: ../shared/data beside the repository (CI and the developers' machines have it)
SHARED_DATA = ROOT.parent / "shared" / "data"


def tiny(name: str, **overrides):
    """The detector ``name`` at its tiny budget, on the CPU, seeded; ``overrides`` win.

    Parameters
    ----------
    name : str
        A key of :data:`TINY`, e.g. ``"NSADetector"``.
    **overrides
        Constructor parameters that replace the tiny budget's.

    Returns
    -------
    estimator
        An unfitted detector.
    """
    return getattr(skood, name)(**{**TINY[name], "device": "cpu", "random_state": 0, **overrides})


def shared_data_home() -> Path | None:
    """The folder of the real benchmark data: :data:`SHARED_DATA`, else ``$SKOOD_DATA``.

    Returns
    -------
    Path or None
        None when neither exists.
    """
    env = os.environ.get("SKOOD_DATA")
    for p in (SHARED_DATA, Path(env) if env else None):
        if p is not None and p.is_dir():
            return p
    return None


def benchmark_module(name: str):
    """``benchmarks/<name>.py`` of the source checkout as a module, imported from its path.

    The benchmark scripts import their sibling modules by name (``from _suite import ...``),
    so ``_suite``, ``tabular_suite`` and ``_image_tasks`` are imported first, each under its
    own name in :data:`sys.modules`; ``sys.path`` is left as it is. A process that imports
    the scripts' modules by name (a joblib or dask worker unpickling a job) does not find
    them this way: run such sweeps as a subprocess or ship the files to the workers.

    Parameters
    ----------
    name : str
        The file name under ``benchmarks/`` without ``.py``, e.g. ``"_suite"``.

    Returns
    -------
    module
        The imported module (the same object on every call).
    """
    for dep in ("_suite", "tabular_suite", "_image_tasks", name):
        if dep not in sys.modules:
            spec = importlib.util.spec_from_file_location(dep, ROOT / "benchmarks" / f"{dep}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[dep] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[dep]
                raise
    return sys.modules[name]


def run_benchmark(script: str, data_home: Path, out: Path, *args: str) -> tuple[str, list]:
    """Run ``benchmarks/<script>`` on the real data, writing to ``out``; it must succeed.

    Parameters
    ----------
    script : str
        File name under ``benchmarks/`` of the source checkout.
    data_home : Path
        Passed as ``--data-home``.
    out : Path
        Passed as ``--out``; the script writes ``table.md`` and ``runs.csv`` there.
    *args : str
        More command-line arguments.

    Returns
    -------
    table : str
        The script's ``table.md``.
    runs : list of dict
        The rows of its ``runs.csv``.
    """
    res = subprocess.run([sys.executable, f"benchmarks/{script}", "--data-home", str(data_home),
                          "--out", str(out), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(out / "runs.csv") as f:
        return (out / "table.md").read_text(), list(csv.DictReader(f))
