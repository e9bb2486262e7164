"""``Tensor``: an array, the gradient that flows back into it, and the op that made it.

A Tensor wraps an array (``.data``; NumPy now, CuPy later through :mod:`shendu.backend`). Every op
on it goes through a :class:`~shendu.autograd.function.Function`, which records the graph when the
tensor requires grad. The methods here only delegate to :mod:`shendu.functional`, where each op is
documented; the import is resolved on first use so that ``autograd`` never imports ``ops`` at load.
"""

from __future__ import annotations

import weakref

import numpy as np

from shendu import backend
from shendu.autograd import engine
from shendu.errors import AutogradError, DTypeError, ShapeError, fmt_shape

__all__ = ["Tensor"]


class _LazyFunctional:
    """Stands for ``shendu.functional`` until first use, then replaces itself with the module."""

    def __getattr__(self, name):
        import shendu.functional as functional

        globals()["F"] = functional
        return getattr(functional, name)


F = _LazyFunctional()


def _is_float(dtype) -> bool:
    return dtype.kind in "fc"


def _as_array(data, dtype=None):
    """Convert Python data or arrays to an array with torch's dtype rules (floats -> default dtype)."""
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, np.ndarray) or type(data).__module__.startswith("cupy"):
        arr = data
    else:
        arr = np.asarray(data)
        if arr.dtype == np.float64 and dtype is None and not isinstance(data, np.generic):
            arr = arr.astype(backend.get_default_dtype())
        elif arr.dtype.kind == "i" and arr.dtype != np.int64:
            arr = arr.astype(np.int64)
        elif arr.dtype == object:
            raise DTypeError(f"tensor: cannot make a tensor from {type(data).__name__} data {data!r:.80}; "
                             "expected numbers, nested lists of numbers, or an array")
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype), copy=False)
    return arr


