"""The benchmark engine shared by the scripts in ``benchmarks/``.

A *task* is a named train/test split (``Task``); a *run* is one (task,
detector, seed) under a budget preset. :func:`run_sweep` runs every run that
is not done yet, spread with joblib (so any joblib backend: loky, dask,
ray), and :func:`write_outputs` turns the results into a CSV with one row
per run (``runs.csv``), a Markdown table (mean AUROC per dataset and
detector, mean over datasets, mean rank), a PNG figure and a JSON with
library versions, device and wall time. A run is done when its JSON is in
the local cache directory (``<out>/cache``, not under version control); a
sweep first restores there every run of the ``runs.csv`` beside it (the
committed results), so a fresh clone re-tabulates and resumes without
recomputing.

Underneath, every script runs on one executor, :func:`run_jobs`: a *job*
(:class:`Job`, made by :func:`job`) is any picklable function that returns
rows (one fit scored several ways, a timing section, ...), cached under a
key that hashes what defines it, so a script that is not a (task,
detector, seed) sweep (an ablation, a claim, a speed measurement) gets the
same cache, resume, ``--n-jobs``, ``--prune`` and ``--rerun``
(:func:`engine_arguments`). :func:`run_sweep` is the (task, detector, seed)
case of it.

The detector registry (:data:`SKOOD`, :func:`make_detector`,
:func:`budget_params`, :func:`fit_detector`) and the options and driver
every sweep script shares (:func:`sweep_arguments`, :func:`sweep`) live here
too.

Scores follow scikit-learn's sign everywhere (higher = more normal): PyOD
detectors' ``decision_function`` is negated.
"""

from __future__ import annotations

import functools
import gc
import glob
import hashlib
import json
import os
import platform
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: the five skood detectors: short name -> class name in ``skood``
SKOOD = {
    "SemSAD": "SemSADDetector",
    "NSA": "NSADetector",
    "DUM": "DUMDetector",
    "DistillNeg": "DistillNegDetector",
    "RotAuxMSP": "RotAuxMSPDetector",
}
#: baselines; "FeatureKNN" is skood's reference row: kNN cosine on the features of the
#: default encoder with its initial weights (an untrained network; a pretrained one as a variant)
BASELINES = ("IsolationForest", "LOF", "OCSVM", "KNN", "ECOD", "COPOD", "AutoEncoder", "DeepSVDD",
             "FeatureKNN")
BUDGETS = ("smoke", "cpu", "gpu")
#: the name of the refined variants of the detectors (:class:`skood.RefinedDetector`)
REFINED = "Refined"
#: detectors that take the class labels of a hold-one-class-out task (the others ignore them)
LABELLED = ("RotAuxMSP",)
#: epochs of PyOD's deep baselines per budget
_PYOD_EPOCHS = {"smoke": 1, "cpu": 20, "gpu": 100}
#: where the frozen pretrained encoders of image runs keep each image's features
#: (``PretrainedEncoder(cache_dir=...)``), shared by every sweep and worker; local, not committed
FEATURE_CACHE = Path(__file__).resolve().parent / "cache" / "features"


@dataclass(frozen=True)
class Task:
    """One train/test split: ``build(seed) -> (X_train, y_train, X_test, y_outlier)``.

    ``y_train`` holds class labels for the hold-one-class-out protocol and is
    ``None`` otherwise (unsupervised fit). ``build`` must be picklable (a
    module-level function or a ``functools.partial`` of one) so that joblib
    can ship tasks to other processes or machines.
    """

    name: str
    kind: str  # "tabular" or "image"
    build: Callable[[int], tuple[Any, Any, Any, Any]]
    meta: dict = field(default_factory=dict, compare=False)


# ------------------------------------------------------------------ detectors
def skood_class(name: str) -> type | None:
    """The skood class of a short name in :data:`SKOOD` (None if this install lacks it)."""
    import skood

    return getattr(skood, SKOOD[name], None)


def available_detectors() -> list[str]:
    """Short names of every detector this install can run (skood ones first)."""
    return [k for k in SKOOD if skood_class(k) is not None] + list(BASELINES)


def budget_params(est: Any, epochs: int | None = None, batch_size: int | None = None) -> dict:
    """Parameters of ``est`` that set its training budget.

    Every ``*epochs`` parameter to ``epochs`` and every ``*batch_size``
    parameter to ``batch_size`` (``None``: left out), whatever the phases of
    the detector are called (``encoder_epochs``, ``dum_epochs``,
    ``discriminator_batch_size``, ...).
    """
    out = {}
    for k in est.get_params(deep=False):
        if epochs is not None and k.endswith("epochs"):
            out[k] = epochs
        if batch_size is not None and k.endswith("batch_size"):
            out[k] = batch_size
    return out


def fit_detector(det: Any, name: str, X: Any, y: Any = None) -> Any:
    """``det.fit(X, y)`` for the detectors in :data:`LABELLED` given labels, else ``det.fit(X)``."""
    if y is not None and base_detector(name) in LABELLED:
        return det.fit(X, y)
    return det.fit(X)


