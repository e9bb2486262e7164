"""Deformable convolution (DCN v1 and v2) and deformable RoI pooling.

Deformable convolution (Dai et al., ICCV 2017; Zhu et al., CVPR 2019) samples its kernel taps at learned,
fractional offsets from the regular grid, and (v2) scales each tap by a learned mask:

``y[n, o, p, q] = b[o] + sum_{c, k} w[o, c, k] * m[n, k, p, q] * x_c(p*s - pad + i*d + dy_k, q*s - pad + j*d + dx_k)``

for kernel position ``k = i*kw + j``, with ``x_c(y, x)`` the zero-padded bilinear read of channel ``c``.
It runs as im2col + GEMM where the columns are sampled (:mod:`shendu.ops.kernels.deform`); backward
is a GEMM for the weight and the column gradient, then the column gradient goes back to the input
(scatter with the bilinear weights), the offsets (derivatives of the bilinear weights) and the mask
(the sampled values).

Deformable RoI pooling (DCN v1, §3.2; mmcv's ``deform_roi_pool``) is RoI Align whose every bin is
shifted by a learned offset, normalised by the RoI's size.

API: :func:`deform_conv2d` (torchvision's signature and offset layout), :class:`DeformConv2d` (a layer
that also owns its zero-initialised offset/mask branch), :func:`deform_roi_pool`, :class:`DeformRoIPool`,
:class:`DeformRoIPoolPack`, and :func:`offset_param_groups` (optimizer groups with a smaller learning
rate for the offset branches).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from shendu import backend, nn
from shendu import functional as F
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError, fmt_shape
from shendu.nn import init
from shendu.nn.module import Module, Parameter
from shendu.ops._util import as_tensor_arg
from shendu.ops.kernels import deform as _deform

__all__ = ["deform_conv2d", "DeformConv2d", "deform_roi_pool", "DeformRoIPool", "DeformRoIPoolPack",
           "offset_param_groups"]


# ------------------------------------------------------------------------------------------ Functions
class DeformConv2dFunction(Function):
    """Deformable convolution of ``x`` with offsets, optional mask, weight and optional bias."""

    def forward(ctx, x, offset, mask, w, b, *, stride, pads, dilation, groups):
        ctx.geometry = (stride, pads, dilation, groups)
        y, cols = _deform.deform_conv2d_forward(x, offset, mask, w, stride, pads, dilation, groups)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        # the columns are the weight gradient's other factor; keep them only when it is needed
        ctx.save_for_backward(x, offset, mask, w, cols if ctx.needs_input_grad[3] else None)
        return y

    def backward(ctx, gy):
        x, offset, mask, w, cols = ctx.saved
        nx, no, nm, nw, nb = ctx.needs_input_grad
        gx, goff, gmask, gw = _deform.deform_conv2d_backward(gy, cols, x, offset, mask, w, *ctx.geometry,
                                                             need_input=nx, need_offset=no, need_mask=nm,
                                                             need_weight=nw)
        return gx, goff, gmask, gw, (gy.sum(axis=(0, 2, 3)) if nb else None)


class DeformRoIPoolFunction(Function):
    """Deformable RoI pooling of ``x`` over ``rois`` with optional per-bin offsets."""

    def forward(ctx, x, rois, offset, *, output_size, spatial_scale, sampling_ratio, gamma):
        ctx.args = (output_size, spatial_scale, sampling_ratio, gamma)
        ctx.save_for_backward(x, rois, offset)
        return _deform.deform_roi_pool_forward(x, rois, offset, *ctx.args)

    def backward(ctx, gy):
        x, rois, offset = ctx.saved
        nx, _, no = ctx.needs_input_grad
        gx, goff = _deform.deform_roi_pool_backward(gy, x, rois, offset, *ctx.args, need_input=nx, need_offset=no)
        return gx, None, goff


# ------------------------------------------------------------------------------------ argument checks
def _pair(op: str, name: str, value, minimum: int) -> tuple:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        out = (int(value),) * 2
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        out = tuple(int(v) for v in value)
    else:
        raise ArgumentError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ArgumentError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return out


def _float_tensors(op: str, **tensors) -> dict:
    out = {k: None if v is None else as_tensor_arg(v) for k, v in tensors.items()}
    given = {k: v for k, v in out.items() if v is not None}
    for name, t in given.items():
        if t.dtype.kind != "f":
            raise DTypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}; call .float() first")
    if len({t.dtype for t in given.values()}) > 1:
        desc = ", ".join(f"{k} {t.dtype}" for k, t in given.items())
        raise DTypeError(f"{op}: dtypes differ ({desc}); cast them to one dtype (x.float() or model.double())")
    return out


def _check_deform_conv(x, offset, mask, w, b, stride, padding, dilation):
    op = "deform_conv2d"
    for name, t in (("input", x), ("offset", offset), ("weight", w)) + ((("mask", mask),) if mask is not None else ()):
        if t.ndim != 4:
            what = "(N, C, H, W)" if name == "input" else "(out_channels, in_channels/groups, kh, kw)" \
                if name == "weight" else f"(N, {'2*' if name == 'offset' else ''}offset_groups*kh*kw, H_out, W_out)"
            raise ShapeError(f"{op}: {name} must be 4-D {what}, got shape {fmt_shape(t.shape)}")
    stride, pads, dilation = _pair(op, "stride", stride, 1), _pair(op, "padding", padding, 0), \
        _pair(op, "dilation", dilation, 1)
    N, C, H, W = x.shape
    K, Cw, kh, kw = w.shape
    kk = kh * kw
    if Cw == 0 or C % Cw:
        raise ShapeError(f"{op}: input has {C} channels, not a multiple of weight.shape[1] = {Cw} (weight shape "
                         f"{fmt_shape(w.shape)}); weight must be (out_channels, in_channels/groups, kh, kw)")
    groups = C // Cw
    if K % groups:
        raise ShapeError(f"{op}: {K} output channels cannot be split into groups={groups} (in_channels {C} / "
                         f"weight.shape[1] {Cw}); out_channels must be divisible by groups")
    if b is not None and tuple(b.shape) != (K,):
        raise ShapeError(f"{op}: bias has shape {fmt_shape(b.shape)}; expected ({K},) (out_channels)")
    P = _deform.out_size(H, kh, stride[0], 2 * pads[0], dilation[0])
    Q = _deform.out_size(W, kw, stride[1], 2 * pads[1], dilation[1])
    if P <= 0 or Q <= 0:
        raise ShapeError(f"{op}: padded input {H + 2 * pads[0]}x{W + 2 * pads[1]} is smaller than the dilated "
                         f"kernel {dilation[0] * (kh - 1) + 1}x{dilation[1] * (kw - 1) + 1}; pad the input")
    G2 = offset.shape[1]
    if G2 == 0 or G2 % (2 * kk) or C % (G2 // (2 * kk)):
        raise ShapeError(f"{op}: offset has {G2} channels; expected 2*offset_groups*kh*kw = a multiple of "
                         f"{2 * kk} (interleaved (dy, dx) per kernel position) with offset_groups dividing the "
                         f"{C} input channels")
    G = G2 // (2 * kk)
    if tuple(offset.shape) != (N, G2, P, Q):
        raise ShapeError(f"{op}: offset has shape {fmt_shape(offset.shape)}; expected {fmt_shape((N, G2, P, Q))} "
                         f"(batch {N}, output size {P}x{Q} for stride {stride}, padding {pads}, dilation {dilation})")
    if mask is not None and tuple(mask.shape) != (N, G * kk, P, Q):
        raise ShapeError(f"{op}: mask has shape {fmt_shape(mask.shape)}; expected {fmt_shape((N, G * kk, P, Q))} "
                         f"(offset_groups*kh*kw = {G}*{kk} channels, one per offset pair)")
    return stride, pads, dilation, groups


# ----------------------------------------------------------------------------------- public functions
def deform_conv2d(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None) -> Tensor:
    """Deformable 2-D convolution (v1; v2 when ``mask`` is given), like ``torchvision.ops.deform_conv2d``.

    ``y[n,o,p,q] = b[o] + sum_{c,i,j} w[o,c,i,j] m[n,g,k,p,q] x_c(p*sh - ph + i*dh + dy, q*sw - pw + j*dw + dx)``
    with ``k = i*kw + j``, ``(dy, dx) = (offset[n, 2*(g*kk + k)], offset[n, 2*(g*kk + k) + 1])`` at ``(p, q)``
    for the offset group ``g`` of channel ``c``, and ``x_c(y, x)`` bilinear with zeros outside the map.

    Shapes: input ``(N, C, H, W)``; weight ``(K, C/groups, kh, kw)`` (``groups = C / weight.shape[1]``);
    offset ``(N, 2*G*kh*kw, P, Q)`` with ``G`` offset groups (each owns ``C/G`` consecutive channels),
    interleaved ``(dy, dx)`` per kernel position; mask ``(N, G*kh*kw, P, Q)`` (``None``: v1, all ones);
    bias ``(K,)``; output ``(N, K, P, Q)``, ``P = floor((H + 2ph - dh(kh-1) - 1)/sh) + 1``.

    Gradients flow to input, offset, mask, weight and bias (the offset gradient is undefined at integer
    sample coordinates, where the bilinear weights have kinks; like torchvision we take the right side).

    >>> import shendu
    >>> from shendu.vision.ops.deform_conv import deform_conv2d
    >>> x = shendu.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = shendu.ones(1, 1, 1, 1)
    >>> offset = shendu.full((1, 2, 4, 4), 0.5)          # every tap half a pixel down and right
    >>> deform_conv2d(x, offset, w)[0, 0, 0].tolist()    # mean of 4 neighbours; zeros past the edge
    [2.5, 3.5, 4.5, 2.5]
    """
    t = _float_tensors("deform_conv2d", input=input, offset=offset, mask=mask, weight=weight, bias=bias)
    x, off, m, w, b = t["input"], t["offset"], t["mask"], t["weight"], t["bias"]
    stride, pads, dilation, groups = _check_deform_conv(x, off, m, w, b, stride, padding, dilation)
    return DeformConv2dFunction.apply(x, off, m, w, b, stride=stride, pads=pads, dilation=dilation, groups=groups)


def _output_size(op: str, output_size) -> tuple:
    return _pair(op, "output_size", output_size, 1)


def deform_roi_pool(input, rois, offset=None, output_size=7, spatial_scale: float = 1.0, sampling_ratio: int = 0,
                    gamma: float = 0.1) -> Tensor:
    """Deformable RoI pooling (DCN v1 §3.2), mmcv's ``deform_roi_pool``: RoI Align with each bin shifted.

    For RoI ``r = (b, x1, y1, x2, y2)`` the box is ``x1*scale - 0.5 .. x2*scale - 0.5`` (RoI Align with
    ``aligned=True``), ``roi_w = x2' - x1'``; bin ``(i, j)`` is moved by ``gamma * (roi_w * offset[r, 0, i, j],
    roi_h * offset[r, 1, i, j])`` — note **(dx, dy)** order here, as in mmcv, unlike deform_conv2d's (dy, dx).
    Each output is the average of ``grid_h x grid_w`` bilinear samples (``sampling_ratio``, or
    ``ceil(roi_h / ph)`` x ``ceil(roi_w / pw)`` per RoI when ``sampling_ratio <= 0``) read with RoI Align's
    clamping rule. ``offset=None`` (or zeros) is plain RoI Align (``aligned=True``).

    Shapes: input ``(N, C, H, W)``, rois ``(K, 5)``, offset ``(K, 2, ph, pw)``; output ``(K, C, ph, pw)``.
    Gradients flow to input and offset (not to the boxes).

    >>> import shendu
    >>> from shendu.vision.ops.deform_conv import deform_roi_pool
    >>> x = shendu.arange(16.0).reshape(1, 1, 4, 4)
    >>> rois = shendu.tensor([[0, 0.5, 0.5, 2.5, 2.5]])
    >>> deform_roi_pool(x, rois, output_size=1)[0, 0].tolist()     # 2x2 samples at 0.5, 1.5: x(1, 1)
    [[5.0]]
    >>> shift = shendu.tensor([[[[0.5]], [[0.0]]]])                 # moved right by 0.1 * 2 * 0.5 px
    >>> round(deform_roi_pool(x, rois, shift, output_size=1).item(), 4)
    5.1
    """
    op = "deform_roi_pool"
    t = _float_tensors(op, input=input, offset=offset)
    x, off = t["input"], t["offset"]
    r = as_tensor_arg(rois)
    ph, pw = _output_size(op, output_size)
    if x.ndim != 4:
        raise ShapeError(f"{op}: input must be 4-D (N, C, H, W), got shape {fmt_shape(x.shape)}")
    if r.ndim != 2 or r.shape[1] != 5:
        raise ShapeError(f"{op}: rois must be (K, 5) rows (batch_index, x1, y1, x2, y2), got shape "
                         f"{fmt_shape(r.shape)}")
    if r.dtype.kind != "f":
        r = r.to(x.dtype)
    if r.shape[0] and not np.all((r.data[:, 0] >= 0) & (r.data[:, 0] < x.shape[0])):
        raise IndexOutOfRangeError(f"{op}: rois batch indices must be in [0, {x.shape[0]}), got "
                                   f"{sorted(set(r.data[:, 0].tolist()))[:5]}")
    if off is not None and tuple(off.shape) != (r.shape[0], 2, ph, pw):
        raise ShapeError(f"{op}: offset has shape {fmt_shape(off.shape)}; expected "
                         f"{fmt_shape((r.shape[0], 2, ph, pw))} (rois, (dx, dy), output_size)")
    if not isinstance(sampling_ratio, numbers.Integral):
        raise ArgumentError(f"{op}: sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
    return DeformRoIPoolFunction.apply(x, r.detach(), off, output_size=(ph, pw), spatial_scale=float(spatial_scale),
                                       sampling_ratio=int(sampling_ratio), gamma=float(gamma))


# --------------------------------------------------------------------------------------------- modules
class DeformConv2d(Module):
    """Deformable convolution layer that owns its offset (and mask) branch (mmcv's ``DeformConv2dPack`` /
    ``ModulatedDeformConv2dPack``).

    ``conv_offset`` is a plain convolution with the layer's kernel size, stride, padding and dilation
    that predicts ``2*G*kh*kw`` offsets (plus ``G*kh*kw`` mask logits when ``modulated=True``, DCN v2).
    Its weight and bias start at zero, so the layer starts as a plain convolution. The mask is
    ``mask_scale * sigmoid(logits)``; the default ``mask_scale=2`` is the official DCNv2 example's
    ``2*sigmoid`` (mask 1 at the start, range [0, 2]); ``mask_scale=1`` gives the paper's [0, 1] range
    (mmcv's choice, which starts every tap at half strength).

    ``offset_lr_mult`` scales the learning rate of the offset branch (default: 1 for v1, as the DCN
    paper's beta; 0.1 for v2, as the official DCNv2 example): build the optimizer with
    ``layer.param_groups(lr)`` or, for a whole model, :func:`offset_param_groups`.

    ``forward(input, offset=None, mask=None)``: given ``offset`` (and ``mask``) the layer behaves as
    torchvision's ``DeformConv2d`` and the branch is not used.

    ``weight (out_channels, in_channels/groups, kh, kw)`` and ``bias`` are initialised as ``nn.Conv2d``.

    >>> import shendu
    >>> from shendu.vision.ops.deform_conv import DeformConv2d
    >>> layer = DeformConv2d(3, 8, 3, padding=1, modulated=True)
    >>> x = shendu.randn(2, 3, 10, 10)
    >>> layer(x).shape
    (2, 8, 10, 10)
    >>> plain = shendu.conv2d(x, layer.weight, layer.bias, padding=1)   # zero offsets, mask 1 at the start
    >>> bool(((layer(x) - plain).abs().max() < 1e-5).item())
    True
    >>> [g["lr"] for g in layer.param_groups(0.01)]
    [0.01, 0.001]
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, modulated: bool = False, offset_groups: int = 1,
                 offset_lr_mult: float | None = None, mask_scale: float = 2.0, dtype=None):
        super().__init__()
        name = type(self).__name__
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups),
                        ("offset_groups", offset_groups)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
                raise ArgumentError(f"{name}: {what} must be a positive int, got {v!r}")
        for what, v, g in (("in_channels", in_channels, groups), ("out_channels", out_channels, groups),
                           ("in_channels", in_channels, offset_groups)):
            if v % g:
                raise ArgumentError(f"{name}: {what} ({v}) must be divisible by {g} (groups / offset_groups)")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(name, "kernel_size", kernel_size, 1)
        self.stride = _pair(name, "stride", stride, 1)
        self.padding = _pair(name, "padding", padding, 0)
        self.dilation = _pair(name, "dilation", dilation, 1)
        self.groups, self.offset_groups, self.modulated = int(groups), int(offset_groups), bool(modulated)
        self.offset_lr_mult = float(offset_lr_mult if offset_lr_mult is not None else (0.1 if modulated else 1.0))
        self.mask_scale = float(mask_scale)
        dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((out_channels, in_channels // groups, kh, kw), dt))
        self.bias = Parameter(np.empty(out_channels, dt)) if bias else None
        n_out = (3 if modulated else 2) * offset_groups * kh * kw
        self.conv_offset = nn.Conv2d(in_channels, n_out, self.kernel_size, self.stride, self.padding, self.dilation,
                                     bias=True, dtype=dt)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weight and bias as ``nn.Conv2d`` (kaiming_uniform_(a=sqrt(5))); the offset branch at zero."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            init.uniform_(self.bias, -bound, bound)
        init.zeros_(self.conv_offset.weight)
        init.zeros_(self.conv_offset.bias)

    def offsets(self, input) -> tuple:
        """``(offset, mask)`` predicted by the branch for ``input`` (mask None unless modulated)."""
        out = self.conv_offset(input)
        if not self.modulated:
            return out, None
        n = 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        return out[:, :n], self.mask_scale * F.sigmoid(out[:, n:])

    def forward(self, input, offset=None, mask=None):
        if offset is None:
            offset, mask = self.offsets(input)
        return deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)

    def offset_parameters(self) -> list:
        return list(self.conv_offset.parameters())

    def param_groups(self, lr: float) -> list:
        """Optimizer groups: the main weights at ``lr``, the offset branch at ``lr * offset_lr_mult``."""
        return offset_param_groups(self, lr)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.offset_groups != 1:
            s += f", offset_groups={self.offset_groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.modulated:
            s += f", modulated=True, mask_scale={self.mask_scale:g}"
        return s + f", offset_lr_mult={self.offset_lr_mult:g}"


class DeformRoIPool(Module):
    """:func:`deform_roi_pool` as a layer: ``forward(input, rois, offset=None)``.

    >>> import shendu
    >>> from shendu.vision.ops.deform_conv import DeformRoIPool
    >>> pool = DeformRoIPool(2, spatial_scale=0.5)
    >>> pool(shendu.randn(1, 4, 8, 8), shendu.tensor([[0, 0.0, 0.0, 10.0, 12.0]])).shape
    (1, 4, 2, 2)
    """

    def __init__(self, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 0, gamma: float = 0.1):
        super().__init__()
        self.output_size = _output_size(type(self).__name__, output_size)
        self.spatial_scale, self.sampling_ratio, self.gamma = float(spatial_scale), int(sampling_ratio), float(gamma)

    def forward(self, input, rois, offset=None):
        return deform_roi_pool(input, rois, offset, self.output_size, self.spatial_scale, self.sampling_ratio,
                               self.gamma)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale:g}, "
                f"sampling_ratio={self.sampling_ratio}, gamma={self.gamma:g}")


