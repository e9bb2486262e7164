"""Linear algebra: matrix products (matmul, mm, bmm, dot, outer), einsum, trace and diag.

``matmul`` follows torch (and NumPy): a 1-D first operand acts as a row vector, a 1-D second operand
as a column vector (the added axis is removed from the result), and the dimensions before the last
two are batch dimensions that broadcast. For ``y = a @ b`` the gradients are
``grad_a = gy @ b^T`` and ``grad_b = a^T @ gy``, summed over the batch dimensions an operand was
broadcast along. When one operand is a plain matrix shared by every batch item (the Linear layer's
``x @ W^T``), the batch is folded into the rows so that forward and backward are single GEMMs.

``einsum`` turns the equation into explicit subscripts (implicit output, ``...``), then calls
``xp.einsum(..., optimize=True)``; the gradient of operand ``i`` is the einsum of the output gradient
with the other operands that produces operand ``i``'s subscripts.
"""

from __future__ import annotations

import collections
import functools
import math

from shendu.autograd.engine import unbroadcast
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg

__all__ = ["matmul", "mm", "bmm", "dot", "outer", "ger", "einsum", "trace", "diag"]


# ------------------------------------------------------------------------------------ shape helpers
def _same_dtype(op: str, *ts: Tensor) -> None:
    dtypes = {t.dtype for t in ts}
    if len(dtypes) > 1:
        got = " and ".join(str(t.dtype) for t in ts)
        raise DTypeError(f"{op}: expected operands of the same dtype, got {got}; convert one with "
                         ".to(other.dtype) or .float()")


def _is_matrix(shape: tuple) -> bool:
    """True when an operand has no batch to speak of (1-D, 2-D, or every batch dimension is 1)."""
    return len(shape) <= 2 or math.prod(shape[:-2]) == 1


def _batch_shape(sa: tuple, sb: tuple) -> tuple | None:
    """The broadcast of the batch dimensions (all but the last two) of two operand shapes, or None."""
    ba, bb = sa[:-2], sb[:-2]
    n = max(len(ba), len(bb))
    ba, bb = (1,) * (n - len(ba)) + ba, (1,) * (n - len(bb)) + bb
    if any(x != y and x != 1 and y != 1 for x, y in zip(ba, bb)):
        return None
    return tuple(y if x == 1 else x for x, y in zip(ba, bb))


def _matmul_shape(op: str, sa: tuple, sb: tuple) -> tuple:
    """The output shape of ``a @ b``, or a ShapeError naming ``op``."""
    if len(sa) == 0 or len(sb) == 0:
        raise ShapeError(f"{op}: both operands need at least 1 dimension, got shapes {fmt_shape(sa)} and "
                         f"{fmt_shape(sb)}; use mul() to multiply by a scalar")
    ka = sa[-1]
    kb = sb[-2] if len(sb) >= 2 else sb[0]
    if ka != kb:
        raise ShapeError(f"{op}: {fmt_shape(sa)} @ {fmt_shape(sb)}: inner dimensions {ka} and {kb} differ; "
                         "the last dimension of the first operand must equal the "
                         f"{'second-to-last' if len(sb) >= 2 else 'length'} of the second (transpose one?)")
    batch = _batch_shape(sa, sb)
    if batch is None:
        raise ShapeError(f"{op}: {fmt_shape(sa)} @ {fmt_shape(sb)}: batch dimensions {fmt_shape(sa[:-2])} and "
                         f"{fmt_shape(sb[:-2])} cannot be broadcast together (they must be equal or 1)")
    return batch + sa[-2:-1] * (len(sa) >= 2) + sb[-1:] * (len(sb) >= 2)


# ------------------------------------------------------------------------------------------- matmul
def _matmul_arrays(a, b):
    """``a @ b`` on arrays; a batch times a shared matrix runs as one GEMM over all rows."""
    xp = get_array_module(a, b)
    if a.ndim > 2 and _is_matrix(b.shape):
        k = a.shape[-1]
        b2 = b.reshape(b.shape[-2:]) if b.ndim > 2 else b
        out = a.reshape(math.prod(a.shape[:-1]), k) @ b2
        return out.reshape(_batch_shape(a.shape, b.shape) + a.shape[-2:-1] + b2.shape[1:])
    return xp.asarray(xp.matmul(a, b))  # 1-D . 1-D gives a NumPy scalar: keep it an array


