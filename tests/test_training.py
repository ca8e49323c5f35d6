"""The shared training loop: history entries, sync-free building blocks, GPU memory format.

The CPU tests check that the pieces rewritten to avoid host-device
synchronisation on CUDA record the same history and compute the same values
as the per-step code they replace (bit for bit where the arithmetic is the
same). The CUDA tests (skipped without a GPU) check that no training loop
synchronises the host with the device, that the losses are float32 under
mixed precision and that channels-last training leaves standard modules.
"""

from __future__ import annotations

import contextlib
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from skood._nn.losses import nt_xent
from skood._testing import tiny
from skood._training import (
    AUTO_EPOCH_ROWS,
    ContrastiveNet,
    PhaseLRScheduler,
    SkoodNet,
    StepBudget,
    TensorLoader,
    cosine_lr,
    cumulative_batchnorm,
    flush_denormals,
    is_flushing_denormals,
    piecewise_lr,
    step_budget,
)
from skood._utils import FitGenerators, seed_stream
from skood.datasets import load_digits_images

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --------------------------------------------------------------------------
# the batch loader


def test_tensor_loader_draws_the_cpu_permutation_and_slices_on_the_data_device():
    X = torch.arange(10.0)[:, None].expand(10, 3).contiguous()
    loader = TensorLoader(SimpleNamespace(X=X), batch_size=4, shuffle=True,
                          generator=torch.Generator().manual_seed(3))
    batches = list(loader)
    assert len(batches) == len(loader) == 3  # 4 + 4 + 2
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat([idx for _, idx in batches]), order)
    for xb, idx in batches:
        assert idx.device == X.device and torch.equal(xb, X[idx])
    # a last batch of one sample is dropped
    nine = TensorLoader(SimpleNamespace(X=X[:9]), batch_size=4)
    assert [len(i) for _, i in nine] == [4, 4] and len(nine) == 2
    # min_batch: a shorter last batch is dropped, unless it is the only one
    ten = TensorLoader(SimpleNamespace(X=X), batch_size=4, min_batch=3)
    assert [len(i) for _, i in ten] == [4, 4] and len(ten) == 2
    assert len(list(TensorLoader(SimpleNamespace(X=X[:7]), batch_size=4, min_batch=3))) == 2
    three = TensorLoader(SimpleNamespace(X=X[:3]), batch_size=4, min_batch=4)
    assert [len(i) for _, i in three] == [3] and len(three) == 1


# --------------------------------------------------------------------------
# history values recorded on the device, resolved once per epoch


class _RecordingNet(SkoodNet):
    """Records one extra term per batch, and the eager ``.item()`` of every value."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.eager_ = []
        self.recorded_types_ = set()

    def compute_loss(self, x, idx):
        out = self.module_(x)
        loss = out.square().mean()
        part = out.abs().mean()
        self.record_batch_value("part", part)
        self.eager_.append((loss.item(), part.item()))
        # on the CPU a recorded value is a float at once, not a tensor kept to
        # the epoch's end (thousands of those fragment the heap)
        self.recorded_types_.add(type(self.history[-1]["batches"][-1]["part"]))
        return loss


def test_deferred_history_values_are_the_items():
    net = _RecordingNet(nn.Linear(3, 2), max_epochs=3, batch_size=8, lr=0.1, device="cpu")
    net.fit(torch.randn(30, 3, generator=torch.Generator().manual_seed(0)))
    rows = [b for ep in net.history for b in ep["batches"]]
    assert [(b["train_loss"], b["part"]) for b in rows] == net.eager_  # the same floats
    assert all(type(b["train_loss"]) is float and type(b["part"]) is float for b in rows)
    assert net.recorded_types_ == {float}
    for ep in net.history:
        bs = [b["train_batch_size"] for b in ep["batches"]]
        assert bs == [8, 8, 8, 6] and ep["train_batch_count"] == 4
        expected = np.average([b["train_loss"] for b in ep["batches"]], weights=bs)
        assert ep["train_loss"] == pytest.approx(expected, rel=1e-12)
    # CPU: neither mixed precision nor the channels-last format
    assert net.autocast_dtype_ is None and net.memory_format_ is None


# --------------------------------------------------------------------------
# SkoodNet's defaults and step hooks


class _HookNet(SkoodNet):
    """Logs the hooks in the order the step calls them; holds a second, unused optimiser."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.calls_ = []

    spare = nn.Linear(3, 3)  # not the net's module: only spare_optimizer_ could move it

    def initialize_optimizer(self, triggered_directly=None):
        super().initialize_optimizer()
        self.spare_optimizer_ = torch.optim.SGD(self.spare.parameters(), lr=1.0)
        return self

    def before_step(self):
        self.calls_.append("before")

    def compute_loss(self, x, idx):
        self.calls_.append("loss")
        # a gradient on the spare module: stepping its optimiser would move it
        return self.module_(x).square().mean() + self.spare(x).square().mean()

    def after_backward(self):
        self.calls_.append(("backward", self.module_.weight.grad is not None))

    def after_step(self, x, idx, step):
        self.calls_.append(("step", tuple(x.shape), len(idx)))
        step["loss"] = step["loss"] * 0 + 7.0


