"""Scale: every detector on the largest ADBench files, no subsampling, and the bank cap.

The inductive protocol of ``tabular_suite.py`` without its 10,000-row cap:
all rows of ``11_donors`` (619,326), ``16_http`` (567,498) and ``10_cover``
(286,048), stratified 70/30 split, MinMax scaling fitted on the training
part, fit on the (contaminated) training part, score the test part. Each
run records AUROC, AP, fit and score seconds and peak memory (the suite's
engine, so runs are cached and an interrupted sweep resumes).

``--max-bank N ...`` adds, for the detectors that score tabular rows against
a bank of training features (SemSAD, DistillNeg), one variant per cap
(``"SemSAD(max_bank=N)"``: a seeded uniform subset of N training rows as the
scoring bank), so the table shows the cap's effect on AUROC and on the
scoring time next to the default bank; ``--max-bank none`` adds the uncapped
variant (``"SemSAD(max_bank=None)"``: every training row in the bank, the
reference for the default ``max_bank="auto"``). NSA has ``max_bank`` too, but its
tabular default scorer, c-Cos(Mah), compares with the training mean and
uses no bank, so it gets no variant here.

Usage::

    python benchmarks/scale.py --data-home ../shared/data [--datasets 10_cover] \
        [--detectors DUM NSA IsolationForest] [--max-bank 10000 50000] [--seeds 0] \
        [--n-jobs 2] [--report-only] [--reference benchmarks/results/scale/cpu]

The default detectors are skood's five and IsolationForest as the reference.
A run on all rows takes from seconds (IsolationForest) to hours on a CPU
(``times.md`` has each run's fit and score time), so a sweep is usually
done a detector and a file per process; ``--report-only`` runs nothing and
writes the tables from the runs already done (every run made with the given
detectors, datasets and caps), with the plain detectors' runs still missing
marked "not run yet". A ``max_bank`` variant
refits its detector, so it is worth running on one file (cover), not all.

Outputs under ``--out`` (default ``benchmarks/results/scale/<budget>``): ``runs.csv``,
``table.md`` (AUROC and AP), ``times.md`` (fit and score minutes, peak memory
per run), ``figure.png``, ``meta.json``; with ``--reference DIR`` (the
output folder of an earlier sweep, e.g. one made at older defaults),
``reference.md``: AUROC and fit/score minutes of these runs beside that
folder's runs of the same dataset and detector, the reference labelled with
the skood version and arguments its ``meta.json`` records.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from _suite import SKOOD, Task, available_detectors, select, sweep, sweep_arguments
from tabular_suite import default_data_home

ROOT = Path(__file__).resolve().parents[1]
LARGEST = ("11_donors", "16_http", "10_cover")
#: detectors whose tabular scorer uses a bank of training features (``max_bank``)
BANKED = ("SemSAD", "DistillNeg")
#: skood's five and the reference baseline
DEFAULT_DETECTORS = (*SKOOD, "IsolationForest")
#: what a reader of the times table must know about one cached run, printed
#: under the table while the run is in it; drop a note on a measurement when its
#: run is re-made
RUN_NOTES = {
    ("16_http", "SemSAD"): (
        "http's 2,211 attacks are only 72 distinct rows, so nearly every test attack "
        "has exact copies among the training rows, and a score built on the nearest "
        "training neighbour calls it normal; PyOD's KNN inverts the same way in the "
        "tabular suite (AUROC 0.1)"),
}


def note_lines(ran: set[tuple[str, str]], notes: dict | None = None) -> list[str]:
    """Notes (default :data:`RUN_NOTES`) of the runs in ``ran``: one line per detector, note."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for (name, det), note in (RUN_NOTES if notes is None else notes).items():
        if (name, det) in ran:
            grouped.setdefault((det, note), []).append(name)
    return [f"- {det} on {', '.join(names)}: {note}" for (det, note), names in grouped.items()]


def build_full(name: str, data_home: str | None, seed: int):
    """All rows of one ADBench file, inductive split (module level: picklable)."""
    from skood.datasets import load_adbench, tabular_split

    X, y = load_adbench(name, data_home)
    X_tr, X_te, _, y_te = tabular_split(X, y, protocol="inductive",
                                        max_samples=len(X), random_state=seed)
    return X_tr, None, X_te, y_te


def bank_cap(text: str) -> int | None:
    """A ``--max-bank`` value: a positive int, or "none" (no cap)."""
    return None if text.lower() == "none" else int(text)