def make_detector(name: str, seed: int, budget: str, kind: str, n_features: int) -> Any:
    """A fresh detector for one run.

    skood detectors: ``smoke`` sets every ``*epochs`` parameter to 1
    (:func:`budget_params`), ``cpu`` keeps the defaults, ``gpu`` is the
    ``"paper"`` preset where the detector has one.
    """
    base, params = parse_variant(name)
    if base == REFINED:
        from skood import RefinedDetector

        inner = make_detector(params.pop("estimator"), seed, budget, kind, n_features)
        if isinstance(params.get("refiner"), str):
            params["refiner"] = make_detector(params["refiner"], seed, budget, kind, n_features)
        return RefinedDetector(inner, random_state=seed, **params)
    if params:
        return make_detector(base, seed, budget, kind, n_features).set_params(**params)
    if name in SKOOD:
        cls = skood_class(name)
        if cls is None:
            raise ValueError(f"{SKOOD[name]} is not available in this skood install.")
        if budget == "gpu" and "paper" in getattr(cls, "_presets", {}):
            det = cls.from_preset("paper", random_state=seed)
        else:
            det = cls(random_state=seed)
        if budget == "smoke":
            det.set_params(**budget_params(det, epochs=1))
        return det
    if name == "FeatureKNN":
        from skood import FeatureKNNDetector

        return FeatureKNNDetector(random_state=seed)
    epochs = _PYOD_EPOCHS[budget]
    if name == "IsolationForest":
        from sklearn.ensemble import IsolationForest

        return IsolationForest(random_state=seed)
    if name == "LOF":
        from sklearn.neighbors import LocalOutlierFactor

        return LocalOutlierFactor(novelty=True)
    if name == "OCSVM":
        from sklearn.svm import OneClassSVM

        return OneClassSVM(gamma="scale", nu=0.1)
    if name == "KNN":
        from pyod.models.knn import KNN

        return KNN()
    if name == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD()
    if name == "COPOD":
        from pyod.models.copod import COPOD

        return COPOD()
    if name == "AutoEncoder":
        from pyod.models.auto_encoder import AutoEncoder

        return AutoEncoder(epoch_num=epochs, random_state=seed, verbose=0)
    if name == "DeepSVDD":
        from pyod.models.deep_svdd import DeepSVDD

        return DeepSVDD(n_features=n_features, epochs=epochs, random_state=seed, verbose=0)
    raise ValueError(f"unknown detector {name!r}; choose from {available_detectors()}")


def parse_variant(name: str) -> tuple[str, dict]:
    """``"SemSAD(n_neighbors=1)"`` -> ``("SemSAD", {"n_neighbors": 1})`` (plain: no params).

    Variants are spelled as calls with literal arguments, so a run stays
    defined by its name alone (cache keys, tables, joblib workers). The
    refined variant of a detector (:class:`skood.RefinedDetector`) names it
    first: ``"Refined(NSA, n_parts=5)"`` -> ``("Refined", {"estimator": "NSA",
    "n_parts": 5})``; the detector may be a variant itself
    (``"Refined(SemSAD(n_neighbors=1))"``), and ``refiner`` a detector's name
    (``"Refined(NSA, refiner='IsolationForest')"``).
    """
    import ast

    if "(" not in name:
        return name, {}
    try:
        call = ast.parse(name, mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            raise ValueError
        params = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        if call.func.id == REFINED:
            if len(call.args) != 1 or "estimator" in params:
                raise ValueError
            inner = ast.unparse(call.args[0])
            parse_variant(inner)
            return REFINED, {"estimator": inner, **params}
        if call.args:
            raise ValueError
        return call.func.id, params
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"bad detector variant {name!r}: write it as "
                         "Name(param=literal, ...), e.g. 'SemSAD(n_neighbors=1)', or "
                         "Refined(Name, param=literal, ...), e.g. 'Refined(NSA, n_parts=5)'"
                         ) from exc


def base_variant(name: str) -> str:
    """The detector a refined variant wraps (``"NSA(max_epochs=1)"`` for
    ``"Refined(NSA(max_epochs=1))"``); any other name as it is."""
    base, params = parse_variant(name)
    return base_variant(params["estimator"]) if base == REFINED else name


def base_detector(name: str) -> str:
    """The registry name a run's detector is built from: ``"NSA"`` for ``"NSA"``,
    ``"NSA(max_epochs=1)"`` and ``"Refined(NSA, n_parts=5)"`` alike."""
    base, params = parse_variant(name)
    return base_detector(params["estimator"]) if base == REFINED else base


def normality(det: Any, X: Any) -> np.ndarray:
    """Scores with scikit-learn's sign (higher = more normal), for any detector."""
    if type(det).__module__.startswith("pyod."):
        return -np.asarray(det.decision_function(X), dtype=np.float64)
    return np.asarray(det.score_samples(X), dtype=np.float64)


def _flat(X: np.ndarray) -> np.ndarray:
    """Raw pixels in [0, 1] as rows, for the baselines on images."""
    X = np.asarray(X)
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    return X.reshape(len(X), -1).astype(np.float64) / scale


# --------------------------------------------------------------------- memory
class PeakMemory:
    """Peak resident memory (MiB above the level at entry) of this process.

    Samples ``/proc/self/statm`` every ``interval`` seconds in a thread (Linux;
    elsewhere falls back to ``resource``'s lifetime peak, reported as NaN
    when it cannot be attributed to the block). On CUDA the peak allocated
    device memory is reported too. Memory that the allocator kept resident
    after an earlier free and hands out again does not raise the resident
    level, so it does not show.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak_mib = float("nan")
        self.cuda_peak_mib = float("nan")

    @staticmethod
    def _rss() -> float | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, AttributeError):
            return None

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss()
            if rss is not None:
                self._peak = max(self._peak, rss)

    def __enter__(self) -> PeakMemory:
        # garbage left by earlier work, freed by a collection inside the block,
        # would lower the resident level below the baseline and hide the peak
        gc.collect()
        self._base = self._rss()
        self._peak = self._base or 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        if self._base is not None:
            self._thread.start()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        except ImportError:
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._base is not None:
            self._thread.join()
            self._peak = max(self._peak, self._rss() or 0.0)
            self.peak_mib = self._peak - self._base
        try:
            import torch

            if torch.cuda.is_available():
                self.cuda_peak_mib = torch.cuda.max_memory_allocated() / 2**20
        except ImportError:
            pass


# ------------------------------------------------- parameters added since a run was made
def _no_phase_is_capped(row: dict) -> bool:
    """max_steps="auto" caps no training phase whose loader holds at most
    ``AUTO_EPOCH_ROWS`` rows (:func:`skood._training.step_budget` then returns the epochs
    uncapped, and the loader draws the permutations it drew before the parameter existed);
    every phase of every detector trains on the fitted rows (rotations and views are made
    inside the batch), so ``n_train`` bounds the loader's rows."""
    from skood._training import AUTO_EPOCH_ROWS

    return int(row["n_train"]) <= AUTO_EPOCH_ROWS


