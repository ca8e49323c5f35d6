"""Image suite: skood's detectors vs raw-pixel baselines on digits, MNIST, Fashion-MNIST, CIFAR-10.

Protocols:

* ``one-class``: train on class k (optionally polluted with ``--pollution`` p of
  other classes), test on the test split with class k normal, for every k;
* ``holdout``: hold-one-class-out, train with labels on the other classes
  (RotAuxMSP uses them, the others ignore them), the held-out class is the
  anomaly; report average precision next to AUROC;
* ``vs``: dataset vs dataset, train on ``--dataset``, test on its test split
  (in) and the test split of ``--ood`` (out), e.g. Fashion-MNIST vs MNIST.

Data: digits ships with scikit-learn (split 50/50 per class); MNIST (only its
test set is shared here: split 50/50), Fashion-MNIST and CIFAR-10 (JPEG) come
from ``--data-home`` (else ``$SKOOD_DATA``, else ``../shared/data``). Baselines
see raw pixels in [0, 1]. Budgets: ``smoke`` (64 training and 300 test images,
one epoch), ``cpu`` (1,000 / 2,000 images, the detectors' defaults), ``gpu``
(every image, the papers' presets). Outputs and caching as in
``tabular_suite.py``; without ``--out``, the one-class runs of Fashion-MNIST and
CIFAR-10 go to their leaderboard suite's folder (``benchmarks/results/f-oc``,
``c-oc``; ``p-fashion``, ``p-cifar10`` when a detector uses a pretrained
``backbone=``) and are merged into its ``runs.csv``; other runs go to
``benchmarks/results/<dataset>-<protocol>``. A budget other than ``cpu``
appends ``-<budget>``; ``--out DIR`` writes to ``DIR/<dataset>-<protocol>/<budget>``.

Usage::

    python benchmarks/image_suite.py --dataset fashion --protocol one-class --classes 0 1 2
    python benchmarks/image_suite.py --dataset cifar10 --detectors \
        "NSA(backbone='efficientnet_lite0')" "FeatureKNN(backbone='efficientnet_lite0')"
    python benchmarks/image_suite.py --dataset fashion --protocol holdout --metric ap
    python benchmarks/image_suite.py --dataset fashion --protocol vs --ood mnist
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _image_tasks import DATASETS, image_tasks
from _suite import (
    available_detectors,
    pretrained_backbones,
    read_runs,
    select,
    sweep,
    sweep_arguments,
    warm_feature_cache,
)
from tabular_suite import default_data_home, merge_runs, suite_folder


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=DATASETS, default="fashion")
    ap.add_argument("--protocol", choices=["one-class", "holdout", "vs"], default="one-class")
    ap.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--pollution", type=float, default=0.0)
    ap.add_argument("--ood", choices=DATASETS, default="mnist")
    ap.add_argument("--metric", choices=["auroc", "ap"], default=None,
                    help="table metric (default: ap for holdout, else auroc)")
    ap.add_argument("--data-home", default=None)
    sweep_arguments(ap, seeds=[0], out=None)
    args = ap.parse_args(argv)

    tasks = image_tasks(args.dataset, args.protocol, args.classes, args.budget,
                        args.data_home or default_data_home(), args.pollution, args.ood)
    dets = select(available_detectors(), args.detectors, "detector")
    metric = args.metric or ("ap" if args.protocol == "holdout" else "auroc")
    out = (suite_folder(suite_name(args.dataset, args.protocol, args.pollution, dets),
                        args.budget) if args.out is None
           else args.out / f"{args.dataset}-{args.protocol}" / args.budget)
    before = read_runs(out / "runs.csv")
    if not args.report_only:
        record_extraction(out, warm_feature_cache(tasks, dets, args.seeds, args.n_jobs))
    _, table = sweep(tasks, dets, args, out, "benchmarks/image_suite.py", argv, metric=metric)
    merge_runs(out, before)
    print(table)
    print(f"\nwritten to {out}")


def suite_name(dataset: str, protocol: str, pollution: float, detectors: list[str]) -> str:
    """The results folder of a sweep: its leaderboard suite's for the one-class protocol on
    Fashion-MNIST or CIFAR-10 (``f-oc``, ``c-oc``; ``p-fashion``, ``p-cifar10`` with a
    pretrained backbone), else ``<dataset>-<protocol>``."""
    short = {"fashion": "f", "cifar10": "c"}
    if protocol == "one-class" and not pollution and dataset in short:
        if pretrained_backbones(detectors):
            return f"p-{dataset}"
        return f"{short[dataset]}-oc"
    suffix = f"-p{int(round(100 * pollution))}" if pollution else ""
    return f"{dataset}-{protocol}{suffix}"


def record_extraction(out: Path, measured: dict) -> None:
    """Keep in ``out/features.json`` the extraction cost of each pretrained encoder, as
    measured by the last call that computed features (a fully cached re-run keeps it)."""
    path = out / "features.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    new = {bb: m for bb, m in measured.items() if m["features_computed"]}
    if new:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**kept, **new}, indent=1) + "\n")
    for bb, m in measured.items():
        print(f"{bb}: {m['features_computed']} features computed, {m['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
