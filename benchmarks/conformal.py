"""Conformal thresholds measured: realised false-alarm rate, FDR and power vs the nominal level.

For each (suite, set, detector, seed) ONE fit with a held-out calibration
fraction (``calibration=--fraction``, default 0.2: the networks are fitted on
the other 80% of the training rows, the held-out rows are scored out of
sample) and, from that single fit, three ways of turning the test scores into
decisions:

* ``split``: conformal p-values against ``calibration_scores_`` (the held-out
  rows' scores; the mode with the finite-sample guarantee when the training
  rows are normal);
* ``loo``: conformal p-values against the training scores of the rows the
  networks were fitted on (``train_scores_`` without ``calibration_rows_``:
  what ``calibration="loo"`` uses, leave-one-out or in-sample scores);
* ``contamination``: the default rule, flag where the score is below
  ``offset_`` (the training scores' ``contamination`` quantile, 0.1).

For each p-value mode and alpha in 0.01, 0.05, 0.1: the realised
false-alarm rate on the normal test rows and the power (share of test
anomalies flagged), and the Benjamini-Hochberg decision at q = 0.1 over the
test rows: realised FDR (false discoveries / discoveries, 0 without any) and
power. The baselines IsolationForest and PyOD's KNN are fitted on the same
rows as FeatureKNN (the same held-out rows) and get their p-values from their
scores through the same helper as skood's detectors; their ``loo`` scores are
their training scores (in-sample for IsolationForest, leave-one-out for KNN)
and their contamination rule flags scores below the 10% quantile of those.

Suites (splits of ``tabular_suite.py`` and ``image_suite.py``): ``t-clean``
(ADBench, stratified 70/30 split, anomalies removed from the training part),
``t-ind`` (the same split with the anomalies kept in the training part: the
guarantee's assumption broken), ``f-oc`` (one-class Fashion-MNIST, 1,000
training images of class k at the ``cpu`` budget). Which detectors run where,
and on how many seeds, is :data:`PLAN` (the cheap ones everywhere, the
expensive ones on every other set); ``--suites``, ``--detectors``,
``--datasets`` and ``--seeds`` narrow it. Each fit is one job of the benchmark
engine, cached in ``<out>/cache`` (resume, ``--n-jobs``, ``--report-only``).

Outputs in ``--out`` (default ``benchmarks/results/conformal``): ``runs.csv``
(one row per run and mode), ``table.md`` (mean ± sd over sets and seeds per
suite, mode and detector, the contamination rule, and the split mode's
validity check), ``figure.png`` (realised vs nominal false-alarm rate),
``meta.json``.

Usage::

    python benchmarks/conformal.py
    python benchmarks/conformal.py --suites t-clean --detectors FeatureKNN --seeds 0
    python benchmarks/conformal.py --report-only
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
from _image_tasks import image_tasks
from _suite import (
    _flat,
    engine_arguments,
    execute,
    job,
    make_detector,
    normality,
    params_identity,
    write_csv,
    write_meta,
)
from tabular_suite import default_data_home, tabular_tasks

from skood._conformal import benjamini_hochberg, conformal_pvalues

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = (0.01, 0.05, 0.1)
Q = 0.1
MODES = ("split", "loo", "contamination")
SUITES = ("t-clean", "t-ind", "f-oc")
#: the FeatureKNN job fits these on the same rows as FeatureKNN (raw pixels on images)
BASELINES = ("IsolationForest", "KNN")
#: the contamination rule of the baselines: flag below this quantile of their training scores
RULE_QUANTILE = 0.1
#: suite -> [(detectors, seeds, sets)]: "all" sets, or "every other" (positions 0, 2, 4, ...
#: of the suite's sets in their order)
PLAN = {
    "t-clean": [(("FeatureKNN", "RotAuxMSP"), (0, 1, 2), "all"),
                (("NSA", "SemSAD", "DUM", "DistillNeg"), (0,), "every other")],
    "t-ind": [(("FeatureKNN", "RotAuxMSP"), (0, 1, 2), "all"),
              (("NSA", "SemSAD", "DUM", "DistillNeg"), (0,), "every other")],
    "f-oc": [(("FeatureKNN", "NSA"), (0,), "all"),
             (("RotAuxMSP", "DistillNeg", "DUM", "SemSAD"), (0,), "every other")],
}


def suite_tasks(suite: str, data_home: str | None, budget: str) -> list:
    """The tasks of one suite, built by the suites' own split code."""
    if suite == "f-oc":
        return image_tasks("fashion", "one-class", range(10), budget, data_home)
    protocol = {"t-clean": "clean", "t-ind": "inductive"}[suite]
    return tabular_tasks(data_home, protocol, ("adbench",))