class Tensor:
    """A multi-dimensional array with automatic differentiation.

    ``Tensor(data, requires_grad=False)`` copies nothing it does not have to: NumPy arrays are
    wrapped as they are; Python numbers and lists become float32 (floats), int64 (ints) or bool.

    >>> import shendu
    >>> x = shendu.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([2., 4., 6.])
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_out_idx", "_hooks", "__weakref__")
    __array_priority__ = 1000  # make ndarray (op) Tensor defer to Tensor's reflected operators

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self._ctx = None
        self._out_idx = 0
        self._hooks = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----------------------------------------------------------------------------------- internals
    @staticmethod
    def _wrap(arr) -> "Tensor":
        t = object.__new__(Tensor)
        t.data = arr
        t.grad = None
        t.requires_grad = False
        t._ctx = None
        t._out_idx = 0
        t._hooks = None
        return t

    @staticmethod
    def _wrap_output(arr, ctx, idx) -> "Tensor":
        t = object.__new__(Tensor)
        t.data = arr
        t.grad = None
        t._hooks = None
        if arr.dtype.kind in "fc":
            t.requires_grad = True
            t._ctx = ctx
            t._out_idx = idx
        else:  # indices, masks: never differentiable
            t.requires_grad = False
            t._ctx = None
            t._out_idx = 0
        return t

    def _edge(self):
        return (self._ctx, self._out_idx) if self._ctx is not None else (self, -1)

    # ---------------------------------------------------------------------------------- attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        """The op node that produced this tensor (None for leaves)."""
        return self._ctx

    @property
    def device(self) -> str:
        return "cpu" if isinstance(self.data, np.ndarray) else "cuda"

    @property
    def is_floating_point_dtype(self) -> bool:
        return _is_float(self.data.dtype)

    def is_floating_point(self) -> bool:
        return _is_float(self.data.dtype)

    def size(self, dim: int | None = None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def element_size(self) -> int:
        return self.data.itemsize

    @property
    def T(self) -> "Tensor":
        return F.permute(self, tuple(range(self.ndim - 1, -1, -1)))

    @property
    def mT(self) -> "Tensor":
        return F.transpose(self, -2, -1)

    def item(self):
        if self.data.size != 1:
            raise ShapeError(f"item: only a tensor with one element can be converted to a Python "
                             f"number, got shape {fmt_shape(self.shape)}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.data.tolist()

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied), like ``torch.Tensor.numpy``."""
        if self.requires_grad:
            raise AutogradError("numpy: can't call numpy() on a tensor that requires grad; "
                                "use tensor.detach().numpy()")
        return self.data

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ShapeError(f"bool: the truth value of a tensor with {self.data.size} elements is "
                             "ambiguous; use .any() or .all()")
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub":
            raise DTypeError(f"__index__: only integer tensors can be used as an index, got {self.dtype}")
        return int(self.item())

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        body = np.array2string(np.asarray(self.data), separator=", ", prefix="tensor(", precision=4,
                               threshold=1000, edgeitems=3)
        extra = []
        d = self.data.dtype
        if d != backend.get_default_dtype() and d not in (np.int64, np.bool_):
            extra.append(f"dtype={d}")
        if self._ctx is not None:
            extra.append(f"grad_fn=<{self._ctx.name}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    # ------------------------------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not _is_float(self.data.dtype):
            raise DTypeError(f"requires_grad_: only floating-point tensors can require gradients, "
                             f"got dtype {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise AutogradError("requires_grad_: can only change requires_grad of leaf tensors; "
                                "use detach() for a non-leaf")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        """A new leaf sharing the same array, cut off from the graph."""
        return Tensor._wrap(self.data)

    def detach_(self) -> "Tensor":
        self._ctx = None
        self.requires_grad = False
        return self

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``gradient`` is the cotangent (required unless the tensor has one element).
        """
        if not self.requires_grad:
            raise AutogradError("backward: this tensor does not require grad and has no grad_fn; "
                                "did you forget requires_grad=True on an input, or run under no_grad()?")
        if gradient is None:
            if self.data.size != 1:
                raise AutogradError(f"backward: grad can be implicitly created only for a tensor with one "
                                    f"element, got shape {fmt_shape(self.shape)}; pass gradient=")
            g = np.ones_like(self.data)
        else:
            g = np.asarray(gradient.data if isinstance(gradient, Tensor) else gradient, dtype=self.dtype)
            if g.shape != self.shape:
                raise ShapeError(f"backward: gradient has shape {fmt_shape(g.shape)} but the tensor "
                                 f"has shape {fmt_shape(self.shape)}")
        engine.run_backward([self], [g], retain_graph=retain_graph)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when the gradient of this tensor is computed; it may return a new grad.

        Returns a handle whose ``remove()`` unregisters the hook.
        """
        if not self.requires_grad:
            raise AutogradError("register_hook: cannot register a hook on a tensor that doesn't require grad")
        if self._ctx is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if self._ctx.hooks is None:
                self._ctx.hooks = {}
            hooks = self._ctx.hooks.setdefault(self._out_idx, [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward (leaves always keep theirs)."""
        if not self.requires_grad:
            raise AutogradError("retain_grad: the tensor does not require grad")
        if self._ctx is None:
            return
        if self._ctx.hooks is None:
            self._ctx.hooks = {}
        self._ctx.hooks.setdefault(self._out_idx, []).append(engine._Retain(weakref.ref(self)))

    # -------------------------------------------------------------------------------- in-place ops
    def _inplace(self, name, fn, *args, **kwargs) -> "Tensor":
        """Apply ``fn`` in place. Under autograd the tensor is rebound to the result (new node)."""
        others_grad = any(isinstance(a, Tensor) and a.requires_grad for a in args)
        if engine.grad_mode.enabled and (self.requires_grad or others_grad):
            if self.requires_grad and self._ctx is None:
                raise AutogradError(f"{name}: a leaf tensor that requires grad is being used in an in-place "
                                    "operation; use an out-of-place op, or modify it under shendu.no_grad()")
            out = fn(self, *args, **kwargs)
            if out.shape != self.shape:
                raise ShapeError(f"{name}: the result has shape {fmt_shape(out.shape)} but the tensor being "
                                 f"modified in place has shape {fmt_shape(self.shape)}")
            self.data, self._ctx, self._out_idx, self.requires_grad = out.data, out._ctx, out._out_idx, True
            return self
        with engine.no_grad():
            out = fn(Tensor._wrap(self.data), *args, **kwargs).data
        if out.shape != self.shape:
            raise ShapeError(f"{name}: the result has shape {fmt_shape(out.shape)} but the tensor being "
                             f"modified in place has shape {fmt_shape(self.shape)}")
        if not np.can_cast(out.dtype, self.data.dtype, casting="same_kind"):
            raise DTypeError(f"{name}: result type {out.dtype} can't be cast to the dtype {self.dtype} of "
                             "the tensor modified in place")
        np.copyto(self.data, out, casting="same_kind")
        return self

    def __iadd__(self, other):
        return self._inplace("add_", F.add, other)

    def __isub__(self, other):
        return self._inplace("sub_", F.sub, other)

    def __imul__(self, other):
        return self._inplace("mul_", F.mul, other)

    def __itruediv__(self, other):
        return self._inplace("div_", F.div, other)

    def __ipow__(self, other):
        return self._inplace("pow_", F.pow, other)

    def add_(self, other, alpha=1):
        return self._inplace("add_", F.add, other, alpha=alpha)

    def sub_(self, other, alpha=1):
        return self._inplace("sub_", F.sub, other, alpha=alpha)

    def mul_(self, other):
        return self._inplace("mul_", F.mul, other)

    def div_(self, other):
        return self._inplace("div_", F.div, other)

    def pow_(self, other):
        return self._inplace("pow_", F.pow, other)

    def clamp_(self, min=None, max=None):
        return self._inplace("clamp_", F.clamp, min, max)

    def masked_fill_(self, mask, value):
        return self._inplace("masked_fill_", F.masked_fill, mask, value)

    def index_put_(self, indices, values, accumulate=False):
        return self._inplace("index_put_", F.index_put, indices, values, accumulate=accumulate)

    def scatter_(self, dim, index, src=None, *, value=None):
        return self._inplace("scatter_", F.scatter, dim, index, src, value=value)

    def scatter_add_(self, dim, index, src):
        return self._inplace("scatter_add_", F.scatter_add, dim, index, src)

    def fill_(self, value):
        return self._inplace("fill_", lambda t, v: F.full_like(t, v) if not isinstance(v, Tensor)
                             else F.expand(v.to(t.dtype), t.shape), value)

    def zero_(self):
        return self.fill_(0)

    def copy_(self, src):
        return self._inplace("copy_", lambda t, s: F.expand(F.to_dtype(s if isinstance(s, Tensor)
                                                                        else Tensor(s), t.dtype), t.shape), src)

    def __setitem__(self, index, value):
        tracking = engine.grad_mode.enabled and (self.requires_grad or (isinstance(value, Tensor)
                                                                        and value.requires_grad))
        if tracking:
            if self.requires_grad and self._ctx is None:
                raise AutogradError("__setitem__: a leaf tensor that requires grad is being modified in place; "
                                    "write into it under shendu.no_grad() or build a new tensor")
            out = F.index_put(self, index, value)
            self.data, self._ctx, self._out_idx, self.requires_grad = out.data, out._ctx, out._out_idx, True
            return
        F.index_put_(self, index, value)

    # ------------------------------------------------------------------------------------ operators
    def __add__(self, other):
        return F.add(self, other)

    def __radd__(self, other):
        return F.add(other, self)

    def __sub__(self, other):
        return F.sub(self, other)

    def __rsub__(self, other):
        return F.sub(other, self)

    def __mul__(self, other):
        return F.mul(self, other)

    def __rmul__(self, other):
        return F.mul(other, self)

    def __truediv__(self, other):
        return F.div(self, other)

    def __rtruediv__(self, other):
        return F.div(other, self)

    def __floordiv__(self, other):
        return F.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return F.floor_divide(other, self)

    def __mod__(self, other):
        return F.remainder(self, other)

    def __pow__(self, other):
        return F.pow(self, other)

    def __rpow__(self, other):
        return F.pow(other, self)

    def __matmul__(self, other):
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        return F.matmul(other, self)

    def __neg__(self):
        return F.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return F.abs(self)

    def __eq__(self, other):  # noqa: D105 - elementwise, like torch
        return F.eq(self, other)

    def __ne__(self, other):
        return F.ne(self, other)

    def __lt__(self, other):
        return F.lt(self, other)

    def __le__(self, other):
        return F.le(self, other)

    def __gt__(self, other):
        return F.gt(self, other)

    def __ge__(self, other):
        return F.ge(self, other)

    def __and__(self, other):
        return F.logical_and(self, other) if self.dtype == np.bool_ else F.bitwise_and(self, other)

    def __or__(self, other):
        return F.logical_or(self, other) if self.dtype == np.bool_ else F.bitwise_or(self, other)

    def __xor__(self, other):
        return F.logical_xor(self, other) if self.dtype == np.bool_ else F.bitwise_xor(self, other)

    def __invert__(self):
        return F.logical_not(self) if self.dtype == np.bool_ else F.bitwise_not(self)

    __rand__ = __and__
    __ror__ = __or__
    __rxor__ = __xor__

    def __getitem__(self, index):
        return F.getitem(self, index)

    # ---------------------------------------------------------------------------------- conversion
    def to(self, dtype=None, *args, **kwargs) -> "Tensor":
        """``to(dtype)`` casts; a device string of ``"cpu"`` is accepted and ignored."""
        dtype = kwargs.pop("dtype", dtype)
        if isinstance(dtype, str) and dtype in ("cpu",):
            return self
        if isinstance(dtype, Tensor):
            dtype = dtype.dtype
        return F.to_dtype(self, dtype) if dtype is not None else self

    def type(self, dtype=None):
        return str(self.dtype) if dtype is None else F.to_dtype(self, dtype)

    def float(self):
        return F.to_dtype(self, np.float32)

    def double(self):
        return F.to_dtype(self, np.float64)

    def long(self):
        return F.to_dtype(self, np.int64)

    def int(self):
        return F.to_dtype(self, np.int32)

    def bool(self):
        return F.to_dtype(self, np.bool_)

    def cpu(self):
        return self

    def clone(self):
        return F.clone(self)

    def contiguous(self):
        return F.contiguous(self)

    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            if isinstance(shape[0], (np.dtype, type)):
                raise DTypeError("view(dtype) is not supported; use .to(dtype)")
            shape = tuple(shape[0])
        return F.reshape(self, shape)

    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        return F.reshape(self, shape)

    def view_as(self, other):
        return F.reshape(self, other.shape)

    reshape_as = view_as

    def permute(self, *dims):
        if len(dims) == 1 and not isinstance(dims[0], (int, np.integer)):
            dims = tuple(dims[0])
        return F.permute(self, dims)

    def expand(self, *sizes):
        if len(sizes) == 1 and not isinstance(sizes[0], (int, np.integer)):
            sizes = tuple(sizes[0])
        return F.expand(self, sizes)

    def expand_as(self, other):
        return F.expand(self, other.shape)

    def repeat(self, *sizes):
        if len(sizes) == 1 and not isinstance(sizes[0], (int, np.integer)):
            sizes = tuple(sizes[0])
        return F.repeat(self, sizes)

    def tile(self, *dims):
        if len(dims) == 1 and not isinstance(dims[0], (int, np.integer)):
            dims = tuple(dims[0])
        return F.tile(self, dims)

    def t(self):
        if self.ndim > 2:
            raise ShapeError(f"t: expects a tensor with <= 2 dimensions, got shape {fmt_shape(self.shape)}")
        return self.T

    def new_tensor(self, data, dtype=None, requires_grad=False):
        return Tensor(data, requires_grad=requires_grad, dtype=dtype or None)

    def new_zeros(self, *size, dtype=None):
        return F.zeros(*size, dtype=dtype or self.dtype)

    def new_ones(self, *size, dtype=None):
        return F.ones(*size, dtype=dtype or self.dtype)

    def new_full(self, size, fill_value, dtype=None):
        return F.full(size, fill_value, dtype=dtype or self.dtype)


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


# Methods that only forward to the functional op of the same name (documented there).
_DELEGATED = """
add sub mul div true_divide floor_divide remainder pow exp log log1p log2 log10 expm1 sqrt rsqrt abs
sign neg reciprocal square clamp clip maximum minimum where sin cos tan tanh sigmoid relu floor ceil
round trunc eq ne lt le gt ge logical_and logical_or logical_not logical_xor isnan isinf isfinite
sum mean prod max min amax amin var std norm logsumexp argmax argmin cumsum cumprod all any
matmul mm bmm dot outer flatten unflatten transpose swapaxes squeeze unsqueeze broadcast_to
split chunk flip roll gather scatter scatter_add index_select masked_fill sort argsort topk softmax
log_softmax movedim narrow diagonal triu tril nonzero masked_select index_put trace diag
""".split()


def _delegate(name):
    def method(self, *args, **kwargs):
        return getattr(F, name)(self, *args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"Tensor.{name}"
    method.__doc__ = f"See :func:`shendu.functional.{name}`."
    return method


for _name in _DELEGATED:
    if _name not in Tensor.__dict__:
        setattr(Tensor, _name, _delegate(_name))
del _name
