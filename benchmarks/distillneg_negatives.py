"""DistillNeg's claim at small scale: negatives (lam=1) against plain self-distillation (lam=0).

Two settings, each run with ``lam=1`` (negatives, by default rotated training
images, the paper's "Rot. In-Dist") and ``lam=0`` (plain DINO: the same
network, views, schedules and seed, without the negative term):

* one-class Fashion-MNIST: ``--n-train`` training images of class k; test on
  a fixed random subset of ``--n-test`` test images, class k normal and the
  nine others anomalous (:func:`skood.datasets.one_class_split`);
* Fashion-MNIST vs MNIST: ``--n-train`` Fashion-MNIST training images of all
  classes; test on ``--n-test`` Fashion-MNIST test images (normal) and as
  many MNIST test images (anomalous) (:func:`skood.datasets.dataset_vs_dataset`).

Writes ``runs.csv`` (one row per setting, lam and seed) and ``table.md``
(AUROC x 100, mean ± standard deviation over seeds, and the paired
difference lam=1 - lam=0 with its spread) under ``--out``. A difference
smaller than its spread is reported as "no effect". Each fit (setting, seed,
lam) is one job of the benchmark engine (``_suite.run_jobs``): cached in
``--out/cache``, so an interrupted run resumes, spread over ``--n-jobs`` workers.

Usage::

    python benchmarks/distillneg_negatives.py --data-home ../shared/data \
        [--classes 0 8] [--n-train 500] [--epochs 8] [--seeds 0 1 2] \
        [--n-test 1000] [--negatives rotation] [--device auto] [--n-jobs 1] \
        [--out benchmarks/results/distillneg_negatives]
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
from _suite import ablation_table, engine_arguments, execute, job, params_identity, write_csv

from skood import DistillNegDetector
from skood.datasets import dataset_vs_dataset, load_fashion_mnist, load_mnist, one_class_split
from skood.metrics import auroc

LAMS = (0.0, 1.0)  # the reference first
FVM = "Fashion-MNIST vs MNIST"


@functools.lru_cache(maxsize=2)
def _test_split(data_home: str | None, n_test: int) -> tuple[np.ndarray, ...]:
    """Fashion-MNIST's training set and a fixed random subset of ``n_test`` test images
    (loaded once per process)."""
    X_tr, y_tr = load_fashion_mnist("train", data_home)
    X_te, y_te = load_fashion_mnist("test", data_home)
    test = np.random.RandomState(1234).permutation(len(X_te))[:n_test]
    return X_tr, y_tr, X_te[test], y_te[test]


def build(setting: int | None, seed: int, n_train: int, n_test: int,
          data_home: str | None) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """``(setting name, X_train, X_eval, y_outlier)``: one-class Fashion-MNIST class
    ``setting``, or Fashion-MNIST vs MNIST when ``setting`` is None."""
    X_tr, y_tr, X_te, y_te = _test_split(data_home, n_test)
    if setting is None:
        X_mn, _ = load_mnist("test", data_home)
        X_eval, y_out = dataset_vs_dataset(X_te, X_mn, max_out=n_test, random_state=1234)
        sub = np.random.RandomState(seed).permutation(len(X_tr))[:n_train]
        return FVM, X_tr[sub], X_eval, y_out
    rng = np.random.RandomState(seed)
    normal = rng.permutation(np.flatnonzero(y_tr == setting))[:n_train]
    X, X_eval, y_out = one_class_split(X_tr[normal], y_tr[normal], X_te, y_te, setting)
    return f"Fashion-MNIST class {setting} (one-class)", X, X_eval, y_out


def detector(lam: float, seed: int, opts: dict) -> DistillNegDetector:
    return DistillNegDetector(lam=lam, negatives=opts["negatives"], max_epochs=opts["epochs"],
                              backbone=opts["backbone"], device=opts["device"],
                              random_state=seed)


def run_one(setting: int | None, seed: int, lam: float, opts: dict,
            data_home: str | None) -> list[dict]:
    """One fit (one job): lam on one setting and seed."""
    name, X, X_eval, y_out = build(setting, seed, opts["n_train"], opts["n_test"], data_home)
    t0 = time.perf_counter()
    det = detector(lam, seed, opts).fit(X)
    a = auroc(y_out, det.score_samples(X_eval))
    return [{"setting": name, "lam": lam, "seed": seed, "n_train": len(X), "auroc": a,
             "fit_s": time.perf_counter() - t0}]


def table(rows: list[dict]) -> str:
    """Per setting (and the one-class mean): lam=1 against lam=0, paired by seed, with a verdict."""
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    one_class = [st for st in settings if st != FVM]
    groups = [(st, [st]) for st in settings]
    if len(one_class) > 1:  # per seed, the mean over classes
        groups.append(("one-class mean", one_class))
    out = []
    for title, members in groups:
        sub = [{"dataset": r["setting"], "detector": f"lam={r['lam']:g}", "seed": r["seed"],
                "auroc": r["auroc"]} for r in rows if r["setting"] in members]
        out += [f"**{title}**", "", ablation_table(sub, "lam=0"), ""]
    return "\n".join(out).rstrip()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--classes", type=int, nargs="*", default=[0, 8])
    ap.add_argument("--no-fvm", action="store_true", help="skip Fashion-MNIST vs MNIST")
    ap.add_argument("--n-train", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--negatives", default="rotation",
                    choices=["rotation", "perm-4", "perm-16", "pixel-perm"])
    ap.add_argument("--backbone", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distillneg_negatives"))
    engine_arguments(ap)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    opts = {k: getattr(args, k) for k in ("n_train", "n_test", "epochs", "negatives",
                                          "backbone", "device")}
    settings = [*args.classes, *([] if args.no_fvm else [None])]
    jobs = [job(f"{'fvm' if k is None else f'class{k}'}__lam={lam:g}__s{seed}",
                functools.partial(run_one, k, seed, lam, opts, args.data_home),
                {"setting": k, "seed": seed, "n_train": args.n_train, "n_test": args.n_test,
                 "params": params_identity(detector(lam, seed, opts))})
            for k in settings for seed in args.seeds for lam in LAMS]
    rows = execute(jobs, args.out / "cache", args)
    if not rows:
        print("no run done yet")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "runs.csv", rows)
    md = table(rows)
    minutes = (time.perf_counter() - t_start) / 60
    (args.out / "table.md").write_text(
        f"DistillNegDetector (backbone={args.backbone}, negatives={args.negatives}), "
        f"{args.n_train} training images, {args.epochs} epochs, {args.n_test} in-distribution "
        f"test images, seeds {args.seeds}; AUROC x 100, mean ± std over seeds "
        f"({minutes:.0f} min).\n\n{md}\n")
    print(md)


if __name__ == "__main__":
    main()
