"""Fingerprint the scores of a fixed set of tiny fits, to prove a refactor changes nothing.

Every skood detector is fitted at a tiny budget on tabular rows and on
images (several seeds and a few non-default settings), and the SHA-256 of its
``train_scores_``, its test scores and its ``offset_`` (float64 bytes) is
written as JSON. Run it on two commits and compare the files: equal
fingerprints mean bit-identical scores.

    python benchmarks/score_fingerprint.py --out before.json   # on the old commit
    python benchmarks/score_fingerprint.py --out after.json    # on the new one
    python benchmarks/score_fingerprint.py --compare before.json after.json

Only the public API is used, so the script runs unchanged on any commit that
has the six detectors. One thread, CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np
import torch

import skood
from skood.datasets import load_digits_images

#: (label, detector, parameters) - tiny budgets that still train every part
CASES: list[tuple[str, str, dict]] = [
    ("dum-diagonal", "DUMDetector", {"dum_epochs": 3, "encoder_epochs": 1,
                                     "covariance": "diagonal"}),
    ("semsad", "SemSADDetector", {"encoder_epochs": 2, "discriminator_epochs": 2}),
    ("semsad-group", "SemSADDetector", {"encoder_epochs": 1, "discriminator_epochs": 2,
                                        "n_neighbors": 2, "gamma_range": (1, 1)}),
    ("nsa", "NSADetector", {"max_epochs": 2}),
    ("nsa-simclr-ens", "NSADetector", {"max_epochs": 2, "method": "simclr", "ensemble": True}),
    ("nsa-kcos", "NSADetector", {"max_epochs": 2, "scoring": "kcos"}),
    ("dum", "DUMDetector", {"dum_epochs": 2, "encoder_epochs": 1}),
    ("dum-infonce", "DUMDetector", {"dum_epochs": 2, "encoder_epochs": 1,
                                    "objective": "infonce"}),
    ("distillneg", "DistillNegDetector", {"max_epochs": 1, "n_soft_classes": 64,
                                          "head_hidden_dim": 32, "n_local_crops": 2,
                                          "batch_size": 32}),
    ("distillneg-lam0", "DistillNegDetector", {"max_epochs": 2, "n_soft_classes": 64,
                                               "head_hidden_dim": 32, "n_local_crops": 1,
                                               "batch_size": 32, "lam": 0.0}),
    ("distillneg-perm", "DistillNegDetector", {"max_epochs": 2, "n_soft_classes": 32,
                                               "head_hidden_dim": 16, "n_local_crops": 1,
                                               "batch_size": 32, "negatives": "perm-4"}),
    ("distillneg-featperm", "DistillNegDetector", {"max_epochs": 2, "n_soft_classes": 32,
                                                   "head_hidden_dim": 16, "n_local_crops": 1,
                                                   "negatives": "feature-perm"}),
    ("rotaux", "RotAuxMSPDetector", {"max_epochs": 2, "batch_size": 64}),
    ("rotaux-steps", "RotAuxMSPDetector", {"max_epochs": 4, "batch_size": 32,
                                           "lr_schedule": "steps", "lam": 1.0}),
    ("rotaux-lam0", "RotAuxMSPDetector", {"max_epochs": 3, "batch_size": 32, "lam": 0.0}),
    ("rotaux-odin", "RotAuxMSPDetector", {"max_epochs": 2, "batch_size": 32, "scoring": "odin"}),
    ("featureknn", "FeatureKNNDetector", {}),
    ("featureknn-k5-bank", "FeatureKNNDetector", {"n_neighbors": 5, "max_bank": 64}),
]
#: cases that run on some input kinds only (the default: tabular, image, and labelled
#: images for RotAuxMSP)
KINDS = {"distillneg-perm": ["image"], "distillneg-featperm": ["tabular"],
         "rotaux-odin": ["labelled"]}
SEEDS = (0, 1)


def digest(a: np.ndarray | float) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes()
                          ).hexdigest()[:16]


def data() -> dict[str, tuple]:
    rng = np.random.RandomState(0)
    tab_train = rng.normal(size=(300, 8))
    tab_test = np.vstack([rng.normal(size=(60, 8)), rng.normal(loc=3.0, size=(20, 8))])
    X, y = load_digits_images()
    img_train = X[y == 0][:96]
    img_test = np.concatenate([X[y == 0][96:], X[y == 1][:30]])
    # labelled images for RotAuxMSP's supervised mode: digits 0-2, tested on 3
    keep = np.isin(y, [0, 1, 2])
    lab_train, lab_y = X[keep][:150], y[keep][:150]
    lab_test = np.concatenate([X[keep][150:200], X[y == 3][:30]])
    return {
        "tabular": (tab_train, None, tab_test),
        "image": (img_train, None, img_test),
        "labelled": (lab_train, lab_y, lab_test),
    }


def fingerprints() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    sets = data()
    for label, name, params in CASES:
        kinds = KINDS.get(label) or (
            ["tabular", "image"] + (["labelled"] if name == "RotAuxMSPDetector" else []))
        for kind in kinds:
            X, y, X_test = sets[kind]
            extra = {"batch_size": 32} if kind != "tabular" else {}
            for seed in SEEDS:
                t0 = time.perf_counter()
                det = getattr(skood, name)(**{**params, **extra}, device="cpu",
                                           random_state=seed)
                det.fit(X, y)
                key = f"{label}/{kind}/seed{seed}"
                out[key] = {
                    "train": digest(det.train_scores_),
                    "test": digest(det.score_samples(X_test)),
                    "offset": digest(det.offset_),
                }
                print(f"{key:40s} {out[key]['test']}  {time.perf_counter() - t0:5.1f} s",
                      flush=True)
    return out


def compare(a_path: str, b_path: str) -> int:
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    keys = sorted(set(a) | set(b))
    bad = [k for k in keys if a.get(k) != b.get(k)]
    for k in bad:
        print(f"DIFFERENT {k}: {a.get(k)} vs {b.get(k)}")
    print(f"{len(keys) - len(bad)} of {len(keys)} fits bit-identical")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the fingerprints to this JSON file")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two JSON files")
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    torch.set_num_threads(1)
    fp = fingerprints()
    text = json.dumps(fp, indent=1, sort_keys=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
