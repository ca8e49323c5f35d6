"""RotAuxMSP's claim at a CPU budget: the rotation auxiliary task raises MSP's average precision.

The paper's protocol (Ahmed & Courville 2020, section 5, table 3), on
Fashion-MNIST instead of CIFAR-10: hold one class out, train a classifier
with labels on the other nine, and score the test set (the held-out class is
the anomaly, so a random detector has average precision 0.1). For each held-out
class and seed, two networks are trained on the same images from the same
initialisation seed:

* ``lam=0``: classification only (the baseline);
* ``lam=0.5``: with the rotation auxiliary task (the paper's CIFAR-10 weight);

and each is scored by MSP and by ODIN (T = 1000, eps = 5e-5): variants
"lam=0 MSP" (the reference), "lam=0 ODIN", "lam=0.5 MSP", "lam=0.5 ODIN", and
also "lam=0.5 MSP*rotation" (skood's default score, not the paper's). The
table gives the mean ± std over seeds of the mean over held-out classes, and
the difference to "lam=0 MSP" paired by seed, with "no effect" when its mean
is not larger than its spread.

Budget: by default held-out class 6 (shirt), 1,000 training images per kept
class (9,000), 1,000 test images (stratified), 10 epochs of the small CNN with
dropout 0.3 before the heads (the paper's WRN uses 0.3), batch 128, on one CPU
thread: 187 s per lam=0 fit and 447 s per lam=0.5 fit, 1,949 s for three
seeds. At this budget the classifier is 92.4% (lam=0) and 91.7% (lam=0.5)
accurate on the kept classes (mean over seeds 0-2; the table records it;
the paper's: 96% on CIFAR-10). The earlier budget (100 images per class, 4
epochs: 32 SGD steps, 8 of them at lr 0.1) gave 55-64% on held-out classes
0, 5 and 8; 200 images per class for 8 epochs gave 78% with the shirt held
out. The shirt was chosen because it is the class Fashion-MNIST classifiers
confuse most (with T-shirts, pullovers and coats), so the kept classes give
the budget its best chance of 90%; held-out T-shirt, sandal or bag
(``--held-out 0 5 8``) were not run at this budget. The paper trains a
WRN-28-10 for 200 epochs on all 45,000 images
(``--n-train 6000 --epochs 200 --backbone resnet18 --device cuda`` is the way
there).

Each network (held-out class, seed, lam) is one job of the benchmark engine
(``_suite.run_jobs``): cached in ``--out/cache``, so an interrupted run resumes,
spread over ``--n-jobs`` workers.

Usage::

    python benchmarks/rotaux_holdout.py --data-home ../shared/data --seeds 0 1 2 [--n-jobs 2]

Outputs (``--out``, default ``benchmarks/results/rotaux_holdout``): ``runs.csv``
(one row per held-out class, seed and variant: ``held_out, seed, variant,
auroc, ap, accuracy, fit_seconds, n_train, epochs``) and ``table.md``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _image_tasks import load_split
from _suite import ablation_table, engine_arguments, execute, job, params_identity, write_csv
from tabular_suite import default_data_home

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "lam=0 MSP"
FIELDS = ["held_out", "seed", "variant", "auroc", "ap", "accuracy", "fit_seconds", "n_train",
          "epochs"]
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")


def split(data: tuple[np.ndarray, ...], held_out: int, n_train: int, n_test: int | None,
          seed: int) -> tuple[np.ndarray, ...]:
    """``n_train`` images of each kept class, ``n_test`` stratified test images.

    Returns ``X_tr, y_tr`` (labels remapped to 0..8), ``X_te``, ``y_outlier``
    (1 = held-out class) and the test rows' original labels.
    """
    from sklearn.model_selection import train_test_split

    from skood.datasets import hold_one_class_out

    X_train, y_train, X_test, y_test = data
    rng = np.random.RandomState(seed)
    tr = np.concatenate([rng.permutation(np.flatnonzero(y_train == c))[:n_train]
                         for c in np.unique(y_train) if c != held_out])
    tr = np.r_[tr, np.flatnonzero(y_train == held_out)[:1]]  # dropped by hold_one_class_out
    te = np.arange(len(X_test))
    if n_test is not None and n_test < len(X_test):
        te, _ = train_test_split(te, train_size=n_test, stratify=y_test, random_state=seed)
    return (*hold_one_class_out(X_train[tr], y_train[tr], X_test[te], y_test[te], held_out,
                                random_state=seed), y_test[te])


def detector(lam: float, seed: int, opts: dict):
    """The arm ``lam`` of one seed: a RotAuxMSPDetector fitted with MSP scoring."""
    from skood import RotAuxMSPDetector

    return RotAuxMSPDetector(lam=lam, scoring="msp", max_epochs=opts["epochs"],
                             batch_size=opts["batch_size"], backbone=opts["backbone"],
                             dropout=opts["dropout"], device=opts["device"], random_state=seed)


def run_one(held_out: int, seed: int, lam: float, opts: dict,
            data_home: str | None) -> list[dict]:
    """Train one network; score it with each of its variants' scorers (one job)."""
    from skood.metrics import auroc, average_precision

    data = load_split("fashion", data_home)
    X_tr, y_tr, X_te, y_out, y_te = split(data, held_out, opts["n_train"], opts["n_test"], seed)
    det = detector(lam, seed, opts)
    t0 = time.perf_counter()
    det.fit(X_tr, y_tr)
    fit_s = time.perf_counter() - t0
    # test accuracy of the classifier on the kept classes (labels remapped like y_tr)
    kept = np.setdiff1d(np.unique(data[1]), [held_out])
    normal = y_out == 0
    y_norm = np.searchsorted(kept, y_te[normal])
    model = det.model_.eval()
    x = torch.from_numpy(X_te[normal][:, None]).float().div(255)
    x = x.to(next(model.parameters()).device)
    with torch.inference_mode():
        pred = torch.cat([model(b).argmax(1).cpu() for b in x.split(512)]).numpy()
    accuracy = float(np.mean(det.classes_[pred] == y_norm))
    scorers = ["msp", "odin"] + (["msp*rotation"] if lam > 0 else [])
    rows = []
    for scoring in scorers:
        s = det.score_samples_by(X_te, scoring)  # the same trained network
        name = {"msp": "MSP", "odin": "ODIN", "msp*rotation": "MSP*rotation"}[scoring]
        rows.append({"held_out": held_out, "seed": seed, "variant": f"lam={lam:g} {name}",
                     "auroc": auroc(y_out, s), "ap": average_precision(y_out, s),
                     "accuracy": accuracy, "fit_seconds": fit_s,
                     "n_train": len(X_tr), "epochs": opts["epochs"]})
    return rows