def reference_table(rows: list[dict], ref_rows: list[dict], ref_label: str) -> str:
    """AUROC x 100 and fit / score minutes of each run beside the reference's same run."""
    ref = {(r["dataset"], r["detector"]): r for r in ref_rows if not r.get("error")}
    lines = [f"Reference: {ref_label}.", "",
             "| dataset | detector | AUROC x 100 | reference AUROC | fit min | reference fit min "
             "| score min | reference score min |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["detector"])):
        if r.get("error"):
            continue
        q = ref.get((r["dataset"], r["detector"]))
        cells = ([f"{100 * float(q['auroc']):.1f}", f"{float(q['fit_s']) / 60:.1f}",
                  f"{float(q['score_s']) / 60:.2f}"] if q else ["not run"] * 3)
        lines.append(f"| {r['dataset']} | {r['detector']} | {100 * float(r['auroc']):.1f} | "
                     f"{cells[0]} | {float(r['fit_s']) / 60:.1f} | {cells[1]} | "
                     f"{float(r['score_s']) / 60:.2f} | {cells[2]} |")
    return "\n".join(lines)


def scale_detectors(detectors: list[str], caps: list[int | None]) -> list[str]:
    """The detectors, each banked one followed by its ``max_bank`` variants."""
    out = []
    for d in detectors:
        out.append(d)
        if d in BANKED:
            out += [f"{d}(max_bank={c})" for c in caps]
    return out


def times_table(rows: list[dict], expected: list[tuple[str, str, int]] = ()) -> str:
    """Fit and score minutes and peak memory of every run, one line each.

    ``expected`` (dataset, detector, seed) triples without a row are listed as
    "not run yet", so an incomplete sweep says what it lacks.
    """
    lines = ["| dataset | detector | seed | n_train | n_test | fit min | score min | "
             "peak MiB | AUROC x 100 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    done = {(r["dataset"], r["detector"], r["seed"]) for r in rows}
    missing = [{"dataset": d, "detector": m, "seed": s, "missing": True}
               for d, m, s in expected if (d, m, s) not in done]
    for r in sorted([*rows, *missing], key=lambda r: (r["dataset"], r["detector"], r["seed"])):
        if r.get("missing"):
            lines.append(f"| {r['dataset']} | {r['detector']} | {r['seed']} | | | "
                         "not run yet | | | |")
            continue
        if r.get("error"):
            lines.append(f"| {r['dataset']} | {r['detector']} | {r['seed']} | {r['n_train']} | "
                         f"{r['n_test']} | failed: {r['error'][:80]} | | | |")
            continue
        lines.append(f"| {r['dataset']} | {r['detector']} | {r['seed']} | {r['n_train']:,} | "
                     f"{r['n_test']:,} | {r['fit_s'] / 60:.1f} | {r['score_s'] / 60:.2f} | "
                     f"{r['peak_mib']:,.0f} | {100 * r['auroc']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-home", default=None, help="default: $SKOOD_DATA or ../shared/data")
    ap.add_argument("--datasets", nargs="+", default=list(LARGEST), help="ADBench names")
    ap.add_argument("--max-bank", type=bank_cap, nargs="*", default=[],
                    help="bank caps to compare with the default bank, 'none': uncapped ("
                         + ", ".join(BANKED) + ")")
    ap.add_argument("--reference", type=Path, default=None,
                    help="output folder of an earlier sweep to compare with (reference.md)")
    sweep_arguments(ap, seeds=[0], out=None,
                    detectors="default: skood's five and IsolationForest")
    args = ap.parse_args(argv)

    data_home = args.data_home or default_data_home()
    tasks = [Task(name, "tabular", functools.partial(build_full, name, data_home),
                  meta={"protocol": "inductive, all rows", "source": "adbench"})
             for name in args.datasets]
    base = select(available_detectors(), args.detectors or list(DEFAULT_DETECTORS), "detector")
    dets = scale_detectors(base, args.max_bank)
    out = args.out or ROOT / "benchmarks/results/scale" / args.budget
    rows, table = sweep(tasks, dets, args, out, "benchmarks/scale.py", argv)
    print(table)
    # every plain detector on every file; a bank-cap variant is an extra, listed when run
    expected = [(t, d, s) for t in args.datasets for d in base for s in args.seeds]
    times = times_table(rows, expected)
    ran = {(r["dataset"], r["detector"]) for r in rows}
    notes = note_lines(ran)
    if notes:
        times += "\n\n" + "\n".join(notes)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "times.md").write_text(times + "\n")
    if args.reference is not None:
        import json

        from _suite import read_runs

        meta = json.loads((args.reference / "meta.json").read_text())
        label = (f"{args.reference.name}, skood {meta.get('versions', {}).get('skood', '?')}, "
                 f"{meta.get('script', '')} {' '.join(meta.get('argv', []))}")
        import subprocess

        commit = subprocess.run(  # the code version the reference runs were committed with
            ["git", "log", "-1", "--format=%h %cs", "--", str(args.reference / "runs.csv")],
            cwd=ROOT, capture_output=True, text=True).stdout.strip()
        if commit:
            label += f"; runs.csv committed at {commit}"
        ref_rows = list(read_runs(args.reference / "runs.csv").values())
        (Path(out) / "reference.md").write_text(reference_table(rows, ref_rows, label) + "\n")
    print("\n" + times + f"\n\nwritten to {out}")


if __name__ == "__main__":
    main()
