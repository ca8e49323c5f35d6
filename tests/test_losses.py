"""skood._nn.losses: the generic training objectives, on tiny cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from skood._nn.losses import cross_entropy, float32_loss, nt_xent, simsiam_loss

E = torch.eye(2)


def test_nt_xent_one_directional_by_hand():
    """Views [1, 0], [0, 1] twice, tau = 0.5: logits [[2, 0], [0, 2]], so each row's
    cross-entropy is -log(e^2 / (e^2 + 1)) = log(1 + e^-2)."""
    loss = nt_xent(E, E, temperature=0.5, symmetric=False)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)


def test_nt_xent_symmetric_by_hand():
    """The 4 x 4 version: anchor [1, 0] sees its positive (2) and two orthogonal views (0, 0),
    itself excluded: -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2), the same for every anchor."""
    loss = nt_xent(E, E, temperature=0.5, symmetric=True)
    assert loss.item() == pytest.approx(math.log1p(2 * math.exp(-2.0)), rel=1e-6)


def test_nt_xent_normalises_its_inputs_and_rewards_aligned_views():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    for sym in (False, True):
        a = nt_xent(z1, z2, symmetric=sym)
        torch.testing.assert_close(nt_xent(3.0 * z1, 0.1 * z2, symmetric=sym), a)
        assert nt_xent(z1, z1, symmetric=sym) < a  # identical views: a lower loss
    # a lower temperature sharpens: aligned, well-separated views get a loss near 0
    assert nt_xent(E, E, temperature=0.01, symmetric=False).item() < 1e-6


def test_simsiam_loss_is_minus_the_mean_cosine_with_stop_gradient():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    assert simsiam_loss(p, p, p.detach() * 5, p.detach()).item() == pytest.approx(-1.0)
    # D(p1, z2) = -cos([1, 0], [1, 1]) = -1/sqrt(2) on row 0, -cos([0, 2], [0, -1]) = 1 on row 1
    z = torch.tensor([[1.0, 1.0], [0.0, -1.0]], requires_grad=True)
    loss = simsiam_loss(p, p, z, z)
    # both halves are that batch mean, (1 - 1/sqrt(2)) / 2
    assert loss.item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2, rel=1e-6)
    loss.backward()
    assert z.grad is None and p.grad is not None  # no gradient flows through z


def test_cross_entropy_is_float32_of_any_input_dtype():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([0, 2])
    out = cross_entropy(logits.bfloat16(), target)
    assert out.dtype == torch.float32
    torch.testing.assert_close(cross_entropy(logits, target), F.cross_entropy(logits, target))
    # by hand: row 1 is uniform, log 3; row 0 is -log(e^2 / (e^2 + 1 + e^-1))
    row0 = -2.0 + math.log(math.exp(2) + 1 + math.exp(-1))
    assert cross_entropy(logits, target).item() == pytest.approx((row0 + math.log(3)) / 2)


def test_float32_loss_keeps_the_function_and_its_result_off_autocast():
    @float32_loss
    def twice(x: torch.Tensor) -> torch.Tensor:
        """Doc."""
        return 2 * x.float()

    assert twice.__name__ == "twice" and twice.__doc__ == "Doc."
    x = torch.ones(3, dtype=torch.bfloat16)
    assert twice(x).dtype == torch.float32 and twice(x).tolist() == [2.0, 2.0, 2.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA autocast")
def test_float32_loss_disables_cuda_autocast():
    a = torch.randn(4, 4, device="cuda")

    @float32_loss
    def product(x: torch.Tensor) -> torch.Tensor:
        return x @ x

    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        assert product(a).dtype == torch.float32
