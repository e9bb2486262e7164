"""Shape and layout ops: reshape, permute, expand, repeat, cat/stack/split, flip/roll, slicing, padding.

None of these ops changes a value, so every backward only moves the gradient back to where the value
came from: reshape it back, permute it back, sum it over copies (expand, repeat, pad), or scatter it
into zeros (narrow, diagonal). Forward returns a NumPy view wherever NumPy can make one (reshape of
contiguous data, permute, expand, split, narrow, flip, diagonal); views from ``expand`` and
``diagonal`` are read-only. Backward never writes into the incoming gradient.
"""

from __future__ import annotations

import math
import numbers
import operator

from shendu.autograd.engine import unbroadcast
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, IndexOutOfRangeError, ShapeError, fmt_shape, normalize_dim, normalize_dims
from shendu.ops._util import as_tensor_arg

__all__ = [
    "reshape", "flatten", "unflatten", "permute", "transpose", "swapaxes", "swapdims", "movedim", "squeeze",
    "unsqueeze", "expand", "broadcast_to", "repeat", "tile", "cat", "concat", "concatenate", "stack", "split",
    "chunk", "flip", "roll", "narrow", "diagonal", "triu", "tril", "pad",
]


# ------------------------------------------------------------------------------------------- helpers
def _ints(op: str, what: str, value) -> tuple:
    """``value`` (an int or a sequence of ints) as a tuple of Python ints."""
    if isinstance(value, numbers.Integral):
        return (int(value),)
    try:
        return tuple(operator.index(v) for v in value)
    except TypeError:
        raise ArgumentError(f"{op}: {what} must be an int or a sequence of ints, got {value!r}") from None


def _axis_index(dim: int, index) -> tuple:
    """An index tuple that applies ``index`` along axis ``dim`` and takes everything elsewhere."""
    return (slice(None),) * dim + (index,)


def _infer_size(op: str, shape: tuple, numel: int, source: str) -> tuple:
    """``shape`` with its one allowed -1 filled in so that it holds ``numel`` elements."""
    if shape.count(-1) > 1:
        raise ShapeError(f"{op}: only one dimension can be -1, got shape {fmt_shape(shape)}")
    bad = [s for s in shape if s < -1]
    if bad:
        raise ShapeError(f"{op}: invalid size {bad[0]} in shape {fmt_shape(shape)}; sizes must be >= 0 "
                         "(or -1 for one inferred dimension)")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            why = ("the -1 is ambiguous next to a 0-size dimension" if known == 0
                   else f"needs a multiple of {known} elements")
            raise ShapeError(f"{op}: cannot reshape {source} ({numel} elements) into shape {fmt_shape(shape)} "
                             f"({why})")
        return tuple(numel // known if s == -1 else s for s in shape)
    if known != numel:
        raise ShapeError(f"{op}: cannot reshape {source} ({numel} elements) into shape {fmt_shape(shape)} "
                         f"({known} elements); the element counts must be equal")
    return shape


def _tensor_list(op: str, tensors) -> list:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise ArgumentError(f"{op}: expected a list or tuple of tensors, got {type(tensors).__name__}; "
                            f"wrap a single tensor in a list: {op}([t], ...)")
    if not tensors:
        raise ArgumentError(f"{op}: expected a non-empty list of tensors, got an empty one")
    tensors = [as_tensor_arg(t) for t in tensors]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:  # torch's promotion: any float dtype wins over ints and bools
        xp = get_array_module(*(t.data for t in tensors))
        floats = [d for d in dtypes if d.kind in "fc"]
        common = xp.result_type(*(floats or dtypes))
        tensors = [t.to(common) for t in tensors]
    return tensors


# ------------------------------------------------------------------------------ reshape and friends
class Reshape(Function):
    def forward(ctx, x, *, shape):
        ctx.in_shape = x.shape
        return x.reshape(shape)  # a view whenever the strides allow one

    def backward(ctx, gy):
        return gy.reshape(ctx.in_shape)


def reshape(input, shape) -> Tensor:
    """The same elements in a new shape; one size may be ``-1`` and is inferred.

    ``Tensor.view`` and ``Tensor.reshape`` call this. Returns a view when the memory layout allows.
    Backward reshapes the gradient back to the input's shape.

    >>> import shendu
    >>> shendu.reshape(shendu.arange(6), (2, -1)).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    x = as_tensor_arg(input)
    shape = _ints("reshape", "shape", shape)
    shape = _infer_size("reshape", shape, x.numel(), f"a tensor of shape {fmt_shape(x.shape)}")
    return Reshape.apply(x, shape=shape)


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` (inclusive) into one; a 0-d tensor becomes shape ``(1,)``.

    Shapes: ``(a, b, c, d)`` with ``start_dim=1, end_dim=2`` -> ``(a, b*c, d)``.

    >>> import shendu
    >>> shendu.flatten(shendu.zeros(2, 3, 4), 1).shape
    (2, 12)
    """
    x = as_tensor_arg(input)
    if x.ndim == 0:
        return Reshape.apply(x, shape=(1,))
    s = normalize_dim("flatten", start_dim, x.ndim)
    e = normalize_dim("flatten", end_dim, x.ndim)
    if s > e:
        raise ArgumentError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a tensor of "
                            f"shape {fmt_shape(x.shape)}")
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return Reshape.apply(x, shape=shape)


