"""The errors shendu raises, and helpers that word their messages the same way everywhere.

Every message names the op or layer, what it got, what it expected, and where possible a hint:
``conv2d: input has 3 channels but weight expects 1 (weight shape (32, 1, 3, 3)); is the image HWC?``
Each class also derives from the builtin a Python user would catch (``ValueError``, ``TypeError``, ...).
"""

from __future__ import annotations

__all__ = [
    "ShenduError",
    "ShapeError",
    "DTypeError",
    "ArgumentError",
    "IndexOutOfRangeError",
    "AutogradError",
    "GradcheckError",
    "StateDictError",
    "DataError",
    "fmt_shape",
]


class ShenduError(Exception):
    """Base class of every error shendu raises on purpose."""


class ShapeError(ShenduError, ValueError):
    """Shapes that do not fit together (broadcasting, matmul, channels, reshape)."""


class DTypeError(ShenduError, TypeError):
    """A dtype the op cannot take (integer input to a differentiable op, float indices, ...)."""


class ArgumentError(ShenduError, ValueError):
    """A bad argument value: an unknown mode, a negative size, a dim out of range, ..."""


class IndexOutOfRangeError(ShenduError, IndexError):
    """An index outside the tensor's bounds."""


class AutogradError(ShenduError, RuntimeError):
    """Misuse of autograd: backward twice through freed buffers, in-place on a leaf, ..."""


class GradcheckError(ShenduError, AssertionError):
    """The analytic gradient disagrees with the numerical one."""


class StateDictError(ShenduError, KeyError):
    """Missing, unexpected or mis-shaped keys when loading a state dict."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(ShenduError, OSError):
    """A dataset that cannot be found or read."""


def fmt_shape(shape) -> str:
    """``(2, 3)`` for a shape, ``()`` for a scalar; the one way shapes appear in messages."""
    shape = tuple(int(s) for s in shape)
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def normalize_dim(op: str, dim: int, ndim: int) -> int:
    """Turn a possibly negative ``dim`` into ``0..ndim-1`` or raise a message naming ``op``."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise ArgumentError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimension(s) "
                            f"(expected -{n} <= dim < {n})")
    return dim % n


def normalize_dims(op: str, dims, ndim: int) -> tuple:
    """Like :func:`normalize_dim` for a sequence, rejecting repeated dims."""
    out = tuple(normalize_dim(op, int(d), ndim) for d in dims)
    if len(set(out)) != len(out):
        raise ArgumentError(f"{op}: dims {tuple(dims)} repeat a dimension")
    return out
