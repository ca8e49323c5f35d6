"""One leaderboard per suite: every skood detector at its current defaults beside the baselines.

Reads the committed runs of each suite (``benchmarks/results/<suite>/runs.csv``, written by
``tabular_suite.py`` and ``image_suite.py``) and writes, per suite, to
``benchmarks/results/leaderboards/<suite>/``:

* ``table.md``: mean AUROC x 100 per dataset (rows) and detector (columns), the mean over
  the datasets, its spread over seeds, the mean fit seconds per run, and the commands that
  made the runs;
* ``table.csv``: the same numbers, one row per (dataset, detector), machine-readable;
* ``heatmap.png``: the dataset x detector AUROC matrix;
* ``cost.png``: mean fit seconds per run (log scale) against mean AUROC, one point per
  detector;

and ``benchmarks/results/leaderboards/summary.md``: mean AUROC per suite and detector.

Only runs made under the detectors' **current** defaults count. A run's key (see
``_suite.run_key``) is a hash of the task, the detector, the seed, the budget, the skood
version and every parameter of the detector; a row counts when its key is the key the
current code gives that run, up to the three explicit tables below
(:data:`SAME_CODE_PATH` for a parameter whose default changed without changing what
runs, :data:`ADDED_PARAMS` for a parameter added since whose default runs what ran
before it, :data:`SAME_AS_INSTALLED` for older skood versions whose runs of a detector are
the installed version's). A detector with no such run in a suite is shown as "not run at
current defaults", never with older numbers.

Usage::

    python benchmarks/leaderboard.py            # write every leaderboard and summary.md
    python benchmarks/leaderboard.py --check    # exit 1 if a committed file is stale

``--check`` compares the Markdown and CSV files byte for byte with what would be written
(the figures are drawn from ``table.csv`` alone, so they are checked through it and for
being present) and fails when a committed ``runs.csv`` row that the leaderboards show was
made under other defaults than the current ones.
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _suite import ADDED_PARAMS, SKOOD, Task, _identity, parse_variant, run_key

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BOARDS = RESULTS / "leaderboards"
BUDGET = "cpu"
LITE0 = "efficientnet_lite0"


# ------------------------------------------------------------------------------ suites
@dataclass(frozen=True)
class Suite:
    """One leaderboard: the runs folder it reads, its columns and the commands that fill it."""

    name: str  # folder under benchmarks/results and under benchmarks/results/leaderboards
    title: str
    about: str
    kind: str  # "tabular" or "image"
    seeds: tuple[int, ...]
    detectors: tuple[str, ...]  # skood columns: always shown, "not run" when missing
    baselines: tuple[str, ...]  # baseline columns: shown when the suite has their runs
    commands: tuple[str, ...]
    meta: Callable[[str], dict] = field(repr=False, default=lambda name: {})


def _tabular_meta(protocol: str, name: str) -> dict:
    from tabular_suite import task_meta

    return task_meta(protocol, "adbench")


def _image_meta(dataset: str, name: str) -> dict:
    from _image_tasks import image_tasks

    return image_tasks(dataset, "one-class", [int(name.rsplit("-", 1)[1])], BUDGET, None)[0].meta


_SKOOD = tuple(SKOOD)
_PRETRAINED = tuple(f"{d}(backbone={LITE0!r})" for d in SKOOD)
_TAB = "python benchmarks/tabular_suite.py --sources adbench --protocol {p} --seeds 0 1 2"
_IMG = "python benchmarks/image_suite.py --dataset {d} --protocol one-class"
_DETS = " --detectors " + " ".join(_SKOOD)
_DN2 = f"FeatureKNN(backbone={LITE0!r})"
_PRE = " --detectors " + " ".join(f'"{d}"' for d in (*_PRETRAINED, _DN2)) + " IsolationForest KNN"

SUITES = (
    Suite("t-ind", "T-ind: ADBench classical, inductive protocol (contaminated training)",
          "The 34 ADBench classical tables: stratified subsample to at most 10,000 rows, "
          "stratified 70/30 split, MinMax scaling fitted on the training part, unsupervised "
          "fit on the contaminated training part, AUROC on the test part. FeatureKNN is kNN "
          "on the features of the untrained MLP encoder (the untrained-encoder reference).",
          "tabular", (0, 1, 2), _SKOOD,
          ("IsolationForest", "LOF", "OCSVM", "KNN", "ECOD", "COPOD", "AutoEncoder", "DeepSVDD",
           "FeatureKNN"),
          (_TAB.format(p="inductive"),), functools.partial(_tabular_meta, "inductive")),
    Suite("t-clean", "T-clean: ADBench classical, clean protocol (normal-only training)",
          "The T-ind splits with the anomalies removed from the training part (the one-class "
          "setting the image papers assume). FeatureKNN: the untrained-MLP reference.",
          "tabular", (0, 1, 2), _SKOOD, ("IsolationForest", "KNN", "FeatureKNN"),
          (_TAB.format(p="clean") + _DETS + " IsolationForest KNN FeatureKNN",),
          functools.partial(_tabular_meta, "clean")),
    Suite("f-oc", "F-oc: one-class Fashion-MNIST",
          "Train on 1,000 training images of class k, test on 2,000 test images (class k "
          "normal, the other classes anomalous), for every k. FeatureKNN: kNN cosine on the "
          "features of the small CNN every image detector trains, with its initial weights "
          "(the untrained-encoder reference); the other baselines see raw pixels.",
          "image", (0,), _SKOOD, ("FeatureKNN", "IsolationForest", "LOF", "OCSVM", "KNN", "ECOD"),
          (_IMG.format(d="fashion") + _DETS + " FeatureKNN IsolationForest LOF OCSVM KNN ECOD",),
          functools.partial(_image_meta, "fashion")),
    Suite("c-oc", "C-oc: one-class CIFAR-10",
          "The F-oc protocol on CIFAR-10 (1,000 training images of class k, 2,000 test "
          "images). FeatureKNN: the untrained small CNN's features (kNN cosine); the other "
          "baselines see raw pixels.",
          "image", (0,), _SKOOD, ("FeatureKNN", "IsolationForest", "LOF", "KNN", "ECOD"),
          (_IMG.format(d="cifar10") + _DETS + " FeatureKNN IsolationForest LOF KNN ECOD",),
          functools.partial(_image_meta, "cifar10")),
    Suite("p-fashion", "P-fashion: one-class Fashion-MNIST on a frozen pretrained encoder",
          "The F-oc splits. Every skood detector with backbone='efficientnet_lite0' (frozen "
          "ImageNet features at 160 px), FeatureKNN on the same features (DN2: kNN cosine) "
          "and raw-pixel baselines. Fit seconds are the detectors' own on cached features.",
          "image", (0,), _PRETRAINED, (_DN2, "IsolationForest", "KNN"),
          (_IMG.format(d="fashion") + _PRE,), functools.partial(_image_meta, "fashion")),
    Suite("p-cifar10", "P-cifar10: one-class CIFAR-10 on a frozen pretrained encoder",
          "The C-oc splits; columns as in P-fashion.",
          "image", (0,), _PRETRAINED, (_DN2, "IsolationForest", "KNN"),
          (_IMG.format(d="cifar10") + _PRE,), functools.partial(_image_meta, "cifar10")),
)


# ------------------------------------------------------------- what "current" means
def _dum_trains_no_image_encoder_or_whitens(suite: Suite, row: dict) -> bool:
    """DUM's embedding="auto" picks "whitened" when it trains an image encoder on more
    images than the encoder's representation has dimensions; on tabular rows and on a
    frozen pretrained backbone DUM trains no image encoder and never reads the parameter."""
    if suite.kind == "tabular" or "backbone=" in row["detector"]:
        return True
    return int(row["n_train"]) > _cnn_width(suite.name)


@functools.cache
def _cnn_width(suite: str) -> int:
    """Representation width of the default image encoder on the suite's images."""
    import torch

    from skood._nn.encoders import build_encoder

    shape = (3, 32, 32) if "cifar" in suite or suite == "c-oc" else (1, 28, 28)
    with torch.no_grad():
        return int(build_encoder("cnn", shape).eval()(torch.zeros(2, *shape)).shape[1])


