"""The main job: skood's detectors against IsolationForest and LOF.

Runs on data that ships with scikit-learn, so it needs no download:

* ``breast_cancer`` (WDBC): benign = normal, a 10% sample of malignant = anomalies;
* ``wine``: class 1 = normal, a 10% sample of classes 0 and 2 = anomalies;
* ``digits-k``: one-class 8x8 digit images, digit k = normal (trained on half
  of its images, tested on the other half of every digit).

Tabular sets follow the inductive protocol of ``shared/specs/benchmarks.md``
(stratified 70/30 split, MinMax scaling fitted on the training part, fit on
the contaminated training part, score the test part). Prints a Markdown table
of AUROC (mean over seeds) and writes it, with a CSV of every run, to
``--out``.

Usage::

    python benchmarks/main_job.py [--seeds 0 1 2] [--digits 0 1 2 ...] [--budget smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _report import auroc_table
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import MinMaxScaler

from skood import SemSADDetector
from skood.datasets import load_digits_images, split_half
from skood.metrics import auroc


def _subsample_anomalies(X, y_out, frac, rng):
    """Keep all normals and anomalies amounting to ``frac`` of the kept data."""
    normal, anomal = np.flatnonzero(y_out == 0), np.flatnonzero(y_out == 1)
    n_anom = max(2, round(frac / (1 - frac) * len(normal)))
    keep = np.r_[normal, rng.choice(anomal, n_anom, replace=False)]
    return X[keep], y_out[keep]


def tabular_tasks(seed: int):
    rng = np.random.RandomState(seed)
    bc = load_breast_cancer()
    wine = load_wine()
    for name, X, y_out in [
        ("breast_cancer", bc.data, (bc.target == 0).astype(int)),  # 0 = malignant
        ("wine", wine.data, (wine.target != 1).astype(int)),
    ]:
        Xs, ys = _subsample_anomalies(X, y_out, 0.1, rng)
        Xtr, Xte, _, yte = train_test_split(Xs, ys, test_size=0.3, stratify=ys, random_state=seed)
        scaler = MinMaxScaler().fit(Xtr)
        yield name, scaler.transform(Xtr), scaler.transform(Xte), yte


def digit_tasks(seed: int, digits):
    X, y = load_digits_images()
    Xa, ya, Xb, yb = split_half(X, y, random_state=seed)
    for k in digits:
        yield f"digits-{k}", Xa[ya == k], Xb, (yb != k).astype(int)


#: skood detector parameters per budget preset ("default": the detectors' own defaults)
BUDGETS = {"default": {}, "smoke": {"encoder_epochs": 1, "discriminator_epochs": 1}}


def detectors(seed: int, image: bool, budget: str = "default"):
    flat = (lambda X: X.reshape(len(X), -1) / 255.0) if image else (lambda X: X)
    return {
        "SemSAD": (SemSADDetector(random_state=seed, **BUDGETS[budget]), lambda X: X),
        "IsolationForest": (IsolationForest(random_state=seed), flat),
        "LOF": (LocalOutlierFactor(novelty=True), flat),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--digits", type=int, nargs="*", default=[0, 1, 2, 3])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="default")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/main_job"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    t_all = time.perf_counter()
    for seed in args.seeds:
        tasks = [(t, False) for t in tabular_tasks(seed)]
        tasks += [(t, True) for t in digit_tasks(seed, args.digits)]
        for (name, Xtr, Xte, yte), image in tasks:
            for det_name, (det, prep) in detectors(seed, image, args.budget).items():
                t0 = time.perf_counter()
                det.fit(prep(Xtr))
                fit_s = time.perf_counter() - t0
                score = auroc(yte, det.score_samples(prep(Xte)))
                rows.append((name, det_name, seed, score, fit_s))
                print(f"{name:14s} {det_name:16s} seed={seed} AUROC={score:.3f} fit={fit_s:.1f}s",
                      flush=True)

    table = auroc_table((r[0], r[1], r[3]) for r in rows)
    print(f"\nAUROC x 100, mean over seeds {args.seeds} ({time.perf_counter() - t_all:.0f} s)\n")
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    with open(args.out / "runs.csv", "w") as f:
        f.write("dataset,detector,seed,auroc,fit_seconds\n")
        f.writelines(f"{r[0]},{r[1]},{r[2]},{r[3]:.6f},{r[4]:.3f}\n" for r in rows)


if __name__ == "__main__":
    main()
