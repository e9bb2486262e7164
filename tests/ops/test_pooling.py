"""Pooling behaviour beyond the registry: the notes' examples, ties and NaN, the NumPy reference vs the
numba kernel, stochastic sampling statistics, Graham's sequences, and the layers."""

import math

import numpy as np
import pytest
import torch

import shendu
import shendu.functional as F
from shendu import nn
from shendu.errors import ArgumentError
from shendu.ops.kernels import pool as K


def t(a, grad=False):
    return shendu.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


# ------------------------------------------------------------------ max pooling: kernels, ties, NaN
@pytest.mark.parametrize("geom", [
    ((3, 3), (2, 2), (1, 1), (1, 1), False), ((2, 2), (2, 2), (0, 0), (1, 1), False),
    ((3, 2), (1, 2), (1, 0), (2, 1), True), ((2, 2), (2, 2), (0, 0), (1, 1), True),
])
def test_numba_kernel_matches_numpy_reference(geom):
    k, s, p, d, ceil = geom
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((6, 9, 8)), 0).astype(np.float32)  # ReLU output: many ties at 0
    out = tuple(K.out_size(L, *a, ceil) for L, *a in zip(x.shape[1:], k, s, p, d))
    y_ref, i_ref = K.max_pool2d_numpy(x, k, s, p, d, out)
    y_nb, i_nb = K.max_pool2d_forward(x, k, s, p, d, out)
    np.testing.assert_array_equal(y_nb, y_ref)
    np.testing.assert_array_equal(i_nb, i_ref)
    # and both agree with torch's indices, ties included
    ty, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x)[None], k, s, p, d, ceil, True)
    np.testing.assert_array_equal(i_ref, ti[0].numpy())
    g = rng.standard_normal(y_ref.shape).astype(np.float32)
    old = K.USE_NUMBA
    try:
        K.USE_NUMBA = False
        g_ref = K.max_pool2d_backward(g, i_ref, 9, 8)
    finally:
        K.USE_NUMBA = old
    np.testing.assert_allclose(K.max_pool2d_backward(g, i_nb, 9, 8), g_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("H, W", [(8, 6), (9, 7), (2, 2)])
def test_2x2_kernels_match_the_reference(H, W):
    """The unrolled 2x2/2 kernels (forward and its one-pass backward), odd sizes and NaN included."""
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((5, H, W)), 0).astype(np.float32)
    x[0, 0, 1] = np.nan
    win = ((2, 2), (2, 2), (0, 0), (1, 1))
    out = (H // 2, W // 2)
    y, idx = K.max_pool2d_forward(x, *win, out)
    y_ref, i_ref = K.max_pool2d_numpy(x, *win, out)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, i_ref)
    x[1, 1, 0] = x[1, 1, 1] = np.nan  # two NaN in one window: the last one wins, as in torch
    _, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x)[None], 2, return_indices=True)
    np.testing.assert_array_equal(K.max_pool2d_forward(x, *win, out)[1], ti[0].numpy())
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = K.max_pool2d_backward(g.reshape(5, -1), idx, H, W, win)
    np.testing.assert_array_equal(got, K.scatter_planes(g, i_ref, H * W).reshape(5, H, W))


@pytest.mark.parametrize("H, W, pad, ceil", [(9, 8, 1, False), (9, 8, 0, False), (8, 9, 1, True), (7, 7, 0, True),
                                            (2, 2, 1, False), (1, 5, 1, False), (3, 3, 0, False), (112, 112, 1, False)])
