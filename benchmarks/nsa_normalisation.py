"""NSA's claim at small scale: normalisation helps, most under pollution (one-class Fashion-MNIST).

For each normal class k, pollution p in {0, 0.1} and seed: ``--n-train``
training images of class k plus ``round(p / (1 - p) * n_train)`` images of
other classes (:func:`skood.datasets.one_class_split`), an NSADetector
(SimSiam and the paper's crops of 8-100% unless ``--method`` says otherwise;
k-Cos(Mah) scoring unless ``--scoring`` says otherwise) trained
with NSA's two normalisations on and off, AUROC on a fixed random subset
of the test split (class k normal, the nine others anomalous). Writes
``runs.csv`` and ``table.md`` (mean and standard deviation over seeds,
x 100) under ``--out``.

The default run is 3 classes x 2 pollutions x 2 variants x 2 seeds = 24 fits
of 300 images. Usage::

    python benchmarks/nsa_normalisation.py --data-home ../shared/data \
        [--classes 0 1 8] [--n-train 300] [--epochs 10] [--seeds 0 1] \
        [--n-test 2000] [--device auto] [--method simsiam] [--scoring kcos-mah] \
        [--out benchmarks/results/nsa_normalisation]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _suite import write_csv

from skood.datasets import load_fashion_mnist, one_class_split
from skood.detectors.nsa import NSADetector
from skood.metrics import auroc

VARIANTS = {
    "norm on": {"normalize_features": True, "normalize_projection": True},
    "norm off": {"normalize_features": False, "normalize_projection": False},
}
POLLUTIONS = (0.0, 0.1)


def _fmt(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}"


def table(rows: list[dict]) -> str:
    """Markdown table: one line per (class, pollution), one column per variant."""
    keys = list(dict.fromkeys((r["class"], r["pollution"]) for r in rows))
    lines = ["| class | pollution | " + " | ".join(VARIANTS) + " | on - off |",
             "|---|---|" + "---|" * (len(VARIANTS) + 1)]
    for c, p in keys:
        cells = {v: [r["auroc"] for r in rows if (r["class"], r["pollution"], r["variant"])
                     == (c, p, v)] for v in VARIANTS}
        diff = np.subtract(cells["norm on"], cells["norm off"])
        lines.append(f"| {c} | {p:.0%} | " + " | ".join(_fmt(cells[v]) for v in VARIANTS)
                     + f" | {_fmt(list(diff))} |")
    for p in dict.fromkeys(k[1] for k in keys):
        cells = {v: [np.mean([r["auroc"] for r in rows if (r["class"], r["pollution"],
                                                            r["variant"], r["seed"])
                              == (c, p, v, s)])
                     for s in dict.fromkeys(r["seed"] for r in rows)
                     for c in dict.fromkeys(k[0] for k in keys)] for v in VARIANTS}
        diff = np.subtract(cells["norm on"], cells["norm off"])
        lines.append(f"| **mean** | **{p:.0%}** | " + " | ".join(
            f"**{_fmt(cells[v])}**" for v in VARIANTS) + f" | **{_fmt(list(diff))}** |")
    return "\n".join(lines)


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
    ap.add_argument("--scoring", default="kcos-mah",
                    choices=["kcos-mah", "kcos", "ccos", "ccos-mah"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/nsa_normalisation"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    X_tr, y_tr = load_fashion_mnist("train", args.data_home)
    X_te, y_te = load_fashion_mnist("test", args.data_home)
    test = np.random.RandomState(1234).permutation(len(X_te))[: args.n_test]
    X_te, y_te = X_te[test], y_te[test]
    rows: list[dict] = []
    for k in args.classes:
        for seed in args.seeds:
            rng = np.random.RandomState(seed)
            normal = rng.permutation(np.flatnonzero(y_tr == k))[: args.n_train]
            others = rng.permutation(np.flatnonzero(y_tr != k))[: args.n_train]
            sub = np.r_[normal, others]
            for p in POLLUTIONS:
                X, _, y_out = one_class_split(X_tr[sub], y_tr[sub], X_te, y_te, k,
                                              pollution=p, random_state=seed)
                for name, kw in VARIANTS.items():
                    t0 = time.perf_counter()
                    det = NSADetector(method=args.method, crop_scale=(0.08, 1.0),
                                      max_epochs=args.epochs, device=args.device,
                                      scoring=args.scoring, random_state=seed, **kw).fit(X)
                    a = auroc(y_out, det.score_samples(X_te))
                    rows.append({"class": k, "pollution": p, "variant": name, "seed": seed,
                                 "n_train": len(X), "auroc": a,
                                 "fit_s": time.perf_counter() - t0})
                    print(f"class {k} pollution {p:.0%} seed {seed} {name}: AUROC {100 * a:.1f}"
                          f" ({rows[-1]['fit_s']:.0f} s)", flush=True)
    write_csv(args.out / "runs.csv", rows)
    md = table(rows)
    (args.out / "table.md").write_text(
        f"NSADetector (method={args.method}, scoring={args.scoring}, the paper's crops "
        f"of 8-100%), one-class Fashion-MNIST, "
        f"{args.n_train} normal training images, {args.epochs} epochs, "
        f"{args.n_test} test images, seeds {args.seeds}; AUROC x 100, mean ± std over "
        f"seeds.\n\n{md}\n")
    print(md)


if __name__ == "__main__":
    main()