def _grad_left(gy, b, a_shape):
    """grad of ``a`` in ``gy = a @ b`` (all at least 2-D): ``gy @ b^T`` summed to ``a_shape``."""
    xp = get_array_module(gy, b)
    if _is_matrix(b.shape):  # b shared by every batch item: one GEMM over all rows of gy
        b2 = b.reshape(b.shape[-2:]) if b.ndim > 2 else b
        if gy.ndim == 2:
            return gy @ b2.T
        g = (gy.reshape(math.prod(gy.shape[:-1]), gy.shape[-1]) @ b2.T).reshape(gy.shape[:-1] + b2.shape[:1])
        return unbroadcast(g, a_shape)
    if _is_matrix(a_shape):  # a shared: contract the batch axes together with m, one GEMM
        bb = xp.broadcast_to(b, gy.shape[:-2] + b.shape[-2:])
        axes = list(range(gy.ndim - 2)) + [gy.ndim - 1]
        return xp.tensordot(gy, bb, axes=(axes, axes)).reshape(a_shape)
    return unbroadcast(xp.matmul(gy, xp.swapaxes(b, -1, -2)), a_shape)


def _grad_right(a, gy, b_shape):
    """grad of ``b`` in ``gy = a @ b`` (all at least 2-D): ``a^T @ gy`` summed to ``b_shape``."""
    xp = get_array_module(a, gy)
    if _is_matrix(b_shape):  # the Linear-layer case: fold the batch into the rows, one GEMM
        if a.shape[:-2] != gy.shape[:-2]:
            a = xp.broadcast_to(a, gy.shape[:-2] + a.shape[-2:])
        rows = math.prod(gy.shape[:-1])
        g = a.reshape(rows, a.shape[-1]).T @ gy.reshape(rows, gy.shape[-1])
        return g if g.shape == b_shape else g.reshape(b_shape)
    return unbroadcast(xp.matmul(xp.swapaxes(a, -1, -2), gy), b_shape)


class MatMul(Function):
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _matmul_arrays(a, b)

    def backward(ctx, gy):
        a, b = ctx.saved
        na, nb = ctx.needs_input_grad
        # A 1-D a is a (1, k) row, a 1-D b a (k, 1) column; give gy back the axes they removed.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:
            gy = gy[..., None]
        if a.ndim == 1:
            gy = gy[..., None, :]
        ga = _grad_left(gy, b2, a2.shape) if na else None
        gb = _grad_right(a2, gy, b2.shape) if nb else None
        # Reshape only for 1-D operands: a fresh array (not a view) spares the engine a defensive copy.
        if na and a.ndim == 1:
            ga = ga.reshape(a.shape)
        if nb and b.ndim == 1:
            gb = gb.reshape(b.shape)
        return ga, gb


def matmul(input, other) -> Tensor:
    """Matrix product with torch's rules: ``out = input @ other``.

    Shapes (``k`` must agree; batch dimensions ``*`` broadcast):

    - ``(k,) @ (k,) -> ()`` (dot product);  ``(k,) @ (*, k, m) -> (*, m)``;  ``(*, n, k) @ (k,) -> (*, n)``
    - ``(n, k) @ (k, m) -> (n, m)``;  ``(*a, n, k) @ (*b, k, m) -> (broadcast(*a, *b), n, m)``

    Gradients: ``grad_input = gy @ other^T``, ``grad_other = input^T @ gy``, summed over broadcast
    batch dimensions. Integer tensors multiply exactly (no gradient); both operands need one dtype.

    >>> import shendu
    >>> a = shendu.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> (a @ shendu.tensor([1.0, 1.0])).tolist()
    [3.0, 7.0]
    >>> shendu.matmul(shendu.ones(5, 2, 3), shendu.ones(3, 4)).shape
    (5, 2, 4)
    """
    a, b = as_tensor_arg(input), as_tensor_arg(other)
    _matmul_shape("matmul", a.shape, b.shape)
    _same_dtype("matmul", a, b)
    return MatMul.apply(a, b)


