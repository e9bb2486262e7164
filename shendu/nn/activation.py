"""Activation layers: thin Modules over the functional activations of :mod:`shendu.ops.activation`,
with PyTorch's constructor arguments and ``repr``, plus :class:`Maxout`, which holds a Linear.

``inplace=`` is accepted where torch has it and ignored: shendu never overwrites the input (an
in-place activation only saves memory in torch; the results are the same).
"""

from __future__ import annotations

from shendu import functional as F
from shendu.errors import ArgumentError
from shendu.nn.layers import Linear
from shendu.nn.module import Module

__all__ = ["ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Softplus", "Hardtanh",
           "Hardsigmoid", "Sigmoid", "Tanh", "LogSigmoid", "Softmax", "LogSoftmax", "Softmin", "Maxout"]


class _Inplace(Module):
    """An activation with torch's ``inplace`` flag, shown in the repr as torch shows it. ReLU honours it
    under ``no_grad`` (inference: see :func:`shendu.functional.relu`); the others ignore it."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Inplace):
    """``max(0, x)`` elementwise; see :func:`shendu.functional.relu`.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.ReLU()(shendu.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    def forward(self, input):
        return F.relu(input, inplace=self.inplace)


class ReLU6(_Inplace):
    """``min(max(0, x), 6)``; see :func:`shendu.functional.relu6`."""

    def forward(self, input):
        return F.relu6(input)


class SELU(_Inplace):
    """Scaled ELU with the self-normalising constants; see :func:`shendu.functional.selu`."""

    def forward(self, input):
        return F.selu(input)


class SiLU(_Inplace):
    """``x * sigmoid(x)``; see :func:`shendu.functional.silu`."""

    def forward(self, input):
        return F.silu(input)


class Hardsigmoid(_Inplace):
    """``relu6(x + 3) / 6``; see :func:`shendu.functional.hardsigmoid`."""

    def forward(self, input):
        return F.hardsigmoid(input)


class LeakyReLU(Module):
    """``x`` for x > 0 else ``negative_slope * x``; see :func:`shendu.functional.leaky_relu`.

    >>> from shendu import nn
    >>> nn.LeakyReLU(0.2)
    LeakyReLU(negative_slope=0.2)
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    """``x`` for x > 0 else ``alpha (e^x - 1)``; see :func:`shendu.functional.elu`."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):
        return F.elu(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(ELU):
    """``max(0, x) + min(0, alpha (e^(x/alpha) - 1))``; see :func:`shendu.functional.celu`."""

    def forward(self, input):
        return F.celu(input, self.alpha)


class GELU(Module):
    """``x * Phi(x)`` (``approximate='tanh'`` for the tanh formula); see :func:`shendu.functional.gelu`."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ArgumentError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softplus(Module):
    """``log(1 + e^(beta x)) / beta``, linear above ``threshold``; see :func:`shendu.functional.softplus`."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """``clip(x, min_val, max_val)``; see :func:`shendu.functional.hardtanh`."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        if min_val > max_val:
            raise ArgumentError(f"Hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")


class Sigmoid(Module):
    """``1 / (1 + e^-x)``; see :func:`shendu.functional.sigmoid`."""

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    """``tanh(x)``; see :func:`shendu.functional.tanh`."""

    def forward(self, input):
        return F.tanh(input)


class LogSigmoid(Module):
    """``log(sigmoid(x))``, stable; see :func:`shendu.functional.logsigmoid`."""

    def forward(self, input):
        return F.logsigmoid(input)


class _SoftmaxBase(Module):
    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    """Softmax along ``dim`` (max-subtracted); see :func:`shendu.functional.softmax`. ``dim`` must be
    given before the layer is called (torch's implicit choice is deprecated).

    >>> import shendu
    >>> from shendu import nn
    >>> nn.Softmax(dim=1)(shendu.zeros(1, 4)).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """

    def forward(self, input):
        return F.softmax(input, self.dim)


class LogSoftmax(_SoftmaxBase):
    """Log-softmax along ``dim``; see :func:`shendu.functional.log_softmax`."""

    def forward(self, input):
        return F.log_softmax(input, self.dim)


class Softmin(_SoftmaxBase):
    """``softmax(-x)`` along ``dim``; see :func:`shendu.functional.softmin`."""

    def forward(self, input):
        return F.softmin(input, self.dim)


class Maxout(Module):
    """Maxout unit (Goodfellow et al., 2013): ``h_i = max_j (x W_ij^T + b_ij)`` over ``pieces`` linear
    pieces per output.

    Holds ``linear = Linear(in_features, out_features * pieces)``; output unit ``i`` takes the max over
    rows ``i * pieces .. i * pieces + pieces - 1`` of ``linear.weight`` (contiguous pieces, as
    :func:`shendu.functional.maxout`). It has ``pieces`` times the parameters of a Linear.
    Shapes: ``(*, in_features) -> (*, out_features)``.

    >>> import shendu
    >>> from shendu import nn
    >>> m = nn.Maxout(10, 4, pieces=3)
    >>> m(shendu.randn(2, 10)).shape
    (2, 4)
    >>> m
    Maxout(
      in_features=10, out_features=4, pieces=3
      (linear): Linear(in_features=10, out_features=12, bias=True)
    )
    """

    def __init__(self, in_features: int, out_features: int, pieces: int, bias: bool = True, dtype=None):
        super().__init__()
        if not isinstance(pieces, int) or isinstance(pieces, bool) or pieces < 1:
            raise ArgumentError(f"Maxout: pieces must be a positive integer, got {pieces!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.pieces = pieces
        self.linear = Linear(in_features, out_features * pieces, bias=bias, dtype=dtype)

    def forward(self, input):
        return F.maxout(self.linear(input), self.pieces, dim=-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}"
