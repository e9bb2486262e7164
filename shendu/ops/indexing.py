"""Indexing and selection ops: ``x[index]``, ``x[index] = v``, gather/scatter along a dim, masks,
one-hot, sort and top-k.

``x[index]`` follows PyTorch: integers, slices (positive steps), ``None`` and ``...`` give a view;
integer tensors/arrays/lists and bool masks give a copy (advanced indexing). As in torch, integers
are applied first as plain selections, so ``x[0, :, [1, 2]]`` has shape ``(x.shape[1], 2)`` (NumPy
would put the advanced dimension first). A list is always read as one index array (NumPy 2 and
future PyTorch), never as a tuple of indices.

The backward of a selection scatters the gradient back. Where a position can be selected twice
(integer indices, gather, index_select) the gradients of the repeats add up; the scatter-add is a
``bincount`` over flat positions, which is several times faster than ``add.at``.
"""

from __future__ import annotations

import collections
import numbers

from shendu.autograd.engine import is_grad_enabled, unbroadcast
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import (
    ArgumentError,
    AutogradError,
    DTypeError,
    IndexOutOfRangeError,
    ShapeError,
    fmt_shape,
    normalize_dim,
)
from shendu.ops._util import as_tensor_arg, broadcast_error

__all__ = [
    "getitem", "index_put", "index_put_", "gather", "scatter", "scatter_add", "index_select", "masked_fill",
    "masked_select", "one_hot", "sort", "argsort", "topk", "nonzero",
]

_ALL = slice(None)


# Results that are tuples whose fields are also reachable by name, like torch.return_types.sort/topk
# (shendu.ops.reduce.return_types holds max and min the same way).
SortResult = collections.namedtuple("sort", ["values", "indices"])
TopkResult = collections.namedtuple("topk", ["values", "indices"])


# ------------------------------------------------------------------------------------ shared helpers
def _check_bounds(op: str, index, size: int, dim: int, allow_negative: bool = False) -> None:
    """Raise IndexOutOfRangeError naming the first index outside ``[-size or 0, size)``."""
    low = -size if allow_negative else 0
    if index.size and (index.min() < low or index.max() >= size):
        bad = index[(index < low) | (index >= size)].flat[0]
        valid = f"{-size}..{size - 1}" if allow_negative else f"0..{size - 1}"
        raise IndexOutOfRangeError(f"{op}: index {int(bad)} is out of range for dim {dim} with size {size} "
                                   f"(valid indices: {valid})")


def _int_index(op: str, index):
    """The array of an integer index tensor (or array/list), or a DTypeError."""
    a = as_tensor_arg(index).data
    if a.dtype.kind not in "iu":
        raise DTypeError(f"{op}: index must be an integer tensor, got dtype {a.dtype}; call .long() on it")
    return a


def _bool_mask(op: str, mask):
    m = as_tensor_arg(mask).data
    if m.dtype.kind != "b":
        raise DTypeError(f"{op}: mask must be a bool tensor, got dtype {m.dtype}; use mask.bool() or a "
                         "comparison such as x > 0")
    return m


def _accumulate(target, index, values) -> None:
    """``target[index] += values`` where positions selected twice receive both values.

    ``index`` is a parsed ``(basic, adv, unique)`` triple (see :func:`_parse_index`).
    """
    basic, adv, unique = index
    view = target[basic]
    if adv is None or unique:
        view[... if adv is None else adv] += values
        return
    xp = get_array_module(target)
    if target.dtype.kind == "f":
        # Flat position of every selected element, laid out as the selection itself.
        pos = xp.arange(view.size).reshape(view.shape)[adv]
        pos, values = xp.broadcast_arrays(pos, values)
        view += xp.bincount(pos.ravel(), values.ravel(), view.size).reshape(view.shape)
    else:  # bincount would round large integers through float64
        xp.add.at(view, adv, values)


def _sum_to(g, shape):
    """Sum a gradient down to ``shape`` (which may have extra leading 1s that assignment allowed)."""
    if g.ndim < len(shape):
        g = g.reshape((1,) * (len(shape) - g.ndim) + g.shape)
    return unbroadcast(g, tuple(shape))