def _every_fitted_row_is_scored(row: dict) -> bool:
    """max_train_scores="auto" scores every fitted row of a training set of at most
    ``AUTO_MAX_TRAIN_SCORES`` rows (no subset is drawn), as every fit did before the
    parameter existed."""
    from skood._base import AUTO_MAX_TRAIN_SCORES

    return int(row["n_train"]) <= AUTO_MAX_TRAIN_SCORES


def _always(row: dict) -> bool:
    return True


def _features_stay_standardised(row: dict) -> bool:
    """feature_scaling="auto" standardises frozen features as every fit did before the
    parameter for DUM; it only acts in frozen-feature mode (a pretrained ``backbone=``)."""
    return "backbone=" not in row["detector"] or base_detector(row["detector"]) == "DUM"


#: parameter -> when a run made before the parameter existed runs exactly the code its
#: default runs now (the run's key then lacks the parameter), judged on the run's row.
#: The sweeps' cache (:func:`run_sweep`) and the leaderboards' currency check read it.
#: Each entry:
#: - calibration: the default "loo" fits every row and keeps the leave-one-out training
#:   scores, as every fit did before the parameter (split calibration is opt-in);
#: - max_steps: the default "auto" caps no phase on at most 10,000 rows;
#: - max_train_scores: the default "auto" scores every fitted row of at most 10,000;
#: - feature_scaling: the default "auto" is DUM's old standardised features, and no other
#:   detector's representation changes outside frozen-feature mode.
ADDED_PARAMS: dict[str, Callable[[dict], bool]] = {
    "calibration": _always,
    "max_steps": _no_phase_is_capped,
    "max_train_scores": _every_fitted_row_is_scored,
    "feature_scaling": _features_stay_standardised,
}


def equivalent_cached(cache: Path, task: Task, detector: str, seed: int, budget: str,
                      ident: dict) -> list[dict] | None:
    """The cached rows of a run made before parameters of :data:`ADDED_PARAMS` existed,
    when each such parameter's condition holds for it (so its code is the current
    default's), else None. Only the parameters missing from that run's identity differ."""
    options = [dict(ident["params"])]
    for param in ADDED_PARAMS:
        if param in ident["params"]:
            options += [{k: v for k, v in o.items() if k != param} for o in options]
    for params in options[1:]:
        key = run_key(task, detector, seed, budget, {**ident, "params": params})
        path = Path(cache) / f"{key}.json"
        if not path.exists():
            continue
        rows = _read_cached(path)
        missing = set(ident["params"]) - set(params)
        if rows and all(ADDED_PARAMS[p](r) for p in missing for r in rows):
            return rows
    return None


# ----------------------------------------------------------------------- runs
def run_key(task: Task, detector: str, seed: int, budget: str, extra: dict | None = None) -> str:
    """Cache key of one run: readable prefix plus a hash of everything that defines it."""
    ident = json.dumps({"task": task.name, "meta": task.meta, "detector": detector,
                        "seed": seed, "budget": budget, "extra": extra or {}}, sort_keys=True)
    digest = hashlib.sha1(ident.encode()).hexdigest()[:10]
    return f"{_key_prefix(task.name, detector, seed, budget)}{digest}"


def _key_prefix(task: str, detector: str, seed: int, budget: str) -> str:
    """The readable part of a run's cache key, shared by every version of the run."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{task}__{detector}")
    return f"{safe}__s{seed}__{budget}__"


def stale_files(cache: Path, task: Task, detector: str, seed: int, budget: str,
                key: str) -> list[Path]:
    """Cached versions of one run made under another identity than ``key``.

    Same task, detector, seed and budget, another hash: the run as made by an
    older skood version, with other detector parameters or another task
    definition. The current key's file is never among them.
    """
    return _stale(cache, _key_prefix(task.name, detector, seed, budget), key)


def _stale(cache: Path, prefix: str, key: str) -> list[Path]:
    """The cache files of ``prefix`` followed by another hash than ``key``'s."""
    pattern = re.compile(re.escape(prefix) + r"[0-9a-f]{10}\.json")
    return sorted(p for p in Path(cache).glob(glob.escape(prefix) + "*.json")
                  if pattern.fullmatch(p.name) and p.name != f"{key}.json")


