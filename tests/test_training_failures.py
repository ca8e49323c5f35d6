"""Training that fails: a diverged loss, a degenerate fit, an interrupt.

A training phase whose loss stops being finite raises ``TrainingDivergedError``
(a ``ValueError``) naming the phase, the epoch and the learning-rate
parameters; training scores that collapse to one value give a
``ConvergenceWarning``; a ``KeyboardInterrupt`` propagates out of
``SkoodNet.fit`` and of every detector's ``fit``, which then leaves the
detector unfitted.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.validation import check_is_fitted
from torch import nn

from skood._testing import DETECTORS, tiny
from skood._training import PhaseProgress, SkoodNet, TrainingDivergedError

X_TAB = np.random.RandomState(0).normal(size=(120, 6))


def _images():
    from skood.datasets import load_digits_images

    X, y = load_digits_images()
    return X[y == 0][:100]


# --------------------------------------------------------------------------
# SkoodNet alone


class _StepNet(SkoodNet):
    """A least-squares net whose k-th step (counted over the fit, 1-based) misbehaves."""

    def __init__(self, *args, bad_step=3, failure="nan", **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_step = bad_step
        self.failure = failure

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.steps_ = 0
        self.train_end_calls_ = 0

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.train_end_calls_ += 1
        super().on_train_end(net, X=X, y=y, **kwargs)

    def after_step(self, x, idx, step):
        if self.steps_ == self.bad_step and self.failure == "parameters":
            with torch.no_grad():
                self.module_.weight.fill_(float("inf"))  # after the step's loss was recorded

    def compute_loss(self, x, idx):
        self.steps_ += 1
        loss = self.module_(x).square().mean()
        if self.steps_ == self.bad_step:
            if self.failure == "interrupt":
                raise KeyboardInterrupt
            if self.failure in ("nan", "inf"):
                loss = loss * float(self.failure)
        return loss


def _net(**kwargs):
    kwargs = {"max_epochs": 4, "batch_size": 8, "lr": 0.1, "device": "cpu", **kwargs}
    return _StepNet(nn.Linear(3, 2), name="toy phase", **kwargs)


_X_NET = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))  # 4 steps an epoch


@pytest.mark.parametrize("failure", ["nan", "inf"])
def test_skoodnet_raises_at_the_end_of_the_epoch_whose_loss_is_not_finite(failure):
    net = _net(bad_step=6, failure=failure)  # epoch 2, batch 2
    with pytest.raises(TrainingDivergedError, match=r"'toy phase'.*epoch 2 .*lr=0\.1") as err:
        net.fit(_X_NET)
    assert isinstance(err.value, ValueError)
    e = err.value
    assert (e.phase, e.epoch, e.lr) == ("toy phase", 2, 0.1) and not np.isfinite(e.loss)
    assert net.steps_ == 8  # the epoch ran to its end, and no further epoch
    assert len(net.history) == 2 and net.train_end_calls_ == 0


def test_skoodnet_raises_when_the_last_step_leaves_parameters_not_finite():
    net = _net(bad_step=16, failure="parameters")  # the last step of the last epoch
    with pytest.raises(TrainingDivergedError, match=r"'toy phase'.*parameters are not finite "
                                                    r"after epoch 4.*lr=0\.1"):
        net.fit(_X_NET)
    assert net.train_end_calls_ == 0


def test_skoodnet_interrupt_propagates():
    net = _net(bad_step=6, failure="interrupt", verbose=1)
    with pytest.raises(KeyboardInterrupt):
        net.fit(_X_NET)
    assert net.steps_ == 6 and len(net.history) == 2
    assert net.train_end_calls_ == 0  # no on_train_end (no BatchNorm pass) after an interrupt
    bars = [cb for _, cb in net.callbacks_ if isinstance(cb, PhaseProgress)]
    assert bars and not any(hasattr(cb, "bar_") for cb in bars)  # the progress bar is closed
    # partial_fit too (skorch's partial_fit catches KeyboardInterrupt)
    net.bad_step = 2
    with pytest.raises(KeyboardInterrupt):
        net.partial_fit(_X_NET)


def test_skoodnet_finite_training_is_unchanged():
    net = _net(bad_step=0)
    net.fit(_X_NET)
    assert len(net.history) == 4 and net.train_end_calls_ == 1


# --------------------------------------------------------------------------
# detectors: a diverged loss


#: detector, overrides, input, the phase and the parameter the error names
_DIVERGING = [
    ("SemSADDetector", {"lr": 1e30}, "tab", "SemSAD encoder", "lr=1e+30"),
    ("SemSADDetector", {"discriminator_lr": 1e30}, "tab", "SemSAD discriminator",
     "discriminator_lr=1e+30"),
    ("NSADetector", {"lr": 1e30}, "tab", "NSA encoder", "lr=1e+30"),
    ("DistillNegDetector", {"lr": 1e30}, "tab", "DistillNeg", "lr=1e+30"),
    ("DistillNegDetector", {"lr": 1e6}, "tab", "DistillNeg", "lr=1000000.0"),
    ("RotAuxMSPDetector", {"lr": 1e30}, "tab", "RotAux", "lr=1e+30"),
    ("DUMDetector", {"encoder_lr": 1e30, "batch_size": 32}, "img", "DUM encoder",
     "encoder_lr=1e+30"),
]


@pytest.mark.parametrize(("name", "params", "kind", "phase", "named"), _DIVERGING,
                         ids=[f"{d[0]}-{d[4]}" for d in _DIVERGING])
def test_diverged_training_raises_naming_the_phase_and_learning_rate(name, params, kind, phase,
                                                                     named):
    if name not in DETECTORS:
        pytest.skip(f"{name} not in this build")
    X = X_TAB if kind == "tab" else _images()
    det = tiny(name).fit(X)  # a fitted detector, refitted with a diverging learning rate
    det.set_params(**params)
    with pytest.raises(TrainingDivergedError,
                       match=rf"{name}: training diverged in phase '{re.escape(phase)}.*epoch 1"
                             rf".*{re.escape(named)}"):
        det.fit(X)
    with pytest.raises(NotFittedError):  # no threshold of the earlier fit is left
        check_is_fitted(det, "offset_")


# --------------------------------------------------------------------------
# detectors: degenerate training scores


@pytest.mark.parametrize(("name", "kind"), [("DUMDetector", "tab"), ("DUMDetector", "img"),
                                            ("RotAuxMSPDetector", "tab")])
def test_collapsed_training_scores_warn_naming_lr(name, kind):
    X = X_TAB if kind == "tab" else _images()
    extra = {"batch_size": 32} if kind == "img" else {}
    if name == "RotAuxMSPDetector":  # the default centre score of rows ranks even a diverged
        # network's huge distances without ties; skood 0.1's mean confidence ties them
        extra.update(scoring="rotation", n_affine_maps=8, mlp_width=256)
    det = tiny(name, lr=1e3, **extra)
    with pytest.warns(ConvergenceWarning, match=r"training scores are the same value.*lr=1000\.0"):
        det.fit(X)
    assert np.isfinite(det.offset_)


def test_non_finite_training_scores_raise(monkeypatch):
    det = tiny("NSADetector")
    monkeypatch.setattr(type(det), "_score_store",
                        lambda self, Xs: np.full(len(Xs), np.nan))
    # NSA's lr='auto' hint names the setting and the rate it resolved to
    with pytest.raises(TrainingDivergedError, match=r"120 of 120 training scores are not finite"
                                                    r".*lr='auto' \(here 0\.001\)"):
        det.fit(X_TAB)
    with pytest.raises(NotFittedError):
        check_is_fitted(det, "offset_")


@pytest.mark.parametrize("data", ["ordinary", "identical rows"])
def test_ordinary_and_constant_data_fit_without_warning(name, data):
    X = X_TAB if data == "ordinary" else np.ones((40, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        det = tiny(name).fit(X)
    assert np.isfinite(det.train_scores_).all()


# --------------------------------------------------------------------------
# detectors: KeyboardInterrupt


#: each training phase of each detector on tabular rows (and DUM's encoder on images)
_PHASES = [("SemSADDetector", "SemSAD encoder"), ("SemSADDetector", "SemSAD discriminator"),
           ("NSADetector", "NSA encoder (simsiam)"), ("DistillNegDetector", "DistillNeg (DINO)"),
           ("DUMDetector", "DUM"), ("DUMDetector", "DUM encoder (SimCLR)"),
           ("RotAuxMSPDetector", "RotAux rotation-only")]


@pytest.mark.parametrize(("name", "phase"), _PHASES)
def test_interrupt_during_training_propagates_and_leaves_the_detector_unfitted(
        name, phase, monkeypatch):
    if name not in DETECTORS:
        pytest.skip(f"{name} not in this build")
    images = phase == "DUM encoder (SimCLR)"
    X = _images() if images else X_TAB
    det = tiny(name, **({"batch_size": 32} if images else {})).fit(X)
    steps = {}
    original = SkoodNet.train_step_single

    def interrupting(self, batch, **fit_params):
        if self.name == phase:  # the phase's second step
            steps[self.name] = steps.get(self.name, 0) + 1
            if steps[self.name] == 2:
                raise KeyboardInterrupt
        return original(self, batch, **fit_params)

    monkeypatch.setattr(SkoodNet, "train_step_single", interrupting)
    with pytest.raises(KeyboardInterrupt):
        det.fit(X)
    assert list(steps.values()) == [2]  # the interrupt came from that phase
    with pytest.raises(NotFittedError):
        check_is_fitted(det, "offset_")
    assert not hasattr(det, "train_scores_")