def unflatten(input, dim: int, sizes) -> Tensor:
    """Split dim ``dim`` into ``sizes`` (one may be ``-1``); the inverse of :func:`flatten`.

    Shapes: ``(a, b*c, d)`` with ``dim=1, sizes=(b, c)`` -> ``(a, b, c, d)``.

    >>> import shendu
    >>> shendu.unflatten(shendu.zeros(2, 12), 1, (3, -1)).shape
    (2, 3, 4)
    """
    x = as_tensor_arg(input)
    d = normalize_dim("unflatten", dim, x.ndim)
    sizes = _ints("unflatten", "sizes", sizes)
    if x.ndim == 0:
        raise ShapeError("unflatten: cannot unflatten a 0-d tensor; it has no dimension to split")
    sizes = _infer_size("unflatten", sizes, x.shape[d],
                        f"dim {dim} of size {x.shape[d]} (input shape {fmt_shape(x.shape)})")
    return Reshape.apply(x, shape=x.shape[:d] + sizes + x.shape[d + 1:])


def squeeze(input, dim=None) -> Tensor:
    """Remove dims of size 1: all of them, or only those in ``dim`` (an int or a tuple).

    A listed dim whose size is not 1 is left alone, as in torch.

    >>> import shendu
    >>> shendu.squeeze(shendu.zeros(1, 3, 1)).shape
    (3,)
    >>> shendu.squeeze(shendu.zeros(1, 3, 1), (0, 1)).shape
    (3, 1)
    """
    x = as_tensor_arg(input)
    dims = range(x.ndim) if dim is None else normalize_dims("squeeze", _ints("squeeze", "dim", dim), x.ndim)
    shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return Reshape.apply(x, shape=shape)


def unsqueeze(input, dim: int) -> Tensor:
    """Insert a dim of size 1 at position ``dim`` (``-1`` appends one).

    Shapes: ``(a, b)`` with ``dim=1`` -> ``(a, 1, b)``.

    >>> import shendu
    >>> shendu.unsqueeze(shendu.zeros(2, 3), -1).shape
    (2, 3, 1)
    """
    x = as_tensor_arg(input)
    d = normalize_dim("unsqueeze", dim, x.ndim + 1)
    return Reshape.apply(x, shape=x.shape[:d] + (1,) + x.shape[d:])


# ------------------------------------------------------------------------------------------ permute
class Permute(Function):
    def forward(ctx, x, *, dims):
        ctx.dims = dims
        return x.transpose(dims)

    def backward(ctx, gy):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return gy.transpose(inverse)


def permute(input, dims) -> Tensor:
    """Reorder the dims: output dim ``i`` is input dim ``dims[i]`` (a view).

    Shapes: ``(a, b, c)`` with ``dims=(2, 0, 1)`` -> ``(c, a, b)``.

    >>> import shendu
    >>> shendu.permute(shendu.zeros(2, 3, 4), (2, 0, 1)).shape
    (4, 2, 3)
    """
    x = as_tensor_arg(input)
    dims = _ints("permute", "dims", dims)
    if len(dims) != x.ndim:
        raise ArgumentError(f"permute: got {len(dims)} dims {dims} for a tensor with {x.ndim} dimension(s) "
                            f"(shape {fmt_shape(x.shape)}); give each dimension exactly once")
    return Permute.apply(x, dims=normalize_dims("permute", dims, x.ndim))


