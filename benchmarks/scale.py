"""Scale: every detector on the largest ADBench files, no subsampling, and the bank cap.

The inductive protocol of ``tabular_suite.py`` without its 10,000-row cap:
all rows of ``11_donors`` (619,326), ``16_http`` (567,498) and ``10_cover``
(286,048), stratified 70/30 split, MinMax scaling fitted on the training
part, fit on the (contaminated) training part, score the test part. Each
run records AUROC, AP, fit and score seconds and peak memory (the suite's
engine, so runs are cached and an interrupted sweep resumes).

``--max-bank N ...`` adds, for the detectors that score against a bank of
training features (SemSAD, NSA, DistillNeg), one variant per cap
(``"NSA(max_bank=N)"``: a seeded uniform subset of N training rows as the
scoring bank), so the table shows the cap's effect on AUROC and on the
scoring time next to the full bank.

Usage::

    python benchmarks/scale.py --data-home ../shared/data [--datasets 10_cover] \
        [--detectors DUM NSA IsolationForest] [--max-bank 10000 50000] [--seeds 0]

Outputs under ``--out`` (default ``benchmarks/results/scale/<budget>``): ``runs.csv``,
``table.md`` (AUROC and AP), ``times.md`` (fit and score minutes, peak memory
per run), ``figure.png``, ``meta.json``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

from _suite import BUDGETS, Task, available_detectors, run_sweep, select, write_outputs
from tabular_suite import default_data_home

ROOT = Path(__file__).resolve().parents[1]
LARGEST = ("11_donors", "16_http", "10_cover")
#: detectors with a bank of training features at scoring time (``max_bank``)
BANKED = ("SemSAD", "NSA", "DistillNeg")


def build_full(name: str, data_home: str | None, seed: int):
    """All rows of one ADBench file, inductive split (module level: picklable)."""
    from skood.datasets import load_adbench, tabular_split

    X, y = load_adbench(name, data_home)
    X_tr, X_te, _, y_te = tabular_split(X, y, protocol="inductive",
                                        max_samples=len(X), random_state=seed)
    return X_tr, None, X_te, y_te


def scale_detectors(detectors: list[str], caps: list[int]) -> list[str]:
    """The detectors, each banked one followed by its ``max_bank`` variants."""
    out = []
    for d in detectors:
        out.append(d)
        if d in BANKED:
            out += [f"{d}(max_bank={c})" for c in caps]
    return out


def times_table(rows: list[dict]) -> str:
    """Fit and score minutes and peak memory of every run, one line each."""
    lines = ["| dataset | detector | seed | n_train | n_test | fit min | score min | "
             "peak MiB | AUROC x 100 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["detector"], r["seed"])):
        if r.get("error"):
            lines.append(f"| {r['dataset']} | {r['detector']} | {r['seed']} | {r['n_train']} | "
                         f"{r['n_test']} | failed: {r['error'][:80]} | | | |")
            continue
        lines.append(f"| {r['dataset']} | {r['detector']} | {r['seed']} | {r['n_train']:,} | "
                     f"{r['n_test']:,} | {r['fit_s'] / 60:.1f} | {r['score_s'] / 60:.2f} | "
                     f"{r['peak_mib']:,.0f} | {100 * r['auroc']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default=None, help="default: $SKOOD_DATA or ../shared/data")
    ap.add_argument("--datasets", nargs="+", default=list(LARGEST), help="ADBench names")
    ap.add_argument("--detectors", nargs="*", default=None, help="default: all available")
    ap.add_argument("--max-bank", type=int, nargs="*", default=[],
                    help="bank caps to compare with the full bank (SemSAD, NSA, DistillNeg)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budget", choices=BUDGETS, default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    data_home = args.data_home or default_data_home()
    tasks = [Task(name, "tabular", functools.partial(build_full, name, data_home),
                  meta={"protocol": "inductive, all rows", "source": "adbench"})
             for name in args.datasets]
    dets = scale_detectors(select(available_detectors(), args.detectors, "detector"),
                           args.max_bank)
    out = args.out or ROOT / "benchmarks/results/scale" / args.budget
    t0 = time.perf_counter()
    rows = run_sweep(tasks, dets, args.seeds, args.budget, out, n_jobs=1,
                     progress=not args.no_progress)
    meta = {"script": "benchmarks/scale.py", "argv": sys.argv[1:] if argv is None else argv,
            "budget": args.budget, "seeds": args.seeds, "tasks": args.datasets,
            "wall_s_this_call": time.perf_counter() - t0}
    print(write_outputs(rows, out, meta))
    times = times_table(rows)
    (Path(out) / "times.md").write_text(times + "\n")
    print("\n" + times + f"\n\nwritten to {out}")


if __name__ == "__main__":
    main()
