"""Activations: ReLU and its relatives, GELU, SiLU, softplus, softmax / log-softmax, maxout.

Every activation is a :class:`~shendu.autograd.function.Function` with an analytic backward that keeps
the input's dtype. ``sigmoid`` and ``tanh`` live in :mod:`shendu.ops.elementwise`. Softmax and
log-softmax subtract the maximum before exponentiating (``softmax(z) = softmax(z - max z)``), so
``softmax([1000, 1001])`` is finite. ``inplace=`` arguments are accepted for PyTorch compatibility;
``relu(x, inplace=True)`` writes into ``x`` under ``no_grad`` (inference), the others never overwrite their
input.
"""

from __future__ import annotations

import math
import numbers

from shendu import backend
from shendu.autograd import engine
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, ShapeError, fmt_shape, normalize_dim
from shendu.ops._util import as_tensor_arg
from shendu.ops.elementwise import _special, sigmoid_array
from shendu.ops.kernels import activation_numba as _act_nb

__all__ = [
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "softplus", "hardtanh",
    "hardsigmoid", "logsigmoid", "softmax", "log_softmax", "softmin", "maxout",
]

# SELU constants (Klambauer et al., 2017), as in torch.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _float_input(input) -> Tensor:
    """The input as a float tensor (integers become the default float dtype, as torch's activations)."""
    t = as_tensor_arg(input)
    return t if t.dtype.kind in "fc" else t.to(backend.get_default_dtype())


# ---------------------------------------------------------------------------------- pointwise activations
class _Pointwise(Function):
    """``y = f(x)`` elementwise with parameters given as keywords.

    Subclasses set ``f(xp, x, **params)`` and ``df(xp, x, y, gy, **params)`` (the input gradient), and
    ``saves``: which of ``x`` / ``y`` backward reads (the other arrives as None), so an op keeps alive
    only what its derivative needs.
    """

    saves = "x"

    def forward(ctx, x, **params):
        xp = get_array_module(x)
        y = ctx.f(xp, x, **params)
        ctx.params = params
        ctx.save_for_backward(x if "x" in ctx.saves else None, y if "y" in ctx.saves else None)
        return y

    def backward(ctx, gy):
        x, y = ctx.saved
        return ctx.df(get_array_module(gy), x, y, gy, **ctx.params)


def _pointwise(name, f, df, saves):
    return type(name, (_Pointwise,), {"f": staticmethod(f), "df": staticmethod(df), "saves": saves})


def _gelu_erf(xp, x):
    return 0.5 * x * (1 + _special(xp).erf(x * (1 / math.sqrt(2))))


def _gelu_erf_grad(xp, x, y, gy):
    # d/dx x*Phi(x) = Phi(x) + x*phi(x)
    cdf = 0.5 * (1 + _special(xp).erf(x * (1 / math.sqrt(2))))
    pdf = xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return gy * (cdf + x * pdf)


_K = math.sqrt(2 / math.pi)


def _gelu_tanh(xp, x):
    return 0.5 * x * (1 + xp.tanh(_K * (x + 0.044715 * x * x * x)))


def _gelu_tanh_grad(xp, x, y, gy):
    t = xp.tanh(_K * (x + 0.044715 * x * x * x))
    return gy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _K * (1 + 3 * 0.044715 * x * x))


def softplus_array(xp, x):
    """``log(1 + e^x) = max(x, 0) + log1p(e^-|x|)`` on an array, without overflow."""
    e = xp.abs(x)
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    xp.log1p(e, out=e)
    e += xp.maximum(x, 0)
    return e


def _softplus(xp, x, beta, threshold):
    bx = x * beta
    y = softplus_array(xp, bx)
    if beta != 1:
        y /= beta
    linear = bx > threshold  # torch returns x itself there
    if linear.any():
        y[linear] = x[linear]
    return y


def _softplus_grad(xp, x, y, gy, beta, threshold):
    bx = x * beta
    s = sigmoid_array(xp, bx)
    linear = bx > threshold
    if linear.any():
        s[linear] = 1
    return gy * s


def _silu_grad(xp, x, y, gy):
    s = sigmoid_array(xp, x)
    return gy * (s * (1 + x * (1 - s)))


def _logsigmoid(xp, x):
    # log sigma(x) = -softplus(-x)
    y = softplus_array(xp, -x)
    xp.negative(y, out=y)
    return y


def _relu(xp, x, out=None):
    if _act_nb.accepts(x):  # one threaded pass; the NumPy line is the reference
        return _act_nb.relu(x, out)
    return xp.maximum(x, 0, out=out)