def mm(input, mat2) -> Tensor:
    """Product of two matrices: ``(n, k) @ (k, m) -> (n, m)``; no broadcasting, no vectors.

    >>> import shendu
    >>> shendu.mm(shendu.eye(2), shendu.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    a, b = as_tensor_arg(input), as_tensor_arg(mat2)
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: expected two 2-D matrices, got shapes {fmt_shape(a.shape)} and "
                         f"{fmt_shape(b.shape)}; use matmul() for vectors or batches")
    _matmul_shape("mm", a.shape, b.shape)
    _same_dtype("mm", a, b)
    return MatMul.apply(a, b)


def bmm(input, mat2) -> Tensor:
    """Batched matrix product: ``(B, n, k) @ (B, k, m) -> (B, n, m)``; the batch sizes must be equal.

    >>> import shendu
    >>> shendu.bmm(shendu.ones(4, 2, 3), shendu.ones(4, 3, 5)).shape
    (4, 2, 5)
    """
    a, b = as_tensor_arg(input), as_tensor_arg(mat2)
    if a.ndim != 3 or b.ndim != 3:
        raise ShapeError(f"bmm: expected two 3-D tensors (batch, n, k) and (batch, k, m), got shapes "
                         f"{fmt_shape(a.shape)} and {fmt_shape(b.shape)}; use matmul() to broadcast")
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"bmm: batch sizes {a.shape[0]} and {b.shape[0]} differ (shapes {fmt_shape(a.shape)} "
                         f"and {fmt_shape(b.shape)}); bmm does not broadcast, use matmul()")
    _matmul_shape("bmm", a.shape, b.shape)
    _same_dtype("bmm", a, b)
    return MatMul.apply(a, b)


def dot(input, other) -> Tensor:
    """Inner product of two 1-D tensors of the same length: ``out = sum_i input[i] * other[i]`` (0-d).

    >>> import shendu
    >>> shendu.dot(shendu.tensor([1.0, 2.0]), shendu.tensor([3.0, 4.0])).item()
    11.0
    """
    a, b = as_tensor_arg(input), as_tensor_arg(other)
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"dot: expected two 1-D tensors, got shapes {fmt_shape(a.shape)} and "
                         f"{fmt_shape(b.shape)}; use matmul() for matrices")
    if a.shape != b.shape:
        raise ShapeError(f"dot: the vectors have lengths {a.shape[0]} and {b.shape[0]}; they must be equal")
    _same_dtype("dot", a, b)
    return MatMul.apply(a, b)


class Outer(Function):
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a[:, None] * b[None, :]

    def backward(ctx, gy):
        a, b = ctx.saved
        na, nb = ctx.needs_input_grad
        return (gy @ b if na else None), (a @ gy if nb else None)


def outer(input, vec2) -> Tensor:
    """Outer product of two 1-D tensors: ``out[i, j] = input[i] * vec2[j]``, shape ``(n, m)``.

    Gradients: ``grad_input = gy @ vec2``, ``grad_vec2 = input @ gy``.

    >>> import shendu
    >>> shendu.outer(shendu.tensor([1.0, 2.0]), shendu.tensor([1.0, 10.0, 100.0])).tolist()
    [[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]]
    """
    a, b = as_tensor_arg(input), as_tensor_arg(vec2)
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"outer: expected two 1-D tensors, got shapes {fmt_shape(a.shape)} and "
                         f"{fmt_shape(b.shape)}; flatten them first, or use matmul/einsum")
    _same_dtype("outer", a, b)
    return Outer.apply(a, b)


ger = outer


# ------------------------------------------------------------------------------------------- einsum
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# inputs: explicit subscripts per operand, after dropping broadcast size-1 axes; shapes: those
# operands' shapes; orig_shapes: the operands as given; sizes: letter -> size.
_Plan = collections.namedtuple("_Plan", "inputs output shapes orig_shapes sizes")


@functools.lru_cache(maxsize=512)
def _einsum_plan(equation: str, shapes: tuple) -> _Plan:
    """Parse ``equation`` for operands of ``shapes`` into explicit letter subscripts, or raise."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    in_subs = lhs.split(",")
    if len(in_subs) != len(shapes):
        raise ArgumentError(f"einsum: equation {equation!r} has subscripts for {len(in_subs)} operand(s) but "
                            f"{len(shapes)} operand(s) were given")
    for s in in_subs + [rhs]:
        bad = sorted(set(s.replace("...", "")) - set(_LETTERS))
        if bad or s.count("...") > 1:
            raise ArgumentError(f"einsum: invalid subscripts {s!r} in {equation!r}"
                                + (f" (character(s) {''.join(bad)!r})" if bad else "")
                                + "; use letters a-z, A-Z and at most one '...' per operand")

    # Each '...' becomes fresh letters, right-aligned so that ellipsis dimensions broadcast like NumPy.
    n_ell = []
    for i, (s, shape) in enumerate(zip(in_subs, shapes)):
        named = len(s.replace("...", ""))
        if len(shape) < named or ("..." not in s and len(shape) != named):
            raise ShapeError(f"einsum: operand {i} has shape {fmt_shape(shape)} ({len(shape)} dimension(s)) "
                             f"but its subscripts {s!r} name {named}"
                             + ("" if "..." in s else "; add '...' to cover extra leading dimensions"))
        n_ell.append(len(shape) - named)
    free = [c for c in _LETTERS if c not in eq]
    ell = "".join(free[:max(n_ell, default=0)])
    if len(ell) < max(n_ell, default=0):
        raise ArgumentError(f"einsum: {equation!r} uses too many letters to name the '...' dimensions")
    subs = [s.replace("...", ell[len(ell) - e:]) for s, e in zip(in_subs, n_ell)]
    if arrow:
        out = rhs.replace("...", ell)
    else:  # implicit output: the '...' dimensions, then the letters used once, in alphabetical order
        counts = collections.Counter("".join(subs))
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    used = set("".join(subs))
    for c in out:
        if c not in used:
            raise ArgumentError(f"einsum: output subscript {c!r} in {equation!r} does not appear in any operand")
        if out.count(c) > 1:
            raise ArgumentError(f"einsum: output subscript {c!r} appears more than once in {equation!r}")

    sizes = {}
    for i, (s, shape) in enumerate(zip(subs, shapes)):
        own = {}
        for c, n in zip(s, shape):
            if own.setdefault(c, n) != n:
                raise ShapeError(f"einsum: subscript {c!r} is repeated in operand {i} (shape {fmt_shape(shape)}) "
                                 f"with different sizes {own[c]} and {n}; a repeated subscript takes a diagonal")
            if sizes.get(c, 1) not in (1, n) and n != 1:
                raise ShapeError(f"einsum: subscript {c!r} has size {n} in operand {i} (shape {fmt_shape(shape)}) "
                                 f"but size {sizes[c]} in an earlier operand; sizes must be equal or 1")
            if n != 1:
                sizes[c] = n
            else:
                sizes.setdefault(c, 1)
    # An axis of size 1 that broadcasts against a larger size is a constant along that letter:
    # drop it from the operand, so that backward sums over it by construction.
    keep = [[k for k, (c, n) in enumerate(zip(s, shape)) if not (n == 1 and sizes[c] != 1)]
            for s, shape in zip(subs, shapes)]
    return _Plan(tuple("".join(s[k] for k in ks) for s, ks in zip(subs, keep)), out,
                 tuple(tuple(shape[k] for k in ks) for shape, ks in zip(shapes, keep)), shapes, sizes)


