"""Convolution beyond the generic registry (tests/opspecs/conv.py): float32 accuracy of each algorithm
against float64, im2col/col2im against torch's unfold/fold, adjointness of the transposed convolution,
the ``auto`` choice, threading and chunk boundaries, and the nn layers against torch.nn."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import shendu
from shendu import nn
from shendu.errors import ArgumentError, DTypeError, ShapeError
from shendu.ops import conv as conv_ops
from shendu.ops.kernels import im2col, parallel, winograd

RNG = np.random.default_rng(0)
ALGS = ["direct", "im2col", "fft", "winograd", "winograd2x2"]


def _rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def _torch_conv64(x, w, b, **kw):
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = TF.conv2d(xt, wt, bt, **kw)
    return xt, wt, bt, y


# float32 error relative to the largest |value|, measured on this problem (N(0,1) data, 3x3x32 sums):
# direct/im2col ~3e-7, fft ~6e-7, winograd2x2 ~6e-7, winograd (F(4x4)) ~2e-6. Bounds are ~5x that.
F32_BOUND = {"direct": 2e-6, "im2col": 2e-6, "fft": 4e-6, "winograd2x2": 4e-6, "winograd": 1.2e-5}


@pytest.mark.parametrize("alg", ALGS)
def test_float32_error_against_float64(alg):
    x = RNG.standard_normal((4, 32, 20, 20))
    w = RNG.standard_normal((24, 32, 3, 3)) / math.sqrt(32 * 9)
    b = RNG.standard_normal(24)
    xt, wt, bt, yt = _torch_conv64(x, w, b, padding=1)
    gy = RNG.standard_normal(yt.shape)
    want = [yt.detach().numpy()] + [g.numpy() for g in torch.autograd.grad(yt, (xt, wt, bt), torch.tensor(gy))]
    xs, ws, bs = (shendu.tensor(a.astype(np.float32), requires_grad=True) for a in (x, w, b))
    y = shendu.conv2d(xs, ws, bs, padding=1, algorithm=alg)
    got = [y.data] + [g.data for g in shendu.autograd.grad([y], [xs, ws, bs], [gy.astype(np.float32)])]
    for name, g, w_ in zip(("y", "gx", "gw", "gb"), got, want):
        assert g.dtype == np.float32
        err = _rel_err(g, w_)
        assert err < F32_BOUND[alg], f"{alg} {name}: relative float32 error {err:.2e}"


@pytest.mark.parametrize("k", [15, 31])
def test_fft_large_kernels(k):
    x = RNG.standard_normal((2, 3, 40, 36))
    w = RNG.standard_normal((4, 3, k, k)) / k
    b = RNG.standard_normal(4)
    xt, wt, bt, yt = _torch_conv64(x, w, b, padding=k // 2)
    y = shendu.conv2d(x, w, b, padding=k // 2, algorithm="fft")
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    y32 = shendu.conv2d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), padding=k // 2,
                        algorithm="fft")
    assert _rel_err(y32.data, yt.detach().numpy()) < 5e-6
    assert shendu.conv2d(x, w, b, padding=k // 2).shape == y.shape
    assert conv_ops.last_algorithm() == "fft"  # auto picks FFT for such kernels


def test_im2col_row_order_is_unfold_and_col2im_adds_overlaps():
    x = RNG.standard_normal((2, 3, 7, 6))
    kw = dict(kernel_size=(3, 2), dilation=(1, 2), padding=(1, 1), stride=(2, 1))
    cols = im2col.im2col(x, (3, 2), stride=(2, 1), pads=(1, 1, 1, 1), dilation=(1, 2))
    np.testing.assert_array_equal(cols, TF.unfold(torch.tensor(x), **kw).numpy())
    back = im2col.col2im(cols, x.shape, (3, 2), stride=(2, 1), pads=(1, 1, 1, 1), dilation=(1, 2))
    np.testing.assert_allclose(back, TF.fold(torch.tensor(cols), (7, 6), **kw).numpy(), rtol=1e-12)
    # a pixel covered by several windows receives the sum of their values, not the last one
    ones = im2col.col2im(np.ones((1, 9, 9)), (1, 1, 5, 5), (3, 3))
    assert ones[0, 0, 2, 2] == 9 and ones[0, 0, 0, 0] == 1


def test_1x1_convolution_is_a_linear_layer_per_pixel():
    x = RNG.standard_normal((2, 8, 5, 4))
    w = RNG.standard_normal((6, 8, 1, 1))
    y = shendu.conv2d(x, w).data
    lin = x.transpose(0, 2, 3, 1) @ w[:, :, 0, 0].T
    np.testing.assert_allclose(y, lin.transpose(0, 3, 1, 2), rtol=1e-12, atol=1e-12)
    assert conv_ops.last_algorithm() == "im2col"  # the plain GEMM path


@pytest.mark.parametrize("alg", ["direct", "im2col", "fft"])
def test_conv_transpose_is_the_adjoint_of_conv(alg):
    """<conv2d(x), y> == <x, conv_transpose2d(y)> for the same weight and geometry."""
    geo = dict(stride=2, padding=1, dilation=2, groups=2)
    x = RNG.standard_normal((2, 4, 9, 8))
    w = RNG.standard_normal((6, 2, 3, 3))
    y = RNG.standard_normal(shendu.conv2d(x, w, **geo).shape)
    lhs = np.sum(shendu.conv2d(x, w, **geo, algorithm=alg).data * y)
    xt = shendu.conv_transpose2d(y, w, **geo, output_padding=(0, 1), algorithm=alg).data
    assert xt.shape == x.shape
    np.testing.assert_allclose(lhs, np.sum(x * xt), rtol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, kw, expected", [
    ((8, 64, 28, 28), (64, 64, 3, 3), dict(padding=1), "winograd"),
    ((8, 64, 28, 28), (32, 64, 1, 1), {}, "im2col"),
    ((8, 64, 28, 28), (64, 1, 3, 3), dict(padding=1, groups=64), "im2col"),  # depthwise: per-group GEMMs
    ((2, 3, 64, 64), (4, 3, 31, 31), dict(padding=15), "fft"),
    ((8, 3, 64, 64), (16, 3, 7, 7), dict(stride=2, padding=3), "im2col"),
    # batch 1 of a deep layer: Winograd's per-call filter transform (4x the weight) costs more than it saves
    ((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), "im2col"),
    # batch 1 at 14x14, trained: F(4x4)'s 16 tiles make narrow channel GEMMs (measured 6.8 ms against im2col's 3.4)
    ((1, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), "winograd2x2"),
])
def test_auto_choice_is_reported(x_shape, w_shape, kw, expected):
    """The training choice (an input that requires grad): forward and backward costs."""
    x = shendu.zeros(x_shape, requires_grad=True)
    w = np.zeros(w_shape, np.float32)
    shendu.conv2d(x, w, **kw)
    assert conv_ops.last_algorithm() == expected
    assert conv_ops.choose_algorithm(x_shape, w_shape, _geometry_of(x, w, kw)) == expected


def _geometry_of(x, w, kw):
    return conv_ops._prepare("conv2d", x, w, None, kw.get("stride", 1), kw.get("padding", 0), 1,
                             kw.get("groups", 1), 2)[3]


# Single-image inference, measured forward times on the 2-core machine (isolated layers, on numba's team;
# torch's in brackets): the forward-only model picks the fastest of im2col, F(4x4) and F(2x2).
@pytest.mark.parametrize("x_shape, w_shape, expected", [
    ((1, 64, 56, 56), (64, 64, 3, 3), "winograd"),        # 0.58 ms; F(2x2) 0.82, im2col 1.52 (1.08)
    ((1, 128, 28, 28), (128, 128, 3, 3), "winograd"),     # 0.66 ms; F(2x2) 0.77, im2col 1.35 (1.05)
    ((1, 256, 14, 14), (256, 256, 3, 3), "winograd2x2"),  # 1.07 ms; im2col 1.36, F(4x4) 1.44 (1.03)
    ((1, 128, 14, 14), (128, 128, 3, 3), "winograd"),     # 0.22 ms; F(2x2) 0.32, im2col 0.42 (0.30)
    ((1, 512, 7, 7), (512, 512, 3, 3), "im2col"),         # 1.55 ms; F(2x2) 3.5, F(4x4) 4.2 (1.17)
    ((1, 512, 4, 4), (512, 512, 3, 3), "im2col"),         # 0.62 ms; F(2x2) 1.7, F(4x4) 3.6 (0.56)
])
def test_single_image_inference_choice(x_shape, w_shape, expected):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    with shendu.no_grad():
        shendu.conv2d(shendu.zeros(x_shape, requires_grad=True), w, padding=1)
    assert conv_ops.last_algorithm() == expected
    shendu.conv2d(x, w, padding=1)  # no input requires grad: inference too
    assert conv_ops.last_algorithm() == expected
    g = _geometry_of(x, w, dict(padding=1))
    assert conv_ops.choose_algorithm(x_shape, w_shape, g, inference=True) == expected
    shendu.conv2d(shendu.zeros(x_shape, requires_grad=True), w, padding=1)  # trained: forward and backward
    assert conv_ops.last_algorithm() == conv_ops.choose_algorithm(x_shape, w_shape, g, inference=False)


def test_algorithm_errors_name_the_reason():
    x, w = np.zeros((1, 2, 8, 8), np.float32), np.zeros((2, 2, 3, 3), np.float32)
    with pytest.raises(ArgumentError, match=r"winograd.*needs stride 1 \(got stride \(2, 2\)\)"):
        shendu.conv2d(x, w, stride=2, algorithm="winograd")
    with pytest.raises(ArgumentError, match="needs dilation 1"):
        shendu.conv2d(x, w, dilation=2, algorithm="winograd2x2")
    with pytest.raises(ArgumentError, match="needs a 3x3 kernel"):
        shendu.conv2d(x, np.zeros((2, 2, 5, 5), np.float32), algorithm="winograd")
    with pytest.raises(DTypeError, match="dtypes differ"):
        shendu.conv2d(x, w.astype(np.float64))
    with pytest.raises(DTypeError, match="floating-point"):
        shendu.conv2d(x.astype(np.int64), w)
    with pytest.raises(ShapeError, match="is the image HWC"):
        shendu.conv2d(np.zeros((1, 8, 8, 2), np.float32), w)


def test_cached_geometry_still_checks_every_call():
    """The shape checks are cached per (shapes, arguments): an equal-but-invalid argument (True == 1)
    must not reuse a valid call's entry, and a list gives the same result as the tuple."""
    x, w = shendu.randn(1, 2, 8, 8), shendu.randn(3, 2, 3, 3)
    assert shendu.conv2d(x, w, stride=1, padding=(1, 1)).shape == (1, 3, 8, 8)
    for bad in ({"stride": True}, {"stride": (True, 1)}, {"padding": (1.0, 1)}):
        with pytest.raises(ArgumentError, match="must be an int or a tuple of 2 ints"):
            shendu.conv2d(x, w, **bad)
    assert shendu.conv2d(x, w, padding=[1, 1]).shape == (1, 3, 8, 8)
    with pytest.raises(ShapeError, match="input has 4 channels but weight expects 2"):  # same args, new shape
        shendu.conv2d(shendu.randn(1, 4, 8, 8), w, stride=1, padding=(1, 1))