def _relu_grad(xp, x, y, gy):
    if _act_nb.accepts(gy, y):
        return _act_nb.relu_backward(gy, y)
    return xp.where(y > 0, gy, 0)  # a select, as torch: 0 where y <= 0 even if gy is inf or NaN


ReLU = _pointwise("ReLU", _relu, _relu_grad, "y")
Hardtanh = _pointwise(
    "Hardtanh", lambda xp, x, min_val, max_val: xp.clip(x, min_val, max_val),
    # zero gradient at the corners themselves, as torch
    lambda xp, x, y, gy, min_val, max_val: gy * ((x > min_val) & (x < max_val)), "x")
LeakyReLU = _pointwise(
    "LeakyReLU", lambda xp, x, negative_slope: xp.where(x > 0, x, x * negative_slope),
    lambda xp, x, y, gy, negative_slope: xp.where(x > 0, gy, gy * negative_slope), "x")
ELU = _pointwise(
    "ELU", lambda xp, x, alpha, scale: scale * xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0))),
    # for x <= 0: d/dx scale*alpha*(e^x - 1) = scale*alpha*e^x = y + scale*alpha
    lambda xp, x, y, gy, alpha, scale: xp.where(x > 0, gy * scale, gy * (y + scale * alpha)), "xy")
CELU = _pointwise(
    "CELU", lambda xp, x, alpha: xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0) / alpha)),
    lambda xp, x, y, gy, alpha: xp.where(x > 0, gy, gy * (y / alpha + 1)), "xy")
GELU = _pointwise("GELU", _gelu_erf, _gelu_erf_grad, "x")
GELUTanh = _pointwise("GELUTanh", _gelu_tanh, _gelu_tanh_grad, "x")
SiLU = _pointwise("SiLU", lambda xp, x: x * sigmoid_array(xp, x), _silu_grad, "x")
Softplus = _pointwise("Softplus", _softplus, _softplus_grad, "x")
Hardsigmoid = _pointwise(
    "Hardsigmoid", lambda xp, x: xp.clip(x * (1 / 6) + 0.5, 0, 1),
    lambda xp, x, y, gy: gy * ((x > -3) & (x < 3)) * (1 / 6), "x")
LogSigmoid = _pointwise("LogSigmoid", _logsigmoid, lambda xp, x, y, gy: gy * sigmoid_array(xp, -x), "x")


def relu(input, inplace: bool = False) -> Tensor:
    """Rectified linear unit ``max(0, x)``; gradient ``1[x > 0]`` (0 at x = 0, as torch).

    Shape: any. ``inplace=True`` overwrites ``input`` and returns it under ``no_grad`` (inference: no new
    array). With autograd on it computes a new tensor, as ``inplace=False``: without torch's version
    counters an overwritten array that some graph node saved would give wrong gradients silently.

    >>> import shendu
    >>> shendu.relu(shendu.tensor([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 2.0]
    >>> x = shendu.tensor([-1.0, 3.0])
    >>> with shendu.no_grad():
    ...     y = shendu.relu(x, inplace=True)
    >>> y is x, x.tolist()
    (True, [0.0, 3.0])
    """
    if (inplace and isinstance(input, Tensor) and input.dtype.kind == "f" and input.data.flags.writeable
            and not engine.grad_mode.enabled):
        _relu(get_array_module(input.data), input.data, out=input.data)
        return input
    return ReLU.apply(_float_input(input))