def run_one(task: Task, detector: str, seed: int, budget: str, threads: int | None = None) -> dict:
    """Fit one detector on one task and measure it; returns one CSV row as a dict."""
    from skood.metrics import auroc, average_precision, precision_at_n

    if threads:
        import torch

        torch.set_num_threads(threads)  # this worker's share of the cores
    X_tr, y_tr, X_te, y_out = task.build(seed)
    takes_images = base_detector(detector) in (*SKOOD, "FeatureKNN")
    if not takes_images and task.kind == "image":
        X_tr, X_te = _flat(X_tr), _flat(X_te)
    n_features = int(np.prod(np.shape(X_tr)[1:]))
    det = make_detector(detector, seed, budget, task.kind, n_features)
    if task.kind == "image":
        _cache_pretrained_features(det)
    row = {"dataset": task.name, "detector": detector, "seed": seed, "budget": budget,
           "n_train": len(X_tr), "n_test": len(X_te), "error": ""}
    try:
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            fit_detector(det, detector, X_tr, y_tr)
            t1 = time.perf_counter()
            scores = normality(det, X_te)
            t2 = time.perf_counter()
    except Exception as exc:  # a failing run is recorded, not fatal to the sweep
        row.update(auroc=np.nan, ap=np.nan, p_at_n=np.nan, fit_s=np.nan, score_s=np.nan,
                   peak_mib=np.nan, cuda_peak_mib=np.nan,
                   error=f"{type(exc).__name__}: {exc}"[:300])
        return row
    row.update(
        auroc=auroc(y_out, scores),
        ap=average_precision(y_out, scores),
        p_at_n=precision_at_n(y_out, scores),
        fit_s=t1 - t0,
        score_s=t2 - t1,
        peak_mib=mem.peak_mib,
        cuda_peak_mib=mem.cuda_peak_mib,
    )
    return row


def _cache_pretrained_features(det: Any) -> None:
    """Give a detector whose ``backbone`` names a pretrained encoder that encoder with the
    sweep's feature cache (:data:`FEATURE_CACHE`): the same frozen features, each image's
    extracted once over all runs. The run's name and key keep the plain name."""
    params = det.get_params(deep=False) if hasattr(det, "get_params") else {}
    for wrapped in ("estimator", "refiner"):  # a refined variant's detectors
        if hasattr(params.get(wrapped), "get_params"):
            _cache_pretrained_features(params[wrapped])
    name = params.get("backbone")
    if not isinstance(name, str):
        return
    from skood.pretrained import PRETRAINED_BACKBONES, load_pretrained

    if name in PRETRAINED_BACKBONES:
        det.set_params(backbone=load_pretrained(name, cache_dir=FEATURE_CACHE))


def pretrained_backbones(detectors: Iterable[str]) -> list[str]:
    """The pretrained encoders named by ``backbone=`` in the detector variants, in order."""
    from skood.pretrained import PRETRAINED_BACKBONES

    names: list[str] = []
    for d in detectors:
        bb = parse_variant(base_variant(d))[1].get("backbone")
        if isinstance(bb, str) and bb in PRETRAINED_BACKBONES and bb not in names:
            names.append(bb)
    return names


def _extract_features(task: Task, seed: int, backbone: str,
                      threads: int | None) -> tuple[int, float]:
    """Pass one task's training and test images through ``backbone`` with the feature cache
    (the images' path through a detector: fit, then score); returns (images, seconds)."""
    import torch

    from skood import FeatureKNNDetector
    from skood.pretrained import load_pretrained

    if threads:
        torch.set_num_threads(threads)
    X_tr, _, X_te, _ = task.build(seed)
    det = FeatureKNNDetector(backbone=load_pretrained(backbone, cache_dir=FEATURE_CACHE))
    t0 = time.perf_counter()
    det.fit(X_tr).score_samples(X_te)
    return len(X_tr) + len(X_te), time.perf_counter() - t0


def warm_feature_cache(tasks: Sequence[Task], detectors: Sequence[str], seeds: Sequence[int],
                       n_jobs: int = 1) -> dict[str, dict]:
    """Extract, before the runs, the features every pretrained-backbone run will read.

    For each encoder of :func:`pretrained_backbones`, every task's images go
    through it once (cached in :data:`FEATURE_CACHE`), so the runs' fit and
    score times are the detectors' own and the extraction is measured on its
    own. Returns per encoder: images passed, features computed (not cached
    before), seconds (summed over workers) and milliseconds per computed image.
    """
    import torch
    from joblib import Parallel, delayed

    from skood.pretrained import load_pretrained

    threads = max(1, (os.cpu_count() or 1) // max(1, n_jobs)) if n_jobs != 1 else None
    out = {}
    for bb in pretrained_backbones(detectors):
        folder = FEATURE_CACHE / load_pretrained(bb).fingerprint()
        before = sum(1 for _ in folder.glob("*/*.npy")) if folder.exists() else 0
        done = Parallel(n_jobs=n_jobs)(delayed(_extract_features)(t, s, bb, threads)
                                       for t in tasks if t.kind == "image" for s in seeds)
        computed = sum(1 for _ in folder.glob("*/*.npy")) - before if folder.exists() else 0
        seconds = float(sum(t for _, t in done))
        per_image = round(1000 * seconds / computed, 1) if computed else None
        out[bb] = {"images_passed": int(sum(n for n, _ in done)), "features_computed": computed,
                   "seconds": round(seconds, 1),
                   "threads_per_worker": threads or torch.get_num_threads(),
                   "ms_per_computed_image": per_image}
    return out


def _identity(detector: str, seed: int, budget: str, kind: str) -> dict:
    """What else defines a run: the library version and every parameter of the detector.

    All parameters count, defaults included, so that a changed default (a
    new scorer, say) makes new keys and the sweep re-runs instead of reading
    results the old default made. A change of behaviour that no parameter
    shows needs a new ``skood.__version__`` (or ``--rerun``).
    """
    import skood

    est = make_detector(detector, seed, budget, kind, n_features=1)
    return {"skood": skood.__version__, "params": params_identity(est)}


def params_identity(est: Any) -> dict:
    """Every parameter of ``est`` (defaults included) as text, for a run's identity.

    A wrapped detector (:class:`skood.RefinedDetector`'s ``estimator`` and
    ``refiner``) counts with every parameter of its own, defaults included.
    """
    out = {}
    for k, v in sorted(est.get_params(deep=False).items()):
        wrapped = k in ("estimator", "refiner") and hasattr(v, "get_params")
        out[k] = {"class": type(v).__name__, **params_identity(v)} if wrapped else repr(v)
    return out


# ----------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Job:
    """One cached unit of work: ``run()`` returns its rows (one dict per CSV line).

    ``key`` names its cache file ``<key>.json``: ``prefix`` (readable, shared
    by every version of the job) and ten hex digits that hash what defines
    it (:func:`job`). ``run`` must be picklable (a module-level function or a
    ``functools.partial`` of one) so that joblib can ship it to other
    processes or machines. ``gpu``: the job runs networks, so with a CUDA
    device such jobs run one at a time (never several trainings on one GPU).
    """

    key: str
    run: Callable[[], list[dict]]
    prefix: str
    label: str = ""
    gpu: bool = True


def job(name: str, run: Callable[[], list[dict]], ident: dict, gpu: bool = True) -> Job:
    """A :class:`Job` called ``name`` whose key hashes ``ident`` and skood's version.

    ``ident`` holds everything else that defines the job's rows (data,
    sizes, seed, the detector's parameters: :func:`params_identity`), so a
    change of any of them makes a new key and the job runs again.
    """
    import skood

    prefix = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) + "__"
    text = json.dumps({"skood": skood.__version__, **ident}, sort_keys=True, default=repr)
    return Job(prefix + hashlib.sha1(text.encode()).hexdigest()[:10], _importable(run), prefix,
               name, gpu)


