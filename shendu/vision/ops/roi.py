"""RoI Pool (Fast R-CNN) and RoI Align (Mask R-CNN), following torchvision's CPU kernels exactly
(``csrc/ops/cpu/roi_pool_kernel.cpp``, ``roi_align_kernel.cpp``, ``roi_align_common.h``).

Boxes are a ``(K, 5)`` tensor of ``(batch_index, x1, y1, x2, y2)`` or a list of ``(K_i, 4)`` tensors,
one per image, in input-image coordinates; ``spatial_scale`` maps them onto the feature map (1/16 for a
stride-16 backbone). Coordinates are computed in the input's dtype, as the C++ kernel does in ``T``.
No gradient flows to the boxes (as in torchvision).

**RoI Align** never quantizes. Per RoI: ``offset = 0.5 if aligned else 0``, ``start = x1 * scale -
offset``, ``roi_w = x2 * scale - offset - start`` (forced ``>= 1`` only when not aligned),
``bin_w = roi_w / pooled_w``, ``grid_w = sampling_ratio`` if > 0 else ``ceil(roi_w / pooled_w)``;
sample ``x = start + pw * bin_w + (ix + 0.5) * bin_w / grid_w``. Each sample is a bilinear read with
*clamping*: a sample with ``y < -1 or y > H or x < -1 or x > W`` reads 0; otherwise ``y = max(y, 0)``
and a sample at or past the last row reads that row. A bin averages its ``max(grid_h * grid_w, 1)``
samples — out-of-range samples count in the denominator.

Two implementations that agree to rounding (the tests run both):

- the NumPy reference: the samples of a bin form a grid (every ``iy`` times every ``ix``) and the
  bilinear weight of a sample is a y-weight times an x-weight, so the weight pixel (h, w) receives in bin
  (ph, pw) of RoI k factorizes as ``Ay[k, ph, h] * Ax[k, pw, w]``. Ay and Ax come from one ``bincount``
  each over the taps of all 1-D samples of all RoIs; their nonzero products form a sparse matrix ``M``
  of shape ``(K * PH * PW, N * H * W)``, and RoI Align is the linear map ``out = M @ x`` with x laid out
  as ``(N * H * W, C)``; backward is ``M.T @ grad``.
- a numba kernel (used when numba is importable): the C++ kernel's loops over RoIs, bins and samples
  with the same precomputed taps, the channels innermost on an NHWC copy, RoIs spread over the cores
  (in backward each thread adds into its own gradient buffer, since RoIs of one image share pixels).
  Building ``M`` costs more than the product itself, which is why the kernel exists.
  ``USE_NUMBA = False`` forces the reference.

**RoI Pool** quantizes twice: ``start = round(x1 * scale)`` (half away from zero, C's ``round``),
``roi_w = max(round(x2 * scale) - start + 1, 1)`` (inclusive end), bin ``pw`` spans
``[floor(pw * bin_w), ceil((pw + 1) * bin_w)) + start`` clipped to the map; the output is the max over
the bin (the first maximum in row-major order), 0 for an empty bin. The NumPy reference loops over the
offsets inside the largest bin (a running max/argmax over all RoIs, bins and channels at once, input in
NHWC so each read is a contiguous channel vector); the numba kernel scans each bin as the C++ kernel
does. Backward adds each output gradient at its argmax with one ``bincount``.
"""

from __future__ import annotations

import numbers

import numpy as np

from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError, fmt_shape
from shendu.nn.module import Module
from shendu.ops._util import as_tensor_arg
from shendu.ops.shape import cat

try:  # numba is the accepted escape hatch for the per-sample loops; the NumPy paths remain the reference
    import numba
    from numba import njit, prange

    USE_NUMBA = True
except ImportError:  # pragma: no cover - numba is installed where shendu is tested
    numba = None
    USE_NUMBA = False

__all__ = ["roi_align", "roi_pool", "RoIAlign", "RoIPool", "MultiScaleRoIAlign"]


def _sparse(xp):
    """scipy.sparse, or its CuPy counterpart for CuPy arrays."""
    if xp.__name__ == "numpy":
        import scipy.sparse as sparse
    else:  # pragma: no cover - no GPU here
        import cupyx.scipy.sparse as sparse
    return sparse


