"""A single image's convolution on a small map (at most :data:`MAX_PIXELS` output pixels), compiled with
numba: ``y (K, P*Q) = w (K, C*kh*kw) @ columns``, written as dot products of the filters' rows with
the image's patches.

Why not BLAS: with 16 or 49 output pixels (the last stage of a ResNet at 28x28 or 224x224) the GEMM
has as few columns, and OpenBLAS copies (packs) the whole filter matrix, 9.4 MB for 512 -> 512 channels
3x3, for a product that reads it once: 60-75 GF/s on one thread. Here the patches are laid out one per
row (``(pixels, C*kh*kw)``, the padding as zeros, a patch-major im2col), so each output is the dot product
of two contiguous rows; a block of 6 filters by 4 patches keeps 24 sums in registers and reads the
filters where they are. Measured (one thread, 2-core AVX-512 VM): 512 x 4608 x 16 89-111 GF/s against
OpenBLAS's 60, 512 x 4608 x 49 94 against 74; with the filters out of cache 0.98 against 1.66 ms and
2.54 against 3.25 ms.

Two regions of numba's OpenMP team (:mod:`shendu.ops.kernels.team`): the threads share the patches
(pixels), then the filters (blocks of 6 rows).
"""

from __future__ import annotations

import numpy as np

from shendu.ops.kernels import parallel
from shendu.ops.kernels.col2im_numba import _ranges
from shendu.ops.kernels.workspace import workspace

try:
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is optional
    AVAILABLE = False

__all__ = ["AVAILABLE", "MAX_PIXELS", "conv2d_image"]

# Output pixels up to which a single image's convolution takes the dot-product kernel (a 7x7 map is 49).
MAX_PIXELS = 64

_ROWS, _COLS = 6, 4  # the register block: filters x patches