def _importable(run: Callable) -> Callable:
    """``run`` (a function or a ``functools.partial`` of one) with a function of the running
    script (``__main__``) replaced by the same function of the script imported as a module:
    joblib's workers import it by name, with everything it uses (a module-level cache,
    say), where a function of ``__main__`` would be shipped without them."""
    func = run.func if isinstance(run, functools.partial) else run
    main = sys.modules.get("__main__")
    if getattr(func, "__module__", None) != "__main__" or not getattr(main, "__file__", None):
        return run
    import importlib

    func = getattr(importlib.import_module(Path(main.__file__).stem), func.__qualname__)
    if isinstance(run, functools.partial):
        return functools.partial(func, *run.args, **run.keywords)
    return func


def _json_value(v: Any) -> Any:
    """numpy scalars as Python numbers (ints stay ints), anything else as a float."""
    return v.item() if hasattr(v, "item") else float(v)


def _write_cached(cache: Path, key: str, rows: list[dict]) -> None:
    """``rows`` as ``<key>.json`` (a single row as the row itself), atomically (no half file,
    even with several processes on one cache)."""
    tmp = cache / f"{key}.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(rows[0] if len(rows) == 1 else rows, default=_json_value))
    tmp.replace(cache / f"{key}.json")


def _read_cached(path: Path) -> list[dict]:
    data = json.loads(Path(path).read_text())
    return data if isinstance(data, list) else [data]


def _run_job(cache: Path, jb: Job, threads: int | None) -> tuple[str, list[dict]]:
    if threads:
        import torch

        torch.set_num_threads(threads)  # this worker's share of the cores
    rows = list(jb.run())
    _write_cached(cache, jb.key, rows)
    return jb.key, rows


def run_jobs(
    jobs: Sequence[Job],
    cache: Path,
    n_jobs: int = 1,
    progress: bool = True,
    cached_only: bool = False,
    prune: bool = False,
    rerun: bool = False,
) -> list[dict]:
    """Run every job whose result ``cache`` lacks; return the rows of all of them, in job order.

    A job is done when ``cache`` holds ``<key>.json``; each job run here is
    cached there as it finishes, so an interrupted call resumes. With
    ``cached_only=True`` nothing runs: the rows of the jobs done come back (a
    report of an incomplete sweep). ``prune=True`` first deletes the cached
    files that a job supersedes (:func:`_stale`: its prefix with another hash,
    made by an older skood version or other parameters); ``rerun=True`` runs
    every job again and replaces its cached rows.

    Jobs go through ``joblib.Parallel``, so ``with joblib.parallel_backend("dask"):``
    (or ray) spreads them over a cluster; with ``n_jobs`` workers each gets its
    share of the cores as torch threads. With a CUDA device the jobs marked
    ``gpu`` run one at a time and the others in parallel.
    """
    from joblib import Parallel, delayed

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    done: dict[str, list[dict]] = {}
    todo: dict[str, Job] = {}
    for jb in jobs:
        if prune:
            for old in _stale(cache, jb.prefix, jb.key):
                old.unlink()
                print(f"pruned stale {old.name}", file=sys.stderr)
        path = cache / f"{jb.key}.json"
        if path.exists() and not rerun:
            done[jb.key] = _read_cached(path)
        else:
            todo[jb.key] = jb
    if todo and not cached_only:
        threads = max(1, (os.cpu_count() or 1) // max(1, n_jobs)) if n_jobs != 1 else None
        gpu = _cuda()
        serial = [j for j in todo.values() if j.gpu] if gpu else []
        groups = [serial, [j for j in todo.values() if not j.gpu]] if gpu else [list(todo.values())]
        bar = _progress(len(todo), progress)
        for group in groups:
            par = Parallel(n_jobs=1 if group is serial else n_jobs, return_as="generator_unordered")
            for key, rows in par(delayed(_run_job)(cache, j, threads) for j in group):
                done[key] = rows
                score = next((r["auroc"] for r in rows if "auroc" in r), None)
                bar.set_postfix_str(todo[key].label + ("" if score is None else
                                                       f" AUROC={score:.3f}"), refresh=False)
                bar.update()
        bar.close()
    out: list[dict] = []
    for jb in jobs:
        out += done.pop(jb.key, [])  # a job listed twice gives its rows once
    return out


def _keyed_run(key: str, task: Task, detector: str, seed: int, budget: str) -> list[dict]:
    return [{**run_one(task, detector, seed, budget), "key": key}]


def restore_cache(out: Path) -> int:
    """Cache every run of ``out/runs.csv`` that ``out/cache`` lacks; return how many.

    ``runs.csv`` is what a sweep commits (the per-run cache is local), so on
    a fresh clone this brings back the cache its runs were tabulated from.
    """
    cache = Path(out) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    missing = [r for key, r in read_runs(Path(out) / "runs.csv").items()
               if not (cache / f"{key}.json").exists()]
    for row in missing:
        _write_cached(cache, row["key"], [row])
    return len(missing)


def run_sweep(
    tasks: Sequence[Task],
    detectors: Sequence[str],
    seeds: Sequence[int],
    budget: str,
    out: Path,
    n_jobs: int = 1,
    progress: bool = True,
    cached_only: bool = False,
    prune: bool = False,
    rerun: bool = False,
) -> list[dict]:
    """Run every (task, detector, seed) not done yet; return the rows of all of them.

    The (task, detector, seed) case of :func:`run_jobs`, on the cache
    ``out/cache``: a run's key is :func:`run_key` (the same run by the same
    skood version with the same parameters), and :func:`restore_cache` first
    puts there the runs of ``out/runs.csv``. ``cached_only``, ``prune``,
    ``rerun``, ``n_jobs`` (and joblib backends) as in :func:`run_jobs`;
    skood's detectors are its ``gpu`` jobs, the baselines run in parallel.
    """
    restore_cache(out)
    cache = Path(out) / "cache"
    jobs = []
    for task in tasks:
        for det in detectors:
            for seed in seeds:
                ident = _identity(det, seed, budget, task.kind)
                key = run_key(task, det, seed, budget, ident)
                if not rerun and not (cache / f"{key}.json").exists():
                    # made before a parameter existed whose default runs the same code:
                    # cached under the current key (ADDED_PARAMS)
                    rows = equivalent_cached(cache, task, det, seed, budget, ident)
                    if rows is not None:
                        _write_cached(cache, key, [{**r, "key": key} for r in rows])
                jobs.append(Job(key, functools.partial(_keyed_run, key, task, det, seed, budget),
                                _key_prefix(task.name, det, seed, budget), f"{task.name} {det}",
                                gpu=base_detector(det) in SKOOD))
    return run_jobs(jobs, Path(out) / "cache", n_jobs=n_jobs, progress=progress,
                    cached_only=cached_only, prune=prune, rerun=rerun)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="runs", disable=not enabled, dynamic_ncols=True)


