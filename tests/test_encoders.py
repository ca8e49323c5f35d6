"""skood._nn.encoders: output shapes, ``out_features``, normalisation, the builders."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skood._nn.encoders import (
    BACKBONES,
    MIN_IMAGE_SIDE,
    MLP,
    PRETRAINED_BACKBONES,
    ProjectionHead,
    SmallCNN,
    SmallResNet,
    block_modules,
    build_encoder,
    capture_outputs,
    check_image_size,
    make_activation,
    make_norm_1d,
    make_norm_2d,
)
from skood.pretrained import PretrainedEncoder


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- layers by name


def test_make_activation_returns_a_fresh_module_by_name():
    assert isinstance(make_activation("relu"), nn.ReLU)
    assert isinstance(make_activation("elu"), nn.ELU)
    assert isinstance(make_activation("gelu"), nn.GELU)
    assert make_activation("relu") is not make_activation("relu")
    with pytest.raises(ValueError, match="activation must be one of"):
        make_activation("tanh")


def test_make_norm_layers_by_name():
    assert isinstance(make_norm_1d("batch", 5), nn.BatchNorm1d)
    assert isinstance(make_norm_1d("layer", 5), nn.LayerNorm)
    assert isinstance(make_norm_1d("none", 5), nn.Identity)
    assert isinstance(make_norm_2d("batch", 8), nn.BatchNorm2d)
    assert make_norm_2d("group", 8).num_groups == 2  # n // 4
    assert make_norm_2d("group", 256).num_groups == 32  # at most 32
    assert make_norm_2d("group", 2).num_groups == 1  # at least 1
    assert isinstance(make_norm_2d("none", 8), nn.Identity)
    with pytest.raises(ValueError, match="norm must be"):
        make_norm_1d("group", 5)
    with pytest.raises(ValueError, match="norm must be"):
        make_norm_2d("layer", 5)


# ---------------------------------------------------------------- encoders


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_mlp_shapes_and_flattening(norm):
    mlp = MLP(6, hidden=(16, 7), activation="gelu", norm=norm).eval()
    assert mlp.out_features == 7
    x = _x(5, 2, 3)
    out = mlp(x)
    assert out.shape == (5, 7)
    torch.testing.assert_close(out, mlp(x.reshape(5, 6)))  # (N, 2, 3) is flattened to (N, 6)
    linears = [m for m in mlp.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 16), (16, 7)]


@pytest.mark.parametrize("side", [4, 8, 13])
def test_small_cnn_gives_four_times_width_features(side):
    cnn = SmallCNN(3, width=4).eval()
    assert cnn.out_features == 16
    assert cnn(_x(2, 3, side, side)).shape == (2, 16)
    assert sum(isinstance(m, nn.Conv2d) for m in cnn.modules()) == 6


def test_small_resnet_stem_and_activation():
    net = SmallResNet(1, depth=18, activation="elu", norm="group").eval()
    assert net.out_features == 512
    assert net(_x(2, 1, 8, 8)).shape == (2, 512)
    assert net.net.conv1.stride == (1, 1) and isinstance(net.net.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    assert any(isinstance(m, nn.ELU) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with pytest.raises(ValueError, match="depth must be 18 or 34"):
        SmallResNet(1, depth=50)


def test_projection_head_unit_norm_output():
    head = ProjectionHead(12, 5, hidden=9).eval()
    z = head(_x(4, 12) * 100)
    assert z.shape == (4, 5) and head.out_features == 5
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    raw = ProjectionHead(12, 5, normalize=False, norm="none").eval()(_x(4, 12) * 100)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(4))
    hidden = ProjectionHead(12, 5).net[0]
    assert (hidden.in_features, hidden.out_features) == (12, 12)  # hidden defaults to in


# ---------------------------------------------------------------- build_encoder


def test_build_encoder_auto_picks_by_input_shape():
    mlp = build_encoder("auto", (7,), width=10)
    assert isinstance(mlp, MLP) and mlp.out_features == 10
    cnn = build_encoder("auto", (1, 8, 8), width=4)
    assert isinstance(cnn, SmallCNN) and cnn.out_features == 16
    assert isinstance(build_encoder("mlp", (1, 4, 4)), MLP)  # images may be flattened
    assert build_encoder("mlp", (1, 4, 4)).net[0].in_features == 16
    assert isinstance(build_encoder("resnet34", (3, 8, 8)), SmallResNet)
    assert build_encoder("cnn", (2, 8, 8), activation="elu", norm="none").out_features == 128


def test_build_encoder_rejects_what_it_cannot_build():
    with pytest.raises(ValueError, match="needs images"):
        build_encoder("cnn", (7,))
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_encoder("vgg", (3, 8, 8))
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        build_encoder(PRETRAINED_BACKBONES[0], (2, 8, 8))


def test_build_encoder_wraps_a_copy_of_a_users_module():
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    enc = build_encoder(body, (1, 8, 8))
    assert isinstance(enc, PretrainedEncoder) and enc.out_features == 4
    assert enc(_x(2, 1, 8, 8)).shape == (2, 4)
    assert all(p is not q for p, q in zip(enc.parameters(), body.parameters(), strict=False))
    assert all(p.requires_grad for p in body.parameters())  # the user's module is unchanged


def test_backbone_tables_agree():
    assert BACKBONES[0] == "auto"
    assert set(BACKBONES[1:]) | set(PRETRAINED_BACKBONES) <= set(MIN_IMAGE_SIDE)
    assert MIN_IMAGE_SIDE["cnn"] == 4  # two 2 x 2 max-pools


def test_check_image_size_names_the_minimum_and_what_fits():
    check_image_size("cnn", (1, 4, 4), "X")  # fits
    check_image_size("auto", (3, 4, 9), "X")
    with pytest.raises(ValueError, match=r"X with backbone='auto' \(the small CNN\) needs images "
                                         r"of at least 4 x 4 pixels.*got 3 x 8.*'resnet18'"):
        check_image_size("auto", (1, 3, 8), "X")
    with pytest.raises(ValueError, match="at least 6 x 6"):
        check_image_size("resnet18", (1, 5, 5), "Y", min_side=6)
    check_image_size(nn.Identity(), (1, 1, 1), "Z")  # a user's module: no minimum of its own


# ---------------------------------------------------------------- intermediate features


def test_block_modules_and_capture_outputs_on_the_small_cnn():
    cnn = SmallCNN(1, width=2).eval()
    blocks = block_modules(cnn)
    assert [n for n, _ in blocks] == ["stage1", "stage2", "stage3"]
    x = _x(3, 1, 8, 8)
    with capture_outputs([m for _, m in blocks], pool=1) as outs:
        out = cnn(x)
    assert [o.shape for o in outs] == [(3, 2), (3, 4), (3, 8)]
    torch.testing.assert_close(outs[-1], out)  # the last stage, average-pooled, is the output
    assert all(len(m._forward_hooks) == 0 for _, m in blocks)  # hooks removed on exit
    with capture_outputs([blocks[0][1]], pool=2) as outs:
        cnn(x)
    assert outs[0].shape == (3, 2 * 2 * 2)  # 2 channels pooled to 2 x 2, flattened


def test_block_modules_of_the_other_encoders():
    mlp = MLP(4, hidden=(6, 5)).eval()
    blocks = block_modules(mlp)
    assert [n for n, _ in blocks] == ["hidden1", "hidden2"]
    x = _x(3, 4)
    with capture_outputs([m for _, m in blocks]) as outs:
        out = mlp(x)
    assert [o.shape for o in outs] == [(3, 6), (3, 5)]
    torch.testing.assert_close(outs[-1], out)
    names = [n for n, _ in block_modules(SmallResNet(1).eval())]
    assert names == ["layer1", "layer2", "layer3", "layer4"]
    head = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert [(n, type(m)) for n, m in block_modules(head)] == [("layer1", nn.ReLU),
                                                              ("layer2", nn.Linear)]
    other = nn.Linear(2, 2)
    assert block_modules(other) == [("output", other)]