def rates(p: np.ndarray | None, flags: np.ndarray | None, y: np.ndarray) -> dict:
    """Realised rates of one mode on the test rows (``y`` 1 = anomaly): per alpha from the
    p-values, BH at q; or, for the contamination rule, from its ``flags``."""
    normal, anom = y == 0, y == 1
    row = {}
    if p is not None:
        for a in ALPHAS:
            hit = p <= a
            row[f"far_{a:g}"] = hit[normal].mean()
            row[f"power_{a:g}"] = hit[anom].mean()
        rej = benjamini_hochberg(p, Q)
        row["bh_discoveries"] = int(rej.sum())
        row["bh_fdr"] = (rej & normal).sum() / max(int(rej.sum()), 1)
        row["bh_power"] = rej[anom].mean()
    else:
        row["rule_far"] = flags[normal].mean()
        row["rule_power"] = flags[anom].mean()
    return row


def _mode_rows(base: dict, name: str, s: np.ndarray, cal: np.ndarray, fitted: np.ndarray,
               threshold: float, y: np.ndarray) -> list[dict]:
    """The three rows (split, loo, contamination) of one fitted detector."""
    head = {**base, "detector": name, "n_cal": len(cal), "n_fit": len(fitted)}
    return [{**head, "mode": "split", **rates(conformal_pvalues(cal, s), None, y)},
            {**head, "mode": "loo", **rates(conformal_pvalues(fitted, s), None, y)},
            {**head, "mode": "contamination", **rates(None, s < threshold, y)}]