def test_step_hooks_run_in_order_and_only_optimizer_steps():
    net = _HookNet(nn.Linear(3, 2), max_epochs=1, batch_size=8, lr=0.1, device="cpu")
    net.initialize()  # fit initialises again: skorch then registers spare_optimizer_
    spare = copy.deepcopy(net.spare.state_dict())
    net.fit(torch.randn(16, 3, generator=torch.Generator().manual_seed(0)))
    assert "spare_optimizer" in net._optimizers
    step = ["before", "loss", ("backward", True), ("step", (8, 3), 8)]
    assert net.calls_ == step * 2
    # a second optimiser is its hooks' to step: SkoodNet steps optimizer_ alone
    assert all(torch.equal(v, spare[k]) for k, v in net.spare.state_dict().items())
    # after_step may change the recorded loss
    assert [b["train_loss"] for b in net.history[-1]["batches"]] == [7.0, 7.0]


def test_skoodnet_defaults_and_verbose_callbacks():
    net = SkoodNet(nn.Linear(3, 2), seed=5, device="cpu")
    assert net.train_split is None and net.optimizer is torch.optim.Adam
    assert net.iterator_train is TensorLoader and net.iterator_train__shuffle
    expected = torch.Generator().manual_seed(5).get_state()
    assert torch.equal(net.iterator_train__generator.get_state(), expected)
    names = {v: [n for n, _ in SkoodNet(nn.Linear(3, 2), verbose=v)._default_callbacks]
             for v in (0, 1, 2)}
    assert "print_log" not in names[0] and "progress" not in names[0]
    assert "progress" in names[1] and "print_log" not in names[1]
    assert "print_log" in names[2] and "progress" not in names[2]


def test_decay_1d_false_puts_biases_and_norms_in_a_no_decay_group():
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net = SkoodNet(module, decay_1d=False, optimizer=torch.optim.AdamW,
                   optimizer__weight_decay=0.3, device="cpu").initialize()
    decay, no_decay = net.optimizer_.param_groups
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    assert [p.ndim for p in decay["params"]] == [2, 2]
    assert [p.ndim for p in no_decay["params"]] == [1, 1, 1, 1]
    plain = SkoodNet(module, device="cpu", optimizer__weight_decay=0.3).initialize()
    assert len(plain.optimizer_.param_groups) == 1


# --------------------------------------------------------------------------
# subnormal floats flushed to zero while training (x86 CPUs)

_HALF_TINY = torch.finfo(torch.float32).tiny / 2  # a subnormal float32


def _subnormal_product() -> float:
    return (torch.full((), torch.finfo(torch.float32).tiny) * 0.5).item()


@pytest.fixture
def restore_flush_mode():
    before = is_flushing_denormals()
    if not torch.set_flush_denormal(before):
        pytest.skip("this CPU cannot flush subnormal floats (not x86 with SSE)")
    yield
    torch.set_flush_denormal(before)