# -------------------------------------------------------------------- outputs
COLUMNS = ("dataset", "detector", "seed", "budget", "n_train", "n_test", "auroc", "ap",
           "p_at_n", "fit_s", "score_s", "peak_mib", "cuda_peak_mib", "error", "key")
_INT_COLUMNS = ("seed", "n_train", "n_test")
_TEXT_COLUMNS = ("dataset", "detector", "budget", "error", "key")


def read_runs(path: Path) -> dict[str, dict]:
    """The rows of a ``runs.csv`` written by :func:`write_outputs`, by run key.

    Values come back with the types of a cached row (``int`` counts, ``float``
    metrics and times, NaN included), so a table made from them is the table
    made from the cache. Rows without a key (files older than the key column)
    and a missing file give nothing.
    """
    import csv

    if not Path(path).exists():
        return {}
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if not r.get("key"):
                continue
            out[r["key"]] = {c: (r[c] if c in _TEXT_COLUMNS else
                                 int(r[c]) if c in _INT_COLUMNS else float(r[c]))
                             for c in COLUMNS}
    return out


def write_csv(path: Path, rows: list[dict], fields: Sequence[str] | None = None) -> None:
    """``rows`` as a CSV file with a header (``fields``, default the first row's keys)."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields or rows[0]), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _mean_matrix(rows: list[dict], metric: str) -> tuple[list[str], list[str], np.ndarray]:
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    dets = list(dict.fromkeys(r["detector"] for r in rows))
    m = np.full((len(names), len(dets)), np.nan)
    for i, n in enumerate(names):
        for j, d in enumerate(dets):
            vals = [r[metric] for r in rows if r["dataset"] == n and r["detector"] == d]
            vals = [v for v in vals if v == v]  # drop NaN (failed runs)
            if vals:
                m[i, j] = float(np.mean(vals))
    return names, dets, m


def mean_ranks(m: np.ndarray) -> np.ndarray:
    """Mean rank per detector (1 = best AUROC) over the datasets every detector finished."""
    from scipy.stats import rankdata

    ok = ~np.isnan(m).any(axis=1)
    if not ok.any():
        return np.full(m.shape[1], np.nan)
    return rankdata(-m[ok], axis=1).mean(axis=0)


def seed_spread(rows: list[dict], dets: list[str], metric: str) -> np.ndarray:
    """Per detector: standard deviation (ddof 1) over seeds of its mean over the datasets.

    The spread of the **mean** row that comes from the seeds alone (splits,
    subsamples, initialisation); NaN with fewer than two seeds.
    """
    out = []
    for d in dets:
        by_seed: dict[int, list[float]] = {}
        for r in rows:
            if r["detector"] == d and r[metric] == r[metric]:
                by_seed.setdefault(r["seed"], []).append(r[metric])
        means = [np.mean(v) for v in by_seed.values()]
        out.append(float(np.std(means, ddof=1)) if len(means) > 1 else np.nan)
    return np.array(out)


def markdown_table(rows: list[dict], metric: str = "auroc", title: str | None = None) -> str:
    """Per-dataset mean (over seeds) of ``metric`` x 100, then the mean, its spread over
    seeds (with several seeds) and the mean rank."""
    names, dets, m = _mean_matrix(rows, metric)
    seeds = sorted({r["seed"] for r in rows})
    order = np.argsort(mean_ranks(m)) if len(names) > 1 else np.arange(len(dets))
    dets, m = [dets[j] for j in order], m[:, order]
    lines = [] if title is None else [title, ""]
    lines += ["| dataset | " + " | ".join(dets) + " |", "|---|" + "---:|" * len(dets)]
    for i, n in enumerate(names):
        best = np.nanmax(m[i]) if not np.isnan(m[i]).all() else np.nan
        cells = ["—" if np.isnan(v) else (f"**{100 * v:.1f}**" if v == best else f"{100 * v:.1f}")
                 for v in m[i]]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    with warnings.catch_warnings():  # a detector whose every run failed: NaN, shown as such
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.array([np.nanmean(m[:, j]) for j in range(len(dets))])
    done = (~np.isnan(m)).sum(axis=0)
    # the best mean among the detectors that finished every dataset (a partial mean is over
    # other datasets), among all when none did
    whole = means[done == len(names)] if (done == len(names)).any() else means
    top = np.nanmax(whole) if not np.isnan(whole).all() else np.nan
    lines.append("| **mean** | " + " | ".join(
        (f"**{100 * v:.1f}**" if v == top else f"{100 * v:.1f}")
        + ("" if k == len(names) else f" ({k} of {len(names)})")
        for v, k in zip(means, done, strict=True)) + " |")
    if len(seeds) > 1:
        lines.append("| **sd over seeds** | " + " | ".join(
            f"{100 * v:.1f}" for v in seed_spread(rows, dets, metric)) + " |")
    if len(names) > 1:
        complete = int((~np.isnan(m).any(axis=1)).sum())
        label = "**mean rank**" + ("" if complete == len(names) else
                                   f" (on the {complete} datasets every detector finished)")
        lines.append(f"| {label} | " + " | ".join(
            "—" if np.isnan(r) else f"{r:.2f}" for r in mean_ranks(m)) + " |")
    failed = [r for r in rows if r.get("error")]
    lines.append("")
    lines.append(f"{metric.upper()} x 100, mean over seeds {seeds}; best per row in bold"
                 + ("; sd over seeds: standard deviation of each seed's mean over the datasets"
                    if len(seeds) > 1 else "")
                 + (f"; {len(failed)} failed runs (see runs.csv)" if failed else "") + ".")
    return "\n".join(lines)


def write_outputs(rows: list[dict], out: Path, meta: dict, metric: str = "auroc",
                  figure: bool = True) -> str:
    """Write runs.csv, table.md, figure.png and meta.json to ``out``; return the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["dataset"], r["detector"], r["seed"]))
    write_csv(out / "runs.csv", rows, COLUMNS)
    order = list(dict.fromkeys(r["dataset"] for r in _task_order(rows, meta)))
    rows_ordered = sorted(rows, key=lambda r: order.index(r["dataset"]))
    table = markdown_table(rows_ordered, metric)
    other = "ap" if metric == "auroc" else "auroc"
    table += "\n\n" + markdown_table(rows_ordered, other, title=f"{other.upper()}:")
    table += "\n\n" + cost_table(rows_ordered)
    (out / "table.md").write_text(table + "\n")
    if figure:
        _figure(rows_ordered, out / "figure.png", metric)
    (out / "meta.json").write_text(json.dumps({**environment(), **meta}, indent=2, default=str))
    return table