#: (detector, parameter) -> (the value a committed run was made with, as its repr, and when
#: that value runs exactly the code the current default runs). Each entry is a default
#: that changed without changing what runs in these suites:
#: - DUM, embedding: "auto" became the default after "whitened"; "auto" resolves to
#:   "whitened" in every run it is accepted for (see the condition's docstring), so the
#:   fits are the same code with the same seeds.
def _bank_takes_every_row(suite: Suite, row: dict) -> bool:
    """max_bank="auto" banks every training row up to ``AUTO_MAX_BANK`` rows: on at most
    that many the bank is the one max_bank=None built (no subset is drawn, no generator)."""
    from skood._scoring import AUTO_MAX_BANK

    return int(row["n_train"]) <= AUTO_MAX_BANK


SAME_CODE_PATH: dict[tuple[str, str], tuple[str, Callable[[Suite, dict], bool]]] = {
    ("DUM", "embedding"): ("'whitened'", _dum_trains_no_image_encoder_or_whitens),
    # max_bank: "auto" became the default after None
    **{(d, "max_bank"): ("None", _bank_takes_every_row)
       for d in ("SemSAD", "NSA", "DistillNeg", "FeatureKNN")},
}

#: installed skood version -> detector -> older versions whose runs of that detector, at its
#: current parameters, are the installed version's runs. A version bump marks a change of
#: behaviour that no parameter shows; the bumps since the oldest version here changed
#: DistillNeg's kernel (twice), RotAuxMSP's tabular task and DUM's lift, each before the
#: runs accepted below were made; SemSAD, FeatureKNN and the NSA runs were not touched by
#: them. Spot re-runs of the accepted rows with the installed version gave the committed
#: AUROC exactly. When the version changes, this table must be reviewed: until then no
#: older run counts.
SAME_AS_INSTALLED: dict[str, dict[str, tuple[str, ...]]] = {
    "0.1.2": {
        "SemSAD": ("0.1.0", "0.1.1"),
        "FeatureKNN": ("0.1.0", "0.1.1"),
        "DistillNeg": ("0.1.1",),
        "RotAuxMSP": ("0.1.1",),
        "DUM": ("0.1.1",),
    },
}


