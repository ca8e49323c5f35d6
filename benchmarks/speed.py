"""Speed of skood against plain PyTorch, torchvision and scikit-learn, as ratios.

Four sections, measured in one process and one run:

(a) **training step**: time per step of each detector's real skorch training
    loop (every net its ``fit`` trains, captured during a one-epoch fit and
    then run through ``fit_loop``: iterator, callbacks, history) against a
    bare PyTorch loop over a deep copy of the same net that calls the net's
    own objective and step hooks (``x = net.model_input(xb);
    net.before_step(); opt.zero_grad(); loss = net.compute_loss(x, idx);
    loss.backward(); net.after_backward(); opt.step(); net.after_step(...)``)
    and nothing of skorch. Ratio = skood / plain (target: at most 1.15).
    skood's epochs flush subnormal floats to zero on the CPU
    (``skood._training.flush_denormals``), so there each net gets a second
    row against the same bare loop run under ``flush_denormals``: the first
    row is what a user gets, the second skood's overhead alone. Epochs
    alternate between the loops (at least ``train_epochs`` each, more until
    each loop has run ``train_min_s`` seconds); the step time is the median
    over epochs of epoch time / steps. On CUDA both loops run under the
    autocast the net resolved (bfloat16).
(b) **augmentation**: skood's batched on-device augmentations against the
    equivalent ``torchvision.transforms.v2`` composition applied per image in a
    Python loop. Ratio = torchvision time / skood time (speed-up).
(c) **scoring throughput**: skood's chunked scorers against scikit-learn's
    ``NearestNeighbors`` (brute force, cosine; Euclidean on L2-normalised
    features) and ``pairwise_distances_chunked``. Ratio = skood queries/s /
    scikit-learn queries/s.
(d) **memory**: peak RSS above baseline while scoring n queries against
    an m-row bank with the chunked scorers at two chunk sizes, next to the size
    of the n x m float32 matrix they never build; and while fitting NSA's
    whitening (Ledoit-Wolf covariance of the n query features) with skood's
    two-pass chunked estimate, next to scikit-learn's ``LedoitWolf``.

Each section (section (a): each detector) is one job of the benchmark engine
(``_suite.run_jobs``), cached in ``--out/cache`` under the budget, device,
backbone and library versions: an interrupted run resumes, and a second run
re-tabulates the measurements it has; ``--rerun`` measures again (after a
change of skood that its version does not show). ``--n-jobs`` above 1 runs
sections side by side, which distorts their timings: the default is 1.

Outputs under ``--out`` (default ``benchmarks/results/speed/<device>``):
``speed.md`` (the tables), ``speed.csv`` (one row per measurement) and
``meta.json`` (versions, device, load average, sizes).

Usage::

    python benchmarks/speed.py --budget smoke
    nice python benchmarks/speed.py --budget full --device auto
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import json
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _suite import (
    SKOOD,
    PeakMemory,
    budget_params,
    engine_arguments,
    environment,
    execute,
    fit_detector,
    job,
    make_detector,
    skood_class,
    write_csv,
)

ROOT = Path(__file__).resolve().parents[1]

#: sizes per budget
BUDGETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "batch": 8, "train_steps": 2, "train_epochs": 1, "image_side": 16, "tab_features": 8,
        "aug_batch": 32, "aug_reps": 2, "score_dim": 128, "score_bank": 1000,
        "score_queries": 1000, "score_reps": 1, "mem_queries": 4000, "mem_bank": 2000,
        "mem_chunks": (256, 1024), "train_min_s": 0.0,
    },
    "full": {
        "batch": 64, "train_steps": 4, "train_epochs": 3, "image_side": 28, "tab_features": 32,
        "aug_batch": 256, "aug_reps": 5, "score_dim": 128, "score_bank": 20_000,
        "score_queries": 20_000, "score_reps": 3, "mem_queries": 100_000, "mem_bank": 50_000,
        "mem_chunks": (1024, 4096), "train_min_s": 3.0,
    },
}
TARGET_TRAIN_RATIO = 1.15


# ---------------------------------------------------------------------------- timing
def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device | str) -> float:
    """Wall seconds of ``fn()``, synchronising the device before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def median_time(fn: Callable[[], Any], device: Any, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device) for _ in range(max(reps, 1)))


