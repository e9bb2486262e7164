"""The compiled col2im equals NumPy's strided adds (the reference) on every geometry."""

import numpy as np
import pytest

from shendu.ops.kernels import col2im_numba, im2col


@pytest.mark.skipif(not col2im_numba.AVAILABLE, reason="numba is not installed: NumPy's col2im runs")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,H,W,kh,kw,stride,pads,dilation", [
    (2, 3, 9, 11, 3, 3, 2, (1, 1, 1, 1), 1),
    (3, 2, 8, 8, 5, 5, 1, (2, 2, 2, 2), 1),
    (2, 4, 10, 7, 3, 2, 3, (2, 0, 1, 3), 2),   # asymmetric pads, dilation, stride 3
    (1, 1, 5, 5, 3, 3, 1, (0, 0, 0, 0), 1),
    (2, 2, 4, 4, 5, 5, 1, (3, 3, 3, 3), 1),    # pads wider than the image: offsets that read only padding
])
def test_compiled_col2im_matches_numpy(monkeypatch, dtype, N, C, H, W, kh, kw, stride, pads, dilation):
    P = im2col.out_size(H, kh, stride, pads[0] + pads[1], dilation)
    Q = im2col.out_size(W, kw, stride, pads[2] + pads[3], dilation)
    cols = np.random.default_rng(0).standard_normal((N, C * kh * kw, P * Q)).astype(dtype)
    args = ((N, C, H, W), (kh, kw), (stride, stride), pads, (dilation, dilation))
    compiled = im2col.col2im(cols, *args)
    monkeypatch.setattr(col2im_numba, "add_cols", lambda *a: False)
    reference = im2col.col2im(cols, *args)
    assert compiled.dtype == dtype
    np.testing.assert_array_equal(compiled, reference)  # the same additions in the same order


@pytest.mark.skipif(not col2im_numba.AVAILABLE, reason="numba is not installed: NumPy's im2col runs")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,C,H,W,kh,kw,stride,pads,dilation", [
    (1, 3, 17, 15, 7, 7, 2, (3, 3, 3, 3), 1),  # a stem: 21 (channel, kernel row) pairs over the threads
    (2, 1, 9, 11, 3, 3, 1, (1, 1, 1, 1), 1),   # one channel
    (2, 4, 10, 7, 3, 2, 3, (2, 0, 1, 3), 2),   # asymmetric pads, dilation, stride 3
    (1, 2, 4, 4, 5, 5, 1, (3, 3, 3, 3), 1),    # pads wider than the image
])
def test_compiled_im2col_fill_matches_numpy(dtype, threads, N, C, H, W, kh, kw, stride, pads, dilation):
    """The compiled fill (on the calling thread, or shared by the team) writes every element of the
    columns, the padding as zeros, as NumPy's strided copies into a zeroed buffer."""
    x = np.random.default_rng(1).standard_normal((N, C, H, W)).astype(dtype)
    P, Q, rows, cols = im2col._geometry(x.shape, (1, C, kh, kw), (stride, stride), pads, (dilation, dilation))
    want = np.zeros((C, kh, kw, N, P, Q), dtype)
    im2col._fill_cols(x, want, rows, cols, (stride, stride))
    got = np.full_like(want, np.nan)  # every element must be written
    assert col2im_numba.fill_cols(x, got, rows, cols, (stride, stride), threads)
    np.testing.assert_array_equal(got, want)