# ------------------------------------------------------------------------------------------- getitem
def _index_item(op: str, item, xp):
    """One entry of an index tuple as an int, slice, None, Ellipsis or an integer/bool array."""
    if item is None or item is Ellipsis:
        return item
    if isinstance(item, slice):
        if item.step is not None and item.step <= 0:
            raise ArgumentError(f"{op}: slice step must be greater than zero, got {item.step}; use flip() to "
                                "reverse a dimension")
        return item
    if isinstance(item, bool):
        return xp.asarray(item)
    if isinstance(item, numbers.Integral):
        return int(item)
    a = item.data if isinstance(item, Tensor) else item
    if not hasattr(a, "dtype"):
        try:
            a = xp.asarray(a)
        except (TypeError, ValueError):
            raise DTypeError(f"{op}: cannot use {type(item).__name__} {item!r:.60} as an index; expected "
                             "ints, slices, None, ..., or integer/bool tensors") from None
        if a.size == 0:
            a = a.astype(xp.int64)  # x[[]] selects nothing
    if a.dtype.kind not in "iub":
        raise DTypeError(f"{op}: tensors used as indices must be integer or bool, got dtype {a.dtype}; "
                         "call .long() on the index")
    if a.ndim == 0 and a.dtype.kind != "b":
        return int(a)  # a 0-d integer tensor selects like an int (torch)
    return a


def _parse_index(op: str, shape: tuple, index, xp):
    """Split a getitem index into ``(basic, adv, unique)`` with ``x[index] == x[basic][adv]``.

    ``basic`` holds the ints, slices and None (advanced entries become full slices), so ``x[basic]``
    is a view; ``adv`` is None or a tuple of index arrays and full slices applied to that view
    (bool masks already turned into the integer arrays of their true positions). ``unique`` says
    that ``adv`` cannot select an element twice (it came from at most one mask).
    """
    items = [_index_item(op, it, xp) for it in (index if isinstance(index, tuple) else (index,))]
    if sum(it is Ellipsis for it in items) > 1:
        raise IndexOutOfRangeError(f"{op}: an index can only have a single ellipsis ('...')")
    used = sum(it.ndim if hasattr(it, "dtype") and it.dtype.kind == "b" else 1
               for it in items if it is not None and it is not Ellipsis)
    if used > len(shape):
        raise IndexOutOfRangeError(f"{op}: too many indices ({used}) for a tensor of dimension {len(shape)} "
                                   f"(shape {fmt_shape(shape)})")
    for at, it in enumerate(items):
        if it is Ellipsis:
            items[at:at + 1] = [_ALL] * (len(shape) - used)
            break

    basic, adv = [], {}
    n_int_arrays = n_masks = 0
    d_in = d_out = 0  # dim of the input consumed next, dim of x[basic] produced next
    for it in items:
        if it is None or isinstance(it, slice):
            basic.append(it)
            d_in += it is not None
            d_out += 1
        elif isinstance(it, int):
            if not -shape[d_in] <= it < shape[d_in]:
                _check_bounds(op, xp.asarray(it), shape[d_in], d_in, allow_negative=True)  # raises
            basic.append(it)
            d_in += 1
        elif it.dtype.kind == "b":
            n_masks += 1
            k = it.ndim
            if k == 0:  # x[True] adds a dim of size 1, x[False] one of size 0
                basic.append(None)
                if not it:
                    adv[d_out] = xp.zeros(0, xp.int64)
                d_out += 1
                continue
            if it.shape != shape[d_in:d_in + k]:
                raise IndexOutOfRangeError(f"{op}: the mask of shape {fmt_shape(it.shape)} does not match the "
                                           f"indexed tensor's shape {fmt_shape(shape[d_in:d_in + k])} at dim "
                                           f"{d_in} (tensor shape {fmt_shape(shape)})")
            for j, where in enumerate(it.nonzero()):
                adv[d_out + j] = where
            basic.extend([_ALL] * k)
            d_in += k
            d_out += k
        else:
            n_int_arrays += 1
            _check_bounds(op, it, shape[d_in], d_in, allow_negative=True)
            adv[d_out] = it
            basic.append(_ALL)
            d_in += 1
            d_out += 1
    basic.append(Ellipsis)  # keeps x[basic] a view even when every dim gets an int
    if not adv:
        return tuple(basic), None, True
    arrays = list(adv.values())
    try:
        xp.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        raise ShapeError(f"{op}: index arrays of shapes {', '.join(fmt_shape(a.shape) for a in arrays)} cannot "
                         "be broadcast together (a bool mask counts as its number of true elements)") from None
    adv = tuple(adv.get(d, _ALL) for d in range(max(adv) + 1))
    return tuple(basic), adv, n_int_arrays == 0 and n_masks <= 1