def transpose(input, dim0: int, dim1: int) -> Tensor:
    """Swap dims ``dim0`` and ``dim1`` (a view).

    >>> import shendu
    >>> shendu.transpose(shendu.zeros(2, 3, 4), 0, -1).shape
    (4, 3, 2)
    """
    x = as_tensor_arg(input)
    d0 = normalize_dim("transpose", dim0, x.ndim)
    d1 = normalize_dim("transpose", dim1, x.ndim)
    dims = list(range(x.ndim))
    if x.ndim:
        dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(x, dims=tuple(dims))


swapaxes = transpose
swapdims = transpose


def movedim(input, source, destination) -> Tensor:
    """Move dims ``source`` to positions ``destination``; the other dims keep their order.

    >>> import shendu
    >>> shendu.movedim(shendu.zeros(2, 3, 4), 0, -1).shape
    (3, 4, 2)
    >>> shendu.movedim(shendu.zeros(2, 3, 4), (0, 1), (2, 0)).shape
    (3, 4, 2)
    """
    x = as_tensor_arg(input)
    src = normalize_dims("movedim", _ints("movedim", "source", source), x.ndim)
    dst = normalize_dims("movedim", _ints("movedim", "destination", destination), x.ndim)
    if len(src) != len(dst):
        raise ArgumentError(f"movedim: source {source} and destination {destination} must list the same "
                            "number of dims")
    order = [None] * x.ndim
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(x.ndim) if i not in src)
    return Permute.apply(x, dims=tuple(o if o is not None else next(rest) for o in order))


# ------------------------------------------------------------------------------------ expand, repeat
class Expand(Function):
    def forward(ctx, x, *, shape):
        ctx.in_shape = x.shape
        return get_array_module(x).broadcast_to(x, shape)  # read-only view, no copy

    def backward(ctx, gy):
        return unbroadcast(gy, ctx.in_shape)


def _expand(op: str, x: Tensor, sizes) -> Tensor:
    sizes = _ints(op, "sizes", sizes)
    new = len(sizes) - x.ndim
    if new < 0:
        raise ShapeError(f"{op}: got {len(sizes)} sizes {sizes} for a tensor of shape {fmt_shape(x.shape)}; "
                         "give at least one size per dimension")
    shape = []
    for i, s in enumerate(sizes):
        old = x.shape[i - new] if i >= new else None
        if s == -1 and old is not None:
            s = old
        if s < 0:
            where = "a new leading dimension" if old is None else "a dimension"
            raise ShapeError(f"{op}: size {s} at position {i} is invalid for {where} (sizes {sizes}); "
                             "-1 only keeps an existing dimension")
        if old is not None and old != 1 and s != old:
            raise ShapeError(f"{op}: cannot expand a tensor of shape {fmt_shape(x.shape)} to {sizes}: dim "
                             f"{i} has size {old}, which is not 1, so it must stay {old} (or -1)")
        shape.append(s)
    return Expand.apply(x, shape=tuple(shape))


def expand(input, sizes) -> Tensor:
    """Broadcast dims of size 1 to ``sizes`` without copying (a read-only view); ``-1`` keeps a dim.

    New leading dims may be added. Backward sums the gradient over the broadcast dims.

    >>> import shendu
    >>> shendu.expand(shendu.tensor([[1.0], [2.0]]), (2, -1, 3)).tolist()
    [[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]]
    """
    return _expand("expand", as_tensor_arg(input), sizes)


def broadcast_to(input, shape) -> Tensor:
    """Broadcast to ``shape`` like NumPy/PyTorch broadcasting (same as :func:`expand`).

    >>> import shendu
    >>> shendu.broadcast_to(shendu.tensor([1.0, 2.0]), (3, 2)).shape
    (3, 2)
    """
    return _expand("broadcast_to", as_tensor_arg(input), shape)