def test_3x3_stride_2_kernel_matches_the_reference(H, W, pad, ceil):
    """The ResNet-stem 3x3/2 kernel: edges, padding 0/1, ceil mode, ties at 0 and NaN (the last NaN wins)."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((4, H, W)), 0).astype(np.float32)
    x[0, 0, -1] = np.nan
    x[1, -1, 0] = x[1, -1, -1] = np.nan
    win = ((3, 3), (2, 2), (pad, pad), (1, 1))
    out = tuple(K.out_size(L, 3, 2, pad, 1, ceil) for L in (H, W))
    y, idx = K.max_pool2d_forward(x, *win, out)
    y_ref, i_ref = K.max_pool2d_numpy(x, *win, out)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, i_ref)
    _, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x)[None], 3, 2, pad, 1, ceil, True)
    np.testing.assert_array_equal(idx, ti[0].numpy())


@pytest.mark.parametrize("geom", [
    ((9, 8), (3, 3), (2, 2), (1, 1), False, True, None), ((9, 8), (3, 2), (1, 2), (1, 0), True, False, None),
    ((7, 7), (2, 2), (2, 2), (0, 0), True, True, None), ((6, 5), (3, 3), (3, 3), (1, 1), True, False, None),
    ((5, 5), (2, 3), (1, 1), (1, 1), False, True, 3),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_pool_numba_kernel_matches_numpy_reference(geom, dtype):
    (H, W), k, s, p, ceil, count_include_pad, divisor = geom
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, H, W)).astype(dtype)
    out = tuple(K.out_size(L, kk, ss, pp, 1, ceil) for L, kk, ss, pp in zip((H, W), k, s, p))
    div = K.avg_divisor(H, W, out, k, s, p, count_include_pad, divisor, dtype)
    y = K.avg_pool2d_forward(x, k, s, p, out, div)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, K.avg_pool2d_numpy(x, k, s, p, out, div), rtol=1e-6, atol=1e-6)
    g = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(K.avg_pool2d_backward(g, H, W, k, s, p, div),
                               K.avg_pool2d_backward_numpy(g, H, W, k, s, p, div), rtol=1e-6, atol=1e-6)


def test_ties_first_max_and_nan_propagates():
    y, i = F.max_pool2d(shendu.ones(1, 1, 2, 2), 2, return_indices=True)
    assert i.item() == 0
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = np.nan
    y = F.max_pool2d(t(x), 2)
    assert math.isnan(y[0, 0, 0, 0].item()) and y[0, 0, 1, 1].item() == 15.0


def test_gradient_only_at_max_location():
    """The notes' backprop rule: each window's gradient goes to its (unique) max, zeros elsewhere."""
    x = t([[[[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]]], grad=True)
    y = F.max_pool2d(x, 2)
    assert y.tolist() == [[[[5.0, 6.0], [7.0, 8.0]]]]
    y.backward(t([[[[10, 20], [30, 40]]]]))
    want = np.zeros((4, 4))
    want[1, 1], want[0, 2], want[3, 0], want[3, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(x.grad.data[0, 0], want)


def test_overlapping_windows_accumulate():
    x = t(np.array([[0, 1, 0], [2, 9, 3], [0, 4, 0]])[None, None], grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()
    assert x.grad.data[0, 0, 1, 1] == 4 and x.grad.data.sum() == 4


def test_min_pool_indices_follow_argmin():
    x = np.random.default_rng(1).permutation(36).reshape(1, 1, 6, 6).astype(np.float64)
    y, i = F.min_pool2d(t(x), 3, 2, 1, return_indices=True)
    ty, ti = torch.nn.functional.max_pool2d(-torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y.data, -ty.numpy())
    np.testing.assert_array_equal(i.data, ti.numpy())


def test_avg_pool_count_include_pad_corner():
    x = shendu.ones(1, 1, 5, 5)
    assert abs(F.avg_pool2d(x, 3, 1, 1)[0, 0, 0, 0].item() - 4 / 9) < 1e-7
    assert F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)[0, 0, 0, 0].item() == 1.0
    assert F.avg_pool2d(x, 2, ceil_mode=True)[0, 0, 2, 2].item() == 1.0  # overhang beyond the input


def test_output_size_ceil_rule():
    assert K.out_size(6, 3, 2, 1, 1, True) == 4
    assert F.max_pool2d(shendu.ones(1, 1, 6, 6), 3, 2, 1, ceil_mode=True).shape == (1, 1, 4, 4)


def test_adaptive_bins_overlap():
    s, e = K.adaptive_bins(5, 3)
    assert list(zip(s.tolist(), e.tolist())) == [(0, 2), (1, 4), (3, 5)]


def test_float32_kept():
    x = shendu.randn(2, 3, 7, 7, requires_grad=True)
    for y in (F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1), F.adaptive_avg_pool2d(x, 3),
              F.interpolate(x, scale_factor=2, mode="bilinear"), F.fractional_max_pool2d(x, 2, output_size=4)):
        assert y.dtype == np.float32
        (g,) = shendu.autograd.grad([y], [x], [np.ones(y.shape, np.float32)])
        assert g.dtype == np.float32


# ------------------------------------------------------------------------- unpooling and upsampling
def test_max_unpool_notes_example():
    """CS231n's example: max pool a 4x4 map with switches, then unpool other values to those spots."""
    x = t([[[[1, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]]])
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    y = F.max_unpool2d(t([[[[1, 2], [3, 4]]]]), idx, 2)
    assert y[0, 0].tolist() == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]