class GetItem(Function):
    def forward(ctx, x, *, index):
        basic, adv, _ = index
        ctx.shape, ctx.index = x.shape, index
        y = x[basic]
        return y if adv is None else y[adv]

    def backward(ctx, gy):
        gx = get_array_module(gy).zeros(ctx.shape, gy.dtype)
        _accumulate(gx, ctx.index, gy)
        return gx


def getitem(input: Tensor, index) -> Tensor:
    """``input[index]`` with PyTorch's indexing rules; what ``Tensor.__getitem__`` calls.

    Basic indices (ints, slices with positive steps, None, ...) return a view that shares memory with
    ``input``; integer tensors/arrays/lists and bool masks (advanced indexing) return a copy.
    Backward: the gradient goes back to the selected positions, zeros elsewhere; positions picked
    several times by integer indices receive the sum of their gradients.

    Shapes: as NumPy's, except that ints are applied before advanced indices (as in torch).

    >>> import shendu
    >>> x = shendu.arange(12.0).reshape(3, 4)
    >>> x[1:, ::2].tolist()
    [[4.0, 6.0], [8.0, 10.0]]
    >>> x[shendu.tensor([2, 0, 2]), 1].tolist()
    [9.0, 1.0, 9.0]
    >>> x[x > 9].tolist()
    [10.0, 11.0]
    """
    t = as_tensor_arg(input)
    return GetItem.apply(t, index=_parse_index("getitem", t.shape, index, get_array_module(t.data)))


# ----------------------------------------------------------------------------------------- index_put
class IndexPut(Function):
    def forward(ctx, x, value, *, index, accumulate):
        ctx.index, ctx.accumulate, ctx.value_shape = index, accumulate, value.shape
        out = x.copy()
        basic, adv, _ = index
        if accumulate:
            _accumulate(out, index, value.astype(x.dtype, copy=False))
        else:
            out[basic][... if adv is None else adv] = value
        return out

    def backward(ctx, gy):
        basic, adv, _ = ctx.index
        sel = ... if adv is None else adv
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = gy
            if not ctx.accumulate:  # overwritten positions do not reach the output
                gx = gy.copy()
                gx[basic][sel] = 0
        if ctx.needs_input_grad[1]:
            gv = _sum_to(gy[basic][sel], ctx.value_shape)
        return gx, gv


def _put_args(op, input, index, value):
    t = as_tensor_arg(input)
    xp = get_array_module(t.data)
    parsed = _parse_index(op, t.shape, index, xp)
    v = value if isinstance(value, Tensor) else Tensor._wrap(xp.asarray(value, dtype=t.dtype))
    return t, parsed, v


def _shape_mismatch(op, t, parsed, v):
    basic, adv, _ = parsed
    target = t.data[basic] if adv is None else t.data[basic][adv]
    return ShapeError(f"{op}: value of shape {fmt_shape(v.shape)} cannot be broadcast to the indexed shape "
                      f"{fmt_shape(target.shape)}")


def index_put(input: Tensor, index, value, accumulate: bool = False) -> Tensor:
    """Out-of-place ``out = input.clone(); out[index] = value`` (``+=`` when ``accumulate``).

    ``index`` is anything ``input[index]`` accepts, including torch's tuple of index tensors;
    ``value`` (tensor or number) broadcasts to the indexed shape and is cast to ``input``'s dtype.
    Differentiable in ``input`` (zero gradient at overwritten positions) and ``value`` (the
    gradient gathered at the indexed positions). ``tensor[index] = value`` calls this when autograd
    is recording.

    >>> import shendu
    >>> x = shendu.zeros(2, 3)
    >>> shendu.index_put(x, (shendu.tensor([0, 1]), shendu.tensor([2, 0])), 5.0).tolist()
    [[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]
    """
    t, parsed, v = _put_args("index_put", input, index, value)
    try:
        return IndexPut.apply(t, v, index=parsed, accumulate=bool(accumulate))
    except ValueError as e:
        if "broadcast" in str(e):
            raise _shape_mismatch("index_put", t, parsed, v) from None
        raise