@pytest.mark.parametrize("callers_mode", [False, True])
def test_flush_denormals_is_on_inside_and_restores_the_callers_mode(callers_mode,
                                                                   restore_flush_mode):
    torch.set_flush_denormal(callers_mode)
    assert is_flushing_denormals() is callers_mode
    assert _subnormal_product() == (0.0 if callers_mode else _HALF_TINY)
    with flush_denormals() as on:
        assert on and is_flushing_denormals()
        assert _subnormal_product() == 0.0
    assert is_flushing_denormals() is callers_mode
    with flush_denormals(False) as on:
        assert not on and not is_flushing_denormals()
    assert is_flushing_denormals() is callers_mode
    with pytest.raises(RuntimeError, match="boom"), flush_denormals():
        raise RuntimeError("boom")
    assert is_flushing_denormals() is callers_mode


class _ModeNet(SkoodNet):
    """Records, at every step, whether subnormal results are flushed."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.modes_ = []

    def compute_loss(self, x, idx):
        self.modes_.append(is_flushing_denormals())
        return self.module_(x).square().mean()


@pytest.mark.parametrize("callers_mode", [False, True])
@pytest.mark.parametrize("flush", [True, False])
def test_training_flushes_subnormals_and_leaves_the_callers_mode(flush, callers_mode,
                                                                 restore_flush_mode):
    torch.set_flush_denormal(callers_mode)
    net = _ModeNet(nn.Linear(3, 2), flush_denormals=flush, max_epochs=2, batch_size=8, lr=0.1,
                   device="cpu")
    net.fit(torch.randn(20, 3, generator=torch.Generator().manual_seed(0)))
    # 3 steps x 2 epochs, each flushing when asked to, in the caller's mode otherwise
    assert net.modes_ == [flush or callers_mode] * 6
    assert is_flushing_denormals() is callers_mode  # the caller's arithmetic is untouched


# --------------------------------------------------------------------------
# every detector's history after a tiny fit


def _digits(n=160):
    X, y = load_digits_images()
    return X[:n], y[:n]


def _blobs(n=300):
    return np.random.RandomState(0).normal(size=(n, 8))


#: case -> (registry name, overrides, data, labels, history phases, per-batch extra terms)
_DETECTORS = {
    "semsad": ("SemSADDetector", {}, "images", None, ("encoder", "discriminator"), ()),
    "nsa": ("NSADetector", {}, "images", None, ("encoder",), ()),
    "distillneg": ("DistillNegDetector", {}, "tabular", None, ("dino",),
                   ("loss_pos", "loss_neg")),
    "dum": ("DUMDetector", {}, "images", None, ("encoder", "dum"), ()),
    "rotaux": ("RotAuxMSPDetector", {}, "images", "labels", (None,),
               ("loss_class", "loss_rotation")),
    "rotaux-unlabelled": ("RotAuxMSPDetector", {"max_epochs": 1}, "tabular", None, (None,),
                          ("loss_rotation",)),
}


@pytest.mark.parametrize("name", list(_DETECTORS))
def test_detector_histories_hold_per_batch_and_per_epoch_floats(name):
    det_name, overrides, kind, labels, phases, extra = _DETECTORS[name]
    X, y = _digits() if kind == "images" else (_blobs(), None)
    det = tiny(det_name, **overrides)
    det.fit(X, y) if labels else det.fit(X)
    for phase in phases:
        history = det.history_ if phase is None else det.history_[phase]
        for ep in history:
            rows = ep["batches"]
            assert ep["train_batch_count"] == len(rows) > 0
            for b in rows:
                for key in ("train_loss", *extra):
                    assert type(b[key]) is float and math.isfinite(b[key]), (phase, key)
            bs = [b["train_batch_size"] for b in rows]
            expected = np.average([b["train_loss"] for b in rows], weights=bs)
            assert ep["train_loss"] == pytest.approx(expected, rel=1e-12)
            # the recorded terms add up to the recorded loss
            for b in rows:
                if name == "distillneg":
                    total = b["loss_pos"] + det.lam * b["loss_neg"]
                elif name == "rotaux":
                    total = b["loss_class"] + det.lam * b["loss_rotation"]
                elif name == "rotaux-unlabelled":
                    total = b["loss_rotation"]
                else:
                    continue
                assert b["train_loss"] == pytest.approx(total, rel=1e-5)


# --------------------------------------------------------------------------
# building blocks: the same arithmetic as the per-parameter / per-pass code


def _bns(module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_cumulative_batchnorm_equals_momentum_none():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8),
                        nn.BatchNorm1d(8, momentum=0.3))
    ref = copy.deepcopy(net)
    batches = [torch.randn(16, 4) for _ in range(5)]
    # reference: torch's own cumulative average, two forward passes per batch
    for m in _bns(ref):
        m.reset_running_stats()
        m.momentum = None
    ref.train()
    with torch.no_grad():
        for b in batches:
            ref(b)
            ref(2 * b)
    net.train()
    with torch.no_grad(), cumulative_batchnorm(net) as has_bn:
        assert has_bn
        for b in batches:
            net(b)
            net(2 * b)
            net.eval()
            net(b)  # eval-mode passes leave the statistics alone
            net.train()
    for a, r in zip(_bns(net), _bns(ref), strict=True):
        assert torch.equal(a.running_mean, r.running_mean)
        assert torch.equal(a.running_var, r.running_var)
        assert int(a.num_batches_tracked) == int(r.num_batches_tracked) == 10
    assert [m.momentum for m in _bns(net)] == [0.1, 0.3]  # restored
    assert not any(m._forward_pre_hooks for m in _bns(net))
    with cumulative_batchnorm(nn.Linear(2, 2)) as has_bn:
        assert not has_bn


def test_piecewise_lr_scales_by_fractions_of_the_budget():
    cb = piecewise_lr((0.5, 0.75), (0.1, 0.01))
    assert isinstance(cb, PhaseLRScheduler) and "schedule" not in cb.kwargs
    assert cb.policy is torch.optim.lr_scheduler.LambdaLR
    factor = cb.schedule(8)["lr_lambda"]
    assert [factor(e) for e in range(8)] == [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01]
    for epochs, expected in ((4, [1.0, 1.0, 0.1, 0.1]), (2, [1.0, 0.1])):
        net = _LrNet(nn.Linear(2, 1), max_epochs=epochs, batch_size=8, lr=1.0, device="cpu",
                     optimizer=torch.optim.SGD, callbacks=[("steps", piecewise_lr((0.5,), (0.1,)))])
        net.fit(torch.randn(16, 2))
        assert net.lrs_ == pytest.approx(expected)  # the same shape at any budget


class _LrNet(SkoodNet):
    """Records the learning rate each epoch trains with."""

    def compute_loss(self, x, idx):
        return self.module_(x).pow(2).mean()

    def on_epoch_begin(self, net, **kwargs):
        super().on_epoch_begin(net, **kwargs)
        self.lrs_ = [*getattr(self, "lrs_", []), self.optimizer_.param_groups[0]["lr"]]


def _dropout_net(seed: int, p: float) -> _LrNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same initial weights for every seed
        module = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(p), nn.Linear(8, 1))
    return _LrNet(module, seed=seed, max_epochs=2, batch_size=8, lr=0.1, device="cpu")


def test_dropout_masks_come_from_the_phases_seed():
    """The training steps and the precise-BN pass draw dropout masks from the phase's own
    stream: the same seed trains the same weights, and torch's global RNG is untouched."""
    X = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    before = torch.get_rng_state()
    a, b = _dropout_net(0, 0.5).fit(X), _dropout_net(0, 0.5).fit(X)
    assert torch.equal(torch.get_rng_state(), before)
    for (key, wa), wb in zip(a.module_.state_dict().items(), b.module_.state_dict().values(),
                             strict=True):
        assert torch.equal(wa, wb), key
    mode = a.seeded_dropout()
    assert isinstance(mode, FitGenerators) and mode.seed == seed_stream(0, "dropout")
    no_dropout = _dropout_net(0, 0.0).initialize()
    assert isinstance(no_dropout.seeded_dropout(), contextlib.nullcontext)  # no mode to pay for


