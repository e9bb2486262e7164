"""Making tensors: from data, filled, ranges, random; and the copy/cast ops ``to_dtype``, ``clone``,
``contiguous``.

Floating results take the default dtype (float32) unless ``dtype`` says otherwise; random ones draw
from shendu's generator (:func:`shendu.manual_seed`) or from the ``generator`` given.
"""

from __future__ import annotations

import numpy as np

from shendu import backend
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError
from shendu.ops._util import as_tensor_arg, shape_tuple

__all__ = [
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "zeros_like", "ones_like",
    "full_like", "empty_like", "arange", "linspace", "eye", "rand", "randn", "randint", "rand_like",
    "randn_like", "randint_like", "randperm", "bernoulli", "multinomial", "normal", "to_dtype", "clone",
    "contiguous",
]


def _dtype(dtype, default=None):
    if dtype is None:
        return np.dtype(default) if default is not None else backend.get_default_dtype()
    try:
        return np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"unknown dtype {dtype!r}; use shendu.float32, float64, int64, int32 or bool") from None


def _make(arr, requires_grad):
    t = Tensor._wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (Python numbers, nested lists, arrays, tensors).

    Python floats become float32, ints int64, bools bool; arrays keep their dtype.

    >>> import shendu
    >>> shendu.tensor([[1, 2], [3, 4]]).shape
    (2, 2)
    >>> shendu.tensor([0.5]).dtype
    dtype('float32')
    """
    t = Tensor(data, dtype=dtype)
    if isinstance(data, (np.ndarray, Tensor)) and t.data is (data.data if isinstance(data, Tensor) else data):
        t.data = t.data.copy()
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data, dtype=None) -> Tensor:
    """Like :func:`tensor` but shares memory with ``data`` when it already is an array of that dtype."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype == np.dtype(dtype)):
        return data
    return Tensor(data, dtype=dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array (its dtype kept).

    >>> import numpy as np, shendu
    >>> shendu.from_numpy(np.arange(3)).tolist()
    [0, 1, 2]
    """
    if not isinstance(array, np.ndarray):
        raise DTypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(array)


def zeros(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of the given size: ``zeros(2, 3)`` or ``zeros((2, 3))``.

    >>> import shendu
    >>> shendu.zeros(2, 3).shape
    (2, 3)
    """
    return _make(np.zeros(shape_tuple("zeros", size), _dtype(dtype)), requires_grad)


def ones(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of the given size.

    >>> import shendu
    >>> shendu.ones(2).tolist()
    [1.0, 1.0]
    """
    return _make(np.ones(shape_tuple("ones", size), _dtype(dtype)), requires_grad)


def empty(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor of the given size (its values are whatever memory held)."""
    return _make(np.empty(shape_tuple("empty", size), _dtype(dtype)), requires_grad)


def full(size, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value`` (dtype inferred from the value like torch).

    >>> import shendu
    >>> shendu.full((2,), 7).tolist()
    [7, 7]
    """
    size = shape_tuple("full", (size,) if not isinstance(size, int) else (size,))
    if dtype is None:
        dtype = np.bool_ if isinstance(fill_value, bool) else (np.int64 if isinstance(fill_value, int) else None)
    return _make(np.full(size, fill_value, _dtype(dtype)), requires_grad)


def _like(x, dtype):
    x = as_tensor_arg(x)
    return x.data.shape, (x.dtype if dtype is None else _dtype(dtype)), get_array_module(x.data)


def zeros_like(input, dtype=None, requires_grad: bool = False) -> Tensor:
    """Zeros with the shape (and dtype, unless given) of ``input``."""
    shape, dt, xp = _like(input, dtype)
    return _make(xp.zeros(shape, dt), requires_grad)


def ones_like(input, dtype=None, requires_grad: bool = False) -> Tensor:
    """Ones with the shape (and dtype, unless given) of ``input``."""
    shape, dt, xp = _like(input, dtype)
    return _make(xp.ones(shape, dt), requires_grad)


def empty_like(input, dtype=None, requires_grad: bool = False) -> Tensor:
    shape, dt, xp = _like(input, dtype)
    return _make(xp.empty(shape, dt), requires_grad)


def full_like(input, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere, with the shape (and dtype, unless given) of ``input``."""
    shape, dt, xp = _like(input, dtype)
    return _make(xp.full(shape, fill_value, dt), requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad: bool = False) -> Tensor:
    """Values from ``start`` (inclusive) to ``end`` (exclusive) by ``step``; ``arange(n)`` is 0..n-1.

    Integer arguments give int64, any float argument the default float dtype.

    >>> import shendu
    >>> shendu.arange(5).tolist()
    [0, 1, 2, 3, 4]
    >>> shendu.arange(0, 1, 0.25).tolist()
    [0.0, 0.25, 0.5, 0.75]
    """
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ArgumentError("arange: step must be nonzero")
    if dtype is None:
        dtype = np.int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) else None
    return _make(np.arange(start, end, step).astype(_dtype(dtype)), requires_grad)


def linspace(start, end, steps: int, dtype=None, requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive.

    >>> import shendu
    >>> shendu.linspace(0, 1, 5).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if steps < 0:
        raise ArgumentError(f"linspace: steps must be non-negative, got {steps}")
    return _make(np.linspace(start, end, steps).astype(_dtype(dtype)), requires_grad)


def eye(n: int, m: int | None = None, dtype=None, requires_grad: bool = False) -> Tensor:
    """The ``n x m`` identity matrix (``m = n`` by default).

    >>> import shendu
    >>> shendu.eye(2).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    return _make(np.eye(n, m, dtype=_dtype(dtype)), requires_grad)


def rand(*size, generator=None, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1).

    >>> import shendu
    >>> _ = shendu.manual_seed(0)
    >>> a = shendu.rand(3); _ = shendu.manual_seed(0)
    >>> shendu.equal(a, shendu.rand(3))
    True
    """
    dt = _dtype(dtype)
    return _make(backend.rng(generator).random(shape_tuple("rand", size), dtype=np.float64).astype(dt, copy=False),
                 requires_grad)


def randn(*size, generator=None, dtype=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples N(0, 1).

    >>> import shendu
    >>> shendu.randn(2, 3).shape
    (2, 3)
    """
    dt = _dtype(dtype)
    r = backend.rng(generator)
    sz = shape_tuple("randn", size)
    arr = r.standard_normal(sz, dtype=np.float32) if dt == np.float32 else r.standard_normal(sz).astype(dt)
    return _make(arr, requires_grad)


def randint(low, high=None, size=(), generator=None, dtype=None) -> Tensor:
    """Integers uniform in ``[low, high)``; ``randint(high, size)`` starts at 0.

    >>> import shendu
    >>> bool((shendu.randint(0, 3, (100,)) < 3).all())
    True
    """
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ArgumentError(f"randint: need low < high, got low={low}, high={high}")
    size = (size,) if isinstance(size, int) else tuple(size)
    return Tensor._wrap(backend.rng(generator).integers(low, high, size).astype(_dtype(dtype, np.int64)))


def rand_like(input, dtype=None, generator=None) -> Tensor:
    shape, dt, _ = _like(input, dtype)
    return rand(*shape, generator=generator, dtype=dt)


def randn_like(input, dtype=None, generator=None) -> Tensor:
    shape, dt, _ = _like(input, dtype)
    return randn(*shape, generator=generator, dtype=dt)


def randint_like(input, low, high=None, dtype=None, generator=None) -> Tensor:
    shape, dt, _ = _like(input, dtype)
    return randint(low, high, shape, generator=generator, dtype=dt)


def randperm(n: int, generator=None, dtype=None) -> Tensor:
    """A random permutation of ``0..n-1``.

    >>> import shendu
    >>> sorted(shendu.randperm(4).tolist())
    [0, 1, 2, 3]
    """
    return Tensor._wrap(backend.rng(generator).permutation(n).astype(_dtype(dtype, np.int64)))


def bernoulli(input, p=None, generator=None) -> Tensor:
    """0/1 samples, 1 with probability ``input`` (elementwise) or ``p``; dtype of ``input``."""
    x = as_tensor_arg(input)
    prob = x.data if p is None else p
    u = backend.rng(generator).random(x.shape)
    return Tensor._wrap((u < prob).astype(x.dtype))


def multinomial(input, num_samples: int, replacement: bool = False, generator=None) -> Tensor:
    """Sample category indices from the rows of ``input`` (non-negative weights), like torch.

    Shapes: ``(C,)`` -> ``(num_samples,)``; ``(N, C)`` -> ``(N, num_samples)``.
    """
    x = as_tensor_arg(input).data.astype(np.float64)
    rows = x.reshape(-1, x.shape[-1])
    if (rows < 0).any() or not np.isfinite(rows).all():
        raise ArgumentError("multinomial: weights must be finite and non-negative")
    total = rows.sum(1, keepdims=True)
    if (total <= 0).any():
        raise ArgumentError("multinomial: every row needs a positive total weight")
    if not replacement and num_samples > rows.shape[1]:
        raise ArgumentError(f"multinomial: cannot take {num_samples} samples without replacement from "
                            f"{rows.shape[1]} categories")
    r = backend.rng(generator)
    if replacement:
        cdf = np.cumsum(rows / total, axis=1)
        u = r.random((rows.shape[0], num_samples))
        out = (u[:, :, None] >= cdf[:, None, :]).sum(-1)
        out = np.minimum(out, rows.shape[1] - 1)
    else:
        # Gumbel-top-k: sampling without replacement in proportion to the weights
        with np.errstate(divide="ignore"):
            keys = np.log(rows) - np.log(-np.log(r.random(rows.shape)))
        out = np.argsort(-keys, axis=1, kind="stable")[:, :num_samples]
    return Tensor._wrap(out.reshape(x.shape[:-1] + (num_samples,)).astype(np.int64))


def normal(mean=0.0, std=1.0, size=None, generator=None, dtype=None) -> Tensor:
    """Samples from N(mean, std^2); ``mean``/``std`` may be tensors (broadcast) or numbers with ``size``."""
    m = as_tensor_arg(mean).data if isinstance(mean, Tensor) else mean
    s = as_tensor_arg(std).data if isinstance(std, Tensor) else std
    shape = np.broadcast_shapes(np.shape(m), np.shape(s)) if size is None else tuple(size)
    dt = _dtype(dtype) if dtype or not isinstance(mean, Tensor) else mean.dtype
    return Tensor._wrap((backend.rng(generator).standard_normal(shape) * s + m).astype(dt))


class ToDtype(Function):
    def forward(ctx, x, dtype):
        ctx.src = x.dtype
        return x.astype(dtype)

    def backward(ctx, gy):
        return gy.astype(ctx.src), None


def to_dtype(input, dtype) -> Tensor:
    """Cast to ``dtype``; between float dtypes the gradient is cast back.

    >>> import shendu
    >>> shendu.to_dtype(shendu.tensor([1.7]), shendu.int64).tolist()
    [1]
    """
    x = as_tensor_arg(input)
    dt = _dtype(dtype)
    if dt == x.dtype:
        return x
    if dt.kind not in "fc":
        return Tensor._wrap(x.data.astype(dt))
    return ToDtype.apply(x, dt)


class Clone(Function):
    def forward(ctx, x):
        return x.copy()

    def backward(ctx, gy):
        return gy


def clone(input) -> Tensor:
    """A copy that owns its memory; gradients flow through unchanged."""
    return Clone.apply(as_tensor_arg(input))


class Contiguous(Function):
    def forward(ctx, x):
        return get_array_module(x).ascontiguousarray(x)

    def backward(ctx, gy):
        return gy


def contiguous(input) -> Tensor:
    """The tensor itself if its memory is C-contiguous, else a contiguous copy."""
    x = as_tensor_arg(input)
    if x.data.flags.c_contiguous:
        return x
    return Contiguous.apply(x)
