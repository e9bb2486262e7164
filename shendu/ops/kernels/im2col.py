"""im2col / col2im and the GEMM convolution built on them (NCHW, no autograd).

The notes' matrix form: for one image the columns matrix has ``C*kh*kw`` rows and ``P*Q`` columns
(one column per output pixel), row index ``c*kh*kw + u*kw + v`` — the order of ``torch.nn.functional.
unfold`` and of ``w.reshape(K, -1)`` — so the convolution is one GEMM ``y = w.reshape(K, -1) @ cols``.
:func:`im2col` returns ``(N, C*kh*kw, P*Q)``: the notes' K x N matrix of every image, stacked.

Speed decisions:

- No padded copy of the input: for each kernel offset only the rows/columns of the output whose
  window lands inside the image are copied; the rest of the (reused, zero-filled once per call) column
  buffer stays zero. That is the padding.
- The batch is processed in chunks whose column buffer stays cache-sized (``_CHUNK_BYTES``). Maps of
  at least ``_MIN_COLUMNS`` output pixels lay the columns out image by image, one GEMM per image
  written straight into the NCHW output and reading ``gy`` as it is; smaller maps lay them out
  channel-major, one wide GEMM per chunk (many narrow per-image GEMMs would run at half speed) and a
  transposed copy of ``y``/``gy``.
- A single image (batch-1 inference) splits its GEMM over the threads by output pixels, or by output
  channels for maps too small to give each thread 64 pixels; on numba's team a map of at most 64 pixels
  is computed as dot products instead (:mod:`shendu.ops.kernels.narrow_numba`), and an inference batch
  gives each thread whole chunks of images to fill and multiply (:func:`shendu.ops.kernels.col2im_numba.conv_team`).
- Backward recomputes the columns chunk by chunk instead of saving them (memory stays ~1 chunk),
  and col2im adds the ``kh*kw`` shifted blocks back with strided ``+=`` (adding overlaps, never
  assigning: assigning is the classic col2im bug).
- A 1x1, stride-1, unpadded convolution is a plain GEMM on the input itself (no column matrix).

Geometry arguments everywhere: ``stride=(sh, sw)``, ``pads=(top, bottom, left, right)``,
``dilation=(dh, dw)``, ``groups``; weights ``(K, C/groups, kh, kw)`` as in PyTorch.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from shendu.ops.kernels import col2im_numba as _col2im_numba
from shendu.ops.kernels import narrow_numba as _narrow
from shendu.ops.kernels import team as _team
from shendu.ops.kernels.parallel import chunk_size, num_threads, parallel_chunks, single_threaded_blas, split_rows
from shendu.ops.kernels.workspace import workspace

__all__ = ["out_size", "offset_ranges", "im2col", "col2im", "conv2d", "conv2d_grads", "gemm_chunk"]

# Bytes of column matrix per chunk (one GEMM): large enough for BLAS efficiency, small enough that
# the copy and the GEMM reading it stay in cache.
_CHUNK_BYTES = 2 << 20
_MIN_COLUMNS = 512


def out_size(size: int, k: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length of a convolution: ``floor((size + pads - d(k-1) - 1) / s) + 1``."""
    return (size + pad_total - dilation * (k - 1) - 1) // stride + 1