def _installed_version() -> str:
    import skood

    return skood.__version__


def _versions(detector: str, installed: str) -> tuple[str, ...]:
    """skood versions whose runs of ``detector`` count as the installed version's."""
    base = parse_variant(detector)[0]
    if base not in SKOOD and base != "FeatureKNN":
        # scikit-learn and PyOD baselines run no skood code but the splits, which are the
        # same under every version listed here (their rows made by different versions on
        # the same splits agree exactly); the version still enters their keys
        listed = {v for table in SAME_AS_INSTALLED.values() for vs in table.values() for v in vs}
        return tuple(sorted({installed, *SAME_AS_INSTALLED, *listed}))
    return (installed, *SAME_AS_INSTALLED.get(installed, {}).get(base, ()))


@functools.cache
def _current_identity(detector: str, seed: int, kind: str) -> dict:
    return _identity(detector, seed, BUDGET, kind)


def current_status(suite: Suite, row: dict) -> str:
    """``""`` when ``row`` was made under the detector's current defaults, else why not."""
    if row["budget"] != BUDGET:
        return f"budget {row['budget']}"
    det, seed = row["detector"], int(row["seed"])
    task = Task(row["dataset"], suite.kind, None, meta=suite.meta(row["dataset"]))
    ident = _current_identity(det, seed, suite.kind)
    installed = _installed_version()
    base = parse_variant(det)[0]
    options = [dict(ident["params"])]
    for (who, param), (old, holds) in SAME_CODE_PATH.items():
        if who == base and param in ident["params"] and holds(suite, row):
            options += [{**p, param: old} for p in options]
    for param, holds in ADDED_PARAMS.items():
        if param in ident["params"] and holds(row):
            options += [{k: v for k, v in p.items() if k != param} for p in options]
    for version in _versions(det, installed):
        for params in options:
            if run_key(task, det, seed, BUDGET, {"skood": version, "params": params}) == row["key"]:
                return ""
    return "made under other parameters or an older skood version than the installed defaults"


# ----------------------------------------------------------------------------- reading
def read_runs(path: Path) -> list[dict]:
    """The rows of a sweep's ``runs.csv`` (text as written; numbers parsed where used)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(v: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _label(detector: str) -> str:
    """Column name: the variant's base name (every column of a suite shares its backbone)."""
    return parse_variant(detector)[0]


