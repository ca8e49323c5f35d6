"""Tabular suite: skood's detectors vs scikit-learn and PyOD baselines on ADBench/ODDS.

Every ADBench "Classical" ``.npz`` and every ODDS ``.mat`` file found under the
data directory (``--data-home``, else ``$SKOOD_DATA``, else ``../shared/data``
when it exists). Protocols:

* ``inductive`` (default): stratified subsample to at most 10,000 rows,
  stratified 70/30 split, MinMax scaling fitted on the training part,
  unsupervised fit on the contaminated training part, score the test part;
* ``transductive`` (DUM paper): fit and score all rows;
* ``clean``: the inductive split with the anomalies removed from the training
  part (the one-class setting the image papers assume).

Outputs: ``runs.csv`` (one row per run: AUROC, AP, precision@n, fit and score
seconds, peak memory), ``table.md`` (mean AUROC and AP per dataset and detector,
mean, mean rank), ``figure.png``, ``meta.json`` (versions, device, wall time).
Without ``--out`` they go to the suite's folder, ``benchmarks/results/t-ind``,
``t-clean`` or ``t-transductive`` (a budget other than ``cpu`` appends
``-<budget>``), whose ``runs.csv`` feeds the leaderboards (``python
benchmarks/leaderboard.py``): the sweep's runs are merged into it, replacing
older versions of the same runs and keeping the others. With ``--out DIR`` they
go to ``DIR/<protocol>/<budget>``. Every run is cached in the folder's
``cache``: an interrupted sweep resumes where it stopped.

Usage::

    python benchmarks/tabular_suite.py --sources adbench --protocol inductive --seeds 0 1 2
    python benchmarks/tabular_suite.py --datasets cardio thyroid --detectors SemSAD NSA \
        IsolationForest --protocol clean --n-jobs 2
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

from _suite import (
    Task,
    available_detectors,
    read_runs,
    select,
    sweep,
    sweep_arguments,
    write_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: the leaderboard suite of each protocol: its runs live in ``benchmarks/results/<suite>``
SUITE_FOLDERS = {"inductive": "t-ind", "clean": "t-clean", "transductive": "t-transductive"}


def default_data_home() -> str | None:
    """``$SKOOD_DATA``, else ``../shared/data`` beside the repository when it exists."""
    if os.environ.get("SKOOD_DATA"):
        return os.environ["SKOOD_DATA"]
    shared = ROOT.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def build_tabular(source: str, name: str, data_home: str | None, protocol: str, seed: int):
    """Load one file and split it under ``protocol`` (module level: picklable for joblib)."""
    from skood.datasets import load_adbench, load_odds, tabular_split

    X, y = (load_adbench if source == "adbench" else load_odds)(name, data_home)
    split = "transductive" if protocol == "transductive" else "inductive"
    X_tr, X_te, y_tr, y_te = tabular_split(X, y, protocol=split, random_state=seed)
    if protocol == "clean":
        X_tr = X_tr[y_tr == 0]
    return X_tr, None, X_te, y_te


def task_meta(protocol: str, source: str) -> dict:
    """What defines a tabular task besides its name (part of every run's key)."""
    return {"protocol": protocol, "source": source}


def suite_folder(name: str, budget: str) -> Path:
    """``benchmarks/results/<name>``: a suite's runs at the ``cpu`` budget (the leaderboards'),
    ``<name>-<budget>`` at another budget."""
    return RESULTS / (name if budget == "cpu" else f"{name}-{budget}")


def merge_runs(out: Path, before: dict[str, dict]) -> None:
    """Merge the runs ``out/runs.csv`` held before a sweep (``before``, by key) into the
    one the sweep wrote: a run of the sweep replaces the older versions of itself (same
    dataset, detector, seed and budget); every other run is kept. The tables and the
    figure are rewritten from the merged runs; meta.json keeps the sweep's command."""
    now = read_runs(out / "runs.csv")
    done = {(r["dataset"], r["detector"], r["seed"], r["budget"]) for r in now.values()}
    kept = [r for k, r in before.items() if k not in now
            and (r["dataset"], r["detector"], r["seed"], r["budget"]) not in done]
    if kept:
        meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
        write_outputs([*now.values(), *kept], out, meta)


def tabular_tasks(data_home: str | None, protocol: str, sources=("adbench", "odds")) -> list[Task]:
    """One task per ADBench classical and ODDS file under ``data_home``."""
    from skood.datasets import list_adbench, list_odds

    tasks = []
    for source in sources:
        lister = list_adbench if source == "adbench" else list_odds
        try:
            names = lister(data_home)
        except FileNotFoundError as exc:
            print(f"skipping {source}: {exc}", file=sys.stderr)
            continue
        for name in names:
            label = name if source == "adbench" else f"odds_{name}"
            tasks.append(Task(label, "tabular",
                              functools.partial(build_tabular, source, name, data_home, protocol),
                              meta=task_meta(protocol, source)))
    return tasks


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default=None, help="default: $SKOOD_DATA or ../shared/data")
    ap.add_argument("--protocol", choices=["inductive", "transductive", "clean"],
                    default="inductive")
    ap.add_argument("--sources", nargs="+", choices=["adbench", "odds"],
                    default=["adbench", "odds"])
    ap.add_argument("--datasets", nargs="*", default=None, help="names or substrings")
    sweep_arguments(ap, seeds=[0, 1, 2], out=None)
    args = ap.parse_args(argv)

    data_home = args.data_home or default_data_home()
    tasks = tabular_tasks(data_home, args.protocol, args.sources)
    if not tasks:
        raise SystemExit("no ADBench/ODDS files found: pass --data-home or set SKOOD_DATA")
    names = select([t.name for t in tasks], args.datasets, "dataset")
    tasks = [t for t in tasks if t.name in names]
    dets = select(available_detectors(), args.detectors, "detector")
    out = (suite_folder(SUITE_FOLDERS[args.protocol], args.budget) if args.out is None
           else args.out / args.protocol / args.budget)
    before = read_runs(out / "runs.csv")
    _, table = sweep(tasks, dets, args, out, "benchmarks/tabular_suite.py", argv,
                     protocol=args.protocol)
    merge_runs(out, before)
    print(table)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