def test_max_unpool_odd_size_needs_output_size():
    x = t(np.random.default_rng(2).permutation(25).reshape(1, 1, 5, 5))
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert F.max_unpool2d(y, idx, 2, output_size=(5, 5)).shape == (1, 1, 5, 5)
    with pytest.raises(shendu.errors.IndexOutOfRangeError, match="output_size"):
        F.max_unpool2d(t(np.full((1, 1, 2, 2), 1.0)), shendu.tensor([[[[0, 1], [2, 18]]]]), 2)


def test_bed_of_nails_notes_example():
    y = F.interpolate(t([[[[1, 2], [3, 4]]]]), scale_factor=2, mode="bed_of_nails")
    assert y[0, 0].tolist() == [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]


def test_nearest_non_integer_ratio_is_asymmetric():
    y = F.interpolate(t([[[0, 1, 2]]]), size=5)
    assert y.tolist() == [[[0, 0, 1, 1, 2]]]


# ---------------------------------------------------------------------------------- stochastic
def test_stochastic_eval_paper_example():
    x = t([[[[1.6, 2.4, 0.4], [0, 0, 0], [0, 0, 0]]]])
    assert abs(F.stochastic_pool2d(x, 3, training=False).item() - (1.6**2 + 2.4**2 + 0.4**2) / 4.4) < 1e-12


def test_stochastic_train_frequencies_match_probabilities():
    a = np.array([1.0, 3.0, 0.0, 4.0])
    x = t(np.tile(a.reshape(2, 2), (1, 1, 100, 100)))  # 10,000 identical windows
    gen = shendu.Generator(0)
    counts = np.zeros(4)
    for _ in range(4):
        _, idx = F.stochastic_pool2d(x, 2, generator=gen, return_indices=True)
        rows, cols = np.divmod(idx.data, 200)
        slot = (rows % 2) * 2 + cols % 2
        counts += np.bincount(slot.ravel(), minlength=4)
    freq = counts / counts.sum()
    p = a / a.sum()
    assert freq[2] == 0  # zero activation is never sampled
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / counts.sum()) + 1e-12), (freq, p)


def test_stochastic_train_gradient_to_sampled_element_and_seeded():
    rng = np.random.default_rng(3)
    x = t(rng.uniform(0.1, 1, (2, 3, 6, 6)), grad=True)
    y, idx = F.stochastic_pool2d(x, 2, generator=shendu.Generator(7), return_indices=True)
    y2 = F.stochastic_pool2d(x, 2, generator=shendu.Generator(7))
    np.testing.assert_array_equal(y.data, y2.data)
    g = rng.standard_normal(y.shape)
    y.backward(t(g))
    want = np.zeros((6, 36))
    np.put_along_axis(want, idx.data.reshape(6, -1), g.reshape(6, -1), axis=1)
    np.testing.assert_array_equal(x.grad.data.reshape(6, 36), want)
    # the sampled element's value is the output
    np.testing.assert_array_equal(np.take_along_axis(x.data.reshape(6, 36), idx.data.reshape(6, -1), 1),
                                  y.data.reshape(6, -1))


