"""col2im compiled with numba: the scatter-add of :func:`shendu.ops.kernels.im2col._add_cols`.

NumPy adds each of the ``kh * kw`` shifted blocks with one strided ``+=``, whose inner loop is one
output row: with short rows (LeNet's 28 pixels, ResNet's 14 or 7) the per-row cost of NumPy's strided
iteration dominates. Here every row is a plain loop the compiler vectorizes, and an image's gradient
plane stays in cache while all its offsets are added. Measured (one thread, 2-core VM): LeNet's 5x5
col2im on 32 images 2.0 -> 0.75 ms, stage 4 (256 x 14 x 14, 3x3) 28 -> 16 ms, 32 x 28 x 28 even.
Serial and ``nogil``: the chunk threads of :mod:`shendu.ops.kernels.parallel` run it on their chunks.

:func:`fill_cols` is the other direction, for inference on numba's OpenMP team
(:mod:`shendu.ops.kernels.team`): im2col with the padding written as zeros in the same pass, blocks of
(channel, kernel row) pairs shared over the team's threads; :func:`conv_team` is a batch's inference
convolution on the team, each thread filling and multiplying whole chunks of images. Indices are
unsigned, so numba adds no negative-index checks and the row copies vectorize. Measured on one thread
(best of 9 x 100 calls, idle): 32 us against NumPy's 47 us (zero fill plus ``kh * kw`` strided copies)
for a 64-channel 3x3 layer at 14x14, 24 against 39 us for 32 channels at 28x28 with stride 2.
"""

from __future__ import annotations

import functools

import numpy as np

from shendu.ops.kernels import parallel
from shendu.ops.kernels import team as _team
from shendu.ops.kernels.workspace import workspace

try:
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is optional
    AVAILABLE = False

__all__ = ["AVAILABLE", "add_cols", "conv_team", "fill_cols"]