@pytest.mark.parametrize("alg", ["im2col", "winograd", "winograd2x2"])
def test_threads_and_chunk_boundaries(alg, monkeypatch):
    """Chunks of 2 images with a short last chunk, on 1 and on 2 threads: same result as torch,
    and identical on repeated runs (the weight gradient is summed in a fixed order)."""
    monkeypatch.setattr(im2col, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(im2col, "_MIN_COLUMNS", 1)
    monkeypatch.setattr(winograd, "_chunk", lambda N, *a: 2)
    x = RNG.standard_normal((5, 3, 9, 7)).astype(np.float32)
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gy = RNG.standard_normal((5, 4, 9, 7)).astype(np.float32)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = TF.conv2d(xt, wt, padding=1)
    want = [yt.detach().numpy()] + [g.numpy() for g in torch.autograd.grad(yt, (xt, wt), torch.tensor(gy))]
    results = []
    before = parallel.num_threads()
    try:
        for threads in (1, 2, 2):
            parallel.set_num_threads(threads)
            xs, ws = shendu.tensor(x, requires_grad=True), shendu.tensor(w, requires_grad=True)
            y = shendu.conv2d(xs, ws, padding=1, algorithm=alg)
            got = [y.data] + [g.data for g in shendu.autograd.grad([y], [xs, ws], [gy])]
            for g, w_ in zip(got, want):
                np.testing.assert_allclose(g, w_, rtol=1e-4, atol=2e-4)
            results.append(got)
    finally:
        parallel.set_num_threads(before)
    for a, b in zip(results[1], results[2]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("alg, w_shape, kw", [
    ("im2col", (6, 4, 3, 3), dict(padding=1, stride=2)),
    ("im2col", (6, 2, 3, 3), dict(padding=1, groups=2)),
    ("im2col", (6, 4, 1, 1), {}),
    ("winograd", (6, 4, 3, 3), dict(padding=1)),
    ("winograd", (6, 2, 3, 3), dict(padding=1, groups=2)),
])
@pytest.mark.parametrize("batch", [1, 5])
def test_threads_and_fused_bias_match_torch(alg, w_shape, kw, batch, monkeypatch):
    """On 2 threads, with the bias added inside the kernels' chunks: batch 1 (the GEMM split by output
    pixels or by output channels, see im2col._split_gemm) and a batch of 5 in chunks of 2 (both im2col
    layouts: the 11x9 map is image-major once _MIN_COLUMNS is lowered) = torch."""
    monkeypatch.setattr(im2col, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(parallel, "MIN_SPLIT_ELEMENTS", 0)  # split even these small arrays
    monkeypatch.setattr(winograd, "_chunk", lambda N, *a: 2)
    x = RNG.standard_normal((batch, 4, 11, 9)).astype(np.float32)
    w = RNG.standard_normal(w_shape).astype(np.float32)
    b = RNG.standard_normal(w_shape[0]).astype(np.float32)
    want = TF.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kw).numpy()
    before = parallel.num_threads()
    try:
        parallel.set_num_threads(2)
        # image-major layout and batch 1 split by pixels; channel-major and split by channels
        for min_columns, split_columns in ((1, 1), (10 ** 6, 10 ** 6)):
            monkeypatch.setattr(im2col, "_MIN_COLUMNS", min_columns)
            monkeypatch.setattr(im2col, "_MIN_SPLIT_COLUMNS", split_columns)
            got = shendu.conv2d(x, w, b, algorithm=alg, **kw).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)
    finally:
        parallel.set_num_threads(before)


def test_large_batch_chunks_match_torch_float32():
    x = RNG.standard_normal((33, 16, 12, 12)).astype(np.float32)
    w = (RNG.standard_normal((32, 16, 3, 3)) / 12).astype(np.float32)
    yt = TF.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    for alg in ("im2col", "winograd", "direct"):
        y = shendu.conv2d(x, w, padding=1, algorithm=alg).data
        assert _rel_err(y, yt) < 1e-5, alg


# ------------------------------------------------------------------------------ nn layers
def _copy_weights(s_layer, t_layer):
    s_layer.weight.data[...] = t_layer.weight.detach().numpy()
    if t_layer.bias is not None:
        s_layer.bias.data[...] = t_layer.bias.detach().numpy()


@pytest.mark.parametrize("cls, args, kwargs, in_shape", [
    ("Conv2d", (3, 8, 3), dict(padding=1), (2, 3, 10, 9)),
    ("Conv2d", (4, 6, (3, 2)), dict(stride=2, dilation=(2, 1), groups=2, bias=False), (1, 4, 11, 9)),
    ("Conv2d", (3, 4, 4), dict(padding="same"), (2, 3, 7, 7)),
    ("Conv2d", (3, 4, 3), dict(padding=2, padding_mode="reflect"), (2, 3, 8, 8)),
    ("Conv2d", (3, 4, 3), dict(padding=(1, 2), padding_mode="replicate"), (2, 3, 8, 8)),
    ("Conv2d", (3, 4, 3), dict(padding=1, padding_mode="circular", stride=2), (2, 3, 8, 8)),
    ("Conv1d", (3, 5, 3), dict(padding=1, stride=2), (2, 3, 11)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5, 5)),
    ("ConvTranspose1d", (3, 2, 4), dict(stride=3), (2, 3, 6)),
])
def test_layers_match_torch(cls, args, kwargs, in_shape):
    torch.manual_seed(0)
    t_layer = getattr(torch.nn, cls)(*args, **kwargs).double()
    s_layer = getattr(nn, cls)(*args, **kwargs, dtype=np.float64)
    _copy_weights(s_layer, t_layer)
    x = RNG.standard_normal(in_shape)
    xs, xt = shendu.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ys, yt = s_layer(xs), t_layer(xt)
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    gy = RNG.standard_normal(ys.shape)
    ys.backward(gy)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(s_layer.weight.grad.data, t_layer.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
    assert repr(s_layer) == repr(t_layer)
    assert list(s_layer.state_dict()) == list(t_layer.state_dict())


def test_default_init_has_torchs_bounds():
    shendu.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)  # kaiming_uniform_(a=sqrt(5)) on fan_in = 144
    w = conv.weight.data
    assert w.dtype == np.float32 and w.shape == (32, 16, 3, 3)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound  # uniform(-b, b) has std b / sqrt(3)
    assert np.abs(conv.bias.data).max() <= bound
    up = nn.ConvTranspose2d(8, 4, 3)  # torch computes fan_in from weight.size(1) = out/groups
    assert np.abs(up.weight.data).max() <= 1 / math.sqrt(4 * 9)


def test_layer_algorithm_attribute_and_output_size():
    conv = nn.Conv2d(8, 8, 3, padding=1, algorithm="fft")
    conv(shendu.randn(1, 8, 6, 6))
    assert conv_ops.last_algorithm() == "fft"
    conv.algorithm = "winograd2x2"
    conv(shendu.randn(1, 8, 6, 6))
    assert conv_ops.last_algorithm() == "winograd2x2"
    up = nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1)
    assert up(shendu.randn(1, 2, 5, 5), output_size=(10, 10)).shape == (1, 2, 10, 10)
    with pytest.raises(ShapeError, match="not reachable"):
        up(shendu.randn(1, 2, 5, 5), output_size=(12, 12))


def test_layer_argument_errors():
    with pytest.raises(ArgumentError, match="in_channels \\(3\\) must be divisible by groups \\(2\\)"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ArgumentError, match="padding='same' is not supported for strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ArgumentError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ArgumentError, match="only padding_mode='zeros'"):
        nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(ArgumentError, match="unknown algorithm"):
        nn.Conv2d(3, 4, 3, algorithm="magic")
