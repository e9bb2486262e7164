"""Pooling, unpooling and upsampling.

Layout NCHW (or NCL for 1-d); unbatched inputs (CHW / CL) work too. Every op works on *planes*: all
leading dims are folded into one, so 1-d pooling is 2-d pooling with H = 1, and indices
(``return_indices=True``) are flat within each (n, c) plane, ``h * W + w``, as in torch.

Output length of max/avg/min pooling: ``floor((L + 2p - d(k-1) - 1)/s) + 1`` (ceil in ``ceil_mode``,
dropping a last window that would start in the right padding); ``stride`` defaults to ``kernel_size``;
``padding`` may be at most half the (effective) kernel. Max pooling pads with -inf, ties go to the
first maximum in row-major order and NaN propagates; its gradient goes only to the arg-max (summed
where overlapping windows share a winner). Average pooling pads with zeros and divides by the window
size clipped to input+padding (``count_include_pad=True``, torch's default) or to the input.

Also here: min, Lp, adaptive, global average, max-unpooling, nearest / bilinear / bed-of-nails
upsampling, and the rarer poolings of the notes: stochastic (Zeiler & Fergus 2013), K-max
(Kalchbrenner et al. 2014), sort pooling (Singla 2017) and fractional max pooling (Graham 2014).
The loops live in :mod:`shendu.ops.kernels.pool`.
"""

from __future__ import annotations

import math
import numbers

from shendu import backend
from shendu.autograd import engine
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg
from shendu.ops.kernels import pool as K

__all__ = [
    "max_pool1d", "max_pool2d", "min_pool2d", "avg_pool1d", "avg_pool2d", "lp_pool1d", "lp_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "global_avg_pool2d", "max_unpool1d", "max_unpool2d", "interpolate", "upsample", "upsample_nearest2d",
    "upsample_bilinear2d", "stochastic_pool2d", "kmax_pool1d", "dynamic_k", "sort_pool2d",
    "fractional_max_pool2d",
]

# ----------------------------------------------------------------------------------------- helpers
def _planes(x, nd: int):
    """``x`` (..., H, W) or (..., L) as planes (P, H, W), with H = 1 for 1-d."""
    if nd == 1:
        return x.reshape(-1, 1, x.shape[-1])
    return x.reshape((-1,) + x.shape[-2:])


def _tuple(op: str, name: str, v, nd: int) -> tuple:
    if isinstance(v, numbers.Integral):
        return (int(v),) * nd
    try:
        t = tuple(int(e) for e in v)
    except TypeError:
        raise ArgumentError(f"{op}: {name} must be an int or a tuple of {nd} ints, got {v!r}") from None
    if len(t) == 1:
        t = t * nd
    if len(t) != nd:
        raise ArgumentError(f"{op}: {name} must be an int or a tuple of {nd} ints, got {v!r}")
    return t


def _check_input(op: str, x: Tensor, nd: int) -> None:
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: expected a floating-point input, got {x.dtype}; call .float() first")
    if x.ndim not in (nd + 1, nd + 2) or 0 in x.shape:
        want = "(N, C, L) or (C, L)" if nd == 1 else "(N, C, H, W) or (C, H, W)"
        raise ShapeError(f"{op}: expected a non-empty input of shape {want}, got {fmt_shape(x.shape)}")


def _window_args(op, x, nd, kernel_size, stride, padding, dilation, ceil_mode):
    """Validated geometry in 2-d terms: (k, s, p, d, out) pairs, and the output's spatial shape."""
    _check_input(op, x, nd)
    k = _tuple(op, "kernel_size", kernel_size, nd)
    s = k if stride is None or (not isinstance(stride, numbers.Integral) and len(stride) == 0) else \
        _tuple(op, "stride", stride, nd)
    p = _tuple(op, "padding", padding, nd)
    d = _tuple(op, "dilation", dilation, nd)
    if min(k + s + d) < 1 or min(p) < 0:
        raise ArgumentError(f"{op}: kernel_size, stride and dilation must be positive and padding "
                            f"non-negative, got kernel_size={k}, stride={s}, padding={p}, dilation={d}")
    for kk, pp, dd in zip(k, p, d):
        if 2 * pp > (kk - 1) * dd + 1:
            raise ArgumentError(f"{op}: pad should be at most half of effective kernel size, but got "
                                f"pad={pp}, kernel_size={kk} and dilation={dd}; use a smaller padding "
                                "or pad the input with pad() first")
    sizes = x.shape[-nd:]
    out = tuple(K.out_size(L, kk, ss, pp, dd, ceil_mode) for L, kk, ss, pp, dd in zip(sizes, k, s, p, d))
    if min(out) < 1:
        raise ShapeError(f"{op}: input of spatial size {fmt_shape(sizes)} is too small for kernel {k} with "
                         f"padding {p} and dilation {d} (output size {fmt_shape(out)}); use a smaller kernel "
                         "or pad the input")
    if nd == 1:
        k, s, p, d, out = (1,) + k, (1,) + s, (0,) + p, (1,) + d, (1,) + out
    return k, s, p, d, out


def _out_shape(x_shape, nd, out):
    return tuple(x_shape[:-nd]) + tuple(out[-nd:])


# ----------------------------------------------------------------------------------------- max pool
class MaxPool(Function):
    """Max pooling of planes; returns ``(y, indices)``; backward scatters to the saved arg-max."""

    def forward(ctx, x, *, nd, k, s, p, d, out):
        y, idx = K.max_pool2d_forward(_planes(x, nd), k, s, p, d, out)
        ctx.idx, ctx.x_shape, ctx.nd, ctx.window = idx, x.shape, nd, (k, s, p, d)
        shape = _out_shape(x.shape, nd, out)
        return y.reshape(shape), idx.reshape(shape)

    def backward(ctx, gy, _gidx=None):
        P = ctx.idx.shape[0]
        H, W = (1, ctx.x_shape[-1]) if ctx.nd == 1 else ctx.x_shape[-2:]
        return K.max_pool2d_backward(gy.reshape(P, -1), ctx.idx, H, W, ctx.window).reshape(ctx.x_shape)


