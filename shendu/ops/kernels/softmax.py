"""Log-sum-exp and softmax over the class axis of ``(N, C, D)`` arrays, for the fused cross-entropy.

Why a kernel: a segmentation loss sees ``(32, 11, 128 * 128)`` logits, 5.8 M values. Written as plain
array expressions, every step (``x - max``, ``exp``, ``log p``) allocated a fresh 23 MB array, and a
fresh array costs a page fault per 4 KB on first touch; the loss took 4x torch's time. Here the rows
are cut into chunks of about ``_CHUNK_BYTES`` (a few images, or a few hundred samples of a
classifier), so the temporaries of a chunk stay in cache and in a reused workspace, and the chunks are
split over the kernel threads (NumPy's ufuncs release the GIL). Same arithmetic as the expressions:
``lse = m + log(sum_c exp(x_c - m))`` with ``m = max_c x_c``.

Classifier logits (float32, one position per sample: (N, C, 1)) take a compiled path when numba is
installed: NumPy's max per row, then one kernel pass per row for the sum of exponentials (the row is
still in cache from the max) and one for the scaled softmax of the backward, with ``exp`` as a polynomial
LLVM vectorizes (``_exp_shifted``: Cephes' expf, within 2 ulp; libm's expf is a scalar call). The NumPy
path makes four passes over the whole array, each limited by memory bandwidth. Measured (2 threads,
2-core VM, 256 x 1000 logits): log-sum-exp 357 -> 190-200 us, softmax 291 -> 175-235 us; bench/pool_norm.py's
cross-entropy row, forward+backward, 0.84-0.86 -> 0.50 ms (torch 0.22-0.28). Segmentation maps
(N, C, D) keep the NumPy path (a compiled version measured no faster there: its chunks are whole images
with long rows), as does float64.

The per-position target work (read ``x[n, t, d]``, its class weight, the ignored positions; in backward,
subtract at ``[n, t, d]``) is a compiled loop when numba is installed: as array expressions it needs
four int64 index arrays of the positions' size. Without numba :mod:`shendu.ops.loss` uses the array expressions.
"""

from __future__ import annotations

import numpy as np

from shendu.ops.kernels.parallel import split_rows
from shendu.ops.kernels.workspace import workspace

try:
    from numba import njit

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is optional
    AVAILABLE = False

__all__ = ["AVAILABLE", "accepts", "logsumexp_classes", "softmax_classes", "nll_at_targets", "subtract_at_targets"]

_CHUNK_BYTES = 1 << 20


def accepts(*arrays) -> bool:
    """Whether these arrays go through the kernels: NumPy float32/float64 arrays of one dtype."""
    a0 = arrays[0]
    return a0.dtype in (np.float32, np.float64) and all(type(a) is np.ndarray and a.dtype == a0.dtype for a in arrays)