def test_stochastic_all_zero_window():
    x = t(np.zeros((1, 1, 2, 2)), grad=True)
    for training in (True, False):
        y = F.stochastic_pool2d(x, 2, training=training)
        assert y.item() == 0.0
        y.backward()
        assert not x.grad.data.any()


def test_stochastic_rejects_negative():
    with pytest.raises(ArgumentError, match="relu"):
        F.stochastic_pool2d(t(-np.ones((1, 1, 2, 2))), 2)


# ------------------------------------------------------------------------- k-max, sort, fractional
def test_kmax_keeps_original_order_and_dynamic_k():
    assert F.kmax_pool1d(t([3, 1, 5, 2, 4, 0]), 3).tolist() == [3, 5, 4]
    assert F.kmax_pool1d(t([1, 2, 2, 0]), 2).tolist() == [2, 2]
    assert [F.dynamic_k(3, l, 3, 18) for l in (1, 2, 3)] == [12, 6, 3]
    assert F.dynamic_k(5, 2, 3, 6) == 5


def test_sort_pool_k1_is_max_pool_and_weight_order():
    x = t(np.random.default_rng(4).standard_normal((2, 3, 6, 8)))
    np.testing.assert_allclose(F.sort_pool2d(x, t([0.3])).data, F.max_pool2d(x, 2).data)
    win = t([[[[1.0, 4.0], [3.0, 2.0]]]])
    w = t([5.0, 0.0])  # weights[0] multiplies the largest value
    sw = np.exp([5.0, 0.0]) / np.exp([5.0, 0.0]).sum()
    assert abs(F.sort_pool2d(win, w).item() - (sw[0] * 4 + sw[1] * 3)) < 1e-12


def test_sort_pool_layer_trains_its_weights():
    layer = nn.SortPool2d(3, generator=shendu.Generator(0))
    assert layer.weight.shape == (3,) and abs(float(layer.weight.data.std())) < 0.5
    layer(shendu.randn(2, 2, 4, 4)).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.shape == (3,)


@pytest.mark.parametrize("pseudo", [True, False])
@pytest.mark.parametrize("L,O", [(10, 7), (25, 18), (9, 5), (16, 8)])
def test_graham_sequences(pseudo, L, O):
    rng = np.random.default_rng(L * O)
    for _ in range(20):
        a = K.graham_sequence(L, O, pseudo, rng)
        assert a[0] == 0 and a[-1] == L and len(a) == O + 1
        assert set(np.diff(a).tolist()) <= {1, 2}


def test_fractional_reproducible_and_ratio():
    x = shendu.randn(2, 3, 10, 10)
    a = F.fractional_max_pool2d(x, 2, output_ratio=0.7, generator=shendu.Generator(1))
    b = F.fractional_max_pool2d(x, 2, output_ratio=0.7, generator=shendu.Generator(1))
    assert a.shape == (2, 3, 7, 7)
    np.testing.assert_array_equal(a.data, b.data)
    g = F.fractional_max_pool2d(x, 2, output_size=6, method="random", overlapping=True)
    assert g.shape == (2, 3, 6, 6)
    with pytest.raises(shendu.errors.ShapeError, match="1 < L/O <= 2"):
        F.fractional_max_pool2d(x, 2, output_size=4, method="pseudo_random")


