"""Optional numba kernels for batch norm and layer norm: per-channel (or per-row) statistics and the
affine passes, split over the cores by shendu's kernel pool (:func:`shendu.ops.kernels.parallel.split_rows`;
not numba's ``parallel=True``, whose OpenMP threads spin after every call and, measured on a busy
machine, made a training step 1.5-3x slower). Inference is the exception: :func:`batch_norm_inference`
runs on numba's OpenMP team (:mod:`shendu.ops.kernels.team`), awake there after each convolution.

Why: NumPy needs one pass over memory per arithmetic step (subtract, square-and-sum, scale, shift),
and runs each on one core; batch norm then costs 3-4x PyTorch's two fused, threaded passes. These
kernels do one reading pass for the statistics (float64 accumulators, data shifted by a sample value
so the variance does not cancel) and one pass to write the output, in the input's dtype.

The NumPy code in :mod:`shendu.ops.normalization` stays the reference the tests compare these with.
``AVAILABLE`` is False when numba is not installed; callers then use the NumPy path.
"""

from __future__ import annotations

import numpy as np

from shendu.ops.kernels import parallel, team
from shendu.ops.kernels.parallel import num_threads, split_rows

try:
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is optional
    AVAILABLE = False

__all__ = ["AVAILABLE", "enabled", "accepts", "channel_moments", "channel_grad_sums", "channel_affine",
           "channel_affine2", "batch_norm_inference", "layer_norm_forward", "layer_norm_backward"]

# Switch for tests and benchmarks: False forces the NumPy reference path.
enabled = AVAILABLE

_MIN_SIZE = 1 << 15  # below this many elements the NumPy path's lower call overhead wins
# ... except for the affine pass of batch norm in eval mode: NumPy's two broadcast passes pay a call per
# channel row. Measured on (1, C, HW) float32: numba 5.9 against NumPy 11.2 us at 64 x 196, 7.2 against 17.8
# at 32 x 784, 5.8 against 7.2 at 128 x 49; 3.5 against 2.5 us at 8 x 16.
AFFINE_MIN_SIZE = 1 << 12


def accepts(*arrays, min_size: int | None = None) -> bool:
    """Whether the kernels should handle these arrays: numba present and enabled, NumPy float32/64
    arrays of one dtype, large enough to pay for the call: ``_MIN_SIZE`` elements, or ``min_size`` when
    smaller (read at call time, so tests that lower ``_MIN_SIZE`` reach the kernels on small arrays)."""
    if not enabled:
        return False
    a0 = arrays[0]
    least = _MIN_SIZE if min_size is None else min(min_size, _MIN_SIZE)
    if a0.size < least or a0.dtype not in (np.float32, np.float64) or 0 in a0.shape:
        return False
    return all(type(a) is np.ndarray and a.dtype == a0.dtype for a in arrays)