def _max_pool(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x = as_tensor_arg(input)
    k, s, p, d, out = _window_args(op, x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    if not return_indices and not (engine.grad_mode.enabled and x.requires_grad):
        # inference: no arg-max to keep for a backward, none to return
        y = K.max_pool2d_values(_planes(x.data, nd), k, s, p, d, out, team=True)
        return Tensor._wrap(y.reshape(_out_shape(x.shape, nd, out)))
    y, idx = MaxPool.apply(x, nd=nd, k=k, s=s, p=p, d=d, out=out)
    return (y, idx) if return_indices else y


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """1-d max pooling: ``y[l] = max_{u<k} x[l*s - p + u*d]`` (padding reads -inf).

    Shapes: (N, C, L) or (C, L) -> (..., L_out); indices (if asked) index the input's last axis.

    >>> import shendu
    >>> shendu.max_pool1d(shendu.tensor([[[1., 3., 2., 5., 4.]]]), 2).tolist()
    [[[3.0, 5.0]]]
    """
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """2-d max pooling: ``y[i, j] = max_{u,v} x[i*s - p + u*d, j*s - p + v*d]`` (padding reads -inf).

    Shapes: (N, C, H, W) or (C, H, W) -> (..., H_out, W_out). With ``return_indices`` also returns the
    arg-max as flat indices ``h * W + w`` within each plane (for :func:`max_unpool2d`). The gradient
    goes only to the arg-max of each window (the first maximum on ties).

    >>> import shendu
    >>> x = shendu.arange(16.).reshape(1, 1, 4, 4)
    >>> y, idx = shendu.max_pool2d(x, 2, return_indices=True)
    >>> y.tolist(), idx.tolist()
    ([[[[5.0, 7.0], [13.0, 15.0]]]], [[[[5, 7], [13, 15]]]])
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def min_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """2-d min pooling, ``min_pool(x) = -max_pool(-x)``: the window minimum (first one on ties);
    indices and gradient follow the arg-min. Arguments and shapes as :func:`max_pool2d`.

    >>> import shendu
    >>> shendu.min_pool2d(shendu.arange(16.).reshape(1, 1, 4, 4), 2).tolist()
    [[[[0.0, 2.0], [8.0, 10.0]]]]
    """
    x = as_tensor_arg(input)
    _check_input("min_pool2d", x, 2)
    r = _max_pool("min_pool2d", 2, -x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
    return (-r[0], r[1]) if return_indices else -r


# ------------------------------------------------------------------------------------------ avg pool
class AvgPool(Function):
    """Average pooling of planes with a per-output divisor (count_include_pad / divisor_override)."""

    def forward(ctx, x, *, nd, k, s, p, out, div):
        ctx.geom, ctx.x_shape, ctx.nd, ctx.div = (k, s, p), x.shape, nd, div
        y = K.avg_pool2d_forward(_planes(x, nd), k, s, p, out, div)
        return y.reshape(_out_shape(x.shape, nd, out))

    def backward(ctx, gy):
        k, s, p = ctx.geom
        H, W = (1, ctx.x_shape[-1]) if ctx.nd == 1 else ctx.x_shape[-2:]
        g = _planes(gy, ctx.nd)
        return K.avg_pool2d_backward(g, H, W, k, s, p, ctx.div).reshape(ctx.x_shape)


def _avg_pool(op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x = as_tensor_arg(input)
    k, s, p, d, out = _window_args(op, x, nd, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and divisor_override == 0:
        raise ArgumentError(f"{op}: divisor_override must be non-zero, got 0")
    H, W = (1, x.shape[-1]) if nd == 1 else x.shape[-2:]
    div = K.avg_divisor(H, W, out, k, s, p, count_include_pad, divisor_override, x.dtype)
    return AvgPool.apply(x, nd=nd, k=k, s=s, p=p, out=out, div=div)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True):
    """1-d average pooling: ``y[l] = sum_{u<k} x[l*s - p + u] / divisor`` (padding reads 0).

    The divisor is the window size clipped to input+padding (``count_include_pad=True``) or to the
    input alone. Shapes: (N, C, L) or (C, L) -> (..., L_out).

    >>> import shendu
    >>> shendu.avg_pool1d(shendu.tensor([[[1., 3., 2., 6.]]]), 2).tolist()
    [[[2.0, 4.0]]]
    """
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None):
    """2-d average pooling: ``y[i, j] = sum_{u,v} x[i*s - p + u, j*s - p + v] / divisor``.

    ``divisor`` is ``divisor_override`` if given, else the window size clipped to input+padding
    (``count_include_pad=True``, torch's default) or to the input. Shapes: (N, C, H, W) or (C, H, W)
    -> (..., H_out, W_out). Backward spreads ``g / divisor`` over each window.

    >>> import shendu
    >>> x = shendu.ones(1, 1, 3, 3)
    >>> round(shendu.avg_pool2d(x, 3, 1, 1)[0, 0, 0, 0].item() * 9, 4)  # a corner counts the padding: 4/9
    4.0
    >>> shendu.avg_pool2d(x, 3, 1, 1, count_include_pad=False)[0, 0, 0, 0].item()
    1.0
    """
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def lp_pool1d(input, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False):
    """1-d power-average pooling: ``y = (sum_window x^p)^(1/p)`` (torch's formula, through
    ``avg_pool1d(x^p) * k``). ``p = inf`` is max pooling. Shapes as :func:`avg_pool1d`.

    >>> import shendu
    >>> shendu.lp_pool1d(shendu.tensor([[[3., 4.]]]), 2, 2).tolist()
    [[[5.0]]]
    """
    return _lp_pool("lp_pool1d", 1, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool2d(input, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False):
    """2-d power-average pooling: ``y = (sum_window x^p)^(1/p)``; torch computes it as
    ``(sign(a) relu(|a|) * kh * kw)^(1/p)`` with ``a = avg_pool2d(x^p)``, and so does this.
    Shapes as :func:`avg_pool2d`.

    >>> import shendu
    >>> shendu.lp_pool2d(shendu.full((1, 1, 2, 2), 2.0), 1, 2).tolist()
    [[[[8.0]]]]
    """
    return _lp_pool("lp_pool2d", 2, input, norm_type, kernel_size, stride, ceil_mode)


def _lp_pool(op, nd, input, norm_type, kernel_size, stride, ceil_mode):
    from shendu.ops.activation import relu

    x = as_tensor_arg(input)
    if norm_type == math.inf:
        return _max_pool(op, nd, x, kernel_size, stride, 0, 1, ceil_mode, False)
    k = _tuple(op, "kernel_size", kernel_size, nd)
    a = _avg_pool(op, nd, x ** norm_type, kernel_size, stride, 0, ceil_mode, True, None)
    return ((a.sign() * relu(a.abs())) * math.prod(k)) ** (1.0 / norm_type)


# ------------------------------------------------------------------------------- separable resampling
class Resample(Function):
    """``y = A_h @ x @ A_w^T`` on each plane (A_h None for 1-d): adaptive average pooling and
    nearest / bilinear / bed-of-nails upsampling are all this, with different matrices.
    Backward: ``gx = A_h^T @ gy @ A_w``."""

    def forward(ctx, x, *, nd, Ah, Aw):
        ctx.mats, ctx.x_shape, ctx.nd = (Ah, Aw), x.shape, nd
        y = _planes(x, nd) @ Aw.T
        if Ah is not None:
            y = Ah @ y
        return y.reshape(_out_shape(x.shape, nd, (Ah.shape[0] if Ah is not None else 1, Aw.shape[0])))

    def backward(ctx, gy):
        Ah, Aw = ctx.mats
        g = _planes(gy, ctx.nd)
        if Ah is not None:
            g = Ah.T @ g
        return (g @ Aw).reshape(ctx.x_shape)


def _avg_matrix(L, O, dtype, xp):
    s, e = K.adaptive_bins(L, O)
    i = xp.arange(L)
    inside = (i[None, :] >= s[:, None]) & (i[None, :] < e[:, None])
    return (inside / (e - s)[:, None]).astype(dtype)


def _adaptive_size(op, x, nd, output_size):
    out = _tuple(op, "output_size", output_size if output_size is not None else 1, nd) \
        if not (isinstance(output_size, (tuple, list)) and None in output_size) else \
        tuple(x.shape[-nd + i] if o is None else int(o) for i, o in enumerate(output_size))
    if min(out) < 1:
        raise ArgumentError(f"{op}: output_size must be positive, got {output_size!r}")
    return out


def adaptive_avg_pool1d(input, output_size) -> Tensor:
    """1-d adaptive average pooling: bin i averages ``x[floor(i L/O) : ceil((i+1) L/O)]`` (bins may
    overlap). Shapes: (N, C, L) or (C, L) -> (..., O).

    >>> import shendu
    >>> shendu.adaptive_avg_pool1d(shendu.tensor([[[1., 2., 3., 4., 5.]]]), 3).tolist()
    [[[1.5, 3.0, 4.5]]]
    """
    x = as_tensor_arg(input)
    _check_input("adaptive_avg_pool1d", x, 1)
    (O,) = _adaptive_size("adaptive_avg_pool1d", x, 1, output_size)
    xp = get_array_module(x.data)
    return Resample.apply(x, nd=1, Ah=None, Aw=_avg_matrix(x.shape[-1], O, x.dtype, xp))


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """2-d adaptive average pooling to ``output_size`` (int, pair, None keeps a size): bin (i, j)
    averages rows ``[floor(i H/OH), ceil((i+1) H/OH))`` and the same for columns. Computed as
    ``A_h @ x @ A_w^T`` with the (OH, H) and (OW, W) bin-averaging matrices (one BLAS call each).

    >>> import shendu
    >>> shendu.adaptive_avg_pool2d(shendu.arange(16.).reshape(1, 1, 4, 4), 1).tolist()
    [[[[7.5]]]]
    """
    x = as_tensor_arg(input)
    _check_input("adaptive_avg_pool2d", x, 2)
    OH, OW = _adaptive_size("adaptive_avg_pool2d", x, 2, output_size)
    if (OH, OW) == (1, 1):  # global average: one reduction beats two matmuls
        return global_avg_pool2d(x, keepdim=True)
    xp = get_array_module(x.data)
    H, W = x.shape[-2:]
    return Resample.apply(x, nd=2, Ah=_avg_matrix(H, OH, x.dtype, xp), Aw=_avg_matrix(W, OW, x.dtype, xp))


class BinMax(Function):
    """Max over rectangular bins (adaptive and fractional max pooling): ``(y, indices)``."""

    def forward(ctx, x, *, nd, bins):
        y, idx = K.bin_max_forward(_planes(x, nd), *bins)
        ctx.idx, ctx.x_shape, ctx.nd = idx, x.shape, nd
        shape = _out_shape(x.shape, nd, y.shape[1:])
        return y.reshape(shape), idx.reshape(shape)

    def backward(ctx, gy, _gidx=None):
        P = ctx.idx.shape[0]
        n = math.prod(ctx.x_shape[-ctx.nd:])
        return K.scatter_planes(gy.reshape(P, -1), ctx.idx, n).reshape(ctx.x_shape)


def _adaptive_max(op, nd, input, output_size, return_indices):
    x = as_tensor_arg(input)
    _check_input(op, x, nd)
    out = _adaptive_size(op, x, nd, output_size)
    sizes = x.shape[-nd:]
    if all(L % o == 0 for L, o in zip(sizes, out)):  # equal bins: plain max pooling, the fast kernel
        k = tuple(L // o for L, o in zip(sizes, out))
        r = _max_pool(op, nd, x, k, k, 0, 1, False, True)
    else:
        (rs, re), (cs, ce) = ((K.adaptive_bins(1, 1),) if nd == 1 else ()) + tuple(
            K.adaptive_bins(L, o) for L, o in zip(sizes, out))
        r = BinMax.apply(x, nd=nd, bins=(rs[None], re[None], cs[None], ce[None]))
    return r if return_indices else r[0]


def adaptive_max_pool1d(input, output_size, return_indices: bool = False):
    """1-d adaptive max pooling over torch's bins ``[floor(i L/O), ceil((i+1) L/O))``.

    >>> import shendu
    >>> shendu.adaptive_max_pool1d(shendu.tensor([[[1., 5., 3., 4., 2.]]]), 3).tolist()
    [[[5.0, 5.0, 4.0]]]
    """
    return _adaptive_max("adaptive_max_pool1d", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices: bool = False):
    """2-d adaptive max pooling over torch's bins (see :func:`adaptive_avg_pool2d`); indices are flat
    per plane. Shapes: (N, C, H, W) or (C, H, W) -> (..., OH, OW).

    >>> import shendu
    >>> shendu.adaptive_max_pool2d(shendu.arange(16.).reshape(1, 1, 4, 4), (1, 2)).tolist()
    [[[[13.0, 15.0]]]]
    """
    return _adaptive_max("adaptive_max_pool2d", 2, input, output_size, return_indices)


def global_avg_pool2d(input, keepdim: bool = False) -> Tensor:
    """Global average pooling (Lin et al., Network in Network, 2014): the mean over H and W, which
    replaces the fully connected classifier. (N, C, H, W) -> (N, C), or (N, C, 1, 1) with keepdim.

    >>> import shendu
    >>> shendu.global_avg_pool2d(shendu.arange(8.).reshape(1, 2, 2, 2)).tolist()
    [[1.5, 5.5]]
    """
    from shendu.ops.reduce import mean

    x = as_tensor_arg(input)
    _check_input("global_avg_pool2d", x, 2)
    return mean(x, dim=(-2, -1), keepdim=keepdim)


# ------------------------------------------------------------------------------------------- unpool
class MaxUnpool(Function):
    """Put each value at its saved flat index in a zero plane; backward gathers at the indices."""

    def forward(ctx, x, *, idx, nd, out):
        xp = get_array_module(x)
        P = math.prod(x.shape[:-nd])
        ctx.idx, ctx.x_shape = idx.reshape(P, -1), x.shape
        y = xp.zeros((P, math.prod(out)), x.dtype)
        xp.put_along_axis(y, ctx.idx, x.reshape(P, -1), axis=1)  # duplicates (overlapping pools): last wins
        return y.reshape(tuple(x.shape[:-nd]) + tuple(out))

    def backward(ctx, gy):
        xp = get_array_module(gy)
        P = ctx.idx.shape[0]
        return xp.take_along_axis(gy.reshape(P, -1), ctx.idx, axis=1).reshape(ctx.x_shape)


def _max_unpool(op, nd, input, indices, kernel_size, stride, padding, output_size):
    x = as_tensor_arg(input)
    _check_input(op, x, nd)
    idx = as_tensor_arg(indices)
    if idx.shape != x.shape or idx.dtype.kind not in "iu":
        raise ShapeError(f"{op}: indices must be an integer tensor of the input's shape {fmt_shape(x.shape)}, "
                         f"got {idx.dtype} {fmt_shape(idx.shape)}; pass the indices from return_indices=True")
    k = _tuple(op, "kernel_size", kernel_size, nd)
    s = k if stride is None else _tuple(op, "stride", stride, nd)
    p = _tuple(op, "padding", padding, nd)
    default = tuple((L - 1) * ss - 2 * pp + kk for L, kk, ss, pp in zip(x.shape[-nd:], k, s, p))
    if output_size is None:
        out = default
    else:
        out = tuple(int(o) for o in output_size)[-nd:]
        if len(out) != nd or any(abs(o - dd) >= ss for o, dd, ss in zip(out, default, s)):
            raise ShapeError(f"{op}: output_size {tuple(output_size)} is not within a stride of the default "
                             f"size {default} for input {fmt_shape(x.shape)}")
    n = math.prod(out)
    if idx.numel() and (int(idx.data.min()) < 0 or int(idx.data.max()) >= n):
        raise IndexOutOfRangeError(f"{op}: indices must lie in [0, {n}) for an output plane of {out}, got "
                                   f"values in [{int(idx.data.min())}, {int(idx.data.max())}]; pass output_size "
                                   "when the pooled input had an odd size")
    return MaxUnpool.apply(x, idx=idx.data, nd=nd, out=out)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """1-d max unpooling: see :func:`max_unpool2d`. Default length ``(L-1)*s - 2p + k``.

    >>> import shendu
    >>> y, i = shendu.max_pool1d(shendu.tensor([[[1., 3., 2., 0.]]]), 2, return_indices=True)
    >>> shendu.max_unpool1d(y, i, 2).tolist()
    [[[0.0, 3.0, 2.0, 0.0]]]
    """
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """Max unpooling ("switches", Zeiler & Fergus 2014; SegNet): each value goes back to the flat
    per-plane index saved by ``max_pool2d(..., return_indices=True)``; zeros elsewhere.

    Output size ``(H-1)*s - 2p + k`` unless ``output_size`` is given (a 5x5 map pooled 2x2 needs
    ``output_size=(5, 5)``). If overlapping windows saved the same index twice, the value written
    there is one of them (the last one here). Backward gathers the gradient at the indices.

    >>> import shendu
    >>> x = shendu.tensor([[[[1., 2.], [3., 4.]]]])
    >>> idx = shendu.tensor([[[[1, 2], [12, 15]]]])
    >>> shendu.max_unpool2d(x, idx, 2).tolist()
    [[[[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 4.0]]]]
    """
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding, output_size)


# -------------------------------------------------------------------------------------- upsampling
_MODES = ("nearest", "linear", "bilinear", "bed_of_nails")


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None) -> Tensor:
    """Resize the spatial dims of (N, C, L) or (N, C, H, W) with torch's rules.

    - ``'nearest'``: ``src = min(floor(dst * scale), L - 1)`` (asymmetric: 3 -> 5 reads [0,0,1,1,2]);
    - ``'linear'`` / ``'bilinear'``: ``src = (dst + 0.5) * scale - 0.5`` clamped at 0, or
      ``dst * (L-1)/(O-1)`` with ``align_corners=True``, then linear weights between the neighbours;
    - ``'bed_of_nails'`` (CS231n): each value at the top-left of its s x s block, zeros elsewhere;
      needs an integer factor.

    ``scale`` is ``1/scale_factor`` when a factor is given (unless ``recompute_scale_factor``), else
    ``L/O``. Each mode is a per-axis (O, L) matrix, so ``y = A_h @ x @ A_w^T`` and backward is the
    transpose. Output size ``size`` or ``floor(L * scale_factor)``.

    >>> import shendu
    >>> x = shendu.tensor([[[[1., 2.], [3., 4.]]]])
    >>> shendu.interpolate(x, scale_factor=2, mode="bed_of_nails")[0, 0].tolist()
    [[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    >>> shendu.interpolate(x, size=(2, 3), mode="bilinear", align_corners=True)[0, 0].tolist()
    [[1.0, 1.5, 2.0], [3.0, 3.5, 4.0]]
    """
    op = "interpolate"
    x = as_tensor_arg(input)
    if mode not in _MODES:
        raise ArgumentError(f"interpolate: unknown mode {mode!r}; expected one of {_MODES}")
    if x.dtype.kind != "f":
        raise DTypeError(f"interpolate: expected a floating-point input, got {x.dtype}; call .float() first")
    nd = x.ndim - 2
    if nd not in (1, 2) or 0 in x.shape:
        raise ShapeError(f"interpolate: expected an input of shape (N, C, L) or (N, C, H, W), got "
                         f"{fmt_shape(x.shape)}; add a batch dim with unsqueeze(0)")
    if (mode == "linear" and nd != 1) or (mode == "bilinear" and nd != 2):
        raise ArgumentError(f"interpolate: mode {mode!r} expects a {3 if mode == 'linear' else 4}-D input, "
                            f"got {fmt_shape(x.shape)}")
    if align_corners is not None and mode not in ("linear", "bilinear"):
        raise ArgumentError("interpolate: align_corners option can only be set with the interpolating modes: "
                            "linear | bilinear")
    if (size is None) == (scale_factor is None):
        raise ArgumentError("interpolate: give exactly one of size and scale_factor")
    sizes = x.shape[2:]
    if size is not None:
        out = _tuple(op, "size", size, nd)
        scales = tuple(L / o for L, o in zip(sizes, out))
    else:
        factors = (float(scale_factor),) * nd if isinstance(scale_factor, numbers.Number) else \
            tuple(float(f) for f in scale_factor)
        if len(factors) != nd or min(factors) <= 0:
            raise ArgumentError(f"interpolate: scale_factor must be positive, one per spatial dim, "
                                f"got {scale_factor!r}")
        out = tuple(int(math.floor(L * f)) for L, f in zip(sizes, factors))
        scales = tuple(L / o for L, o in zip(sizes, out)) if recompute_scale_factor else tuple(1 / f for f in factors)
    if min(out) < 1:
        raise ShapeError(f"interpolate: output size {out} must be positive (input {fmt_shape(x.shape)})")
    if mode == "bed_of_nails" and any(o % L or o < L for L, o in zip(sizes, out)):
        raise ArgumentError(f"interpolate: bed_of_nails needs an integer upsampling factor, got sizes "
                            f"{tuple(sizes)} -> {out}")
    mats = [K.resample_matrix(L, o, "linear" if mode == "bilinear" else mode, bool(align_corners), sc, x.dtype)
            for L, o, sc in zip(sizes, out, scales)]
    return Resample.apply(x, nd=nd, Ah=mats[0] if nd == 2 else None, Aw=mats[-1])


def upsample(input, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None):
    """Alias of :func:`interpolate` (torch's deprecated name).

    >>> import shendu
    >>> shendu.upsample(shendu.tensor([[[1., 2.]]]), scale_factor=2).tolist()
    [[[1.0, 1.0, 2.0, 2.0]]]
    """
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest2d(input, size=None, scale_factor=None) -> Tensor:
    """Nearest-neighbour 2-d upsampling, ``interpolate(mode='nearest')``.

    >>> import shendu
    >>> shendu.upsample_nearest2d(shendu.tensor([[[[1., 2.]]]]), scale_factor=2)[0, 0].tolist()
    [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]
    """
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear2d(input, size=None, scale_factor=None) -> Tensor:
    """Bilinear 2-d upsampling with ``align_corners=True`` (torch's ``UpsamplingBilinear2d``).

    >>> import shendu
    >>> shendu.upsample_bilinear2d(shendu.tensor([[[[0., 3.]]]]), size=(1, 4))[0, 0].tolist()
    [[0.0, 1.0, 2.0, 3.0]]
    """
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# ---------------------------------------------------------------------------- stochastic pooling
def _windows(xp, x, k, s, out):
    """(P, OH, OW, kh*kw) copies of the window values (row-major within a window)."""
    (kh, kw), (sh, sw), (OH, OW) = k, s, out
    return xp.stack([x[:, u:u + sh * (OH - 1) + 1:sh, v:v + sw * (OW - 1) + 1:sw]
                     for u in range(kh) for v in range(kw)], axis=-1)


def _add_windows(xp, gwin, shape, k, s):
    """Adjoint of :func:`_windows`: add each window slot back to its input position."""
    (kh, kw), (sh, sw) = k, s
    P, OH, OW, _ = gwin.shape
    gx = xp.zeros(shape, gwin.dtype)
    for u in range(kh):
        for v in range(kw):
            gx[:, u:u + sh * (OH - 1) + 1:sh, v:v + sw * (OW - 1) + 1:sw] += gwin[..., u * kw + v]
    return gx


class StochasticPoolTrain(Function):
    """Sample one element per window with ``p_i = a_i / sum(a)``; gradient to the sampled element."""

    def forward(ctx, x, *, k, s, out, rng):
        xp = get_array_module(x)
        planes = _planes(x, 2)
        win = _windows(xp, planes, k, s, out)
        cum = xp.cumsum(win, axis=-1)
        total = cum[..., -1]
        # one uniform per window, scaled to the window sum; the slot whose cumulative interval holds it
        u = rng.random(total.shape, dtype=x.dtype) * total
        choice = xp.minimum((cum <= u[..., None]).sum(-1), win.shape[-1] - 1)
        y = xp.take_along_axis(win, choice[..., None], -1)[..., 0]
        ku, kv = xp.divmod(choice, k[1])
        H, W = planes.shape[1:]
        rows = xp.arange(out[0])[:, None] * s[0] + ku
        cols = xp.arange(out[1])[None, :] * s[1] + kv
        ctx.idx, ctx.x_shape, ctx.live = rows * W + cols, x.shape, total > 0
        return y.reshape(_out_shape(x.shape, 2, out)), ctx.idx.reshape(_out_shape(x.shape, 2, out))

    def backward(ctx, gy, _gidx=None):
        g = gy.reshape(ctx.live.shape) * ctx.live  # all-zero windows: output 0, gradient 0
        return K.scatter_planes(g, ctx.idx, math.prod(ctx.x_shape[-2:])).reshape(ctx.x_shape)


class StochasticPoolEval(Function):
    """Probability-weighted average ``sum(a^2) / sum(a)`` (0 for an all-zero window)."""

    def forward(ctx, x, *, k, s, out):
        xp = get_array_module(x)
        win = _windows(xp, _planes(x, 2), k, s, out)
        S = win.sum(-1)
        Q = (win * win).sum(-1)
        safe = xp.where(S > 0, S, 1)
        y = xp.where(S > 0, Q / safe, 0).astype(x.dtype, copy=False)
        ctx.saved_arrays = (win, safe, y, S > 0)
        ctx.k, ctx.s, ctx.x_shape = k, s, x.shape
        return y.reshape(_out_shape(x.shape, 2, out))

    def backward(ctx, gy):
        xp = get_array_module(gy)
        win, safe, y, live = ctx.saved_arrays
        g = (gy.reshape(y.shape) * live / safe)[..., None]  # d/da_i (Q/S) = (2 a_i - y) / S
        gwin = (g * (2 * win - y[..., None])).astype(gy.dtype, copy=False)
        shape = (win.shape[0],) + tuple(ctx.x_shape[-2:])
        return _add_windows(xp, gwin, shape, ctx.k, ctx.s).reshape(ctx.x_shape)


def stochastic_pool2d(input, kernel_size, stride=None, training: bool = True, generator=None,
                      return_indices: bool = False):
    """Stochastic pooling (Zeiler & Fergus, ICLR 2013) over windows of non-negative activations.

    With ``p_i = a_i / sum_window(a)``: in training, output ``a_l`` for one sampled ``l ~ p`` per
    window (one uniform per window against the cumulative sums; the gradient goes to ``a_l`` only);
    at test time (``training=False``) the probability-weighted average ``sum p_i a_i =
    sum a_i^2 / sum a_i`` (differentiable). An all-zero window gives 0 and gradient 0. Negative inputs
    raise (the definition needs ``a >= 0``: put it after a ReLU). Sampling uses ``generator`` or the
    global seed (:func:`shendu.manual_seed`). No padding; stride defaults to kernel_size.
    Shapes: (N, C, H, W) or (C, H, W) -> (..., OH, OW); ``return_indices`` (training only) gives the
    sampled flat per-plane index.

    >>> import shendu
    >>> x = shendu.tensor([[[[1.6, 2.4, 0.4], [0., 0., 0.], [0., 0., 0.]]]])
    >>> round(shendu.stochastic_pool2d(x, 3, training=False).item(), 2)
    1.93
    """
    op = "stochastic_pool2d"
    x = as_tensor_arg(input)
    k, s, p, d, out = _window_args(op, x, 2, kernel_size, stride, 0, 1, False)
    if x.numel() and float(x.data.min()) < 0:
        raise ArgumentError(f"{op}: inputs must be non-negative (probabilities p_i = a_i / sum a), got a "
                            f"minimum of {float(x.data.min())}; apply relu() before stochastic pooling")
    if not training:
        if return_indices:
            raise ArgumentError(f"{op}: return_indices needs training=True (test mode does not sample)")
        return StochasticPoolEval.apply(x, k=k, s=s, out=out)
    y, idx = StochasticPoolTrain.apply(x, k=k, s=s, out=out, rng=backend.rng(generator))
    return (y, idx) if return_indices else y


# ------------------------------------------------------------------------------------- K-max pooling
class KMax(Function):
    def forward(ctx, x, *, k, dim):
        xp = get_array_module(x)
        # stable sort of -x: among equal values the lowest index comes first
        top = xp.argsort(-x, axis=dim, kind="stable")
        idx = xp.sort(xp.take(top, xp.arange(k), axis=dim), axis=dim)  # back to the original order
        ctx.idx, ctx.dim, ctx.x_shape = idx, dim, x.shape
        return xp.take_along_axis(x, idx, axis=dim)

    def backward(ctx, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(ctx.x_shape, gy.dtype)
        xp.put_along_axis(gx, ctx.idx, gy, axis=ctx.dim)
        return gx


def kmax_pool1d(input, k: int, dim: int = -1) -> Tensor:
    """K-max pooling (Kalchbrenner, Grefenstette & Blunsom, ACL 2014): keep the ``k`` largest values
    along ``dim`` in their ORIGINAL order (ties: lowest index first). Gradient scatters back to them.
    Shapes: any, with ``dim`` of length >= k -> the same with ``dim`` of length k.

    >>> import shendu
    >>> shendu.kmax_pool1d(shendu.tensor([3., 1., 5., 2., 4., 0.]), 3).tolist()
    [3.0, 5.0, 4.0]
    """
    from shendu.errors import normalize_dim

    x = as_tensor_arg(input)
    if x.dtype.kind != "f":
        raise DTypeError(f"kmax_pool1d: expected a floating-point input, got {x.dtype}; call .float() first")
    dim = normalize_dim("kmax_pool1d", dim, x.ndim)
    L = x.shape[dim] if x.ndim else 1
    if not isinstance(k, numbers.Integral) or not 1 <= k <= L:
        raise ArgumentError(f"kmax_pool1d: k must be an int in [1, {L}] (the length of dim {dim}), got {k!r}; "
                            "pad short sequences (e.g. with -inf or zeros) to at least k first")
    return KMax.apply(x, k=int(k), dim=dim)


def dynamic_k(k_top: int, l: int, L: int, s: int) -> int:  # noqa: E741 - the paper's names
    """The DCNN paper's dynamic k at convolutional layer ``l`` of ``L`` for a sentence of length
    ``s``: ``k_l = max(k_top, ceil((L - l) / L * s))``.

    >>> [dynamic_k(3, l, 3, 18) for l in (1, 2, 3)]
    [12, 6, 3]
    """
    if not (1 <= l <= L and k_top >= 1 and s >= 0):
        raise ArgumentError(f"dynamic_k: need 1 <= l <= L, k_top >= 1, s >= 0; got k_top={k_top}, l={l}, "
                            f"L={L}, s={s}")
    return max(int(k_top), -((-(L - l) * s) // L))


# ---------------------------------------------------------------------------------- sort pooling
class SortPool(Function):
    def forward(ctx, x, w):
        xp = get_array_module(x, w)
        P = _planes(x, 2)
        H, W = P.shape[1:]
        OH, OW = -(-H // 2), -(-W // 2)
        if (2 * OH, 2 * OW) != (H, W):  # 'SAME' padding: one zero row/column at the bottom/right
            P = xp.pad(P, ((0, 0), (0, 2 * OH - H), (0, 2 * OW - W)))
        win = P.reshape(-1, OH, 2, OW, 2).transpose(0, 1, 3, 2, 4).reshape(-1, OH, OW, 4)
        order = xp.argsort(-win, axis=-1, kind="stable")[..., :w.shape[0]]  # descending ranks
        top = xp.take_along_axis(win, order, -1)
        e = xp.exp(w - w.max())
        sw = (e / e.sum()).astype(x.dtype, copy=False)
        ctx.saved_arrays = (order, top, sw)
        ctx.x_shape = x.shape
        return (top @ sw).reshape(_out_shape(x.shape, 2, (OH, OW)))

    def backward(ctx, gy):
        xp = get_array_module(gy)
        order, top, sw = ctx.saved_arrays
        g = gy.reshape(top.shape[:-1])
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gwin = xp.zeros(top.shape[:-1] + (4,), gy.dtype)
            xp.put_along_axis(gwin, order, g[..., None] * sw, -1)
            Pn, OH, OW, _ = gwin.shape
            gx = gwin.reshape(Pn, OH, OW, 2, 2).transpose(0, 1, 3, 2, 4).reshape(Pn, 2 * OH, 2 * OW)
            H, W = ctx.x_shape[-2:]
            gx = gx[:, :H, :W].reshape(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            gsw = xp.tensordot(g, top, axes=g.ndim)  # dL/dsoftmax(w)_r
            gw = (sw * (gsw - (sw * gsw).sum())).astype(gy.dtype, copy=False)
        return gx, gw


def sort_pool2d(input, weights) -> Tensor:
    """Sort pooling (Sahil Singla, "A new kind of pooling layer for faster and sharper convergence",
    2017; code github.com/singlasahil14/sortpool2d): 2x2 windows with stride 2 ('SAME': an odd H or W
    gets a zero row/column at the bottom/right), the 4 values sorted DESCENDING, the top
    ``k = len(weights)`` (1..4) combined as ``y = sum_r softmax(weights)_r * a_(r)``.

    Weight order (pinned here): ``weights[0]`` multiplies the LARGEST value, ``weights[1]`` the second
    largest, ... (the blog's order; the TF code sorts ascending, so its index 0 is the k-th largest).
    One weight vector shared by all channels and positions. k = 1 is max pooling (on even sizes).
    Shapes: (N, C, H, W) or (C, H, W), weights (k,) -> (..., ceil(H/2), ceil(W/2)).
    Gradients: ``softmax(w)_r * g`` to the element ranked r; ``w`` through the softmax Jacobian.

    >>> import shendu
    >>> x = shendu.tensor([[[[1., 4.], [3., 2.]]]])
    >>> shendu.sort_pool2d(x, shendu.zeros(2)).item()  # mean of the two largest
    3.5
    """
    x = as_tensor_arg(input)
    w = as_tensor_arg(weights)
    _check_input("sort_pool2d", x, 2)
    if w.ndim != 1 or not 1 <= w.shape[0] <= 4:
        raise ShapeError(f"sort_pool2d: weights must be a vector of length k in 1..4 (a 2x2 window has 4 "
                         f"values), got shape {fmt_shape(w.shape)}")
    if w.dtype != x.dtype:
        w = w.to(x.dtype)
    return SortPool.apply(x, w)


# ----------------------------------------------------------------------- fractional max pooling
def _fmp_torch_starts(xp, u, L, O, k):
    """torch's window starts for samples ``u`` (P,): ``int((i + u) alpha) - int(u alpha)``, last = L - k,
    computed in ``u``'s dtype as aten does."""
    starts = xp.zeros((u.shape[0], O), xp.int64)
    if O > 1:
        alpha = u.dtype.type(L - k) / u.dtype.type(O - 1)
        i = xp.arange(O - 1).astype(u.dtype)
        starts[:, :-1] = ((i[None, :] + u[:, None]) * alpha).astype(xp.int64) - (u * alpha).astype(xp.int64)[:, None]
    starts[:, -1] = L - k
    return starts


def fractional_max_pool2d(input, kernel_size, output_size=None, output_ratio=None, return_indices: bool = False,
                          _random_samples=None, *, method: str = "torch", overlapping: bool = False,
                          generator=None):
    """Fractional max pooling: shrink H and W by a non-integer factor with randomly placed windows.

    ``method='torch'`` (default) is PyTorch's variant, checked against
    ``torch.nn.functional.fractional_max_pool2d``: fixed ``kernel_size`` windows starting at
    ``int((i + u) alpha) - int(u alpha)`` with ``alpha = (L - k)/(O - 1)`` and the last start
    ``L - k``; ``u`` is drawn per (n, c) plane, ``_random_samples[..., 0]`` for the width and
    ``[..., 1]`` for the height (shape (N, C, 2), values in [0, 1)).

    ``method='pseudo_random'`` / ``'random'`` are Graham's sequences (arXiv 1412.6071):
    ``0 = a_0 < ... < a_O = L`` with increments in {1, 2}, pseudo-random ``a_i = ceil(alpha (i + u)) -
    ceil(alpha u)`` with ``alpha = L/O``, or a random shuffle of the increments; one sequence per axis per
    call, shared by the batch. Regions are disjoint ``[a_{i-1}, a_i - 1]`` or, with ``overlapping=True``,
    ``[a_{i-1}, a_i]`` (clipped to the input); ``kernel_size`` is then unused and ``1 < L/O <= 2`` is
    required. Graham keeps the randomness at test time and averages several passes.

    Exactly one of ``output_size`` and ``output_ratio`` (``O = int(L * ratio)``). Indices are flat per
    plane; the gradient goes to the arg-max of each region.

    >>> import shendu
    >>> x = shendu.arange(25.).reshape(1, 1, 5, 5)
    >>> y = shendu.fractional_max_pool2d(x, 2, output_size=3, _random_samples=shendu.zeros(1, 1, 2))
    >>> y.tolist()
    [[[[6.0, 7.0, 9.0], [11.0, 12.0, 14.0], [21.0, 22.0, 24.0]]]]
    """
    op = "fractional_max_pool2d"
    x = as_tensor_arg(input)
    _check_input(op, x, 2)
    if method not in ("torch", "pseudo_random", "random"):
        raise ArgumentError(f"{op}: method must be 'torch', 'pseudo_random' or 'random', got {method!r}")
    if (output_size is None) == (output_ratio is None):
        raise ArgumentError(f"{op}: give exactly one of output_size and output_ratio")
    H, W = x.shape[-2:]
    if output_size is not None:
        out = _tuple(op, "output_size", output_size, 2)
    else:
        ratio = _tuple_f(op, output_ratio)
        out = (int(H * ratio[0]), int(W * ratio[1]))
    P = math.prod(x.shape[:-2])
    xp = get_array_module(x.data)
    if method == "torch":
        k = _tuple(op, "kernel_size", kernel_size, 2)
        if min(out) < 1 or out[0] + k[0] - 1 > H or out[1] + k[1] - 1 > W:
            raise ShapeError(f"{op}: output_size {out} + kernel_size {k} - 1 must fit in the input {H}x{W}")
        if _random_samples is None:
            u = backend.rng(generator).random((P, 2)).astype(x.dtype)
        else:
            u = as_tensor_arg(_random_samples).data
            if u.size != 2 * P:
                raise ShapeError(f"{op}: _random_samples must have shape (N, C, 2) = {x.shape[:-2] + (2,)}, got "
                                 f"{fmt_shape(u.shape)}")
            u = u.reshape(P, 2).astype(x.dtype, copy=False)
        rs = _fmp_torch_starts(xp, u[:, 1], H, out[0], k[0])
        cs = _fmp_torch_starts(xp, u[:, 0], W, out[1], k[1])
        bins = (rs, rs + k[0], cs, cs + k[1])
    else:
        if not all(o < L <= 2 * o for L, o in zip((H, W), out)):
            raise ShapeError(f"{op}: Graham's sequences need 1 < L/O <= 2 per axis, got input {H}x{W} -> {out}")
        rng = backend.rng(generator)
        starts_ends = []
        for L, o in zip((H, W), out):
            a = xp.asarray(K.graham_sequence(L, o, method == "pseudo_random", rng))
            end = xp.minimum(a[1:] + 1, L) if overlapping else a[1:]
            starts_ends += [a[:-1][None], end[None]]
        bins = tuple(starts_ends)
    y, idx = BinMax.apply(x, nd=2, bins=bins)
    return (y, idx) if return_indices else y


def _tuple_f(op, v):
    t = (float(v),) * 2 if isinstance(v, numbers.Number) else tuple(float(e) for e in v)
    if len(t) != 2 or not all(0 < e < 1 for e in t):
        raise ArgumentError(f"{op}: output_ratio must be in (0, 1) per axis, got {v!r}")
    return t