def relu6(input, inplace: bool = False) -> Tensor:
    """``min(max(0, x), 6)``; gradient 1 strictly between 0 and 6.

    >>> import shendu
    >>> shendu.relu6(shendu.tensor([-1.0, 3.0, 8.0])).tolist()
    [0.0, 3.0, 6.0]
    """
    return Hardtanh.apply(_float_input(input), min_val=0.0, max_val=6.0)


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """``clip(x, min_val, max_val)``; gradient 1 strictly inside ``(min_val, max_val)``, else 0.

    >>> import shendu
    >>> shendu.hardtanh(shendu.tensor([-3.0, 0.5, 2.0])).tolist()
    [-1.0, 0.5, 1.0]
    """
    if min_val > max_val:
        raise ArgumentError(f"hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
    return Hardtanh.apply(_float_input(input), min_val=min_val, max_val=max_val)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``x`` for x > 0, else ``negative_slope * x`` (Maas et al., 2013); gradient 1 or the slope.

    >>> import shendu
    >>> shendu.leaky_relu(shendu.tensor([-2.0, 3.0]), 0.5).tolist()
    [-1.0, 3.0]
    """
    return LeakyReLU.apply(_float_input(input), negative_slope=negative_slope)


def elu(input, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """Exponential linear unit (Clevert et al., 2016): ``x`` for x > 0, else ``alpha * (e^x - 1)``.

    Gradient: 1 for x > 0, else ``y + alpha``. ``elu(-100) = -alpha``.

    >>> import shendu
    >>> shendu.elu(shendu.tensor([-100.0, 2.0])).tolist()
    [-1.0, 2.0]
    """
    return ELU.apply(_float_input(input), alpha=alpha, scale=1.0)


def selu(input, inplace: bool = False) -> Tensor:
    """Scaled ELU (Klambauer et al., 2017): ``scale * elu(x, alpha)`` with alpha = 1.6732632...,
    scale = 1.0507009...; ``selu(-100) = -scale * alpha = -1.7581``. Pair it with LeCun-normal init.

    >>> import shendu
    >>> round(shendu.selu(shendu.tensor([-100.0])).item(), 4)
    -1.7581
    """
    return ELU.apply(_float_input(input), alpha=SELU_ALPHA, scale=SELU_SCALE)


def celu(input, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """Continuously differentiable ELU: ``max(0, x) + min(0, alpha * (e^(x/alpha) - 1))``.

    >>> import shendu
    >>> shendu.celu(shendu.tensor([0.0, 1.0])).tolist()
    [0.0, 1.0]
    """
    if alpha == 0:
        raise ArgumentError("celu: alpha must not be 0 (the curve divides by it)")
    return CELU.apply(_float_input(input), alpha=alpha)


def gelu(input, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit ``x * Phi(x)``, Phi the standard normal CDF (Hendrycks & Gimpel).

    ``approximate='tanh'`` uses ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
    Gradient (exact form): ``Phi(x) + x * phi(x)``.

    >>> import shendu
    >>> round(shendu.gelu(shendu.tensor([1.0])).item(), 4)
    0.8413
    """
    if approximate == "none":
        return GELU.apply(_float_input(input))
    if approximate == "tanh":
        return GELUTanh.apply(_float_input(input))
    raise ArgumentError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(input, inplace: bool = False) -> Tensor:
    """Sigmoid-weighted linear unit (swish) ``x * sigmoid(x)``; gradient ``s (1 + x (1 - s))``.

    >>> import shendu
    >>> shendu.silu(shendu.tensor([0.0])).tolist()
    [0.0]
    """
    return SiLU.apply(_float_input(input))


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + e^(beta x)) / beta``, and ``x`` itself where ``beta x > threshold`` (as torch).

    Gradient: ``sigmoid(beta x)`` (1 in the linear region).

    >>> import shendu
    >>> round(shendu.softplus(shendu.tensor([0.0])).item(), 4)
    0.6931
    """
    if beta == 0:
        raise ArgumentError("softplus: beta must not be 0 (the curve divides by it)")
    return Softplus.apply(_float_input(input), beta=beta, threshold=threshold)


def hardsigmoid(input, inplace: bool = False) -> Tensor:
    """Piecewise-linear sigmoid ``relu6(x + 3) / 6``; gradient 1/6 strictly inside (-3, 3).

    >>> import shendu
    >>> shendu.hardsigmoid(shendu.tensor([-4.0, 0.0, 4.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    return Hardsigmoid.apply(_float_input(input))


def logsigmoid(input) -> Tensor:
    """``log(sigmoid(x)) = -log(1 + e^-x)``, stable for large |x|; gradient ``sigmoid(-x)``.

    >>> import shendu
    >>> shendu.logsigmoid(shendu.tensor([-200.0])).tolist()
    [-200.0]
    """
    return LogSigmoid.apply(_float_input(input))


# --------------------------------------------------------------------------------- softmax family
class Softmax(Function):
    def forward(ctx, x, dim):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=dim, keepdims=True))
        y = e / e.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    def backward(ctx, gy):
        y, = ctx.saved
        gyy = gy * y
        # J^T g = y * g - y * sum(g * y)
        return gyy - y * gyy.sum(axis=ctx.dim, keepdims=True), None


class LogSoftmax(Function):
    def forward(ctx, x, dim):
        xp = get_array_module(x)
        z = x - x.max(axis=dim, keepdims=True)
        y = z - xp.log(xp.exp(z).sum(axis=dim, keepdims=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    def backward(ctx, gy):
        y, = ctx.saved
        xp = get_array_module(gy)
        return gy - xp.exp(y) * gy.sum(axis=ctx.dim, keepdims=True), None


def _softmax_args(op, input, dim, dtype) -> tuple:
    t = _float_input(input)
    if dim is None:
        raise ArgumentError(f"{op}: dim is required (got None); for logits of shape (N, C) use dim=1 "
                            "(or dim=-1): torch's implicit choice is deprecated")
    if dtype is not None:
        t = t.to(dtype)
    dim = normalize_dim(op, dim, t.ndim)
    return t, dim if t.ndim else None  # a 0-d tensor is its own softmax axis


def softmax(input, dim: int | None = None, dtype=None) -> Tensor:
    """``softmax(z)_i = exp(z_i - max z) / sum_j exp(z_j - max z)`` along ``dim``.

    Subtracting the max leaves the value unchanged and prevents overflow. Gradient:
    ``g * y - y * sum(g * y)``. Shape: any; ``dim`` is required. ``dtype`` casts the input first.

    >>> import shendu
    >>> [round(v, 4) for v in shendu.softmax(shendu.tensor([1000.0, 1001.0]), dim=0).tolist()]
    [0.2689, 0.7311]
    """
    t, dim = _softmax_args("softmax", input, dim, dtype)
    return Softmax.apply(t, dim)


def log_softmax(input, dim: int | None = None, dtype=None) -> Tensor:
    """``log_softmax(z) = (z - max z) - log sum_j exp(z_j - max z)`` along ``dim``, computed directly
    (never as ``log(softmax(z))``). Gradient: ``g - softmax(z) * sum(g)``.

    >>> import shendu
    >>> shendu.log_softmax(shendu.tensor([1000.0, 0.0]), dim=0).tolist()
    [0.0, -1000.0]
    """
    t, dim = _softmax_args("log_softmax", input, dim, dtype)
    return LogSoftmax.apply(t, dim)


def softmin(input, dim: int | None = None, dtype=None) -> Tensor:
    """``softmax(-input, dim)``: weights that favour the smallest entries.

    >>> import shendu
    >>> [round(v, 4) for v in shendu.softmin(shendu.tensor([1.0, 2.0]), dim=0).tolist()]
    [0.7311, 0.2689]
    """
    t, dim = _softmax_args("softmin", input, dim, dtype)
    return Softmax.apply(-t, dim)


# ----------------------------------------------------------------------------------------- maxout
class Maxout(Function):
    def forward(ctx, x, pieces, dim):
        xp = get_array_module(x)
        # (..., C*k, ...) -> (..., C, k, ...): piece j of unit c is channel c*k + j (contiguous pieces)
        xs = x.reshape(x.shape[:dim] + (x.shape[dim] // pieces, pieces) + x.shape[dim + 1:])
        arg = xp.expand_dims(xs.argmax(axis=dim + 1), dim + 1)  # first maximum on ties
        ctx.save_for_backward(arg)
        ctx.shapes = (x.shape, xs.shape)
        ctx.dim = dim
        return xp.take_along_axis(xs, arg, axis=dim + 1).squeeze(dim + 1)

    def backward(ctx, gy):
        arg, = ctx.saved
        xp = get_array_module(gy)
        x_shape, xs_shape = ctx.shapes
        gx = xp.zeros(xs_shape, gy.dtype)
        xp.put_along_axis(gx, arg, xp.expand_dims(gy, ctx.dim + 1), axis=ctx.dim + 1)
        return gx.reshape(x_shape), None, None


def maxout(input, pieces: int, dim: int = 1) -> Tensor:
    """Maxout (Goodfellow et al., 2013): the max over groups of ``pieces`` consecutive channels.

    ``dim`` of size ``C * pieces`` is viewed as ``(C, pieces)`` and reduced by max, so output channel
    ``c`` is ``max_j input[..., c * pieces + j, ...]`` (contiguous pieces; the layout matters when
    loading weights). The gradient goes to the arg-max piece (the first one on ties).

    Shapes: ``(..., C * pieces, ...) -> (..., C, ...)``.

    >>> import shendu
    >>> shendu.maxout(shendu.tensor([[1.0, 5.0, 3.0, 2.0]]), pieces=2).tolist()
    [[5.0, 3.0]]
    """
    t = _float_input(input)
    if not isinstance(pieces, numbers.Integral) or pieces < 1:
        raise ArgumentError(f"maxout: pieces must be a positive integer, got {pieces!r}")
    if t.ndim == 0:
        raise ShapeError("maxout: expected a tensor with at least one dimension, got a scalar")
    dim = normalize_dim("maxout", dim, t.ndim)
    if t.shape[dim] % pieces:
        raise ShapeError(f"maxout: dimension {dim} of the input (shape {fmt_shape(t.shape)}) has size "
                         f"{t.shape[dim]}, not a multiple of pieces={pieces}; the layer before should give "
                         f"out_features * pieces channels")
    return Maxout.apply(t, int(pieces), dim)
