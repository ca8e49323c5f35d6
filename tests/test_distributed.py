"""Beyond one machine: a benchmark sweep and GridSearchCV on a dask cluster via joblib.

A local dask cluster listens on loopback (127.0.0.1) with two single-threaded
worker processes; joblib's ``dask`` backend sends the work there exactly as it
would to a remote cluster (``Client("tcp://scheduler:8786")``). The benchmark modules
the sweep's jobs come from are shipped to the workers with ``Client.upload_file``, as
they would be to a remote cluster.
"""

from __future__ import annotations

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV

from skood._testing import ROOT, benchmark_module, tiny

distributed = pytest.importorskip("distributed")

_suite = benchmark_module("_suite")
sklearn_tasks = benchmark_module("main_job").sklearn_tasks


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        for name in ("_suite", "main_job"):  # the modules the jobs' functions live in
            c.upload_file(str(ROOT / "benchmarks" / f"{name}.py"), load=False)
        yield c
    cluster.close()


def _worker_pids(client) -> set[int]:
    import os

    return set(client.run(os.getpid).values())


def test_sweep_runs_on_dask_and_matches_local(client, tmp_path):
    tasks = sklearn_tasks([0])
    dets = ["IsolationForest", "LOF"]
    with parallel_config(backend="dask"):
        remote = _suite.run_sweep(tasks, dets, [0], "smoke", tmp_path / "dask", n_jobs=-1,
                                  progress=False)
    local = _suite.run_sweep(tasks, dets, [0], "smoke", tmp_path / "local", progress=False)
    assert len(remote) == len(tasks) * len(dets)
    key = lambda r: (r["dataset"], r["detector"])  # noqa: E731
    for a, b in zip(sorted(remote, key=key), sorted(local, key=key), strict=True):
        assert key(a) == key(b) and not a["error"]
        assert a["auroc"] == pytest.approx(b["auroc"])
    assert len(list((tmp_path / "dask/cache").glob("*.json"))) == len(remote)
    assert len(_worker_pids(client)) == 2


def test_grid_search_on_dask(client):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    X = (X - X.min(0)) / (X.max(0) - X.min(0))
    normal, anomalies = X[y == 1], X[y != 1][:12]
    X_all = np.vstack([normal, anomalies])
    y_all = np.r_[np.ones(len(normal), int), np.zeros(len(anomalies), int)]  # 1 = inlier
    half, anom = len(normal) // 2, np.arange(len(normal), len(X_all))
    folds = [(np.arange(half), np.r_[np.arange(half, len(normal)), anom]),
             (np.arange(half, len(normal)), np.r_[np.arange(half), anom])]
    det = tiny("SemSADDetector", batch_size=32)
    grid = {"n_neighbors": [2, 4]}
    with parallel_config(backend="dask"):
        remote = GridSearchCV(det, grid, scoring="roc_auc", cv=folds, n_jobs=-1).fit(X_all, y_all)
    local = GridSearchCV(det, grid, scoring="roc_auc", cv=folds).fit(X_all, y_all)
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"])
    assert remote.best_params_ == local.best_params_