def _diagonal_view(xp, z, sub: str, unique: str):
    """A writable view of ``z`` indexed by the distinct letters of ``sub`` (a generalized diagonal)."""
    strides = tuple(sum(st for c2, st in zip(sub, z.strides) if c2 == c) for c in unique)
    shape = tuple(next(n for c2, n in zip(sub, z.shape) if c2 == c) for c in unique)
    return xp.lib.stride_tricks.as_strided(z, shape, strides)


def _einsum_grad(xp, gy, ops, i: int, plan: _Plan):
    """Gradient of operand ``i``: contract ``gy`` with the other operands back to its subscripts."""
    sub = plan.inputs[i]
    others = [j for j in range(len(ops)) if j != i]
    reachable = set(plan.output).union(*(plan.inputs[j] for j in others))
    unique = "".join(dict.fromkeys(sub))
    kept = "".join(c for c in unique if c in reachable)
    eq = ",".join([plan.output] + [plan.inputs[j] for j in others]) + "->" + kept
    g = xp.asarray(xp.einsum(eq, gy, *(ops[j] for j in others), optimize=True))
    if kept != unique:
        # Letters only in this operand were summed in forward: each element gets the same gradient.
        g = xp.broadcast_to(g.reshape(tuple(plan.sizes[c] if c in kept else 1 for c in unique)),
                            tuple(plan.sizes[c] for c in unique))
    if len(unique) == len(sub):
        return g
    # Repeated letters: forward read only the diagonal, so the gradient lives there, zero elsewhere.
    z = xp.zeros(ops[i].shape, gy.dtype)
    _diagonal_view(xp, z, sub, unique)[...] = g
    return z


