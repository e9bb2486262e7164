"""Transforms: each one's semantics against plain NumPy, determinism with a seed, batch == per-sample."""

import numpy as np
import pytest

import shendu
from shendu.data import transforms as T
from shendu.errors import ArgumentError, ShapeError


def _batch(n=6, c=2, h=7, w=9, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


def _gen(seed=0):
    return shendu.Generator(seed)


@pytest.mark.parametrize("cls,axis", [(T.RandomHorizontalFlip, 3), (T.RandomVerticalFlip, 2)])
def test_flips_equal_numpy_flip_per_sample(cls, axis):
    x = _batch(40)
    out = cls(p=0.5, generator=_gen(1)).batch(x)
    flipped = [np.array_equal(o, np.flip(s, axis - 1)) for o, s in zip(out, x)]
    kept = [np.array_equal(o, s) for o, s in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 35
    np.testing.assert_array_equal(cls(p=1.0).batch(x), np.flip(x, axis))
    np.testing.assert_array_equal(cls(p=0.0).batch(x), x)
    assert out.dtype == np.float32


def test_same_seed_same_augmentation_and_single_sample_path():
    x = _batch()
    t = lambda: T.Compose([T.RandomHorizontalFlip(generator=_gen(3)), T.RandomCrop(7, 2, generator=_gen(4)),  # noqa
                           T.RandomAffine(10, (0.1, 0.1), (0.9, 1.1), generator=_gen(5))])
    np.testing.assert_array_equal(t().batch(x), t().batch(x))
    assert not np.array_equal(t().batch(x), T.RandomCrop(7, 2, generator=_gen(8)).batch(x))
    shendu.manual_seed(0)
    a = T.Cutout(1, 4)(x[0])
    shendu.manual_seed(0)
    np.testing.assert_array_equal(a, T.Cutout(1, 4)(x[0]))
    assert a.shape == x[0].shape


def test_random_crop_size_and_content():
    x = _batch(h=8, w=8)
    out = T.RandomCrop(5, generator=_gen(0)).batch(x)
    assert out.shape == (6, 2, 5, 5)
    for o, s in zip(out, x):  # every crop is a window of its own image
        assert any(np.array_equal(o, s[:, i:i + 5, j:j + 5]) for i in range(4) for j in range(4))
    padded = T.RandomCrop(8, padding=4, generator=_gen(0)).batch(x)
    assert padded.shape == x.shape
    for o, s in zip(padded, np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))):
        assert any(np.array_equal(o, s[:, i:i + 8, j:j + 8]) for i in range(9) for j in range(9))
    assert T.RandomCrop((10, 12), pad_if_needed=True).batch(x).shape == (6, 2, 10, 12)
    assert T.RandomCrop(8, padding=2, padding_mode="reflect").batch(x).shape == x.shape
    with pytest.raises(ShapeError, match="larger than"):
        T.RandomCrop(9).batch(x)


