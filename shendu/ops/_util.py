"""Argument handling shared by the op families: turning Python values into tensors with torch's
promotion rules, and wording broadcast errors."""

from __future__ import annotations

import numbers

from shendu import backend
from shendu.autograd.tensor import Tensor
from shendu.errors import DTypeError, ShapeError, fmt_shape

__all__ = ["as_tensor_arg", "promote_pair", "broadcast_error", "ensure_float", "shape_tuple"]


def as_tensor_arg(x) -> Tensor:
    """``x`` as a Tensor (arrays and lists are wrapped, never copied needlessly)."""
    return x if isinstance(x, Tensor) else Tensor(x)


def _is_int_kind(t) -> bool:
    return t.dtype.kind in "iub"


def promote_pair(a, b):
    """Prepare the operands of a binary op the way torch promotes them.

    Python scalars stay Python scalars (NumPy then keeps the tensor's dtype, like torch); NumPy
    scalars become Python scalars; an integer tensor meeting a float scalar or a float tensor is
    cast to the float dtype (torch gives float32 for ``int_tensor * 2.5``; NumPy would give float64).
    """
    # fast paths: two tensors of one dtype, or a float tensor and a Python number
    ta, tb = type(a), type(b)
    if ta is Tensor:
        if tb is Tensor:
            if a.data.dtype == b.data.dtype:
                return a, b
        elif (tb is float or tb is int) and a.data.dtype.kind in "fc":
            return a, b
    if hasattr(a, "dtype") and not isinstance(a, Tensor) and getattr(a, "ndim", 1) == 0:
        a = a.item()
    if hasattr(b, "dtype") and not isinstance(b, Tensor) and getattr(b, "ndim", 1) == 0:
        b = b.item()
    a_t, b_t = isinstance(a, Tensor), isinstance(b, Tensor)
    if not a_t and not isinstance(a, numbers.Number):
        a, a_t = as_tensor_arg(a), True
    if not b_t and not isinstance(b, numbers.Number):
        b, b_t = as_tensor_arg(b), True
    if a_t and b_t:
        if a.dtype != b.dtype:
            if _is_int_kind(a) and not _is_int_kind(b):
                a = a.to(b.dtype)
            elif _is_int_kind(b) and not _is_int_kind(a):
                b = b.to(a.dtype)
    elif a_t:
        if isinstance(b, float) and _is_int_kind(a):
            a = a.to(backend.get_default_dtype())
    elif b_t:
        if isinstance(a, float) and _is_int_kind(b):
            b = b.to(backend.get_default_dtype())
    else:
        a = Tensor(a)
    return a, b


def broadcast_error(op: str, a, b) -> ShapeError:
    sa = fmt_shape(getattr(a, "shape", ()))
    sb = fmt_shape(getattr(b, "shape", ()))
    return ShapeError(f"{op}: shapes {sa} and {sb} cannot be broadcast together (trailing dimensions "
                      "must be equal or 1); check the order of dimensions or add unsqueeze()")


def ensure_float(op: str, t: Tensor) -> None:
    if t.dtype.kind not in "fc":
        raise DTypeError(f"{op}: expected a floating-point tensor, got {t.dtype}; call .float() first")


def shape_tuple(op: str, size) -> tuple:
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])`` sizes; reject negatives."""
    if len(size) == 1 and not isinstance(size[0], numbers.Integral):
        size = tuple(size[0])
    try:
        size = tuple(int(s) for s in size)
    except TypeError:
        raise ShapeError(f"{op}: size must be integers, got {size!r}") from None
    if any(s < 0 for s in size):
        raise ShapeError(f"{op}: negative dimension in size {size}")
    return size