def row(section: str, name: str, reference: str, skood: float, ref: float, unit: str,
        ratio: float, meaning: str, note: str = "") -> dict:
    return {"section": section, "name": name, "reference": reference, "skood": skood,
            "reference_value": ref, "unit": unit, "ratio": ratio, "ratio_meaning": meaning,
            "note": note}


# ------------------------------------------------------- (a) training step
@contextlib.contextmanager
def capture_nets():
    """Record every skorch net that ``fit`` is called on (and its data) inside the block."""
    from skorch import NeuralNet

    captured: list[tuple[Any, Any]] = []
    original = NeuralNet.fit

    def fit(self, X, y=None, **kwargs):
        captured.append((self, X))
        return original(self, X, y, **kwargs)

    NeuralNet.fit = fit
    try:
        yield captured
    finally:
        NeuralNet.fit = original


def fit_capturing(name: str, kind: str, X: np.ndarray, y: np.ndarray, batch: int,
                  device: str, backbone: str = "auto") -> list[tuple[Any, Any]]:
    """Fit detector ``name`` for one epoch per phase at batch size ``batch``; its nets and data.

    The detector is the registry's smoke budget (:func:`_suite.make_detector`)
    with every batch size set to ``batch``.
    """
    det = make_detector(name, 0, "smoke", kind, int(np.prod(X.shape[1:])))
    params = {**budget_params(det, batch_size=batch), "device": device, "verbose": 0}
    if kind == "image" and backbone != "auto":
        params["backbone"] = backbone
    det.set_params(**params)
    with capture_nets() as nets:
        fit_detector(det, name, X, y)
    return nets


def trainable_again(net: Any) -> None:
    """Let the net's optimisers train their parameters again (DUM freezes nets after fit)."""
    for opt in (net.optimizer_, getattr(net, "rotation_optimizer_", None)):
        for group in opt.param_groups if opt is not None else []:
            for p in group["params"]:
                p.requires_grad_(True)


def skood_epoch(net: Any, X: Any) -> Callable[[], None]:
    """One epoch of the net's own skorch loop (iterator, callbacks, history, steps)."""
    def run() -> None:
        net.fit_loop(X, epochs=1)
    return run


def _amp(net: Any) -> contextlib.AbstractContextManager:
    """The autocast the net's training resolved (bfloat16 on CUDA, none on the CPU)."""
    dtype = getattr(net, "autocast_dtype_", None)
    return contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


def bare_step(net: Any, opt: torch.optim.Optimizer, xb: torch.Tensor,
              idx: torch.Tensor) -> torch.Tensor:
    """One training step written out in plain PyTorch around the net's own hooks; its loss."""
    x = net.model_input(xb)
    net.before_step()
    opt.zero_grad()
    with _amp(net):
        loss = net.compute_loss(x, idx)
    loss.backward()
    net.after_backward()
    opt.step()
    step = {"loss": loss}
    net.after_step(x, idx, step)
    return step["loss"]


def bare_loop(net: Any, X: torch.Tensor) -> Callable[[], None]:
    """One epoch of a bare PyTorch loop over a deep copy of ``net``.

    The objective and the step hooks are the net's own (:func:`bare_step`),
    so the loss is skood's; what is left out is skorch: no iterator object,
    history, callbacks or per-batch bookkeeping. Batches are slices of a
    fresh permutation per epoch, as in :class:`skood._training.TensorLoader`.
    """
    net = copy.deepcopy(net)
    opt = net.optimizer_
    order_g = torch.Generator().manual_seed(net.seed)
    n, bs = len(X), net.batch_size

    def epoch() -> None:
        net.module_.train()
        order = torch.randperm(n, generator=order_g).to(X.device, non_blocking=True)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            if len(idx) < 2 and start > 0:
                break
            bare_step(net, opt, X[idx], idx)

    return epoch