def index_put_(input: Tensor, index, value, accumulate: bool = False) -> Tensor:
    """In-place ``input[index] = value`` on ``input``'s array (``+=`` when ``accumulate``); records no graph.

    ``tensor[index] = value`` calls this when autograd is not recording. Returns ``input``.

    >>> import shendu
    >>> x = shendu.zeros(4)
    >>> x[1:3] = 2.0
    >>> x.tolist()
    [0.0, 2.0, 2.0, 0.0]
    """
    t, parsed, v = _put_args("index_put_", input, index, value)
    if is_grad_enabled() and (t.requires_grad or v.requires_grad):
        raise AutogradError("index_put_: a tensor that requires grad takes part, and index_put_ records no "
                            "graph; use index_put() or tensor[index] = value, or run under shendu.no_grad()")
    basic, adv, _ = parsed
    value_arr = v.data.astype(t.dtype, copy=False)
    try:
        if accumulate:
            _accumulate(t.data, parsed, value_arr)
        else:
            t.data[basic][... if adv is None else adv] = value_arr
    except ValueError as e:
        if "broadcast" in str(e):
            raise _shape_mismatch("index_put_", t, parsed, v) from None
        raise
    return t


# ------------------------------------------------------------------------------- gather and scatter
def _mesh(xp, index, dim: int) -> tuple:
    """The full index tuple that reads ``x[i_0, .., index[i], .., i_n]`` for every position ``i`` of
    ``index``: ``index`` at ``dim``, open-mesh aranges (broadcasting, like ogrid) elsewhere."""
    nd = index.ndim
    return tuple(index if d == dim else xp.arange(n).reshape((n,) + (1,) * (nd - 1 - d))
                 for d, n in enumerate(index.shape))


def _along_args(op: str, input, dim: int, index, src=None):
    """Validate the arguments of gather/scatter; return (tensor, dim, index array)."""
    t = as_tensor_arg(input)
    idx = _int_index(op, index)
    dim = normalize_dim(op, dim, t.ndim)
    if idx.ndim != t.ndim:
        raise ShapeError(f"{op}: index of shape {fmt_shape(idx.shape)} must have as many dimensions as the "
                         f"input of shape {fmt_shape(t.shape)}; add unsqueeze() to the index")
    for d in range(t.ndim):
        if d != dim and idx.shape[d] > t.shape[d]:
            raise ShapeError(f"{op}: index of shape {fmt_shape(idx.shape)} is larger than the input of shape "
                             f"{fmt_shape(t.shape)} at dim {d} (only dim {dim} may be larger)")
    if src is not None and (src.ndim != idx.ndim or any(i > s for i, s in zip(idx.shape, src.shape))):
        raise ShapeError(f"{op}: index of shape {fmt_shape(idx.shape)} must be no larger than src of shape "
                         f"{fmt_shape(src.shape)} in every dim")
    _check_bounds(op, idx, t.shape[dim], dim)
    return t, dim, idx


class Gather(Function):
    def forward(ctx, x, *, dim, index):
        ctx.mesh, ctx.shape = _mesh(get_array_module(x), index, dim), x.shape
        return x[ctx.mesh]

    def backward(ctx, gy):
        gx = get_array_module(gy).zeros(ctx.shape, gy.dtype)
        _accumulate(gx, ((...,), ctx.mesh, False), gy)
        return gx


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """Pick values along ``dim``: ``out[i][j][k] = input[i][index[i][j][k]][k]`` (for ``dim=1``).

    Shapes: ``index`` has ``input``'s number of dims and is no larger than ``input`` except along
    ``dim``; the output has ``index``'s shape. Backward scatter-adds the gradient into zeros.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> shendu.gather(x, 1, shendu.tensor([[0, 0], [1, 0]])).tolist()
    [[1.0, 1.0], [4.0, 3.0]]
    """
    t, dim, idx = _along_args("gather", input, dim, index)
    return Gather.apply(t, dim=dim, index=idx)


class Scatter(Function):
    """``out = input`` with ``out[mesh] = src[:index.shape]`` or ``= value`` (``+=`` when ``add``)."""

    def forward(ctx, x, src, *, value=None, dim, index, add):
        ctx.mesh = _mesh(get_array_module(x), index, dim)
        ctx.corner = tuple(slice(0, n) for n in index.shape)  # the block of src that index covers
        ctx.src_shape, ctx.add = getattr(src, "shape", None), add
        values = value if src is None else src[ctx.corner].astype(x.dtype, copy=False)
        out = x.copy()
        if add:
            _accumulate(out, ((...,), ctx.mesh, False), values)
        else:
            out[ctx.mesh] = values
        return out

    def backward(ctx, gy):
        xp = get_array_module(gy)
        gx = gsrc = None
        if ctx.needs_input_grad[0]:
            gx = gy
            if not ctx.add:  # overwritten positions do not reach the output
                gx = gy.copy()
                gx[ctx.mesh] = 0
        if ctx.needs_input_grad[1]:
            picked = gy[ctx.mesh]
            if picked.shape == ctx.src_shape:
                gsrc = picked
            else:  # src elements outside index's shape were not used
                gsrc = xp.zeros(ctx.src_shape, gy.dtype)
                gsrc[ctx.corner] = picked
        return gx, gsrc


