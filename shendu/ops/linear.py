"""Linear maps: ``linear`` (the fully connected layer), ``bilinear`` and ``embedding``.

``linear`` is one fused Function: every input dimension but the last is folded into the batch, so
forward and backward are each one BLAS matrix product per input, whatever the number of dims.
``embedding`` is a linear map applied to one-hot vectors, computed as a row lookup; its backward
scatter-adds the output gradient into the looked-up rows.
"""

from __future__ import annotations

from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import DTypeError, IndexOutOfRangeError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg

__all__ = ["linear", "bilinear", "embedding"]


def _same_float_dtype(op: str, *tensors) -> None:
    named = [(n, t) for n, t in tensors if t is not None]
    for n, t in named:
        if t.dtype.kind != "f":
            raise DTypeError(f"{op}: {n} must be a floating-point tensor, got {t.dtype}; call .float() first")
    dtypes = {t.dtype for _, t in named}
    if len(dtypes) > 1:
        desc = ", ".join(f"{n} {t.dtype}" for n, t in named)
        raise DTypeError(f"{op}: dtypes differ ({desc}); cast the input (x.float()) or the module "
                         "(model.double()) so they match")


def check_linear_args(op: str, x: Tensor, w: Tensor, b: Tensor | None) -> None:
    """The argument checks of :func:`linear`, shared with ``dropconnect_linear``."""
    _same_float_dtype(op, ("input", x), ("weight", w), ("bias", b))
    if w.ndim != 2:
        raise ShapeError(f"{op}: weight must be 2-D (out_features, in_features), got shape {fmt_shape(w.shape)}")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ShapeError(f"{op}: input has {x.shape[-1] if x.ndim else 0} features in its last dimension "
                         f"(shape {fmt_shape(x.shape)}) but weight expects {w.shape[1]} (weight shape "
                         f"{fmt_shape(w.shape)}); flatten the input first (x.flatten(1)) or fix in_features")
    if b is not None and b.shape != (w.shape[0],):
        raise ShapeError(f"{op}: bias has shape {fmt_shape(b.shape)} but weight has {w.shape[0]} output "
                         f"features; expected bias shape ({w.shape[0]},)")


# ------------------------------------------------------------------------------------------- linear
class Linear(Function):
    def forward(ctx, x, w, b):
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
        y = x2 @ w.T
        if b is not None:
            y += b
        ctx.save_for_backward(x2, w)
        ctx.x_shape = x.shape
        return y.reshape(x.shape[:-1] + (w.shape[0],)) if x.ndim != 2 else y

    def backward(ctx, gy):
        x2, w = ctx.saved
        nx, nw, nb = ctx.needs_input_grad
        gy2 = gy.reshape(-1, gy.shape[-1]) if gy.ndim != 2 else gy
        gx = (gy2 @ w).reshape(ctx.x_shape) if nx else None
        gw = gy2.T @ x2 if nw else None
        gb = gy2.sum(0) if nb else None
        return gx, gw, gb


def linear(input, weight, bias=None) -> Tensor:
    """Fully connected layer: ``y = x W^T + b``.

    Shapes: ``input (*, in_features)``, ``weight (out_features, in_features)``, ``bias (out_features,)``
    or None; output ``(*, out_features)``. Backward: ``gx = gy W``, ``gW = gy^T x``, ``gb = sum gy``
    over every leading dimension (each a single matrix product).

    >>> import shendu
    >>> x = shendu.tensor([[1.0, 2.0]])
    >>> w = shendu.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    >>> shendu.linear(x, w, shendu.tensor([0.5, 0.5, 0.5])).tolist()
    [[1.5, 3.5, -1.5]]
    """
    x, w = as_tensor_arg(input), as_tensor_arg(weight)
    b = None if bias is None else as_tensor_arg(bias)
    xd, wd = x.data, w.data
    # Hot path (every Linear layer): one cheap test for the common valid case; full checks otherwise.
    if not (xd.dtype == wd.dtype and wd.dtype.kind == "f" and wd.ndim == 2 and xd.ndim
            and xd.shape[-1] == wd.shape[1]
            and (b is None or (b.data.dtype == wd.dtype and b.data.shape == (wd.shape[0],)))):
        check_linear_args("linear", x, w, b)
    return Linear.apply(x, w, b)