def _net_label(net: Any) -> str:
    names = {"ContrastiveNet": "encoder (NT-Xent, SimCLR aug.)", "SimSiamNet": "SimSiam",
             "SemSADPairNet": "discriminator", "DistillNegNet": "DINO + negatives",
             "DUMNet": "variance net f1", "RotAuxNet": "class + rotation steps"}
    return names.get(type(net).__name__, type(net).__name__)


def _skipped(label: str, why: str) -> dict:
    return row("a", label, "plain PyTorch loop", math.nan, math.nan, "ms/step", math.nan,
               "skood / plain time", f"skipped: {why}"[:200])


def bench_training(sizes: dict, device: str, backbone: str, detectors: list[str],
                   seed: int = 0) -> list[dict]:
    rows = []
    rng = np.random.RandomState(seed)
    b, steps = sizes["batch"], sizes["train_steps"]
    n = b * steps
    side = sizes["image_side"]
    data = {
        "image": rng.randint(0, 256, size=(n, side, side)).astype(np.uint8),
        "tabular": rng.normal(size=(n, sizes["tab_features"])).astype(np.float32),
    }
    labels = np.arange(n) % 4
    for name in detectors:
        for kind in ("image", "tabular"):
            label = f"{name} [{kind}]"
            if skood_class(name) is None:
                rows.append(_skipped(label, "detector not in this skood install"))
                continue
            try:
                nets = fit_capturing(name, kind, data[kind], labels, b, device, backbone)
            except Exception as exc:  # a broken detector is reported, not fatal
                rows.append(_skipped(label, f"fit failed: {type(exc).__name__}: {exc}"))
                continue
            for net, X in nets:
                phase = f"{label} {_net_label(net)}"
                try:
                    rows += _time_net(phase, net, X, sizes["train_epochs"],
                                      sizes["train_min_s"])
                except Exception as exc:
                    traceback.print_exc()
                    rows.append(_skipped(phase, f"{type(exc).__name__}: {exc}"))
            del nets
            gc.collect()
    return rows


def _time_net(label: str, net: Any, X: Any, epochs: int, min_seconds: float) -> list[dict]:
    """Median step time of the skood and bare loops over at least ``epochs``
    alternating epochs each, and more until each loop has run ``min_seconds``
    (small nets: ms-scale steps): one row per reference loop (on the CPU, the
    bare loop as written and the bare loop under :func:`flush_denormals`)."""
    from skood._training import flush_denormals

    dev = torch.device(net.device)
    trainable_again(net)
    n_steps = len(net.get_iterator(net.get_dataset(X), training=True))
    skood_run = skood_epoch(net, X)
    loops = {"plain PyTorch loop": bare_loop(net, X)}
    if dev.type == "cpu" and net.flush_denormals:
        # skood's epochs flush subnormals to zero; the same bare loop doing so too
        # separates skood's overhead from that gain
        flushed_run = bare_loop(net, X)

        def plain_flushed() -> None:
            with flush_denormals():
                flushed_run()

        loops["plain PyTorch loop, subnormals flushed"] = plain_flushed
    skood_run()  # warm-up
    for run in loops.values():
        run()
    t_skood: list[float] = []
    t_ref: dict[str, list[float]] = {k: [] for k in loops}
    while len(t_skood) < epochs or sum(t_skood) * n_steps < min_seconds:
        # alternate so drifting machine load hits all alike
        t_skood.append(timed(skood_run, dev) / n_steps)
        for k, run in loops.items():
            t_ref[k].append(timed(run, dev) / n_steps)
    s = statistics.median(t_skood) * 1e3
    note = f"{n_steps} steps x {len(t_skood)} epochs, batch {net.batch_size}"
    out = []
    for k, ts in t_ref.items():
        p = statistics.median(ts) * 1e3
        out.append(row("a", label, k, s, p, "ms/step", s / p, "skood / plain time", note))
    return out


