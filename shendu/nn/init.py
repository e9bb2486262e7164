"""``shendu.nn.init``: fill a weight in place from a distribution, like ``torch.nn.init``.

Every function writes into ``tensor.data`` (no graph is recorded, so it works on Parameters),
keeps the tensor's dtype, draws from shendu's RNG (:func:`shendu.manual_seed`, or ``generator=``) and
returns the tensor.

Why the scale matters (the notes' experiment, ``examples/init_statistics.py``): with ``y = W x`` and
``Din`` inputs of unit variance, ``Var(y) = Din * Var(W)``. Too small a std shrinks activations layer
after layer to zero; too large saturates tanh. ``Var(W) = 1/Din`` keeps the variance (Xavier/Glorot,
for tanh; Glorot averages fan-in and fan-out), ``Var(W) = 2/Din`` compensates ReLU zeroing half of its
inputs (Kaiming/He). ``gain`` is the factor :func:`calculate_gain` gives per nonlinearity.

Fans follow PyTorch exactly: for a weight of shape ``(out, in, *kernel)`` (a conv weight's ``in`` is
``in_channels / groups``), ``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from shendu import backend
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
    "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
]


def _target(op: str, tensor) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise ArgumentError(f"init.{op}: expected a shendu Tensor or Parameter, got {type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise DTypeError(f"init.{op}: expected a floating-point tensor, got {tensor.dtype}")
    return tensor


def _draw(tensor: Tensor, sampler):
    """Samples of ``sampler`` (a NumPy Generator method) for ``tensor``'s shape: straight into its memory
    when it is a writable contiguous float32/float64 array (no temporary), else into a new array."""
    a = tensor.data
    if a.dtype in (np.float32, np.float64) and a.flags.c_contiguous and a.flags.writeable:
        return sampler(a.shape, dtype=a.dtype, out=a)
    return sampler(a.shape, dtype=np.float32 if a.dtype == np.float32 else np.float64)


def _write(tensor: Tensor, values) -> Tensor:
    if values is tensor.data:
        return tensor
    if tensor.data.flags.writeable:
        tensor.data[...] = values
    else:  # e.g. a broadcast view: give the tensor its own memory
        tensor.data = np.array(np.broadcast_to(values, tensor.shape), dtype=tensor.dtype)
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity, as in torch.

    ===================  ===========================================
    linear, conv*, sigmoid  1
    tanh                 5/3
    relu                 sqrt(2)
    leaky_relu           sqrt(2 / (1 + negative_slope^2)) (slope ``param``, default 0.01)
    selu                 3/4
    ===================  ===========================================

    For self-normalising SELU networks use LeCun normal init, ``kaiming_normal_(w, nonlinearity="linear")``
    (std ``1/sqrt(fan_in)``), not the ``selu`` gain, as torch's documentation also warns.

    >>> round(calculate_gain("relu"), 4), calculate_gain("tanh")
    (1.4142, 1.6666666666666667)
    """
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Number) and not isinstance(param, bool):
            slope = param
        else:
            raise ArgumentError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4  # the value torch uses (self-normalising nets)
    raise ArgumentError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of "
                        f"{linear_fns + ['sigmoid', 'tanh', 'relu', 'leaky_relu', 'selu']}")