def split_fit(det, X: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``det`` with ``calibration=fraction`` (the detector draws and holds out the
    calibration rows); returns (held-out mask, calibration scores, training scores of the
    fitted rows)."""
    held = np.zeros(len(X), dtype=bool)
    det.set_params(calibration=fraction).fit(X)
    held[det.calibration_rows_] = True
    if "train_score_rows_" in vars(det):  # see _identity
        raise ValueError(f"{len(X)} training rows: fit scored a subset (max_train_scores); "
                         "the loo mode needs every fitted row's score")
    return held, np.asarray(det.calibration_scores_), np.asarray(det.train_scores_)[~held]


def run_one(suite: str, task, detector: str, seed: int, budget: str,
            fraction: float) -> list[dict]:
    """One job: one fit in split mode (plus, for FeatureKNN, the baselines on its split)."""
    X_tr, _, X_te, y = task.build(seed)
    y = np.asarray(y).astype(int)
    base = {"suite": suite, "dataset": task.name, "seed": seed, "budget": budget,
            "fraction": fraction, "n_train": len(X_tr), "n_test_normal": int((y == 0).sum()),
            "n_test_anomalies": int((y == 1).sum()), "error": ""}
    n_features = int(np.prod(np.shape(X_tr)[1:]))
    det = make_detector(detector, seed, budget, task.kind, n_features)
    t0 = time.perf_counter()
    try:
        held, cal, fitted = split_fit(det, X_tr, fraction)
        fit_s = time.perf_counter() - t0
        s = det.score_samples(X_te)
    except Exception as exc:  # a failing run is recorded, not fatal to the sweep
        return [{**base, "detector": detector, "mode": m,
                 "error": f"{type(exc).__name__}: {exc}"[:300]} for m in MODES]
    rows = _mode_rows({**base, "fit_s": fit_s}, detector, s, cal, fitted, det.offset_, y)
    if detector != "FeatureKNN":
        return rows
    Xb_tr, Xb_te = (_flat(X_tr), _flat(X_te)) if task.kind == "image" else (X_tr, X_te)
    for name in BASELINES:
        b = make_detector(name, seed, budget, task.kind, n_features)
        t0 = time.perf_counter()
        b.fit(Xb_tr[~held])
        fit_s = time.perf_counter() - t0
        train = (-np.asarray(b.decision_scores_, dtype=np.float64)
                 if hasattr(b, "decision_scores_") else normality(b, Xb_tr[~held]))
        rows += _mode_rows({**base, "fit_s": fit_s}, name, normality(b, Xb_te),
                           normality(b, Xb_tr[held]), train,
                           np.quantile(train, RULE_QUANTILE), y)
    return rows


def planned(suites, detectors, datasets, seeds, data_home, budget) -> list[tuple]:
    """(suite, task, detector, seed) of :data:`PLAN`, narrowed by the filters (None: all)."""
    out = []
    for suite in suites:
        tasks = suite_tasks(suite, data_home, budget)
        for dets, plan_seeds, sets in PLAN[suite]:
            chosen = tasks if sets == "all" else tasks[::2]
            for det in dets:
                if detectors and det not in detectors:
                    continue
                for seed in plan_seeds:
                    if seeds is not None and seed not in seeds:
                        continue
                    out += [(suite, t, det, seed) for t in chosen
                            if not datasets or any(d in t.name for d in datasets)]
    return out


# --------------------------------------------------------------------- report
def _num(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows if r.get(key, "") != ""], dtype=float)


def _ms(v: np.ndarray) -> str:
    if not len(v):
        return "–"
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{100 * v.mean():.1f} ± {100 * sd:.1f}"


def _order(values) -> list:
    return list(dict.fromkeys(values))


def validity(rows: list[dict], alpha: float, draws: int = 20000) -> dict:
    """Pooled check of the split mode's false-alarm rate at ``alpha`` over ``rows`` (runs).

    Given its n calibration scores, a run's m normal test rows are each flagged with the
    same probability c, which (continuous scores; ties only lower it) is
    Beta(l, n + 1 - l) with l = floor(alpha (n + 1)), mean l / (n + 1) <= alpha: the false
    alarms of a run are beta-binomial. Their pooled count over independent runs must stay
    below the 99% quantile of its distribution (``limit``, simulated with a fixed seed)
    when the guarantee holds; ``above`` counts the runs whose own count exceeds their 99%
    quantile (about 1% of the runs expected).
    """
    from scipy.stats import betabinom

    rng = np.random.default_rng(0)
    total = m_all = above = 0
    mean = 0.0
    pooled = np.zeros(draws)
    for r in rows:
        n, m = int(r["n_cal"]), int(r["n_test_normal"])
        x = round(float(r[f"far_{alpha:g}"]) * m)
        total += x
        m_all += m
        lo = int(np.floor(alpha * (n + 1)))
        if lo == 0:  # alpha below 1 / (n + 1): no p-value can be that small
            above += int(x > 0)
            continue
        mean += m * lo / (n + 1)
        pooled += rng.binomial(m, rng.beta(lo, n + 1 - lo, draws))
        above += int(x > betabinom(m, lo, n + 1 - lo).ppf(0.99))
    limit = float(np.quantile(pooled, 0.99))
    return {"pooled": total / max(m_all, 1), "expected": mean / max(m_all, 1),
            "limit": limit / max(m_all, 1), "ok": total <= limit, "above": above,
            "runs": len(rows)}


def report(rows: list[dict], fraction: float) -> str:
    ok = [r for r in rows if not r.get("error")]
    failed = {(r["suite"], r["dataset"], r["detector"], r["seed"]) for r in rows
              if r.get("error")}
    lines = [f"Conformal thresholds measured (`python benchmarks/conformal.py`). One fit per "
             f"(set, detector, seed) with calibration={fraction:g} (the networks fitted on "
             f"{100 * (1 - fraction):.0f}% of the training rows); percentages, mean ± sd over "
             "sets and seeds (one run = one set and seed). split: p-values against the "
             "held-out rows' scores; loo: against the fitted rows' training scores (what "
             "calibration='loo' uses); FAR: share of the normal test rows flagged; power: "
             "share of the test anomalies flagged; BH: Benjamini-Hochberg at q = 10% over "
             "each test set (FDR = false discoveries / discoveries, 0 without any). "
             "IsolationForest and KNN (PyOD) are fitted on FeatureKNN's rows of the same "
             "split.", ""]
    lines += ["**What ran**", "", "| suite | detector | sets | seeds | runs |",
              "|---|---|---|---|---|"]
    for suite in _order(r["suite"] for r in rows):
        for det in _order(r["detector"] for r in rows if r["suite"] == suite):
            sel = [r for r in ok if r["suite"] == suite and r["detector"] == det
                   and r["mode"] == "split"]
            if not sel:
                continue
            lines.append(f"| {suite} | {det} | {len(_order(r['dataset'] for r in sel))} | "
                         f"{', '.join(str(s) for s in _order(r['seed'] for r in sel))} | "
                         f"{len(sel)} |")
    if failed:
        lines += ["", f"Failed runs (not in the tables): {len(failed)}: "
                  + ", ".join("/".join(str(x) for x in f) for f in sorted(failed)[:10])]
    head = ("| suite | detector | mode | FAR α=1% | FAR α=5% | FAR α=10% | power α=1% | "
            "power α=5% | power α=10% | BH FDR | BH power |")
    lines += ["", "**p-value decisions**", "", head, "|---" * 11 + "|"]
    for suite in _order(r["suite"] for r in ok):
        for det in _order(r["detector"] for r in ok if r["suite"] == suite):
            for mode in ("split", "loo"):
                sel = [r for r in ok if (r["suite"], r["detector"], r["mode"])
                       == (suite, det, mode)]
                if not sel:
                    continue
                cells = [_ms(_num(sel, f"far_{a:g}")) for a in ALPHAS]
                cells += [_ms(_num(sel, f"power_{a:g}")) for a in ALPHAS]
                cells += [_ms(_num(sel, "bh_fdr")), _ms(_num(sel, "bh_power"))]
                lines.append(f"| {suite} | {det} | {mode} | " + " | ".join(cells) + " |")
    lines += ["", "**Contamination rule (contamination=0.1)**", "",
              "| suite | detector | FAR | power |", "|---|---|---|---|"]
    for suite in _order(r["suite"] for r in ok):
        for det in _order(r["detector"] for r in ok if r["suite"] == suite):
            sel = [r for r in ok if (r["suite"], r["detector"], r["mode"])
                   == (suite, det, "contamination")]
            if sel:
                lines.append(f"| {suite} | {det} | {_ms(_num(sel, 'rule_far'))} | "
                             f"{_ms(_num(sel, 'rule_power'))} |")
    lines += ["", "**Validity of the false-alarm rate**", "",
              "Per detector, its runs pooled (sets and seeds: independent test sets). Given "
              "its n calibration scores a run's normal test rows are flagged with one "
              "probability c ~ Beta(l, n + 1 - l), l = floor(α(n + 1)), so its false alarms "
              "are beta-binomial; the pooled rate must stay at or below the bound (the 99% "
              "quantile of the pooled count, simulated) when the guarantee holds (split "
              "mode, normal training rows). Cells: pooled FAR / bound, percent; "
              "'runs above': runs over their own 99% quantile, summed over the three α "
              "(about 3% of the runs expected). loo: the same computation for a mode "
              "without that guarantee.", "",
              "| suite | detector | mode | runs | α=1% | α=5% | α=10% | within | runs above |",
              "|---|---|---|---|---|---|---|---|---|"]
    for suite in _order(r["suite"] for r in ok):
        for det in _order(r["detector"] for r in ok if r["suite"] == suite):
            for mode in ("split", "loo"):
                sel = [r for r in ok if (r["suite"], r["detector"], r["mode"])
                       == (suite, det, mode)]
                if not sel:
                    continue
                vs = [validity(sel, a) for a in ALPHAS]
                cells = [f"{100 * v['pooled']:.2f} / {100 * v['limit']:.2f}" for v in vs]
                within = "yes" if all(v["ok"] for v in vs) else "NO"
                lines.append(f"| {suite} | {det} | {mode} | {len(sel)} | " + " | ".join(cells)
                             + f" | {within} | {sum(v['above'] for v in vs)} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path: Path) -> None:
    """Realised vs nominal false-alarm rate, one panel per suite, one line per mode (mean
    over runs, band: 10-90% of the runs), the contamination rule's mean FAR dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r.get("error")]
    suites = _order(r["suite"] for r in ok)
    fig, axes = plt.subplots(1, len(suites), figsize=(4.2 * len(suites), 4), squeeze=False)
    x = np.array(ALPHAS)
    for ax, suite in zip(axes[0], suites, strict=True):
        for mode, colour in (("split", "C0"), ("loo", "C1")):
            sel = [r for r in ok if (r["suite"], r["mode"]) == (suite, mode)]
            v = np.array([[float(r[f"far_{a:g}"]) for a in ALPHAS] for r in sel])
            ax.plot(x, v.mean(0), "o-", color=colour, label=f"{mode} (mean)")
            ax.fill_between(x, *np.percentile(v, [10, 90], axis=0), color=colour, alpha=0.15)
        rule = _num([r for r in ok if (r["suite"], r["mode"]) == (suite, "contamination")],
                    "rule_far")
        if len(rule):
            ax.axhline(rule.mean(), color="C2", ls=":", label="contamination rule")
        ax.plot([0, 0.11], [0, 0.11], "k--", lw=0.8, label="nominal")
        runs = len([r for r in ok if (r["suite"], r["mode"]) == (suite, "split")])
        ax.set(title=f"{suite} ({runs} runs)", xlabel="alpha (nominal false-alarm rate)",
               xlim=(0, 0.11), ylim=(0, None))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("realised false-alarm rate (normal test rows)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES))
    ap.add_argument("--detectors", nargs="+", default=None, help="default: the plan's")
    ap.add_argument("--datasets", nargs="+", default=None, help="names or substrings")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the plan's")
    ap.add_argument("--fraction", type=float, default=0.2,
                    help="calibration: the share of the training rows held out")
    ap.add_argument("--budget", choices=["smoke", "cpu", "gpu"], default="cpu")
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "conformal")
    engine_arguments(ap)
    args = ap.parse_args(argv)
    data_home = args.data_home or default_data_home()

    todo = planned(args.suites, args.detectors, args.datasets, args.seeds, data_home,
                   args.budget)
    jobs = [job(f"{suite}__{t.name}__{det}__s{seed}__{args.budget}",
                functools.partial(run_one, suite, t, det, seed, args.budget, args.fraction),
                {"suite": suite, "task": t.name, "meta": t.meta, "seed": seed,
                 "budget": args.budget, "fraction": args.fraction,
                 "params": _identity(det, seed, args.budget, t.kind),
                 "baselines": BASELINES if det == "FeatureKNN" else ()})
            for suite, t, det, seed in todo]
    t0 = time.perf_counter()
    rows = execute(jobs, args.out / "cache", args)
    if not rows:
        print("no run done yet")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "runs.csv", rows, fields=_fields(rows))
    given = sys.argv[1:] if argv is None else list(argv)
    write_meta(args.out, "benchmarks/conformal.py",
               [a for a in given if a != "--report-only"], report_only=args.report_only,
               wall_s_this_call=round(time.perf_counter() - t0, 1))
    md = report(rows, args.fraction)
    (args.out / "table.md").write_text(md)
    figure(rows, args.out / "figure.png")
    print(md)


def _identity(det: str, seed: int, budget: str, kind: str) -> dict:
    """The detector's parameters but ``calibration`` (the script sets it to ``--fraction``,
    which is part of the job's identity) and ``max_train_scores``: its default scores every
    fitted row of the suites' training sets (at most 10,000 rows; :func:`split_fit` checks),
    the code that ran before the parameter existed."""
    params = params_identity(make_detector(det, seed, budget, kind, 1))
    params.pop("calibration", None)
    params.pop("max_train_scores", None)
    return params


def _fields(rows: list[dict]) -> list[str]:
    """Every key of every row, in first-seen order (the modes' rows hold different rates)."""
    return list(dict.fromkeys(k for r in rows for k in r))


if __name__ == "__main__":
    main()