def tables(rows: list[dict], args) -> str:
    """Markdown: AP ablation (the claim), AUROC ablation, AP per held-out class."""
    per = [{"dataset": f"holdout-{r['held_out']}", "detector": r["variant"],
            "seed": r["seed"], "ap": r["ap"], "auroc": r["auroc"]} for r in rows]
    variants = list(dict.fromkeys(r["variant"] for r in rows))

    def accuracy(arm: str) -> float:
        return float(np.mean([r["accuracy"] for r in rows if r["variant"] == f"{arm} MSP"]))

    held = list(dict.fromkeys(r["held_out"] for r in rows))
    lines = [
        "# RotAuxMSP: hold-one-class-out on Fashion-MNIST",
        "",
        f"Train {args.n_train} images per kept class, test {args.n_test or 'all'} images "
        f"(held-out class = anomaly, random AP = 0.1); small CNN backbone={args.backbone}, "
        f"{args.epochs} epochs, batch {args.batch_size}, dropout {args.dropout:g}; "
        f"seeds {args.seeds}; held-out classes {held}.",
        "",
        "Classifier test accuracy on the kept classes (mean over held-out classes and seeds): "
        + ", ".join(f"{p} {100 * accuracy(p):.1f}%" for p in ("lam=0", f"lam={args.lam:g}"))
        + ".",
        "",
        "## Average precision (held-out class positive): the paper's claim",
        "",
        ablation_table(per, REFERENCE, "ap"),
        "",
        "## AUROC",
        "",
        ablation_table(per, REFERENCE, "auroc"),
        "",
        "## AP x 100 per held-out class (mean over seeds)",
        "",
        "| held out | " + " | ".join(variants) + " | test accuracy lam=0 / lam>0 |",
        "|---|" + "---:|" * len(variants) + "---:|",
    ]
    for k in held:
        aps = [np.mean([r["ap"] for r in rows if r["held_out"] == k and r["variant"] == v])
               for v in variants]
        cells = [f"{100 * a:.1f}" for a in aps]
        acc = [np.mean([r["accuracy"] for r in rows if r["held_out"] == k
                        and r["variant"].startswith(p)]) for p in ("lam=0 ", "lam=0.")]
        name = CLASS_NAMES[k] if 0 <= k < len(CLASS_NAMES) else str(k)
        lines.append(f"| {k} ({name}) | " + " | ".join(cells)
                     + f" | {100 * acc[0]:.1f} / {100 * acc[1]:.1f} |")
    fit = {p: np.mean([r["fit_seconds"] for r in rows if r["variant"] == f"{p} MSP"])
           for p in ("lam=0", f"lam={args.lam:g}")}
    lines += ["", "Mean fit seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in fit.items()), ""]
    return "\n".join(lines)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default=None,
                    help="folder with images/fashion_mnist "
                         "(default: $SKOOD_DATA, else ../shared/data)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--held-out", type=int, nargs="+", default=[6],
                    help="Fashion-MNIST classes to hold out, one run each")
    ap.add_argument("--n-train", type=int, default=1000, help="training images per kept class")
    ap.add_argument("--n-test", type=int, default=1000,
                    help="stratified test images (0: the whole test set)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lam", type=float, default=0.5, help="rotation weight of the treated arm")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.3,
                    help="dropout before the heads (the paper's WRN: 0.3)")
    ap.add_argument("--backbone", default="auto")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rotaux_holdout")
    engine_arguments(ap)
    args = ap.parse_args(argv)
    if args.lam <= 0:
        ap.error("--lam must be > 0 (lam=0 is always run as the reference)")
    args.n_test = args.n_test or None

    home = args.data_home or default_data_home()
    opts = {k: getattr(args, k) for k in ("n_train", "n_test", "epochs", "batch_size", "dropout",
                                          "backbone", "device")}
    jobs = [job(f"holdout-{k}__lam={lam:g}__s{seed}",
                functools.partial(run_one, k, seed, lam, opts, home),
                {"data": "fashion", "held_out": k, "seed": seed, "n_train": args.n_train,
                 "n_test": args.n_test, "params": params_identity(detector(lam, seed, opts))})
            for k in args.held_out for seed in args.seeds for lam in (0.0, args.lam)]
    t0 = time.perf_counter()
    rows = execute(jobs, args.out / "cache", args)
    if not rows:
        print("no run done yet")
        return ""
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "runs.csv", rows, FIELDS)
    text = tables(rows, args)
    cmd = ["python", "benchmarks/rotaux_holdout.py", *(sys.argv[1:] if argv is None else argv)]
    text += (f"\nCommand: `{' '.join(cmd)}`; "
             f"wall time {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s).\n")
    (args.out / "table.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
