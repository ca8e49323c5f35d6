"""Growth: fit seconds, score seconds and peak memory of every detector against the rows.

One synthetic table per training size n (default 10k, 40k, 160k, 640k and
2.5M rows), each detector fitted at its defaults (``--budget cpu``) and
scored on one fixed test set, on the suite's engine (runs cached, an
interrupted sweep resumes, ``--n-jobs``, ``--report-only``).

The table (:func:`gaussian_mixture`): 16 features; the normal class is a
mixture of 6 Gaussians with means drawn from N(0, 3^2) per feature and
per-component per-feature standard deviations drawn from U(0.5, 1.5); 3% of
the training rows and 3% of the test rows are anomalies, drawn uniformly from
the normal rows' bounding box widened by 10% per side. The test set is
20,000 rows, the same for every n and every seed (its own seed stream), so
the score time measures the cost per test row as the training set grows.
Seeds change the training rows only.

Usage::

    python benchmarks/growth.py [--sizes 10000 40000 160000] \
        [--detectors NSA IsolationForest] [--seeds 0] [--report-only]

The default detectors are skood's five, the untrained FeatureKNN reference
and IsolationForest. Runs not made yet are marked "not run" in ``table.md``.
Outputs under ``--out`` (default ``benchmarks/results/growth``): ``runs.csv``,
``table.md`` (seconds, peak memory and AUROC per detector and size),
``figure.png`` (fit seconds, score seconds and peak MiB against n, log axes),
``meta.json``. The scoring-memory point (rows scored, one fitted detector)
is ``scoring_memory.py``'s.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import numpy as np
from _suite import SKOOD, Task, available_detectors, select, sweep, sweep_arguments

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10_000, 40_000, 160_000, 640_000, 2_500_000)
N_TEST = 20_000
N_FEATURES = 16
N_COMPONENTS = 6
CONTAMINATION = 0.03
DEFAULT_DETECTORS = (*SKOOD, "FeatureKNN", "IsolationForest")


def _draw(rng: np.random.Generator, n: int, means: np.ndarray, scales: np.ndarray,
          low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows: mixture rows, and ``CONTAMINATION`` of them uniform in [low, high]."""
    n_out = int(round(CONTAMINATION * n))
    comp = rng.integers(0, len(means), size=n - n_out)
    normal = means[comp] + scales[comp] * rng.standard_normal((n - n_out, means.shape[1]))
    outliers = rng.uniform(low, high, size=(n_out, means.shape[1]))
    X = np.concatenate([normal, outliers]).astype(np.float32)
    y = np.r_[np.zeros(n - n_out, dtype=int), np.ones(n_out, dtype=int)]
    perm = rng.permutation(n)
    return X[perm], y[perm]


def gaussian_mixture(n_train: int, seed: int, n_test: int = N_TEST):
    """The synthetic table: ``(X_train, None, X_test, y_test)`` (see the module docstring)."""
    shape_rng = np.random.default_rng(12345)  # the mixture itself: fixed
    means = 3.0 * shape_rng.standard_normal((N_COMPONENTS, N_FEATURES))
    scales = shape_rng.uniform(0.5, 1.5, size=(N_COMPONENTS, N_FEATURES))
    lo, hi = (means - 3 * scales).min(0), (means + 3 * scales).max(0)
    low, high = lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)
    X_te, y_te = _draw(np.random.default_rng([12345, 1]), n_test, means, scales, low, high)
    X_tr, _ = _draw(np.random.default_rng([12345, 2, seed]), n_train, means, scales, low, high)
    return X_tr, None, X_te, y_te


def size_name(n: int) -> str:
    """``gmm_10k``, ``gmm_2.5M``: the task name of one training size."""
    if n >= 1_000_000:
        return f"gmm_{n / 1e6:g}M"
    return f"gmm_{n / 1e3:g}k" if n >= 1000 else f"gmm_{n}"


def growth_table(rows: list[dict], sizes: list[int], detectors: list[str]) -> str:
    """Fit s / score s / peak MiB / AUROC x 100 per detector and size ("not run": missing)."""
    by = {(r["dataset"], r["detector"]): r for r in rows if int(r["seed"]) == min(
        int(q["seed"]) for q in rows)} if rows else {}
    head = "| detector | " + " | ".join(f"{size_name(n)[4:]}" for n in sizes) + " |"
    lines = ["Each cell: fit s / score s / peak MiB / AUROC x 100 (first seed).", "",
             head, "|---|" + "---:|" * len(sizes)]
    for det in detectors:
        cells = []
        for n in sizes:
            r = by.get((size_name(n), det))
            if r is None:
                cells.append("not run")
            elif r.get("error"):
                cells.append("failed: " + str(r["error"])[:40])
            else:
                cells.append(f"{float(r['fit_s']):.1f} / {float(r['score_s']):.1f} / "
                             f"{float(r['peak_mib']):.0f} / {100 * float(r['auroc']):.1f}")
        lines.append(f"| {det} | " + " | ".join(cells) + " |")
    ratio = ["", "Fit time ratio, largest size run over 160k (target <= 1.5):", ""]
    for det in detectors:
        base = by.get((size_name(160_000), det))
        done = [n for n in sizes if n > 160_000 and (size_name(n), det) in by
                and not by[(size_name(n), det)].get("error")]
        if base is not None and not base.get("error") and done:
            top = by[(size_name(done[-1]), det)]
            ratio.append(f"- {det}: {float(top['fit_s']) / float(base['fit_s']):.2f}x "
                         f"({size_name(done[-1])[4:]})")
    return "\n".join(lines + (ratio if len(ratio) > 3 else []))


def growth_figure(rows: list[dict], path: Path, detectors: list[str]) -> None:
    """Fit s, score s and peak MiB against the training rows, log-log, one line per detector."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    labels = ("fit seconds", f"score seconds ({N_TEST:,} rows)", "peak MiB")
    for key, ax, label in zip(("fit_s", "score_s", "peak_mib"), axes, labels, strict=True):
        for det in detectors:
            pts = sorted((int(r["n_train"]), float(r[key])) for r in rows
                         if r["detector"] == det and not r.get("error")
                         and math.isfinite(float(r[key])) and float(r[key]) > 0)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=det,
                        linestyle="--" if det == "IsolationForest" else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training rows")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Growth on a {N_FEATURES}-feature Gaussian mixture, defaults, CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="training rows")
    ap.add_argument("--n-test", type=int, default=N_TEST, help="test rows")
    sweep_arguments(ap, seeds=[0], out=ROOT / "benchmarks/results/growth",
                    detectors="default: skood's five, FeatureKNN and IsolationForest")
    args = ap.parse_args(argv)

    tasks = [Task(size_name(n), "tabular",
                  functools.partial(gaussian_mixture, n, n_test=args.n_test),
                  meta={"source": "synthetic gaussian mixture", "n_features": N_FEATURES,
                        "n_test": args.n_test})
             for n in args.sizes]
    dets = select(available_detectors(), args.detectors or list(DEFAULT_DETECTORS), "detector")
    rows, table = sweep(tasks, dets, args, args.out, "benchmarks/growth.py", argv,
                        sizes=args.sizes)
    text = growth_table(rows, args.sizes, dets)
    if table:
        text += "\n\nAUROC of every run:\n\n" + table
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "table.md").write_text(text + "\n")
    if rows:
        growth_figure(rows, Path(args.out) / "figure.png", dets)
    print(text + f"\n\nwritten to {args.out}")


if __name__ == "__main__":
    main()