def _noisy(x, g):
    return x + 0.1 * torch.randn(x.shape, generator=g)


@pytest.mark.parametrize("symmetric", [True, False])
def test_contrastive_net_is_nt_xent_of_two_views(symmetric):
    torch.manual_seed(0)
    net = ContrastiveNet(nn.Linear(3, 4), augment=_noisy, temperature=0.2, symmetric=symmetric,
                         max_epochs=2, batch_size=8, lr=0.01, device="cpu", seed=1)
    net.fit(torch.randn(32, 3))
    assert all(math.isfinite(v) for v in net.history[:, "train_loss"])
    x = torch.randn(8, 3)
    net.generator_ = torch.Generator().manual_seed(5)
    with torch.no_grad():
        got = net.compute_loss(x, torch.arange(8))
        g = torch.Generator().manual_seed(5)
        v1, v2 = _noisy(x, g), _noisy(x, g)  # two views, in this order, from the net's generator
        z1, z2 = net.module_(torch.cat([v1, v2])).chunk(2)
        assert torch.equal(got, nt_xent(z1, z2, 0.2, symmetric))


# --------------------------------------------------------------------------
# CUDA: no host-device synchronisation, float32 losses, channels-last training


@pytest.fixture
def strict_sync(monkeypatch):
    """Make every synchronising CUDA call inside the training loops an error.

    The epoch loops (forward, backward, optimiser and EMA steps, batch
    slicing) and the precise-BN passes run under
    ``torch.cuda.set_sync_debug_mode("error")``; the one transfer per epoch
    that turns the recorded losses into floats is allowed.
    """

    def strict(fn):
        def wrapper(*args, **kwargs):
            prev = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
            try:
                return fn(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(prev)

        return wrapper

    def lenient(fn):
        def wrapper(*args, **kwargs):
            prev = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode(0)
            try:
                return fn(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(prev)

        return wrapper

    monkeypatch.setattr(SkoodNet, "run_single_epoch", strict(SkoodNet.run_single_epoch))
    monkeypatch.setattr(SkoodNet, "resolve_batch_values", lenient(SkoodNet.resolve_batch_values))
    monkeypatch.setattr(SkoodNet, "recalibrate_batchnorm", strict(SkoodNet.recalibrate_batchnorm))
    yield
    torch.cuda.set_sync_debug_mode(0)


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", list(_DETECTORS))
@pytest.mark.parametrize("kind", ["images", "tabular"])
def test_training_loops_do_not_synchronise_on_cuda(name, kind, strict_sync):
    det_name, overrides, _, labels, phases, _ = _DETECTORS[name]
    X, y = _digits() if kind == "images" else (_blobs(), (_blobs()[:, 0] > 0).astype(int))
    det = tiny(det_name, **overrides, device="cuda")
    det.fit(X, y) if labels else det.fit(X)
    assert np.isfinite(det.train_scores_).all()
    # channels-last training leaves the stored modules in the standard format
    for attr in ("encoder_", "discriminator_", "model_", "variance_net_"):
        module = getattr(det, attr, None)
        if isinstance(module, nn.Module):
            assert all(p.is_contiguous() for p in module.parameters()), attr


class _FormatNet(SkoodNet):
    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.seen_ = []

    def compute_loss(self, x, idx):
        out = self.module_(x)
        self.seen_.append((x.is_contiguous(memory_format=torch.channels_last),
                           self.module_[0].weight.is_contiguous(memory_format=torch.channels_last),
                           out.dtype))
        return out.float().square().mean()


@cuda
@pytest.mark.gpu
def test_channels_last_and_autocast_on_cuda():
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten())
    net = _FormatNet(module, max_epochs=1, batch_size=4, lr=0.1, device="cuda")
    net.fit(torch.rand(12, 3, 8, 8, device="cuda"))
    train = net.seen_
    assert len(train) == 3 and all(x_cl and w_cl for x_cl, w_cl, _ in train)
    if torch.cuda.is_bf16_supported():
        assert all(dtype == torch.bfloat16 for _, _, dtype in train)
    assert all(p.is_contiguous() for p in net.module_.parameters())  # restored
    off = _FormatNet(copy.deepcopy(module), channels_last=False, amp=False, max_epochs=1,
                     batch_size=4, lr=0.1, device="cuda")
    off.fit(torch.rand(12, 3, 8, 8, device="cuda"))
    assert not any(x_cl for x_cl, _, _ in off.seen_)
    assert all(dtype == torch.float32 for _, _, dtype in off.seen_)


@cuda
@pytest.mark.gpu
def test_losses_are_float32_under_autocast():
    g = torch.Generator(device="cuda").manual_seed(0)
    z1, z2 = (torch.randn(16, 8, device="cuda", generator=g) for _ in range(2))
    ref = nt_xent(z1, z2, 0.5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = nt_xent(z1.bfloat16().float(), z2.bfloat16().float(), 0.5)
    assert got.dtype == torch.float32
    expected = nt_xent(z1.bfloat16().float(), z2.bfloat16().float(), 0.5)  # no autocast
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)


# --------------------------------------------------------------------------
# the step budget (max_steps)


def test_step_budget_auto_never_caps_up_to_the_auto_rows_and_caps_beyond():
    for batch_size in (2, 7, 32, 64, 100, 128, 256, 2048):
        for epochs in (1, 4, 12, 100):
            for n in (1, 999, batch_size * 3 + 1, AUTO_EPOCH_ROWS):
                full = len(TensorLoader(SimpleNamespace(X=torch.zeros(n, 1)), batch_size))
                assert step_budget(epochs, full, batch_size, "auto") == StepBudget(epochs, None)
    # beyond it: every epoch runs, each over at most AUTO_EPOCH_ROWS rows (whole batches)
    full = len(TensorLoader(SimpleNamespace(X=torch.zeros(433_528, 1)), 64))
    b = step_budget(12, full, 64, "auto")
    assert b == StepBudget(12, math.ceil(AUTO_EPOCH_ROWS / 64))
    assert b.steps(full) == 12 * 157
    # an int cap: epochs honoured below it, max_steps // epochs batches beyond, never above
    assert step_budget(10, 5, 64, 50) == StepBudget(10, None)
    assert step_budget(10, 6, 64, 50) == StepBudget(10, 5)
    assert step_budget(10, 6, 64, 3) == StepBudget(3, 1)  # a cap below the epochs
    assert step_budget(10, 6, 64, None) == StepBudget(10, None)
    for cap in range(1, 80):
        assert step_budget(10, 6, 64, cap).steps(6) <= cap


def test_tensor_loader_max_batches_takes_the_first_batches_of_the_same_permutation():
    X = torch.arange(50.0)[:, None]
    order = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    capped = TensorLoader(SimpleNamespace(X=X), batch_size=8, shuffle=True,
                          generator=torch.Generator().manual_seed(3), max_batches=2)
    batches = [idx for _, idx in capped]
    assert len(capped) == 2 and [len(i) for i in batches] == [8, 8]
    assert torch.equal(torch.cat(batches), order[:16])
    # fresh rows every epoch: the next epoch draws a new permutation
    assert not torch.equal(torch.cat([idx for _, idx in capped]), order[:16])
    uncapped = TensorLoader(SimpleNamespace(X=X), batch_size=8, shuffle=True,
                            generator=torch.Generator().manual_seed(3), max_batches=99)
    assert len(uncapped) == 7 and torch.equal(torch.cat([i for _, i in uncapped]), order)


class _StepNet(_LrNet):
    """Counts the optimiser steps and records the learning rate of each."""

    def after_step(self, x, idx, step):
        self.step_lrs_ = [*getattr(self, "step_lrs_", []), self.optimizer_.param_groups[0]["lr"]]


def _step_net(max_steps, epochs=6, callbacks=(), seed=0):
    with FitGenerators(seed):  # the same initial weights for the same seed
        module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    return _StepNet(module,
                    max_epochs=epochs, batch_size=16, lr=0.01, device="cpu",
                    optimizer=torch.optim.SGD, seed=seed, max_steps=max_steps,
                    callbacks=list(callbacks))


def test_skoodnet_stops_at_max_steps_with_the_whole_schedule():
    X = torch.randn(800, 3, generator=torch.Generator().manual_seed(0))  # 50 batches an epoch
    net = _step_net(30, callbacks=[("steps", piecewise_lr((0.5,), (0.1,)))]).fit(X)
    assert len(net.step_lrs_) == 30 == sum(net.history[:, "train_batch_count"])
    assert len(net.history) == 6 and net.budget_ == StepBudget(6, 5)
    assert net.lrs_ == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 0.001])  # complete
    # a cap below the epochs: fewer epochs, the schedule over those
    net = _step_net(4, callbacks=[("cos", cosine_lr())]).fit(X)
    assert len(net.step_lrs_) == 4 and len(net.history) == 4
    assert net.lrs_ == pytest.approx([0.005 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    # below the cap: the epochs, as with no cap, bit for bit
    small = X[:100]
    a = _step_net(1000).fit(small)
    b = _step_net(None).fit(small)
    assert len(a.step_lrs_) == 6 * 7 and a.budget_ == StepBudget(6, None)
    for pa, pb in zip(a.module_.state_dict().values(), b.module_.state_dict().values(),
                      strict=True):
        assert torch.equal(pa, pb)
    # the same seed: the same capped run
    c, d = _step_net(30).fit(X), _step_net(30).fit(X)
    for pc, pd in zip(c.module_.state_dict().values(), d.module_.state_dict().values(),
                      strict=True):
        assert torch.equal(pc, pd)


def test_dino_schedules_span_the_capped_run():
    from skood._detectors.dino import DINOModel, DINONet, cosine_schedule

    enc = nn.Sequential(nn.Linear(3, 6))
    enc.out_features = 6
    model = DINOModel(enc, n_soft_classes=10, hidden_features=8, bottleneck_features=4)
    X = torch.randn(400, 3, generator=torch.Generator().manual_seed(1))
    net = DINONet(model, views=lambda x, g: ([x, x + 0.1], [x + 0.2]), max_epochs=3,
                  batch_size=20, optimizer=torch.optim.AdamW, device="cpu", seed=0,
                  max_steps=9).fit(X)
    assert net.step_ == 9 == sum(net.history[:, "train_batch_count"])
    for schedule in (net.lr_schedule_, net.momentum_schedule_, net.wd_schedule_,
                     net.teacher_temp_schedule_):
        assert len(schedule) == 9  # the last step takes the schedule's last value
    np.testing.assert_array_equal(net.momentum_schedule_,
                                  cosine_schedule(net.teacher_momentum, 1.0, 9))


#: detector -> the training phases whose steps max_steps caps (tabular fits)
_CAPPED = {
    "SemSADDetector": ("encoder", "discriminator"),
    "NSADetector": ("encoder",),
    "DistillNegDetector": ("dino",),
    "DUMDetector": ("dum",),
    "RotAuxMSPDetector": (None,),
}


@pytest.mark.parametrize("name", list(_CAPPED))
def test_detectors_cap_every_phase_at_max_steps(name):
    X = np.random.RandomState(1).normal(size=(1200, 5))
    det = tiny(name, max_steps=3).fit(X)
    for phase in _CAPPED[name]:
        history = det.history_ if phase is None else det.history_[phase]
        assert sum(history[:, "train_batch_count"]) <= 3, phase
        assert sum(history[:, "train_batch_count"]) >= 2, phase
    again = tiny(name, max_steps=3).fit(X)
    np.testing.assert_array_equal(det.train_scores_, again.train_scores_)
    # on few rows "auto" caps nothing: the fit is the epochs-only one
    small = X[:200]
    np.testing.assert_array_equal(tiny(name).fit(small).train_scores_,
                                  tiny(name, max_steps=None).fit(small).train_scores_)
    cls = type(det)
    assert cls().max_steps == "auto"
    for preset in cls._presets:
        assert cls.from_preset(preset).max_steps is None  # the papers' budgets
