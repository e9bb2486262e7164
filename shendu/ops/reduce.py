"""Reductions: sum, mean, prod, max/min, amax/amin, var/std, norm, logsumexp, argmax/argmin, the
cumulative sum and product, all/any.

``dim`` may be an int, a tuple or a list (negative counts from the end); ``None`` reduces every
dimension. Every reduction computes its result with ``keepdims=True`` and then drops the reduced
axes unless ``keepdim=True``, so backward can reshape the output gradient to the kept shape and
broadcast it over the input (a view, no copy). Float32 stays float32; integer and bool inputs to
``sum``/``prod``/``cumsum``/``cumprod`` give int64, as in torch.
"""

from __future__ import annotations

import builtins
import collections
import math
import numbers
import types

import numpy as np

from shendu import backend
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, fmt_shape, normalize_dim, normalize_dims
from shendu.ops._util import as_tensor_arg
from shendu.ops.elementwise import maximum, minimum
from shendu.ops.kernels.parallel import split_rows

__all__ = [
    "sum", "mean", "prod", "max", "min", "amax", "amin", "var", "std", "norm", "logsumexp", "argmax",
    "argmin", "cumsum", "cumprod", "all", "any", "return_types",
]

# torch.return_types equivalents: tuples whose fields are also reachable by name.
return_types = types.SimpleNamespace(
    max=collections.namedtuple("max", ["values", "indices"]),
    min=collections.namedtuple("min", ["values", "indices"]),
)


# ----------------------------------------------------------------------------------------- helpers
def _is_int(d) -> bool:
    return isinstance(d, numbers.Integral) and not isinstance(d, bool)


def _axes(op: str, dim, ndim: int) -> tuple:
    """``dim`` as a sorted tuple of axes in ``0..ndim-1``; None (or ``()``, as torch) means all axes."""
    if dim is None:
        return tuple(range(ndim))
    if _is_int(dim):
        axes = (normalize_dim(op, int(dim), ndim),)
    elif isinstance(dim, (tuple, list)) and builtins.all(_is_int(d) for d in dim):
        if not dim:
            return tuple(range(ndim))
        axes = normalize_dims(op, dim, ndim)
    else:
        raise ArgumentError(f"{op}: dim must be an int, a tuple/list of ints or None, got {dim!r}")
    return tuple(sorted(axes)) if ndim else ()  # a 0-d tensor accepts dim 0/-1 and reduces nothing


def _one_axis(op: str, dim, ndim: int) -> int:
    if not _is_int(dim):
        raise ArgumentError(f"{op}: dim must be a single int, got {dim!r}"
                            + ("; use amax/amin to reduce several dims" if op in ("max", "min") else ""))
    return normalize_dim(op, int(dim), ndim)


def _kept_shape(shape: tuple, axes: tuple) -> tuple:
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _reduced_shape(shape: tuple, axes: tuple, keepdim: bool) -> tuple:
    return _kept_shape(shape, axes) if keepdim else tuple(s for i, s in enumerate(shape) if i not in axes)


def _count(shape: tuple, axes: tuple) -> int:
    return math.prod(shape[i] for i in axes)


def _np_axis(axes: tuple, ndim: int):
    """The ``axis=`` argument for NumPy: None for a full reduction (its fastest path)."""
    return None if len(axes) == ndim else axes


def _finish(xp, y_kept, shape, axes, keepdim):
    """Drop the reduced axes of a keepdims result (a view), always as an array, never a NumPy scalar."""
    y_kept = xp.asarray(y_kept)
    return y_kept if keepdim else y_kept.reshape(_reduced_shape(shape, axes, False))


def _expand(gy, shape, axes):
    """The output gradient broadcast back over the reduced axes: a read-only view, no copy."""
    return get_array_module(gy).broadcast_to(gy.reshape(_kept_shape(shape, axes)), shape)


def _dtype(op: str, dtype):
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"{op}: unknown dtype {dtype!r}; use shendu.float32, float64 or int64") from None


def _int_to_int64(x_dtype, dtype):
    """torch's accumulation dtype: integer and bool inputs give int64 unless ``dtype`` says otherwise."""
    if dtype is None and x_dtype.kind in "iub":
        return np.dtype(np.int64)
    return dtype


def _require_float(op: str, t: Tensor, hint: str = "call .float() first") -> None:
    if t.dtype.kind not in "fc":
        raise DTypeError(f"{op}: expected a floating-point tensor, got {t.dtype}; {hint}")


def _require_nonempty(op: str, t: Tensor, axes: tuple) -> None:
    if builtins.any(t.shape[i] == 0 for i in axes):
        raise ArgumentError(f"{op}: cannot reduce over an empty dimension (input shape "
                            f"{fmt_shape(t.shape)}); {op} of nothing has no identity")