def scatter(input: Tensor, dim: int, index: Tensor, src=None, *, value=None) -> Tensor:
    """Out-of-place scatter: ``out = input.clone(); out[i][index[i][j]] = src[i][j]`` (for ``dim=1``).

    Give either a tensor ``src`` (no smaller than ``index`` in every dim; only its first
    ``index.shape`` block is used) or a scalar ``value`` (a number passed as ``src`` counts as
    ``value``). Where ``index`` repeats a position the result is one of the written values.
    Backward: ``input`` gets the gradient with the written positions zeroed; ``src`` gets the
    gradient gathered at them.

    >>> import shendu
    >>> x = shendu.zeros(2, 3)
    >>> shendu.scatter(x, 1, shendu.tensor([[2], [0]]), value=1.0).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    if isinstance(src, numbers.Number):
        src, value = None, src
    if (src is None) == (value is None):
        raise ArgumentError("scatter: give exactly one of src (a tensor) and value (a number)")
    if src is not None:
        src = as_tensor_arg(src)
    t, dim, idx = _along_args("scatter", input, dim, index, src)
    if src is None:
        value = get_array_module(t.data).asarray(value, dtype=t.dtype)
    return Scatter.apply(t, src, value=value, dim=dim, index=idx, add=False)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """Out-of-place ``out = input.clone(); out[i][index[i][j]] += src[i][j]`` (for ``dim=1``).

    Repeated positions in ``index`` accumulate. Shapes as in :func:`scatter`. Backward: ``input``
    gets the gradient unchanged; ``src`` gets the gradient gathered at ``index``.

    >>> import shendu
    >>> x = shendu.zeros(3)
    >>> shendu.scatter_add(x, 0, shendu.tensor([0, 2, 0]), shendu.tensor([1.0, 2.0, 3.0])).tolist()
    [4.0, 0.0, 2.0]
    """
    src = as_tensor_arg(src)
    t, dim, idx = _along_args("scatter_add", input, dim, index, src)
    return Scatter.apply(t, src, dim=dim, index=idx, add=True)


class IndexSelect(Function):
    def forward(ctx, x, *, dim, index):
        ctx.select = (_ALL,) * dim + (index,)
        ctx.shape = x.shape
        return get_array_module(x).take(x, index, axis=dim)

    def backward(ctx, gy):
        gx = get_array_module(gy).zeros(ctx.shape, gy.dtype)
        _accumulate(gx, ((...,), ctx.select, False), gy)
        return gx


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The slices ``input[..., index[k], ...]`` along ``dim`` in the order of ``index`` (repeats allowed).

    Shapes: ``index`` is 1-d (or 0-d) with values in ``0..input.shape[dim]-1``; the output has
    ``input``'s shape with size ``len(index)`` at ``dim``. Backward adds the gradient of repeated
    indices.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> shendu.index_select(x, 0, shendu.tensor([2, 0, 2])).tolist()
    [[5.0, 6.0], [1.0, 2.0], [5.0, 6.0]]
    """
    t = as_tensor_arg(input)
    idx = _int_index("index_select", index)
    dim = normalize_dim("index_select", dim, t.ndim)
    if idx.ndim > 1:
        raise ShapeError(f"index_select: index must be 1-d, got shape {fmt_shape(idx.shape)}; "
                         "use index.flatten() or gather() for per-row indices")
    _check_bounds("index_select", idx, t.shape[dim] if t.ndim else 1, dim)
    return IndexSelect.apply(t, dim=dim, index=idx.reshape(-1))


