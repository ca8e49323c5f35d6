"""Write the README's Results section from the benchmark outputs under benchmarks/results.

Every table in the section is a benchmark script's own ``table.md`` (or the
claims script's ``claims.md``), with the command that made it read back from
the run's ``meta.json``, and a generated line per skood detector saying where
it wins and where it loses against each baseline. Nothing is typed by hand:
re-run the commands, then this script.

Usage::

    python benchmarks/readme_results.py [--readme README.md] [--check]

The section lies between ``<!-- results:begin -->`` and
``<!-- results:end -->`` in the README. ``--check`` exits non-zero when the
README differs from what would be written.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from _suite import SKOOD

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

#: (heading, results folder relative to benchmarks/results, what it is)
SUITES = [
    ("Main job: data that ships with scikit-learn", "main_job",
     "breast cancer (WDBC) and wine as tabular sets (anomalies subsampled to 10%, "
     "70/30 split, MinMax scaling), digits 8x8 one-class (class k normal)."),
    ("Tabular suite: ADBench classical, inductive protocol", "tabular/inductive/cpu",
     "Stratified subsample to 10,000 rows, stratified 70/30 split, MinMax scaling "
     "fitted on the (contaminated) training part, AUROC on the test part. The SemSAD "
     "column predates SemSAD's scoring='partners' default: it is scoring='nearest', "
     "the paper's score."),
    ("SemSAD scored against fixed random partners (its default), inductive protocol",
     "semsad_scoring/inductive/cpu",
     "The tabular suite's protocol, seeds 0 1 2, with SemSAD's default "
     "scoring='partners', beside IsolationForest, KNN and FeatureKNN (kNN with "
     "Euclidean distance on the features of the untrained MLP encoder: the "
     "untrained-encoder reference) on the same splits. The SemSAD column of the "
     "table above is the paper's scoring='nearest' (whose scores are bit-identical "
     "to the code that made it)."),
    ("DUM with its whitened embedding (since 1664de8), inductive protocol",
     "dum_quality/inductive/cpu",
     "The tabular suite's protocol, seeds 0 1 2, with DUM's current defaults (rows "
     "whitened before the sphere lift, sets of m = 4, 32 per minibatch of 256, diagonal "
     "covariances on tabular rows) beside IsolationForest and KNN on the same splits. The "
     "DUM column of the suite's table above is the first default (min-max rows, one set "
     "per minibatch of 64, isotropic)."),
    ("NSA with its CPU-budget defaults (since 844a584), inductive protocol",
     "nsa_quality/inductive/cpu",
     "The tabular suite's protocol, seeds 0 1 2: NSA (SimSiam, ccos-mah, BatchNorm "
     "statistics of clean rows) beside IsolationForest and KNN on the same splits."),
    ("NSA with its CPU-budget defaults (since 844a584), clean protocol",
     "nsa_quality/clean/cpu",
     "The clean protocol's splits, seeds 0 1 2: NSA beside IsolationForest and KNN."),
    ("DistillNeg with its two-kernel score (since 08c9197), inductive protocol",
     "distillneg_quality/inductive/cpu",
     "The tabular suite's protocol with DistillNeg's default kernel_temperature='auto' "
     "(two standardised kernel scores, tau = 0.2 and the training features' median "
     "nearest-neighbour cosine distance) beside IsolationForest, KNN and FeatureKNN (the "
     "untrained-MLP reference) on the same splits. The DistillNeg column of the suite's "
     "table above is the old single kernel, tau = 0.2."),
    ("DistillNeg with its two-kernel score (since 08c9197), clean protocol",
     "distillneg_quality/clean/cpu",
     "The clean protocol's splits, seeds 0 1 2: DistillNeg (kernel_temperature='auto') beside "
     "IsolationForest, KNN and FeatureKNN."),
    ("RotAuxMSP with its GOAD-style tabular default (since 7b08820), inductive protocol",
     "rotaux_quality/inductive/cpu",
     "The tabular suite's protocol, seeds 0 1 2: RotAuxMSP without labels (64 random "
     "affine maps as the auxiliary task, a width-64 MLP, GOAD's centre score) beside "
     "IsolationForest and KNN. The RotAuxMSP column of the suite's table above is the "
     "old setting (8 maps, the mean confidence of a width-256 MLP)."),
    ("RotAuxMSP with its GOAD-style tabular default (since 7b08820), clean protocol",
     "rotaux_quality/clean/cpu",
     "The clean protocol's splits, seeds 0 1 2: RotAuxMSP without labels (the tabular "
     "auxiliary task: which of its 64 random affine maps was applied) beside "
     "IsolationForest and KNN."),
    ("Tabular suite: ADBench classical, clean protocol (normal-only training)",
     "semsad_scoring/clean/cpu",
     "The inductive split with the anomalies removed from the training part; seeds "
     "0 1 2; SemSAD (scoring='partners') against IsolationForest, KNN and FeatureKNN "
     "(the untrained-MLP reference)."),
    ("DUM with its whitened embedding (since 1664de8), clean protocol",
     "dum_quality/clean/cpu",
     "The clean protocol's splits (seeds 0 1 2) with DUM's current defaults (rows "
     "whitened before the sphere lift, sets of m = 4, 32 per minibatch of 256, diagonal "
     "covariances on tabular rows) beside IsolationForest and KNN."),
    ("One-class Fashion-MNIST", "images/fashion-one-class/cpu",
     "Train on the training images of class k, test on the test set (class k "
     "normal, the other classes anomalous); baselines on raw pixels. The SemSAD "
     "column is scoring='nearest' (made before the partners default)."),
    ("One-class Fashion-MNIST: SemSAD scored against fixed random partners (its default)",
     "semsad_scoring/images/fashion-one-class/cpu",
     "The splits of the table above (seed 0) with SemSAD's default scoring='partners'; "
     "the untrained-encoder reference row (FeatureKNN) on these splits is in the "
     "table below."),
    ("One-class Fashion-MNIST: DUM with its whitened embedding (since 1664de8)",
     "dum_quality/fashion-one-class/cpu",
     "The splits of the table above (seed 0) with DUM's current defaults (the SimCLR "
     "features whitened and lifted onto the sphere, sets of m = 4, 32 per minibatch of "
     "256, isotropic covariances on image embeddings). The DUM column of the first "
     "one-class table is the first default (plain features, one set per minibatch of 64)."),
    ("One-class Fashion-MNIST: NSA with its CPU-budget defaults",
     "nsa_quality/fashion-one-class/cpu",
     "The splits of the first one-class table: NSA with SimCLR, crops of 50-100%, "
     "k-Cos over the 5 nearest (n_neighbors=5, 6f86803; 90.4 with the nearest only) and "
     "lr 1e-4 (lr='auto', c7f286f; seed 0 88.2 at lr 1e-3 before), beside "
     "the untrained-encoder reference (FeatureKNN: the same small CNN with its initial "
     "weights) and IsolationForest and KNN on raw pixels."),
    ("One-class Fashion-MNIST: DistillNeg with its adaptive kernel",
     "distillneg_quality/fashion-one-class/cpu",
     "The splits of the first one-class table (seed 0): DistillNeg with "
     "kernel_temperature='auto' (a quarter of the training features' median "
     "nearest-neighbour cosine distance; the first table's DistillNeg column, with the same "
     "training settings, scored with the paper's 0.04), beside FeatureKNN (the untrained-CNN "
     "reference), IsolationForest and KNN on raw pixels."),
    ("One-class Fashion-MNIST: the untrained-encoder reference", "reference/fashion-one-class/cpu",
     "The same splits (seed 0). FeatureKNN: kNN cosine (k=2) on the features of the "
     "small CNN that every image detector trains, with its random initial weights and "
     "the BatchNorm statistics of the training images: the reference every image "
     "detector's training must beat. Baselines on raw pixels."),
    ("One-class CIFAR-10: the untrained-encoder reference and raw-pixel baselines",
     "reference/cifar10-one-class/cpu",
     "Train on 1,000 training images of class k, test on 2,000 test images (class k "
     "normal), seed 0; rows as in the Fashion-MNIST table above."),
    ("One-class Fashion-MNIST with the pretrained encoder (EfficientNet-Lite0)",
     "pretrained/fashion-one-class/cpu",
     "The splits of the Fashion-MNIST tables above (seed 0). Every skood detector with "
     "backbone='efficientnet_lite0' (frozen ImageNet features at 160 px, frozen-feature "
     "mode), FeatureKNN on the same features (DN2: kNN cosine, k=2) and raw-pixel "
     "baselines. NSA scores the frozen features with k-Cos without training (its paper's "
     "pretrained rows), averaged over the 5 nearest (n_neighbors=5; the paper's k = 1 is "
     "the first column of the scorers table below); the other detectors train their "
     "tabular networks on the standardised features. {features} The fit and score "
     "seconds below are the detectors' own on the cached features."),
    ("One-class CIFAR-10 with the pretrained encoder (EfficientNet-Lite0)",
     "pretrained/cifar10-one-class/cpu",
     "The splits of the CIFAR-10 reference table above (seed 0), rows as in the "
     "pretrained Fashion-MNIST table. {features} The fit and score seconds below are the "
     "detectors' own on the cached features."),
]

#: (heading, markdown file relative to benchmarks/results, meta.json or None): tables
#: a script writes whole; a file without meta.json names its own command
TABLES = [
    ("DUM vs IsolationForest and LOF: the paper's tabular table", "dum_tabular.md", None),
    ("DUM: score orientation across seeds", "dum_orientation/table.md", None),
    ("RotAuxMSP: hold-one-class-out Fashion-MNIST", "rotaux_holdout/table.md", None),
    ("Scorers on frozen pretrained features (EfficientNet-Lite0, the pretrained tables' "
     "splits)", "pretrained_scorers/table.md", "pretrained_scorers/meta.json"),
    ("Speed and memory", "speed/cpu/speed.md", "speed/cpu/meta.json"),
    ("Scale: the largest ADBench files, all rows (fit and score minutes, peak memory)",
     "scale/cpu/times.md", "scale/cpu/meta.json"),
]


def demote(markdown: str, level: int = 4) -> str:
    """Headings of an included file nested under the section's ``###`` headings.

    A ``# `` title on the file's first line is dropped: the section's own heading
    stands for it.
    """
    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    out = []
    for line in lines:
        if line.startswith("#"):
            line = "#" * level + " " + line.lstrip("#").strip()
        out.append(line)
    return "\n".join(out)


def command(meta: dict) -> str:
    """The command line that made a result, from its ``meta.json``."""
    return " ".join(["python", meta["script"], *map(str, meta.get("argv") or [])])


def mean_auroc(runs_csv: Path) -> dict[tuple[str, str], float]:
    """Mean AUROC over seeds per (dataset, detector), in the CSV's order; failed runs left out."""
    with open(runs_csv) as f:
        rows = [r for r in csv.DictReader(f) if r.get("auroc") not in ("", "nan", None)]
    score: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        score[r["dataset"], r["detector"]].append(float(r["auroc"]))
    return {k: float(np.mean(v)) for k, v in score.items()}