def cost_table(rows: list[dict]) -> str:
    """Per detector: mean fit and score seconds per run, largest peak memory, total CPU time."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        if not r.get("error"):
            by.setdefault(r["detector"], []).append(r)
    lines = ["Cost per run (mean over runs; peak = the largest; total = fit + score of all runs):",
             "", "| detector | runs | fit s | score s | peak MiB | total min |",
             "|---|---:|---:|---:|---:|---:|"]
    for det, rs in by.items():
        fit = [float(r["fit_s"]) for r in rs]
        score = [float(r["score_s"]) for r in rs]
        peak = max(float(r["peak_mib"]) for r in rs)
        lines.append(f"| {det} | {len(rs)} | {np.mean(fit):.1f} | {np.mean(score):.1f} | "
                     f"{peak:.0f} | {(sum(fit) + sum(score)) / 60:.1f} |")
    return "\n".join(lines)


def _task_order(rows: list[dict], meta: dict) -> list[dict]:
    names = meta.get("tasks") or []
    known = [r for n in names for r in rows if r["dataset"] == n]
    return known + [r for r in rows if r["dataset"] not in names]


def _figure(rows: list[dict], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, dets, m = _mean_matrix(rows, metric)
    order = np.argsort(-np.nanmean(m, axis=0))
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(dets) + 2), 4))
    data = [m[~np.isnan(m[:, j]), j] * 100 for j in order]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(order) + 1), [dets[j] for j in order], rotation=30, ha="right")
    ax.set_ylabel(f"{metric.upper()} x 100 (one point per dataset)")
    ax.set_title(f"{len(names)} datasets, mean over seeds")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def environment() -> dict:
    """Library versions and the device, for meta.json."""
    import joblib
    import pyod
    import sklearn
    import skorch
    import torch
    import torchvision

    import skood

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": dev or "cpu",
        "versions": {m.__name__: m.__version__ for m in
                     (skood, np, sklearn, torch, torchvision, skorch, pyod, joblib)},
    }


# ------------------------------------------------------------- sweep scripts
def sweep_arguments(ap: Any, seeds: Sequence[int], out: Path | None,
                    detectors: str | None = "default: all available") -> None:
    """The options every sweep script shares (``detectors``: the help of
    ``--detectors``; ``None``: the script has no such option), with
    :func:`engine_arguments`."""
    if detectors is not None:
        ap.add_argument("--detectors", nargs="*", default=None, help=detectors)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    ap.add_argument("--budget", choices=BUDGETS, default="cpu")
    ap.add_argument("--out", type=Path, default=out)
    engine_arguments(ap)


def engine_arguments(ap: Any, n_jobs: bool = True) -> None:
    """The options of the executor (:func:`run_jobs`) that every script has
    (``n_jobs=False``: the script has its own ``--n-jobs``)."""
    if n_jobs:
        ap.add_argument("--n-jobs", type=int, default=1, help="joblib workers (-1: all cores)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: write the tables from the runs already done")
    ap.add_argument("--prune", action="store_true",
                    help="delete the cached runs this sweep supersedes (made by an older "
                         "skood version or with other parameters)")
    ap.add_argument("--rerun", action="store_true",
                    help="run every run again and replace its cached result (after a change "
                         "that neither skood's version nor a parameter shows)")


def execute(jobs: Sequence[Job], cache: Path, args: Any) -> list[dict]:
    """:func:`run_jobs` under the options of :func:`engine_arguments`."""
    return run_jobs(jobs, cache, n_jobs=args.n_jobs, progress=not args.no_progress,
                    cached_only=args.report_only, prune=args.prune, rerun=args.rerun)


def write_meta(out: Path, script: str, argv: Sequence[str] | None, **extra: Any) -> None:
    """``out/meta.json``: library versions and device, the script and its arguments
    (``argv``; ``None``: this process's), and ``extra``."""
    given = sys.argv[1:] if argv is None else list(argv)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "meta.json").write_text(json.dumps(
        {**environment(), "script": script, "argv": given, **extra}, indent=1,
        default=str) + "\n")