# ----------------------------------------------------------------------------------------- bilinear
class Bilinear(Function):
    def forward(ctx, x1, x2, w, b):
        xp = get_array_module(x1)
        lead = x1.shape[:-1]
        a = x1.reshape(-1, x1.shape[-1])
        c = x2.reshape(-1, x2.shape[-1])
        y = xp.einsum("ni,kij,nj->nk", a, w, c, optimize=True)
        if b is not None:
            y += b
        ctx.save_for_backward(a, c, w)
        ctx.shapes = (x1.shape, x2.shape)
        return y.reshape(lead + (w.shape[0],))

    def backward(ctx, gy):
        a, c, w = ctx.saved
        xp = get_array_module(gy)
        n1, n2, nw, nb = ctx.needs_input_grad
        g = gy.reshape(-1, gy.shape[-1])
        g1 = xp.einsum("nk,kij,nj->ni", g, w, c, optimize=True).reshape(ctx.shapes[0]) if n1 else None
        g2 = xp.einsum("nk,kij,ni->nj", g, w, a, optimize=True).reshape(ctx.shapes[1]) if n2 else None
        gw = xp.einsum("nk,ni,nj->kij", g, a, c, optimize=True) if nw else None
        gb = g.sum(0) if nb else None
        return g1, g2, gw, gb


def bilinear(input1, input2, weight, bias=None) -> Tensor:
    """Bilinear form per output feature: ``y_k = x1^T A_k x2 + b_k``.

    Shapes: ``input1 (*, in1)``, ``input2 (*, in2)`` with the same leading dims, ``weight (out, in1, in2)``,
    ``bias (out,)`` or None; output ``(*, out)``.

    >>> import shendu
    >>> w = shendu.ones(1, 2, 2)
    >>> shendu.bilinear(shendu.tensor([[1.0, 2.0]]), shendu.tensor([[3.0, 4.0]]), w).tolist()
    [[21.0]]
    """
    x1, x2, w = as_tensor_arg(input1), as_tensor_arg(input2), as_tensor_arg(weight)
    b = None if bias is None else as_tensor_arg(bias)
    _same_float_dtype("bilinear", ("input1", x1), ("input2", x2), ("weight", w), ("bias", b))
    if w.ndim != 3:
        raise ShapeError(f"bilinear: weight must be 3-D (out, in1, in2), got shape {fmt_shape(w.shape)}")
    if x1.ndim == 0 or x2.ndim == 0 or x1.shape[:-1] != x2.shape[:-1]:
        raise ShapeError(f"bilinear: input1 {fmt_shape(x1.shape)} and input2 {fmt_shape(x2.shape)} must have "
                         "the same leading (batch) dimensions")
    if x1.shape[-1] != w.shape[1] or x2.shape[-1] != w.shape[2]:
        raise ShapeError(f"bilinear: inputs have {x1.shape[-1]} and {x2.shape[-1]} features but weight shape "
                         f"{fmt_shape(w.shape)} expects {w.shape[1]} and {w.shape[2]}")
    if b is not None and b.shape != (w.shape[0],):
        raise ShapeError(f"bilinear: bias has shape {fmt_shape(b.shape)}, expected ({w.shape[0]},)")
    return Bilinear.apply(x1, x2, w, b)


# ---------------------------------------------------------------------------------------- embedding
class Embedding(Function):
    def forward(ctx, w, idx, padding_idx):
        ctx.idx = idx
        ctx.num = w.shape[0]
        ctx.padding_idx = padding_idx
        return w[idx]

    def backward(ctx, gy):
        xp = get_array_module(gy)
        idx = ctx.idx.reshape(-1)
        g = gy.reshape(idx.shape[0], -1)
        gw = xp.zeros((ctx.num, g.shape[1]), dtype=gy.dtype)
        xp.add.at(gw, idx, g)  # repeated indices accumulate
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return gw, None, None


def embedding(input, weight, padding_idx: int | None = None) -> Tensor:
    """Look up rows of ``weight``: ``out[..., :] = weight[input[...], :]`` (a linear map of one-hot vectors).

    Shapes: ``input`` integer ``(*)``, ``weight (num_embeddings, embedding_dim)``; output ``(*, embedding_dim)``.
    Backward adds each output gradient into its row (repeated indices accumulate); the row
    ``padding_idx`` gets no gradient.

    >>> import shendu
    >>> w = shendu.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]])
    >>> shendu.embedding(shendu.tensor([[2, 1]]), w).tolist()
    [[[3.0, 4.0], [1.0, 2.0]]]
    """
    idx, w = as_tensor_arg(input), as_tensor_arg(weight)
    if idx.dtype.kind not in "iu":
        raise DTypeError(f"embedding: indices must be an integer tensor, got {idx.dtype}; "
                         "call .long() on the input")
    if w.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                         f"{fmt_shape(w.shape)}")
    n = w.shape[0]
    if idx.data.size and (int(idx.data.min()) < 0 or int(idx.data.max()) >= n):
        bad = int(idx.data.min()) if int(idx.data.min()) < 0 else int(idx.data.max())
        raise IndexOutOfRangeError(f"embedding: index {bad} is out of range for {n} embeddings "
                                   f"(valid 0..{n - 1}); check num_embeddings or the vocabulary")
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise IndexOutOfRangeError(f"embedding: padding_idx {padding_idx} must be within num_embeddings {n}")
        padding_idx = padding_idx % n
    return Embedding.apply(w, idx, padding_idx)