class Einsum(Function):
    def forward(ctx, *ops, plan):
        xp = get_array_module(*ops)
        ops = tuple(x.reshape(s) for x, s in zip(ops, plan.shapes))
        ctx.save_for_backward(*ops)
        ctx.plan = plan
        return xp.asarray(xp.einsum(",".join(plan.inputs) + "->" + plan.output, *ops, optimize=True))

    def backward(ctx, gy):
        ops, plan = ctx.saved, ctx.plan
        xp = get_array_module(gy)
        return tuple(_einsum_grad(xp, gy, ops, i, plan).reshape(plan.orig_shapes[i]) if need else None
                     for i, need in enumerate(ctx.needs_input_grad))


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation: multiply the operands along shared letters and sum the letters not kept.

    ``out[out_letters] = sum over the other letters of prod_i operand_i[letters_i]``. Examples:
    ``'ij,jk->ik'`` matrix product, ``'bij,bjk->bik'`` batched, ``'ii->i'`` diagonal, ``'ii'`` trace,
    ``'i,j->ij'`` outer product, ``'...ij,...jk->...ik'`` broadcast batch. Without ``->`` the output
    is the ``...`` dimensions followed by the letters used once, alphabetically (NumPy and torch's
    implicit mode). Sizes must agree per letter (1 broadcasts). The operands may also be passed as
    one list. Gradient of operand ``i``: the einsum of the output gradient with the other operands,
    producing operand ``i``'s subscripts (on the diagonal for repeated letters).

    >>> import shendu
    >>> a, b = shendu.ones(2, 3), shendu.ones(3, 4)
    >>> shendu.einsum('ij,jk->ik', a, b).shape
    (2, 4)
    >>> shendu.einsum('ii', shendu.tensor([[1.0, 2.0], [3.0, 4.0]])).item()
    5.0
    """
    if not isinstance(equation, str):
        raise ArgumentError(f"einsum: the first argument must be the equation string, got "
                            f"{type(equation).__name__}; call einsum('ij,jk->ik', a, b)")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ArgumentError(f"einsum: {equation!r} needs at least one operand")
    ts = [as_tensor_arg(o) for o in operands]
    plan = _einsum_plan(equation, tuple(t.shape for t in ts))
    _same_dtype("einsum", *ts)
    return Einsum.apply(*ts, plan=plan)


# ----------------------------------------------------------------------------------- trace and diag
class Trace(Function):
    def forward(ctx, x):
        ctx.shape = x.shape
        return get_array_module(x).asarray(x.trace())

    def backward(ctx, gy):
        xp = get_array_module(gy)
        z = xp.zeros(ctx.shape, gy.dtype)
        _offset_diagonal(xp, z, 0)[...] = gy
        return z


def trace(input) -> Tensor:
    """Sum of the main diagonal of a 2-D tensor: ``out = sum_i input[i, i]`` (non-square allowed).

    The gradient is ``gy`` on the main diagonal and zero elsewhere.

    >>> import shendu
    >>> shendu.trace(shendu.tensor([[1.0, 2.0], [3.0, 4.0]])).item()
    5.0
    """
    t = as_tensor_arg(input)
    if t.ndim != 2:
        raise ShapeError(f"trace: expected a 2-D matrix, got shape {fmt_shape(t.shape)}; "
                         "use einsum('...ii->...') for batches")
    return Trace.apply(t)


def _offset_diagonal(xp, z, k: int):
    """A writable view of diagonal ``k`` of the 2-D array ``z`` (above the main one for k > 0)."""
    sub = z[:, k:] if k >= 0 else z[-k:, :]
    n = max(min(sub.shape), 0)
    return xp.lib.stride_tricks.as_strided(sub, (n,), (sum(sub.strides),))


class Diag(Function):
    def forward(ctx, x, k):
        xp = get_array_module(x)
        ctx.shape, ctx.k = x.shape, k
        if x.ndim == 1:
            n = x.shape[0] + abs(k)
            z = xp.zeros((n, n), x.dtype)
            _offset_diagonal(xp, z, k)[...] = x
            return z
        return _offset_diagonal(xp, x, k).copy()

    def backward(ctx, gy):
        xp = get_array_module(gy)
        if len(ctx.shape) == 2:
            z = xp.zeros(ctx.shape, gy.dtype)
            _offset_diagonal(xp, z, ctx.k)[...] = gy
            return z, None
        return _offset_diagonal(xp, gy, ctx.k).copy(), None


def diag(input, diagonal: int = 0) -> Tensor:
    """1-D input: the square matrix with ``input`` on diagonal ``diagonal``; 2-D input: that diagonal.

    ``diagonal > 0`` is above the main diagonal, ``< 0`` below. Shapes: ``(n,) -> (n+|d|, n+|d|)``;
    ``(r, c) -> (len,)``. The gradient is the reverse (read or write the same diagonal).

    >>> import shendu
    >>> shendu.diag(shendu.tensor([1.0, 2.0])).tolist()
    [[1.0, 0.0], [0.0, 2.0]]
    >>> shendu.diag(shendu.tensor([[1.0, 2.0], [3.0, 4.0]]), 1).tolist()
    [2.0]
    """
    t = as_tensor_arg(input)
    if t.ndim not in (1, 2):
        raise ShapeError(f"diag: expected a 1-D or 2-D tensor, got shape {fmt_shape(t.shape)}; "
                         "use diagonal() for batches")
    return Diag.apply(t, int(diagonal))