def offset_ranges(size: int, out: int, k: int, stride: int, pad_before: int, dilation: int) -> list:
    """For each kernel offset ``u``: ``(u, p0, p1, i0)`` such that output positions ``p0 <= p < p1``
    read input index ``i0 + (p - p0) * stride``, all inside ``[0, size)`` (the others read padding)."""
    ranges = []
    for u in range(k):
        shift = u * dilation - pad_before  # input index read by output position 0
        p0 = min(out, max(0, -(shift // stride)))  # first p with p*s + shift >= 0 (a ceil division)
        p1 = max(p0, min(out, (size - 1 - shift) // stride + 1))  # past the last p inside the image
        ranges.append((u, p0, p1, p0 * stride + shift))
    return ranges


def _geometry(x_shape, w_shape, stride, pads, dilation, out_hw=None):
    """``(P, Q, row ranges, column ranges)`` of a convolution; cached, as layers repeat their shapes."""
    return _geometry_of(tuple(x_shape), tuple(w_shape), tuple(stride), tuple(pads), tuple(dilation),
                        None if out_hw is None else tuple(out_hw))


@functools.lru_cache(maxsize=1024)
def _geometry_of(x_shape, w_shape, stride, pads, dilation, out_hw):
    H, W = x_shape[2:]
    kh, kw = w_shape[2:]
    if out_hw is None:
        out_hw = (out_size(H, kh, stride[0], pads[0] + pads[1], dilation[0]),
                  out_size(W, kw, stride[1], pads[2] + pads[3], dilation[1]))
    P, Q = out_hw
    rows = offset_ranges(H, P, kh, stride[0], pads[0], dilation[0])
    cols = offset_ranges(W, Q, kw, stride[1], pads[2], dilation[1])
    return P, Q, rows, cols


def _fill_cols(x, buf, rows, cols, stride):
    """Copy the in-image part of every shifted window of ``x`` (n, C, H, W) into ``buf``
    (C, kh, kw, n, P, Q); the padding part of ``buf`` is left as it is (zeros)."""
    sh, sw = stride
    xt = x.transpose(1, 0, 2, 3)
    for u, p0, p1, i0 in rows:
        if p1 <= p0:
            continue
        for v, q0, q1, j0 in cols:
            if q1 <= q0:
                continue
            buf[:, u, v, :, p0:p1, q0:q1] = xt[:, :, i0:i0 + (p1 - p0 - 1) * sh + 1:sh,
                                               j0:j0 + (q1 - q0 - 1) * sw + 1:sw]


def _add_cols(dcols, gx, rows, cols, stride):
    """col2im: add every shifted block of ``dcols`` (C, kh, kw, n, P, Q) back into ``gx`` (n, C, H, W):
    the compiled loop when numba is there (:mod:`shendu.ops.kernels.col2im_numba`), else NumPy's
    strided adds below (the reference)."""
    if _col2im_numba.add_cols(dcols, gx, rows, cols, stride):
        return
    sh, sw = stride
    gxt = gx.transpose(1, 0, 2, 3)
    for u, p0, p1, i0 in rows:
        if p1 <= p0:
            continue
        for v, q0, q1, j0 in cols:
            if q1 <= q0:
                continue
            gxt[:, :, i0:i0 + (p1 - p0 - 1) * sh + 1:sh, j0:j0 + (q1 - q0 - 1) * sw + 1:sw] += \
                dcols[:, u, v, :, p0:p1, q0:q1]


def im2col(x, kernel_size, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1)) -> np.ndarray:
    """Columns of ``x`` (N, C, H, W): ``(N, C*kh*kw, P*Q)``, row ``c*kh*kw + u*kw + v`` (= ``F.unfold``).

    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> im2col(x, (2, 2), stride=(2, 2))[0]
    array([[ 0.,  2.,  8., 10.],
           [ 1.,  3.,  9., 11.],
           [ 4.,  6., 12., 14.],
           [ 5.,  7., 13., 15.]])
    """
    N, C = x.shape[:2]
    kh, kw = kernel_size
    P, Q, rows, cols = _geometry(x.shape, (0, 0, kh, kw), stride, pads, dilation)
    buf = np.zeros((N, C, kh, kw, P, Q), x.dtype)
    _fill_cols(x, buf.transpose(1, 2, 3, 0, 4, 5), rows, cols, stride)
    return buf.reshape(N, C * kh * kw, P * Q)


def col2im(cols, x_shape, kernel_size, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1),
           out_hw=None) -> np.ndarray:
    """The adjoint of :func:`im2col` (= ``F.fold``): scatter-ADD ``cols`` (N, C*kh*kw, P*Q) into an
    image of shape ``x_shape``; a pixel covered by several windows receives the sum."""
    N, C = x_shape[:2]
    kh, kw = kernel_size
    P, Q, rows, cs = _geometry(x_shape, (0, 0, kh, kw), stride, pads, dilation, out_hw)
    gx = np.zeros(x_shape, cols.dtype)
    _add_cols(cols.reshape(N, C, kh, kw, P, Q).transpose(1, 2, 3, 0, 4, 5), gx, rows, cs, stride)
    return gx


def _is_plain_gemm(w_shape, stride, pads, dilation) -> bool:
    return tuple(w_shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and not any(pads)


def gemm_chunk(N: int, per_sample_bytes: int) -> int:
    """How many images one chunk (one GEMM per thread) takes; shared with the other algorithms."""
    return chunk_size(N, per_sample_bytes, _CHUNK_BYTES)


def _gemm_chunk(N: int, rows: int, PQ: int, itemsize: int) -> int:
    """Images per chunk of a column matrix with ``rows`` rows and ``PQ`` columns per image: at least
    ``_MIN_COLUMNS`` GEMM columns (narrow GEMMs run at half speed), otherwise about
    ``_CHUNK_BYTES`` (so the freshly written columns are still in cache for the GEMM)."""
    nb = gemm_chunk(N, rows * PQ * itemsize)
    return max(nb, min(-(-_MIN_COLUMNS // PQ), -(-N // 2)))


class _Scratch:
    """A thread's flat buffers, viewed per chunk; the thread's workspaces (kept from call to call, so
    their contents are undefined at first). The zeros of a column buffer are the padding: :meth:`view`
    with ``keep_zeros`` zeroes it on its first use in a call and again only when a chunk of another
    size lays it out differently; between chunks of one size they survive. The other buffers are
    written whole by every chunk."""

    def __init__(self, dtype, **sizes):
        self.flat = {k: workspace("im2col." + k, v, dtype) for k, v in sizes.items() if v}
        self.n = {}

    def view(self, name, shape, n, keep_zeros=False):
        flat = self.flat[name]
        if keep_zeros and self.n.get(name) != n:
            flat.fill(0)
            self.n[name] = n
        return flat[:math.prod(shape)].reshape(shape)


def conv2d(x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1, bias=None,
           team=False) -> np.ndarray:
    """Cross-correlation by im2col + GEMM: ``y[n] = w.reshape(K, -1) @ cols[n] (+ bias)``.

    Per chunk of n images: maps of at least ``_MIN_COLUMNS`` pixels lay the columns out
    ``(n, C*kh*kw, P*Q)``, one GEMM per image into the NCHW output; smaller maps lay them out
    ``(C*kh*kw, n*P*Q)``, one GEMM with ``n*P*Q`` columns whose ``(K, n, P*Q)`` result is transposed
    into the output. The bias is added per chunk, while its output is in cache. A single image, and any
    batch when ``team`` (an inference forward), run on numba's OpenMP team instead (:func:`_conv2d_team`).
    """
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    G, Kg, CgRS = groups, K // groups, Cg * kh * kw
    wmat = w.reshape(G, Kg, CgRS)
    P, Q, rows, cols = _geometry(x.shape, w.shape, stride, pads, dilation)
    PQ = P * Q
    y = np.empty((N, G, Kg, PQ), x.dtype)
    b3 = None if bias is None else bias.reshape(G, Kg, 1)
    plain = _is_plain_gemm(w.shape, stride, pads, dilation)
    if ((team or N == 1) and G == 1 and x.dtype in (np.float32, np.float64) and _col2im_numba.AVAILABLE
            and _team.worth(N * K * CgRS * PQ)):
        _conv2d_team(np.ascontiguousarray(x), wmat[0], y[:, 0], plain, (P, Q), rows, cols, stride)
        if b3 is not None:
            y += b3
        return y.reshape(N, K, P, Q)
    if plain:  # the input is already the column matrix
        if N == 1 and num_threads() > 1:
            _split_gemm(wmat, x.reshape(G, Cg, H * W), y[0], b3)
            return y.reshape(N, K, P, Q)

        def plain_chunk(_, lo, hi):
            np.matmul(wmat, x[lo:hi].reshape(hi - lo, G, Cg, H * W), out=y[lo:hi])
            if b3 is not None:
                y[lo:hi] += b3

        parallel_chunks(plain_chunk, N, gemm_chunk(N, C * H * W * x.itemsize))
        return y.reshape(N, K, P, Q)
    if N == 1 and num_threads() > 1:  # one image: the threads share its GEMM instead
        buf = workspace("im2col.cols", C * kh * kw * PQ, x.dtype).reshape(C, kh, kw, 1, P, Q)
        # the compiled fill on this thread (a small image, or groups: under the team's size) writes every
        # element: 1.8 us against 10 for zeros and NumPy's copies (1 -> 32 channels, 3x3, 28x28)
        if not (x.dtype in (np.float32, np.float64) and _col2im_numba.fill_cols(
                np.ascontiguousarray(x), buf, rows, cols, stride, 1)):
            buf.fill(0)
            split_rows(lambda lo, hi: _fill_cols(x[:, lo:hi], buf[lo:hi], rows, cols, stride), C, buf.size)
        _split_gemm(wmat, buf.reshape(G, CgRS, PQ), y[0], b3)
        return y.reshape(N, K, P, Q)
    nb = _gemm_chunk(N, C * kh * kw, PQ, x.itemsize)
    image_major = PQ >= _MIN_COLUMNS

    def scratch():
        return _Scratch(x.dtype, cols=C * kh * kw * nb * PQ, out=0 if image_major else K * nb * PQ)

    def run(s, lo, hi):
        n = hi - lo
        if image_major:  # one GEMM per image, written straight into y
            buf = s.view("cols", (n, C, kh, kw, P, Q), n, keep_zeros=True)
            _fill_cols(x[lo:hi], buf.transpose(1, 2, 3, 0, 4, 5), rows, cols, stride)
            np.matmul(wmat, buf.reshape(n, G, CgRS, PQ), out=y[lo:hi])
            if b3 is not None:
                y[lo:hi] += b3
            return
        buf = s.view("cols", (C, kh, kw, n, P, Q), n, keep_zeros=True)
        _fill_cols(x[lo:hi], buf, rows, cols, stride)
        out = s.view("out", (G, Kg, n * PQ), n)
        np.matmul(wmat, buf.reshape(G, CgRS, n * PQ), out=out)
        if b3 is not None:
            out += b3
        y[lo:hi] = out.reshape(G, Kg, n, PQ).transpose(2, 0, 1, 3)

    parallel_chunks(run, N, nb, scratch)
    return y.reshape(N, K, P, Q)


def _conv2d_team(x, wmat, y, plain, out_hw, rows, cols, stride) -> None:
    """``y (N, K, P*Q) = wmat (K, C*kh*kw) @ columns`` on numba's OpenMP team (one group, C-contiguous x).
    A 1x1 stride-1 unpadded convolution reads x itself as the columns: the threads share its GEMMs. A batch
    runs :func:`shendu.ops.kernels.col2im_numba.conv_team` (each thread fills and multiplies whole chunks
    of images). A single image's small map (:data:`shendu.ops.kernels.narrow_numba.MAX_PIXELS`) takes
    :func:`shendu.ops.kernels.narrow_numba.conv2d_image`; a larger one is filled by the team
    (:func:`shendu.ops.kernels.col2im_numba.fill_cols`, the padding as zeros in the same pass), whose threads
    then share its GEMM."""
    N, C = x.shape[:2]
    K, CRS = wmat.shape
    P, Q = out_hw
    PQ = P * Q
    if plain:
        if N == 1:
            _team.gemm(wmat, x[0].reshape(C, PQ), y[0])
        else:
            _team.gemm_batched(np.broadcast_to(wmat, (N, K, CRS)), x.reshape(N, C, PQ), y)
        return
    if N > 1:
        if not _col2im_numba.conv_team(x, wmat, y, rows, cols, stride, out_hw):
            raise RuntimeError("im2col: the team's convolution refused its arrays (conv2d checks them first)")
        return
    if PQ <= _narrow.MAX_PIXELS and _narrow.conv2d_image(x[0], wmat, y[0], rows, cols, stride, Q):
        return  # a small map: dot products, no BLAS (see narrow_numba)
    buf = workspace("im2col.cols", CRS * PQ, x.dtype).reshape(C, len(rows), len(cols), 1, P, Q)
    if not _col2im_numba.fill_cols(x, buf, rows, cols, stride, num_threads()):
        raise RuntimeError("im2col: the team's column fill refused its arrays (conv2d checks them first)")
    _team.gemm(wmat, buf.reshape(CRS, PQ), y[0])


_MIN_SPLIT_COLUMNS = 64  # a batch-1 GEMM splits by columns when each thread gets this many


def _split_gemm(wmat, cols, out, b3=None):
    """``out = wmat @ cols (+ b3)`` (``(G, Kg, R) @ (G, R, L) -> (G, Kg, L)``, bias ``(G, Kg, 1)``) with
    the GEMM split over the kernel threads: a single image gives parallel_chunks nothing to share out
    (batch-1 inference), but its GEMM splits cleanly by output pixels (columns) or output channels (rows).
    Columns when every thread gets at least 64: OpenBLAS runs a GEMM with 32 rows at 2/3 of its speed
    with 64, so splitting 64 channels in two halves is slow (ResNet-18's 64-channel 3x3 layer at 56x56 on
    two threads: 4.7 ms by rows, 3.7 ms by columns); the 7x7 maps of the last stage split by rows."""
    L = cols.shape[-1]
    elements = wmat.size + cols.size + out.size
    if L // num_threads() >= _MIN_SPLIT_COLUMNS:
        def columns(lo, hi):
            np.matmul(wmat, cols[..., lo:hi], out=out[..., lo:hi])
            if b3 is not None:
                out[..., lo:hi] += b3

        with single_threaded_blas():
            split_rows(columns, L, elements)
        return

    def rows(lo, hi):
        np.matmul(wmat[:, lo:hi], cols, out=out[:, lo:hi])
        if b3 is not None:
            out[:, lo:hi] += b3[:, lo:hi]

    with single_threaded_blas():
        split_rows(rows, wmat.shape[1], elements)


def conv2d_grads(gy, x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                 need_input=True, need_weight=True, x_shape=None):
    """Gradients of :func:`conv2d` for the cotangent ``gy`` (N, K, P, Q): ``(gx, gw)``.

    ``gw = sum_chunks cols @ gy^T`` (columns recomputed chunk by chunk, never stored for the whole
    batch); ``gx = col2im(w^T @ gy)``, or at stride 1 (when no more expensive) the convolution of
    ``gy`` with the flipped kernel. ``x`` may be None when only ``gx`` is needed (give ``x_shape``).
    ``P, Q`` come from ``gy``, so inputs with rows no window reaches (transposed conv's
    output_padding) work.
    """
    x_shape = x.shape if x is not None else tuple(x_shape)
    N, C, H, W = x_shape
    K, Cg, kh, kw = w.shape
    G, Kg, CgRS = groups, K // groups, Cg * kh * kw
    P, Q = gy.shape[2:]
    PQ = P * Q
    dtype = gy.dtype
    wT = w.reshape(G, Kg, CgRS).transpose(0, 2, 1)
    if _is_plain_gemm(w.shape, stride, pads, dilation) and (P, Q) == (H, W):
        gx = np.zeros(x_shape, dtype) if need_input else None
        return _plain_grads(gy, x, w, groups, need_input, need_weight, gx)
    if need_input and tuple(stride) == (1, 1) and Kg <= 2 * Cg:
        # At stride 1 the input gradient is itself a convolution: of gy, padded by (kd - 1 - pad),
        # with the flipped, channel-transposed kernel. Its columns (Kg*kh*kw rows) cost no more than
        # col2im's scatter-adds while Kg <= 2 Cg, and it writes gx once instead of kh*kw times.
        kdh, kdw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
        gpads = (kdh - 1 - pads[0], H - P + pads[0], kdw - 1 - pads[2], W - Q + pads[2])
        gx = conv2d(gy, flip_transpose(w, groups), (1, 1), gpads, dilation, groups)
        gw = conv2d_grads(gy, x, w, stride, pads, dilation, groups, False, True)[1] if need_weight else None
        return gx, gw
    gx = np.zeros(x_shape, dtype) if need_input else None
    _, _, rows, cols = _geometry(x_shape, w.shape, stride, pads, dilation, (P, Q))
    nb = _gemm_chunk(N, C * kh * kw, PQ, dtype.itemsize)

    size = C * kh * kw * nb * PQ
    image_major = PQ >= _MIN_COLUMNS

    def scratch():
        s = _Scratch(dtype, gyT=0 if image_major else K * nb * PQ, cols=size if need_weight else 0,
                     dcols=size if need_input else 0)
        s.gw = np.zeros((G, CgRS, Kg), dtype) if need_weight else None
        return s

    def run(s, lo, hi):
        n = hi - lo
        if image_major:  # per-image GEMMs on gy as it is (no transposed copy)
            gyn = gy[lo:hi].reshape(n, G, Kg, PQ)
            if need_weight:
                buf = s.view("cols", (n, C, kh, kw, P, Q), n, keep_zeros=True)
                _fill_cols(x[lo:hi], buf.transpose(1, 2, 3, 0, 4, 5), rows, cols, stride)
                s.gw += np.matmul(buf.reshape(n, G, CgRS, PQ), gyn.transpose(0, 1, 3, 2)).sum(axis=0)
            if need_input:
                dcols = s.view("dcols", (n, C, kh, kw, P, Q), n)
                np.matmul(wT, gyn, out=dcols.reshape(n, G, CgRS, PQ))
                _add_cols(dcols.transpose(1, 2, 3, 0, 4, 5), gx[lo:hi], rows, cols, stride)
            return
        gyT = s.view("gyT", (G, Kg, n * PQ), n)
        gyT.reshape(K, n, PQ)[...] = gy[lo:hi].reshape(n, K, PQ).transpose(1, 0, 2)
        if need_weight:
            buf = s.view("cols", (C, kh, kw, n, P, Q), n, keep_zeros=True)
            _fill_cols(x[lo:hi], buf, rows, cols, stride)
            for g in range(G):  # cols @ gy^T per group (2-D BLAS calls; the stacked form is slower)
                s.gw[g] += buf.reshape(G, CgRS, n * PQ)[g] @ gyT[g].T
        if need_input:  # w^T @ gy, then col2im
            dcols = s.view("dcols", (C, kh, kw, n, P, Q), n)
            np.matmul(wT, gyT, out=dcols.reshape(G, CgRS, n * PQ))
            _add_cols(dcols, gx[lo:hi], rows, cols, stride)

    states = parallel_chunks(run, N, nb, scratch)
    gw = None
    if need_weight:
        gw = sum(s.gw for s in states[1:]) + states[0].gw if len(states) > 1 else states[0].gw
        gw = np.ascontiguousarray(gw.transpose(0, 2, 1)).reshape(w.shape)
    return gx, gw


def flip_transpose(w, groups=1) -> np.ndarray:
    """The kernel of the input gradient: spatially flipped, input/output channels swapped per group."""
    K, Cg, kh, kw = w.shape
    G = groups
    wt = w.reshape(G, K // G, Cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(G * Cg, K // G, kh, kw)
    return np.ascontiguousarray(wt[:, :, ::-1, ::-1])


def _plain_grads(gy, x, w, groups, need_input, need_weight, gx):
    """Gradients of a 1x1, stride-1, unpadded convolution: per-image GEMMs on the arrays themselves."""
    N, K, H, W = gy.shape
    G, Kg, Cg = groups, K // groups, w.shape[1]
    wT = w.reshape(G, Kg, Cg).transpose(0, 2, 1)
    gy_g = gy.reshape(N, G, Kg, H * W)

    def scratch():
        return np.zeros((G, Cg, Kg), gy.dtype) if need_weight else None

    def run(gw, lo, hi):
        n = hi - lo
        if need_weight:
            gw += np.matmul(x[lo:hi].reshape(n, G, Cg, H * W), gy_g[lo:hi].transpose(0, 1, 3, 2)).sum(axis=0)
        if need_input:
            np.matmul(wT, gy_g[lo:hi], out=gx[lo:hi].reshape(n, G, Cg, H * W))

    states = parallel_chunks(run, N, gemm_chunk(N, (K + Cg * G) * H * W * gy.itemsize), scratch)
    gw = None
    if need_weight:
        gw = sum(states[1:], states[0]) if len(states) > 1 else states[0]
        gw = np.ascontiguousarray(gw.transpose(0, 2, 1)).reshape(w.shape)
    return gx, gw
