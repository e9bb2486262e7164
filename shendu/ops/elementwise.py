"""Elementwise ops: arithmetic, powers, exponentials, trigonometry, clamping, selection, comparison.

Binary ops broadcast like NumPy/PyTorch; their backward sums the gradient back to each input's
shape (:func:`~shendu.autograd.engine.unbroadcast`). Comparisons and logical ops return bool tensors
and carry no gradient.
"""

from __future__ import annotations

import numbers

from shendu import backend
from shendu.autograd.engine import unbroadcast
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import DTypeError
from shendu.ops._util import as_tensor_arg, broadcast_error, promote_pair

__all__ = [
    "add", "sub", "mul", "div", "true_divide", "floor_divide", "remainder", "neg", "pow", "exp", "log",
    "log1p", "log2", "log10", "expm1", "sqrt", "rsqrt", "abs", "sign", "reciprocal", "square", "clamp",
    "clip", "maximum", "minimum", "where", "sin", "cos", "tan", "tanh", "sigmoid", "floor", "ceil", "round",
    "trunc", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "logical_xor",
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "isnan", "isinf", "isfinite", "allclose",
    "equal",
]


def _shape(x):
    return x.shape if hasattr(x, "shape") else ()


def _special(xp):
    """scipy.special, or its CuPy counterpart for CuPy arrays."""
    if xp.__name__ == "numpy":
        import scipy.special as special
    else:
        import cupyx.scipy.special as special
    return special


def sigmoid_array(xp, x):
    """``sigmoid(x) = (1 + tanh(x / 2)) / 2`` on an array: no overflow for any x, and an order of
    magnitude faster than ``scipy.special.expit`` (one tanh pass). Absolute error stays at rounding level;
    for float32 inputs below about -17 the result underflows to 0 (the true value is < 1e-7)."""
    y = xp.tanh(x * 0.5)
    y *= 0.5
    y += 0.5
    return y


# ----------------------------------------------------------------------------------- binary arithmetic
class Add(Function):
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return a + b

    def backward(ctx, gy):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad
        return (unbroadcast(gy, sa) if na else None), (unbroadcast(gy, sb) if nb else None)


class Sub(Function):
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return a - b

    def backward(ctx, gy):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad
        return (unbroadcast(gy, sa) if na else None), (unbroadcast(-gy, sb) if nb else None)


class Mul(Function):
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    def backward(ctx, gy):
        a, b = ctx.saved
        na, nb = ctx.needs_input_grad
        return (unbroadcast(gy * b, _shape(a)) if na else None), (unbroadcast(gy * a, _shape(b)) if nb else None)


class Div(Function):
    def forward(ctx, a, b):
        y = a / b
        ctx.save_for_backward(a, b)
        return y

    def backward(ctx, gy):
        a, b = ctx.saved
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(gy / b, _shape(a)) if na else None
        gb = unbroadcast(-gy * a / (b * b), _shape(b)) if nb else None
        return ga, gb


class Pow(Function):
    def forward(ctx, a, b):
        xp = get_array_module(a, b)
        y = xp.power(a, b)
        ctx.save_for_backward(a, b, y)
        return y

    def backward(ctx, gy):
        a, b, y = ctx.saved
        xp = get_array_module(gy)
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na:
            if isinstance(b, numbers.Number):
                ga = gy * (2 * a) if b == 2 else (gy * b * xp.power(a, b - 1) if b != 0 else xp.zeros_like(gy))
            else:
                # d/da a^b = b a^(b-1); where b == 0 the derivative is 0 even at a == 0
                ga = unbroadcast(xp.where(b == 0, 0, gy * b * xp.power(a, b - 1)), _shape(a))
        if nb:
            # d/db a^b = a^b log a; torch defines it as 0 where a == 0 and b >= 0
            with xp.errstate(divide="ignore", invalid="ignore"):
                la = xp.log(a) if not isinstance(a, numbers.Number) else xp.log(xp.asarray(a, dtype=y.dtype))
                gb = gy * y * la
            if not isinstance(a, numbers.Number):
                gb = xp.where((a == 0) & (b >= 0), 0, gb)
            gb = unbroadcast(gb, _shape(b))
        return ga, gb