# ------------------------------------------------------------------------------------------ arguments
def _pair(op: str, output_size) -> tuple:
    size = (output_size, output_size) if isinstance(output_size, numbers.Integral) else tuple(output_size)
    if len(size) != 2 or any(not isinstance(s, numbers.Integral) or s <= 0 for s in size):
        raise ArgumentError(f"{op}: output_size must be a positive int or a pair (height, width) of positive "
                            f"ints, got {output_size!r}")
    return int(size[0]), int(size[1])


def _rois_array(op: str, boxes, xp, dtype):
    """The ``(K, 5)`` array ``(batch_index, x1, y1, x2, y2)`` from a (K, 5) tensor or a list of (K_i, 4)."""
    if isinstance(boxes, (list, tuple)):
        parts = []
        for i, b in enumerate(boxes):
            a = b.data if isinstance(b, Tensor) else xp.asarray(b)
            if a.ndim != 2 or a.shape[1] != 4:
                raise ShapeError(f"{op}: boxes[{i}] has shape {fmt_shape(a.shape)}; a list of boxes must hold "
                                 "(K_i, 4) tensors of (x1, y1, x2, y2), one per image")
            parts.append(xp.concatenate([xp.full((a.shape[0], 1), i, dtype=dtype), a.astype(dtype)], axis=1))
        return xp.concatenate(parts, axis=0) if parts else xp.zeros((0, 5), dtype)
    a = boxes.data if isinstance(boxes, Tensor) else xp.asarray(boxes)
    if a.ndim != 2 or a.shape[1] != 5:
        raise ShapeError(f"{op}: boxes must be a (K, 5) tensor of (batch_index, x1, y1, x2, y2) or a list of "
                         f"(K_i, 4) tensors, got shape {fmt_shape(a.shape)}")
    return a.astype(dtype, copy=False)


def _check(op: str, input, boxes, output_size, spatial_scale):
    """Validate everything before any work; returns (input tensor, rois array, (PH, PW), scale)."""
    x = as_tensor_arg(input)
    if x.ndim != 4:
        raise ShapeError(f"{op}: input must be (N, C, H, W), got shape {fmt_shape(x.shape)}")
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: input must be a float tensor, got dtype {x.dtype}; call .float() first")
    size = _pair(op, output_size)
    if not isinstance(spatial_scale, numbers.Real) or not spatial_scale > 0:
        raise ArgumentError(f"{op}: spatial_scale must be a positive number (1 / feature stride), "
                            f"got {spatial_scale!r}")
    xp = get_array_module(x.data)
    raw = boxes.data if isinstance(boxes, Tensor) else None
    if raw is not None and raw.dtype.kind != "f":
        raise DTypeError(f"{op}: boxes must be a float tensor, got dtype {raw.dtype}")
    rois = _rois_array(op, boxes, xp, x.dtype)
    if not bool(xp.isfinite(rois).all()):
        raise ArgumentError(f"{op}: boxes hold NaN or infinite coordinates; filter them out first "
                            "(e.g. with remove_small_boxes after clip_boxes_to_image)")
    idx = rois[:, 0]
    if rois.shape[0] and (bool((idx != xp.floor(idx)).any()) or bool(((idx < 0) | (idx >= x.shape[0])).any())):
        raise IndexOutOfRangeError(f"{op}: the batch index column of boxes must hold integers in [0, "
                                   f"{x.shape[0] - 1}] for an input batch of {x.shape[0]}, got values in "
                                   f"[{float(idx.min())}, {float(idx.max())}]")
    return x, rois, size, float(spatial_scale)


