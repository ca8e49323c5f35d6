"""The five papers' central claims as ablations, in one run.

Each claim is data (:class:`Claim`): variants x tasks, i.e. which column of
a runs.csv names the compared arms (``variant``, with ``reference`` the
control), which columns name a task, which one a setting reported apart,
and the metric. The arms are run on the tasks by the claim's script, on the
benchmark engine (``_suite.run_jobs``: every fit cached, so a claim resumes
and a re-run only re-tabulates; ``--n-jobs``, ``--report-only``, ``--prune``
and ``--rerun`` are passed on). This script then reads each ``runs.csv`` and
reports every claim the same way: per setting, the treatment against the
control, mean ± standard deviation over seeds of the per-seed mean over
tasks, and the paired difference; a difference within its own spread is
"no effect", never a win.

* NSA: normalisation raises one-class AUROC, most under 10% pollution
  (``nsa_normalisation.py``: norm on vs off);
* DistillNeg: negatives beat plain self-distillation
  (``distillneg_negatives.py``: lam=1 vs lam=0);
* RotAuxMSP: the rotation task raises MSP average precision
  (``rotaux_holdout.py``: with rotation vs lam=0);
* SemSAD: gamma drawn from a range vs fixed; neighbourhood size
  (``semsad_ablation.py``: variants vs the defaults);
* DUM: beats IsolationForest on tabular data (``dum_tabular.py``).

Each script writes under ``--out`` (default ``benchmarks/results``), in its own folder.

Usage::

    python benchmarks/claims.py --data-home ../shared/data [--only nsa semsad] [--seeds 0 1 2] \
        [--n-jobs 2]

``--dry-run`` only rebuilds ``claims.md`` from the scripts' existing CSVs.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from _suite import ablation_table, engine_arguments
from tabular_suite import default_data_home

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks/results"


@dataclass(frozen=True)
class Claim:
    """One claim as data: its arms (variants) x tasks, and the script that runs them.

    In the script's ``runs.csv`` (``csv``, under ``--out``): ``variant`` is the
    column naming the compared arm, ``reference`` the control arm's value,
    ``task`` the columns that (joined) name a task, ``group`` a setting
    reported separately (e.g. the pollution level), ``metric`` the score
    column. ``script`` (a benchmark script on the engine) runs the arms on
    the tasks with ``args``, writing to ``out`` (under ``--out``).
    """

    title: str
    script: str
    out: str
    csv: str
    variant: str
    reference: str
    task: tuple[str, ...]
    metric: str = "auroc"
    group: str | None = None
    args: tuple[str, ...] = field(default_factory=tuple)


#: the NSA claim where the encoder has learnt something (the image defaults: SimCLR, crops of
#: 50-100%, lr 1e-4, 1,000 images, 12 epochs), both scorers, the untrained encoder beside
NSA_ARGS = ("--method", "simclr", "--crop-scale", "0.5", "1", "--n-train", "1000", "--epochs",
            "12", "--scoring", "kcos", "kcos-mah", "--reference")

CLAIMS = {
    "nsa": Claim(
        "NSA: feature/projection normalisation (one-class Fashion-MNIST)",
        script="nsa_normalisation", out="nsa_normalisation", csv="nsa_normalisation/runs.csv",
        variant="variant", reference="norm off", task=("class",), group="setting",
        args=NSA_ARGS),
    "distillneg": Claim(
        "DistillNeg: negatives (lam=1) vs plain self-distillation (lam=0)",
        script="distillneg_negatives", out="distillneg_negatives",
        csv="distillneg_negatives/runs.csv", variant="lam", reference="0.0", task=("setting",)),
    "rotaux": Claim(
        "RotAuxMSP: rotation auxiliary task, hold-one-class-out AP (Fashion-MNIST)",
        script="rotaux_holdout", out="rotaux_holdout", csv="rotaux_holdout/runs.csv",
        variant="variant", reference="lam=0 MSP", task=("held_out",), metric="ap"),
    "semsad": Claim(
        "SemSAD: gamma range vs fixed gamma, neighbourhood size",
        script="semsad_ablation", out="semsad_ablation",
        csv="semsad_ablation/fashion/cpu/runs.csv", variant="detector", reference="SemSAD",
        task=("dataset",)),
    "dum": Claim(
        "DUM vs IsolationForest (transductive tabular, the paper's datasets)",
        script="dum_tabular", out=".", csv="dum_tabular.csv", variant="detector",
        reference="IsolationForest", task=("dataset",)),
}


def read_claim(claim: Claim, out: Path) -> list[str]:
    """The claim's section of claims.md, from its script's CSV."""
    path = out / claim.csv
    lines = [f"### {claim.title}", ""]
    if not path.exists():
        return lines + [f"not run yet (`python benchmarks/{claim.script}.py`)", ""]
    with open(path) as f:
        raw = list(csv.DictReader(f))
    groups = list(dict.fromkeys(r[claim.group] for r in raw)) if claim.group else [None]
    for g in groups:
        rows = [{"dataset": " ".join(r[c] for c in claim.task),
                 "detector": r[claim.variant], "seed": int(r["seed"]),
                 claim.metric: float(r[claim.metric])}
                for r in raw if g is None or r[claim.group] == g]
        if g is not None:
            lines += [f"{claim.group} = {g}:", ""]
        lines += [ablation_table(rows, claim.reference, claim.metric), ""]
    meta = path.parent / "meta.json"
    cmd = f"python benchmarks/{claim.script}.py"
    if meta.exists():  # the exact command of the run, where the script records it
        argv = json.loads(meta.read_text()).get("argv") or []
        cmd = " ".join([cmd, *map(str, argv)])
    lines += [f"Source: `benchmarks/results/{claim.csv}`, made by "
              f"`{cmd}` (see its docstring for the budget).", ""]
    return lines


def engine_flags(args: argparse.Namespace) -> list[str]:
    """The engine options of this call, as arguments for a claim's script."""
    flags = ["--n-jobs", str(args.n_jobs)] if args.n_jobs != 1 else []
    for flag in ("no_progress", "report_only", "prune", "rerun"):
        if getattr(args, flag):
            flags.append("--" + flag.replace("_", "-"))
    return flags


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", choices=list(CLAIMS), default=list(CLAIMS))
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--seeds", nargs="+", default=None, help="passed on to every script")
    ap.add_argument("--dry-run", action="store_true", help="only summarise existing CSVs")
    ap.add_argument("--out", type=Path, default=OUT)
    engine_arguments(ap)
    args = ap.parse_args(argv)
    data_home = args.data_home or default_data_home()
    for name in args.only:
        claim = CLAIMS[name]
        if args.dry_run:
            continue
        script_args = [*claim.args, *engine_flags(args), "--out", str(args.out / claim.out)]
        if data_home:
            script_args += ["--data-home", data_home]
        if args.seeds:
            script_args += ["--seeds", *args.seeds]
        print(f"== {name}: python benchmarks/{claim.script}.py {' '.join(script_args)}",
              flush=True)
        importlib.import_module(claim.script).main(script_args)
    md = ["# The papers' central claims at skood's CPU budget", ""]
    for name in args.only:
        md += read_claim(CLAIMS[name], args.out)
    text = "\n".join(md)
    (args.out / "claims.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
