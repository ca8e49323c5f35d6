"""Scorers on frozen pretrained features: what kNN on EfficientNet-Lite0 features depends on.

On the image suite's one-class splits (seed 0, ``--budget cpu``: 1,000
training images of class k, 2,000 test images; ``smoke``: 64 and 300), the
frozen encoder's pooled features (as FeatureKNNDetector computes them, read
from the suite's feature cache, :data:`_suite.FEATURE_CACHE`, or computed and
cached) are scored several ways, all with skood's scorers
(:mod:`skood._scoring`); AUROC with the other classes as positives:

* ``kcos k=K``: mean cosine similarity to the K nearest training features
  (K = 2 is DN2 and FeatureKNN's default; K = 1 is the NSA paper's k-Cos, and
  NSADetector's default, ``n_neighbors=5``, averages the angles to the 5
  nearest instead of the cosines);
* ``kcos standardised`` / ``kcos centred``: the same (K = 2) after
  standardising the features with the training mean and standard deviation
  (what frozen-feature mode feeds the detectors' tabular algorithms) or after
  subtracting the training mean only;
* ``L2 k=2``: mean Euclidean distance to the 2 nearest training features;
* ``kcos-mah``: NSA's k-Cos(Mah) (Ledoit-Wolf whitening, then the nearest
  cosine);
* ``mahalanobis``: the squared Mahalanobis distance to the training mean
  (Ledoit-Wolf covariance; Rippel et al.'s Gaussian on pretrained features).

Usage::

    python benchmarks/pretrained_scorers.py --dataset cifar10 fashion \
        --data-home ../shared/data --out benchmarks/results/pretrained_scorers

Writes ``runs.csv`` (one row per task and scorer), ``table.md`` and
``meta.json`` to ``--out``. Each task is one job of the benchmark engine
(``_suite.run_jobs``): cached in ``--out/cache``, so an interrupted run
resumes, spread over ``--n-jobs`` workers.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
import torch
from _image_tasks import image_tasks
from _suite import FEATURE_CACHE, Task, engine_arguments, execute, job, write_csv, write_meta
from sklearn.metrics import roc_auc_score
from tabular_suite import default_data_home

from skood import FeatureKNNDetector
from skood._scoring import fit_whitening, knn_cosine, knn_euclidean, whiten
from skood.pretrained import load_pretrained


def _kcos(train: torch.Tensor, test: torch.Tensor, k: int) -> np.ndarray:
    return knn_cosine(test, train, k)[0].double().mean(1).numpy()


def _standardised(train: torch.Tensor, test: torch.Tensor, centre_only: bool) -> tuple:
    mean = train.double().mean(0)
    scale = torch.ones_like(mean) if centre_only else train.double().std(0).clamp_min(1e-12)
    return ((train - mean) / scale).float(), ((test - mean) / scale).float()


def _kcos_mah(train: torch.Tensor, test: torch.Tensor) -> np.ndarray:
    mean, W = fit_whitening(train)
    return _kcos(whiten(train, mean, W), whiten(test, mean, W), 1)


def _mahalanobis(train: torch.Tensor, test: torch.Tensor) -> np.ndarray:
    mean, W = fit_whitening(train)
    return -whiten(test, mean, W).double().pow(2).sum(1).numpy()


#: name -> normality score (higher = more normal) of the test features given the training ones
SCORERS = {
    "kcos k=1 (NSA paper)": lambda tr, te: _kcos(tr, te, 1),
    "kcos k=2 (DN2)": lambda tr, te: _kcos(tr, te, 2),
    "kcos k=5": lambda tr, te: _kcos(tr, te, 5),
    "kcos standardised": lambda tr, te: _kcos(*_standardised(tr, te, False), 2),
    "kcos centred": lambda tr, te: _kcos(*_standardised(tr, te, True), 2),
    "L2 k=2": lambda tr, te: -knn_euclidean(te, tr, 2)[0].double().mean(1).numpy(),
    "kcos-mah": _kcos_mah,
    "mahalanobis": _mahalanobis,
}


def features(encoder, X_train, X_test) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's features of the training and test images, as FeatureKNN computes them:
    the bank (``bank_``) of a FeatureKNNDetector fitted on each set."""
    return tuple(FeatureKNNDetector(backbone=encoder).fit(X).bank_ for X in (X_train, X_test))


def run_one(dataset: str, task: Task, backbone: str) -> list[dict]:
    """Every scorer on one task's frozen features (one job)."""
    X_train, _, X_test, y_outlier = task.build(0)
    train, test = features(load_pretrained(backbone, cache_dir=FEATURE_CACHE), X_train, X_test)
    return [{"dataset": dataset, "task": task.name, "scorer": name,
             "auroc": float(roc_auc_score(np.asarray(y_outlier), -score(train, test)))}
            for name, score in SCORERS.items()]


def markdown(rows: list[dict], dataset: str) -> str:
    tasks = list(dict.fromkeys(r["task"] for r in rows if r["dataset"] == dataset))
    names = list(SCORERS)
    auc = {(r["task"], r["scorer"]): 100 * r["auroc"] for r in rows}
    lines = ["| task | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(f"{auc[t, n]:.1f}" for n in names) + " |")
    means = [np.mean([auc[t, n] for t in tasks]) for n in names]
    lines.append("| **mean** | " + " | ".join(f"**{m:.1f}**" for m in means) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", nargs="+", default=["cifar10", "fashion"],
                    choices=["cifar10", "fashion", "mnist"])
    ap.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--budget", choices=["smoke", "cpu", "gpu"], default="cpu",
                    help="split sizes of the image suite (cpu: 1,000 training and 2,000 "
                         "test images; smoke: 64 and 300; gpu: all)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/pretrained_scorers"))
    engine_arguments(ap)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    home = args.data_home or default_data_home()
    jobs = [job(f"{task.name}__{args.backbone}", functools.partial(run_one, ds, task,
                                                                    args.backbone),
                {"task": task.name, "meta": task.meta, "backbone": args.backbone,
                 "scorers": list(SCORERS)})
            for ds in args.dataset
            for task in image_tasks(ds, "one-class", args.classes, args.budget, home, 0.0,
                                    "mnist")]
    rows = execute(jobs, args.out / "cache", args)
    if not rows:
        print("no run done yet")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "runs.csv", rows)
    datasets = [ds for ds in args.dataset if any(r["dataset"] == ds for r in rows)]
    md = "\n\n".join(
        f"{ds} one-class, frozen {args.backbone} features (seed 0), AUROC x 100:\n\n"
        + markdown(rows, ds) for ds in datasets
    )
    (args.out / "table.md").write_text(md + "\n")
    write_meta(args.out, "benchmarks/pretrained_scorers.py", argv,
               wall_s=round(time.perf_counter() - t0, 1))
    print(md)


if __name__ == "__main__":
    main()
