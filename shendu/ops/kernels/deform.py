"""Deformable sampling kernels (no autograd): the deformable column matrix of DCN v1/v2, its adjoints,
and the bilinear bin sampling of deformable RoI pooling.

Deformable convolution is im2col + GEMM where the columns are *sampled*: column ``(k, c)`` of output
pixel ``(p, q)`` holds ``m * x_c(p*s - pad + i*d + dy, q*s - pad + j*d + dx)`` for kernel position
``k = i*kw + j`` with that pixel's offsets ``(dy, dx)`` and mask ``m``, read with zero-padded bilinear
interpolation (torchvision's rule: a point with ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W``
reads 0; otherwise each of the 4 neighbours contributes only if it lies inside the map).

Layouts (chosen so every GEMM is a plain BLAS call on views):

- input read channels-last, ``x_cl (N, H, W, C)``: a bilinear read of all channels is 4 contiguous rows;
- offset ``(N, G, kk, 2, P, Q)`` (torchvision's ``(N, 2*G*kk, P, Q)`` reshaped: ``(dy, dx)`` interleaved per
  kernel position, ``G`` offset groups each owning ``C/G`` consecutive channels), mask ``(N, G, kk, P, Q)``;
- columns ``(N, P, Q, Gw, kk, C/Gw)`` for ``Gw`` weight groups, so the matrix of group ``g`` is the view
  ``cols.reshape(N*P*Q, Gw, -1)[:, g]`` and ``y = cols_g @ w_g^T`` with ``w`` reordered to ``(Kg, kk, C/Gw)``.

Two implementations of the sampling passes give the same numbers:

- the NumPy reference: a loop over the ``kh*kw`` kernel positions; all output pixels of a position at
  once (4 neighbour gathers with fancy indexing, ``np.add.at`` scatter for the input gradient);
- numba kernels (one pass, output rows spread over the cores), used when numba is importable because
  the reference makes ~20 passes over the column-sized arrays. ``USE_NUMBA = False`` forces the
  reference (the tests compare both).
"""

from __future__ import annotations

import numpy as np

from shendu.ops.kernels.im2col import out_size

__all__ = ["out_size", "deform_conv2d_forward", "deform_conv2d_backward", "columns", "columns_backward",
           "columns_numpy", "columns_backward_numpy", "deform_roi_pool_forward", "deform_roi_pool_backward",
           "USE_NUMBA"]

try:  # numba is the accepted escape hatch for the sampling loops; NumPy remains the reference
    import numba

    USE_NUMBA = True
except ImportError:  # pragma: no cover - numba is installed where shendu is tested
    numba = None
    USE_NUMBA = False