# ---------------------------------------------------------------------------------------- layers
def test_layers_match_functional_and_torch():
    x_np = np.random.default_rng(5).permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7).astype(np.float32) / 10
    x, tx = shendu.tensor(x_np), torch.tensor(x_np)
    pairs = [
        (nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
        (nn.AvgPool2d(3, 2, 1, count_include_pad=False), torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
        (nn.LPPool2d(2, 2), torch.nn.LPPool2d(2, 2)),
        (nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3))),
        (nn.AdaptiveMaxPool2d(3), torch.nn.AdaptiveMaxPool2d(3)),
        (nn.Upsample(scale_factor=2, mode="bilinear"), torch.nn.Upsample(scale_factor=2, mode="bilinear")),
        (nn.UpsamplingNearest2d(scale_factor=2), torch.nn.UpsamplingNearest2d(scale_factor=2)),
        (nn.UpsamplingBilinear2d(size=(9, 4)), torch.nn.UpsamplingBilinear2d(size=(9, 4))),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(x).data, theirs(tx).numpy(), rtol=1e-5, atol=1e-6, err_msg=repr(ours))
    np.testing.assert_allclose(nn.GlobalAvgPool2d()(x).data, x_np.mean((2, 3)), rtol=1e-6)
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    y, i = pool(x)
    ty, ti = torch.nn.MaxPool2d(2, return_indices=True)(tx)
    np.testing.assert_array_equal(unpool(y, i, output_size=(7, 7)).data,
                                  torch.nn.MaxUnpool2d(2)(ty, ti, output_size=(7, 7)).numpy())
    assert nn.MinPool2d(2)(x).shape == (2, 3, 3, 3) and nn.KMaxPool1d(2)(x).shape == (2, 3, 7, 2)
    assert nn.FractionalMaxPool2d(2, output_ratio=0.5)(x).shape == (2, 3, 3, 3)


def test_stochastic_layer_reads_training_flag():
    x = shendu.rand(1, 2, 4, 4) + 0.1
    layer = nn.StochasticPool2d(2, generator=shendu.Generator(0))
    train_out = layer(x)
    flat = x.data.reshape(2, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(2, 2, 2, 4)
    assert np.isin(train_out.data.ravel(), x.data.ravel()).all()
    layer.eval()
    np.testing.assert_allclose(layer(x).data[0], (flat ** 2).sum(-1) / flat.sum(-1), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,p", [(3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 1, 1), (2, 2, 1)])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("on_team", [False, True])
def test_inference_max_pool_values_match_torch(monkeypatch, dtype, k, s, p, ceil_mode, on_team):
    """Without a gradient or indices to return, max pooling computes values alone (the 2x2/2 and 3x3/2
    windows with their own kernels, on numba's team when ``on_team``); equal to torch, NaN included."""
    if on_team:
        monkeypatch.setattr(K, "TEAM_MIN_SIZE", 0)
    rng = np.random.default_rng(3)
    for shape in [(2, 3, 9, 11), (1, 4, 8, 8), (1, 1, 4, 5), (5, 7, 7)]:
        x = rng.standard_normal(shape).astype(dtype)
        x.reshape(-1)[rng.integers(0, x.size, 3)] = np.nan
        with shendu.no_grad():
            got = F.max_pool2d(shendu.from_numpy(x), k, s, p, ceil_mode=ceil_mode)
        want = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=ceil_mode).numpy()
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.data, want)  # NaN where torch has NaN


def test_max_pool_keeps_indices_when_asked_or_differentiated():
    x = shendu.randn(1, 2, 8, 8, requires_grad=True)
    F.max_pool2d(x, 3, 2, 1).sum().backward()  # the arg-max kept for backward: a 1 per window's maximum
    assert x.grad.data.sum() == 2 * 4 * 4
    with shendu.no_grad():
        y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    tx = torch.from_numpy(x.data)
    ty, tidx = torch.nn.functional.max_pool2d(tx, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y.data, ty.numpy())
    np.testing.assert_array_equal(idx.data, tidx.numpy())