@dataclass
class Board:
    suite: Suite
    datasets: list[str]
    columns: list[str]
    missing: list[str]  # columns without a current run
    auroc: np.ndarray  # datasets x columns, mean over seeds (NaN: no run)
    sd: np.ndarray  # datasets x columns, sd over seeds
    ap: np.ndarray
    mean: np.ndarray  # per column: mean over datasets
    mean_sd: np.ndarray  # per column: sd over seeds of each seed's mean over datasets
    fit_s: np.ndarray  # per column: mean fit seconds per run
    seeds: list[int]
    stale: list[str]  # rows of the suite's columns left out: not made at current defaults


def build(suite: Suite) -> Board:
    rows = [r for r in read_runs(RESULTS / suite.name / "runs.csv")
            if not r["dataset"].startswith("odds_")]
    wanted = (*suite.detectors, *suite.baselines)
    rows = [r for r in rows if r["detector"] in wanted and int(r["seed"]) in suite.seeds
            and r["budget"] == BUDGET]
    why = [current_status(suite, r) for r in rows]
    ok = [r for r, w in zip(rows, why, strict=True) if not w]
    stale = [f"{r['dataset']} {r['detector']} seed {r['seed']}: {w}"
             for r, w in zip(rows, why, strict=True) if w]
    ok = [r for r in ok if not r.get("error")]
    present = {r["detector"] for r in ok}
    columns = [d for d in suite.detectors] + [b for b in suite.baselines if b in present]
    missing = [d for d in suite.detectors if d not in present]
    datasets = sorted({r["dataset"] for r in rows}, key=_dataset_order)
    n, m = len(datasets), len(columns)
    auroc, sd, ap = (np.full((n, m), np.nan) for _ in range(3))
    mean, mean_sd, fit_s = (np.full(m, np.nan) for _ in range(3))
    seeds = sorted({int(r["seed"]) for r in ok})
    for j, det in enumerate(columns):
        mine = [r for r in ok if r["detector"] == det]
        if not mine:
            continue
        for i, ds in enumerate(datasets):
            vals = [_num(r["auroc"]) for r in mine if r["dataset"] == ds]
            if vals:
                auroc[i, j] = np.mean(vals)
                sd[i, j] = np.std(vals, ddof=1) if len(vals) > 1 else np.nan
                ap[i, j] = np.mean([_num(r["ap"]) for r in mine if r["dataset"] == ds])
        mean[j] = np.nanmean(auroc[:, j])
        per_seed = [np.mean([_num(r["auroc"]) for r in mine if int(r["seed"]) == s])
                    for s in seeds if any(int(r["seed"]) == s for r in mine)]
        mean_sd[j] = np.std(per_seed, ddof=1) if len(per_seed) > 1 else np.nan
        fit_s[j] = np.mean([_num(r["fit_s"]) for r in mine])
    return Board(suite, datasets, columns, missing, auroc, sd, ap, mean, mean_sd, fit_s, seeds,
                 stale)


def _dataset_order(name: str) -> tuple:
    head = name.split("_", 1)[0].rsplit("-", 1)[-1]
    return (int(head), name) if head.isdigit() else (10**6, name)


# ----------------------------------------------------------------------------- writing
def _fmt(v: float, digits: int = 1) -> str:
    return "—" if v != v else f"{100 * v:.{digits}f}"