if AVAILABLE:
    @njit(cache=True, nogil=True)
    def _add_cols(dcols, gx, rows, cols, sh, sw):  # pragma: no cover - compiled
        C, _, _, n_images = dcols.shape[:4]
        for n in range(n_images):
            for c in range(C):
                plane = gx[n, c]
                for r in range(rows.shape[0]):
                    u, p0, p1, i0 = rows[r, 0], rows[r, 1], rows[r, 2], rows[r, 3]
                    for t in range(cols.shape[0]):
                        v, q0, q1, j0 = cols[t, 0], cols[t, 1], cols[t, 2], cols[t, 3]
                        for p in range(p0, p1):
                            src = dcols[c, u, v, n, p]
                            dst = plane[i0 + (p - p0) * sh]
                            if sw == 1:
                                for q in range(q0, q1):
                                    dst[j0 + q - q0] += src[q]
                            else:
                                for q in range(q0, q1):
                                    dst[j0 + (q - q0) * sw] += src[q]


    @njit(nogil=True, cache=True)
    def _fill_cols_pairs(x, buf, rows, cols, sh, sw, lo, hi):  # pragma: no cover - compiled
        # the (channel, kernel row) pairs lo:hi; x (n, C, H, W), buf (C, kh, kw, n, P, Q), both C-contiguous
        n, C, H, W = x.shape
        kh, kw, P, Q = rows.shape[0], cols.shape[0], buf.shape[4], buf.shape[5]
        xf, bf = x.reshape(-1), buf.reshape(-1)
        zero = x.dtype.type(0)
        for cu in range(lo, hi):
            c, u = cu // kh, cu % kh
            p0, p1, i0 = rows[u, 1], rows[u, 2], rows[u, 3]
            for v in range(kw):
                q0, q1, j0 = cols[v, 1], cols[v, 2], cols[v, 3]
                for img in range(n):
                    block = np.uint64((((c * kh + u) * kw + v) * n + img) * P * Q)
                    for p in range(P):
                        d = block + np.uint64(p * Q)
                        if p < p0 or p >= p1:  # the window's row is padding
                            for q in range(Q):
                                bf[d + np.uint64(q)] = zero
                            continue
                        s = np.uint64(((img * C + c) * H + i0 + (p - p0) * sh) * W + j0)
                        for q in range(q0):
                            bf[d + np.uint64(q)] = zero
                        if sw == 1:
                            for q in range(q1 - q0):
                                bf[d + np.uint64(q0 + q)] = xf[s + np.uint64(q)]
                        else:
                            for q in range(q1 - q0):
                                bf[d + np.uint64(q0 + q)] = xf[s + np.uint64(q * sw)]
                        for q in range(q1, Q):
                            bf[d + np.uint64(q)] = zero

    @njit(parallel=True, nogil=True, cache=True)
    def _fill_cols(x, buf, rows, cols, sh, sw, threads):  # pragma: no cover - compiled
        pairs = x.shape[1] * rows.shape[0]  # blocks of (channel, kernel row) pairs: even for a 3-channel stem
        for t in prange(threads):
            _fill_cols_pairs(x, buf, rows, cols, sh, sw, pairs * t // threads, pairs * (t + 1) // threads)


    @njit(parallel=True, nogil=True, cache=True)
    def _conv_chunks(x, wmat, y, rows, cols, sh, sw, P, Q, nb, bufs, outs, ints, consts,
                     threads):  # pragma: no cover - compiled
        # thread t takes chunks t, t + threads, ... of nb images: fills their columns into bufs[t], then
        # y[img] = wmat @ columns by BLAS, per image (or one GEMM over a chunk of small maps into outs[t])
        N, C = x.shape[0], x.shape[1]
        K, CRS = wmat.shape
        kh, kw = rows.shape[0], cols.shape[0]
        PQ, it = P * Q, x.itemsize
        chunks = (N + nb - 1) // nb
        for t in prange(threads):
            for ch in range(t, chunks, threads):
                lo = ch * nb
                n = min(N, lo + nb) - lo
                buf = bufs[t][:CRS * n * PQ].reshape((C, kh, kw, n, P, Q))
                _fill_cols_pairs(x[lo:lo + n], buf, rows, cols, sh, sw, 0, C * kh)
                if n == 1 or PQ >= _OWN_GEMM_PIXELS:
                    for i in range(n):
                        _team._call(ints[t], consts, it, 0, 0, K, PQ, CRS, wmat.ctypes.data, CRS,
                                    buf.ctypes.data + i * PQ * it, n * PQ, y[lo + i].ctypes.data, PQ)
                else:
                    out = outs[t][:K * n * PQ].reshape((K, n, PQ))
                    _team._call(ints[t], consts, it, 0, 0, K, n * PQ, CRS, wmat.ctypes.data, CRS, buf.ctypes.data,
                                n * PQ, out.ctypes.data, n * PQ)
                    for i in range(n):
                        y[lo + i] = out[:, i]


@functools.lru_cache(maxsize=1024)
def _ranges(ranges: tuple) -> np.ndarray:
    """Offset ranges as the (k, 4) int64 array the kernels read (layers repeat their geometry)."""
    return np.asarray(ranges, np.int64).reshape(-1, 4)


def fill_cols(x, buf, rows, cols, stride, threads: int) -> bool:
    """im2col of ``x`` (n, C, H, W) into ``buf`` (C, kh, kw, n, P, Q), every element written (the padding
    as zeros), blocks of (channel, kernel row) pairs on ``threads`` threads of numba's OpenMP team (or
the calling thread alone when ``threads`` is 1); the offset ranges
    ``rows``/``cols`` are :func:`shendu.ops.kernels.im2col.offset_ranges`'. False (nothing done) when the
    kernel cannot take these arrays (numba missing, another dtype, not C-contiguous)."""
    if not (AVAILABLE and x.dtype in (np.float32, np.float64) and buf.dtype == x.dtype
            and x.flags.c_contiguous and buf.flags.c_contiguous):
        return False
    args = (x, buf, _ranges(tuple(rows)), _ranges(tuple(cols)), int(stride[0]), int(stride[1]))
    if threads == 1:  # no region to launch
        _fill_cols_pairs(*args, 0, x.shape[1] * len(rows))
    else:
        _fill_cols(*args, threads)
    return True


def add_cols(dcols, gx, rows, cols, stride) -> bool:
    """``gx (n, C, H, W) += col2im(dcols (C, kh, kw, n, P, Q))`` for the offset ranges ``rows`` and
    ``cols`` of :func:`shendu.ops.kernels.im2col.offset_ranges`. False (nothing done) when the kernel
    cannot take these arrays: numba missing, another dtype, or mixed dtypes."""
    if not (AVAILABLE and gx.dtype in (np.float32, np.float64) and dcols.dtype == gx.dtype):
        return False
    _add_cols(dcols, gx, _ranges(tuple(rows)), _ranges(tuple(cols)), int(stride[0]), int(stride[1]))
    return True


# Column bytes per thread's chunk on the team: an image's columns, or a few, stay in its core's cache
# from the fill to the GEMM (measured, batch 32, two threads: 256-512 KB against 1 MB and against the
# whole batch filled by the team and then multiplied; see conv_team).
_TEAM_CHUNK_BYTES = 512 << 10
# Maps from which each image gets its own GEMM straight into y; smaller maps take one GEMM over the
# chunk (wider for BLAS) and a copy.
_OWN_GEMM_PIXELS = 256


def conv_team(x, wmat, y, rows, cols, stride, out_hw) -> bool:
    """``y[n] (K, P*Q) = wmat (K, C*kh*kw) @ im2col(x[n])`` for a batch ``x (N, C, H, W)`` on the team's
    threads, each taking whole chunks of images (:data:`_TEAM_CHUNK_BYTES` of columns): it fills their
    columns and runs their GEMMs itself, so the columns are read back from its own cache. Sharing the fill
    of the whole batch and then the GEMMs moved every column between the cores and through memory (batch 32,
    two threads: ResNet's 7x7 stem at 224x224 96 -> 82 ms, 64 -> 128 channels stride 2 at 56x56 35.7 ->
    22.7 ms, torch 39 and 22; a throwaway script). False (nothing done) when the kernel cannot take these
    arrays: numba missing, fewer than two threads, another dtype, mixed dtypes, or not C-contiguous."""
    threads = parallel.num_threads()
    if not (AVAILABLE and threads > 1 and x.dtype in (np.float32, np.float64) and wmat.dtype == x.dtype
            and y.dtype == x.dtype and x.flags.c_contiguous and wmat.flags.c_contiguous and y.flags.c_contiguous):
        return False
    P, Q = out_hw
    N = x.shape[0]
    K, CRS = wmat.shape
    nb = max(1, min(N, _TEAM_CHUNK_BYTES // max(1, CRS * P * Q * x.itemsize)))
    bufs = workspace("im2col.team.cols", threads * CRS * nb * P * Q, x.dtype).reshape(threads, -1)
    outs = workspace("im2col.team.out", threads * K * nb * P * Q, x.dtype).reshape(threads, -1)
    with parallel.single_threaded_blas():  # BLAS runs inside the team's threads: one thread each
        _conv_chunks(x, wmat, y.reshape(N, K, P * Q), _ranges(tuple(rows)), _ranges(tuple(cols)), int(stride[0]),
                     int(stride[1]), P, Q, nb, bufs, outs, np.empty((threads, 6), np.int32), _team.consts_address(),
                     threads)
    parallel.note_team_region()
    return True
