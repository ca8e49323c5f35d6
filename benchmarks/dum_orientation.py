"""DUM's score orientation across seeds: how often its variances point the wrong way.

DUM scores a row by the size of the variance its f1 predicts; a run whose
AUROC is below 0.5 ranks the anomalies as the most certain rows (its score is
"flipped"). This script fits DUMDetector on min-max and on whitened rows on
a few ADBench sets, over several seeds, and reports the mean AUROC and the
flip rate (runs with AUROC < 0.5) of each, beside the distance of a row to the
centre of the training rows (its angle to the pole of the default's
:func:`~skood._detectors._dum_parts.whitening_lift`, i.e. its shrunk Mahalanobis
distance): the ranking that the objective's optimum, inverse-variance
weighting of the set members, approaches.

Protocol: the tabular suite's inductive split (``skood.datasets.tabular_split``,
stratified subsample to ``--max-samples`` rows, 70/30 split, MinMax scaling on
the contaminated training part); AUROC on the test part.

Each fit (data set, seed, variant) is one job of the benchmark engine
(``_suite.run_jobs``): cached in ``--out/cache``, so an interrupted run resumes,
spread over ``--n-jobs`` workers.

Usage::

    python benchmarks/dum_orientation.py --data-home ../shared/data --seeds 0 1 2 3 4

Writes ``runs.csv``, ``table.md`` and ``meta.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _suite import engine_arguments, execute, job, params_identity, write_csv, write_meta
from sklearn.metrics import roc_auc_score

from skood import DUMDetector
from skood.datasets import load_adbench, tabular_split

DATASETS = ["25_musk", "38_thyroid", "2_annthyroid", "31_satimage-2", "45_wine",
            "26_optdigits", "40_vowels", "39_vertebral"]

#: name -> DUMDetector parameters (the one without any: the default, which also gives
#: the anchor column)
VARIANTS = {
    "sets of m = 4, diagonal, min-max rows (the previous default)": {"tabular_scaling": "minmax"},
    "sets of m = 4, diagonal, whitened rows (default)": {},
}
ANCHOR = "Mahalanobis distance to the training centre"


def centre_distance(det: DUMDetector, X: np.ndarray) -> np.ndarray:
    """Anomaly score: minus the pole coordinate of the lifted row (its angle to the centre).

    The rows are standardised as the detector does (``feature_mean_``,
    ``feature_scale_``, float32) and lifted by its fitted ``encoder_``.
    """
    Z = ((np.asarray(X, dtype=np.float64) - det.feature_mean_) / det.feature_scale_)
    with torch.no_grad():
        z = det.encoder_(torch.from_numpy(Z.astype(np.float32)))
    return -z[:, -1].double().numpy()


def run_one(name: str, seed: int, variant: str, data_home: str,
            max_samples: int) -> list[dict]:
    """One fit (one job): its AUROC, and with the default variant the anchor's."""
    X, y = load_adbench(name, data_home)
    X_tr, X_te, _, y_te = tabular_split(X, y, "inductive", max_samples=max_samples,
                                        random_state=seed)
    t0 = time.perf_counter()
    det = DUMDetector(device="cpu", random_state=seed, **VARIANTS[variant]).fit(X_tr)
    auroc = roc_auc_score(y_te, -det.score_samples(X_te))
    rows = [{"dataset": name, "variant": variant, "seed": seed, "auroc": float(auroc),
             "fit_s": round(time.perf_counter() - t0, 2)}]
    if not VARIANTS[variant]:
        rows.append({"dataset": name, "variant": ANCHOR, "seed": seed,
                     "auroc": float(roc_auc_score(y_te, centre_distance(det, X_te))),
                     "fit_s": 0.0})
    return rows


def table(rows: list[dict], names: list[str], seeds: list[int]) -> str:
    cols = [*VARIANTS, ANCHOR]
    lines = ["| data set | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    flips = {c: 0 for c in cols}
    for name in names:
        cells = [name]
        for c in cols:
            a = 100 * np.array([r["auroc"] for r in rows
                                if r["dataset"] == name and r["variant"] == c])
            flips[c] += int((a < 50).sum())
            cells.append(f"{a.mean():.1f} +- {a.std():.1f} ({int((a < 50).sum())}/{len(a)})")
        lines.append("| " + " | ".join(cells) + " |")
    for c in cols:
        per = [100 * np.mean([r["auroc"] for r in rows
                              if r["dataset"] == n and r["variant"] == c]) for n in names]
        flips[c] = f"{np.mean(per):.1f} ({flips[c]}/{len(names) * len(seeds)})"
    lines.append("| **mean (flips)** | " + " | ".join(flips[c] for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default="../shared/data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--max-samples", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/dum_orientation"))
    engine_arguments(ap)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    jobs = [job(f"{name}__{i}__s{seed}",
                functools.partial(run_one, name, seed, variant, args.data_home, args.max_samples),
                {"dataset": name, "seed": seed, "max_samples": args.max_samples,
                 "anchor": not kw, "params": params_identity(
                     DUMDetector(device="cpu", random_state=seed, **kw))})
            for name in args.datasets for seed in args.seeds
            for i, (variant, kw) in enumerate(VARIANTS.items())]
    rows = execute(jobs, args.out / "cache", args)
    if not rows:
        print("no run done yet")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "runs.csv", rows)
    cmd = " ".join(["python benchmarks/dum_orientation.py",
                    *(sys.argv[1:] if argv is None else argv)])
    md = (
        "# DUM: score orientation across seeds\n\n"
        f"AUROC x 100, mean +- sd over seeds {args.seeds} (in brackets: runs with "
        "AUROC < 50, i.e. a flipped score); inductive split, at most "
        f"{args.max_samples} rows per data set. The last column ranks test rows by their "
        "Mahalanobis distance to the centre of the training rows (the angle to the pole "
        "of the default's whitening lift).\n\n" + table(rows, args.datasets, args.seeds)
        + f"\n\nCommand: `{cmd}`; wall time {time.perf_counter() - t_start:.0f} s.\n"
    )
    (args.out / "table.md").write_text(md)
    write_meta(args.out, "benchmarks/dum_orientation.py", argv)
    print(md)


if __name__ == "__main__":
    main()