class Maximum(Function):
    def forward(ctx, a, b):
        xp = get_array_module(a, b)
        ctx.save_for_backward(a, b)
        return xp.maximum(a, b)

    def backward(ctx, gy):
        a, b = ctx.saved
        # ties split the gradient evenly, as in torch
        wa = (a > b) + 0.5 * (a == b)
        na, nb = ctx.needs_input_grad
        ga = unbroadcast((gy * wa).astype(gy.dtype, copy=False), _shape(a)) if na else None
        gb = unbroadcast((gy * (1 - wa)).astype(gy.dtype, copy=False), _shape(b)) if nb else None
        return ga, gb


class Minimum(Function):
    def forward(ctx, a, b):
        xp = get_array_module(a, b)
        ctx.save_for_backward(a, b)
        return xp.minimum(a, b)

    def backward(ctx, gy):
        a, b = ctx.saved
        wa = (a < b) + 0.5 * (a == b)
        na, nb = ctx.needs_input_grad
        ga = unbroadcast((gy * wa).astype(gy.dtype, copy=False), _shape(a)) if na else None
        gb = unbroadcast((gy * (1 - wa)).astype(gy.dtype, copy=False), _shape(b)) if nb else None
        return ga, gb


class Remainder(Function):
    def forward(ctx, a, b):
        xp = get_array_module(a, b)
        ctx.save_for_backward(a, b)
        return xp.remainder(a, b)

    def backward(ctx, gy):
        a, b = ctx.saved
        xp = get_array_module(gy)
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(gy, _shape(a)) if na else None
        gb = unbroadcast(-gy * xp.floor_divide(a, b), _shape(b)) if nb else None
        return ga, gb


def _binary(name, fn_cls, a, b):
    a, b = promote_pair(a, b)
    try:
        return fn_cls.apply(a, b)
    except ValueError as e:
        if "broadcast" in str(e):
            raise broadcast_error(name, a, b) from None
        raise


def add(input, other, *, alpha=1) -> Tensor:
    """Elementwise sum with broadcasting: ``out = input + alpha * other``.

    Shapes: ``input`` and ``other`` broadcast to the output shape.

    >>> import shendu
    >>> shendu.add(shendu.tensor([1.0, 2.0]), 10.0).tolist()
    [11.0, 12.0]
    """
    if alpha != 1:
        other = mul(other, alpha)
    return _binary("add", Add, input, other)


def sub(input, other, *, alpha=1) -> Tensor:
    """Elementwise difference with broadcasting: ``out = input - alpha * other``.

    >>> import shendu
    >>> shendu.sub(shendu.tensor([1.0, 2.0]), shendu.tensor([0.5])).tolist()
    [0.5, 1.5]
    """
    if alpha != 1:
        other = mul(other, alpha)
    return _binary("sub", Sub, input, other)


def mul(input, other) -> Tensor:
    """Elementwise product with broadcasting: ``out = input * other``; d/da = b, d/db = a.

    >>> import shendu
    >>> shendu.mul(shendu.tensor([[1.0], [2.0]]), shendu.tensor([3.0, 4.0])).tolist()
    [[3.0, 4.0], [6.0, 8.0]]
    """
    return _binary("mul", Mul, input, other)