def _at_least_1d(a):
    """A 0-d array as shape (1,) (a view), so that axis 0 exists; torch accepts dim 0 on scalars."""
    return a.reshape(a.shape or (1,))


def _rev_cumsum(xp, a, axis):
    return xp.flip(xp.cumsum(xp.flip(a, axis), axis), axis)


_TILE = 1 << 16  # elements per tile (256 KiB of float32): small enough to stay in the L2 cache


def _sum_of(xp, f, x, shift, axes):
    """``sum(f(x - shift), axes, keepdims=True)`` (no shift when ``shift`` is None), ``f`` a unary ufunc.

    On large inputs ``f(x - shift)`` is never materialised in full: it is built a tile at a time in
    one reused buffer that stays in cache, which saves two trips through memory (about 2x on 10^7
    elements). Tiles run over the flattened array for a full reduction of a contiguous input, or over
    axis 0 when axis 0 is kept (each tile then owns its rows of the result); other cases go in one shot.
    """
    axis = _np_axis(axes, x.ndim)
    full = len(axes) == x.ndim
    if x.size < 8 * _TILE or not ((full and x.flags.c_contiguous) or (x.ndim and 0 not in axes)):
        d = f(x) if shift is None else x - shift
        if shift is not None:
            f(d, out=d)
        return xp.sum(d, axis=axis, keepdims=True)
    if full:
        flat = x.reshape(-1)
        shift = None if shift is None else shift.reshape(())
        starts = range(0, flat.size, _TILE)
        buf = xp.empty(_TILE, x.dtype)
        partial = xp.empty(len(starts), x.dtype)
        for k, i in enumerate(starts):
            chunk = flat[i:i + _TILE]
            d = buf[:chunk.size]
            _shifted(xp, f, chunk, shift, d)
            partial[k] = d.sum()
        return partial.sum().reshape((1,) * x.ndim)  # pairwise over tiles, as inside them
    rows = builtins.max(1, _TILE * x.shape[0] // x.size)
    buf = xp.empty((rows,) + x.shape[1:], x.dtype)
    out = xp.empty(_kept_shape(x.shape, axes), x.dtype)
    for i in range(0, x.shape[0], rows):
        blk = x[i:i + rows]
        d = buf[:blk.shape[0]]
        _shifted(xp, f, blk, None if shift is None else shift[i:i + rows], d)
        xp.sum(d, axis=axis, keepdims=True, out=out[i:i + rows])
    return out


def _shifted(xp, f, x, shift, out):
    """``out = f(x - shift)`` in place in ``out``."""
    if shift is None:
        f(x, out=out)
    else:
        xp.subtract(x, shift, out=out)
        f(out, out=out)


# ------------------------------------------------------------------------------------ sum and mean
_GEMV_MIN = 1 << 16  # below this, NumPy's own reduction is as fast


def _gemv_sum(xp, x, axes):
    """``sum(x, axes, keepdims=True)`` as a matrix-vector product with a ones vector, or None.

    For a large contiguous float input reduced over a leading or trailing block of axes, BLAS's GEMV
    reads the array once with SIMD and both cores, 2-3x faster than NumPy's pairwise reduction. Each
    output accumulates in float32 blocks of the row length, an error comparable to torch's.
    """
    if x.dtype.kind != "f" or x.size < _GEMV_MIN or not x.flags.c_contiguous:
        return None
    nd, k = x.ndim, len(axes)
    if k == nd:  # everything: rows of the last axis (or of 1024 for 1-D), then a short pairwise sum
        inner = x.shape[-1] if nd > 1 else (1024 if x.size % 1024 == 0 else 0)
        if inner < 64:
            return None
        part = x.reshape(-1, inner) @ xp.ones(inner, x.dtype)
        return xp.sum(part).reshape((1,) * nd)
    if axes == tuple(range(nd - k, nd)):  # trailing block
        inner = math.prod(x.shape[nd - k:])
        out = x.reshape(-1, inner) @ xp.ones(inner, x.dtype)
    elif axes == tuple(range(k)):  # leading block
        outer = math.prod(x.shape[:k])
        out = xp.ones(outer, x.dtype) @ x.reshape(outer, -1)
    else:
        return None
    return out.reshape(_kept_shape(x.shape, axes))


class Sum(Function):
    def forward(ctx, x, axes, keepdim, dtype):
        xp = get_array_module(x)
        ctx.shape, ctx.axes, ctx.x_dtype = x.shape, axes, x.dtype
        y = _gemv_sum(xp, x, axes) if dtype is None else None
        if y is None:
            y = xp.sum(x, axis=_np_axis(axes, x.ndim), keepdims=True, dtype=dtype)
        return _finish(xp, y, x.shape, axes, keepdim)

    def backward(ctx, gy):
        return _expand(gy.astype(ctx.x_dtype, copy=False), ctx.shape, ctx.axes)


class Mean(Function):
    def forward(ctx, x, axes, keepdim, dtype):
        xp = get_array_module(x)
        ctx.shape, ctx.axes, ctx.x_dtype = x.shape, axes, x.dtype
        y = _gemv_sum(xp, x, axes) if dtype is None else None
        if y is None:
            y = xp.mean(x, axis=_np_axis(axes, x.ndim), keepdims=True, dtype=dtype)
        else:
            y *= 1.0 / _count(x.shape, axes)
        return _finish(xp, y, x.shape, axes, keepdim)

    def backward(ctx, gy):
        n = _count(ctx.shape, ctx.axes)
        return _expand((gy / n).astype(ctx.x_dtype, copy=False), ctx.shape, ctx.axes)


def sum(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Sum over ``dim`` (an int, a tuple/list of ints, or None for every dimension).

    ``out = sum_{i in dim} input_i``; d out / d input = 1, so backward broadcasts the output
    gradient over the reduced dims. Shape: the input's with the reduced dims removed (kept as
    size 1 when ``keepdim=True``). Integer and bool inputs give int64 unless ``dtype`` is given.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    >>> shendu.sum(x).item(), shendu.sum(x, 1).tolist(), shendu.sum(x, 0, keepdim=True).shape
    (21.0, [6.0, 15.0], (1, 3))
    >>> shendu.sum(shendu.tensor([True, True, False])).item()
    2
    """
    t = as_tensor_arg(input)
    axes = _axes("sum", dim, t.ndim)
    return Sum.apply(t, axes=axes, keepdim=keepdim, dtype=_int_to_int64(t.dtype, _dtype("sum", dtype)))


def mean(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Arithmetic mean over ``dim`` (int, tuple/list, or None for all): ``sum(input, dim) / n``.

    The gradient is the output gradient divided by ``n`` and broadcast over the reduced dims. As in
    torch, an integer tensor raises unless a floating ``dtype`` is given.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 2.0], [3.0, 5.0]])
    >>> shendu.mean(x).item(), shendu.mean(x, dim=-1).tolist()
    (2.75, [1.5, 4.0])
    """
    t = as_tensor_arg(input)
    dtype = _dtype("mean", dtype)
    if (dtype or t.dtype).kind not in "fc":
        raise DTypeError(f"mean: could not infer the output dtype: the input is {t.dtype} and mean needs a "
                         "floating-point dtype; call .float() first or pass dtype=shendu.float32")
    axes = _axes("mean", dim, t.ndim)
    return Mean.apply(t, axes=axes, keepdim=keepdim, dtype=dtype)


# -------------------------------------------------------------------------------------------- prod
def _exclusive_products(xp, x, axes):
    """At each position, the product over ``axes`` of every *other* element.

    Left and right exclusive cumulative products along the reduced elements, multiplied: exact when
    the input holds zeros (``prod / x`` would give 0/0 there).
    """
    nd = x.ndim
    kept = [i for i in range(nd) if i not in axes]
    moved = xp.moveaxis(x, axes, range(len(kept), nd))
    flat = moved.reshape(moved.shape[:len(kept)] + (-1,))
    left = xp.ones_like(flat)
    right = xp.ones_like(flat)
    if flat.shape[-1] > 1:
        xp.cumprod(flat[..., :-1], axis=-1, out=left[..., 1:])
        xp.cumprod(flat[..., :0:-1], axis=-1, out=right[..., -2::-1])
    left *= right
    return xp.moveaxis(left.reshape(moved.shape), range(len(kept), nd), axes)


class Prod(Function):
    def forward(ctx, x, axes, keepdim, dtype):
        xp = get_array_module(x)
        ctx.save_for_backward(x)
        ctx.axes = axes
        y = xp.prod(x, axis=_np_axis(axes, x.ndim), keepdims=True, dtype=dtype)
        return _finish(xp, y, x.shape, axes, keepdim)

    def backward(ctx, gy):
        x, = ctx.saved
        xp = get_array_module(gy)
        if not ctx.axes:
            return gy.astype(x.dtype, copy=False).reshape(x.shape)
        return _expand(gy.astype(x.dtype, copy=False), x.shape, ctx.axes) * _exclusive_products(xp, x, ctx.axes)


def prod(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Product over ``dim`` (int, tuple/list, or None for all).

    ``d out / d x_i = prod_{j != i} x_j``, computed from exclusive cumulative products taken from
    both ends, so the gradient is exact when the input contains zeros. Integer/bool inputs give int64.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, 6.0]], requires_grad=True)
    >>> y = shendu.prod(x, 1)
    >>> y.tolist()
    [6.0, 0.0]
    >>> y.sum().backward()
    >>> x.grad.tolist()
    [[6.0, 3.0, 2.0], [30.0, 0.0, 0.0]]
    """
    t = as_tensor_arg(input)
    axes = _axes("prod", dim, t.ndim)
    return Prod.apply(t, axes=axes, keepdim=keepdim, dtype=_int_to_int64(t.dtype, _dtype("prod", dtype)))


# ------------------------------------------------------------------------------ max, min, amax, amin
def _threaded_extreme(xp, x, axes, name):
    """max/min of a large contiguous NumPy array over a trailing block of axes (or all of them), its rows
    split over the cores (NumPy releases the GIL in reductions); None where that does not apply."""
    if xp.__name__ != "numpy" or x.size < (1 << 20) or not x.flags.c_contiguous or x.dtype.kind not in "fiu":
        return None
    nd, k = x.ndim, len(axes)
    if axes != tuple(range(nd - k, nd)) or (k == nd and x.size % 1024):
        return None
    reduce = getattr(xp, name)
    rows = x.reshape(-1, 1024 if k == nd else math.prod(x.shape[nd - k:]))
    out = xp.empty(rows.shape[0], x.dtype)
    split_rows(lambda lo, hi: reduce(rows[lo:hi], axis=1, out=out[lo:hi]), rows.shape[0], rows.size)
    if k == nd:  # the rows were 1024-element slices of the flat array: reduce their results too
        return reduce(out).reshape((1,) * nd)
    return out.reshape(_kept_shape(x.shape, axes))


class _Extreme(Function):
    """amax/amin over several axes; on ties the gradient is split evenly (as torch.amax)."""

    reduce = "max"

    def forward(ctx, x, axes, keepdim):
        xp = get_array_module(x)
        y = _threaded_extreme(xp, x, axes, ctx.reduce)
        if y is None:
            y = getattr(xp, ctx.reduce)(x, axis=_np_axis(axes, x.ndim), keepdims=True)
        ctx.save_for_backward(x, y)
        ctx.axes = axes
        return _finish(xp, y, x.shape, axes, keepdim)

    def backward(ctx, gy):
        x, y = ctx.saved
        hit = x == y
        count = hit.sum(axis=_np_axis(ctx.axes, x.ndim), keepdims=True, dtype=gy.dtype)
        return hit * (gy.reshape(y.shape) / count)


class Amax(_Extreme):
    reduce = "max"


class Amin(_Extreme):
    reduce = "min"


class _ExtremeDim(Function):
    """max/min along one dim: (values, indices); the gradient goes to the index."""

    arg = "argmax"

    def forward(ctx, x, axis, keepdim):
        xp = get_array_module(x)
        x1 = _at_least_1d(x)
        idx = getattr(xp, ctx.arg)(x1, axis=axis, keepdims=True)
        values = xp.take_along_axis(x1, idx, axis=axis)
        ctx.save_for_backward(idx)
        ctx.shape, ctx.shape1, ctx.axis = x.shape, x1.shape, axis
        out_shape = _reduced_shape(x.shape, (axis,) if x.ndim else (), keepdim)
        return values.reshape(out_shape), idx.reshape(out_shape)

    def backward(ctx, gvalues, gindices):
        idx, = ctx.saved
        xp = get_array_module(gvalues)
        gx = xp.zeros(ctx.shape1, gvalues.dtype)
        xp.put_along_axis(gx, idx, gvalues.reshape(idx.shape), axis=ctx.axis)
        return gx.reshape(ctx.shape)


class MaxDim(_ExtremeDim):
    arg = "argmax"


class MinDim(_ExtremeDim):
    arg = "argmin"


def _max_min(op, fn_dim, fn_all, tuple_type, binary, input, dim, keepdim):
    if isinstance(dim, Tensor):  # torch.max(a, b) is the elementwise maximum
        return binary(input, dim)
    t = as_tensor_arg(input)
    if dim is None:
        _require_nonempty(op, t, tuple(range(t.ndim)))
        return fn_all.apply(t, axes=tuple(range(t.ndim)), keepdim=False)
    axis = _one_axis(op, dim, t.ndim)
    _require_nonempty(op, t, (axis,) if t.ndim else ())
    return tuple_type(*fn_dim.apply(t, axis=axis, keepdim=keepdim))


def max(input, dim=None, keepdim: bool = False):
    """Largest element; or ``(values, indices)`` along ``dim``; or ``maximum(input, other)``.

    - ``max(input)``: the largest value (0-d). On ties the gradient is split evenly, like ``amax``.
    - ``max(input, dim, keepdim=False)``: ``return_types.max(values, indices)``, a tuple with fields;
      ``indices`` (int64) points at the first largest element and receives the whole gradient.
    - ``max(input, other)`` with a tensor ``other``: the elementwise :func:`maximum`.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    >>> shendu.max(x).item()
    7.0
    >>> v, i = shendu.max(x, 1)
    >>> v.tolist(), i.tolist()
    ([5.0, 7.0], [1, 0])
    >>> shendu.max(x, dim=0).indices.tolist()
    [1, 0, 1]
    """
    return _max_min("max", MaxDim, Amax, return_types.max, maximum, input, dim, keepdim)


def min(input, dim=None, keepdim: bool = False):
    """Smallest element; or ``(values, indices)`` along ``dim``; or ``minimum(input, other)``.

    The mirror of :func:`max`: ties in the full reduction split the gradient evenly; along ``dim``
    the gradient goes to the returned index.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    >>> shendu.min(x).item(), shendu.min(x, 1).values.tolist(), shendu.min(x, 1).indices.tolist()
    (0.0, [1.0, 0.0], [0, 1])
    """
    return _max_min("min", MinDim, Amin, return_types.min, minimum, input, dim, keepdim)


def amax(input, dim=(), keepdim: bool = False) -> Tensor:
    """Largest value over ``dim`` (int or tuple/list; ``()`` or None: every dimension).

    Unlike ``max(input, dim)`` it returns only the values and takes several dims; the gradient is
    split evenly among the elements equal to the maximum.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 3.0], [3.0, 2.0]], requires_grad=True)
    >>> y = shendu.amax(x)
    >>> y.backward()
    >>> y.item(), x.grad.tolist()
    (3.0, [[0.0, 0.5], [0.5, 0.0]])
    """
    t = as_tensor_arg(input)
    axes = _axes("amax", dim, t.ndim)
    _require_nonempty("amax", t, axes)
    return Amax.apply(t, axes=axes, keepdim=keepdim)


def amin(input, dim=(), keepdim: bool = False) -> Tensor:
    """Smallest value over ``dim`` (int or tuple/list; ``()`` or None: all); ties split the gradient.

    >>> import shendu
    >>> shendu.amin(shendu.tensor([[1.0, 3.0], [0.0, 2.0]]), dim=1).tolist()
    [1.0, 0.0]
    """
    t = as_tensor_arg(input)
    axes = _axes("amin", dim, t.ndim)
    _require_nonempty("amin", t, axes)
    return Amin.apply(t, axes=axes, keepdim=keepdim)


def _arg_extreme(op, input, dim, keepdim):
    t = as_tensor_arg(input)
    xp = get_array_module(t.data)
    if dim is None:
        _require_nonempty(op, t, tuple(range(t.ndim)))
        idx = xp.asarray(getattr(xp, op)(t.data.reshape(-1)))
        return Tensor._wrap(idx.reshape((1,) * t.ndim) if keepdim else idx)
    axis = _one_axis(op, dim, t.ndim)
    if t.ndim == 0:
        return Tensor._wrap(xp.zeros((), xp.int64))
    _require_nonempty(op, t, (axis,))
    return Tensor._wrap(getattr(xp, op)(t.data, axis=axis, keepdims=keepdim))


def argmax(input, dim=None, keepdim: bool = False) -> Tensor:
    """Index (int64) of the largest element along ``dim``, or in the flattened input when ``dim`` is None.

    The first index wins on ties. No gradient.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    >>> shendu.argmax(x).item(), shendu.argmax(x, 1).tolist(), shendu.argmax(x, 0, keepdim=True).shape
    (3, [1, 0], (1, 3))
    """
    return _arg_extreme("argmax", input, dim, keepdim)


def argmin(input, dim=None, keepdim: bool = False) -> Tensor:
    """Index (int64) of the smallest element along ``dim`` (flattened when None). No gradient.

    >>> import shendu
    >>> shendu.argmin(shendu.tensor([[1.0, 5.0], [-7.0, 0.0]]), dim=1).tolist()
    [0, 0]
    """
    return _arg_extreme("argmin", input, dim, keepdim)


# ------------------------------------------------------------------------------------ var and std
class _Moment(Function):
    """Shared forward of var and std: the squared deviations from the mean summed over ``axes``."""

    def forward(ctx, x, axes, keepdim, correction):
        xp = get_array_module(x)
        axis = _np_axis(axes, x.ndim)
        m = xp.mean(x, axis=axis, keepdims=True)
        ctx.denom = builtins.max(_count(x.shape, axes) - correction, 0)
        with xp.errstate(divide="ignore", invalid="ignore"):  # denom 0 gives inf/nan, as torch
            v = _sum_of(xp, xp.square, x, m, axes) / ctx.denom
        y = ctx.finish(xp, v)
        ctx.save_for_backward(x, m, y)
        ctx.axes = axes
        return _finish(xp, y, x.shape, axes, keepdim)

    def backward(ctx, gy):
        x, m, y = ctx.saved
        xp = get_array_module(gy)
        with xp.errstate(divide="ignore", invalid="ignore"):
            scale = ctx.scale(xp, gy.reshape(y.shape), y)
        gx = x - m
        gx *= scale
        return gx


class Var(_Moment):
    @staticmethod
    def finish(xp, v):
        return v

    def scale(ctx, xp, gy, y):
        return gy * 2 / ctx.denom


class Std(_Moment):
    @staticmethod
    def finish(xp, v):
        return xp.sqrt(v)

    def scale(ctx, xp, gy, y):
        # d std / dx = (x - mean) / (denom * std); torch defines it as 0 where std == 0
        return xp.where(y == 0, 0, gy / (y * ctx.denom)).astype(gy.dtype, copy=False)


def _moment(op, fn, input, dim, unbiased, keepdim, correction):
    if isinstance(dim, bool):  # torch's var(input, unbiased) overload
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise ArgumentError(f"{op}: give either unbiased= or correction=, not both")
    if correction is None:
        correction = 0 if unbiased is False else 1
    if not isinstance(correction, numbers.Real) or correction < 0:
        raise ArgumentError(f"{op}: correction must be a non-negative number, got {correction!r}")
    t = as_tensor_arg(input)
    _require_float(op, t)
    axes = _axes(op, dim, t.ndim)
    return fn.apply(t, axes=axes, keepdim=keepdim, correction=correction)


def var(input, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None) -> Tensor:
    """Variance over ``dim``: ``sum (x - mean)^2 / max(0, n - correction)``.

    ``correction=1`` (the default, Bessel's unbiased estimate) or ``unbiased=False`` /
    ``correction=0`` for the population variance; torch's ``var(input, unbiased)`` form works too.
    d var / dx = 2 (x - mean) / (n - correction).

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 2.0, 3.0, 4.0]])
    >>> round(shendu.var(x).item(), 4), shendu.var(x, 1, correction=0).tolist()
    (1.6667, [1.25])
    """
    return _moment("var", Var, input, dim, unbiased, keepdim, correction)


def std(input, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None) -> Tensor:
    """Standard deviation ``sqrt(var(input, dim, correction=...))`` (same arguments as :func:`var`).

    d std / dx = (x - mean) / ((n - correction) std), and 0 where std is 0 (as torch).

    >>> import shendu
    >>> x = shendu.tensor([[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]])
    >>> shendu.std(x, 1, unbiased=False).tolist()
    [2.0]
    """
    return _moment("std", Std, input, dim, unbiased, keepdim, correction)


# -------------------------------------------------------------------------------------------- norm
class VectorNorm(Function):
    """``(sum |x|^p)^(1/p)`` over ``axes`` (inf: max |x|, -inf: min |x|, 0: count of nonzeros)."""

    def forward(ctx, x, p, axes, keepdim):
        xp = get_array_module(x)
        axis = _np_axis(axes, x.ndim)
        if p == 2:
            y = xp.sqrt(_sum_of(xp, xp.square, x, None, axes))
        elif p == 1:
            y = _sum_of(xp, xp.abs, x, None, axes)
        elif p == 0:
            y = xp.sum(x != 0, axis=axis, keepdims=True, dtype=x.dtype)
        elif p == math.inf:
            y = xp.max(xp.abs(x), axis=axis, keepdims=True)
        elif p == -math.inf:
            y = xp.min(xp.abs(x), axis=axis, keepdims=True)
        else:
            with xp.errstate(divide="ignore"):  # 0^(negative p) is inf, as torch
                y = xp.sum(xp.abs(x) ** p, axis=axis, keepdims=True) ** (1 / p)
        ctx.save_for_backward(x, y)
        ctx.p, ctx.axes = p, axes
        return _finish(xp, y, x.shape, axes, keepdim)

    def backward(ctx, gy):
        x, y = ctx.saved
        p = ctx.p
        xp = get_array_module(gy)
        g = gy.reshape(y.shape)
        if p == 0:
            return xp.zeros_like(x)
        if p == 1:
            return xp.sign(x) * g
        with xp.errstate(divide="ignore", invalid="ignore"):
            if p == 2:  # x / ||x||, and 0 at the zero vector (as torch)
                return x * xp.where(y == 0, 0, g / y).astype(g.dtype, copy=False)
            if p in (math.inf, -math.inf):  # the elements at the extreme share the gradient evenly
                hit = xp.abs(x) == y
                count = hit.sum(axis=_np_axis(ctx.axes, x.ndim), keepdims=True, dtype=g.dtype)
                return xp.sign(x) * hit * (g / count)
            a = xp.abs(x)
            if p < 1:  # |x|^(p-1) blows up at 0: torch sets those entries to 0
                return xp.sign(x) * xp.where(x == 0, 0, a ** (p - 1)) * (g * y ** (1 - p))
            return xp.sign(x) * a ** (p - 1) * xp.where(y == 0, 0, g / y ** (p - 1)).astype(g.dtype, copy=False)


def norm(input, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """Vector norm over ``dim`` (None: the whole tensor flattened), like ``torch.norm``.

    ``p``: ``'fro'`` (= 2, at most two dims), any real number (``(sum |x|^p)^(1/p)``; 0 counts the
    nonzeros), ``inf`` (max |x|) or ``-inf`` (min |x|). Gradients follow torch: p=2 gives
    ``x / ||x||`` and 0 at the zero vector; ``inf`` norms split the gradient among ties.

    >>> import shendu
    >>> x = shendu.tensor([[3.0, -4.0], [0.0, 1.0]])
    >>> shendu.norm(x, dim=1).tolist(), shendu.norm(x, 1).item(), shendu.norm(x, float("inf"), 1).tolist()
    ([5.0, 1.0], 8.0, [4.0, 1.0])
    """
    t = as_tensor_arg(input)
    _require_float("norm", t)
    if isinstance(p, str):
        if p != "fro":
            raise ArgumentError(f"norm: p={p!r} is not supported; use 'fro' or a number (inf, 1, 2, ...); "
                                "the nuclear norm is the sum of singular values")
        if dim is not None and not isinstance(dim, numbers.Integral) and len(dim) > 2:
            raise ArgumentError(f"norm: p='fro' takes at most 2 dims, got dim={tuple(dim)}; use p=2 for the "
                                "vector 2-norm over more dims")
        p = 2
    elif not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise ArgumentError(f"norm: p must be 'fro' or a number, got {p!r}")
    axes = _axes("norm", dim, t.ndim)
    dtype = _dtype("norm", dtype)
    if dtype is not None and dtype != t.dtype:
        t = t.to(dtype)
    return VectorNorm.apply(t, p=float(p), axes=axes, keepdim=keepdim)


# ---------------------------------------------------------------------------------------- logsumexp
def logsumexp_array(xp, x, axes: tuple):
    """``log(sum(exp(x), axes))`` of a raw array with the reduced axes kept, shifted by the maximum (by 0
    where a slice is all -inf, so no inf - inf); the one formula behind :func:`logsumexp` and the
    cross-entropy's fallback."""
    m = xp.max(x, axis=_np_axis(axes, x.ndim), keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
    with xp.errstate(divide="ignore"):
        return xp.log(_sum_of(xp, xp.exp, x, m, axes)) + m


class LogSumExp(Function):
    def forward(ctx, x, axes, keepdim):
        xp = get_array_module(x)
        y = logsumexp_array(xp, x, axes)
        ctx.save_for_backward(x, y)
        ctx.axes = axes
        return _finish(xp, y, x.shape, axes, keepdim)

    def backward(ctx, gy):
        x, y = ctx.saved
        xp = get_array_module(gy)
        gx = x - y
        xp.exp(gx, out=gx)  # softmax over the reduced dims
        gx *= gy.reshape(y.shape)
        return gx


def logsumexp(input, dim, keepdim: bool = False) -> Tensor:
    """``log(sum(exp(input), dim))``, computed stably by shifting by the maximum.

    The gradient is the softmax over the reduced dims times the output gradient. Integer inputs are
    converted to the default float dtype (as torch).

    >>> import shendu
    >>> x = shendu.tensor([[0.0, 0.0], [1000.0, 1000.0]])
    >>> [round(v, 3) for v in shendu.logsumexp(x, 1).tolist()]
    [0.693, 1000.693]
    """
    t = as_tensor_arg(input)
    if t.dtype.kind not in "fc":
        t = t.to(backend.get_default_dtype())
    axes = _axes("logsumexp", dim, t.ndim)
    return LogSumExp.apply(t, axes=axes, keepdim=keepdim)


# --------------------------------------------------------------------------- cumulative sum / product
class CumSum(Function):
    def forward(ctx, x, axis, dtype):
        ctx.shape, ctx.axis, ctx.x_dtype = x.shape, axis, x.dtype
        return get_array_module(x).cumsum(_at_least_1d(x), axis=axis, dtype=dtype).reshape(x.shape)

    def backward(ctx, gy):
        # y_j = sum_{i <= j} x_i, so dL/dx_i = sum_{j >= i} g_j: a cumsum from the other end
        g = _rev_cumsum(get_array_module(gy), _at_least_1d(gy), ctx.axis)
        return g.astype(ctx.x_dtype, copy=False).reshape(ctx.shape)


class CumProd(Function):
    def forward(ctx, x, axis, dtype):
        y = get_array_module(x).cumprod(_at_least_1d(x), axis=axis, dtype=dtype)
        ctx.save_for_backward(_at_least_1d(x), y)
        ctx.shape, ctx.axis = x.shape, axis
        return y.reshape(x.shape)

    def backward(ctx, gy):
        return ctx._input_grad(gy).reshape(ctx.shape)

    def _input_grad(ctx, gy):
        # dL/dx_k = sum_{j >= k} g_j prod_{i <= j, i != k} x_i.
        x, y = ctx.saved
        xp = get_array_module(gy)
        axis = ctx.axis
        gy = gy.astype(x.dtype, copy=False).reshape(y.shape)
        zeros_so_far = xp.cumsum(x == 0, axis=axis)
        before = zeros_so_far == 0
        # Before the first zero x_k != 0 and the sum is revcumsum(g y)_k / x_k (y is 0 from the zero on).
        with xp.errstate(divide="ignore", invalid="ignore"):
            gx = _rev_cumsum(xp, gy * y, axis) / xp.where(before, x, 1)
        if before.all():
            return gx.astype(x.dtype, copy=False)
        # At the first zero z: replace x_z by 1, then prod_{i <= j, i != z} x_i is that cumprod for j >= z.
        # After it every product contains x_z = 0.
        first = (zeros_so_far == 1) & (x == 0)
        y1 = xp.cumprod(xp.where(first, 1, x).astype(x.dtype, copy=False), axis=axis)
        at_first = _rev_cumsum(xp, gy * y1, axis)
        return xp.where(before, gx, xp.where(first, at_first, 0)).astype(x.dtype, copy=False)


def _cumulative(op, fn, input, dim, dtype):
    t = as_tensor_arg(input)
    axis = _one_axis(op, dim, t.ndim)
    return fn.apply(t, axis=axis, dtype=_int_to_int64(t.dtype, _dtype(op, dtype)))


def cumsum(input, dim: int, *, dtype=None) -> Tensor:
    """Running sum along ``dim``: ``out_j = sum_{i <= j} input_i``; same shape as the input.

    Backward is the running sum of the gradient taken from the other end. Integer inputs give int64.

    >>> import shendu
    >>> shendu.cumsum(shendu.tensor([[1.0, 2.0, 3.0]]), dim=1).tolist()
    [[1.0, 3.0, 6.0]]
    """
    return _cumulative("cumsum", CumSum, input, dim, dtype)


def cumprod(input, dim: int, *, dtype=None) -> Tensor:
    """Running product along ``dim``: ``out_j = prod_{i <= j} input_i``; same shape as the input.

    Backward ``dL/dx_k = sum_{j >= k} g_j prod_{i <= j, i != k} x_i`` is exact with zeros in the
    input: positions before the first zero use ``revcumsum(g * out) / x``, the first zero uses the
    running product with that zero replaced by 1, and positions after it get 0.

    >>> import shendu
    >>> x = shendu.tensor([2.0, 0.0, 3.0], requires_grad=True)
    >>> y = shendu.cumprod(x, 0)
    >>> y.sum().backward()
    >>> y.tolist(), x.grad.tolist()
    ([2.0, 0.0, 0.0], [1.0, 8.0, 0.0])
    """
    return _cumulative("cumprod", CumProd, input, dim, dtype)


# ------------------------------------------------------------------------------------------ all, any
def _logical(op, input, dim, keepdim):
    t = as_tensor_arg(input)
    xp = get_array_module(t.data)
    axes = _axes(op, dim, t.ndim)
    y = getattr(xp, op)(t.data, axis=_np_axis(axes, t.ndim), keepdims=True)
    return Tensor._wrap(_finish(xp, y, t.shape, axes, keepdim))


def all(input, dim=None, keepdim: bool = False) -> Tensor:
    """True where every element over ``dim`` is nonzero (bool result, no gradient).

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 0.0], [2.0, 3.0]])
    >>> shendu.all(x).item(), shendu.all(x, 1).tolist()
    (False, [False, True])
    """
    return _logical("all", input, dim, keepdim)


def any(input, dim=None, keepdim: bool = False) -> Tensor:
    """True where some element over ``dim`` is nonzero (bool result, no gradient).

    >>> import shendu
    >>> shendu.any(shendu.tensor([[0.0, 0.0], [2.0, 0.0]]), dim=1).tolist()
    [False, True]
    """
    return _logical("any", input, dim, keepdim)