class DeformRoIPoolPack(DeformRoIPool):
    """Deformable RoI pooling with its offset predictor (DCN v1 §3.2, mmcv's ``DeformRoIPoolPack``):
    plain RoI pooling -> fc layers (``offset_fc``; the last one zero-initialised, so pooling starts as
    RoI Align) -> normalised offsets ``(K, 2, ph, pw)`` -> deformable RoI pooling. The DCN paper trains
    this fc at 0.01 x the base learning rate (``offset_lr_mult``; see :func:`offset_param_groups`).

    >>> import shendu
    >>> from shendu.vision.ops.deform_conv import DeformRoIPoolPack
    >>> pool = DeformRoIPoolPack(3, output_channels=4, deform_fc_channels=16)
    >>> pool(shendu.randn(1, 4, 8, 8), shendu.tensor([[0, 1.0, 1.0, 6.0, 5.0]])).shape
    (1, 4, 3, 3)
    """

    def __init__(self, output_size, output_channels: int, deform_fc_channels: int = 1024, spatial_scale: float = 1.0,
                 sampling_ratio: int = 0, gamma: float = 0.1, offset_lr_mult: float = 0.01):
        super().__init__(output_size, spatial_scale, sampling_ratio, gamma)
        ph, pw = self.output_size
        self.output_channels, self.offset_lr_mult = int(output_channels), float(offset_lr_mult)
        self.offset_fc = nn.Sequential(nn.Linear(ph * pw * output_channels, deform_fc_channels), nn.ReLU(),
                                       nn.Linear(deform_fc_channels, deform_fc_channels), nn.ReLU(),
                                       nn.Linear(deform_fc_channels, ph * pw * 2))
        init.zeros_(self.offset_fc[-1].weight)
        init.zeros_(self.offset_fc[-1].bias)

    def forward(self, input, rois, offset=None):
        if offset is None:
            plain = super().forward(input, rois)
            offset = self.offset_fc(plain.flatten(1)).reshape(plain.shape[0], 2, *self.output_size)
        return super().forward(input, rois, offset)

    def offset_parameters(self) -> list:
        return list(self.offset_fc.parameters())


def offset_param_groups(model: Module, lr: float) -> list:
    """Optimizer parameter groups for a model with deformable layers: every offset branch (a module with
    ``offset_parameters()`` and ``offset_lr_mult``) at ``lr * offset_lr_mult``, everything else at ``lr``.

    >>> import shendu
    >>> from shendu import nn
    >>> from shendu.vision.ops.deform_conv import DeformConv2d, offset_param_groups
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), DeformConv2d(4, 4, 3, modulated=True))
    >>> [(len(g["params"]), g["lr"]) for g in offset_param_groups(model, 0.1)]
    [(4, 0.1), (2, 0.010000000000000002)]
    >>> opt = shendu.optim.SGD(offset_param_groups(model, 0.1), lr=0.1)
    """
    groups: dict = {}
    seen = set()
    for m in model.modules():
        if hasattr(m, "offset_parameters") and hasattr(m, "offset_lr_mult"):
            for p in m.offset_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    groups.setdefault(m.offset_lr_mult, []).append(p)
    rest = [p for p in model.parameters() if id(p) not in seen]
    return [{"params": rest, "lr": lr}] + [{"params": ps, "lr": lr * mult} for mult, ps in groups.items()]
