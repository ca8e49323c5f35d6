"""Refined variants against their unrefined detectors, on the same splits and seeds.

Reads the runs of a sweep of refined variants (``Refined(NSA)``, ... made by
``tabular_suite.py --detectors "Refined(NSA)" ...``) and the committed runs of
the unrefined detectors (a suite's ``runs.csv``, or the same file where it
holds them), and writes a markdown table: per detector the mean AUROC x 100
over the sets and seeds both have, unrefined, refined and the difference, the
per-set means, and the fit times::

    python benchmarks/refine_compare.py \\
        --refined benchmarks/results/refine/probes/runs.csv \\
        --reference benchmarks/results/t-ind/runs.csv \\
        --out benchmarks/results/refine/t-ind.md --title "T-ind probes"
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import REFINED, base_variant, parse_variant  # noqa: E402


def _runs(paths: list[Path]) -> dict[tuple[str, str, int], dict]:
    out = {}
    for p in paths:
        with open(p) as f:
            for r in csv.DictReader(f):
                if r.get("error"):
                    continue
                out[(r["detector"], r["dataset"], int(r["seed"]))] = r
    return out


def compare(refined: dict, reference: dict) -> tuple[list[str], list[str]]:
    """Markdown lines: the summary table and the per-set table."""
    variants = sorted({d for d, _, _ in refined if parse_variant(d)[0] == REFINED})
    summary = ["| refined variant | sets x seeds | unrefined | refined | diff | fit s: unrefined "
               "| refined | x |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    per_set = ["| refined variant | dataset | unrefined | refined | diff |",
               "|---|---|---:|---:|---:|"]
    for v in variants:
        base = base_variant(v)
        pairs = defaultdict(list)
        ratios, fits = [], []
        for (d, ds, s), r in sorted(refined.items()):
            ref = reference.get((base, ds, s))
            if d != v or ref is None:
                continue
            pairs[ds].append((float(ref["auroc"]), float(r["auroc"])))
            fits.append((float(ref["fit_s"]), float(r["fit_s"])))
            if float(ref["fit_s"]) > 0:
                ratios.append(float(r["fit_s"]) / float(ref["fit_s"]))
        if not pairs:
            continue
        allp = [p for ps in pairs.values() for p in ps]
        u = 100 * sum(a for a, _ in allp) / len(allp)
        f = 100 * sum(b for _, b in allp) / len(allp)
        ratio = sorted(ratios)[len(ratios) // 2] if ratios else math.nan
        fu, fr = (sum(x[i] for x in fits) / len(fits) for i in (0, 1))
        summary.append(f"| {v} | {len(allp)} | {u:.1f} | {f:.1f} | {f - u:+.1f} | {fu:.1f} "
                       f"| {fr:.1f} | {ratio:.1f} |")
        for ds in sorted(pairs, key=lambda x: int(x.split("_")[0]) if x[0].isdigit() else 0):
            ps = pairs[ds]
            u = 100 * sum(a for a, _ in ps) / len(ps)
            f = 100 * sum(b for _, b in ps) / len(ps)
            per_set.append(f"| {v} | {ds} | {u:.1f} | {f:.1f} | {f - u:+.1f} |")
    return summary, per_set


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refined", type=Path, nargs="+", required=True)
    ap.add_argument("--reference", type=Path, nargs="+", required=True,
                    help="runs.csv files holding the unrefined detectors' runs")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="Refined vs unrefined")
    args = ap.parse_args(argv)
    summary, per_set = compare(_runs(args.refined), _runs([*args.reference, *args.refined]))
    text = "\n".join([
        f"**{args.title}**", "",
        "Mean AUROC x 100 over the sets and seeds both runs have (same splits, same seeds); "
        "fit s: mean fit seconds per run (2 shared CPU cores, the unrefined runs made at "
        "another time, under another load); x: median over runs of the refined fit's time "
        "over the unrefined one's (large where the unrefined fit takes under a second).",
        "",
        f"Refined runs: {', '.join(str(p) for p in args.refined)}; unrefined: "
        f"{', '.join(str(p) for p in args.reference)}.", "",
        *summary, "", "Per set (mean over seeds):", "", *per_set, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
