"""Batched augmentations: shapes, ranges, per-sample randomness, seeding."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from skood._augment import (
    FLIP_TRANSPOSE_OPS,
    RandomAffineMaps,
    SimCLRAugment,
    TabularCorruption,
    color_jitter,
    feature_permutation,
    flip_transpose,
    gaussian_blur,
    patch_permutation,
    pixel_permutation,
    random_grayscale,
    random_hflip,
    random_resized_crop,
    random_rotate90,
    rotate90,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=[(8, 3, 32, 32), (8, 1, 28, 28)], ids=["rgb", "gray"])
def images(request):
    return torch.rand(request.param, generator=gen(123))


OPS = [
    lambda x, g: random_resized_crop(x, g),
    lambda x, g: random_hflip(x, g),
    lambda x, g: color_jitter(x, g),
    lambda x, g: random_grayscale(x, g, p=0.5),
    lambda x, g: gaussian_blur(x, g, p=1.0),
    SimCLRAugment(),
]


@pytest.mark.parametrize("op", OPS)
def test_shape_range_seeding_and_no_side_effects(op, images):
    before = images.clone()
    rng_state = torch.get_rng_state()
    a = op(images, gen(0))
    assert a.shape == images.shape and a.dtype == torch.float32
    assert a.min() >= -1e-6 and a.max() <= 1 + 1e-6
    assert torch.equal(images, before)  # input untouched
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    assert torch.equal(a, op(images, gen(0)))  # same seed, same output


@pytest.mark.parametrize("op", [SimCLRAugment()])
def test_randomness_is_per_sample(op, images):
    same = images[:1].expand(8, -1, -1, -1).contiguous()
    out = op(same, gen(1))
    assert not torch.allclose(out[0], out[1])
    assert not torch.equal(op(images, gen(1)), op(images, gen(2)))


def test_identity_cases(images):
    full = random_resized_crop(images, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(full, images, atol=1e-5, rtol=0)
    assert torch.equal(random_hflip(images, gen(), p=0.0), images)
    assert torch.equal(random_hflip(images, gen(), p=1.0), images.flip(-1))
    assert torch.equal(color_jitter(images, gen(), p=0.0), images)
    const = torch.full((4, 3, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(const, gen(), p=1.0), const)


def test_grayscale_makes_channels_equal():
    x = torch.rand(4, 3, 8, 8, generator=gen())
    g = random_grayscale(x, gen(), p=1.0)
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])


def test_tabular_corruption_draws_from_bank_marginals():
    x = torch.zeros(200, 5)
    bank = torch.arange(1, 31, dtype=torch.float32).view(6, 5)  # column j holds j+1, j+6, ...
    out = TabularCorruption(frac=0.5, noise=0.0)(x, gen(), bank=bank)
    replaced = out != 0
    assert 0.4 < replaced.float().mean() < 0.6
    for j in range(5):
        assert set(out[replaced[:, j], j].tolist()) <= set(bank[:, j].tolist())
    noisy = TabularCorruption(frac=0.0, noise=0.1)(x, gen())
    assert 0.05 < noisy.std() < 0.15


@pytest.mark.parametrize("op", [SimCLRAugment(), TabularCorruption()])
def test_transforms_pickle(op):
    again = pickle.loads(pickle.dumps(op))
    assert repr(again) == repr(op)


def test_per_sample_discrete_transforms_match_the_single_ops():
    x = torch.rand(12, 3, 5, 5, generator=gen())
    x0 = x.clone()
    k = torch.arange(12) % 4
    rot, ft = rotate90(x, k), flip_transpose(x, k)
    for i in range(12):
        assert torch.equal(rot[i], torch.rot90(x[i], int(k[i]), dims=(-2, -1)))
        assert torch.equal(ft[i : i + 1], FLIP_TRANSPOSE_OPS[int(k[i])](x[i : i + 1]))
    assert rot.is_contiguous() and ft.is_contiguous() and torch.equal(x, x0)
    # one transformation for the whole batch, and an empty batch
    assert torch.equal(rotate90(x, torch.full((12,), 2)), torch.rot90(x, 2, dims=(-2, -1)))
    assert rotate90(x[:0], k[:0]).shape == (0, 3, 5, 5)
    # random rotations: drawn from the given set, reproducibly
    r = random_rotate90(x, gen(), rotations=(1, 3))
    assert torch.equal(r, random_rotate90(x, gen(), rotations=(1, 3)))
    for i in range(12):
        assert any(torch.equal(r[i], torch.rot90(x[i], j, dims=(-2, -1))) for j in (1, 3))


def test_gaussian_blur_kernels_are_per_sample_and_shared_by_channels():
    x = torch.rand(4, 3, 16, 16, generator=gen())
    out = gaussian_blur(x, gen(), p=1.0)
    # each channel blurred alone with the same draw equals the channel of the batch
    for c in range(3):
        alone = gaussian_blur(x[:, c : c + 1].contiguous(), gen(), p=1.0)
        torch.testing.assert_close(out[:, c : c + 1], alone, rtol=0, atol=1e-6)


def test_random_affine_maps_are_x_w_plus_b_per_row():
    maps = RandomAffineMaps(5, 7, seed=3)
    x = torch.randn(11, 7, generator=gen(1))
    k = torch.randint(0, 5, (11,), generator=gen(2))
    expected = torch.stack([x[i] @ maps.weight[k[i]] + maps.bias[k[i]] for i in range(11)])
    torch.testing.assert_close(maps(x, k), expected)
    for m in range(5):  # one map for the whole batch: the same as per-row m
        torch.testing.assert_close(maps(x, m), maps(x, torch.full((11,), m)))
    torch.testing.assert_close(maps(x, 0), x)  # map 0 is the identity
    with pytest.raises(ValueError, match=r"k must be in \[0, 5\)"):
        maps(x, 5)
    with pytest.raises(ValueError, match="shape"):
        maps(x, torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------- permutations
def test_patch_and_pixel_permutations_move_but_keep_content():
    x = torch.rand(5, 3, 8, 8)

    def cells(t: torch.Tensor, n: int) -> torch.Tensor:  # (N, n cells, C * cell pixels)
        p = 8 // math.isqrt(n)
        c = t.unfold(2, p, p).unfold(3, p, p).reshape(len(t), t.shape[1], n, -1)
        return c.permute(0, 2, 1, 3).reshape(len(t), n, -1)

    for n in (4, 16):
        y = patch_permutation(x, gen(), n)
        cx, cy = cells(x, n), cells(y, n)
        for i in range(5):  # the same cells, in another order
            assert sorted(map(tuple, cx[i].tolist())) == sorted(map(tuple, cy[i].tolist()))
        assert not torch.equal(x, y)
        assert torch.equal(y, patch_permutation(x, gen(), n))  # seeded
    y = pixel_permutation(x, gen())
    assert torch.equal(x.flatten(2).sort(dim=2).values, y.flatten(2).sort(dim=2).values)
    # all channels move together: the (r, g, b) triples are kept
    trip = lambda t, i: sorted(map(tuple, t[i].flatten(1).T.tolist()))  # noqa: E731
    assert trip(x, 0) == trip(y, 0)
    # odd sides: the remainder rows/columns stay where they are
    z = torch.rand(2, 1, 9, 9)
    zz = patch_permutation(z, gen(), 4)
    assert torch.equal(z[..., 8, :], zz[..., 8, :]) and torch.equal(z[..., :, 8], zz[..., :, 8])
    with pytest.raises(ValueError, match="square number"):
        patch_permutation(x, gen(), 8)
    with pytest.raises(ValueError, match="cannot be cut"):
        patch_permutation(torch.rand(2, 1, 3, 3), gen(), 16)


def test_patch_permutation_by_hand():
    """A 2 x 2 image cut into 4 one-pixel cells: each output is a permutation of its 4 pixels,
    and the two samples of a batch get their own permutations."""
    x = torch.arange(8.0).reshape(2, 1, 2, 2)
    y = patch_permutation(x, gen(3), 4)
    for i in range(2):
        assert sorted(y[i].flatten().tolist()) == x[i].flatten().tolist()


def test_feature_permutation_and_random_rotations():
    x = torch.randn(20, 6)
    x0 = x.clone()
    y = feature_permutation(x, gen())
    assert torch.equal(x.sort(dim=1).values, y.sort(dim=1).values) and not torch.equal(x, y)
    assert torch.equal(x, x0)  # the input is untouched
    imgs = torch.rand(30, 1, 5, 5)
    rot = random_rotate90(imgs, gen())
    for i in range(30):
        matches = [k for k in range(4) if torch.equal(rot[i], torch.rot90(imgs[i], k, (-2, -1)))]
        assert matches and 0 not in matches  # rotated by 90, 180 or 270 degrees, never 0


# ---------------------------------------------------------------- named by the layout rule


def test_pad_crop_is_a_window_of_the_zero_padded_image():
    from skood._augment import pad_crop

    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3).repeat(6, 2, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = pad_crop(x, g, padding=1)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    windows = [padded[0, :, i:i + 3, j:j + 3] for i in range(3) for j in range(3)]
    for o in out:  # each sample: one of the 9 windows, the same for every channel
        assert any(torch.equal(o, w) for w in windows)
    assert torch.equal(pad_crop(x, g, padding=0), x)


def test_flip_and_distort_without_colour_steps_only_flips():
    from skood._augment import flip_and_distort

    x = torch.rand(16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = flip_and_distort(x, torch.Generator().manual_seed(1), jitter_p=0.0, gray_p=0.0)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)  # p = 0.5 each on 16 samples
    again = flip_and_distort(x, torch.Generator().manual_seed(1))
    assert torch.equal(again, flip_and_distort(x, torch.Generator().manual_seed(1)))
    assert ((again >= 0) & (again <= 1)).all()


def test_bound_corruption_resamples_from_its_bank():
    from skood._augment import BoundCorruption, TabularCorruption

    bank = torch.full((5, 3), 7.0)
    t = BoundCorruption(TabularCorruption(frac=1.0, noise=0.0), bank)
    out = t(torch.zeros(4, 3), torch.Generator().manual_seed(0))
    assert torch.equal(out, torch.full((4, 3), 7.0))  # every feature from the bank
    c = TabularCorruption(frac=0.5, noise=0.1)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(BoundCorruption(c, bank)(x, torch.Generator().manual_seed(3)),
                       c(x, torch.Generator().manual_seed(3), bank=bank))
    assert "bank of 5 rows" in repr(t)