# ------------------------------------------------------------------------------------------- RoI Align
def _axis_taps(xp, start, bin_size, grid, pooled: int, length: int, scale):
    """The bilinear taps of every sample along one axis (rows or columns), shape (K, pooled, G, 2):
    pixel indices (low, high) and weights ((1 - frac) * scale, frac * scale), where G = max grid and
    samples beyond ``grid[k]`` or outside ``[-1, length]`` get weight 0 (index 0).

    ``start``, ``bin_size``, ``scale``: (K,) in the input dtype; ``grid``: (K,) int64 >= 0.
    """
    dtype = start.dtype
    G = int(grid.max(initial=0))
    p = xp.arange(pooled, dtype=dtype)[None, :, None]
    i = xp.arange(G)[None, None, :]
    g = grid[:, None, None]
    bs = bin_size[:, None, None]
    # the kernel's expression and order of operations, in the input dtype
    c = start[:, None, None] + p * bs + (i.astype(dtype) + dtype.type(0.5)) * bs / xp.maximum(g, 1).astype(dtype)
    valid = (i < g) & (c >= -1) & (c <= length)
    c = xp.where(valid, xp.maximum(c, 0), 0)
    low = c.astype(xp.int64)
    at_end = low >= length - 1
    low = xp.where(at_end, length - 1, low)
    high = xp.where(at_end, low, low + 1)
    frac = xp.where(at_end, 0, c - low.astype(dtype))  # the kernel sets y = y_low there, so ly = 0
    w = (scale[:, None, None] * valid).astype(dtype)
    return xp.stack([low, high], axis=-1), xp.stack([(1 - frac) * w, frac * w], axis=-1)