class Repeat(Function):
    def forward(ctx, x, *, sizes):
        ctx.in_shape, ctx.sizes = x.shape, sizes
        x = x.reshape((1,) * (len(sizes) - x.ndim) + x.shape)
        ctx.padded_shape = x.shape
        return get_array_module(x).tile(x, sizes)

    def backward(ctx, gy):
        if 0 in ctx.sizes:  # no copies at all, so no gradient
            return get_array_module(gy).zeros(ctx.in_shape, gy.dtype)
        # view each output dim of size r*s as (r, s) and sum over the r axes
        split = [n for r, s in zip(ctx.sizes, ctx.padded_shape) for n in (r, s)]
        g = gy.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return g.reshape(ctx.in_shape)


def repeat(input, sizes) -> Tensor:
    """Tile the tensor ``sizes[i]`` times along dim ``i`` (torch's ``Tensor.repeat``).

    ``sizes`` may be longer than ``input.ndim``: the input is then viewed with leading dims of size 1.
    Shapes: ``(b, c)`` with ``sizes=(a, r, s)`` -> ``(a, r*b, s*c)``. Backward sums over the copies.

    >>> import shendu
    >>> shendu.repeat(shendu.tensor([1, 2]), (2, 2)).tolist()
    [[1, 2, 1, 2], [1, 2, 1, 2]]
    """
    x = as_tensor_arg(input)
    sizes = _ints("repeat", "sizes", sizes)
    if len(sizes) < x.ndim:
        raise ShapeError(f"repeat: got {len(sizes)} repeat sizes {sizes} for a tensor of shape "
                         f"{fmt_shape(x.shape)}; give at least one per dimension (use tile() to pad with 1s)")
    if any(s < 0 for s in sizes):
        raise ArgumentError(f"repeat: repeat sizes must be >= 0, got {sizes}")
    return Repeat.apply(x, sizes=sizes)


def tile(input, dims) -> Tensor:
    """Like :func:`repeat`, but ``dims`` shorter than ``input.ndim`` is padded with leading 1s.

    >>> import shendu
    >>> shendu.tile(shendu.zeros(2, 3), (2,)).shape
    (2, 6)
    """
    x = as_tensor_arg(input)
    dims = _ints("tile", "dims", dims)
    return repeat(x, (1,) * (x.ndim - len(dims)) + dims)


# ------------------------------------------------------------------------------ cat, stack, split
class Cat(Function):
    def forward(ctx, *xs, dim, skip):
        xp = get_array_module(*xs)
        ctx.dim, ctx.skip = dim, skip
        ctx.sizes = [x.shape[dim] for x, s in zip(xs, skip) if not s]
        return xp.concatenate([x for x, s in zip(xs, skip) if not s], axis=dim)

    def backward(ctx, gy):
        xp = get_array_module(gy)
        grads, start = [], 0
        sizes = iter(ctx.sizes)
        for skipped, need in zip(ctx.skip, ctx.needs_input_grad):
            if skipped:
                grads.append(xp.zeros((0,), gy.dtype) if need else None)
                continue
            n = next(sizes)
            grads.append(gy[_axis_index(ctx.dim, slice(start, start + n))] if need else None)
            start += n
        return tuple(grads)


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dim; all other dims must match.

    Mixed dtypes are promoted as in torch; 1-d empty tensors (shape ``(0,)``) are skipped, as in torch.
    Backward slices the gradient into one piece per input (views).

    >>> import shendu
    >>> shendu.cat([shendu.zeros(2, 3), shendu.ones(1, 3)]).shape
    (3, 3)
    """
    tensors = _tensor_list("cat", tensors)
    skip = tuple(t.shape == (0,) for t in tensors)
    if all(skip):
        skip = (False,) * len(tensors)
    kept = [(i, t) for i, t in enumerate(tensors) if not skip[i]]
    i0, first = kept[0]
    for i, t in kept:
        if t.ndim == 0:
            raise ShapeError(f"cat: tensor {i} is 0-d and cannot be concatenated; use stack() or unsqueeze it")
    d = normalize_dim("cat", dim, first.ndim)
    for i, t in kept[1:]:
        if t.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != d):
            raise ShapeError(f"cat: tensor {i} has shape {fmt_shape(t.shape)} but tensor {i0} has shape "
                             f"{fmt_shape(first.shape)}; all dims except dim {d} must match")
    return Cat.apply(*tensors, dim=d, skip=skip)


concat = cat
concatenate = cat


class Stack(Function):
    def forward(ctx, *xs, dim):
        ctx.dim = dim
        return get_array_module(*xs).stack(xs, axis=dim)

    def backward(ctx, gy):
        return tuple(gy[_axis_index(ctx.dim, i)] if need else None
                     for i, need in enumerate(ctx.needs_input_grad))


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dim ``dim``.

    Shapes: ``n`` tensors of shape ``(a, b)`` with ``dim=1`` -> ``(a, n, b)``.

    >>> import shendu
    >>> shendu.stack([shendu.zeros(2, 3), shendu.ones(2, 3)], dim=1).shape
    (2, 2, 3)
    """
    tensors = _tensor_list("stack", tensors)
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != tensors[0].shape:
            raise ShapeError(f"stack: tensor {i} has shape {fmt_shape(t.shape)} but tensor 0 has shape "
                             f"{fmt_shape(tensors[0].shape)}; stack needs tensors of equal shape")
    d = normalize_dim("stack", dim, tensors[0].ndim + 1)
    return Stack.apply(*tensors, dim=d)


