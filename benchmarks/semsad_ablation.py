"""SemSAD's ablations at small scale: gamma drawn from a range vs fixed, and neighbourhood size.

The paper (table 2) credits two choices: the discriminator's objective with
gamma drawn afresh from a range at every step (rather than one fixed gamma),
and the semantic neighbourhood of ``n_neighbors`` training samples used as
rare positives. This script compares, on one-class tasks of the image suite
(``image_suite.py``; Fashion-MNIST by default):

* ``SemSAD`` (defaults: ``gamma_range=(1, 10)``, ``n_neighbors=4``), the reference;
* fixed gamma: ``gamma_range=(1, 1)`` (plain logistic loss) and ``(5, 5)``;
* neighbourhood size 1 and 16.

Reports mean ± std over seeds and the paired difference to the reference, with
"no effect" where the difference is within its spread. Runs are cached like
every suite run (an interrupted run resumes).

Usage::

    python benchmarks/semsad_ablation.py --data-home ../shared/data --classes 0 1 8 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _image_tasks import DATASETS, image_tasks
from _suite import ablation_table, sweep, sweep_arguments
from tabular_suite import default_data_home

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "SemSAD"
VARIANTS = [
    REFERENCE,
    "SemSAD(gamma_range=(1.0, 1.0))",
    "SemSAD(gamma_range=(5.0, 5.0))",
    "SemSAD(n_neighbors=1)",
    "SemSAD(n_neighbors=16)",
]


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=DATASETS, default="fashion")
    ap.add_argument("--classes", type=int, nargs="+", default=[0, 1, 8])
    ap.add_argument("--data-home", default=None)
    sweep_arguments(ap, seeds=[0, 1, 2], out=ROOT / "benchmarks/results/semsad_ablation",
                    detectors=None)
    args = ap.parse_args(argv)

    tasks = image_tasks(args.dataset, "one-class", args.classes, args.budget,
                        args.data_home or default_data_home())
    out = args.out / args.dataset / args.budget
    rows, _ = sweep(tasks, VARIANTS, args, out, "benchmarks/semsad_ablation.py", argv)
    table = ablation_table(rows, REFERENCE)
    (out / "ablation.md").write_text(table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