def _align_geometry(rois, shape, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool):
    """Row taps, column taps (see :func:`_axis_taps`) and samples per bin of every RoI; ``1/count`` is
    folded into the row weights."""
    xp = get_array_module(rois)
    _, _, H, W = shape
    PH, PW = output_size
    dtype = rois.dtype
    offset = dtype.type(0.5 if aligned else 0.0)
    scale = dtype.type(spatial_scale)
    x1, y1, x2, y2 = (rois[:, i] * scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # force malformed RoIs to 1x1
        roi_w, roi_h = xp.maximum(roi_w, 1), xp.maximum(roi_h, 1)
    bin_w, bin_h = roi_w / dtype.type(PW), roi_h / dtype.type(PH)
    if sampling_ratio > 0:
        grid_h = grid_w = xp.full(rois.shape[0], sampling_ratio, dtype=xp.int64)
    else:  # adaptive; a non-positive size (aligned boxes with x2 <= x1) gives no samples, output 0
        grid_h = xp.maximum(xp.nan_to_num(xp.ceil(roi_h / dtype.type(PH))), 0).astype(xp.int64)
        grid_w = xp.maximum(xp.nan_to_num(xp.ceil(roi_w / dtype.type(PW))), 0).astype(xp.int64)
    count = xp.maximum(grid_h * grid_w, 1).astype(dtype)
    rows = _axis_taps(xp, y1, bin_h, grid_h, PH, H, 1 / count)
    cols = _axis_taps(xp, x1, bin_w, grid_w, PW, W, xp.ones_like(count))
    return rows, cols, grid_h, grid_w


def _dense_axis_weights(xp, taps, length: int):
    """``A[k, p, i]``: the total weight pixel i gets from the samples of bin p (taps merged)."""
    idx, w = taps
    K, P = idx.shape[:2]
    flat = ((xp.arange(K)[:, None] * P + xp.arange(P)[None, :]) * length)[:, :, None, None] + idx
    return xp.bincount(flat.ravel(), weights=w.ravel(), minlength=K * P * length).reshape(K, P, length)


def roi_align_matrix(rois, shape, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool):
    """The sparse ``(K * PH * PW, N * H * W)`` matrix with ``roi_align(x) = M @ x`` (x as (N*H*W, C)).

    ``rois``: (K, 5) array in the input dtype; ``shape``: the input's (N, C, H, W).
    """
    xp = get_array_module(rois)
    N, _, H, W = shape
    PH, PW = output_size
    K = rois.shape[0]
    rows, cols, _, _ = _align_geometry(rois, shape, output_size, spatial_scale, sampling_ratio, aligned)
    Ay = _dense_axis_weights(xp, rows, H)
    Ax = _dense_axis_weights(xp, cols, W)
    # every (bin row ph, pixel row h) pair of RoI k meets every (bin column pw, pixel column w) pair of k
    ky, py, hy = xp.nonzero(Ay)
    kx, px, wx = xp.nonzero(Ax)
    vy, vx = Ay[ky, py, hy], Ax[kx, px, wx]
    ny, nx = xp.bincount(ky, minlength=K), xp.bincount(kx, minlength=K)
    pairs = ny * nx
    k = xp.repeat(xp.arange(K), pairs)
    local = xp.arange(k.shape[0]) - xp.repeat(xp.cumsum(pairs) - pairs, pairs)
    iy = (xp.cumsum(ny) - ny)[k] + local // nx[k]
    ix = (xp.cumsum(nx) - nx)[k] + local % nx[k]
    r = (k * PH + py[iy]) * PW + px[ix]
    c = (rois[k, 0].astype(xp.int64) * H + hy[iy]) * W + wx[ix]
    v = (vy[iy] * vx[ix]).astype(rois.dtype)
    return _sparse(xp).csr_matrix((v, (r, c)), shape=(K * PH * PW, N * H * W))


if USE_NUMBA:
    # x and the output in NHWC so the innermost loop runs over a contiguous channel vector
    @njit(parallel=True, cache=True, nogil=True)
    def _align_forward_numba(x, batch, ty, wy, gy, tx, wx, gx, out):  # pragma: no cover - compiled
        K, PH = ty.shape[0], ty.shape[1]
        PW = tx.shape[1]
        C = x.shape[3]
        for k in prange(K):
            b = batch[k]
            for ph in range(PH):
                for iy in range(gy[k]):
                    for a in range(2):
                        w_row = wy[k, ph, iy, a]
                        if w_row == 0:
                            continue
                        h = ty[k, ph, iy, a]
                        for pw in range(PW):
                            o = out[k, ph, pw]
                            for ix in range(gx[k]):
                                for e in range(2):
                                    w = w_row * wx[k, pw, ix, e]
                                    if w == 0:
                                        continue
                                    src = x[b, h, tx[k, pw, ix, e]]
                                    for c in range(C):
                                        o[c] += w * src[c]

    @njit(parallel=True, cache=True, nogil=True)
    def _align_backward_numba(g, batch, ty, wy, gy, tx, wx, gx, grad):  # pragma: no cover - compiled
        # RoIs of one image write to the same pixels: thread t adds RoIs t, t + T, ... into its own
        # buffer grad[t]; the caller sums the buffers (splitting channels instead defeats SIMD: 7x slower)
        K, PH = ty.shape[0], ty.shape[1]
        PW = tx.shape[1]
        T = grad.shape[0]
        C = g.shape[3]
        for t in prange(T):
            for k in range(t, K, T):
                b = batch[k]
                for ph in range(PH):
                    for iy in range(gy[k]):
                        for a in range(2):
                            w_row = wy[k, ph, iy, a]
                            if w_row == 0:
                                continue
                            h = ty[k, ph, iy, a]
                            for pw in range(PW):
                                src = g[k, ph, pw]
                                for ix in range(gx[k]):
                                    for e in range(2):
                                        w = w_row * wx[k, pw, ix, e]
                                        if w == 0:
                                            continue
                                        dst = grad[t, b, h, tx[k, pw, ix, e]]
                                        for c in range(C):
                                            dst[c] += w * src[c]

    @njit(parallel=True, cache=True, nogil=True)
    def _pool_forward_numba(x, batch, h_lo, h_hi, w_lo, w_hi, out, arg):  # pragma: no cover - compiled
        K, PH, PW, C = out.shape
        W = x.shape[2]
        for k in prange(K):
            b = batch[k]
            for ph in range(PH):
                for pw in range(PW):
                    o = out[k, ph, pw]
                    a = arg[k, ph, pw]
                    for h in range(h_lo[k, ph], h_hi[k, ph]):  # row-major scan: the first maximum wins
                        for w in range(w_lo[k, pw], w_hi[k, pw]):
                            src = x[b, h, w]
                            for c in range(C):
                                if src[c] > o[c]:
                                    o[c] = src[c]
                                    a[c] = h * W + w


def _use_numba(x) -> bool:
    return USE_NUMBA and isinstance(x, np.ndarray)


class RoIAlignFunction(Function):
    def forward(ctx, x, rois, *, output_size, spatial_scale, sampling_ratio, aligned):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        PH, PW = output_size
        K = rois.shape[0]
        ctx.shape, ctx.numba = x.shape, _use_numba(x)
        if ctx.numba:
            rows, cols, gy, gx = _align_geometry(rois, x.shape, output_size, spatial_scale, sampling_ratio, aligned)
            ctx.geometry = (rois[:, 0].astype(xp.int64), *rows, gy, *cols, gx)
            out = xp.zeros((K, PH, PW, C), dtype=x.dtype)
            _align_forward_numba(xp.ascontiguousarray(x.transpose(0, 2, 3, 1)), *ctx.geometry, out)
        else:
            ctx.M = roi_align_matrix(rois, x.shape, output_size, spatial_scale, sampling_ratio, aligned)
            out = (ctx.M @ x.transpose(0, 2, 3, 1).reshape(N * H * W, C)).reshape(K, PH, PW, C)
        return out.transpose(0, 3, 1, 2)

    def backward(ctx, gy):
        xp = get_array_module(gy)
        N, C, H, W = ctx.shape
        K, _, PH, PW = gy.shape
        g = xp.ascontiguousarray(gy.transpose(0, 2, 3, 1))  # (K, PH, PW, C)
        if ctx.numba:
            threads = max(1, min(numba.get_num_threads(), K))
            grad = xp.zeros((threads, N, H, W, C), dtype=gy.dtype)
            _align_backward_numba(g, *ctx.geometry, grad)
            grad = grad[0] if threads == 1 else grad.sum(axis=0)
        else:
            grad = (ctx.M.T @ g.reshape(K * PH * PW, C)).reshape(N, H, W, C)
        return grad.transpose(0, 3, 1, 2), None


def roi_align(input, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> Tensor:
    """RoI Align (He et al., Mask R-CNN 2017) with torchvision's semantics: each output bin is the
    average of ``grid_h * grid_w`` bilinear samples of the feature map inside the (unquantized) box.

    ``out[k, c, ph, pw] = 1/count * sum_{iy, ix} bilinear(input[b_k, c], y(ph, iy), x(pw, ix))`` with
    ``y = y1' + ph * bin_h + (iy + 0.5) * bin_h / grid_h``, ``y1' = y1 * spatial_scale - 0.5 * aligned``;
    ``grid = sampling_ratio`` if > 0 else ``ceil(roi_size / output_size)`` per RoI; clamped bilinear
    reads, zero outside ``[-1, H] x [-1, W]``; ``count = max(grid_h * grid_w, 1)``. See the module
    docstring for the details and the vectorization.

    Shapes: input ``(N, C, H, W)``; boxes ``(K, 5)`` = (batch_index, x1, y1, x2, y2) or a list of
    ``(K_i, 4)``; output ``(K, C, PH, PW)``. Differentiable in ``input`` (not in ``boxes``).

    >>> import shendu
    >>> from shendu.vision.ops import roi_align
    >>> x = shendu.arange(16.0).reshape(1, 1, 4, 4)
    >>> roi_align(x, shendu.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 2, sampling_ratio=1).tolist()
    [[[[2.5, 3.5], [6.5, 7.5]]]]
    """
    x, rois, size, scale = _check("roi_align", input, boxes, output_size, spatial_scale)
    if not isinstance(sampling_ratio, numbers.Integral):
        raise ArgumentError(f"roi_align: sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
    return RoIAlignFunction.apply(x, rois, output_size=size, spatial_scale=scale,
                                  sampling_ratio=int(sampling_ratio), aligned=bool(aligned))


# -------------------------------------------------------------------------------------------- RoI Pool
def _round_half_away(xp, v):
    """C's ``round``: halves go away from zero (NumPy's ``round`` goes to even). Exact: ``floor(v + 0.5)``
    would round float32 0.49999997 up, since the sum rounds to 1."""
    t = xp.trunc(v)
    return t + xp.where(xp.abs(v - t) >= 0.5, xp.sign(v), 0)


def _pool_bins(xp, start, end, pooled: int, length: int, dtype):
    """Per RoI and bin, the clipped pixel range ``[lo, hi)`` along one axis, (K, pooled) int64 each."""
    size = xp.maximum(end - start + 1, 1)  # inclusive end; malformed RoIs become one pixel
    bin_size = size.astype(dtype) / dtype.type(pooled)
    p = xp.arange(pooled, dtype=dtype)
    lo = xp.floor(p[None, :] * bin_size[:, None]).astype(xp.int64) + start[:, None]
    hi = xp.ceil((p[None, :] + 1) * bin_size[:, None]).astype(xp.int64) + start[:, None]
    return xp.clip(lo, 0, length), xp.clip(hi, 0, length)


def roi_pool_numpy(x_nhwc, batch, h_lo, h_hi, w_lo, w_hi, best, arg):
    """The reference RoI Pool forward: a running max/argmax over the offsets inside the largest bin,
    for all RoIs, bins and channels at once. Updates ``best`` and ``arg`` (K, PH, PW, C) in place."""
    xp = get_array_module(x_nhwc)
    _, H, W, _ = x_nhwc.shape
    b = batch[:, None, None]
    tall = int((h_hi - h_lo).max(initial=0))
    wide = int((w_hi - w_lo).max(initial=0))
    for dh in range(tall):  # row-major, like the kernel's scan: with a strict > the first maximum wins
        h = h_lo + dh
        h_in = (h < h_hi)[:, :, None]
        h = xp.minimum(h, H - 1)[:, :, None]
        for dw in range(wide):
            w = w_lo + dw
            inside = h_in & (w < w_hi)[:, None, :]
            w = xp.minimum(w, W - 1)[:, None, :]
            v = x_nhwc[b, h, w]  # (K, PH, PW, C)
            better = (v > best) & inside[..., None]
            xp.copyto(best, v, where=better)
            xp.copyto(arg, (h * W + w)[..., None], where=better)


class RoIPoolFunction(Function):
    def forward(ctx, x, rois, *, output_size, spatial_scale):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        PH, PW = output_size
        dtype = x.dtype
        q = _round_half_away(xp, rois[:, 1:] * dtype.type(spatial_scale)).astype(xp.int64)
        h_lo, h_hi = _pool_bins(xp, q[:, 1], q[:, 3], PH, H, dtype)
        w_lo, w_hi = _pool_bins(xp, q[:, 0], q[:, 2], PW, W, dtype)
        batch = rois[:, 0].astype(xp.int64)
        empty = (h_hi <= h_lo)[:, :, None] | (w_hi <= w_lo)[:, None, :]  # (K, PH, PW)
        # the kernel starts non-empty bins at -FLT_MAX (also for double) and empty ones at 0
        start = xp.where(empty, 0, -xp.finfo(xp.float32).max).astype(dtype)
        best = xp.empty(empty.shape + (C,), dtype=dtype)
        best[...] = start[..., None]
        arg = xp.full(best.shape, -1, dtype=xp.int64)
        x_nhwc = xp.ascontiguousarray(x.transpose(0, 2, 3, 1))  # each read is one channel vector
        kernel = _pool_forward_numba if _use_numba(x) else roi_pool_numpy
        kernel(x_nhwc, batch, h_lo, h_hi, w_lo, w_hi, best, arg)
        ctx.arg, ctx.batch, ctx.shape = arg, batch, x.shape
        return best.transpose(0, 3, 1, 2)

    def backward(ctx, gy):
        xp = get_array_module(gy)
        N, C, H, W = ctx.shape
        arg = ctx.arg.transpose(0, 3, 1, 2)  # (K, C, PH, PW)
        hit = arg >= 0
        plane = ctx.batch[:, None, None, None] * C + xp.arange(C)[None, :, None, None]
        flat = (plane * (H * W) + arg)[hit]
        g = xp.bincount(flat, weights=gy[hit], minlength=N * C * H * W)
        return g.astype(gy.dtype, copy=False).reshape(N, C, H, W), None


def roi_pool(input, boxes, output_size, spatial_scale: float = 1.0) -> Tensor:
    """RoI max pooling (Girshick, Fast R-CNN 2015) with torchvision's quantization: the box is rounded
    to pixels (inclusive end, at least 1x1), cut into ``PH x PW`` bins with
    ``[floor(p * bin), ceil((p + 1) * bin))``, and each bin takes the max (0 for an empty bin).
    Backward sends each output gradient to the input position of its maximum.

    Shapes: input ``(N, C, H, W)``; boxes ``(K, 5)`` = (batch_index, x1, y1, x2, y2) or a list of
    ``(K_i, 4)``; output ``(K, C, PH, PW)``. Differentiable in ``input`` (not in ``boxes``).

    >>> import shendu
    >>> from shendu.vision.ops import roi_pool
    >>> x = shendu.arange(16.0).reshape(1, 1, 4, 4)
    >>> roi_pool(x, shendu.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]]), 2).tolist()
    [[[[5.0, 6.0], [9.0, 10.0]]]]
    """
    x, rois, size, scale = _check("roi_pool", input, boxes, output_size, spatial_scale)
    return RoIPoolFunction.apply(x, rois, output_size=size, spatial_scale=scale)


# ---------------------------------------------------------------------------------------------- layers
class RoIAlign(Module):
    """:func:`roi_align` as a layer: ``RoIAlign(output_size, spatial_scale, sampling_ratio, aligned=False)``."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False):
        super().__init__()
        self.output_size = _pair("RoIAlign", output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input, rois) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


class RoIPool(Module):
    """:func:`roi_pool` as a layer: ``RoIPool(output_size, spatial_scale)``."""

    def __init__(self, output_size, spatial_scale: float):
        super().__init__()
        self.output_size = _pair("RoIPool", output_size)
        self.spatial_scale = spatial_scale

    def forward(self, input, rois) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class MultiScaleRoIAlign(Module):
    """RoI Align over a feature pyramid (torchvision's ``MultiScaleRoIAlign``): each box goes to level
    ``k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6)`` (FPN paper, Eqn. 1),
    clamped to the available levels; each level's scale is inferred as the power of two closest to
    ``feature_size / image_size``. With one feature map it is plain :func:`roi_align`.

    ``forward(x, boxes, image_shapes)``: ``x`` a dict name -> (N, C, H_l, W_l) feature map (only the
    names in ``featmap_names`` are used, in that dict's order), ``boxes`` a list of (K_i, 4) xyxy
    boxes per image in image coordinates, ``image_shapes`` the list of (height, width) of the images.
    Returns ``(sum K_i, C, PH, PW)``; differentiable in the feature maps.
    """

    def __init__(self, featmap_names, output_size, sampling_ratio: int, *, canonical_scale: int = 224,
                 canonical_level: int = 4):
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = _pair("MultiScaleRoIAlign", output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def extra_repr(self) -> str:
        return (f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}")

    @staticmethod
    def infer_scale(feature_shape, image_size) -> float:
        scales = [2.0 ** round(np.log2(float(f) / s)) for f, s in zip(feature_shape[-2:], image_size)]
        if scales[0] != scales[1]:
            raise ArgumentError(f"MultiScaleRoIAlign: feature map {tuple(feature_shape[-2:])} and image "
                                f"{tuple(image_size)} give different scales along height and width: {scales}")
        return scales[0]

    def forward(self, x, boxes, image_shapes) -> Tensor:
        feats = [v for k, v in x.items() if k in self.featmap_names]
        if not feats:
            raise ArgumentError(f"MultiScaleRoIAlign: none of {self.featmap_names} is among the feature maps "
                                f"{list(x)}")
        image_size = tuple(max(s) for s in zip(*image_shapes))
        scales = [self.infer_scale(f.shape, image_size) for f in feats]
        if len(feats) == 1 or not sum(len(b) for b in boxes):
            return roi_align(feats[0], boxes, self.output_size, scales[0], self.sampling_ratio)
        first = as_tensor_arg(feats[0])
        rois = _rois_array("MultiScaleRoIAlign", boxes, get_array_module(first.data), first.dtype)
        k_min, k_max = -np.log2(scales[0]), -np.log2(scales[-1])
        area = (rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])
        with np.errstate(divide="ignore"):
            level = np.floor(self.canonical_level + np.log2(np.sqrt(area) / self.canonical_scale)
                             + area.dtype.type(1e-6))
        level = (np.clip(level, k_min, k_max) - k_min).astype(np.int64)
        pieces, order = [], []
        for lvl, (feat, scale) in enumerate(zip(feats, scales)):  # a loop over pyramid levels
            idx = np.nonzero(level == lvl)[0]
            if idx.size:
                pieces.append(roi_align(feat, rois[idx], self.output_size, scale, self.sampling_ratio))
                order.append(idx)
        out = cat(pieces, dim=0) if len(pieces) > 1 else pieces[0]
        inverse = np.empty(rois.shape[0], dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(rois.shape[0])
        return out[inverse]
