"""Shared output helpers of the benchmark scripts."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def auroc_table(runs: Iterable[tuple[str, str, float]]) -> str:
    """Markdown table of mean AUROC x 100 per (dataset, detector), with a mean row.

    ``runs`` holds ``(dataset, detector, auroc)`` triples, several seeds each;
    rows and columns keep the order of first appearance.
    """
    runs = list(runs)
    names = list(dict.fromkeys(r[0] for r in runs))
    dets = list(dict.fromkeys(r[1] for r in runs))
    mean = {(n, d): np.mean([r[2] for r in runs if r[0] == n and r[1] == d])
            for n in names for d in dets}
    lines = ["| dataset | " + " | ".join(dets) + " |", "|---|" + "---|" * len(dets)]
    lines += [f"| {n} | " + " | ".join(f"{100 * mean[n, d]:.1f}" for d in dets) + " |"
              for n in names]
    lines.append("| **mean** | " + " | ".join(
        f"**{100 * np.nanmean([mean[n, d] for n in names]):.1f}**" for d in dets) + " |")
    return "\n".join(lines)
