"""NSA's claim at small scale: normalisation helps, most under pollution (one-class Fashion-MNIST).

For each normal class k, pollution p in {0, 0.1} and seed: ``--n-train``
training images of class k plus ``round(p / (1 - p) * n_train)`` images of
other classes (:func:`skood.datasets.one_class_split`), an NSADetector
(``--method``, ``--crop-scale``, ``--lr``: SimSiam, the paper's crops of
8-100% and NSA's default lr unless they say otherwise) trained with NSA's two
normalisations on and off, AUROC on a fixed random subset of the test split
(class k normal, the nine others anomalous). Each trained encoder is scored
with every ``--scoring`` scorer (the first is the fitted one; the others
rebuild only the bank, :func:`rescored`). ``--reference`` adds the untrained
encoder on the same training set (FeatureKNN: the small CNN's initial
weights, kNN cosine), the row a trained encoder has to beat. Writes
``runs.csv``, ``table.md`` (mean and standard deviation over seeds, x 100)
and ``meta.json`` under ``--out``.

The bare default is 3 classes x 2 pollutions x 2 variants x 2 seeds = 24
fits of 300 images for 10 epochs, where the encoder learns little.
``claims.py`` runs it where the encoder has learnt something: NSA's image
defaults (SimCLR, crops of 50-100%, lr 1e-4) on 1,000 images for 12 epochs,
scored with k-Cos and k-Cos(Mah), beside the untrained encoder. Usage::

    python benchmarks/nsa_normalisation.py --data-home ../shared/data \
        [--classes 0 1 8] [--n-train 300] [--epochs 10] [--seeds 0 1] \
        [--n-test 2000] [--device auto] [--method simsiam] [--scoring kcos-mah kcos] \
        [--crop-scale 0.08 1] [--lr 1e-4] [--reference] [--n-jobs 2] \
        [--out benchmarks/results/nsa_normalisation]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
from _suite import environment, write_csv
from joblib import Parallel, delayed

from skood._detectors.feature_knn import FeatureKNNDetector
from skood._detectors.nsa import NSADetector
from skood.datasets import load_fashion_mnist, one_class_split
from skood.metrics import auroc

VARIANTS = {
    "norm on": {"normalize_features": True, "normalize_projection": True},
    "norm off": {"normalize_features": False, "normalize_projection": False},
}
POLLUTIONS = (0.0, 0.1)
UNTRAINED = "untrained (FeatureKNN)"


def _fmt(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}"


def rescored(det: NSADetector, scoring: str, X_train: np.ndarray) -> NSADetector:
    """A copy of the fitted ``det`` scored with ``scoring``: the same trained encoder, its
    banks rebuilt (NSA's own step 2). Training does not depend on ``scoring``, so this is
    what a fit with ``scoring`` and the same seed computes, without training again."""
    out = copy.deepcopy(det).set_params(scoring=scoring)
    out._fit_scorer(out._validate_input(X_train, reset=False))
    return out


def run_one(k: int, seed: int, p: float, X: np.ndarray, X_te: np.ndarray, y_out: np.ndarray,
            args: argparse.Namespace) -> list[dict]:
    """The rows of one training set: each variant under each scorer, and the untrained
    reference (FeatureKNN on the small CNN's initial weights) with ``--reference``."""
    rows = []
    base = {"class": k, "pollution": p, "seed": seed, "n_train": len(X)}
    kw = {"lr": args.lr} if args.lr is not None else {}
    for name, norm in VARIANTS.items():
        t0 = time.perf_counter()
        det = NSADetector(method=args.method, crop_scale=tuple(args.crop_scale),
                          max_epochs=args.epochs, device=args.device, scoring=args.scoring[0],
                          random_state=seed, **norm, **kw).fit(X)
        fit_s = time.perf_counter() - t0
        for scoring in args.scoring:
            d = det if scoring == args.scoring[0] else rescored(det, scoring, X)
            rows.append({**base, "variant": name, "scoring": scoring,
                         "setting": f"{scoring}, pollution {p:.0%}",
                         "auroc": auroc(y_out, d.score_samples(X_te)), "fit_s": fit_s})
    if args.reference:
        t0 = time.perf_counter()
        ref = FeatureKNNDetector(device=args.device, random_state=seed).fit(X)
        a = auroc(y_out, ref.score_samples(X_te))
        for scoring in args.scoring:
            rows.append({**base, "variant": UNTRAINED, "scoring": scoring,
                         "setting": f"{scoring}, pollution {p:.0%}", "auroc": a,
                         "fit_s": time.perf_counter() - t0})
    for r in rows:
        print(f"class {k} pollution {p:.0%} seed {seed} {r['variant']} ({r['scoring']}): "
              f"AUROC {100 * r['auroc']:.1f} ({r['fit_s']:.0f} s)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table: one line per (class, pollution), for each scorer the variants, their
    difference and (when run) the untrained reference."""
    cols = [v for v in (*VARIANTS, UNTRAINED) if any(r["variant"] == v for r in rows)]
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    classes = list(dict.fromkeys(r["class"] for r in rows))
    out = []
    for scoring in dict.fromkeys(r["scoring"] for r in rows):
        sel = [r for r in rows if r["scoring"] == scoring]
        keys = list(dict.fromkeys((r["class"], r["pollution"]) for r in sel))
        lines = [f"Scorer {scoring}:", "",
                 "| class | pollution | " + " | ".join(VARIANTS) + " | on - off | "
                 + " | ".join(c for c in cols if c not in VARIANTS) + " |",
                 "|---|---|" + "---|" * (len(cols) + 1)]
        for c, p in keys:
            cells = {v: [r["auroc"] for r in sel if (r["class"], r["pollution"], r["variant"])
                         == (c, p, v)] for v in cols}
            diff = np.subtract(cells["norm on"], cells["norm off"])
            lines.append(f"| {c} | {p:.0%} | " + " | ".join(_fmt(cells[v]) for v in VARIANTS)
                         + f" | {_fmt(list(diff))} | "
                         + " | ".join(_fmt(cells[v]) for v in cols if v not in VARIANTS) + " |")
        for p in dict.fromkeys(k[1] for k in keys):
            cells = {v: [np.mean([r["auroc"] for r in sel if (r["class"], r["pollution"],
                                                               r["variant"], r["seed"])
                                  == (c, p, v, s)]) for s in seeds for c in classes]
                     for v in cols}
            diff = np.subtract(cells["norm on"], cells["norm off"])
            lines.append(f"| **mean** | **{p:.0%}** | " + " | ".join(
                f"**{_fmt(cells[v])}**" for v in VARIANTS) + f" | **{_fmt(list(diff))}** | "
                + " | ".join(f"**{_fmt(cells[v])}**" for v in cols if v not in VARIANTS)
                + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--classes", type=int, nargs="+", default=[0, 1, 8])
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--method", default="simsiam", choices=["simsiam", "simclr"],
                    help="NSA's objective (the claim is the paper's, made with SimSiam)")
    ap.add_argument("--scoring", nargs="+", default=["kcos-mah"],
                    choices=["kcos-mah", "kcos", "ccos", "ccos-mah"],
                    help="scorers; the first is fitted, the others score the same encoder")
    ap.add_argument("--crop-scale", type=float, nargs=2, default=[0.08, 1.0],
                    help="NSA's crop_scale (the paper's 8-100%% by default)")
    ap.add_argument("--lr", type=float, default=None, help="NSA's lr (default: its own)")
    ap.add_argument("--reference", action="store_true",
                    help="add the untrained encoder (FeatureKNN) on the same training sets")
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/nsa_normalisation"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    X_tr, y_tr = load_fashion_mnist("train", args.data_home)
    X_te, y_te = load_fashion_mnist("test", args.data_home)
    test = np.random.RandomState(1234).permutation(len(X_te))[: args.n_test]
    X_te, y_te = X_te[test], y_te[test]
    jobs = []
    for k in args.classes:
        for seed in args.seeds:
            rng = np.random.RandomState(seed)
            normal = rng.permutation(np.flatnonzero(y_tr == k))[: args.n_train]
            others = rng.permutation(np.flatnonzero(y_tr != k))[: args.n_train]
            sub = np.r_[normal, others]
            for p in POLLUTIONS:
                X, _, y_out = one_class_split(X_tr[sub], y_tr[sub], X_te, y_te, k,
                                              pollution=p, random_state=seed)
                jobs.append(delayed(run_one)(k, seed, p, X, X_te, y_out, args))
    t0 = time.perf_counter()
    rows = [r for rs in Parallel(n_jobs=args.n_jobs)(jobs) for r in rs]
    write_csv(args.out / "runs.csv", rows)
    given = sys.argv[1:] if argv is None else list(argv)
    given = [a for i, a in enumerate(given)
             if a != "--data-home" and (i == 0 or given[i - 1] != "--data-home")]
    (args.out / "meta.json").write_text(json.dumps(
        {**environment(), "script": "benchmarks/nsa_normalisation.py", "argv": given,
         "wall_s": round(time.perf_counter() - t0, 1)}, indent=1) + "\n")
    md = table(rows)
    lr = "its default lr" if args.lr is None else f"lr={args.lr:g}"
    ref = ("; untrained: FeatureKNN (the small CNN's initial weights, kNN cosine k=2) on "
           "the same training set" if args.reference else "")
    (args.out / "table.md").write_text(
        f"NSADetector (method={args.method}, crop_scale={tuple(args.crop_scale)}, {lr}, "
        f"n_neighbors={NSADetector().n_neighbors}), "
        f"one-class Fashion-MNIST, {args.n_train} normal training images, {args.epochs} "
        f"epochs, {args.n_test} test images, seeds {args.seeds}; AUROC x 100, mean ± std "
        f"over seeds{ref}.\n\n{md}\n")
    print(md)


if __name__ == "__main__":
    main()