def _seconds(v: float) -> str:
    if v != v:
        return "—"
    return f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def table_md(b: Board) -> str:
    s = b.suite
    heads = [f"{_label(c)} †" if c in b.missing else _label(c) for c in b.columns]
    lines = [f"# {s.title}", "", s.about, "", "Made by:", "", "```bash", *s.commands,
             "python benchmarks/leaderboard.py", "```", "",
             "| dataset | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for i, ds in enumerate(b.datasets):
        row = b.auroc[i]
        best = np.nanmax(row) if not np.isnan(row).all() else np.nan
        cells = [("**" + _fmt(v) + "**") if v == best else _fmt(v) for v in row]
        lines.append(f"| {ds} | " + " | ".join(cells) + " |")
    top = np.nanmax(b.mean) if not np.isnan(b.mean).all() else np.nan
    lines.append("| **mean** | " + " | ".join(
        ("**" + _fmt(v) + "**") if v == top else _fmt(v) for v in b.mean) + " |")
    if len(b.seeds) > 1:
        lines.append("| ± sd over seeds | " + " | ".join(_fmt(v) for v in b.mean_sd) + " |")
    lines.append("| fit s per run | " + " | ".join(_seconds(v) for v in b.fit_s) + " |")
    lines += ["", f"AUROC x 100 on the test part, mean over seeds {' '.join(map(str, b.seeds))}"
              f"; best per row in bold; columns: skood's detectors at their current defaults "
              "(the `cpu` budget), then the baselines."
              + (" ± sd over seeds: standard deviation of each seed's mean over the datasets."
                 if len(b.seeds) > 1 else "")
              + " Fit seconds: mean per run on a 2-core CPU."]
    for c in b.missing:
        lines += ["", f"† **{_label(c)}: not run at current defaults** in this suite (no "
                  "committed run of it was made under its current defaults): run the "
                  "command above with `--detectors "
                  + (f'"{c}"' if "(" in c else c) + "`, then `python benchmarks/leaderboard.py`."]
    partial = [c for j, c in enumerate(b.columns)
               if c not in b.missing and np.isnan(b.auroc[:, j]).any()]
    for c in partial:
        j = b.columns.index(c)
        lines += ["", f"{_label(c)}: runs on {int((~np.isnan(b.auroc[:, j])).sum())} of "
                  f"{len(b.datasets)} datasets; its mean is over those."]
    return "\n".join(lines) + "\n"


def table_csv(b: Board) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "detector", "auroc", "auroc_sd_over_seeds", "ap", "fit_s"])
    for j, c in enumerate(b.columns):
        for i, ds in enumerate(b.datasets):
            if b.auroc[i, j] == b.auroc[i, j]:
                w.writerow([ds, c, f"{b.auroc[i, j]:.6f}", _csv(b.sd[i, j]), _csv(b.ap[i, j]), ""])
        if c not in b.missing:
            w.writerow(["mean", c, f"{b.mean[j]:.6f}", _csv(b.mean_sd[j]), "",
                        f"{b.fit_s[j]:.4g}"])
    return buf.getvalue()


def _csv(v: float) -> str:
    return "" if v != v else f"{v:.6f}"