class Split(Function):
    def forward(ctx, x, *, sections, dim):
        ctx.dim = dim
        bounds = [0]
        for n in sections:
            bounds.append(bounds[-1] + n)
        return tuple(x[_axis_index(dim, slice(a, b))] for a, b in zip(bounds, bounds[1:]))

    def backward(ctx, *gys):  # unused outputs arrive as zeros
        return get_array_module(*gys).concatenate(gys, axis=ctx.dim)


def split(tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Cut into pieces along ``dim``: of ``split_size`` each (the last may be smaller), or of the
    listed sizes. Returns a tuple of views.

    >>> import shendu
    >>> [p.tolist() for p in shendu.split(shendu.arange(5), 2)]
    [[0, 1], [2, 3], [4]]
    >>> [p.shape for p in shendu.split(shendu.zeros(2, 5), [1, 4], dim=1)]
    [(2, 1), (2, 4)]
    """
    x = as_tensor_arg(tensor)
    if x.ndim == 0:
        raise ShapeError("split: cannot split a 0-d tensor")
    d = normalize_dim("split", dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, numbers.Integral):
        size = int(split_size_or_sections)
        if size < 0 or (size == 0 and n):
            raise ArgumentError(f"split: split_size must be positive, got {size} (dim {d} has size {n})")
        sections = [size] * (n // size) + [n % size] * bool(n % size) if n else [0]
    else:
        sections = _ints("split", "split sizes", split_size_or_sections)
        if any(s < 0 for s in sections) or sum(sections) != n:
            raise ArgumentError(f"split: split sizes {sections} must be >= 0 and sum to {n}, the size of dim "
                                f"{d} of the input of shape {fmt_shape(x.shape)}")
    return Split.apply(x, sections=tuple(sections), dim=d)


def chunk(input, chunks: int, dim: int = 0) -> tuple:
    """Split into ``chunks`` pieces of ``ceil(size / chunks)`` along ``dim``; there may be fewer.

    >>> import shendu
    >>> [p.shape for p in shendu.chunk(shendu.zeros(6), 4)]
    [(2,), (2,), (2,)]
    """
    x = as_tensor_arg(input)
    if not isinstance(chunks, numbers.Integral) or chunks <= 0:
        raise ArgumentError(f"chunk: chunks must be a positive int, got {chunks!r}")
    if x.ndim == 0:
        raise ShapeError("chunk: cannot chunk a 0-d tensor")
    d = normalize_dim("chunk", dim, x.ndim)
    n = x.shape[d]
    if n == 0:  # torch gives `chunks` empty pieces
        return split(x, [0] * int(chunks), d)
    return split(x, -(-n // int(chunks)), d)


# --------------------------------------------------------------------------------- flip, roll, ...
class Flip(Function):
    def forward(ctx, x, *, dims):
        ctx.dims = dims
        return get_array_module(x).flip(x, axis=dims)  # a view with negative strides

    def backward(ctx, gy):
        return get_array_module(gy).flip(gy, axis=ctx.dims)


def flip(input, dims) -> Tensor:
    """Reverse the order of elements along ``dims``.

    >>> import shendu
    >>> shendu.flip(shendu.tensor([[1, 2], [3, 4]]), (1,)).tolist()
    [[2, 1], [4, 3]]
    """
    x = as_tensor_arg(input)
    dims = normalize_dims("flip", _ints("flip", "dims", dims), x.ndim)
    return Flip.apply(x, dims=dims if x.ndim else ())


class Roll(Function):
    def forward(ctx, x, *, shifts, dims):
        ctx.shifts, ctx.dims = shifts, dims
        return get_array_module(x).roll(x, shifts, axis=dims)

    def backward(ctx, gy):
        back = -ctx.shifts if ctx.dims is None else tuple(-s for s in ctx.shifts)
        return get_array_module(gy).roll(gy, back, axis=ctx.dims)


def roll(input, shifts, dims=None) -> Tensor:
    """Shift elements cyclically by ``shifts`` along ``dims``; with ``dims=None`` the flattened tensor
    is rolled and reshaped back. ``out[(i + shift) % n] = input[i]``.

    >>> import shendu
    >>> shendu.roll(shendu.tensor([1, 2, 3, 4]), 1).tolist()
    [4, 1, 2, 3]
    """
    x = as_tensor_arg(input)
    shifts = _ints("roll", "shifts", shifts)
    if dims is None:
        if len(shifts) != 1:
            raise ArgumentError(f"roll: without dims, shifts must be one int, got {shifts}")
        return Roll.apply(x, shifts=shifts[0], dims=None)
    dims = _ints("roll", "dims", dims)
    if len(shifts) != len(dims):
        raise ArgumentError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    dims = tuple(normalize_dim("roll", d, x.ndim) for d in dims)
    if x.ndim == 0:
        return Roll.apply(x, shifts=0, dims=None)
    return Roll.apply(x, shifts=shifts, dims=dims)


class Slice(Function):
    def forward(ctx, x, *, index):
        ctx.in_shape, ctx.index = x.shape, index
        return x[index]

    def backward(ctx, gy):
        g = get_array_module(gy).zeros(ctx.in_shape, gy.dtype)
        g[ctx.index] = gy
        return g


def narrow(input, dim: int, start: int, length: int) -> Tensor:
    """The slice ``start:start+length`` of dim ``dim`` (a view); a negative ``start`` counts from the end.

    >>> import shendu
    >>> shendu.narrow(shendu.arange(6), 0, 1, 3).tolist()
    [1, 2, 3]
    """
    x = as_tensor_arg(input)
    if x.ndim == 0:
        raise ShapeError("narrow: cannot narrow a 0-d tensor")
    d = normalize_dim("narrow", dim, x.ndim)
    n = x.shape[d]
    if not -n <= start <= n:
        raise IndexOutOfRangeError(f"narrow: start {start} is out of range for dim {d} of size {n} "
                                   f"(input shape {fmt_shape(x.shape)})")
    start = start % n if start < 0 else start
    if length < 0 or start + length > n:
        raise IndexOutOfRangeError(f"narrow: start ({start}) + length ({length}) must lie within dim {d} of "
                                   f"size {n} (input shape {fmt_shape(x.shape)})")
    return Slice.apply(x, index=_axis_index(d, slice(start, start + length)))


class Diagonal(Function):
    def forward(ctx, x, *, offset, dim1, dim2):
        ctx.in_shape, ctx.args = x.shape, (offset, dim1, dim2)
        return get_array_module(x).diagonal(x, offset, dim1, dim2)  # read-only view

    def backward(ctx, gy):
        xp = get_array_module(gy)
        offset, dim1, dim2 = ctx.args
        g = xp.zeros(ctx.in_shape, gy.dtype)
        # a writable view of g with (dim1, dim2) last; the diagonal is then g2[..., rows, cols]
        g2 = xp.moveaxis(g, (dim1, dim2), (-2, -1))
        k = xp.arange(gy.shape[-1])
        g2[..., k + max(-offset, 0), k + max(offset, 0)] = gy
        return g


def diagonal(input, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of the planes ``(dim1, dim2)``: ``out[..., k] = input[.., k, .., k + offset, ..]``.

    The two dims are removed and the diagonal becomes the last dim; ``offset > 0`` is above the main
    diagonal. A view (read-only).

    >>> import shendu
    >>> shendu.diagonal(shendu.tensor([[1, 2], [3, 4]])).tolist()
    [1, 4]
    """
    x = as_tensor_arg(input)
    if x.ndim < 2:
        raise ShapeError(f"diagonal: needs a tensor with at least 2 dimensions, got shape {fmt_shape(x.shape)}")
    d1, d2 = normalize_dims("diagonal", (dim1, dim2), x.ndim)
    return Diagonal.apply(x, offset=int(offset), dim1=d1, dim2=d2)


class Triangle(Function):
    def forward(ctx, x, *, k, upper):
        ctx.k, ctx.upper = k, upper
        xp = get_array_module(x)
        return xp.triu(x, k) if upper else xp.tril(x, k)

    def backward(ctx, gy):
        xp = get_array_module(gy)
        return xp.triu(gy, ctx.k) if ctx.upper else xp.tril(gy, ctx.k)


def _triangle(op: str, input, diagonal: int, upper: bool) -> Tensor:
    x = as_tensor_arg(input)
    if x.ndim < 2:
        raise ShapeError(f"{op}: needs a tensor with at least 2 dimensions (a matrix or a batch of them), "
                         f"got shape {fmt_shape(x.shape)}")
    return Triangle.apply(x, k=int(diagonal), upper=upper)


def triu(input, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two dims: ``out[.., i, j] = input[.., i, j]`` if ``j - i >= diagonal``
    else 0.

    >>> import shendu
    >>> shendu.triu(shendu.ones(3, 3)).tolist()
    [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
    """
    return _triangle("triu", input, diagonal, upper=True)


def tril(input, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two dims: keeps ``input[.., i, j]`` where ``j - i <= diagonal``.

    >>> import shendu
    >>> shendu.tril(shendu.ones(2, 3), -1).tolist()
    [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    return _triangle("tril", input, diagonal, upper=False)


# --------------------------------------------------------------------------------------------- pad
_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class PadConstant(Function):
    def forward(ctx, x, *, widths, cuts, value):
        ctx.widths, ctx.cuts = widths, cuts
        y = get_array_module(x).pad(x, widths, constant_values=value)
        return y[tuple(slice(lo, y.shape[i] - hi) for i, (lo, hi) in enumerate(cuts))]

    def backward(ctx, gy):
        if any(lo or hi for lo, hi in ctx.cuts):  # give back the zeros of what negative pads cropped
            gy = get_array_module(gy).pad(gy, ctx.cuts)
        return gy[tuple(slice(lo, gy.shape[i] - hi) for i, (lo, hi) in enumerate(ctx.widths))]


class PadGather(Function):
    """Out = the input gathered along each padded axis with an index map (reflect/replicate/circular)."""

    def forward(ctx, x, *, maps):
        ctx.in_shape, ctx.maps = x.shape, maps
        xp = get_array_module(x)
        for axis, idx, _ in maps:
            x = xp.take(x, idx, axis=axis)
        return x

    def backward(ctx, gy):
        xp = get_array_module(gy)
        for axis, idx, (a, b) in ctx.maps:  # fold one axis at a time; the axes are independent
            shape = list(gy.shape)
            shape[axis] = ctx.in_shape[axis]
            g = xp.zeros(shape, gy.dtype)
            # out[a:b] maps one-to-one onto an input range: copy it; scatter-add the border rest
            if b > a:
                g[_axis_index(axis, slice(int(idx[a]), int(idx[a]) + b - a))] = gy[_axis_index(axis, slice(a, b))]
            border = xp.concatenate([xp.arange(a), xp.arange(b, len(idx))])
            if border.size:
                xp.add.at(g, _axis_index(axis, idx[border]), xp.take(gy, border, axis=axis))
            gy = g
        return gy


def _gather_map(xp, n: int, before: int, after: int, mode: str):
    """Input index of each output position along one axis, and the output slice ``(a, b)`` that copies
    the input one-to-one. Like torch: reflect/replicate pad then crop negative pads, circular crops first."""
    pad = (max(before, 0), max(after, 0))
    cut = (max(-before, 0), max(-after, 0))
    if mode == "circular":
        src = xp.arange(cut[0], n - cut[1])
        idx = xp.pad(src, pad, mode="wrap")
        start = pad[0]
    else:
        src = xp.arange(n)
        full = xp.pad(src, pad, mode=_NUMPY_MODE[mode])
        idx = full[cut[0]:len(full) - cut[1]]
        start = pad[0] - cut[0]
    a, b = min(max(start, 0), len(idx)), min(max(start + len(src), 0), len(idx))
    return idx, (a, b)


def pad(input, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad like ``torch.nn.functional.pad``: ``pad = (left, right, top, bottom, ...)`` pads the last dim
    first, then the one before it, and so on. Negative values crop.

    Modes: ``'constant'`` (fill with ``value``, default 0; any number of dims), ``'reflect'`` (mirror
    without repeating the edge; pad < dim size), ``'replicate'`` (repeat the edge), ``'circular'``
    (wrap around; pad <= dim size). As in torch, the last three pad the last 1, 2 or 3 dims of an
    input with one or two more dims (``(C, W)``/``(N, C, W)`` for 1-d padding, and so on).
    Backward sums the gradient of every copy back into the element it came from.

    >>> import shendu
    >>> shendu.pad(shendu.tensor([[1.0, 2.0, 3.0]]), (2, 1), mode="reflect").tolist()
    [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]
    >>> shendu.pad(shendu.tensor([[1, 2]]), (1, 1), value=9).tolist()
    [[9, 1, 2, 9]]
    """
    x = as_tensor_arg(input)
    pads = _ints("pad", "pad", pad)
    if mode not in ("constant", *_NUMPY_MODE):
        raise ArgumentError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    if len(pads) % 2:
        raise ArgumentError(f"pad: the pad tuple needs (before, after) pairs, got odd length {len(pads)}: {pads}")
    npairs = len(pads) // 2
    if npairs > x.ndim:
        raise ShapeError(f"pad: pad {pads} covers {npairs} dims but the input has shape {fmt_shape(x.shape)}")
    # pairs[i] = (before, after) for axis i; pad lists the last axis first
    pairs = [(0, 0)] * (x.ndim - npairs) + [(pads[2 * k], pads[2 * k + 1]) for k in reversed(range(npairs))]
    for axis, (before, after) in enumerate(pairs):
        # torch crops before it pads in constant mode, so there the crops alone must fit
        left = x.shape[axis] + min(before, 0) + min(after, 0) if mode == "constant" else x.shape[axis] + before + after
        if left < 0:
            raise ShapeError(f"pad: pad {pads} crops dim {axis} of size {x.shape[axis]} below zero")
    if mode == "constant":
        widths = tuple((max(b, 0), max(a, 0)) for b, a in pairs)
        cuts = tuple((max(-b, 0), max(-a, 0)) for b, a in pairs)
        return PadConstant.apply(x, widths=widths, cuts=cuts, value=0 if value is None else value)

    if value not in (None, 0):
        raise ArgumentError(f"pad: mode {mode!r} takes no fill value, got value={value!r}")
    if npairs not in (1, 2, 3) or x.ndim not in (npairs + 1, npairs + 2):
        raise ShapeError(f"pad: mode {mode!r} pads the last 1, 2 or 3 dims of a (batched) input; a pad of "
                         f"length {len(pads)} needs a {npairs + 1}-d or {npairs + 2}-d input, got shape "
                         f"{fmt_shape(x.shape)}")
    xp = get_array_module(x.data)
    maps = []
    for axis, (before, after) in enumerate(pairs):
        if before == after == 0:
            continue
        n = x.shape[axis]
        kept = n - max(-before, 0) - max(-after, 0)  # what circular wraps around
        limit = {"reflect": n - 1, "replicate": float("inf") if n else 0, "circular": kept}[mode]
        if max(before, after) > limit:
            raise ShapeError(f"pad: pad ({before}, {after}) is too large for dim {axis} of size {n} (input shape "
                             f"{fmt_shape(x.shape)}); mode {mode!r} allows at most {limit} per side"
                             + ("" if mode == "replicate" else "; use mode='replicate' or 'constant'"))
        idx, copied = _gather_map(xp, n, before, after, mode)
        maps.append((axis, idx, copied))
    return PadGather.apply(x, maps=tuple(maps))