if AVAILABLE:
    @njit(nogil=True, cache=True)
    def _fill_patches(x, patches, rows, cols, sh, sw, Q, lo, hi):  # pragma: no cover - compiled
        # patches[p*Q + q, (c*kh + u)*kw + v] = x[c, i, j], zero in the padding, for the rows lo:hi; rows
        # past the map's pixels are zeros. rows[u] = (u, p0, p1, i0): output rows p0 <= p < p1 read input
        # row i0 + (p - p0)*sh; cols[v] likewise. A row past the map (p >= P) is inside no range: zeros.
        C = x.shape[0]
        kh, kw = rows.shape[0], cols.shape[0]
        zero = x.dtype.type(0)
        ii = np.empty(kh, np.int64)
        jj = np.empty(kw, np.int64)
        for pq in range(lo, hi):
            row = patches[pq]
            p, q = pq // Q, pq % Q
            for u in range(kh):
                ii[u] = rows[u, 3] + (p - rows[u, 1]) * sh if rows[u, 1] <= p < rows[u, 2] else -1
            for v in range(kw):
                jj[v] = cols[v, 3] + (q - cols[v, 1]) * sw if cols[v, 1] <= q < cols[v, 2] else -1
            k = 0
            for c in range(C):
                for u in range(kh):
                    i = ii[u]
                    if i < 0:
                        for v in range(kw):
                            row[k + v] = zero
                    else:
                        line = x[c, i]
                        for v in range(kw):
                            j = jj[v]
                            row[k + v] = line[j] if j >= 0 else zero
                    k += kw

    @njit(nogil=True, cache=True, fastmath=True)
    def _dots(w, patches, out, lo, hi):  # pragma: no cover - compiled
        # out[m, j] = w[m] . patches[j] for the filters lo:hi (lo a multiple of 6, hi too unless the last)
        R, J = w.shape[1], out.shape[1]
        zero = w.dtype.type(0)
        m = lo
        while m + _ROWS <= hi:
            w0, w1, w2, w3, w4, w5 = w[m], w[m + 1], w[m + 2], w[m + 3], w[m + 4], w[m + 5]
            for j in range(0, J, _COLS):
                b0, b1, b2, b3 = patches[j], patches[j + 1], patches[j + 2], patches[j + 3]
                s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
                s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
                s40 = s41 = s42 = s43 = s50 = s51 = s52 = s53 = zero
                for r in range(R):  # 24 sums in registers: 6 filter values times 4 patch values a step
                    y0, y1, y2, y3 = b0[r], b1[r], b2[r], b3[r]
                    x = w0[r]
                    s00, s01, s02, s03 = s00 + x * y0, s01 + x * y1, s02 + x * y2, s03 + x * y3
                    x = w1[r]
                    s10, s11, s12, s13 = s10 + x * y0, s11 + x * y1, s12 + x * y2, s13 + x * y3
                    x = w2[r]
                    s20, s21, s22, s23 = s20 + x * y0, s21 + x * y1, s22 + x * y2, s23 + x * y3
                    x = w3[r]
                    s30, s31, s32, s33 = s30 + x * y0, s31 + x * y1, s32 + x * y2, s33 + x * y3
                    x = w4[r]
                    s40, s41, s42, s43 = s40 + x * y0, s41 + x * y1, s42 + x * y2, s43 + x * y3
                    x = w5[r]
                    s50, s51, s52, s53 = s50 + x * y0, s51 + x * y1, s52 + x * y2, s53 + x * y3
                sums = ((s00, s01, s02, s03), (s10, s11, s12, s13), (s20, s21, s22, s23),
                        (s30, s31, s32, s33), (s40, s41, s42, s43), (s50, s51, s52, s53))
                for i in range(_ROWS):
                    for t in range(_COLS):
                        if j + t < J:
                            out[m + i, j + t] = sums[i][t]
            m += _ROWS
        for i in range(m, hi):  # the last rows, one at a time
            for j in range(J):
                s = zero
                for r in range(R):
                    s += w[i, r] * patches[j, r]
                out[i, j] = s

    @njit(parallel=True, nogil=True, cache=True)
    def _conv_team(x, w, patches, out, rows, cols, sh, sw, Q, threads):  # pragma: no cover - compiled
        J, M = patches.shape[0], w.shape[0]
        for t in prange(threads):
            _fill_patches(x, patches, rows, cols, sh, sw, Q, J * t // threads, J * (t + 1) // threads)
        blocks = (M + _ROWS - 1) // _ROWS
        for t in prange(threads):
            _dots(w, patches, out, min(M, blocks * t // threads * _ROWS), min(M, blocks * (t + 1) // threads * _ROWS))


def conv2d_image(x: np.ndarray, wmat: np.ndarray, y: np.ndarray, rows, cols, stride, Q: int) -> bool:
    """``y (K, P*Q) = wmat (K, C*kh*kw) @ im2col(x)`` for one image ``x (C, H, W)`` on the team's
    threads; ``rows``/``cols`` are :func:`shendu.ops.kernels.im2col.offset_ranges`' of the geometry.
    False (nothing done) when the kernel cannot take these arrays: numba missing, one thread, another
    dtype, mixed dtypes, or not C-contiguous."""
    threads = parallel.num_threads()
    if not (AVAILABLE and threads > 1 and x.dtype in (np.float32, np.float64) and wmat.dtype == x.dtype
            and y.dtype == x.dtype and x.flags.c_contiguous and wmat.flags.c_contiguous and y.flags.c_contiguous):
        return False
    J = -(-y.shape[1] // _COLS) * _COLS  # patches padded to whole blocks, the extra rows zeros
    patches = workspace("narrow.patches", J * wmat.shape[1], x.dtype).reshape(J, wmat.shape[1])
    _conv_team(x, wmat, patches, y, _ranges(tuple(rows)), _ranges(tuple(cols)), int(stride[0]), int(stride[1]),
               int(Q), threads)
    parallel.note_team_region()
    return True