def summary_md(boards: Sequence[Board]) -> str:
    """Mean AUROC per suite (columns) and detector (rows): the README's summary table."""
    rows: dict[str, dict[str, str]] = {}
    for b in boards:
        for j, c in enumerate(b.columns):
            name = _label(c)
            if name == "FeatureKNN":
                name = "FeatureKNN (untrained encoder; DN2 on pretrained)"
            cell = ("n/r" if c in b.missing else _fmt(b.mean[j])
                    + (f" ± {_fmt(b.mean_sd[j])}" if b.mean_sd[j] == b.mean_sd[j] else ""))
            rows.setdefault(name, {})[b.suite.name] = cell
    order = [*SKOOD, *sorted((n for n in rows if n not in SKOOD), key=lambda n: (
        -sum(1 for v in rows[n].values() if v != "n/r"), n))]
    heads = [b.suite.name for b in boards]
    lines = ["# Leaderboard summary: mean AUROC x 100 per suite", "",
             "```bash", "python benchmarks/leaderboard.py", "```", "",
             "| detector | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for n in order:
        lines.append(f"| {n} | " + " | ".join(rows[n].get(h, "") for h in heads) + " |")
    lines += ["", "Mean over the suite's datasets (one-class suites: its classes) of each "
              "detector's AUROC, ± the standard deviation over seeds where a suite has "
              "several; skood's detectors at their current defaults. n/r: not run at "
              "current defaults; empty: not part of the suite. Suites: "
              + "; ".join(f"[{b.suite.name}]({b.suite.name}/table.md) "
                          f"{b.suite.title.split(': ', 1)[1]}" for b in boards) + "."]
    return "\n".join(lines) + "\n"


def heatmap(b: Board, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_label(c) + (" †" if c in b.missing else "") for c in b.columns]
    n, m = b.auroc.shape
    fig, ax = plt.subplots(figsize=(1.6 + 0.62 * m, 1.4 + 0.3 * n), layout="constrained")
    data = np.ma.masked_invalid(100 * b.auroc)
    cmap = plt.get_cmap("RdYlGn").copy()
    cmap.set_bad("#dddddd")
    im = ax.imshow(data, cmap=cmap, vmin=50, vmax=100, aspect="auto")
    for i in range(n):
        for j in range(m):
            v = b.auroc[i, j]
            ax.text(j, i, "—" if v != v else f"{100 * v:.0f}", ha="center", va="center",
                    fontsize=7)
    ax.set_xticks(range(m), labels, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(n), b.datasets, fontsize=8)
    ax.set_title(f"{b.suite.title.split(':')[0]}: AUROC x 100 (mean over seeds)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.6, label="AUROC x 100 (clipped at 50)")
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def cost(b: Board, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    points = []
    for j, c in enumerate(b.columns):
        x, y = b.fit_s[j], 100 * b.mean[j]
        if x != x or y != y:
            continue
        ours = parse_variant(c)[0] in SKOOD
        ax.scatter(max(x, 1e-3), y, s=40, marker="o" if ours else "s",
                   color="tab:blue" if ours else "tab:gray", zorder=3)
        points.append((max(x, 1e-3), y, _label(c)))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ax.set_xscale("log")
    if xs:
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 2.5, hi * 6)  # room for the labels right of the points
        ax.set_ylim(min(ys) - 3, max(ys) + 3)
    ax.set_xlabel("fit seconds per run (mean, log scale)")
    ax.set_ylabel("mean AUROC x 100")
    title = (f"{b.suite.title.split(':')[0]}: quality against cost "
             "(circles: skood, squares: baselines)")
    if b.missing:
        title += "\nnot run at current defaults: " + ", ".join(_label(c) for c in b.missing)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="major")
    _place_labels(ax, points)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _place_labels(ax, points: list[tuple[float, float, str]]) -> None:
    """Label each point where the label overlaps no other label and stays inside the axes
    (the first free place of a few around the point)."""
    fig = ax.figure
    fig.canvas.draw()  # settle the layout: labels are placed in display coordinates
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = [ax.transData.transform((x, y)) for x, y, _ in points]
    placed = []
    offsets = [(6, 3), (6, -11), (-6, 3), (-6, -11), (6, 13), (6, -21), (-6, 13), (-6, -21),
               (6, 23), (6, -31), (-6, 23), (-6, -31)]
    for x, y, name in sorted(points, key=lambda p: -p[1]):
        for dx, dy in offsets:
            t = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points",
                            fontsize=8, ha="left" if dx > 0 else "right")
            box = t.get_window_extent(renderer)
            free = not any(box.overlaps(o) for o in placed) and not any(
                box.contains(px, py) for px, py in taken)
            if free and inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1):
                placed.append(box)
                break
            t.remove()
        else:
            t = ax.annotate(name, (x, y), xytext=(6, 3), textcoords="offset points", fontsize=8)


def texts(boards: Sequence[Board]) -> dict[Path, str]:
    """Every text file the leaderboards consist of, by path."""
    out = {BOARDS / "summary.md": summary_md(boards)}
    for b in boards:
        out[BOARDS / b.suite.name / "table.md"] = table_md(b)
        out[BOARDS / b.suite.name / "table.csv"] = table_csv(b)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when a committed leaderboard file differs from what would be "
                         "written, or a committed run of a suite was made under other defaults")
    args = ap.parse_args(argv)
    boards = [build(s) for s in SUITES]
    files = texts(boards)
    if args.check:
        bad = [str(p.relative_to(ROOT)) for p, t in files.items()
               if not p.exists() or p.read_text() != t]
        bad += [str((BOARDS / b.suite.name / f).relative_to(ROOT)) + " missing" for b in boards
                for f in ("heatmap.png", "cost.png") if not (BOARDS / b.suite.name / f).exists()]
        bad += [f"{b.suite.name}/runs.csv: {s}" for b in boards for s in b.stale]
        if bad:
            print("stale leaderboards (run python benchmarks/leaderboard.py):", *bad,
                  sep="\n  ")
            sys.exit(1)
        print(f"{len(files)} leaderboard files up to date")
        return
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for b in boards:
        heatmap(b, BOARDS / b.suite.name / "heatmap.png")
        cost(b, BOARDS / b.suite.name / "cost.png")
        print(f"{b.suite.name}: " + ", ".join(
            f"{_label(c)} {'n/r' if c in b.missing else _fmt(b.mean[j])}"
            for j, c in enumerate(b.columns)))
    print(f"written to {BOARDS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
