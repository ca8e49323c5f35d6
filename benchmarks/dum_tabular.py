"""DUM on the tabular data sets of its paper: DUMDetector vs IsolationForest and LOF.

Protocol (the paper's, section 4.2): *transductive* - fit on all rows of a
contaminated data set and score the same rows; AUROC with the anomalies as
positives. ``skood.datasets.tabular_split(protocol="transductive")``:
stratified subsample to at most ``--max-samples`` rows (10,000; skin and
cover are larger), MinMax scaling of all rows. DUMDetector then standardises
internally, maps back to the min-max range and lifts the rows onto the unit
sphere (its ``SphereLift``).

The paper's numbers (Wu et al. 2021, table 2) are printed beside ours for
reference only: the paper preprocessed the UCI originals itself (other
outlier definitions and counts), here the ODDS / ADBench files are used, so
compare the columns measured here with each other, not with the paper's.

Usage::

    python benchmarks/dum_tabular.py --data-home ../shared/data --seeds 0 1 2 \
        [--datasets wbc pima] [--dum-epochs 100] [--out DIR]

Writes ``dum_tabular.csv`` (one row per data set, detector and seed) and
``dum_tabular.md`` (mean +- std AUROC x 100) to ``--out``. Each (data set,
seed, detector) is one job of the benchmark engine (``_suite.run_jobs``),
cached in ``--out/cache/dum_tabular``: an interrupted run resumes, ``--n-jobs``
spreads the jobs over workers.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
from _suite import engine_arguments, execute, job, params_identity, write_csv
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor

from skood import DUMDetector
from skood.datasets import load_adbench, load_odds, tabular_split

#: name -> (loader, file name, paper DUM AUROC, paper IsolationForest AUROC)
DATASETS = {
    "arrhythmia": ("odds", "arrhythmia", 76.6, 72.1),
    "wbc": ("odds", "wbc", None, None),
    "ionosphere": ("adbench", "Ionosphere", 81.0, 86.2),
    "pima": ("adbench", "Pima", 81.5, 67.6),
    "wdbc": ("adbench", "WDBC", 96.9, 82.5),
    "spambase": ("adbench", "SpamBase", 83.4, 60.7),
    "optdigits": ("adbench", "optdigits", 99.6, 61.9),
    "skin": ("adbench", "skin", 96.2, 62.4),
    "cover": ("adbench", "cover", 91.4, 94.9),
}


DETECTORS = ("DUM", "IsolationForest", "LOF")


def make(det: str, seed: int, dum_epochs: int):
    """A fresh detector ``det`` (one of :data:`DETECTORS`) for one seed."""
    if det == "DUM":
        return DUMDetector(dum_epochs=dum_epochs, device="cpu", random_state=seed)
    if det == "IsolationForest":
        return IsolationForest(random_state=seed)
    return LocalOutlierFactor(n_neighbors=20)  # deterministic: one value for every seed


def anomaly_scores(est, X: np.ndarray) -> np.ndarray:
    """Fit ``est`` on X and score the same rows (transductive); higher = more abnormal."""
    est.fit(X)
    if isinstance(est, DUMDetector):
        return -est.train_scores_  # the training rows' own scores
    if isinstance(est, LocalOutlierFactor):
        return -est.negative_outlier_factor_
    return -est.score_samples(X)


def run_one(name: str, seed: int, det: str, data_home: str, max_samples: int,
            dum_epochs: int) -> list[dict]:
    """One detector on one data set and seed (one job)."""
    X, y = load(name, data_home)
    Xs, _, ys, _ = tabular_split(X, y, protocol="transductive", max_samples=max_samples,
                                 random_state=seed)
    t0 = time.perf_counter()
    auroc = roc_auc_score(ys, anomaly_scores(make(det, seed, dum_epochs), Xs))
    return [{"dataset": name, "detector": det, "seed": seed, "n": len(Xs),
             "n_anomalies": int(ys.sum()), "auroc": float(auroc),
             "seconds": round(time.perf_counter() - t0, 2)}]


def load(name: str, data_home: str):
    kind, file, _, _ = DATASETS[name]
    return load_odds(file, data_home) if kind == "odds" else load_adbench(file, data_home)


def markdown(rows: list[dict], names: list[str], dets: list[str]) -> str:
    head = ["data set", "n", "anomalies", *dets, "paper DUM", "paper IF"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        sel = [r for r in rows if r["dataset"] == name]
        if not sel:
            continue
        cells = [name, str(sel[0]["n"]), str(sel[0]["n_anomalies"])]
        for d in dets:
            a = 100 * np.array([r["auroc"] for r in sel if r["detector"] == d])
            cells.append(f"{a.mean():.1f} +- {a.std():.1f}")
        _, _, p_dum, p_if = DATASETS[name]
        cells += [f"{p_dum:.1f}" if p_dum else "-", f"{p_if:.1f}" if p_if else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default="../shared/data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--dum-epochs", type=int, default=100)
    ap.add_argument("--max-samples", type=int, default=10_000)
    ap.add_argument("--out", default="benchmarks/results")
    engine_arguments(ap)
    args = ap.parse_args(argv)
    out = Path(args.out)
    t_start = time.perf_counter()
    cmd_args = sys.argv[1:] if argv is None else argv
    jobs = [job(f"{name}__{det}__s{seed}",
                functools.partial(run_one, name, seed, det, args.data_home, args.max_samples,
                                  args.dum_epochs),
                {"dataset": DATASETS[name][:2], "seed": seed, "max_samples": args.max_samples,
                 "params": params_identity(make(det, seed, args.dum_epochs))},
                gpu=det == "DUM")
            for name in args.datasets for seed in args.seeds for det in DETECTORS]
    rows = execute(jobs, out / "cache" / "dum_tabular", args)
    if not rows:
        print("no run done yet")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "dum_tabular.csv", rows)
    md = (
        "DUM, transductive (fit and score the same contaminated rows), AUROC x 100, "
        f"mean +- std over seeds {args.seeds}; at most {args.max_samples} rows per data set "
        f"(stratified subsample); DUM {args.dum_epochs} epochs, defaults otherwise. "
        "Paper columns: Wu et al. table 2 on their own preprocessing of the "
        "UCI originals (different outlier counts), for reference only.\n\n"
        + markdown(rows, args.datasets, list(DETECTORS))
        + f"\nCommand: `python benchmarks/dum_tabular.py {' '.join(cmd_args)}`; "
        f"wall time {time.perf_counter() - t_start:.0f} s.\n"
    )
    (out / "dum_tabular.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
