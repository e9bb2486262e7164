"""The dot-product convolution of a single image's small map equals torch's (float64) on every geometry."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import shendu
from shendu import functional as F
from shendu.ops.kernels import im2col, narrow_numba, parallel
from shendu.ops.kernels.workspace import workspace

pytestmark = pytest.mark.skipif(not narrow_numba.AVAILABLE, reason="numba is not installed: BLAS runs")


def _reference(x, w, stride, pads, dilation):
    """torch's float64 convolution, and the sum of |terms| of each output (the scale of its rounding)."""
    xt, wt = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64))
    xt = TF.pad(xt, (pads[2], pads[3], pads[0], pads[1]))
    y = TF.conv2d(xt, wt, None, stride, 0, dilation)
    scale = TF.conv2d(xt.abs(), wt.abs(), None, stride, 0, dilation)
    return y.numpy()[0], scale.numpy()[0]


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,K,H,W,kh,kw,stride,pads,dilation", [
    (512, 512, 4, 4, 3, 3, 1, (1, 1, 1, 1), 1),   # ResNet-18's last stage at 28x28: 16 pixels, 512 = 6*85 + 2
    (64, 13, 7, 7, 3, 3, 1, (1, 1, 1, 1), 1),     # 49 pixels (not whole blocks of 4), 13 filters
    (32, 7, 14, 14, 1, 1, 2, (0, 0, 0, 0), 1),    # a 1x1 stride-2 downsample
    (5, 6, 9, 11, 3, 2, 3, (2, 0, 1, 3), 2),      # asymmetric pads, dilation, stride 3, rectangular kernel
    (3, 1, 4, 4, 5, 5, 1, (3, 3, 3, 3), 1),       # pads wider than the image: patches of padding only
    (2, 5, 1, 1, 1, 1, 1, (0, 0, 0, 0), 1),       # one pixel
])
def test_conv2d_image_matches_torch(dtype, threads, C, K, H, W, kh, kw, stride, pads, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, kh, kw)).astype(dtype)
    P, Q, rows, cols = im2col._geometry(x.shape, w.shape, (stride, stride), pads, (dilation, dilation))
    want, scale = _reference(x, w, stride, pads, dilation)
    workspace("narrow.patches", 64 * C * kh * kw, dtype)[:] = np.nan  # every element must be written
    y = np.full((K, P * Q), np.nan, dtype)
    before = parallel.num_threads()
    parallel.set_num_threads(threads)
    try:
        assert narrow_numba.conv2d_image(x[0], w.reshape(K, -1), y, rows, cols, (stride, stride), Q)
    finally:
        parallel.set_num_threads(before)
    eps = np.finfo(dtype).eps
    np.testing.assert_array_less(np.abs(y.reshape(K, P, Q) - want), 4 * eps * scale + 1e-300)


def test_conv2d_image_refuses_what_it_cannot_take(two_threads):
    x = np.ones((2, 4, 4), np.float32)
    rows = cols = im2col.offset_ranges(4, 4, 3, 1, 1, 1)
    w, y = np.ones((3, 18), np.float32), np.full((3, 16), np.nan, np.float32)
    assert not narrow_numba.conv2d_image(x.astype(np.float64), w, y, rows, cols, (1, 1), 4)  # mixed dtypes
    assert not narrow_numba.conv2d_image(x.astype(np.float16), w.astype(np.float16), y.astype(np.float16),
                                         rows, cols, (1, 1), 4)
    assert not narrow_numba.conv2d_image(np.ones((2, 4, 8), np.float32)[:, :, ::2], w, y, rows, cols, (1, 1), 4)
    parallel.set_num_threads(1)  # one thread: the team has nothing to share
    assert not narrow_numba.conv2d_image(x, w, y, rows, cols, (1, 1), 4)
    assert np.isnan(y).all()  # nothing written


def test_inference_forward_of_a_small_map_takes_the_dot_products(two_threads, monkeypatch):
    """F.conv2d of one image without a graph, 256 -> 256 channels at 7x7, runs conv2d_image (and equals
    torch)."""
    calls = []
    real = narrow_numba.conv2d_image
    monkeypatch.setattr(narrow_numba, "conv2d_image", lambda *a: calls.append(a[2].shape) or real(*a))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 256, 7, 7)).astype(np.float32)
    w = (rng.standard_normal((256, 256, 3, 3)) * 0.05).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    with shendu.no_grad():
        y = F.conv2d(shendu.from_numpy(x), shendu.from_numpy(w), shendu.from_numpy(b), 1, 1, algorithm="im2col")
    assert calls == [(256, 49)]
    want = TF.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.from_numpy(b).double(), 1, 1)
    np.testing.assert_allclose(y.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