def win_loss_lines(mean: dict[tuple[str, str], float]) -> list[str]:
    """Per skood detector: wins/losses against each baseline, per task (from :func:`mean_auroc`)."""
    tasks = list(dict.fromkeys(t for t, _ in mean))
    dets = list(dict.fromkeys(d for _, d in mean))
    lines = []
    for d in (d for d in dets if d in SKOOD):
        own = [t for t in tasks if (t, d) in mean]
        parts = []
        for b in (b for b in dets if b not in SKOOD):
            both = [t for t in own if (t, b) in mean]
            if not both:
                continue
            wins = sum(mean[t, d] > mean[t, b] for t in both)
            gap = 100 * np.mean([mean[t, d] - mean[t, b] for t in both])
            parts.append(f"{b} {wins}/{len(both)} ({gap:+.1f})")
        if parts:
            lines.append(f"- **{d}** beats " + ", ".join(parts)
                         + " (tasks won / compared, mean AUROC difference x 100).")
    return lines


def summary_line(by_task: dict[tuple[str, str], float]) -> str:
    """One plain sentence: the best skood detector against the best baseline, mean AUROC."""
    per: dict[str, dict[str, float]] = defaultdict(dict)
    for (task, det), v in by_task.items():
        per[det][task] = v
    tasks = set.intersection(*(set(v) for v in per.values())) if per else set()
    if not tasks:
        return ""
    mean = {d: 100 * float(np.mean([v[t] for t in tasks])) for d, v in per.items()}
    ours = [d for d in mean if d in SKOOD]
    theirs = [d for d in mean if d not in SKOOD]
    if not ours or not theirs:
        return ""
    a, b = max(ours, key=mean.get), max(theirs, key=mean.get)
    verdict = "ahead of" if mean[a] > mean[b] else "behind"
    return (f"In short: over these {len(tasks)} tasks skood's best detector here, {a} "
            f"(mean AUROC {mean[a]:.1f}), is {verdict} the best baseline, {b} "
            f"({mean[b]:.1f}).")