if AVAILABLE:
    # fastmath (reassociation) lets the float64 reductions vectorize; the elementwise kernels must not
    # use it, since it could rewrite (x - center) - offset as x - (center + offset) and lose the centring.
    _opts = dict(fastmath=True, cache=True, nogil=True)
    _exact = dict(cache=True, nogil=True)

    @njit(**_opts)
    def _channel_moments(x, center, offset, var, lo, hi):
        n, c, s = x.shape
        for j in range(lo, hi):
            shift = np.float64(center[j])
            acc = 0.0
            acc2 = 0.0
            for i in range(n):
                for k in range(s):
                    v = np.float64(x[i, j, k]) - shift
                    acc += v
                    acc2 += v * v
            m = n * s
            d = acc / m
            offset[j] = d
            var[j] = max(acc2 / m - d * d, 0.0)

    @njit(**_opts)
    def _channel_grad_sums(x, gy, center, offset, sum_gy, sum_gy_xc, lo, hi):
        n, c, s = x.shape
        for j in range(lo, hi):
            ctr = np.float64(center[j])
            off = np.float64(offset[j])
            a = 0.0
            b = 0.0
            for i in range(n):
                for k in range(s):
                    g = np.float64(gy[i, j, k])
                    a += g
                    b += g * ((np.float64(x[i, j, k]) - ctr) - off)
            sum_gy[j] = a
            sum_gy_xc[j] = b

    @njit(**_exact)
    def _channel_affine(x, center, offset, scale, shift, out, lo, hi):
        n, c, s = x.shape
        for r in range(lo, hi):
            i = r // c
            j = r - i * c
            ctr = center[j]
            off = offset[j]
            a = scale[j]
            b = shift[j]
            for k in range(s):
                out[i, j, k] = ((x[i, j, k] - ctr) - off) * a + b

    @njit(**_exact)
    def _bn_inference(x, mean, var, weight, bias, eps, out, lo, hi):
        # per channel: scale = weight / sqrt(var + eps) and the centring by mean, in float64, then one pass
        n, c, s = x.shape
        for r in range(lo, hi):
            i = r // c
            j = r - i * c
            a = 1.0 / np.sqrt(np.float64(var[j]) + eps)
            if weight.shape[0]:
                a *= weight[j]
            ctr = x.dtype.type(mean[j])
            b = x.dtype.type(bias[j] if bias.shape[0] else 0.0)
            a = x.dtype.type(a)
            for k in range(s):
                out[i, j, k] = (x[i, j, k] - ctr) * a + b

    @njit(parallel=True, **_exact)
    def _bn_inference_team(x, mean, var, weight, bias, eps, out, threads):
        rows = x.shape[0] * x.shape[1]
        for t in prange(threads):
            _bn_inference(x, mean, var, weight, bias, eps, out, rows * t // threads, rows * (t + 1) // threads)

    @njit(**_exact)
    def _channel_affine2(g, a, x, center, offset, b, d, out, lo, hi):
        n, c, s = x.shape
        for r in range(lo, hi):
            i = r // c
            j = r - i * c
            aj = a[j]
            bj = b[j]
            dj = d[j]
            ctr = center[j]
            off = offset[j]
            for k in range(s):
                out[i, j, k] = g[i, j, k] * aj + ((x[i, j, k] - ctr) - off) * bj + dj

    @njit(fastmath=True, cache=True, nogil=True)
    def _row_stats(row, eps):
        shift = np.float64(row[0])
        acc = 0.0
        acc2 = 0.0
        for t in range(row.shape[0]):
            v = np.float64(row[t]) - shift
            acc += v
            acc2 += v * v
        d = acc / row.shape[0]
        return d, 1.0 / np.sqrt(max(acc2 / row.shape[0] - d * d, 0.0) + eps)

    @njit(**_exact)
    def _layer_norm_forward(x, w, b, eps, mean, invstd, out, lo, hi):
        # one row is a few KB: its statistics pass leaves it in cache for the output pass
        # and the arithmetic stays in x's dtype, centred as (x - x[r, 0]) - offset like batch norm
        m, k = x.shape
        for r in range(lo, hi):
            off64, rs64 = _row_stats(x[r], eps)
            ctr = x[r, 0]
            mean[r] = np.float64(ctr) + off64
            invstd[r] = rs64
            off = w[0] * 0 + off64  # in w's dtype, which is x's dtype
            rs = w[0] * 0 + rs64
            for t in range(k):
                out[r, t] = ((x[r, t] - ctr) - off) * rs * w[t] + b[t]

    @njit(**_opts)
    def _layer_norm_backward(x, gy, mean, invstd, w, dx, dw_part, db_part, p, lo, hi):
        # rows lo..hi of one thread, which accumulates its own dw/db partial sums
        m, k = x.shape
        for r in range(lo, hi):
            mu = mean[r]
            rs = invstd[r]
            s1 = 0.0
            s2 = 0.0
            for t in range(k):
                xh = (np.float64(x[r, t]) - mu) * rs
                g = np.float64(gy[r, t])
                gw = g * w[t]
                s1 += gw
                s2 += gw * xh
                dw_part[p, t] += g * xh
                db_part[p, t] += g
            c1 = s1 / k
            c2 = s2 / k
            for t in range(k):
                xh = (np.float64(x[r, t]) - mu) * rs
                dx[r, t] = rs * (np.float64(gy[r, t]) * w[t] - c1 - xh * c2)


# Per-channel centring is written ``(x - center) - offset`` with ``center`` a value of x's dtype close to
# the channel mean (a sample of the channel) and ``offset`` the small rest: the subtraction of nearby
# values is exact, so the centred data keeps full precision even when |mean| >> std.

def channel_moments(x3: np.ndarray, center: np.ndarray):
    """Per channel of ``x3 (N, C, S)``: ``offset = mean - center`` and the biased variance (float64)."""
    c = x3.shape[1]
    offset, var = np.empty(c), np.empty(c)
    split_rows(lambda lo, hi: _channel_moments(x3, center, offset, var, lo, hi), c, x3.size)
    return offset, var


def channel_grad_sums(x3: np.ndarray, gy3: np.ndarray, center: np.ndarray, offset: np.ndarray):
    """Per channel ``sum(gy)`` and ``sum(gy * ((x - center) - offset))`` (float64)."""
    c = x3.shape[1]
    a, b = np.empty(c), np.empty(c)
    split_rows(lambda lo, hi: _channel_grad_sums(x3, gy3, center, offset, a, b, lo, hi), c, 2 * x3.size)
    return a, b


def channel_affine(x3, center, offset, scale, shift, shape) -> np.ndarray:
    """``((x - center) - offset) * scale[c] + shift[c]`` in ``x3``'s dtype, as a new array of ``shape``
    (which owns its memory, so autograd can hand it on without a copy)."""
    out = np.empty(shape, x3.dtype)
    t = x3.dtype
    args = (x3, center.astype(t), offset.astype(t), scale.astype(t), shift.astype(t), out.reshape(x3.shape))
    split_rows(lambda lo, hi: _channel_affine(*args, lo, hi), x3.shape[0] * x3.shape[1], 2 * x3.size)
    return out


_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}