def _calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``, exactly as torch computes them."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ShapeError(f"init: fan in and fan out can not be computed for a tensor with fewer than 2 "
                         f"dimensions (shape {fmt_shape(shape)}); use uniform_/normal_ for biases")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _calculate_correct_fan(tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ArgumentError(f"init: mode {mode!r} not supported, please use one of 'fan_in', 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill with samples of U(a, b).

    >>> import shendu
    >>> w = uniform_(shendu.empty(1000), -1.0, 1.0)
    >>> bool(w.min() >= -1.0 and w.max() < 1.0)
    True
    """
    t = _target("uniform_", tensor)
    u = _draw(t, backend.rng(generator).random)
    u *= b - a
    u += a
    return _write(t, u)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill with samples of N(mean, std^2)."""
    t = _target("normal_", tensor)
    z = _draw(t, backend.rng(generator).standard_normal)
    z *= std
    z += mean
    return _write(t, z)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None) -> Tensor:
    """Fill with N(mean, std^2) truncated to [a, b] (inverse-CDF sampling, as torch)."""
    from scipy.special import ndtr, ndtri

    t = _target("trunc_normal_", tensor)
    if not a < b:
        raise ArgumentError(f"init.trunc_normal_: need a < b, got a={a}, b={b}")
    lo, hi = ndtr((a - mean) / std), ndtr((b - mean) / std)
    u = lo + (hi - lo) * backend.rng(generator).random(t.shape)
    return _write(t, np.clip(ndtri(u) * std + mean, a, b))


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    return _write(_target("constant_", tensor), val)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def eye_(tensor: Tensor) -> Tensor:
    """Fill a 2-D tensor with the identity matrix (an identity map in a Linear layer)."""
    t = _target("eye_", tensor)
    if t.ndim != 2:
        raise ShapeError(f"init.eye_: only 2-D tensors are supported, got shape {fmt_shape(t.shape)}")
    return _write(t, np.eye(*t.shape))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """Fill a 3/4/5-D conv weight with the Dirac delta: the convolution copies its input channels
    (per group, as many as fit)."""
    t = _target("dirac_", tensor)
    if t.ndim not in (3, 4, 5):
        raise ShapeError(f"init.dirac_: only 3, 4 or 5-D tensors are supported, got shape {fmt_shape(t.shape)}")
    if t.shape[0] % groups:
        raise ArgumentError(f"init.dirac_: dim 0 ({t.shape[0]}) must be divisible by groups ({groups})")
    out_per_group = t.shape[0] // groups
    n = min(out_per_group, t.shape[1])
    w = np.zeros(t.shape)
    centre = tuple(k // 2 for k in t.shape[2:])
    d = np.arange(n)
    for g in range(groups):  # a loop over groups, not elements
        w[(g * out_per_group + d, d) + centre] = 1
    return _write(t, w)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot/Xavier uniform: U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(_target("xavier_uniform_", tensor))
    a = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot/Xavier normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(_target("xavier_normal_", tensor))
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None) -> Tensor:
    """He/Kaiming uniform: U(-bound, bound), ``bound = gain * sqrt(3 / fan)``, gain of ``nonlinearity``
    (with negative slope ``a`` for leaky_relu). ``fan`` is fan_in (preserves forward variance) or fan_out
    (preserves backward variance).

    >>> import shendu
    >>> w = kaiming_uniform_(shendu.empty(256, 512), nonlinearity="relu")
    >>> round(float(w.std()) * 512 ** 0.5, 1)  # std = sqrt(2 / fan_in)
    1.4
    """
    fan = _calculate_correct_fan(_target("kaiming_uniform_", tensor), mode)
    if fan == 0:
        return tensor  # torch warns and leaves an empty tensor alone
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None) -> Tensor:
    """He/Kaiming normal: N(0, std^2), ``std = gain / sqrt(fan)`` (``sqrt(2 / fan_in)`` for ReLU)."""
    fan = _calculate_correct_fan(_target("kaiming_normal_", tensor), mode)
    if fan == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Fill with a (semi-)orthogonal matrix (Saxe et al., 2013): rows orthonormal when rows <= cols,
    columns orthonormal otherwise; dims after the first are flattened. From the QR of a Gaussian
    matrix, with signs fixed so the distribution is uniform (Haar).

    >>> import shendu, numpy as np
    >>> w = orthogonal_(shendu.empty(3, 5)).data
    >>> np.allclose(w @ w.T, np.eye(3), atol=1e-6)
    True
    """
    t = _target("orthogonal_", tensor)
    if t.ndim < 2:
        raise ShapeError(f"init.orthogonal_: only tensors with 2 or more dimensions are supported, got shape "
                         f"{fmt_shape(t.shape)}")
    if t.data.size == 0:
        return t
    rows = t.shape[0]
    cols = t.data.size // rows
    flat = backend.rng(generator).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # make Q unique: R with a positive diagonal
    if rows < cols:
        q = q.T
    return _write(t, (gain * q).reshape(t.shape))
