"""The main job: skood's detectors against IsolationForest and LOF.

By default it runs on data that ships with scikit-learn, so it needs no
download:

* ``breast_cancer`` (WDBC): benign = normal, a 10% sample of malignant = anomalies;
* ``wine``: class 1 = normal, a 10% sample of classes 0 and 2 = anomalies;
* ``digits-k``: one-class 8x8 digit images, digit k = normal (trained on half
  of its images, tested on the other half of every digit).

Tabular sets follow the inductive protocol of ``tabular_suite.py``
(stratified 70/30 split, MinMax scaling fitted on the training part, fit on
the contaminated training part, score the test part). Prints a Markdown table
(AUROC and AP, mean over seeds, mean rank) and writes it with the CSV of every
run, a figure and the environment to ``--out``.

On these small sets skood's detectors are behind IsolationForest and LOF;
the summary says so (computed from the runs, :func:`verdict`) and points to
the leaderboards (:data:`LEADERBOARDS`), where the suites that show what
skood's detectors are good at live.

Given ``--data-home`` (a directory with the ADBench/ODDS files, e.g.
``../shared/data``) it runs the full tabular suite of ``tabular_suite.py``
instead, with the same detectors and budget.

Usage::

    python benchmarks/main_job.py [--seeds 0 1 2] [--digits 0 1 2 ...] [--budget smoke|cpu|gpu]
    python benchmarks/main_job.py --data-home ../shared/data --budget cpu --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
from _suite import SKOOD, Task, available_detectors, select, sweep, sweep_arguments

ROOT = Path(__file__).resolve().parents[1]
#: the leaderboards of every suite, in the documentation
LEADERBOARDS = "docs/benchmarks"
BASELINES = ("IsolationForest", "LOF")


def _subsample_anomalies(X, y_out, frac, rng):
    """Keep all normals and anomalies amounting to ``frac`` of the kept data."""
    normal, anomal = np.flatnonzero(y_out == 0), np.flatnonzero(y_out == 1)
    n_anom = max(2, round(frac / (1 - frac) * len(normal)))
    keep = np.r_[normal, rng.choice(anomal, n_anom, replace=False)]
    return X[keep], y_out[keep]


def build_sklearn_tabular(name: str, seed: int):
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    if name == "breast_cancer":
        d = load_breast_cancer()
        X, y_out = d.data, (d.target == 0).astype(int)  # 0 = malignant
    else:
        d = load_wine()
        X, y_out = d.data, (d.target != 1).astype(int)
    Xs, ys = _subsample_anomalies(X, y_out, 0.1, np.random.RandomState(seed))
    Xtr, Xte, _, yte = train_test_split(Xs, ys, test_size=0.3, stratify=ys, random_state=seed)
    scaler = MinMaxScaler().fit(Xtr)
    return scaler.transform(Xtr), None, scaler.transform(Xte), yte


def build_digits(k: int, seed: int):
    from skood.datasets import load_digits_images, split_half

    X, y = load_digits_images()
    Xa, ya, Xb, yb = split_half(X, y, random_state=seed)
    return Xa[ya == k], None, Xb, (yb != k).astype(int)


def verdict(rows: list[dict]) -> str:
    """One sentence: where skood's detectors stand against IsolationForest and LOF.

    A detector's standing is its mean AUROC over the tasks (each task's mean
    over seeds), the table's **mean** row.
    """
    def mean(det: str) -> float:
        per_task = {}
        for r in rows:
            if r["detector"] == det and r["auroc"] == r["auroc"]:
                per_task.setdefault(r["dataset"], []).append(r["auroc"])
        return float(np.mean([np.mean(v) for v in per_task.values()])) if per_task else np.nan

    dets = list(dict.fromkeys(r["detector"] for r in rows))
    ours = [d for d in dets if d.split("(")[0] in SKOOD]
    refs = [d for d in BASELINES if d in dets]
    where = f"see the leaderboards in {LEADERBOARDS} for the suites that show skood's strengths"
    here = "On scikit-learn's small tables" + (
        " and 8x8 digits" if any(r["dataset"].startswith("digits") for r in rows) else "")
    if not ours or not refs:
        return f"{here} skood's detectors are measured against no baseline; {where}."
    weaker = min(refs, key=mean)
    ahead = [d for d in ours if mean(d) >= mean(weaker)]
    against = " and ".join(refs)
    if not ahead:
        return f"{here} every skood detector is behind {against} (mean AUROC); {where}."
    rest = [d for d in ours if d not in ahead]
    return (f"{here} {', '.join(ahead)} {'is' if len(ahead) == 1 else 'are'} level with or "
            f"ahead of {weaker} (mean AUROC)"
            + (f", the other skood detectors behind {against}" if rest else "") + f"; {where}.")


def sklearn_tasks(digits) -> list[Task]:
    tasks = [Task(n, "tabular", functools.partial(build_sklearn_tabular, n))
             for n in ("breast_cancer", "wine")]
    tasks += [Task(f"digits-{k}", "image", functools.partial(build_digits, k)) for k in digits]
    return tasks


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--digits", type=int, nargs="*", default=[0, 1, 2, 3])
    ap.add_argument("--data-home", default=None,
                    help="run the full ADBench/ODDS tabular suite from this directory")
    sweep_arguments(ap, seeds=[0], out=ROOT / "benchmarks/results/main_job",
                    detectors="default: every skood detector, IsolationForest and LOF")
    args = ap.parse_args(argv)

    default = [k for k in SKOOD if k in available_detectors()] + ["IsolationForest", "LOF"]
    dets = select(available_detectors(), args.detectors, "detector") if args.detectors else default
    if args.data_home:
        import tabular_suite

        flags = {"--no-progress": args.no_progress, "--report-only": args.report_only,
                 "--prune": args.prune}
        tabular_suite.main(["--data-home", args.data_home, "--budget", args.budget,
                            "--seeds", *map(str, args.seeds), "--detectors", *dets,
                            "--n-jobs", str(args.n_jobs), "--out", str(args.out)]
                           + [f for f, on in flags.items() if on])
        return
    tasks = sklearn_tasks(args.digits)
    rows, table = sweep(tasks, dets, args, args.out, "benchmarks/main_job.py", argv)
    print(f"\nskood main job: {len(tasks)} tasks x {len(dets)} detectors x seeds {args.seeds}, "
          f"budget {args.budget!r}\n")
    print(table)
    if rows:
        print("\n" + verdict(rows))
    print(f"\nCSV, table, figure and environment written to {args.out}")


if __name__ == "__main__":
    main()