# ------------------------------------------------------------------------------------------- masks
class MaskedFill(Function):
    def forward(ctx, x, mask, value):
        xp = get_array_module(x)
        ctx.save_for_backward(mask)
        ctx.shape = x.shape
        return xp.where(mask, value.astype(x.dtype, copy=False), x)

    def backward(ctx, gy):
        mask, = ctx.saved
        xp = get_array_module(gy)
        gx = unbroadcast(xp.where(mask, 0, gy), ctx.shape) if ctx.needs_input_grad[0] else None
        gv = xp.asarray(xp.where(mask, gy, 0).sum()) if ctx.needs_input_grad[2] else None
        return gx, None, gv


def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:
    """``out = where(mask, value, input)``: ``input`` with ``value`` written where ``mask`` is true.

    ``mask`` is a bool tensor broadcasting with ``input``; ``value`` is a number or a 0-d tensor (then
    differentiable: its gradient is the sum of the output gradient over the masked positions). The
    result has ``input``'s dtype.

    >>> import shendu
    >>> x = shendu.tensor([1.0, 2.0, 3.0])
    >>> shendu.masked_fill(x, x > 1.5, float("-inf")).tolist()
    [1.0, -inf, -inf]
    """
    t = as_tensor_arg(input)
    m = _bool_mask("masked_fill", mask)
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ShapeError(f"masked_fill: value must be a number or a 0-d tensor, got a tensor of shape "
                             f"{fmt_shape(value.shape)}")
    else:
        value = get_array_module(t.data).asarray(value, dtype=t.dtype)
    xp = get_array_module(t.data)
    try:
        xp.broadcast_shapes(t.shape, m.shape)
    except ValueError:
        raise broadcast_error("masked_fill", t, m) from None
    return MaskedFill.apply(t, Tensor._wrap(m), value)


