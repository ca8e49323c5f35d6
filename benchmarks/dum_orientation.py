"""DUM's score orientation across seeds: how often its variances point the wrong way.

DUM scores a row by the size of the variance its f1 predicts; a run whose
AUROC is below 0.5 ranks the anomalies as the most certain rows (its score is
"flipped"). This script fits DUMDetector on min-max and on whitened rows on
a few ADBench sets, over several seeds, and reports the mean AUROC and the
flip rate (runs with AUROC < 0.5) of each, beside the distance of a row to the
centre of the training rows (its angle to the pole of the default's
:func:`~skood._detectors.dum.whitening_lift`, i.e. its shrunk Mahalanobis
distance): the ranking that the objective's optimum, inverse-variance
weighting of the set members, approaches.

Protocol: the tabular suite's inductive split (``skood.datasets.tabular_split``,
stratified subsample to ``--max-samples`` rows, 70/30 split, MinMax scaling on
the contaminated training part); AUROC on the test part.

Usage::

    python benchmarks/dum_orientation.py --data-home ../shared/data --seeds 0 1 2 3 4

Writes ``runs.csv`` and ``table.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _suite import environment, write_csv
from sklearn.metrics import roc_auc_score

from skood._detectors.dum import DUMDetector
from skood.datasets import load_adbench, tabular_split

DATASETS = ["25_musk", "38_thyroid", "2_annthyroid", "31_satimage-2", "45_wine",
            "26_optdigits", "40_vowels", "39_vertebral"]

#: name -> DUMDetector parameters
VARIANTS = {
    "sets of m = 4, diagonal, min-max rows (the previous default)": {"tabular_scaling": "minmax"},
    "sets of m = 4, diagonal, whitened rows (default)": {},
}
ANCHOR = "Mahalanobis distance to the training centre"


def centre_distance(det: DUMDetector, X: np.ndarray) -> np.ndarray:
    """Anomaly score: minus the pole coordinate of the lifted row (its angle to the centre)."""
    with torch.no_grad():
        z = det.encoder_(torch.as_tensor(det._validate_input(X, reset=False)))
    return -z[:, -1].double().numpy()


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
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, t_start = [], time.perf_counter()
    for name in args.datasets:
        X, y = load_adbench(name, args.data_home)
        for seed in args.seeds:
            X_tr, X_te, _, y_te = tabular_split(X, y, "inductive", max_samples=args.max_samples,
                                                random_state=seed)
            for variant, kw in VARIANTS.items():
                t0 = time.perf_counter()
                det = DUMDetector(device="cpu", random_state=seed, **kw).fit(X_tr)
                auroc = roc_auc_score(y_te, -det.score_samples(X_te))
                rows.append({"dataset": name, "variant": variant, "seed": seed,
                             "auroc": float(auroc), "fit_s": round(time.perf_counter() - t0, 2)})
                print(f"{name:14s} seed {seed} {variant:45s} {auroc:.3f}", flush=True)
            rows.append({"dataset": name, "variant": ANCHOR, "seed": seed,
                         "auroc": float(roc_auc_score(y_te, centre_distance(det, X_te))),
                         "fit_s": 0.0})
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
    (args.out / "meta.json").write_text(json.dumps(
        {**environment(), "script": "benchmarks/dum_orientation.py",
         "argv": sys.argv[1:] if argv is None else argv}, indent=1) + "\n")
    print(md)


if __name__ == "__main__":
    main()