# --------------------------------------------------------------------------------------- geometry
def _base_grid(P, Q, kernel_size, stride, pads, dilation, dtype):
    """The regular (undeformed) sampling rows ``by[p, i] = p*sh - ph + i*dh`` and columns ``bx[q, j]``,
    in the offsets' dtype (so float32 coordinates stay float32, as in torchvision's kernel)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    by = (np.arange(P)[:, None] * sh - pads[0] + np.arange(kh)[None, :] * dh).astype(dtype)
    bx = (np.arange(Q)[:, None] * sw - pads[1] + np.arange(kw)[None, :] * dw).astype(dtype)
    return by, bx


def _corners(py, px, H, W):
    """The 4 bilinear neighbours of the points ``(py, px)``: ``(flat index y*W + x, weight, dw/dy, dw/dx)``
    each, weights zero for neighbours outside the map and for points outside ``(-1, H) x (-1, W)``."""
    inside = ((py > -1) & (py < H) & (px > -1) & (px < W))
    y0, x0 = np.floor(py), np.floor(px)
    ly, lx = py - y0, px - x0
    hy, hx = 1 - ly, 1 - lx
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    out = []
    for dy, wy, sy in ((0, hy, -1), (1, ly, 1)):
        for dx, wx, sx in ((0, hx, -1), (1, lx, 1)):
            yy, xx = y0 + dy, x0 + dx
            ok = inside & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            okf = ok.astype(py.dtype)
            out.append((np.where(ok, yy * W + xx, 0), wy * wx * okf, sy * wx * okf, wy * sx * okf))
    return out


def _shapes(x, offset, kernel_size, weight_groups):
    N, C, H, W = x.shape
    kk = kernel_size[0] * kernel_size[1]
    G = offset.shape[1] // (2 * kk)
    P, Q = offset.shape[2:]
    return N, C, H, W, kk, G, P, Q, weight_groups, C // weight_groups


# ------------------------------------------------------------------------------- NumPy reference
def columns_numpy(x, offset, mask, kernel_size, stride, pads, dilation, weight_groups=1):
    """The deformable column matrix ``(N, P, Q, Gw, kk, C/Gw)`` (see the module docstring)."""
    N, C, H, W, kk, G, P, Q, Gw, Cw = _shapes(x, offset, kernel_size, weight_groups)
    Cg = C // G
    x_cl = x.transpose(0, 2, 3, 1).reshape(N * H * W, G, Cg)
    off = offset.reshape(N, G, kk, 2, P, Q)
    msk = None if mask is None else mask.reshape(N, G, kk, P, Q)
    by, bx = _base_grid(P, Q, kernel_size, stride, pads, dilation, offset.dtype)
    rows0 = (np.arange(N) * (H * W))[:, None, None, None]
    grp = np.arange(G)[None, :, None, None]
    cols = np.empty((N, P, Q, Gw, kk, Cw), x.dtype)
    for k in range(kk):
        i, j = divmod(k, kernel_size[1])
        py = by[None, None, :, i, None] + off[:, :, k, 0]  # (N, G, P, Q)
        px = bx[None, None, None, :, j] + off[:, :, k, 1]
        val = 0
        for flat, w, _, _ in _corners(py, px, H, W):
            val = val + w[..., None] * x_cl[rows0 + flat, grp]  # (N, G, P, Q, Cg)
        if msk is not None:
            val = val * msk[:, :, k, :, :, None]
        cols[:, :, :, :, k, :] = val.transpose(0, 2, 3, 1, 4).reshape(N, P, Q, Gw, Cw)
    return cols


def columns_backward_numpy(gcols, x, offset, mask, kernel_size, stride, pads, dilation, weight_groups=1,
                           need_input=True, need_offset=True, need_mask=True):
    """The adjoints of :func:`columns_numpy` for the column gradient ``gcols``: ``(gx, goffset, gmask)``
    (None where not needed). ``gx`` scatters ``m * w_corner * gcol`` to the 4 neighbours; ``gmask`` is the
    column gradient times the sampled value; ``goffset`` uses the derivatives of the bilinear weights
    (piecewise constant, undefined on integer coordinates)."""
    N, C, H, W, kk, G, P, Q, Gw, Cw = _shapes(x, offset, kernel_size, weight_groups)
    Cg = C // G
    x_cl = x.transpose(0, 2, 3, 1).reshape(N * H * W, G, Cg)
    off = offset.reshape(N, G, kk, 2, P, Q)
    msk = None if mask is None else mask.reshape(N, G, kk, P, Q)
    by, bx = _base_grid(P, Q, kernel_size, stride, pads, dilation, offset.dtype)
    rows0 = (np.arange(N) * (H * W))[:, None, None, None]
    grp = np.arange(G)[None, :, None, None]
    gx_cl = np.zeros((N * H * W, G, Cg), x.dtype) if need_input else None
    goff = np.zeros((N, G, kk, 2, P, Q), x.dtype) if need_offset else None
    gmask = np.zeros((N, G, kk, P, Q), x.dtype) if need_mask and msk is not None else None
    for k in range(kk):
        i, j = divmod(k, kernel_size[1])
        py = by[None, None, :, i, None] + off[:, :, k, 0]
        px = bx[None, None, None, :, j] + off[:, :, k, 1]
        gc = gcols[:, :, :, :, k, :].reshape(N, P, Q, G, Cg).transpose(0, 3, 1, 2, 4)  # (N, G, P, Q, Cg)
        m = 1 if msk is None else msk[:, :, k, :, :, None]
        corners = _corners(py, px, H, W)
        if need_input:
            gm = gc * m
            for flat, w, _, _ in corners:
                np.add.at(gx_cl, (rows0 + flat, grp), w[..., None] * gm)
        if goff is not None or gmask is not None:
            val = dvy = dvx = 0
            for flat, w, wy, wx in corners:
                v = x_cl[rows0 + flat, grp]
                val, dvy, dvx = val + w[..., None] * v, dvy + wy[..., None] * v, dvx + wx[..., None] * v
            if gmask is not None:
                gmask[:, :, k] = (gc * val).sum(-1)
            if goff is not None:
                gcm = gc * m
                goff[:, :, k, 0] = (gcm * dvy).sum(-1)
                goff[:, :, k, 1] = (gcm * dvx).sum(-1)
    gx = None if gx_cl is None else gx_cl.reshape(N, H, W, C).transpose(0, 3, 1, 2).copy()
    return (gx, None if goff is None else goff.reshape(offset.shape),
            None if gmask is None else gmask.reshape(mask.shape))


# ---------------------------------------------------------------------------------- numba kernels
if numba is not None:
    _jit = dict(parallel=True, cache=True, nogil=True)
    # reassociation lets the channel sums vectorize (they are float64 accumulators of float32 terms)
    _jit_sum = dict(_jit, fastmath={"reassoc", "nsz", "arcp", "contract"})

    @numba.njit(inline="always")
    def _point(y, x, H, W):  # pragma: no cover - compiled
        """Neighbour indices (clamped to 0 when outside) and bilinear factors of one point; ``ok`` flags
        which of the 4 neighbours (00, 01, 10, 11) are read (torchvision's rule)."""
        inside = y > -1 and y < H and x > -1 and x < W
        fy, fx = np.floor(y), np.floor(x)
        ly, lx = y - fy, x - fx
        y0, x0 = int(fy), int(fx)
        y1, x1 = y0 + 1, x0 + 1
        okY0, okY1 = inside and y0 >= 0, inside and y1 < H
        okX0, okX1 = x0 >= 0, x1 < W
        ok00, ok01, ok10, ok11 = okY0 and okX0, okY0 and okX1, okY1 and okX0, okY1 and okX1
        # indices of unread neighbours are clamped into the map (read with weight 0, never out of bounds)
        y0c, y1c = min(max(y0, 0), H - 1), min(max(y1, 0), H - 1)
        x0c, x1c = min(max(x0, 0), W - 1), min(max(x1, 0), W - 1)
        return y0c, y1c, x0c, x1c, ly, lx, ok00, ok01, ok10, ok11

    @numba.njit(**_jit)
    def _columns_numba(x_cl, off, msk, by, bx, segs, Cw, cols):  # pragma: no cover - compiled
        # x_cl (N, H, W, C); off (N, G, kk, 2, P, Q); msk (N, G, kk, P, Q) (ones when v1); by (P, kh),
        # bx (Q, kw): the regular grid; cols (N, P, Q, Gw*kk*Cw). segs[s] = (g, c0, c1, shift): channels
        # c0 <= c < c1 of offset group g sit at column shift + k*Cw + c of a row (one weight group)
        N, H, W, C = x_cl.shape
        kk, P, Q = off.shape[2], off.shape[4], off.shape[5]
        kw = bx.shape[1]
        for r in numba.prange(N * P):
            n = r // P
            p = r - n * P
            wb = np.empty(4, x_cl.dtype)  # the 4 weights in the data's dtype (no float64 inner loop)
            for q in range(Q):
                row = cols[n, p, q]
                for s in range(segs.shape[0]):
                    g, c0, c1, shift = segs[s, 0], segs[s, 1], segs[s, 2], segs[s, 3]
                    for k in range(kk):
                        i = k // kw
                        j = k - i * kw
                        y = by[p, i] + off[n, g, k, 0, p, q]
                        x = bx[q, j] + off[n, g, k, 1, p, q]
                        m = msk[n, g, k, p, q]
                        y0, y1, x0, x1, ly, lx, ok00, ok01, ok10, ok11 = _point(y, x, H, W)
                        wb[0] = (1 - ly) * (1 - lx) * m if ok00 else 0
                        wb[1] = (1 - ly) * lx * m if ok01 else 0
                        wb[2] = ly * (1 - lx) * m if ok10 else 0
                        wb[3] = ly * lx * m if ok11 else 0
                        w00, w01, w10, w11 = wb[0], wb[1], wb[2], wb[3]
                        # zero-based slices: loops from 0 vectorize (no negative-index checks)
                        a, b = x_cl[n, y0, x0, c0:c1], x_cl[n, y0, x1, c0:c1]
                        c_, d = x_cl[n, y1, x0, c0:c1], x_cl[n, y1, x1, c0:c1]
                        o = row[shift + k * Cw + c0:shift + k * Cw + c1]
                        for c in range(c1 - c0):
                            o[c] = w00 * a[c] + w01 * b[c] + w10 * c_[c] + w11 * d[c]
        return cols

    @numba.njit(**_jit_sum)
    def _grad_offset_mask_numba(x_cl, off, msk, by, bx, segs, Cw, gcols, goff, gmask):  # pragma: no cover
        # per output pixel and kernel position: d/d(dy, dx) and d/dm of sum_c gcol_c * m * bilinear_c;
        # goff and gmask start at zero (an offset group may span several weight groups = segments)
        N, H, W, C = x_cl.shape
        kk, P, Q = off.shape[2], off.shape[4], off.shape[5]
        kw = bx.shape[1]
        for r in numba.prange(N * P):
            n = r // P
            p = r - n * P
            for q in range(Q):
                row = gcols[n, p, q]
                for s in range(segs.shape[0]):
                    g, c0, c1, shift = segs[s, 0], segs[s, 1], segs[s, 2], segs[s, 3]
                    for k in range(kk):
                        i = k // kw
                        j = k - i * kw
                        y = by[p, i] + off[n, g, k, 0, p, q]
                        x = bx[q, j] + off[n, g, k, 1, p, q]
                        m = msk[n, g, k, p, q]
                        y0, y1, x0, x1, ly, lx, ok00, ok01, ok10, ok11 = _point(y, x, H, W)
                        hy, hx = 1 - ly, 1 - lx
                        a, b = x_cl[n, y0, x0, c0:c1], x_cl[n, y0, x1, c0:c1]
                        c_, d = x_cl[n, y1, x0, c0:c1], x_cl[n, y1, x1, c0:c1]
                        o = row[shift + k * Cw + c0:shift + k * Cw + c1]
                        s00, s01, s10, s11 = 0.0, 0.0, 0.0, 0.0  # sum_c gcol_c * corner value_c
                        for c in range(c1 - c0):
                            gc = o[c]
                            s00 += gc * a[c]
                            s01 += gc * b[c]
                            s10 += gc * c_[c]
                            s11 += gc * d[c]
                        s00, s01 = (s00 if ok00 else 0.0), (s01 if ok01 else 0.0)
                        s10, s11 = (s10 if ok10 else 0.0), (s11 if ok11 else 0.0)
                        gmask[n, g, k, p, q] += hy * hx * s00 + hy * lx * s01 + ly * hx * s10 + ly * lx * s11
                        goff[n, g, k, 0, p, q] += m * (hx * (s10 - s00) + lx * (s11 - s01))
                        goff[n, g, k, 1, p, q] += m * (hy * (s01 - s00) + ly * (s11 - s10))
        return goff, gmask

    @numba.njit(**_jit)
    def _grad_input_numba(off, msk, by, bx, Cw, gcols, blocks, gx_cl):  # pragma: no cover
        # scatter m * w_corner * gcol to the 4 neighbours; each parallel task owns one image and one
        # block of channels (blocks[t] = (n, g, c0, c1, shift) inside one segment), so no two threads
        # write the same element
        N, H, W, C = gx_cl.shape
        kk, P, Q = off.shape[2], off.shape[4], off.shape[5]
        kw = bx.shape[1]
        for t in numba.prange(blocks.shape[0]):
            n, g, c0, c1, shift = blocks[t, 0], blocks[t, 1], blocks[t, 2], blocks[t, 3], blocks[t, 4]
            wb = np.empty(4, gx_cl.dtype)
            for p in range(P):
                for q in range(Q):
                    row = gcols[n, p, q]
                    for k in range(kk):
                        i = k // kw
                        j = k - i * kw
                        y = by[p, i] + off[n, g, k, 0, p, q]
                        x = bx[q, j] + off[n, g, k, 1, p, q]
                        m = msk[n, g, k, p, q]
                        y0, y1, x0, x1, ly, lx, ok00, ok01, ok10, ok11 = _point(y, x, H, W)
                        wb[0] = (1 - ly) * (1 - lx) * m if ok00 else 0
                        wb[1] = (1 - ly) * lx * m if ok01 else 0
                        wb[2] = ly * (1 - lx) * m if ok10 else 0
                        wb[3] = ly * lx * m if ok11 else 0
                        w00, w01, w10, w11 = wb[0], wb[1], wb[2], wb[3]
                        a, b = gx_cl[n, y0, x0, c0:c1], gx_cl[n, y0, x1, c0:c1]
                        c_, d = gx_cl[n, y1, x0, c0:c1], gx_cl[n, y1, x1, c0:c1]
                        o = row[shift + k * Cw + c0:shift + k * Cw + c1]
                        for c in range(c1 - c0):
                            gc = o[c]
                            a[c] += w00 * gc
                            b[c] += w01 * gc
                            c_[c] += w10 * gc
                            d[c] += w11 * gc
        return gx_cl


def _numba_ok(*arrays) -> bool:
    return USE_NUMBA and all(type(a) is np.ndarray and a.dtype in (np.float32, np.float64) for a in arrays)


def _segments(C, G, Gw, kk) -> np.ndarray:
    """``(g, c0, c1, shift)`` rows: the channel ranges shared by offset group ``g`` and one weight group
    ``gw``, with ``shift = gw*kk*Cw - gw*Cw`` so that channel ``c`` at kernel position ``k`` sits at column
    ``shift + k*Cw + c`` of a column-matrix row ``(Gw, kk, Cw)``."""
    Cg, Cw = C // G, C // Gw
    segs = []
    for g in range(G):
        for gw in range(Gw):
            c0, c1 = max(g * Cg, gw * Cw), min((g + 1) * Cg, (gw + 1) * Cw)
            if c0 < c1:
                segs.append((g, c0, c1, gw * kk * Cw - gw * Cw))
    return np.array(segs, np.int64)


def _numba_args(x, offset, mask, kernel_size, stride, pads, dilation, weight_groups):
    N, C, H, W, kk, G, P, Q, Gw, Cw = _shapes(x, offset, kernel_size, weight_groups)
    off = np.ascontiguousarray(offset).reshape(N, G, kk, 2, P, Q)
    if mask is None:  # v1: a broadcast view of ones, so the kernels need no second code path
        msk = np.broadcast_to(np.ones((), x.dtype), (N, G, kk, P, Q))
    else:
        msk = np.ascontiguousarray(mask).reshape(N, G, kk, P, Q)
    by, bx = _base_grid(P, Q, kernel_size, stride, pads, dilation, offset.dtype)
    return off, msk, by, bx, _segments(C, G, Gw, kk), Cw


def columns(x, offset, mask, kernel_size, stride, pads, dilation, weight_groups=1):
    """The deformable column matrix ``(N, P, Q, Gw, kk, C/Gw)`` (numba when available, else NumPy)."""
    if not _numba_ok(x, offset, *(() if mask is None else (mask,))):
        return columns_numpy(x, offset, mask, kernel_size, stride, pads, dilation, weight_groups)
    N, C, H, W, kk, G, P, Q, Gw, Cw = _shapes(x, offset, kernel_size, weight_groups)
    off, msk, by, bx, segs, Cw = _numba_args(x, offset, mask, kernel_size, stride, pads, dilation, weight_groups)
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    cols = np.empty((N, P, Q, Gw * kk * Cw), x.dtype)
    _columns_numba(x_cl, off, msk, by, bx, segs, Cw, cols)
    return cols.reshape(N, P, Q, Gw, kk, Cw)


def _channel_blocks(N, segs) -> np.ndarray:
    """``(n, g, c0, c1, shift)`` tasks for the input-gradient scatter: each segment of each image split
    into blocks of at least 8 channels, about 4 tasks per thread when the batch is small."""
    threads = numba.get_num_threads()
    per_seg = max(1, -(-4 * threads // max(N * len(segs), 1)))
    blocks = []
    for g, c0, c1, shift in segs.tolist():
        parts = max(1, min(per_seg, (c1 - c0) // 8))
        edges = [c0 + (c1 - c0) * b // parts for b in range(parts + 1)]
        blocks += [(g, edges[b], edges[b + 1], shift) for b in range(parts)]
    return np.array([(n,) + blk for n in range(N) for blk in blocks], np.int64)


def columns_backward(gcols, x, offset, mask, kernel_size, stride, pads, dilation, weight_groups=1,
                     need_input=True, need_offset=True, need_mask=True):
    """``(gx, goffset, gmask)`` for the column gradient ``gcols`` (numba when available, else NumPy)."""
    if not _numba_ok(gcols, x, offset, *(() if mask is None else (mask,))):
        return columns_backward_numpy(gcols, x, offset, mask, kernel_size, stride, pads, dilation, weight_groups,
                                      need_input, need_offset, need_mask)
    N, C, H, W, kk, G, P, Q, Gw, Cw = _shapes(x, offset, kernel_size, weight_groups)
    off, msk, by, bx, segs, Cw = _numba_args(x, offset, mask, kernel_size, stride, pads, dilation, weight_groups)
    g2 = np.ascontiguousarray(gcols).reshape(N, P, Q, Gw * kk * Cw)
    gx = goff = gmask = None
    if need_input:
        gx_cl = np.zeros((N, H, W, C), x.dtype)
        _grad_input_numba(off, msk, by, bx, Cw, g2, _channel_blocks(N, segs), gx_cl)
        gx = np.ascontiguousarray(gx_cl.transpose(0, 3, 1, 2))
    if need_offset or (need_mask and mask is not None):
        x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        goff = np.zeros((N, G, kk, 2, P, Q), x.dtype)
        gm = np.zeros((N, G, kk, P, Q), x.dtype)
        _grad_offset_mask_numba(x_cl, off, msk, by, bx, segs, Cw, g2, goff, gm)
        goff = goff.reshape(offset.shape) if need_offset else None
        gmask = gm.reshape(mask.shape) if need_mask and mask is not None else None
    return gx, goff, gmask


# ------------------------------------------------------------------------------- the convolution
def _weight_matrix(w, groups):
    """``w (K, C/Gw, kh, kw)`` as ``(Gw, Kg, kk*C/Gw)`` in the columns' (k, c) order."""
    K, Cw, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(groups, K // groups, Cw, kh * kw).transpose(0, 1, 3, 2)) \
        .reshape(groups, K // groups, kh * kw * Cw)


def deform_conv2d_forward(x, offset, mask, w, stride, pads, dilation, groups=1):
    """``(y, cols)``: the deformable convolution ``y (N, K, P, Q)`` (no bias) and its column matrix.

    ``y[n, :, p, q] = sum_g w_g @ cols[n, p, q, g]`` — one GEMM per weight group on the whole batch."""
    N, K = x.shape[0], w.shape[0]
    P, Q = offset.shape[2:]
    cols = columns(x, offset, mask, w.shape[2:], stride, pads, dilation, groups)
    wmat = _weight_matrix(w, groups)
    c2 = cols.reshape(N * P * Q, groups, -1)
    yT = np.empty((N * P * Q, groups, K // groups), x.dtype)
    for g in range(groups):
        np.matmul(c2[:, g], wmat[g].T, out=yT[:, g])
    y = np.ascontiguousarray(yT.reshape(N, P * Q, K).transpose(0, 2, 1)).reshape(N, K, P, Q)
    return y, cols


def deform_conv2d_backward(gy, cols, x, offset, mask, w, stride, pads, dilation, groups=1,
                           need_input=True, need_offset=True, need_mask=True, need_weight=True):
    """``(gx, goffset, gmask, gw)`` of :func:`deform_conv2d_forward` for the output gradient ``gy``.

    ``gw_g = gy_g^T @ cols_g`` and ``gcols_g = gy_g @ w_g`` (GEMMs), then the column gradient goes back to
    the input, offsets and mask through :func:`columns_backward`."""
    N, K, P, Q = gy.shape
    Kg = K // groups
    Cw, kh, kw = w.shape[1:]
    wmat = _weight_matrix(w, groups)
    gyT = np.ascontiguousarray(gy.reshape(N, K, P * Q).transpose(0, 2, 1)).reshape(N * P * Q, groups, Kg)
    gw = gx = goff = gmask = None
    if need_weight:
        c2 = cols.reshape(N * P * Q, groups, -1)
        gwm = np.stack([gyT[:, g].T @ c2[:, g] for g in range(groups)])  # (Gw, Kg, kk*Cw)
        gw = np.ascontiguousarray(gwm.reshape(groups, Kg, kh * kw, Cw).transpose(0, 1, 3, 2)).reshape(w.shape)
    if need_input or need_offset or (need_mask and mask is not None):
        gcols = np.empty((N, P, Q, groups, kh * kw, Cw), gy.dtype)
        gc2 = gcols.reshape(N * P * Q, groups, -1)
        for g in range(groups):
            np.matmul(gyT[:, g], wmat[g], out=gc2[:, g])
        gx, goff, gmask = columns_backward(gcols, x, offset, mask, w.shape[2:], stride, pads, dilation, groups,
                                           need_input, need_offset, need_mask)
    return gx, goff, gmask, gw


# ------------------------------------------------------------------------- deformable RoI pooling
def _roi_grid(rois, offset, output_size, spatial_scale, sampling_ratio, gamma, dtype):
    """Where deformable RoI pooling samples (mmcv's ``deform_roi_pool``): for RoI ``r`` and bin ``(i, j)``
    the bin of RoI Align (``aligned=True``: corners ``x * scale - 0.5``, no minimum size) shifted by
    ``gamma * (roi_w * offset[r, 0, i, j], roi_h * offset[r, 1, i, j])``, with ``grid_h x grid_w`` samples
    per bin (``sampling_ratio``, or ``ceil(roi_h / ph)`` etc. per RoI when it is <= 0).

    Returns ``y0 (K, ph, pw)``, ``x0`` (the shifted bin origins minus the bin offset), the steps
    ``step_y (K,)``, ``step_x`` between samples, the grid sizes ``gh, gw (K,)``, ``roi_h, roi_w (K,)``."""
    ph, pw = output_size
    x1, y1, x2, y2 = (rois[:, c].astype(dtype) * dtype.type(spatial_scale) - dtype.type(0.5) for c in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    bin_h, bin_w = roi_h / ph, roi_w / pw
    if sampling_ratio > 0:
        gh = gw = np.full(len(rois), sampling_ratio, np.int64)
    else:
        gh = np.maximum(np.ceil(roi_h / ph), 0).astype(np.int64)
        gw = np.maximum(np.ceil(roi_w / pw), 0).astype(np.int64)
    ys = y1[:, None, None] + np.arange(ph, dtype=dtype)[None, :, None] * bin_h[:, None, None]
    xs = x1[:, None, None] + np.arange(pw, dtype=dtype)[None, None, :] * bin_w[:, None, None]
    if offset is not None:
        ys = ys + dtype.type(gamma) * roi_h[:, None, None] * offset[:, 1]
        xs = xs + dtype.type(gamma) * roi_w[:, None, None] * offset[:, 0]
    step_y, step_x = bin_h / np.maximum(gh, 1).astype(dtype), bin_w / np.maximum(gw, 1).astype(dtype)
    return ys, xs, step_y, step_x, gh, gw, roi_h, roi_w


def _roi_corners(y, x, H, W):
    """RoI Align's bilinear rule (clamping, unlike deformable convolution): a point with ``y < -1``,
    ``y > H``, ``x < -1`` or ``x > W`` reads 0; otherwise y is clamped at 0 and at ``H - 1`` (the last row
    is read alone), likewise x. Returns ``(flat index, weight, dw/dy, dw/dx)`` for the 4 neighbours; the
    derivatives are 0 where a coordinate is clamped (the read does not move there)."""
    ok = ((y >= -1) & (y <= H) & (x >= -1) & (x <= W)).astype(y.dtype)
    out = []
    axes = []
    for v, size in ((y, H), (x, W)):
        v = np.maximum(v, 0)
        low = np.floor(v).astype(np.int64)
        top = low >= size - 1
        live = ((v > 0) & ~top).astype(v.dtype)  # where the read moves with the coordinate
        low = np.where(top, size - 1, low)
        high = np.where(top, size - 1, low + 1)
        frac = np.where(top, 0, v - low.astype(v.dtype)).astype(v.dtype, copy=False)
        axes.append((low, high, frac, live))
    (y0, y1, ly, live_y), (x0, x1, lx, live_x) = axes
    for yy, wy, sy in ((y0, 1 - ly, -1), (y1, ly, 1)):
        for xx, wx, sx in ((x0, 1 - lx, -1), (x1, lx, 1)):
            out.append((yy * W + xx, wy * wx * ok, sy * wx * live_y * ok, wy * sx * live_x * ok))
    return out


def _roi_samples(rois, offset, x_shape, output_size, spatial_scale, sampling_ratio, gamma, dtype):
    """Yield, for each sample position ``(iy, ix)`` of the largest bin grid, the 4 neighbours of every
    RoI bin's sample (rows into the ``(N*H*W, C)`` channels-last input) and its weight ``1/count``
    (0 for RoIs whose own grid is smaller)."""
    N, C, H, W = x_shape
    ys, xs, step_y, step_x, gh, gw, roi_h, roi_w = _roi_grid(rois, offset, output_size, spatial_scale,
                                                              sampling_ratio, gamma, dtype)
    rows0 = (rois[:, 0].astype(np.int64) * (H * W))[:, None, None]
    count = np.maximum(gh * gw, 1).astype(dtype)
    for iy in range(int(gh.max(initial=0))):
        for ix in range(int(gw.max(initial=0))):
            scale = ((iy < gh) & (ix < gw)).astype(dtype) / count  # (K,)
            py = ys + ((iy + dtype.type(0.5)) * step_y)[:, None, None]
            px = xs + ((ix + dtype.type(0.5)) * step_x)[:, None, None]
            corners = [(rows0 + flat, w, dy, dx) for flat, w, dy, dx in _roi_corners(py, px, H, W)]
            yield corners, scale[:, None, None], roi_h, roi_w


def deform_roi_pool_forward(x, rois, offset, output_size, spatial_scale, sampling_ratio, gamma):
    """``(K, C, ph, pw)``: the average of bilinear samples over every (shifted) bin of every RoI; a loop
    over the sample positions inside a bin, all RoIs and bins at once."""
    N, C, H, W = x.shape
    x_cl = x.transpose(0, 2, 3, 1).reshape(N * H * W, C)
    out = np.zeros((len(rois),) + tuple(output_size) + (C,), x.dtype)
    for corners, scale, _, _ in _roi_samples(rois, offset, x.shape, output_size, spatial_scale, sampling_ratio,
                                             gamma, x.dtype):
        for rows, w, _, _ in corners:
            out += (w * scale)[..., None] * x_cl[rows]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def deform_roi_pool_backward(gy, x, rois, offset, output_size, spatial_scale, sampling_ratio, gamma,
                             need_input=True, need_offset=True):
    """``(gx, goffset)``: ``gx`` scatters ``g/count`` with the bilinear weights (``np.add.at``); ``goffset``
    is ``gamma * (roi_w, roi_h) * sum_samples sum_c g * dbilinear/d(x, y) / count``."""
    N, C, H, W = x.shape
    x_cl = x.transpose(0, 2, 3, 1).reshape(N * H * W, C)
    g_cl = gy.transpose(0, 2, 3, 1)  # (K, ph, pw, C)
    gx_cl = np.zeros((N * H * W, C), x.dtype) if need_input else None
    goff = np.zeros((len(rois), 2) + tuple(output_size), x.dtype) if need_offset else None
    for corners, scale, roi_h, roi_w in _roi_samples(rois, offset, x.shape, output_size, spatial_scale,
                                                     sampling_ratio, gamma, x.dtype):
        for rows, w, dy, dx in corners:
            if need_input:
                np.add.at(gx_cl, rows, (w * scale)[..., None] * g_cl)
            if need_offset:
                gv = (g_cl * x_cl[rows]).sum(-1) * scale  # (K, ph, pw)
                goff[:, 0] += gamma * roi_w[:, None, None] * dx * gv
                goff[:, 1] += gamma * roi_h[:, None, None] * dy * gv
    gx = None if gx_cl is None else np.ascontiguousarray(gx_cl.reshape(N, H, W, C).transpose(0, 3, 1, 2))
    return gx, goff