# From this many elements the pass is shared by numba's OpenMP team (whose threads are awake after the
# convolution before it). Measured (float32, one thread / the team of two): 64 x 28 x 28, 6.4 / 6.0 us;
# 128 x 28 x 28, 11.9 / 8.2; 64 x 112 x 112, 78 / 44; 32 x 64 x 56 x 56, 1262 / 897 (the pool: 1043).
TEAM_MIN_SIZE = 1 << 16


def batch_norm_inference(x3, mean, var, weight, bias, eps: float, shape) -> np.ndarray:
    """Batch norm with fixed statistics and no backward to prepare, ``(x - mean[c]) * (weight[c] /
    sqrt(var[c] + eps)) + bias[c]`` (``weight``/``bias`` None: 1 and 0): the per-channel factors in
    float64, then one pass in ``x3``'s dtype, as a new array of ``shape``; large inputs on numba's team
    (:data:`TEAM_MIN_SIZE`). The ~10 small NumPy ops of :func:`channel_affine`'s factors cost more than
    the pass itself at batch 1."""
    out = np.empty(shape, x3.dtype)
    t = x3.dtype
    args = (x3, mean.astype(t, copy=False), var.astype(t, copy=False),
            _EMPTY[t] if weight is None else weight, _EMPTY[t] if bias is None else bias, float(eps),
            out.reshape(x3.shape))
    if x3.size >= TEAM_MIN_SIZE and team.available():
        _bn_inference_team(*args, num_threads())
        parallel.note_team_region()
    else:
        _bn_inference(*args, 0, x3.shape[0] * x3.shape[1])
    return out


def channel_affine2(g3, a, x3, center, offset, b, d, shape) -> np.ndarray:
    """``g * a[c] + ((x - center) - offset) * b[c] + d[c]`` in ``x3``'s dtype (the batch-norm input
    gradient), as a new array of ``shape``."""
    out = np.empty(shape, x3.dtype)
    t = x3.dtype
    args = (g3, a.astype(t), x3, center.astype(t), offset.astype(t), b.astype(t), d.astype(t), out.reshape(x3.shape))
    split_rows(lambda lo, hi: _channel_affine2(*args, lo, hi), x3.shape[0] * x3.shape[1], 3 * x3.size)
    return out


def layer_norm_forward(x2, w, b, eps: float, shape):
    """Rows of ``x2 (M, K)`` normalised, times ``w (K,)`` plus ``b (K,)``, as a new array of ``shape``;
    also the per-row mean and ``1 / sqrt(var + eps)`` (float64) for backward."""
    m = x2.shape[0]
    mean, invstd = np.empty(m), np.empty(m)
    out = np.empty(shape, x2.dtype)
    t = x2.dtype
    args = (x2, w.astype(t), b.astype(t), eps, mean, invstd, out.reshape(x2.shape))
    split_rows(lambda lo, hi: _layer_norm_forward(*args, lo, hi), m, 2 * x2.size)
    return out, mean, invstd


def layer_norm_backward(x2, gy2, mean, invstd, w, shape):
    """``dx`` (x's dtype), ``dw`` and ``db`` (float64) of ``y = (x - mean) * invstd * w + b`` per row."""
    m, k = x2.shape
    parts = max(1, min(m, num_threads()))
    bounds = [m * p // parts for p in range(parts + 1)]
    dx = np.empty(shape, x2.dtype)
    dw = np.zeros((parts, k))
    db = np.zeros((parts, k))
    args = (x2, gy2, mean, invstd, w.astype(np.float64), dx.reshape(x2.shape), dw, db)
    # part p accumulates into dw[p], db[p]: summed in a fixed order afterwards (reproducible)
    split_rows(lambda lo, hi: _layer_norm_backward(*args, bounds.index(lo), lo, hi), m, 3 * x2.size)
    return dx, dw.sum(0), db.sum(0)
