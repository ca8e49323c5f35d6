"""skood._nn.heads: encoder + head models, their shapes and normalisations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skood._nn.encoders import MLP
from skood._nn.heads import ContrastiveModel, SimCLRModel, SimSiamModel


def _x(n: int = 6, d: int = 5) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0)) * 10


def _encoder() -> MLP:
    torch.manual_seed(0)
    return MLP(5, hidden=(8,))


def test_contrastive_model_features_and_unit_projection():
    m = ContrastiveModel(_encoder(), projection_dim=3).eval()
    x = _x()
    torch.testing.assert_close(m.features(x), m.encoder(x))
    z = m(x)
    assert z.shape == (6, 3)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(z, m.head(m.encoder(x)))


@pytest.mark.parametrize("normalize_projection", [True, False])
def test_simsiam_model_shapes_and_normalisations(normalize_projection):
    m = SimSiamModel(_encoder(), projection_dim=4, predictor_dim=2,
                     normalize_projection=normalize_projection).eval()
    assert m.out_features == 4
    x = _x()
    z, p = m(x)
    assert z.shape == (6, 4) and p.shape == (6, 4)
    torch.testing.assert_close(z, m.project(x))
    torch.testing.assert_close(p, m.predictor(z))
    norms = z.norm(dim=1)
    assert torch.allclose(norms, torch.ones(6)) == normalize_projection
    # the projector ends in a BatchNorm without affine parameters; the predictor in a Linear
    assert isinstance(m.projector[-1], nn.BatchNorm1d) and not m.projector[-1].affine
    assert isinstance(m.predictor[-1], nn.Linear)
    widths = [(l.in_features, l.out_features) for l in m.predictor if isinstance(l, nn.Linear)]
    assert widths == [(4, 2), (2, 4)]


def test_normalize_features_makes_the_projection_scale_invariant():
    """With normalize_features, g sees f(x) / |f(x)|: scaling f's output changes nothing."""
    enc = _encoder()
    for cls in (SimCLRModel, SimSiamModel):
        on = cls(enc, projection_dim=4).eval()
        x = _x()
        scaled = cls(enc, projection_dim=4).eval()
        scaled.load_state_dict(on.state_dict())
        scaled.encoder = nn.Sequential(enc, nn.Identity())
        with torch.no_grad():
            a = on.project(x)
            scaled.encoder[1].register_forward_hook(lambda _m, _i, o: o * 7.0)
            torch.testing.assert_close(scaled.project(x), a)
        off = cls(enc, projection_dim=4, normalize_features=False,
                  **({"normalize_projection": False} if cls is SimSiamModel else {})).eval()
        off.load_state_dict(on.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(off.project(x), off.projector(enc(x)))
            g = on.projector(F.normalize(enc(x), dim=1))
            torch.testing.assert_close(a, F.normalize(g, dim=1) if cls is SimSiamModel else g)


def test_simclr_model_forward_is_the_projection():
    m = SimCLRModel(_encoder(), projection_dim=3).eval()
    assert m.out_features == 3
    x = _x()
    out = m(x)
    assert out.shape == (6, 3)
    torch.testing.assert_close(out, m.projector(F.normalize(m.encoder(x), dim=1)))
    lin = [l for l in m.projector if isinstance(l, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lin] == [(8, 8), (8, 3)]
