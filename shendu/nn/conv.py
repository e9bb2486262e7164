"""Convolution layers: ``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d`` (PyTorch's arguments).

Each layer holds ``weight`` and ``bias`` and calls :func:`shendu.functional.conv2d` (etc.). Weights are
initialised as PyTorch's ``reset_parameters`` does: ``kaiming_uniform_(a=sqrt(5))``, i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias from the same bound, so ``state_dict``s move between
the two libraries unchanged. ``padding_mode`` ``'reflect'``, ``'replicate'`` and ``'circular'`` pad with
:func:`shendu.functional.pad` and convolve unpadded, as torch does.

``algorithm`` (``"auto"``, ``"direct"``, ``"im2col"``, ``"fft"``, ``"winograd"``, ``"winograd2x2"``) picks
how the convolution is computed (see :mod:`shendu.ops.conv`); it is an attribute and may be changed
at any time. ``shendu.ops.conv.last_algorithm()`` reports what the last call ran.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from shendu import backend
from shendu import functional as F
from shendu.errors import ArgumentError, ShapeError
from shendu.nn import init
from shendu.nn.module import Module, Parameter
from shendu.ops.conv import ALGORITHMS

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(layer: str, name: str, value, nd: int) -> tuple:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value),) * nd
    if isinstance(value, (tuple, list)) and len(value) == nd and all(isinstance(v, numbers.Integral) for v in value):
        return tuple(int(v) for v in value)
    raise ArgumentError(f"{layer}: {name} must be an int or a tuple of {nd} ints, got {value!r}")


class _ConvNd(Module):
    _nd = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 padding_mode, output_padding=0, algorithm="auto", device=None, dtype=None):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, numbers.Integral) or v <= 0:
                raise ArgumentError(f"{name}: {what} must be a positive int, got {v!r}")
        if not isinstance(groups, numbers.Integral) or groups <= 0:
            raise ArgumentError(f"{name}: groups must be a positive int, got {groups!r}")
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if v % groups:
                raise ArgumentError(f"{name}: {what} ({v}) must be divisible by groups ({groups})")
        if padding_mode not in _PADDING_MODES:
            raise ArgumentError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        if self._transposed and padding_mode != "zeros":
            raise ArgumentError(f"{name}: only padding_mode='zeros' is supported, as in torch")
        if algorithm not in ALGORITHMS:
            raise ArgumentError(f"{name}: unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _tuple(name, "kernel_size", kernel_size, nd)
        self.stride = _tuple(name, "stride", stride, nd)
        self.dilation = _tuple(name, "dilation", dilation, nd)
        if isinstance(padding, str):
            if padding not in ("same", "valid") or self._transposed:
                allowed = "an int or a tuple" if self._transposed else "an int, a tuple, 'same' or 'valid'"
                raise ArgumentError(f"{name}: padding must be {allowed}, got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ArgumentError(f"{name}: padding='same' is not supported for strided convolutions "
                                    f"(stride {self.stride}), as in torch")
            self.padding = padding
        else:
            self.padding = _tuple(name, "padding", padding, nd)
        self.output_padding = _tuple(name, "output_padding", output_padding, nd)
        self.groups = int(groups)
        self.padding_mode = padding_mode
        self.algorithm = algorithm
        dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        shape = ((in_channels, out_channels // groups) if self._transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dt))
        self.bias = Parameter(np.empty(out_channels, dt)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: weight ~ kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias likewise."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _explicit_padding(self) -> tuple:
        """F.pad amounts (last dim first) for the non-zeros padding modes."""
        if self.padding == "valid":
            return (0, 0) * self._nd
        pads = []
        for i in reversed(range(self._nd)):
            if self.padding == "same":
                total = self.dilation[i] * (self.kernel_size[i] - 1)
                pads += [total // 2, total - total // 2]
            else:
                pads += [self.padding[i]] * 2
        return tuple(pads)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.algorithm != "auto":
            s += f", algorithm={self.algorithm}"
        return s


class _Conv(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, algorithm="auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, algorithm, device, dtype)

    def forward(self, input):
        conv = F.conv2d if self._nd == 2 else F.conv1d
        if self.padding_mode != "zeros":
            input = F.pad(input, self._explicit_padding(), mode=self.padding_mode)
            return conv(input, self.weight, self.bias, self.stride, 0, self.dilation, self.groups,
                        algorithm=self.algorithm)
        return conv(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                    algorithm=self.algorithm)


class Conv1d(_Conv):
    """1-D convolution layer over ``(N, C_in, L)``; weight ``(C_out, C_in/groups, k)``.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.Conv1d(16, 33, 3, stride=2)(shendu.randn(20, 16, 50)).shape
    (20, 33, 24)
    """

    _nd = 1


class Conv2d(_Conv):
    """2-D convolution layer over ``(N, C_in, H, W)``; weight ``(C_out, C_in/groups, kh, kw)``.

    ``H_out = floor((H + 2 padding - dilation (kh - 1) - 1) / stride) + 1``.

    >>> import shendu
    >>> from shendu import nn
    >>> conv = nn.Conv2d(3, 8, 3, padding=1)
    >>> conv(shendu.randn(2, 3, 16, 16)).shape
    (2, 8, 16, 16)
    >>> conv
    Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    """

    _nd = 2


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, *, algorithm="auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, algorithm, device, dtype)

    def _output_padding(self, input, output_size) -> tuple:
        """torch's rule: the output_padding that makes the output exactly ``output_size``."""
        if output_size is None:
            return self.output_padding
        size = tuple(int(s) for s in output_size)[-self._nd:]
        if len(size) != self._nd:
            raise ShapeError(f"{type(self).__name__}: output_size must have {self._nd} or {self._nd + 2} "
                             f"elements, got {tuple(output_size)}")
        spatial = input.shape[-self._nd:]
        out = []
        for i in range(self._nd):
            smallest = ((spatial[i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            if not smallest <= size[i] < smallest + self.stride[i]:
                raise ShapeError(f"{type(self).__name__}: requested output size {size} is not reachable: "
                                 f"dimension {i} must be in [{smallest}, {smallest + self.stride[i] - 1}]")
            out.append(size[i] - smallest)
        return tuple(out)

    def forward(self, input, output_size=None):
        conv = F.conv_transpose2d if self._nd == 2 else F.conv_transpose1d
        return conv(input, self.weight, self.bias, self.stride, self.padding,
                    self._output_padding(input, output_size), self.groups, self.dilation,
                    algorithm=self.algorithm)


class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution layer; weight ``(C_in, C_out/groups, k)``.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.ConvTranspose1d(4, 2, 3, stride=2)(shendu.randn(1, 4, 5)).shape
    (1, 2, 11)
    """

    _nd = 1


class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution layer ("deconvolution"); weight ``(C_in, C_out/groups, kh, kw)``.

    ``H_out = (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1``; ``forward`` also takes
    ``output_size`` to choose among the sizes a strided Conv2d maps to the same input size.

    >>> import shendu
    >>> from shendu import nn
    >>> up = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1)
    >>> x = shendu.randn(1, 16, 12, 12)
    >>> up(x).shape, up(x, output_size=(24, 24)).shape
    ((1, 8, 23, 23), (1, 8, 24, 24))
    """

    _nd = 2
