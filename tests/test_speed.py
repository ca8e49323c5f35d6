"""benchmarks/speed.py: a smoke run (the outputs' structure, no timing assertions) and its
reference loop (the nets' own steps)."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skood._testing import benchmark_module

ROOT = Path(__file__).resolve().parents[1]


def test_speed_smoke(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "speed.py", "--budget", "smoke", "--device", "cpu", "--out",
         str(tmp_path)],
        cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=300, env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "speed.csv") as f:
        rows = list(csv.DictReader(f))
    by_section = {s: [r for r in rows if r["section"] == s] for s in "abcd"}
    assert all(by_section.values()), {s: len(v) for s, v in by_section.items()}

    # (a) one row per training phase of every detector and input kind; the
    # detectors whose module exists must run (a skip is reported in the note)
    names = [r["name"] for r in by_section["a"]]
    for det in ("SemSAD", "NSA", "DistillNeg"):
        for kind in ("image", "tabular"):
            assert any(n.startswith(f"{det} [{kind}]") for n in names), (det, kind)
    assert any("encoder" in n for n in names) and any("discriminator" in n for n in names)
    for r in rows:
        skipped = r["note"].startswith("skipped")
        assert skipped == (r["ratio"] == "nan"), r
        if not skipped:
            for key in ("skood", "reference_value", "ratio"):
                v = float(r[key])
                assert math.isfinite(v) and v > 0, (key, r)
    for det in ("SemSAD", "NSA", "DistillNeg"):
        assert not any(r["note"].startswith("skipped") for r in by_section["a"]
                       if r["name"].startswith(det)), det

    # (b) every augmentation on grey and colour images; (c) every scorer agrees with sklearn
    assert {r["name"].split(" [")[0] for r in by_section["b"]} == {
        "SimCLRAugment", "SemSADNegative", "MultiCrop(2 global, 4 local)", "PadCropFlip"}
    assert len(by_section["b"]) == 8
    assert any("kernel_cosine" in r["name"] for r in by_section["c"])
    assert any("Mahalanobis" in r["name"] for r in by_section["c"])
    for r in by_section["c"]:
        assert float(r["note"].split("max |diff| ")[1]) < 1e-4, r
    # (d) two chunk sizes per scorer, each compared with the dense matrix it avoids,
    # and the chunked whitening fit next to scikit-learn's LedoitWolf (same estimate)
    assert len(by_section["d"]) == 5
    assert all("chunk_size=" in r["name"] for r in by_section["d"][:4])
    whitening = by_section["d"][4]
    assert whitening["reference"] == "sklearn LedoitWolf on a float64 copy"
    assert float(whitening["note"].split("max relative diff ")[1].split(";")[0]) < 1e-8

    table = (tmp_path / "speed.md").read_text()
    for title in ("(a) Training step", "(b) Augmentation", "(c) Scoring throughput",
                  "(d) Peak memory"):
        assert title in table
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert {"versions", "device", "loadavg_before", "loadavg_after", "budget",
            "torch_device"} <= set(meta)
    assert meta["budget"] == "smoke" and meta["torch_device"] == "cpu"


@pytest.mark.parametrize("kind", ["tabular", "image"])
@pytest.mark.parametrize("name", ["SemSAD", "NSA", "DUM", "DistillNeg", "RotAuxMSP"])
def test_bare_step_is_the_nets_own_step(name, kind):
    """The reference loop of section (a) trains what skood trains: from the same
    state, one bare step and one skorch step give the same loss, weights,
    buffers and generator states (a hand-copied objective cannot drift)."""
    speed = benchmark_module("speed")

    rng = np.random.RandomState(0)
    X = (rng.randint(0, 256, size=(16, 12, 12)).astype(np.uint8) if kind == "image"
         else rng.normal(size=(16, 6)).astype(np.float32))
    nets = speed.fit_capturing(name, kind, X, np.arange(16) % 4, batch=8, device="cpu")
    assert nets
    for net, data in nets:
        speed.trainable_again(net)
        ours, bare = copy.deepcopy(net), copy.deepcopy(net)
        idx = torch.arange(8, device=data.device)
        step = ours.train_step((data[idx], idx))
        bare.module_.train()  # as the bare loop's epoch starts
        loss = speed.bare_step(bare, bare.optimizer_, data[idx], idx)
        label = type(net).__name__
        assert step["loss"].item() == loss.item(), label
        for (key, a), b in zip(ours.module_.state_dict().items(),
                               bare.module_.state_dict().values(), strict=True):
            assert torch.equal(a, b), (label, key)
        for g in ("generator_", "cpu_generator_"):
            assert torch.equal(getattr(ours, g).get_state(), getattr(bare, g).get_state()), g