def extraction_sentence(path: Path) -> str:
    """What the sweep's ``features.json`` says the frozen features cost, as a sentence."""
    parts = []
    for name, f in json.loads(path.read_text()).items():
        parts.append(f"{name}: {f['features_computed']:,} images, {f['seconds']:.0f} s on "
                     f"workers of {f['threads_per_worker']} thread(s), summed, "
                     f"{f['ms_per_computed_image']:.0f} ms per image")
    return ("The features of the distinct images were extracted once before the runs "
            f"(features.json: {'; '.join(parts)}).")


def build_section() -> str:
    out = ["All numbers below come from the scripts in `benchmarks/`; each table "
           "names the command that made it (`python benchmarks/readme_results.py` "
           "rewrites this section from their outputs). They were measured on a "
           "2-core CPU without a GPU at the `cpu` budget (the detectors' "
           "defaults), far below the papers' budgets.", ""]
    for heading, folder, what in SUITES:
        d = RESULTS / folder
        out += [f"### {heading}", ""]
        if not (d / "table.md").exists():
            out += ["Not run yet.", ""]
            continue
        meta = json.loads((d / "meta.json").read_text())
        if "{features}" in what:
            what = what.replace("{features}", extraction_sentence(d / "features.json"))
        out += [what, "", "```bash", command(meta), "```", ""]
        out += [(d / "table.md").read_text().strip(), ""]
        by_task = mean_auroc(d / "runs.csv")
        summary = summary_line(by_task)
        if summary:
            out += [summary, ""]
        lines = win_loss_lines(by_task)
        if lines:
            out += ["Where skood wins and loses:", "", *lines, ""]
        out += [f"Device: {meta.get('device', '?')}; wall time of the last call "
                f"{meta.get('wall_s_this_call', float('nan')):.0f} s (cached runs are not re-run).",
                ""]
    for heading, file, meta_file in TABLES:
        out += [f"### {heading}", ""]
        path = RESULTS / file
        if not path.exists():
            out += ["Not run yet.", ""]
            continue
        if meta_file is not None:
            meta = json.loads((RESULTS / meta_file).read_text())
            out += ["```bash", command(meta), "```", "",
                    f"Device: {meta.get('device', '?')}.", ""]
        out += [demote(path.read_text().strip()), ""]
    claims = RESULTS / "claims.md"
    out += ["### The papers' central claims", ""]
    if claims.exists():
        body = claims.read_text().split("\n", 1)[1].strip()  # drop its own title
        out += ["```bash", "python benchmarks/claims.py", "```", "",
                body.replace("### ", "#### "), ""]
    else:
        out += ["Not run yet (`python benchmarks/claims.py`).", ""]
    return "\n".join(out).rstrip() + "\n"


def splice(readme: str, section: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README has no {BEGIN} ... {END} markers")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section}{END}{tail}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    old = args.readme.read_text()
    new = splice(old, build_section())
    if args.check:
        sys.exit(0 if new == old else 1)
    args.readme.write_text(new)
    print(f"wrote the results section of {args.readme}")


if __name__ == "__main__":
    main()