def test_rotation_by_90_degrees_equals_rot90():
    x = _batch(h=6, w=6)
    for mode in ("nearest", "bilinear"):
        out = T.RandomRotation((90, 90), interpolation=mode).batch(x)
        np.testing.assert_allclose(out, np.rot90(x, 1, axes=(2, 3)), atol=1e-5)
        out = T.RandomRotation((-90, -90), interpolation=mode).batch(x)
        np.testing.assert_allclose(out, np.rot90(x, -1, axes=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(T.RandomRotation((180, 180)).batch(x), x[:, :, ::-1, ::-1], atol=1e-6)


def test_affine_translation_shifts_by_whole_pixels_and_fills():
    x = _batch(n=30, h=10, w=10)
    out = T.RandomAffine(0, translate=(0.2, 0.2), generator=_gen(2)).batch(x)
    for o, s in zip(out, x):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if np.array_equal(o, _shift(s, dy, dx))]
        assert shifts, "each output is its input shifted by whole pixels with zero fill"
    # scale 2 about the centre with bilinear sampling: the centre pixel values are interpolated, not garbage
    img = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    zoomed = T.RandomAffine(0, scale=(2, 2), interpolation="bilinear").batch(img)
    # output pixel (1, 1) maps to source 1.5 + (1 - 1.5)/2 = 1.25 on both axes
    np.testing.assert_allclose(zoomed[0, 0, 1, 1], 1.25 * 4 + 1.25, rtol=1e-6)


def _shift(img, dy, dx):
    out = np.zeros_like(img)
    h, w = img.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[:, max(-dy, 0):h + min(-dy, 0),
                                                                          max(-dx, 0):w + min(-dx, 0)]
    return out


def test_random_resized_crop():
    x = _batch(h=12, w=12)
    out = T.RandomResizedCrop(5, generator=_gen(0)).batch(x)
    assert out.shape == (6, 2, 5, 5) and out.dtype == np.float32
    # a full-image crop resized to the same size is the identity
    same = T.RandomResizedCrop(12, scale=(1.0, 1.0), ratio=(1.0, 1.0)).batch(x)
    np.testing.assert_allclose(same, x, atol=1e-6)
    # every pixel is a convex combination, so stays within the image range
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6
    top, left, h, w = T.RandomResizedCrop(5).boxes(200, 12, 12, np.random.default_rng(0))
    assert (top >= 0).all() and (top + h <= 12).all() and (left + w <= 12).all()
    area = h * w / 144
    assert area.min() >= 0.05 and area.max() <= 1.0


def test_cutout_zero_area_is_a_clipped_square():
    x = _batch(n=200, c=1, h=10, w=10) + 1  # no natural zeros
    out = T.Cutout(n_holes=1, length=4, generator=_gen(0)).batch(x)
    zero = out[:, 0] == 0
    areas = zero.sum(axis=(1, 2))
    assert areas.max() == 16 and areas.min() >= 4 and (areas < 16).any()  # clipped at borders sometimes
    for z in zero:
        rows, cols = np.flatnonzero(z.any(1)), np.flatnonzero(z.any(0))
        assert z.sum() == len(rows) * len(cols)  # a rectangle
        assert len(rows) <= 4 and len(cols) <= 4
    np.testing.assert_array_equal(out[~np.broadcast_to(zero[:, None], out.shape)],
                                  x[~np.broadcast_to(zero[:, None], x.shape)])


def test_mixup_lam_and_convex_combination():
    x = _batch(n=8)
    y = np.arange(8)
    m = T.Mixup(alpha=0.4, generator=_gen(0))
    for _ in range(20):
        mixed, ya, yb, lam = m(x, y)
        assert 0 <= lam <= 1
        np.testing.assert_array_equal(ya, y)
        perm = yb  # labels are the indices, so y_b is the permutation
        assert sorted(perm.tolist()) == list(range(8))
        np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[perm], rtol=1e-6, atol=1e-6)
        assert mixed.dtype == np.float32
    mixed, _, _, lam = T.Mixup(alpha=0)(x, y)
    assert lam == 1.0 and np.array_equal(mixed, x)
    tx, ty = shendu.tensor(x), shendu.tensor(y)
    mixed, ya, yb, lam = T.Mixup(1.0, generator=_gen(1))(tx, ty)
    assert isinstance(mixed, shendu.Tensor) and isinstance(yb, shendu.Tensor)
    loss = T.mixup_criterion(lambda p, t: float(np.mean(p == t)), np.array([1, 2]), np.array([1, 2]),
                             np.array([0, 0]), 0.25)
    assert loss == 0.25


def test_normalize_standardize_to_tensor():
    x = _batch(n=50, c=3)
    out = T.Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 2.0]).batch(x)
    ref = (x - np.array([0.1, 0.2, 0.3])[:, None, None]) / np.array([0.5, 0.25, 2.0])[:, None, None]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)  # float32 cancellation near 0
    assert out.dtype == np.float32
    s = T.Standardize().fit(x)
    z = s.batch(x)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-5)  # ddof=0, as fitted
    f = T.Standardize(per="feature").fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_allclose(f.batch(np.array([[1.0, 5.0]])), [[-1.0, 0.0]])  # zero std -> scale 1
    with pytest.raises(ArgumentError, match="fit"):
        T.Standardize().batch(x)
    with pytest.raises(ShapeError, match="3 channels"):
        T.Normalize([0.5, 0.5], [1, 1]).batch(x)
    u8 = np.random.default_rng(0).integers(0, 256, (4, 5, 6), dtype=np.uint8)
    t = T.ToTensor().batch(u8)
    assert t.shape == (4, 1, 5, 6) and t.dtype == np.float32
    np.testing.assert_allclose(t[:, 0], u8 / 255.0, rtol=1e-6)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_allclose(T.ToTensor()(rgb), rgb.transpose(2, 0, 1) / 255.0, rtol=1e-6)


def test_gaussian_noise_statistics_and_clip():
    x = np.full((100, 1, 20, 20), 0.5, np.float32)
    out = T.GaussianNoise(0.1, generator=_gen(0)).batch(x)
    assert abs((out - x).std() - 0.1) < 0.005 and abs((out - x).mean()) < 0.005
    clipped = T.GaussianNoise(1.0, clip=(0, 1), generator=_gen(0)).batch(x)
    assert clipped.min() == 0 and clipped.max() == 1 and clipped.dtype == np.float32


def test_per_sample_transforms_compose_with_batch_path():
    from shendu.data.datasets import ImageArrayDataset

    x = _batch()
    ds = ImageArrayDataset(x, np.zeros(6), transform=T.Compose([T.Lambda(lambda a: a * 2), T.Normalize([1], [2])]))
    bx, _ = ds.get_batch([0, 3])
    np.testing.assert_allclose(bx, (x[[0, 3]] * 2 - 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(ds[3][0], (x[3] * 2 - 1) / 2, rtol=1e-6)
