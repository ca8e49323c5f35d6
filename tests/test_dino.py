"""skood._detectors.dino: DINO's views, networks, loss, schedules and training step."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skood._detectors.dino import (
    DINOHead,
    DINOModel,
    DINONet,
    EncoderWithHead,
    MultiCrop,
    SmallViT,
    clip_grad_per_param_,
    cosine_schedule,
    dino_center_update,
    dino_loss,
    ema_update_,
    random_solarize,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tiny_model(d_in: int = 3) -> DINOModel:
    enc = torch.nn.Sequential(torch.nn.Linear(d_in, 6))
    enc.out_features = 6
    return DINOModel(enc, n_soft_classes=10, hidden_features=8, bottleneck_features=4)


# ------------------------------------------------------------------ views
def test_multicrop_and_solarize():
    x = torch.rand(4, 3, 28, 28)
    mc = MultiCrop(n_global=2, n_local=3, local_scale=(0.15, 0.4))
    g, loc = mc(x, _gen())
    assert len(g) == 2 and len(loc) == 3
    assert all(v.shape == (4, 3, 28, 28) for v in g) and all(v.shape == (4, 3, 14, 14) for v in loc)
    assert all(((v >= 0) & (v <= 1)).all() for v in g + loc)
    assert mc.local_shape(6, 6) == (4, 4) and mc.local_shape(3, 40) == (3, 20)
    g2, _ = mc(x, _gen())
    assert torch.equal(g[0], g2[0])  # reproducible from the generator
    s = random_solarize(x, _gen(), p=1.0)
    torch.testing.assert_close(s, torch.where(x >= 0.5, 1 - x, x))
    assert torch.equal(random_solarize(x, _gen(), p=0.0), x)


# ------------------------------------------------------------------ networks
def test_dino_head_model_and_ema():
    head = DINOHead(16, out_features=32, hidden_features=8, bottleneck_features=4)
    out = head(torch.randn(5, 16))
    assert out.shape == (5, 32) and (out.abs() <= 1 + 1e-5).all()  # cosines
    assert "weight_g" not in dict(head.named_parameters())  # fixed gains (norm_last_layer)
    model = _tiny_model()
    assert isinstance(model.student, EncoderWithHead)
    assert model.features(torch.randn(2, 3)).shape == (2, 6)  # the teacher's encoder
    assert model(torch.randn(2, 3)).shape == (2, 10)
    pickle.loads(pickle.dumps(model))
    for ps, pt in zip(model.student.parameters(), model.teacher.parameters(), strict=True):
        assert torch.equal(ps, pt) and not pt.requires_grad
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.teacher.parameters()]
    ema_update_(model.teacher, model.student, 0.9)
    for b, ps, pt in zip(before, model.student.parameters(), model.teacher.parameters(),
                         strict=True):
        torch.testing.assert_close(pt, 0.9 * b + 0.1 * ps)
    with pytest.raises(ValueError, match="parameters"):
        ema_update_(model.teacher, torch.nn.Linear(1, 1), 0.9)


def test_small_vit_any_input_size():
    vit = SmallViT(1, (28, 28))
    assert vit.patch_size == 4 and vit.grid == 7
    assert vit(torch.rand(2, 1, 28, 28)).shape == (2, 192)
    assert vit(torch.rand(2, 1, 14, 14)).shape == (2, 192)  # interpolated positions
    with pytest.raises(ValueError, match="smaller than one"):
        vit(torch.rand(2, 1, 3, 3))


# ------------------------------------------------------------------ objective
def test_dino_loss_matches_its_definition():
    torch.manual_seed(0)
    s = [torch.randn(3, 5) for _ in range(4)]
    t = [torch.randn(3, 5) for _ in range(2)]
    c = torch.randn(1, 5)
    terms = []
    for i in range(2):
        q = F.softmax((t[i] - c) / 0.04, dim=-1)
        for j in range(4):
            if i != j:
                terms.append(-(q * F.log_softmax(s[j] / 0.1, dim=-1)).sum(-1).mean())
    torch.testing.assert_close(dino_loss(s, t, c, 0.1, 0.04), torch.stack(terms).mean())
    # no gradient reaches the teacher
    tt = [v.clone().requires_grad_(True) for v in t]
    ss = [v.clone().requires_grad_(True) for v in s]
    dino_loss(ss, tt, c).backward()
    assert tt[0].grad is None and ss[0].grad is not None
    with pytest.raises(ValueError, match="other than"):
        dino_loss(s[:1], t[:1], c)


def test_dino_center_update_by_hand():
    """0.9 * 0 + 0.1 * mean(1, 1, 3, 3) = 0.2 per soft class."""
    c = dino_center_update(torch.zeros(1, 3), [torch.ones(2, 3), 3 * torch.ones(2, 3)], 0.9)
    torch.testing.assert_close(c, torch.full((1, 3), 0.2))


def test_cosine_schedule():
    s = cosine_schedule(1.0, 0.0, 10, warmup_steps=2)
    assert len(s) == 10 and s[0] == 0.0 and s[2] == pytest.approx(1.0)
    assert np.all(np.diff(s[2:]) <= 0) and s[-1] < 0.05
    np.testing.assert_allclose(cosine_schedule(0.99, 1.0, 3), [0.99, 0.9925, 0.9975])
    assert len(cosine_schedule(1.0, 0.0, 1, warmup_steps=5)) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_dino_loss_is_float32_under_autocast():
    g = torch.Generator(device="cuda").manual_seed(0)
    z1, z2 = (torch.randn(16, 8, device="cuda", generator=g) for _ in range(2))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = dino_loss([z1.bfloat16(), z2.bfloat16()], [z1.bfloat16()],
                        torch.zeros(1, 8, device="cuda"), 0.1, 0.04)
    assert low.dtype == torch.float32


# ------------------------------------------------------------------ training step
def test_clip_grad_per_param_equals_per_tensor_clipping():
    g = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.zeros(s)) for s in [(3,), (16, 3, 3, 3), (64, 32), (5,)]]
    for p, scale in zip(params[:3], (0.1, 5.0, 40.0), strict=True):
        p.grad = torch.randn(p.shape, generator=g) * scale
    expected = []
    for p in params:  # DINO's clip_gradients, one tensor at a time (the former loop)
        if p.grad is None:
            expected.append(None)
            continue
        coef = 3.0 / (p.grad.norm(2) + 1e-6)
        expected.append(p.grad * coef.clamp(max=1.0))
    clip_grad_per_param_(params, 3.0)
    for p, e in zip(params, expected, strict=True):
        assert (p.grad is None and e is None) or torch.equal(p.grad, e)
    assert params[2].grad.norm() <= 3.0 + 1e-4
    clip_grad_per_param_([nn.Parameter(torch.zeros(2))], 1.0)  # no gradients: nothing to do


def test_ema_update_equals_per_parameter_update():
    torch.manual_seed(0)
    target, source = nn.Linear(5, 4), nn.Linear(5, 4)
    expected = [pt.detach().clone().mul_(0.97).add_(ps.detach(), alpha=1.0 - 0.97)
                for pt, ps in zip(target.parameters(), source.parameters(), strict=True)]
    ema_update_(target, source, 0.97)
    assert all(torch.equal(p, e) for p, e in zip(target.parameters(), expected, strict=True))
    with pytest.raises(ValueError, match="parameters"):
        ema_update_(target, nn.Linear(5, 4, bias=False), 0.9)


def _noisy_views(x: torch.Tensor, g: torch.Generator) -> tuple[list, list]:
    noise = lambda s: x + s * torch.randn(x.shape, generator=g)  # noqa: E731
    return [noise(0.1), noise(0.1)], [noise(0.3)]


class _WithExtra(DINONet):
    def extra_loss(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(2.5)


def test_dino_net_trains_the_student_and_follows_with_the_teacher():
    X = torch.randn(40, 3, generator=_gen(1))
    net = DINONet(_tiny_model(), views=_noisy_views, teacher_momentum=0.9, max_epochs=2,
                  batch_size=20, lr=0.01, optimizer=torch.optim.AdamW, device="cpu", seed=0)
    teacher0 = [p.clone() for p in net.initialize().module_.teacher.parameters()]
    net.fit(X)
    m = net.module_
    assert net.step_ == 4 and len(net.lr_schedule_) == 4
    # the optimiser holds the student's parameters only; the teacher moved by EMA
    opt = {id(p) for grp in net.optimizer_.param_groups for p in grp["params"]}
    assert opt == {id(p) for p in m.student.parameters() if p.requires_grad}
    assert not any(torch.equal(a, b) for a, b in zip(teacher0, m.teacher.parameters(),
                                                     strict=True))
    assert not torch.equal(m.center, torch.zeros_like(m.center))
    batch = net.history[-1, "batches", -1]
    assert batch["train_loss"] == pytest.approx(batch["loss_pos"], rel=1e-6)
    # extra_loss: added to the positive term
    extra = _WithExtra(_tiny_model(), views=_noisy_views, max_epochs=1, batch_size=20,
                       optimizer=torch.optim.AdamW, device="cpu", seed=0).fit(X)
    batch = extra.history[-1, "batches", -1]
    assert batch["train_loss"] == pytest.approx(batch["loss_pos"] + 2.5, rel=1e-6)
