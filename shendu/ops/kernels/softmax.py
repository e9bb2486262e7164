"""Log-sum-exp and softmax over the class axis of ``(N, C, D)`` arrays, for the fused cross-entropy.

Why a kernel: a segmentation loss sees ``(32, 11, 128 * 128)`` logits, 5.8 M values. Written as plain
array expressions, every step (``x - max``, ``exp``, ``log p``) allocated a fresh 23 MB array, and a
fresh array costs a page fault per 4 KB on first touch; the loss took 4x torch's time. Here the rows
are cut into chunks of about ``_CHUNK_BYTES`` (a few images, or a few hundred samples of a
classifier), so the temporaries of a chunk stay in cache and in a reused workspace, and the chunks are
split over the kernel threads (NumPy's ufuncs release the GIL). Same arithmetic as the expressions:
``lse = m + log(sum_c exp(x_c - m))`` with ``m = max_c x_c``.

The per-position target work (read ``x[n, t, d]``, its class weight, the ignored positions; in backward,
subtract at ``[n, t, d]``) is a compiled loop when numba is installed: as array expressions it needs
four int64 index arrays of the positions' size. The exponentials stay NumPy's (SIMD; numba's ``exp``
here is the scalar libm call). Without numba :mod:`shendu.ops.loss` uses the array expressions.
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