def sweep(tasks: Sequence[Task], detectors: Sequence[str], args: Any, out: Path, script: str,
          argv: Sequence[str] | None, metric: str = "auroc", **meta: Any) -> tuple[list[dict], str]:
    """:func:`run_sweep` under the options of :func:`sweep_arguments`, then :func:`write_outputs`.

    ``meta.json`` records the command that makes (or resumes) the runs, so
    without ``--report-only`` (a report is not a run), and ``meta``'s
    entries. Returns the rows and the table (empty when no run is done).
    """
    t0 = time.perf_counter()
    rows = run_sweep(tasks, detectors, args.seeds, args.budget, out, n_jobs=args.n_jobs,
                     progress=not args.no_progress, cached_only=args.report_only,
                     prune=args.prune, rerun=getattr(args, "rerun", False))
    given = sys.argv[1:] if argv is None else list(argv)
    info = {"script": script, "argv": [a for a in given if a != "--report-only"],
            "report_only": args.report_only, "budget": args.budget, "seeds": args.seeds,
            "tasks": [t.name for t in tasks], **meta,
            "wall_s_this_call": time.perf_counter() - t0}
    return rows, (write_outputs(rows, out, info, metric=metric) if rows else "")


def select(names: Iterable[str], wanted: Sequence[str] | None, what: str) -> list[str]:
    """Filter ``names`` by exact name or substring; a filter matching nothing is an error.

    A filter that is a name itself selects that name only ("KNN" is not also
    "FeatureKNN"); any other filter selects every name it is a substring of.
    """
    names = list(names)
    if not wanted:
        return names
    plain = [w for w in wanted if "(" not in w]
    exact = {w for w in plain if w in names}
    loose = [w.lower() for w in plain if w not in exact]
    out = [n for n in names if n in exact or any(w in n.lower() for w in loose)]
    for w in wanted:  # variants such as "SemSAD(n_neighbors=1)" of an available detector
        if "(" in w:
            if base_detector(w) not in names:
                raise SystemExit(f"{w!r} is not a variant of an available {what}: {names}")
            out.append(w)
    if not out:
        raise SystemExit(f"no {what} matches {list(wanted)}; available: {names}")
    return out


def ablation_table(rows: list[dict], reference: str, metric: str = "auroc") -> str:
    """Variants against ``reference``: mean ± spread over seeds, and a verdict.

    For each seed the metric is averaged over the tasks; the table gives the
    mean ± standard deviation of those per-seed means, and the paired
    difference to ``reference`` (same tasks, same seeds). A difference whose
    magnitude is not larger than its own spread is reported as "no effect",
    never as a win.
    """
    dets = list(dict.fromkeys(r["detector"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    per_seed = {d: np.array([np.nanmean([r[metric] for r in rows
                                         if r["detector"] == d and r["seed"] == s])
                             for s in seeds]) for d in dets}

    def fmt(v: np.ndarray) -> str:
        sd = v.std(ddof=1) if len(v) > 1 else float("nan")
        return f"{100 * v.mean():.1f} ± {100 * sd:.1f}"

    lines = [f"| variant | {metric.upper()} x 100 | vs {reference} | verdict |",
             "|---|---:|---:|---|"]
    for d in dets:
        if d == reference:
            lines.append(f"| {d} (reference) | {fmt(per_seed[d])} | | |")
            continue
        diff = per_seed[d] - per_seed[reference]
        sd = diff.std(ddof=1) if len(diff) > 1 else float("nan")
        if not np.isfinite(sd):
            verdict = "one seed: no verdict"
        elif abs(diff.mean()) <= sd:
            verdict = "no effect"
        else:
            verdict = "better" if diff.mean() > 0 else "worse"
        lines.append(f"| {d} | {fmt(per_seed[d])} | {100 * diff.mean():+.1f} ± {100 * sd:.1f} "
                     f"| {verdict} |")
    tasks = list(dict.fromkeys(r["dataset"] for r in rows))
    lines += ["", f"Mean over {len(tasks)} tasks ({', '.join(tasks)}) per seed, then mean ± "
              f"std over seeds {seeds}; differences are paired by seed."]
    return "\n".join(lines)
