"""The numba ReLU kernels (shendu/ops/kernels/activation_numba.py) against the NumPy reference and torch:
values, NaN and inf, dtypes, the size/contiguity gate, and the public op running on them."""

import numpy as np
import pytest
import torch

import shendu
from shendu.ops.kernels import activation_numba as A

pytestmark = pytest.mark.skipif(not A.AVAILABLE, reason="numba not installed")

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_numpy_and_torch(dtype):
    x = RNG.standard_normal(100_003).astype(dtype)  # odd length: the threads' slices differ in size
    x[:4] = [np.nan, 0.0, -0.0, np.inf]
    y = A.relu(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(y, torch.relu(torch.from_numpy(x)).numpy())
    gy = RNG.standard_normal(x.shape).astype(dtype)
    gy[1] = np.inf  # at y == 0 the gradient is exactly 0 (a select, as torch), not inf * 0 = NaN
    gx = A.relu_backward(gy, y)
    np.testing.assert_array_equal(gx, np.where(y > 0, gy, 0))
    xt = torch.from_numpy(x).requires_grad_()
    (gxt,) = torch.autograd.grad(torch.relu(xt), xt, torch.from_numpy(gy))
    np.testing.assert_array_equal(gx[4:], gxt.numpy()[4:])  # torch's NaN/inf inputs aside
    assert gx[1] == 0
    inplace = x.copy()  # out=x: its own kernel (no aliasing between input and output)
    assert A.relu(inplace, inplace) is inplace
    np.testing.assert_array_equal(inplace, y)
    out = np.full_like(x, 7)
    assert A.relu(x, out) is out
    np.testing.assert_array_equal(out, y)


def test_gate_takes_only_large_contiguous_arrays():
    big = np.zeros(1 << 17, np.float32)
    assert A.accepts(big)
    assert not A.accepts(big[:100])                       # small: NumPy's lower overhead
    assert not A.accepts(big.reshape(256, 512)[:, ::2])   # strided view
    assert not A.accepts(big.astype(np.float16))
    assert not A.accepts(big, big.astype(np.float64))     # mixed dtypes


def test_public_relu_on_the_kernels_matches_torch():
    x = RNG.standard_normal((8, 16, 32, 32)).astype(np.float32)
    gy = RNG.standard_normal(x.shape).astype(np.float32)
    xs = shendu.from_numpy(x).requires_grad_()
    y = shendu.relu(xs)
    (gx,) = shendu.autograd.grad([y], [xs], [gy])
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.relu(xt)
    (gxt,) = torch.autograd.grad(yt, xt, torch.from_numpy(gy))
    np.testing.assert_array_equal(y.data, yt.detach().numpy())
    np.testing.assert_array_equal(gx.data, gxt.numpy())


def test_inplace_relu_on_the_team_matches_torch(two_threads, monkeypatch):
    """A large in-place ReLU (inference) is shared by numba's OpenMP team: the same values, NaN kept."""
    monkeypatch.setattr(A, "TEAM_MIN_SIZE", 1000)
    x = RNG.standard_normal(10_007).astype(np.float32)  # odd: the threads' slices differ in size
    x[:3] = [np.nan, -np.inf, -0.0]
    want = torch.relu(torch.from_numpy(x)).numpy()
    xs = shendu.from_numpy(x.copy())
    with shendu.no_grad():
        assert shendu.relu(xs, inplace=True) is xs
    np.testing.assert_array_equal(xs.data, want)
