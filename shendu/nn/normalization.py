"""Normalization layers: ``BatchNorm1d/2d/3d``, ``InstanceNorm1d/2d``, ``LayerNorm``, ``GroupNorm``,
``LocalResponseNorm``, and :func:`fuse_conv_bn` (folding an eval-mode BatchNorm into its convolution).

Parameters, buffers, defaults and ``state_dict`` keys are PyTorch's (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``), so weights move between the two.
"""

from __future__ import annotations

import copy
import numbers

import numpy as np

from shendu import backend
from shendu import functional as F
from shendu.autograd.engine import no_grad
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, ShapeError, fmt_shape
from shendu.nn.module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "LayerNorm",
           "GroupNorm", "LocalResponseNorm", "fuse_conv_bn"]


def _dtype(dtype):
    return np.dtype(dtype) if dtype is not None else backend.get_default_dtype()


def _positive_int(layer: str, name: str, v) -> None:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
        raise ArgumentError(f"{layer}: {name} must be a positive integer, got {v!r}")


class _NormBase(Module):
    """Shared state of batch and instance norm: per-channel affine parameters and running statistics."""

    _dims: tuple = ()  # accepted input ranks
    _unbatched_ndim = None  # the rank of a single sample without batch dim, where accepted
    _shape_doc = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        super().__init__()
        _positive_int(type(self).__name__, "num_features", num_features)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dt = _dtype(dtype)
        if affine:
            self.weight = Parameter(np.ones(num_features, dt))
            self.bias = Parameter(np.zeros(num_features, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dt)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dt)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, input) -> None:
        name = type(self).__name__
        if input.ndim not in self._dims:
            raise ShapeError(f"{name}: expected {' or '.join(f'{d}D' for d in self._dims)} input "
                             f"{self._shape_doc}, got shape {fmt_shape(input.shape)}")
        c = input.shape[0] if input.ndim == self._unbatched_ndim else input.shape[1]
        if c != self.num_features:
            raise ShapeError(f"{name}: input has {c} channels (shape {fmt_shape(input.shape)}) but "
                             f"num_features={self.num_features}; the channel dimension is dim 1 (NCHW)")

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    """Batch normalization layer; see :func:`shendu.functional.batch_norm` for the formulas.

    Training uses batch statistics and updates ``running_mean``/``running_var`` with ``momentum`` (the
    running variance with the unbiased batch variance, as torch); ``momentum=None`` makes them the
    cumulative average over ``num_batches_tracked`` batches. Eval uses the running statistics, unless
    ``track_running_stats=False``, in which case batch statistics are used in eval too.
    """

    def forward(self, input):
        input = input if isinstance(input, Tensor) else Tensor(input)
        self._check_input(input)
        training = self.training or self.running_mean is None
        factor = 0.0 if self.momentum is None else self.momentum
        update = self.training and self.track_running_stats
        if update and self.momentum is None:
            factor = 1.0 / (int(self.num_batches_tracked.data) + 1)
        use_stats = not self.training or self.track_running_stats
        out = F.batch_norm(input, self.running_mean if use_stats else None,
                           self.running_var if use_stats else None, self.weight, self.bias,
                           training, factor, self.eps)
        if update:  # after the call, so an input error leaves the counter unchanged
            self.num_batches_tracked.data += 1
        return out


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` or ``(N, C, L)`` input, statistics per channel C.

    >>> import shendu
    >>> from shendu import nn
    >>> bn = nn.BatchNorm1d(3)
    >>> bn(shendu.randn(8, 3)).shape
    (8, 3)
    >>> list(bn.state_dict())
    ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
    """

    _dims = (2, 3)
    _shape_doc = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)`` input, statistics per channel over N, H and W.

    >>> import shendu
    >>> from shendu import nn
    >>> bn = nn.BatchNorm2d(4)
    >>> y = bn(shendu.randn(2, 4, 5, 5))
    >>> bn.num_batches_tracked.item()
    1
    """

    _dims = (4,)
    _shape_doc = "(N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch norm over ``(N, C, D, H, W)`` input."""

    _dims = (5,)
    _shape_doc = "(N, C, D, H, W)"


class _InstanceNorm(_NormBase):
    """Instance normalization layer; see :func:`shendu.functional.instance_norm`. Defaults differ from
    batch norm: ``affine=False``, ``track_running_stats=False`` (then eval also uses the instance's own
    statistics). Unbatched input ``(C, *)`` is accepted as torch does."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, input):
        input = input if isinstance(input, Tensor) else Tensor(input)
        self._check_input(input)
        unbatched = input.ndim == self._unbatched_ndim
        if unbatched:
            input = input.unsqueeze(0)
        use_input_stats = self.training or not self.track_running_stats
        out = F.instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                              use_input_stats, 0.1 if self.momentum is None else self.momentum, self.eps)
        return out.squeeze(0) if unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """Instance norm over ``(N, C, L)`` (or unbatched ``(C, L)``).

    >>> import shendu
    >>> from shendu import nn
    >>> nn.InstanceNorm1d(3)(shendu.randn(2, 3, 10)).shape
    (2, 3, 10)
    """

    _dims = (2, 3)
    _unbatched_ndim = 2
    _shape_doc = "(N, C, L) or (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance norm over ``(N, C, H, W)`` (or unbatched ``(C, H, W)``).

    >>> import shendu
    >>> from shendu import nn
    >>> nn.InstanceNorm2d(3, affine=True)(shendu.randn(2, 3, 4, 4)).shape
    (2, 3, 4, 4)
    """

    _dims = (3, 4)
    _unbatched_ndim = 3
    _shape_doc = "(N, C, H, W) or (C, H, W)"


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` dims, with elementwise ``weight`` and
    ``bias`` of that shape (``elementwise_affine``; ``bias=False`` drops the bias). See
    :func:`shendu.functional.layer_norm`.

    >>> import shendu
    >>> from shendu import nn
    >>> ln = nn.LayerNorm(768)
    >>> ln(shendu.randn(2, 5, 768)).shape
    (2, 5, 768)
    >>> ln.weight.shape
    (768,)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        for s in self.normalized_shape:
            _positive_int("LayerNorm", "normalized_shape entries", s)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dt = _dtype(dtype)
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dt))
            self.bias = Parameter(np.zeros(self.normalized_shape, dt)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Group normalization: ``num_channels`` split into ``num_groups`` groups normalised per sample, with
    per-channel ``weight``/``bias`` (``affine``). See :func:`shendu.functional.group_norm`.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.GroupNorm(2, 6)(shendu.randn(3, 6, 4, 4)).shape
    (3, 6, 4, 4)
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, device=None,
                 dtype=None):
        super().__init__()
        _positive_int("GroupNorm", "num_groups", num_groups)
        _positive_int("GroupNorm", "num_channels", num_channels)
        if num_channels % num_groups:
            raise ArgumentError(f"GroupNorm: num_channels={num_channels} must be divisible by "
                                f"num_groups={num_groups}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        dt = _dtype(dtype)
        if affine:
            self.weight = Parameter(np.ones(num_channels, dt))
            self.bias = Parameter(np.zeros(num_channels, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def forward(self, input):
        input = input if isinstance(input, Tensor) else Tensor(input)
        if input.ndim >= 2 and input.shape[1] != self.num_channels:
            raise ShapeError(f"GroupNorm: input has {input.shape[1]} channels (shape {fmt_shape(input.shape)}) "
                             f"but num_channels={self.num_channels}")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class LocalResponseNorm(Module):
    """Local response normalization across channels (AlexNet); torch's definition divides ``alpha`` by
    ``size`` — see :func:`shendu.functional.local_response_norm` for the paper's form.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.LocalResponseNorm(5, k=2.0)(shendu.randn(1, 8, 3, 3)).shape
    (1, 8, 3, 3)
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        _positive_int("LocalResponseNorm", "size", size)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, input):
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def fuse_conv_bn(conv: Module, bn: _BatchNorm) -> Module:
    """A new convolution equal to ``bn(conv(x))`` for an eval-mode BatchNorm (the notes: "at test time
    BN becomes linear and can be fused"). With ``s = gamma / sqrt(running_var + eps)`` per output channel,
    ``W' = W * s[:, None, None, None]`` and ``b' = (b - running_mean) * s + beta`` (b = 0 without a conv
    bias). Valid only for inference (fixed running statistics) and conv -> BN with nothing in between;
    the inputs are not modified.

    >>> import shendu
    >>> from shendu import nn
    >>> conv, bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4).eval()
    >>> fused = fuse_conv_bn(conv, bn)
    >>> x = shendu.randn(1, 3, 6, 6)
    >>> bool(((fused(x) - bn(conv(x))).abs().max() < 1e-5).item())
    True
    """
    out_channels = conv.weight.shape[0]
    if not isinstance(bn, _BatchNorm) or bn.num_features != out_channels:
        raise ShapeError(f"fuse_conv_bn: the BatchNorm must have num_features={out_channels} (the conv's "
                         f"output channels), got {bn!r}")
    if bn.running_mean is None:
        raise ArgumentError("fuse_conv_bn: the BatchNorm has no running statistics "
                            "(track_running_stats=False), so it is not linear at inference and cannot be fused")
    w = conv.weight.data
    dt = w.dtype
    var = bn.running_var.data.astype(np.float64)
    scale = 1.0 / np.sqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.data
    b = conv.bias.data if conv.bias is not None else np.zeros(out_channels)
    shift = (b - bn.running_mean.data) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.data
    with no_grad():
        fused = copy.deepcopy(conv)
    fused.weight = Parameter((w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(dt))
    fused.bias = Parameter(shift.astype(dt))
    return fused