def _rows_per_chunk(x3: np.ndarray) -> int:
    return max(1, _CHUNK_BYTES // max(1, x3[0].nbytes))


def logsumexp_classes(x3: np.ndarray) -> np.ndarray:
    """``log(sum_c exp(x3[n, c, d]))`` for ``x3`` (N, C, D): ``(N, D)``, computed stably.

    >>> x = np.log(np.array([[[1.0], [3.0]]]))  # N=1, C=2, D=1
    >>> float(np.exp(logsumexp_classes(x))[0, 0])
    4.0
    """
    N, C, D = x3.shape
    if _fused(x3):
        return _logsumexp_fused(x3)
    out = np.empty((N, D), x3.dtype)
    step = _rows_per_chunk(x3)

    def rows(lo, hi):
        scratch = workspace("softmax.exp", min(step, hi - lo) * C * D, x3.dtype)
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            m = x3[a:b].max(axis=1)
            e = scratch[:(b - a) * C * D].reshape(b - a, C, D)
            np.subtract(x3[a:b], m[:, None], out=e)
            np.exp(e, out=e)
            s = out[a:b]
            np.sum(e, axis=1, out=s)
            np.log(s, out=s)
            s += m

    split_rows(rows, N, x3.size)
    return out


def softmax_classes(x3: np.ndarray, lse: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``exp(x3 - lse[:, None]) * scale[:, None]``: the class probabilities (``lse`` from
    :func:`logsumexp_classes`), each position scaled by ``scale`` (N, D); a new (N, C, D) array.

    >>> x = np.log(np.array([[[1.0], [3.0]]]))
    >>> softmax_classes(x, logsumexp_classes(x), np.ones((1, 1)))[0, :, 0].round(12).tolist()
    [0.25, 0.75]
    """
    if _fused(x3, lse, scale):
        return _softmax_fused(x3, lse, scale)
    out = np.empty(x3.shape, x3.dtype)
    step = _rows_per_chunk(x3)

    def rows(lo, hi):
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            p = out[a:b]
            np.subtract(x3[a:b], lse[a:b, None], out=p)
            np.exp(p, out=p)
            p *= scale[a:b, None]

    split_rows(rows, x3.shape[0], 2 * x3.size)
    return out


if AVAILABLE:
    @njit(cache=True, nogil=True)
    def _nll_at_targets(x3, t2, lse, weight, has_weight, ignore_index, loss, wt):  # pragma: no cover - compiled
        N, D = t2.shape
        for n in range(N):
            for d in range(D):
                c = t2[n, d]
                if c == ignore_index:
                    loss[n, d] = 0
                    wt[n, d] = 0
                    continue
                w = weight[c] if has_weight else 1
                loss[n, d] = w * (lse[n, d] - x3[n, c, d])
                wt[n, d] = w

    @njit(cache=True, nogil=True)
    def _subtract_at_targets(g3, t2, ignore_index, values):  # pragma: no cover - compiled
        N, D = t2.shape
        for n in range(N):
            for d in range(D):
                c = t2[n, d]
                if c != ignore_index:
                    g3[n, c, d] -= values[n, d]


if AVAILABLE:
    _FASTMATH = {"reassoc", "contract", "nsz", "arcp"}  # sums and the polynomial vectorize; NaN and inf stay IEEE

    @njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _exp_shifted(v, out, bits):  # pragma: no cover - compiled
        # out = exp(v) for float32 v <= 0 (logits minus their max or their log-sum-exp): v = k ln2 + r
        # with |r| <= ln2 / 2, exp(r) by Cephes' expf polynomial, 2^k written into the exponent bits
        # (``bits``: int32 scratch of v's size). Below -87.33 (exp under float32's smallest normal) the
        # result is 0; NaN stays NaN. out must not overlap v (if it does, LLVM's runtime check takes the
        # unvectorized loop).
        for i in range(v.size):
            x = v[i]
            xc = x if x > np.float32(-87.33) else np.float32(-87.33)
            k = np.floor(xc * np.float32(1.44269504) + np.float32(0.5))
            r = xc - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
            p = np.float32(1.9875691500e-4)
            p = p * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            p = p * r * r + r + np.float32(1.0)
            out[i] = p if x >= np.float32(-87.33) else (np.float32(0.0) if x == x else x)
            bits[i] = (np.int32(k) + np.int32(127)) << np.int32(23)
        scale = bits.view(np.float32)
        for i in range(v.size):
            out[i] *= scale[i]

    @njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _sum_exp_rows(x2, m, lo, hi, s, d, e, bits):  # pragma: no cover - compiled
        # s[n] = sum_c exp(x2[n, c] - m[n]) for (N, C) logits: the row is in cache from the max
        C = x2.shape[1]
        for n in range(lo, hi):
            row = x2[n]
            for c in range(C):
                d[c] = row[c] - m[n]
            _exp_shifted(d, e, bits)
            total = np.float32(0.0)
            for c in range(C):
                total += e[c]
            s[n] = total

    @njit(cache=True, nogil=True, fastmath=_FASTMATH)
    def _scaled_softmax_rows(x2, lse, scale, lo, hi, out, d, bits):  # pragma: no cover - compiled
        # out[n, c] = exp(x2[n, c] - lse[n]) * scale[n] for (N, C) logits
        C = x2.shape[1]
        for n in range(lo, hi):
            o, xr = out[n], x2[n]
            for c in range(C):
                d[c] = xr[c] - lse[n]
            _exp_shifted(d, o, bits)
            for c in range(C):
                o[c] *= scale[n]


def _fused(x3, *arrays) -> bool:
    """Whether the compiled path takes these arrays: float32 NumPy arrays, one position per sample
    (classifier logits (N, C, 1)). Segmentation's (N, C, D) maps stay on the NumPy path, whose
    chunks are then whole images with long rows (its per-call cost is spread over them)."""
    return AVAILABLE and x3.shape[2] == 1 and all(
        type(a) is np.ndarray and a.dtype == np.float32 for a in (x3,) + arrays)


def _scratch(size: int) -> tuple:
    """The calling thread's float32 ``d``, ``e`` and int32 ``bits`` of ``size`` elements (a workspace
    may be longer than asked: the kernels take an array's size as its length)."""
    return (workspace("softmax.d", size, np.float32)[:size], workspace("softmax.e", size, np.float32)[:size],
            workspace("softmax.bits", size, np.int32)[:size])


def _logsumexp_fused(x3: np.ndarray) -> np.ndarray:
    N, C = x3.shape[:2]
    x2 = np.ascontiguousarray(x3.reshape(N, C))
    m = x2.max(axis=1)  # NumPy's max: vectorized, and NaN in, NaN out
    s = np.empty(N, x2.dtype)

    def rows(lo, hi):
        _sum_exp_rows(x2, m, lo, hi, s, *_scratch(C))

    split_rows(rows, N, x2.size)
    np.log(s, out=s)
    s += m
    return s.reshape(N, 1)


def _softmax_fused(x3: np.ndarray, lse: np.ndarray, scale: np.ndarray) -> np.ndarray:
    N, C = x3.shape[:2]
    x2 = np.ascontiguousarray(x3.reshape(N, C))
    lse, scale = np.ascontiguousarray(lse.reshape(N)), np.ascontiguousarray(scale.reshape(N))
    out = np.empty((N, C), x2.dtype)

    def rows(lo, hi):
        d, _, bits = _scratch(C)
        _scaled_softmax_rows(x2, lse, scale, lo, hi, out, d, bits)

    split_rows(rows, N, 2 * x2.size)
    return out.reshape(N, C, 1)


def nll_at_targets(x3, t2, lse, weight, ignore_index):
    """``(loss, wt)`` per position (N, D): ``wt = weight[t]`` (1 without weights, 0 where ``t`` is
    ``ignore_index``) and ``loss = wt * (lse - x3[n, t, d])``; None without numba. The targets must be
    in range (the caller checks them).

    >>> x = np.log(np.array([[[1.0], [3.0]]]))
    >>> loss, wt = nll_at_targets(x, np.array([[1]]), logsumexp_classes(x), None, -100)
    >>> round(float(loss[0, 0]), 6), wt.tolist()  # -log(3/4)
    (0.287682, [[1.0]])
    """
    if not AVAILABLE:
        return None
    loss, wt = np.empty(t2.shape, x3.dtype), np.empty(t2.shape, x3.dtype)
    has_weight = weight is not None
    w = weight.astype(x3.dtype, copy=False) if has_weight else np.ones(1, x3.dtype)
    _nll_at_targets(x3, t2, lse, w, has_weight, ignore_index, loss, wt)
    return loss, wt


def subtract_at_targets(g3, t2, ignore_index, values) -> bool:
    """``g3[n, t[n, d], d] -= values[n, d]`` in place, skipping ``ignore_index``; False without numba."""
    if not AVAILABLE:
        return False
    _subtract_at_targets(g3, t2, ignore_index, values)
    return True
