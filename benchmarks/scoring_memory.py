"""Scoring memory: peak memory growth of ``score_samples`` against the rows scored.

Each detector is fitted once, tiny (2,000 rows of 10 float64 features, one
epoch per phase, ``device="cpu"``, default ``max_bank``), and then scores
``n`` rows of 10 float64 features, for each ``n`` of ``--sizes`` (default
2,000, 200,000 and 2,000,000). Every measurement runs in a fresh
subprocess: fit, draw the ``n`` rows, score 2,000 rows once (warm-up: lazy
initialisations are not counted), reset the kernel's peak-RSS counter
(``/proc/self/clear_refs``), read the resident set size, call
``score_samples`` on the ``n`` rows and read the peak resident set size
(``VmHWM``) again. Peak growth = peak during the call minus the resident
size before it: the caller's array (which exists before the call) does
not count, the returned float64 scores (8 bytes a row) do.

``--code LABEL=PATH`` (repeatable) measures the skood package found under
``PATH`` (put first on ``PYTHONPATH``), e.g. an older commit checked out with
``git worktree add /tmp/before <commit>``; by default only this checkout
("store per chunk").

Usage::

    OMP_NUM_THREADS=1 nice python benchmarks/scoring_memory.py \
        --code "store of all rows=/tmp/before" --code "store per chunk=."

Outputs under ``--out`` (default ``benchmarks/results/scoring_memory``):
``runs.csv`` (one row per code, detector and size), ``table.md`` (peak growth
in MiB per detector and size, one column group per code, with the command
that made it) and ``meta.json``. ``--cache DIR`` keeps each measurement as
JSON there and reuses it (to measure one code version at a time and tabulate
them together). One thread, CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (2_000, 200_000, 2_000_000)
N_FIT = 2_000
N_FEATURES = 10
#: detector -> parameters of its tiny fit (the scoring path is what is measured)
DETECTORS: dict[str, dict] = {
    "SemSADDetector": {"encoder_epochs": 1, "discriminator_epochs": 1, "n_partners": 8},
    "NSADetector": {"max_epochs": 1},
    "DUMDetector": {"dum_epochs": 1, "encoder_epochs": 1},
    "DistillNegDetector": {"max_epochs": 1, "n_soft_classes": 64, "head_hidden_dim": 32,
                           "n_local_crops": 1},
    "RotAuxMSPDetector": {"max_epochs": 1},
    "FeatureKNNDetector": {},
}
MIB = 1024 * 1024


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1))


def worker(name: str, n: int) -> dict:
    """Fit ``name`` tiny, score ``n`` rows; the peak growth of the call, in bytes."""
    import gc

    import torch

    import skood

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X_fit = rng.standard_normal((N_FIT, N_FEATURES))
    det = getattr(skood, name)(**DETECTORS[name], device="cpu", random_state=0).fit(X_fit)
    X = rng.standard_normal((n, N_FEATURES))
    det.score_samples(X[:2_000])  # warm-up
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    scores = det.score_samples(X)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    assert scores.shape == (n,) and np.isfinite(scores).all()
    return {"skood_file": skood.__file__, "rss_before_bytes": before * 1024,
            "peak_growth_bytes": (peak - before) * 1024, "seconds": seconds}


def measure(label: str, path: Path, name: str, n: int, cache: Path | None = None) -> dict:
    """One measurement in a fresh subprocess (or its JSON in ``cache``, made earlier)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
    hit = None if cache is None else cache / slug / f"{name}-{n}.json"
    if hit is not None and hit.exists():
        return json.loads(hit.read_text())
    env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", name,
                          str(n)], env=env, cwd="/", capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise RuntimeError(f"{label} {name} {n}: worker failed\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(res.pop("skood_file")).resolve().is_relative_to(path.resolve()):
        raise RuntimeError(f"{label}: skood was not imported from {path}")
    res = {"code": label, "detector": name, "n_rows": n, **res}
    if hit is not None:
        hit.parent.mkdir(parents=True, exist_ok=True)
        hit.write_text(json.dumps(res))
    return res


def table(rows: list[dict], labels: list[str], sizes: list[int], command: str) -> str:
    def size(n: int) -> str:
        return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"

    head = ["detector"] + [f"{lab}: {size(n)}" for lab in labels for n in sizes]
    lines = [
        "# Scoring memory: peak memory growth of score_samples (MiB)",
        "",
        f"Made by `{command}`.",
        "",
        f"One detector fitted on {N_FIT:,} rows x {N_FEATURES} float64 features (tiny budget, "
        "default max_bank), scoring n rows of the same width (2k, 200k, 2M); each cell is the "
        "peak resident memory during the call minus the resident memory before it, in MiB, "
        "in a fresh process per cell (one thread, CPU). The caller's array is not counted; "
        "the returned float64 scores (8 bytes a row) are. Columns per code version: "
        + "; ".join(f"'{lab}'" for lab in labels) + ". One measurement per cell: the C "
        "allocator's heap state moves a cell by some tens of MiB between runs, so read the "
        "trend across sizes, not single cells.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    cell = {(r["code"], r["detector"], r["n_rows"]): r for r in rows}
    for name in DETECTORS:
        vals = []
        for lab in labels:
            for n in sizes:
                r = cell.get((lab, name, n))
                vals.append("not run" if r is None else f"{round(r['peak_growth_bytes'] / MIB):d}")
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, metavar=("DETECTOR", "N"), help=argparse.SUPPRESS)
    p.add_argument("--code", action="append", metavar="LABEL=PATH",
                   help="a labelled skood checkout to measure (repeatable); default: this one")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scoring_memory")
    p.add_argument("--cache", type=Path, default=None,
                   help="keep each measurement here as JSON and reuse it when present")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    codes = [c.split("=", 1) for c in (args.code or [f"store per chunk={ROOT}"])]
    codes = [(lab, Path(path).resolve()) for lab, path in codes]
    rows = []
    t0 = time.time()
    for name in args.detectors:
        for n in args.sizes:
            for lab, path in codes:
                r = measure(lab, path, name, n, args.cache)
                rows.append(r)
                print(f"{lab:24s} {name:20s} {n:>9,d} rows: peak growth "
                      f"{r['peak_growth_bytes'] / MIB:7.1f} MiB, {r['seconds']:7.1f} s",
                      flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    argv = " ".join(f'"{a}"' if " " in a else a for a in sys.argv[1:])
    command = f"OMP_NUM_THREADS=1 python benchmarks/scoring_memory.py {argv}".strip()
    (args.out / "table.md").write_text(
        table(rows, [lab for lab, _ in codes], args.sizes, command))
    import sklearn
    import torch
    meta = {"script": "benchmarks/scoring_memory.py", "command": command,
            "codes": [lab for lab, _ in codes], "cache": str(args.cache) if args.cache else None,
            "sizes": args.sizes, "n_fit": N_FIT,
            "n_features": N_FEATURES, "detectors": {d: DETECTORS[d] for d in args.detectors},
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "threads": 1, "device": "cpu",
            "versions": {"numpy": np.__version__, "torch": torch.__version__,
                         "sklearn": sklearn.__version__},
            "wall_seconds": round(time.time() - t0, 1)}
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
