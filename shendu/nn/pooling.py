"""Pooling and upsampling layers: thin Modules over :mod:`shendu.ops.pooling` (torch's names and
constructor arguments). ``StochasticPool2d`` samples in training and averages in eval mode;
``SortPool2d`` owns its learned rank weights; ``FractionalMaxPool2d`` draws new windows each call.

>>> import shendu
>>> from shendu import nn
>>> nn.MaxPool2d(2)(shendu.arange(16.).reshape(1, 1, 4, 4)).shape
(1, 1, 2, 2)
"""

from __future__ import annotations

from shendu import backend
from shendu import functional as F
from shendu.autograd.tensor import Tensor
from shendu.nn.module import Module, Parameter

__all__ = [
    "MaxPool1d", "MaxPool2d", "MinPool2d", "AvgPool1d", "AvgPool2d", "LPPool1d", "LPPool2d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "GlobalAvgPool2d",
    "MaxUnpool1d", "MaxUnpool2d", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d",
    "StochasticPool2d", "KMaxPool1d", "SortPool2d", "FractionalMaxPool2d",
]


class _MaxPoolNd(Module):
    _fn = None

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                              self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """:func:`shendu.functional.max_pool1d` as a layer."""
    _fn = staticmethod(F.max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """:func:`shendu.functional.max_pool2d` as a layer."""
    _fn = staticmethod(F.max_pool2d)


class MinPool2d(_MaxPoolNd):
    """:func:`shendu.functional.min_pool2d` (``-max_pool2d(-x)``) as a layer."""
    _fn = staticmethod(F.min_pool2d)


class AvgPool1d(Module):
    """:func:`shendu.functional.avg_pool1d` as a layer."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = stride if stride is not None else kernel_size
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, input):
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """:func:`shendu.functional.avg_pool2d` as a layer."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = stride if stride is not None else kernel_size
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class LPPool1d(Module):
    """:func:`shendu.functional.lp_pool1d` as a layer."""

    def __init__(self, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False):
        super().__init__()
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode

    def forward(self, input):
        return F.lp_pool1d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)

    def extra_repr(self) -> str:
        return f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}"


class LPPool2d(LPPool1d):
    """:func:`shendu.functional.lp_pool2d` as a layer."""

    def forward(self, input):
        return F.lp_pool2d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode)


class _Adaptive(Module):
    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_Adaptive):
    """:func:`shendu.functional.adaptive_avg_pool1d` as a layer."""

    def forward(self, input):
        return F.adaptive_avg_pool1d(input, self.output_size)


class AdaptiveAvgPool2d(_Adaptive):
    """:func:`shendu.functional.adaptive_avg_pool2d` as a layer."""

    def forward(self, input):
        return F.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveMaxPool1d(_Adaptive):
    """:func:`shendu.functional.adaptive_max_pool1d` as a layer."""

    def forward(self, input):
        return F.adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(_Adaptive):
    """:func:`shendu.functional.adaptive_max_pool2d` as a layer."""

    def forward(self, input):
        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class GlobalAvgPool2d(Module):
    """Global average pooling, (N, C, H, W) -> (N, C) (or (N, C, 1, 1) with ``keepdim``): the
    Network-in-Network replacement for fully connected classifier layers."""

    def __init__(self, keepdim: bool = False):
        super().__init__()
        self.keepdim = keepdim

    def forward(self, input):
        return F.global_avg_pool2d(input, self.keepdim)

    def extra_repr(self) -> str:
        return f"keepdim={self.keepdim}"


class MaxUnpool1d(Module):
    """:func:`shendu.functional.max_unpool1d` as a layer: ``layer(input, indices, output_size=None)``."""

    _fn = staticmethod(F.max_unpool1d)

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = stride if stride is not None else kernel_size

    def forward(self, input, indices, output_size=None):
        return type(self)._fn(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool2d(MaxUnpool1d):
    """:func:`shendu.functional.max_unpool2d` as a layer: ``layer(input, indices, output_size=None)``."""

    _fn = staticmethod(F.max_unpool2d)


class Upsample(Module):
    """:func:`shendu.functional.interpolate` as a layer (modes 'nearest', 'linear', 'bilinear',
    'bed_of_nails')."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, input):
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """Nearest-neighbour 2-d upsampling (``Upsample(mode='nearest')``)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "nearest")


class UpsamplingBilinear2d(Upsample):
    """Bilinear 2-d upsampling with ``align_corners=True``, as torch's layer of that name."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "bilinear", True)


class StochasticPool2d(Module):
    """Stochastic pooling (Zeiler & Fergus 2013): samples one element per window (p ∝ activation)
    in training mode, the probability-weighted average in eval mode. Inputs must be non-negative.
    ``generator`` (optional) makes the draws reproducible independently of the global seed."""

    def __init__(self, kernel_size, stride=None, generator: backend.Generator | None = None):
        super().__init__()
        self.kernel_size, self.stride, self.generator = kernel_size, stride, generator

    def forward(self, input):
        return F.stochastic_pool2d(input, self.kernel_size, self.stride, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class KMaxPool1d(Module):
    """K-max pooling (DCNN): the ``k`` largest values along ``dim`` in their original order."""

    def __init__(self, k: int, dim: int = -1):
        super().__init__()
        self.k, self.dim = k, dim

    def forward(self, input):
        return F.kmax_pool1d(input, self.k, self.dim)

    def extra_repr(self) -> str:
        return f"k={self.k}, dim={self.dim}"


class SortPool2d(Module):
    """Sort pooling (Singla 2017): 2x2/2 windows, sorted descending, the top ``k`` combined with
    ``softmax(weight)``; ``weight[0]`` multiplies the largest value. ``weight`` (k,) is a Parameter
    shared by all channels, initialised N(0, 0.1^2) as in the reference code.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.SortPool2d(3)(shendu.ones(1, 2, 4, 4)).shape
    (1, 2, 2, 2)
    """

    def __init__(self, k: int = 2, generator: backend.Generator | None = None):
        super().__init__()
        self.k = k
        w = backend.rng(generator).normal(0.0, 0.1, (k,)).astype(backend.get_default_dtype())
        self.weight = Parameter(Tensor(w))

    def forward(self, input):
        return F.sort_pool2d(input, self.weight)

    def extra_repr(self) -> str:
        return f"k={self.k}"


class FractionalMaxPool2d(Module):
    """:func:`shendu.functional.fractional_max_pool2d` as a layer (torch's arguments, plus ``method``
    and ``overlapping`` for Graham's sequences). New random windows on every call, in training and eval
    (Graham averages several passes at test time)."""

    def __init__(self, kernel_size, output_size=None, output_ratio=None, return_indices: bool = False,
                 _random_samples=None, method: str = "torch", overlapping: bool = False):
        super().__init__()
        self.kernel_size, self.output_size, self.output_ratio = kernel_size, output_size, output_ratio
        self.return_indices, self._random_samples = return_indices, _random_samples
        self.method, self.overlapping = method, overlapping

    def forward(self, input):
        return F.fractional_max_pool2d(input, self.kernel_size, self.output_size, self.output_ratio,
                                       self.return_indices, self._random_samples, method=self.method,
                                       overlapping=self.overlapping)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, output_size={self.output_size}, output_ratio={self.output_ratio}"