def div(input, other, *, rounding_mode=None) -> Tensor:
    """Elementwise true division ``out = input / other`` (``rounding_mode`` "floor"/"trunc" as in torch).

    Integer inputs give a float result, as in torch.

    >>> import shendu
    >>> shendu.div(shendu.tensor([1, 3]), 2).tolist()
    [0.5, 1.5]
    """
    if rounding_mode is not None:
        q = _binary("div", Div, input, other)
        if rounding_mode == "floor":
            return floor(q)
        if rounding_mode == "trunc":
            return trunc(q)
        from shendu.errors import ArgumentError

        raise ArgumentError(f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")
    a, b = promote_pair(input, other)
    if isinstance(a, Tensor) and a.dtype.kind in "iub" and (not isinstance(b, Tensor) or b.dtype.kind in "iub"):
        a = a.to(backend.get_default_dtype())
    elif isinstance(b, Tensor) and b.dtype.kind in "iub" and not isinstance(a, Tensor):
        b = b.to(backend.get_default_dtype())
    return _binary("div", Div, a, b)


true_divide = div


def floor_divide(input, other) -> Tensor:
    """``floor(input / other)`` elementwise; no gradient (piecewise constant).

    >>> import shendu
    >>> shendu.floor_divide(shendu.tensor([7, -7]), 2).tolist()
    [3, -4]
    """
    a, b = promote_pair(input, other)
    xp = get_array_module(a.data if isinstance(a, Tensor) else b.data)
    return Tensor._wrap(xp.floor_divide(a.data if isinstance(a, Tensor) else a,
                                        b.data if isinstance(b, Tensor) else b))


def remainder(input, other) -> Tensor:
    """Python-style modulus ``input - floor(input / other) * other`` (sign of the divisor).

    >>> import shendu
    >>> shendu.remainder(shendu.tensor([-3.0, 5.0]), 2).tolist()
    [1.0, 1.0]
    """
    return _binary("remainder", Remainder, input, other)


def pow(input, exponent) -> Tensor:
    """Elementwise power ``input ** exponent``; d/da = b a^(b-1), d/db = a^b log a.

    >>> import shendu
    >>> shendu.pow(shendu.tensor([2.0, 3.0]), 2).tolist()
    [4.0, 9.0]
    """
    return _binary("pow", Pow, input, exponent)


def maximum(input, other) -> Tensor:
    """Elementwise maximum; on ties the gradient is split evenly between the two inputs.

    >>> import shendu
    >>> shendu.maximum(shendu.tensor([1.0, 5.0]), shendu.tensor([3.0, 2.0])).tolist()
    [3.0, 5.0]
    """
    return _binary("maximum", Maximum, input, other)


def minimum(input, other) -> Tensor:
    """Elementwise minimum; on ties the gradient is split evenly between the two inputs.

    >>> import shendu
    >>> shendu.minimum(shendu.tensor([1.0, 5.0]), shendu.tensor([3.0, 2.0])).tolist()
    [1.0, 2.0]
    """
    return _binary("minimum", Minimum, input, other)


# ------------------------------------------------------------------------------------ unary functions
class _Unary(Function):
    """y = f(x) with dy/dx from the saved input or output; subclasses set ``f`` and ``df``."""

    save_output = False

    def forward(ctx, x):
        xp = get_array_module(x)
        y = ctx.f(xp, x)
        ctx.save_for_backward(y if ctx.save_output else x)
        return y

    def backward(ctx, gy):
        s, = ctx.saved
        return ctx.df(get_array_module(gy), s, gy)


def _unary_op(name, f, df, save_output, formula, example, result):
    cls = type(name.capitalize(), (_Unary,), {"f": staticmethod(f), "df": staticmethod(df),
                                             "save_output": save_output})

    def op(input) -> Tensor:
        t = as_tensor_arg(input)
        if t.dtype.kind not in "fc":
            t = t.to(backend.get_default_dtype())
        return cls.apply(t)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = (f"Elementwise ``{formula}``.\n\n    Shape: any; the output has the input's shape and "
                  f"dtype (integers become float32).\n\n    >>> import shendu\n    >>> shendu.{name}"
                  f"(shendu.tensor({example})).tolist()\n    {result}\n    ")
    return cls, op


Neg, neg = _unary_op("neg", lambda xp, x: -x, lambda xp, x, g: -g, False, "y = -x; dy/dx = -1",
                     "[1.0, -2.0]", "[-1.0, 2.0]")
Exp, exp = _unary_op("exp", lambda xp, x: xp.exp(x), lambda xp, y, g: g * y, True, "y = e^x; dy/dx = y",
                     "[0.0]", "[1.0]")
Log, log = _unary_op("log", lambda xp, x: xp.log(x), lambda xp, x, g: g / x, False, "y = ln x; dy/dx = 1/x",
                     "[1.0]", "[0.0]")
Log2, log2 = _unary_op("log2", lambda xp, x: xp.log2(x), lambda xp, x, g: g / (x * 0.6931471805599453), False,
                       "y = log2 x; dy/dx = 1/(x ln 2)", "[8.0]", "[3.0]")
Log10, log10 = _unary_op("log10", lambda xp, x: xp.log10(x), lambda xp, x, g: g / (x * 2.302585092994046),
                         False, "y = log10 x; dy/dx = 1/(x ln 10)", "[10.0]", "[1.0]")
Log1p, log1p = _unary_op("log1p", lambda xp, x: xp.log1p(x), lambda xp, x, g: g / (1 + x), False,
                         "y = ln(1 + x), accurate for small x; dy/dx = 1/(1+x)", "[0.0]", "[0.0]")
Expm1, expm1 = _unary_op("expm1", lambda xp, x: xp.expm1(x), lambda xp, y, g: g * (y + 1), True,
                         "y = e^x - 1, accurate for small x; dy/dx = y + 1", "[0.0]", "[0.0]")
Sqrt, sqrt = _unary_op("sqrt", lambda xp, x: xp.sqrt(x), lambda xp, y, g: g / (2 * y), True,
                       "y = sqrt(x); dy/dx = 1/(2y)", "[4.0]", "[2.0]")
Rsqrt, rsqrt = _unary_op("rsqrt", lambda xp, x: 1 / xp.sqrt(x), lambda xp, y, g: -0.5 * g * y * y * y, True,
                         "y = 1/sqrt(x); dy/dx = -y^3/2", "[4.0]", "[0.5]")
Abs, abs = _unary_op("abs", lambda xp, x: xp.abs(x), lambda xp, x, g: g * xp.sign(x), False,
                     "y = |x|; dy/dx = sign(x) (0 at 0)", "[-1.5, 2.0]", "[1.5, 2.0]")
Reciprocal, reciprocal = _unary_op("reciprocal", lambda xp, x: 1 / x, lambda xp, y, g: -g * y * y, True,
                                   "y = 1/x; dy/dx = -y^2", "[4.0]", "[0.25]")
Square, square = _unary_op("square", lambda xp, x: x * x, lambda xp, x, g: 2 * g * x, False,
                           "y = x^2; dy/dx = 2x", "[3.0]", "[9.0]")
Sin, sin = _unary_op("sin", lambda xp, x: xp.sin(x), lambda xp, x, g: g * xp.cos(x), False,
                     "y = sin x; dy/dx = cos x", "[0.0]", "[0.0]")
Cos, cos = _unary_op("cos", lambda xp, x: xp.cos(x), lambda xp, x, g: -g * xp.sin(x), False,
                     "y = cos x; dy/dx = -sin x", "[0.0]", "[1.0]")
Tan, tan = _unary_op("tan", lambda xp, x: xp.tan(x), lambda xp, y, g: g * (1 + y * y), True,
                     "y = tan x; dy/dx = 1 + y^2", "[0.0]", "[0.0]")
Tanh, tanh = _unary_op("tanh", lambda xp, x: xp.tanh(x), lambda xp, y, g: g * (1 - y * y), True,
                       "y = tanh x; dy/dx = 1 - y^2", "[0.0]", "[0.0]")
Sigmoid, sigmoid = _unary_op("sigmoid", sigmoid_array, lambda xp, y, g: g * y * (1 - y),
                             True, "y = 1/(1 + e^-x) (stable for large |x|); dy/dx = y(1 - y)", "[0.0]", "[0.5]")


class _Piecewise(Function):
    """Piecewise-constant ops (sign, floor, ...): zero gradient everywhere it exists."""

    def forward(ctx, x, fname):
        return getattr(get_array_module(x), fname)(x)

    def backward(ctx, gy):
        return get_array_module(gy).zeros_like(gy), None


def _piecewise_op(name, fname, example, result):
    def op(input) -> Tensor:
        t = as_tensor_arg(input)
        if t.dtype.kind not in "fc":
            return Tensor._wrap(getattr(get_array_module(t.data), fname)(t.data))
        return _Piecewise.apply(t, fname)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = (f"Elementwise ``{fname}``; piecewise constant, so its gradient is zero.\n\n"
                  f"    >>> import shendu\n    >>> shendu.{name}(shendu.tensor({example})).tolist()\n"
                  f"    {result}\n    ")
    return op


sign = _piecewise_op("sign", "sign", "[-2.0, 0.0, 3.0]", "[-1.0, 0.0, 1.0]")
floor = _piecewise_op("floor", "floor", "[-1.5, 1.5]", "[-2.0, 1.0]")
ceil = _piecewise_op("ceil", "ceil", "[-1.5, 1.5]", "[-1.0, 2.0]")
round = _piecewise_op("round", "rint", "[0.5, 1.5, 2.4]", "[0.0, 2.0, 2.0]")
trunc = _piecewise_op("trunc", "trunc", "[-1.5, 1.5]", "[-1.0, 1.0]")


# ------------------------------------------------------------------------------------------ clamping
class Clamp(Function):
    def forward(ctx, x, lo, hi):
        xp = get_array_module(x)
        ctx.save_for_backward(x, lo, hi)
        if lo is None:
            return xp.minimum(x, hi)
        if hi is None:
            return xp.maximum(x, lo)
        return xp.minimum(xp.maximum(x, lo), hi)

    def backward(ctx, gy):
        x, lo, hi = ctx.saved
        xp = get_array_module(gy)
        nx, nlo, nhi = ctx.needs_input_grad
        m = x if lo is None else xp.maximum(x, lo)
        hi_active = (m > hi) if hi is not None else xp.zeros(x.shape, bool)
        lo_active = ((x < lo) & ~hi_active) if lo is not None else xp.zeros(x.shape, bool)
        x_active = ~(hi_active | lo_active)
        if lo is not None:
            x_active &= x >= lo  # lo > hi: neither x nor lo wins
        gx = xp.where(x_active, gy, 0).astype(gy.dtype, copy=False) if nx else None
        glo = unbroadcast(xp.where(lo_active, gy, 0).astype(gy.dtype, copy=False), _shape(lo)) if nlo else None
        ghi = unbroadcast(xp.where(hi_active, gy, 0).astype(gy.dtype, copy=False), _shape(hi)) if nhi else None
        return gx, glo, ghi


def clamp(input, min=None, max=None) -> Tensor:
    """Limit values to ``[min, max]``: ``out = min(max(input, min), max)``.

    The gradient passes where ``min <= input <= max`` (inclusive, as in torch) and is 0 elsewhere;
    tensor bounds receive the gradient where they are active.

    >>> import shendu
    >>> shendu.clamp(shendu.tensor([-2.0, 0.5, 3.0]), -1, 1).tolist()
    [-1.0, 0.5, 1.0]
    """
    from shendu.errors import ArgumentError

    if min is None and max is None:
        raise ArgumentError("clamp: at least one of min and max must be given")
    x = as_tensor_arg(input)
    lo = min if (min is None or isinstance(min, (numbers.Number, Tensor))) else as_tensor_arg(min)
    hi = max if (max is None or isinstance(max, (numbers.Number, Tensor))) else as_tensor_arg(max)
    if x.dtype.kind in "iub" and (isinstance(lo, float) or isinstance(hi, float)):
        x = x.to(backend.get_default_dtype())
    try:
        return Clamp.apply(x, lo, hi)
    except ValueError as e:
        if "broadcast" in str(e):
            raise broadcast_error("clamp", x, lo if isinstance(lo, Tensor) else hi) from None
        raise


clip = clamp


# ----------------------------------------------------------------------------------------- selection
class Where(Function):
    def forward(ctx, cond, a, b):
        xp = get_array_module(a, b)
        ctx.save_for_backward(cond)
        ctx.shapes = (_shape(a), _shape(b))
        return xp.where(cond, a, b)

    def backward(ctx, gy):
        cond, = ctx.saved
        xp = get_array_module(gy)
        _, na, nb = ctx.needs_input_grad
        sa, sb = ctx.shapes
        ga = unbroadcast(xp.where(cond, gy, 0).astype(gy.dtype, copy=False), sa) if na else None
        gb = unbroadcast(xp.where(cond, 0, gy).astype(gy.dtype, copy=False), sb) if nb else None
        return None, ga, gb


def where(condition, input=None, other=None) -> Tensor:
    """Pick ``input`` where ``condition`` is true, else ``other`` (all three broadcast).

    With only ``condition``, returns the tuple of index tensors of its true elements (like torch).

    >>> import shendu
    >>> x = shendu.tensor([-1.0, 2.0])
    >>> shendu.where(x > 0, x, 0.0).tolist()
    [0.0, 2.0]
    """
    c = as_tensor_arg(condition)
    if input is None and other is None:
        return tuple(Tensor._wrap(i) for i in get_array_module(c.data).nonzero(c.data))
    if c.dtype.kind != "b":
        raise DTypeError(f"where: condition must be a bool tensor, got {c.dtype}")
    a, b = promote_pair(input, other)
    try:
        return Where.apply(c, a, b)
    except ValueError as e:
        if "broadcast" in str(e):
            raise broadcast_error("where", a, b) from None
        raise


# ------------------------------------------------------------------------------ comparison and logic
def _compare(name, ufunc_name, doc):
    def op(input, other) -> Tensor:
        a, b = promote_pair(input, other)
        ad = a.data if isinstance(a, Tensor) else a
        bd = b.data if isinstance(b, Tensor) else b
        try:
            return Tensor._wrap(getattr(get_array_module(ad, bd), ufunc_name)(ad, bd))
        except ValueError as e:
            if "broadcast" in str(e):
                raise broadcast_error(name, a, b) from None
            raise

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


_cmp_doc = ("Elementwise ``input {sym} other`` as a bool tensor (no gradient).\n\n"
            "    >>> import shendu\n    >>> shendu.{name}(shendu.tensor([1, 2, 3]), 2).tolist()\n    {res}\n    ")
eq = _compare("eq", "equal", _cmp_doc.format(sym="==", name="eq", res="[False, True, False]"))
ne = _compare("ne", "not_equal", _cmp_doc.format(sym="!=", name="ne", res="[True, False, True]"))
lt = _compare("lt", "less", _cmp_doc.format(sym="<", name="lt", res="[True, False, False]"))
le = _compare("le", "less_equal", _cmp_doc.format(sym="<=", name="le", res="[True, True, False]"))
gt = _compare("gt", "greater", _cmp_doc.format(sym=">", name="gt", res="[False, False, True]"))
ge = _compare("ge", "greater_equal", _cmp_doc.format(sym=">=", name="ge", res="[False, True, True]"))
_log_doc = ("Elementwise logical {w} (inputs are read as bools; no gradient).\n\n    >>> import shendu\n"
            "    >>> shendu.logical_{w}(shendu.tensor([True, False]), shendu.tensor([True, True])).tolist()\n"
            "    {res}\n    ")
logical_and = _compare("logical_and", "logical_and", _log_doc.format(w="and", res="[True, False]"))
logical_or = _compare("logical_or", "logical_or", _log_doc.format(w="or", res="[True, True]"))
logical_xor = _compare("logical_xor", "logical_xor", _log_doc.format(w="xor", res="[False, True]"))
_bit_doc = "Elementwise bitwise {w} of integer or bool tensors (no gradient)."
bitwise_and = _compare("bitwise_and", "bitwise_and", _bit_doc.format(w="and"))
bitwise_or = _compare("bitwise_or", "bitwise_or", _bit_doc.format(w="or"))
bitwise_xor = _compare("bitwise_xor", "bitwise_xor", _bit_doc.format(w="xor"))


def _unary_nograd(name, fname, doc):
    def op(input) -> Tensor:
        t = as_tensor_arg(input)
        return Tensor._wrap(getattr(get_array_module(t.data), fname)(t.data))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


logical_not = _unary_nograd("logical_not", "logical_not", "Elementwise logical not (no gradient).\n\n"
                            "    >>> import shendu\n    >>> shendu.logical_not(shendu.tensor([True, False]))"
                            ".tolist()\n    [False, True]\n    ")
bitwise_not = _unary_nograd("bitwise_not", "invert", "Elementwise bitwise not of integer or bool tensors.")
isnan = _unary_nograd("isnan", "isnan", "Bool tensor, true where the input is NaN.\n\n    >>> import shendu\n"
                      "    >>> shendu.isnan(shendu.tensor([1.0, float('nan')])).tolist()\n    [False, True]\n    ")
isinf = _unary_nograd("isinf", "isinf", "Bool tensor, true where the input is +inf or -inf.")
isfinite = _unary_nograd("isfinite", "isfinite", "Bool tensor, true where the input is neither inf nor NaN.")


def allclose(input, other, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    """True when ``|input - other| <= atol + rtol * |other|`` everywhere.

    >>> import shendu
    >>> shendu.allclose(shendu.tensor([1.0]), shendu.tensor([1.0 + 1e-9]))
    True
    """
    a, b = as_tensor_arg(input).data, as_tensor_arg(other).data
    return bool(get_array_module(a, b).allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other) -> bool:
    """True when both tensors have the same shape and elements."""
    a, b = as_tensor_arg(input).data, as_tensor_arg(other).data
    return a.shape == b.shape and bool((a == b).all())
