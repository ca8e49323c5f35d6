"""NSA's claim at small scale: normalisation helps, most under pollution (one-class Fashion-MNIST).

For each normal class k, pollution p in {0, 0.1} and seed: ``--n-train``
training images of class k plus ``round(p / (1 - p) * n_train)`` images of
other classes (:func:`skood.datasets.one_class_split`), an NSADetector
(``--method``, ``--crop-scale``, ``--lr``: SimSiam, the paper's crops of
8-100% and NSA's default lr unless they say otherwise) trained with NSA's two
normalisations on and off, AUROC on a fixed random subset of the test split
(class k normal, the nine others anomalous). Each ``--scoring`` scorer is a
fit of its own with that ``scoring`` and the same seed: training does not
depend on the scorer, so every scorer of a variant scores the same trained
encoder (through the public API; the encoder is trained once per scorer).
``--reference`` adds the untrained encoder on the same training set
(FeatureKNN: the small CNN's initial weights, kNN cosine), the row a trained
encoder has to beat. Each fit is one job of the benchmark engine
(``_suite.run_jobs``): cached in ``--out/cache``, so an interrupted run
resumes, spread over ``--n-jobs`` workers. Writes ``runs.csv``, ``table.md``
(mean and standard deviation over seeds, x 100) and ``meta.json`` under
``--out``.

The bare default is 3 classes x 2 pollutions x 2 variants x 2 seeds = 24
fits (per scorer) of 300 images for 10 epochs, where the encoder learns little.
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
import functools
import sys
import time
from pathlib import Path

import numpy as np
from _suite import engine_arguments, execute, job, params_identity, write_csv, write_meta

from skood import FeatureKNNDetector, NSADetector
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


@functools.lru_cache(maxsize=2)
def _fashion(data_home: str | None, n_test: int) -> tuple[np.ndarray, ...]:
    """Fashion-MNIST's training set and a fixed random subset of ``n_test`` test images
    (loaded once per process)."""
    X_tr, y_tr = load_fashion_mnist("train", data_home)
    X_te, y_te = load_fashion_mnist("test", data_home)
    test = np.random.RandomState(1234).permutation(len(X_te))[:n_test]
    return X_tr, y_tr, X_te[test], y_te[test]


def build(k: int, seed: int, p: float, n_train: int, n_test: int,
          data_home: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, X_test, y_outlier)``: class k's training set polluted with p."""
    X_tr, y_tr, X_te, y_te = _fashion(data_home, n_test)
    rng = np.random.RandomState(seed)
    normal = rng.permutation(np.flatnonzero(y_tr == k))[:n_train]
    others = rng.permutation(np.flatnonzero(y_tr != k))[:n_train]
    sub = np.r_[normal, others]
    X, _, y_out = one_class_split(X_tr[sub], y_tr[sub], X_te, y_te, k, pollution=p,
                                  random_state=seed)
    return X, X_te, y_out


def detector(variant: str, scoring: str, seed: int, opts: dict):
    """The detector of one row: NSA with a variant's normalisations and ``scoring``, or
    the untrained reference (FeatureKNN on the small CNN's initial weights)."""
    if variant == UNTRAINED:
        return FeatureKNNDetector(device=opts["device"], random_state=seed)
    kw = {"lr": opts["lr"]} if opts["lr"] is not None else {}
    return NSADetector(method=opts["method"], crop_scale=tuple(opts["crop_scale"]),
                       max_epochs=opts["epochs"], device=opts["device"], scoring=scoring,
                       random_state=seed, **VARIANTS[variant], **kw)


def run_one(k: int, seed: int, p: float, variant: str, scorings: list[str], opts: dict,
            data_home: str | None) -> list[dict]:
    """One fit (one job) and its rows: an NSA variant with its one scorer, or the untrained
    reference (one fit whose AUROC stands beside every scorer)."""
    X, X_te, y_out = build(k, seed, p, opts["n_train"], opts["n_test"], data_home)
    base = {"class": k, "pollution": p, "seed": seed, "n_train": len(X)}
    t0 = time.perf_counter()
    det = detector(variant, scorings[0], seed, opts).fit(X)
    a = auroc(y_out, det.score_samples(X_te))
    return [{**base, "variant": variant, "scoring": scoring,
             "setting": f"{scoring}, pollution {p:.0%}", "auroc": a,
             "fit_s": time.perf_counter() - t0} for scoring in scorings]


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
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/nsa_normalisation"))
    engine_arguments(ap)
    args = ap.parse_args(argv)
    opts = {k: getattr(args, k) for k in ("n_train", "n_test", "epochs", "device", "method",
                                          "crop_scale", "lr")}
    # per training set: each variant under each scorer, then the untrained reference
    arms = [(v, [s]) for v in VARIANTS for s in args.scoring]
    if args.reference:
        arms.append((UNTRAINED, list(args.scoring)))
    jobs = [job(f"class{k}__p{round(100 * p)}__s{seed}__{variant}__{scorings[0]}",
                functools.partial(run_one, k, seed, p, variant, scorings, opts, args.data_home),
                {"class": k, "seed": seed, "pollution": p, "n_train": args.n_train,
                 "n_test": args.n_test, "scorings": scorings,
                 "params": params_identity(detector(variant, scorings[0], seed, opts))})
            for k in args.classes for seed in args.seeds for p in POLLUTIONS
            for variant, scorings in arms]
    t0 = time.perf_counter()
    rows = execute(jobs, args.out / "cache", args)
    if not rows:
        print("no run done yet")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "runs.csv", rows)
    given = sys.argv[1:] if argv is None else list(argv)
    given = [a for i, a in enumerate(given)
             if a != "--data-home" and (i == 0 or given[i - 1] != "--data-home")]
    write_meta(args.out, "benchmarks/nsa_normalisation.py", given,
               wall_s=round(time.perf_counter() - t0, 1))
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
