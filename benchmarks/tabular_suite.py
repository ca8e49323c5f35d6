"""ADBench "Classical" tabular suite: skood detectors vs IsolationForest.

Protocols:

* ``inductive`` (default, ``shared/specs/benchmarks.md``): stratified
  subsample to at most 10,000 rows, stratified 70/30 split, MinMax scaling
  fitted on the training part, unsupervised fit on the contaminated training
  part, AUROC on the test part;
* ``clean``: the same split, but the anomalies are removed from the training
  part (the one-class / "semi-supervised" setting the image papers assume).

Writes a CSV of every run and a Markdown table of mean AUROC.

Usage::

    python benchmarks/tabular_suite.py --data-home ../shared/data --seeds 0 1 2 \
        [--protocol inductive|clean] [--datasets breastw cardio] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _report import auroc_table
from sklearn.ensemble import IsolationForest

from skood import SemSADDetector
from skood.datasets import list_adbench, load_adbench, tabular_split
from skood.metrics import auroc

DETECTORS = {
    "SemSAD": lambda seed: SemSADDetector(random_state=seed),
    "IsolationForest": lambda seed: IsolationForest(random_state=seed),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--detectors", nargs="*", default=list(DETECTORS))
    ap.add_argument("--protocol", choices=["inductive", "clean"], default="inductive")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tabular"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.datasets or list_adbench(args.data_home)
    csv = args.out / "runs.csv"
    done = set()
    if csv.exists():  # resume: skip runs already recorded
        for line in csv.read_text().splitlines()[1:]:
            d, m, s = line.split(",")[:3]
            done.add((d, m, int(s)))
    else:
        csv.write_text("dataset,detector,seed,auroc,fit_seconds\n")
    for name in names:
        X, y = load_adbench(name, args.data_home)
        for seed in args.seeds:
            Xtr, Xte, ytr, yte = tabular_split(X, y, protocol="inductive", random_state=seed)
            if args.protocol == "clean":
                Xtr = Xtr[ytr == 0]
            for det_name in args.detectors:
                if (name, det_name, seed) in done:
                    continue
                det = DETECTORS[det_name](seed)
                t0 = time.perf_counter()
                det.fit(Xtr)
                fit_s = time.perf_counter() - t0
                score = auroc(yte, det.score_samples(Xte))
                with open(csv, "a") as f:
                    f.write(f"{name},{det_name},{seed},{score:.6f},{fit_s:.3f}\n")
                print(f"{name:22s} {det_name:16s} seed={seed} AUROC={score:.3f} "
                      f"fit={fit_s:.1f}s", flush=True)

    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    table = auroc_table((r[0], r[1], float(r[3])) for r in rows
                        if r[0] in names and r[1] in args.detectors)
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