# ------------------------------------------------------------------ (b) augmentation
def _tv_pipelines(side: int) -> dict[str, Any]:
    from torchvision.transforms import v2

    def jitter(b, c, s, h, p):
        return v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=p)

    simclr = v2.Compose([v2.RandomResizedCrop(side, scale=(0.08, 1.0), antialias=False),
                         v2.RandomHorizontalFlip(), jitter(0.4, 0.4, 0.4, 0.1, 0.8),
                         v2.RandomGrayscale(0.2)])
    k = max(3, int(round(0.1 * side)) // 2 * 2 + 1)
    semsad_neg = v2.Compose([v2.RandomResizedCrop(side, scale=(0.08, 1.0), antialias=False),
                             v2.RandomHorizontalFlip(), jitter(0.4, 0.4, 0.4, 0.1, 0.8),
                             v2.RandomApply([v2.GaussianBlur(k, (0.1, 2.0))], p=0.5)])
    local = max(4, round(0.5 * side))

    def dino(size, scale, blur_p, sol_p):
        ops = [v2.RandomResizedCrop(size, scale=scale, antialias=False),
               v2.RandomHorizontalFlip(), jitter(0.4, 0.4, 0.2, 0.1, 0.8),
               v2.RandomGrayscale(0.2)]
        if blur_p:
            ops.append(v2.RandomApply([v2.GaussianBlur(k, (0.1, 2.0))], p=blur_p))
        if sol_p:
            ops.append(v2.RandomSolarize(0.5, p=sol_p))
        return v2.Compose(ops)

    multicrop = [dino(side, (0.4, 1.0), 1.0, 0.0), dino(side, (0.4, 1.0), 0.1, 0.2)] + [
        dino(local, (0.05, 0.4), 0.5, 0.0)] * 4
    padcrop = v2.Compose([v2.RandomCrop(side, padding=side // 8), v2.RandomHorizontalFlip()])
    return {"SimCLRAugment": [simclr], "SemSADNegative": [semsad_neg],
            "MultiCrop(2 global, 4 local)": multicrop, "PadCropFlip": [padcrop]}


def _skood_augments() -> dict[str, Callable]:
    from skood._augment import SimCLRAugment
    from skood._detectors._rotaux_parts import PadCropFlip
    from skood._detectors.dino import MultiCrop
    from skood._detectors.semsad import SemSADNegative

    return {"SimCLRAugment": SimCLRAugment(), "SemSADNegative": SemSADNegative(),
            "MultiCrop(2 global, 4 local)": MultiCrop(2, 4, (0.4, 1.0), (0.05, 0.4)),
            "PadCropFlip": PadCropFlip()}


def bench_augment(sizes: dict, device: str, seed: int = 0) -> list[dict]:
    rows = []
    dev = torch.device(device)
    side, nb, reps = sizes["image_side"], sizes["aug_batch"], sizes["aug_reps"]
    g = torch.Generator(device=dev).manual_seed(seed)
    torch.manual_seed(seed)  # torchvision's transforms draw from the global RNG
    for channels in (1, 3):
        x_cpu = torch.rand(nb, channels, side, side, generator=torch.Generator().manual_seed(seed))
        x_dev = x_cpu.to(dev)
        tv = _tv_pipelines(side)
        sk = _skood_augments()
        sk["PadCropFlip"] = _skood_pad(side)
        for name, fn in sk.items():
            pipes = tv[name]
            t_sk = median_time(lambda fn=fn, x=x_dev: fn(x, g), dev, reps)
            t_tv = median_time(
                lambda pipes=pipes, x=x_cpu: [torch.stack([p(img) for img in x]) for p in pipes],
                "cpu", reps)
            rows.append(row("b", f"{name} [{channels}x{side}x{side}]",
                            "torchvision.transforms.v2 per image (CPU)", t_sk * 1e3, t_tv * 1e3,
                            "ms/batch", t_tv / t_sk, "torchvision / skood time (speed-up)",
                            f"batch {nb}, skood on {dev.type}"))
    return rows


def _skood_pad(side: int) -> Callable:
    from skood._detectors._rotaux_parts import PadCropFlip

    return PadCropFlip(side // 8)


# ------------------------------------------------------------------ (c) scoring throughput
def _features(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    centers = rng.normal(size=(16, d))
    return (centers[rng.randint(16, size=n)] + rng.normal(scale=0.7, size=(n, d))).astype(
        np.float32)


def bench_scoring(sizes: dict, device: str, seed: int = 0) -> list[dict]:
    from scipy.special import logsumexp
    from sklearn.metrics import pairwise_distances_chunked
    from sklearn.neighbors import NearestNeighbors

    from skood._scoring import fit_whitening, kernel_cosine, knn_cosine, nearest_cosine, whiten

    d, m, nq, reps = (sizes["score_dim"], sizes["score_bank"], sizes["score_queries"],
                      sizes["score_reps"])
    bank, query = _features(m, d, seed), _features(nq, d, seed + 1)
    bank_n = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    query_n = query / np.linalg.norm(query, axis=1, keepdims=True)
    tau = 0.04
    mean, W = fit_whitening(bank)
    rows = []

    def sk_cosine(Q, B):
        nn = NearestNeighbors(n_neighbors=1, metric="cosine", algorithm="brute").fit(B)
        dist, _ = nn.kneighbors(Q)
        return 1.0 - dist[:, 0]

    def sk_euclid(Q, B):  # on unit rows: cos = 1 - ||q - b||^2 / 2
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
        nn = NearestNeighbors(n_neighbors=1, metric="euclidean", algorithm="brute").fit(Bn)
        dist, _ = nn.kneighbors(Qn)
        return 1.0 - dist[:, 0] ** 2 / 2

    def sk_kernel(Q, B):
        parts = [logsumexp((1.0 - D) / tau, axis=1) for D in
                 pairwise_distances_chunked(Q, B, metric="cosine")]
        return np.concatenate(parts) - math.log(len(B))

    Wn, mn = W.numpy(), mean.numpy()
    cases = [
        ("kNN cosine (knn_cosine, k=1)",
         lambda: knn_cosine(query, bank, k=1, device=device)[0][:, 0].numpy(),
         [("NearestNeighbors(cosine)", lambda: sk_cosine(query, bank)),
          ("NearestNeighbors(euclidean, unit rows)", lambda: sk_euclid(query, bank))]),
        ("nearest_cosine",
         lambda: nearest_cosine(query, bank, device=device).numpy(),
         [("NearestNeighbors(cosine)", lambda: sk_cosine(query, bank))]),
        ("kNN cosine, unit rows (normalized=True)",
         lambda: knn_cosine(query_n, bank_n, k=1, device=device, normalized=True)[0][:, 0]
         .numpy(),
         [("NearestNeighbors(euclidean, unit rows)", lambda: sk_euclid(query_n, bank_n))]),
        (f"kernel_cosine (tau={tau})",
         lambda: kernel_cosine(query, bank, temperature=tau, device=device).numpy(),
         [("pairwise_distances_chunked(cosine) + logsumexp", lambda: sk_kernel(query, bank))]),
        ("angular Mahalanobis (whiten + nearest_cosine)",
         lambda: nearest_cosine(whiten(query, mean, W, device=device),
                                whiten(bank, mean, W, device=device), device=device).numpy(),
         [("numpy whitening + NearestNeighbors(cosine)",
           lambda: sk_cosine((query - mn) @ Wn, (bank - mn) @ Wn))]),
    ]
    for name, fn, refs in cases:
        ours = fn()
        t_sk = median_time(fn, device, reps, warmup=0)
        for ref_name, ref_fn in refs:
            theirs = ref_fn()
            t_ref = median_time(ref_fn, "cpu", reps, warmup=0)
            err = float(np.max(np.abs(np.asarray(ours, np.float64) - theirs)))
            rows.append(row("c", name, f"sklearn {ref_name}", nq / t_sk, nq / t_ref,
                            "queries/s", t_ref / t_sk, "skood / sklearn queries/s",
                            f"{nq} queries x {m} bank x {d}-d; max |diff| {err:.1e}"))
    return rows


# ------------------------------------------------------------------ (d) scoring memory
def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``).

    Without it, memory freed by earlier sections stays resident and a new
    allocation reuses it without raising RSS, hiding the scorer's peak.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def bench_memory(sizes: dict, device: str, seed: int = 0) -> list[dict]:
    from skood._scoring import kernel_cosine, knn_cosine

    d, nq, m = sizes["score_dim"], sizes["mem_queries"], sizes["mem_bank"]
    bank = torch.from_numpy(_features(m, d, seed))
    query = torch.from_numpy(_features(nq, d, seed + 1))
    full_mib = nq * m * 4 / 2**20
    rows = []
    scorers = {
        "knn_cosine (k=1)": lambda c: knn_cosine(query, bank, k=1, chunk_size=c, device=device),
        "kernel_cosine": lambda c: kernel_cosine(query, bank, chunk_size=c, device=device),
    }
    for name, fn in scorers.items():
        for chunk in sizes["mem_chunks"]:
            release_freed_memory()
            with PeakMemory(interval=0.002) as mem:
                t = timed(lambda fn=fn, chunk=chunk: fn(chunk), device)
            peak = mem.peak_mib
            if torch.device(device).type == "cuda":
                peak = mem.cuda_peak_mib
            bound = chunk * chunk * 4 / 2**20
            rows.append(row("d", f"{name}, chunk_size={chunk}",
                            f"dense {nq} x {m} float32 matrix", peak, full_mib, "MiB",
                            peak / full_mib, "peak / dense matrix size",
                            f"{'CUDA allocated' if torch.device(device).type == 'cuda' else 'RSS'}"
                            f" peak above baseline; one chunk x chunk block = {bound:.1f} MiB; "
                            f"{t:.1f} s"))
    rows.append(_whitening_memory_row(query.numpy()))
    return rows


def _whitening_memory_row(feats: np.ndarray) -> dict:
    """Peak memory of fitting NSA's whitening: chunked covariance vs scikit-learn's LedoitWolf."""
    from sklearn.covariance import LedoitWolf

    from skood._scoring import covariance_chunked

    out: dict[str, Any] = {}

    def sk() -> None:
        out["sk"] = LedoitWolf(store_precision=False).fit(feats.astype(np.float64)).covariance_

    def ours() -> None:
        out["ours"] = covariance_chunked(feats, "ledoit-wolf")[1]

    peaks, times = {}, {}
    for name, fn in (("ours", ours), ("sk", sk)):
        release_freed_memory()
        with PeakMemory(interval=0.002) as mem:
            times[name] = timed(fn, "cpu")
        peaks[name] = mem.peak_mib
    err = float(np.abs(out["ours"] - out["sk"]).max() / np.abs(out["sk"]).max())
    n, d = feats.shape
    return row("d", "covariance_chunked (Ledoit-Wolf), fitting the whitening",
               "sklearn LedoitWolf on a float64 copy", peaks["ours"], peaks["sk"], "MiB",
               peaks["ours"] / peaks["sk"], "peak / sklearn peak",
               f"RSS peak above baseline; {n} x {d} float32 features "
               f"({n * d * 4 / 2**20:.0f} MiB); max relative diff {err:.1e}; "
               f"{times['ours']:.1f} s vs {times['sk']:.1f} s")


# ------------------------------------------------------------------ output
def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


SECTIONS = {
    "a": "(a) Training step: skood's skorch loop vs a plain PyTorch loop "
         f"(ratio = skood / plain time; target <= {TARGET_TRAIN_RATIO})",
    "b": "(b) Augmentation per batch: skood batched vs torchvision v2 per image "
         "(ratio = speed-up)",
    "c": "(c) Scoring throughput: skood vs scikit-learn (ratio = skood / sklearn queries/s)",
    "d": "(d) Peak memory: chunked scorers vs the dense matrix they never build, chunked "
         "whitening fit vs scikit-learn (ratio = skood peak / reference)",
}


def markdown(rows: list[dict]) -> str:
    out = []
    for sec, title in SECTIONS.items():
        rs = [r for r in rows if r["section"] == sec]
        if not rs:
            continue
        unit = rs[0]["unit"]
        out += [f"### {title}", "",
                f"| {'benchmark'} | reference | skood ({unit}) | reference ({unit}) | ratio | "
                "note |", "|---|---|---:|---:|---:|---|"]
        for r in rs:
            out.append(f"| {r['name']} | {r['reference']} | {_fmt(r['skood'])} | "
                       f"{_fmt(r['reference_value'])} | {_fmt(r['ratio'])} | {r['note']} |")
        out.append("")
    return "\n".join(out)


def run_section(sec: str, sizes: dict, device: str, backbone: str,
                detectors: list[str]) -> list[dict]:
    """The rows of one section (of section (a): of ``detectors``), one job."""
    t = time.perf_counter()
    if sec == "a":
        rows = bench_training(sizes, device, backbone, detectors)
    else:
        rows = {"b": bench_augment, "c": bench_scoring, "d": bench_memory}[sec](sizes, device)
    what = f"({sec})" + (f" {', '.join(detectors)}" if sec == "a" else "")
    print(f"section {what} done in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", choices=tuple(BUDGETS), default="smoke")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--backbone", choices=("auto", "cnn", "resnet18"), default="auto",
                    help="image backbone of the training benchmark (auto: the small CNN)")
    ap.add_argument("--detectors", nargs="+", default=list(SKOOD), choices=list(SKOOD))
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--out", type=Path, default=None)
    engine_arguments(ap)
    args = ap.parse_args(argv)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device on this machine")
    sizes = BUDGETS[args.budget]
    out = args.out or ROOT / "benchmarks/results/speed" / device.split(":")[0]
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()

    parts = [(sec, [d]) for sec in SECTIONS if sec == "a" and sec in args.sections
             for d in args.detectors]
    parts += [(sec, []) for sec in SECTIONS if sec != "a" and sec in args.sections]
    ident = {"budget": args.budget, "sizes": sizes, "device": device, "backbone": args.backbone,
             "torch": torch.__version__}
    jobs = [job(f"{sec}__{'_'.join(dets) or 'all'}__{args.budget}__{device}",
                functools.partial(run_section, sec, sizes, device, args.backbone, dets),
                {**ident, "section": sec, "detectors": dets})
            for sec, dets in parts]
    rows = execute(jobs, out / "cache", args)
    if not rows:
        print("no measurement done yet")
        return rows

    table = markdown(rows)
    (out / "speed.md").write_text(table + "\n")
    write_csv(out / "speed.csv", rows)
    meta = {
        **environment(),
        "script": "benchmarks/speed.py",
        "argv": sys.argv[1:] if argv is None else argv,
        "budget": args.budget,
        "torch_device": device,
        "backbone": args.backbone,
        "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": time.perf_counter() - t0,
        "train_target_ratio": TARGET_TRAIN_RATIO,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
