"""Optional numba kernels for ReLU forward and backward: one pass over memory, blocks spread over the cores.

Why: ``np.maximum(x, 0)`` runs on one core and ``gy * (y > 0)`` makes two passes and a boolean
temporary; on a CNN's activations (tens of MB per step) both are pure memory traffic, so a single
pass split over the cores is what PyTorch does and what these kernels do.

NaN behaves as in torch: ``relu(NaN) = NaN`` (the test is ``x <= 0``, false for NaN) and the gradient
is ``gy`` where ``y > 0``, else exactly 0 (a select, not a product, so ``gy = inf`` gives no NaN).
The NumPy expressions in :mod:`shendu.ops.activation` stay the reference the tests compare with.
"""

from __future__ import annotations

import numpy as np

from shendu.ops.kernels import parallel, team
from shendu.ops.kernels.parallel import split_rows

try:
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is optional
    AVAILABLE = False

__all__ = ["AVAILABLE", "enabled", "accepts", "relu", "relu_backward"]

enabled = AVAILABLE  # tests set False to force the NumPy reference

_MIN_SIZE = 1 << 12  # smaller arrays: NumPy's lower call overhead wins (measured crossover 2-4K elements; at
                     # 64K NumPy's NaN-propagating maximum took 25 us, the kernel 5-8)


def accepts(*arrays) -> bool:
    """Numba present and enabled; C-contiguous NumPy float32/64 arrays of one dtype and shape, large
    enough to pay for the threads."""
    if not enabled:
        return False
    a0 = arrays[0]
    if a0.size < _MIN_SIZE or a0.dtype not in (np.float32, np.float64):
        return False
    return all(type(a) is np.ndarray and a.dtype == a0.dtype and a.shape == a0.shape
               and a.flags.c_contiguous for a in arrays)


if AVAILABLE:
    # Serial kernels over a slice (a plain loop from 0, so numba vectorizes it and adds no
    # negative-index checks); the threads come from shendu's kernel pool (parallel.split_rows), not
    # from numba's parallel=True: numba's OpenMP threads spin after every call and, measured on a
    # busy machine, made a training step 1.5-3x slower. The exception is the in-place ReLU of
    # inference (_relu_inplace_team), where the team is awake after each convolution anyway.
    @njit(cache=True, nogil=True)
    def _relu(x, out, zero):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            v = x[i]
            out[i] = zero if v <= zero else v

    @njit(cache=True, nogil=True)
    def _relu_inplace(x, zero):  # pragma: no cover - compiled
        # its own kernel: with out aliasing x, _relu's runtime overlap check picks the scalar loop
        for i in range(x.shape[0]):
            v = x[i]
            x[i] = zero if v <= zero else v

    @njit(parallel=True, cache=True, nogil=True)
    def _relu_inplace_team(x, zero, threads):  # pragma: no cover - compiled
        n = x.shape[0]
        for t in prange(threads):
            _relu_inplace(x[n * t // threads:n * (t + 1) // threads], zero)

    @njit(cache=True, nogil=True)
    def _relu_backward(gy, y, out, zero):  # pragma: no cover - compiled
        for i in range(y.shape[0]):
            out[i] = gy[i] if y[i] > zero else zero


# In place (inference: ``relu(x, inplace=True)`` under no_grad), from this many elements numba's OpenMP
# team shares the pass: its threads are awake after the convolution before it, while the pool's would
# have to be woken. Measured (float32, one thread / the team of two): 256K elements 17.0 / 13.6 us,
# 32 x 32 x 28 x 28 51.7 / 32.8, 32 x 64 x 28 x 28 98.5 / 75.1; at 128K the team no longer gains.
TEAM_MIN_SIZE = 1 << 18


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``max(x, 0)`` (NaN kept) as a new array of x's shape and dtype, or into ``out`` (C-contiguous, of
    x's shape and dtype; x itself may be ``out``: each element is read before it is written, and a large
    one is then shared by numba's OpenMP team, :data:`TEAM_MIN_SIZE`)."""
    zero = x.dtype.type(0)
    if out is x:
        xf = x.reshape(-1)
        if xf.size >= TEAM_MIN_SIZE and team.available():
            _relu_inplace_team(xf, zero, parallel.num_threads())
            parallel.note_team_region()
        else:
            split_rows(lambda lo, hi: _relu_inplace(xf[lo:hi], zero), xf.shape[0], 2 * xf.size)
        return x
    if out is None:
        out = np.empty_like(x)
    xf, of = x.reshape(-1), out.reshape(-1)
    split_rows(lambda lo, hi: _relu(xf[lo:hi], of[lo:hi], zero), xf.shape[0], 2 * xf.size)
    return out


def relu_backward(gy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``gy`` where ``y > 0``, else 0, as a new array."""
    out = np.empty_like(gy)
    gf, yf, of, zero = gy.reshape(-1), y.reshape(-1), out.reshape(-1), gy.dtype.type(0)
    split_rows(lambda lo, hi: _relu_backward(gf[lo:hi], yf[lo:hi], of[lo:hi], zero), yf.shape[0], 3 * yf.size)
    return out