class MaskedSelect(Function):
    def forward(ctx, x, mask):
        xb, mb = get_array_module(x).broadcast_arrays(x, mask)
        ctx.save_for_backward(mb)
        ctx.shape = x.shape
        return xb[mb]

    def backward(ctx, gy):
        mb, = ctx.saved
        gx = get_array_module(gy).zeros(mb.shape, gy.dtype)
        gx[mb] = gy
        return unbroadcast(gx, ctx.shape), None


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    """The 1-d tensor of the elements of ``input`` where ``mask`` (broadcast with it) is true, in row-major order.

    >>> import shendu
    >>> x = shendu.tensor([[1.0, -2.0], [-3.0, 4.0]])
    >>> shendu.masked_select(x, x > 0).tolist()
    [1.0, 4.0]
    """
    t = as_tensor_arg(input)
    m = _bool_mask("masked_select", mask)
    try:
        get_array_module(t.data).broadcast_shapes(t.shape, m.shape)
    except ValueError:
        raise broadcast_error("masked_select", t, m) from None
    return MaskedSelect.apply(t, Tensor._wrap(m))


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """``out[..., c] = 1 if tensor[...] == c else 0`` as an int64 tensor of shape ``(*tensor.shape, C)``.

    ``num_classes=-1`` takes ``C = tensor.max() + 1``. Class values must lie in ``0..C-1``.

    >>> import shendu
    >>> shendu.one_hot(shendu.tensor([0, 2]), 3).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    a = as_tensor_arg(tensor).data
    if a.dtype.kind not in "iu":
        raise DTypeError(f"one_hot: expected an integer tensor of class indices, got dtype {a.dtype}; "
                         "call .long() on it")
    xp = get_array_module(a)
    if num_classes == -1:
        if a.size == 0:
            raise ArgumentError("one_hot: cannot infer the number of classes from an empty tensor; "
                                "pass num_classes")
        num_classes = int(a.max()) + 1
    if a.size and a.min() < 0:
        raise IndexOutOfRangeError(f"one_hot: class values must be non-negative, got {int(a.min())}")
    if a.size and a.max() >= num_classes:
        raise IndexOutOfRangeError(f"one_hot: class values must be smaller than num_classes={num_classes}, "
                                   f"got {int(a.max())}")
    return Tensor._wrap((a[..., None] == xp.arange(num_classes)).astype(xp.int64))


def nonzero(input: Tensor, *, as_tuple: bool = False):
    """Indices of the non-zero elements: an int64 tensor of shape ``(count, input.ndim)``, or with
    ``as_tuple=True`` one 1-d index tensor per dim (usable as ``input[result]``).

    >>> import shendu
    >>> shendu.nonzero(shendu.tensor([[0.0, 1.0], [2.0, 0.0]])).tolist()
    [[0, 1], [1, 0]]
    """
    a = as_tensor_arg(input).data
    xp = get_array_module(a)
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(xp.int64, copy=False)) for i in xp.nonzero(xp.atleast_1d(a)))
    return Tensor._wrap(xp.argwhere(a).astype(xp.int64, copy=False))


# -------------------------------------------------------------------------------------- sort, top-k
def _argsort(xp, x, dim: int, descending: bool, stable: bool):
    kind = "stable" if stable else None
    if not descending:
        return xp.argsort(x, axis=dim, kind=kind)
    # Sort the reversed array ascending and reverse back: ties keep their original order when stable,
    # and NaN comes first, as in torch (negating would not work for unsigned or bool input).
    n = x.shape[dim]
    return n - 1 - xp.flip(xp.argsort(xp.flip(x, dim), axis=dim, kind=kind), dim)


class TakeAlong(Function):
    """``values = take_along_axis(x, indices, dim)``, returned with the indices (which carry no gradient)."""

    def forward(ctx, x, *, indices, dim):
        ctx.save_for_backward(indices)
        ctx.shape, ctx.dim = x.shape, dim
        return get_array_module(x).take_along_axis(x, indices, dim), indices

    def backward(ctx, gy, _gi):
        indices, = ctx.saved
        xp = get_array_module(gy)
        gx = xp.zeros(ctx.shape, gy.dtype)
        xp.put_along_axis(gx, indices, gy, ctx.dim)  # indices are distinct along dim: no accumulation
        return gx


def _sort_args(op: str, input, dim: int):
    t = as_tensor_arg(input)
    if t.ndim == 0:
        raise ShapeError(f"{op}: expected a tensor with at least 1 dimension, got a 0-d tensor; "
                         "use x.reshape(1)")
    return t, normalize_dim(op, dim, t.ndim)


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> SortResult:
    """Sort along ``dim``: ``(values, indices)`` with ``values = input.gather(dim, indices)``.

    ``stable=True`` keeps equal elements in their original order; NaN sorts as the largest value.
    Backward puts the gradient back at ``indices``.

    >>> import shendu
    >>> v, i = shendu.sort(shendu.tensor([3.0, 1.0, 2.0]), descending=True)
    >>> v.tolist(), i.tolist()
    ([3.0, 2.0, 1.0], [0, 2, 1])
    """
    t, dim = _sort_args("sort", input, dim)
    indices = _argsort(get_array_module(t.data), t.data, dim, descending, stable).astype("int64", copy=False)
    return SortResult(*TakeAlong.apply(t, indices=indices, dim=dim))


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The int64 indices that sort ``input`` along ``dim`` (the ``indices`` of :func:`sort`).

    >>> import shendu
    >>> shendu.argsort(shendu.tensor([3.0, 1.0, 2.0])).tolist()
    [1, 2, 0]
    """
    t, dim = _sort_args("argsort", input, dim)
    return Tensor._wrap(_argsort(get_array_module(t.data), t.data, dim, descending, stable).astype("int64",
                                                                                                    copy=False))


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> TopkResult:
    """The ``k`` largest (or smallest) elements along ``dim``: ``(values, indices)``.

    Found with a partial sort (``argpartition``, O(n)) and then, when ``sorted``, a sort of the ``k``
    only. Backward puts the gradient back at ``indices``.

    >>> import shendu
    >>> v, i = shendu.topk(shendu.tensor([1.0, 5.0, 3.0, 4.0]), 2)
    >>> v.tolist(), i.tolist()
    ([5.0, 4.0], [1, 3])
    """
    t, dim = _sort_args("topk", input, dim)
    n = t.shape[dim]
    if not 0 <= k <= n:
        raise ArgumentError(f"topk: k={k} is out of range for dim {dim} of size {n} (expected 0 <= k <= {n})")
    x = t.data
    xp = get_array_module(x)
    if k == 0:
        indices = xp.zeros(x.shape[:dim] + (0,) + x.shape[dim + 1:], xp.int64)
    else:
        kth = n - k if largest else k - 1
        part = xp.argpartition(x, kth, axis=dim)
        keep = slice(n - k, None) if largest else slice(0, k)
        indices = part[(_ALL,) * dim + (keep,)]
        if sorted:
            order = _argsort(xp, xp.take_along_axis(x, indices, dim), dim, largest, stable=True)
            indices = xp.take_along_axis(indices, order, dim)
    return TopkResult(*TakeAlong.apply(t, indices=indices.astype(xp.int64, copy=False), dim=dim))
