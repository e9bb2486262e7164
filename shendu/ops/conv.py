"""Convolution: ``conv1d``, ``conv2d``, ``conv_transpose1d``, ``conv_transpose2d`` (NCHW, PyTorch's weights).

``y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] x_pad[n, c, i*s + u*d, j*s + v*d]`` — a cross-correlation,
as in every deep-learning library. Four algorithms compute it, selected with ``algorithm=``:

========== ===================================================================================
direct     loop over the kh*kw kernel offsets, one GEMM of the shifted input view each (the
           definition and the reference; with one channel per group a broadcast multiply-add)
im2col     the notes' K x N matrix: columns ``(C*kh*kw, P*Q)`` per image, one BLAS GEMM per chunk
           of images (a 1x1 stride-1 convolution is a plain GEMM on the input); backward
           recomputes the columns and adds them back with col2im (or, at stride 1, convolves
           ``gy`` with the flipped kernel); depthwise and grouped convolutions batch the groups
fft        convolution theorem with ``scipy.fft`` real transforms at fast sizes (large kernels)
winograd   minimal filtering F(4x4, 3x3) (``winograd2x2``: F(2x2, 3x3)); 3x3, stride 1, dilation 1;
           forward and both gradients in the Winograd domain (the exact adjoint of the forward)
auto       the cheapest by :func:`estimate_costs` (a cost model calibrated on bench/conv.py and
           examples/conv_algorithms.py); the choice is reported by ``last_algorithm()``
========== ===================================================================================

The kernels live in :mod:`shendu.ops.kernels` (``direct``, ``im2col``, ``fft``, ``winograd``); this file
checks arguments, picks the algorithm, and wires forward and backward. ``last_algorithm()`` says which
algorithm the most recent convolution ran (``"auto"`` resolved to its choice).

Backward: ``gx`` is the transposed convolution of ``gy`` with ``w`` (col2im of ``w^T gy``), ``gw`` the
correlation of ``x`` with ``gy`` summed over the batch, ``gb = sum gy``. ``conv_transpose2d`` is the
adjoint: its forward is conv's input gradient and its backward uses conv's forward and weight gradient.

Threads: the kernels split the batch into chunks run by one thread per CPU, each with a one-thread
BLAS (:mod:`shendu.ops.kernels.parallel`), so copies and GEMMs both use every core.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

from shendu.autograd.engine import grad_mode
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg
from shendu.ops.kernels import direct as _direct
from shendu.ops.kernels import fft as _fft
from shendu.ops.kernels import im2col as _im2col
from shendu.ops.kernels import parallel as _parallel
from shendu.ops.kernels import winograd as _winograd

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]

ALGORITHMS = ("auto", "direct", "im2col", "fft", "winograd", "winograd2x2", "winograd4x4")  # 4x4 = winograd

_last = {"algorithm": None}


def last_algorithm() -> str | None:
    """The algorithm the most recent convolution forward ran (``"auto"`` resolved), or None.

    >>> import shendu
    >>> from shendu.ops.conv import last_algorithm
    >>> _ = shendu.conv2d(shendu.randn(1, 8, 10, 10), shendu.randn(8, 8, 3, 3), padding=1, algorithm="fft")
    >>> last_algorithm()
    'fft'
    """
    return _last["algorithm"]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Everything but the arrays: ``stride=(sh, sw)``, ``pads=(top, bottom, left, right)``,
    ``dilation=(dh, dw)``, ``groups``."""

    stride: tuple
    pads: tuple
    dilation: tuple
    groups: int


# ------------------------------------------------------------------------------------ algorithm table
def _winograd_tile(algorithm: str) -> int:
    return 2 if algorithm == "winograd2x2" else 4


def _forward(algorithm, x, w, g: Geometry, b=None, team=False):
    """``conv(x, w) + b``: im2col and Winograd add the bias chunk by chunk on their threads, while the
    chunk's output is still in cache; the others add it afterwards. ``team``: an inference forward (no
    gradient will be asked for), which im2col and Winograd run on numba's OpenMP team."""
    if algorithm.startswith("winograd"):
        return _winograd.conv2d(x, w, g.pads, g.groups, _winograd_tile(algorithm), bias=b, team=team)
    if algorithm == "im2col":
        return _im2col.conv2d(x, w, g.stride, g.pads, g.dilation, g.groups, bias=b, team=team)
    kernel = {"direct": _direct, "fft": _fft}[algorithm]
    y = kernel.conv2d(x, w, g.stride, g.pads, g.dilation, g.groups)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def _grads(algorithm, gy, x, w, g: Geometry, need_input, need_weight, x_shape):
    """``(gx, gw)`` of the convolution of ``x`` (shape ``x_shape``; None if only gx is needed)."""
    if algorithm.startswith("winograd"):
        return _winograd.conv2d_grads(gy, x, w, g.pads, g.groups, _winograd_tile(algorithm),
                                      need_input=need_input, need_weight=need_weight, x_shape=x_shape)
    kernel = {"direct": _direct, "im2col": _im2col, "fft": _fft}[algorithm]
    return kernel.conv2d_grads(gy, x, w, g.stride, g.pads, g.dilation, g.groups,
                               need_input=need_input, need_weight=need_weight, x_shape=x_shape)


def winograd_problem(w_shape, g: Geometry) -> str | None:
    """Why Winograd cannot run this convolution, or None if it can."""
    if tuple(w_shape[2:]) != (3, 3):
        return f"a 3x3 kernel (got {w_shape[2]}x{w_shape[3]})"
    if g.stride != (1, 1):
        return f"stride 1 (got stride {g.stride}); Winograd tiles overlap by a fixed step"
    if g.dilation != (1, 1):
        return f"dilation 1 (got dilation {g.dilation})"
    return None


# Cost model constants, fitted (least squares on log time) to the forward+backward CPU time of 34
# (layer, algorithm) pairs measured on one thread of a 2-core Xeon with OpenBLAS, float32: the
# bench/conv.py layers and the four layers of the Fashion-MNIST CNN. Only their ratios matter. A
# GEMM's speed falls with few output channels (its narrow dimension).
_GEMM_FLOP = 1 / 42e9      # seconds per flop of a well-shaped GEMM
_COPY_ELEM = 1 / 1.07e9    # seconds per element of im2col's strided gathers/scatters
# seconds per tile element (alpha^2 per tile and channel) of one Winograd pass: numba kernels / NumPy
_TILE_ELEM = 8e-10 if _winograd.USE_NUMBA else 8e-9
_FILTER_ELEM = 1.4e-9      # seconds per element of a Winograd filter transform (alpha^2 K C/groups); the fitted
                           # 3.2e-9 scaled by the one-GEMM transform's measured 5.0 -> 2.2 ms (stage 4)
_FFT_ELEM = 1 / 0.73e9     # seconds per element * log2(length) of a 2-D real FFT
_CALL = 3e-4               # fixed cost of one call (Python, buffers, threads)


def _gemm_seconds(flops, narrow: int) -> float:
    return flops * _GEMM_FLOP / min(1.0, max(narrow, 4) / 64)


def estimate_costs(x_shape, w_shape, g: Geometry, threads: int = 1, inference: bool = False) -> dict:
    """Estimated forward+backward seconds of each applicable algorithm (the model behind ``auto``).

    im2col: 3 GEMMs of ``2 N K C k^2 P Q / groups`` flops plus ~3 passes over the column matrix
    (none for a plain 1x1 GEMM). winograd (F(4x4) and F(2x2)): the channel GEMMs shrink by
    ``(m+2)^2 / (m^2 k^2)``, but every pass transforms ``(m+2)^2`` values per tile and channel of its
    input and output (gathers, small GEMMs, transposes), which dominates for few channels, and the
    filters are transformed on every call (``alpha^2 K C`` values, 4x the weight for F(4x4)), which
    dominates for small batches of deep layers.
    fft: ~3 transforms of every input, output and filter plane at the padded size (the kernel size
    does not matter) plus small complex GEMMs per frequency. direct is the reference, never chosen
    (depthwise convolutions run as im2col's per-group GEMMs, measured faster than its multiply-adds).
    ``threads`` matters for a single image only (batches give every thread its own images): im2col
    then splits its column fill and GEMM over the threads, Winograd only its GEMMs and filter transform
    (which, for a small image of a deep layer, are narrow: few tiles per GEMM).
    ``inference``: no gradient will be asked for; a single image (one group) then gets the forward-only
    estimate of :func:`_single_image_inference_costs`, since it runs on numba's team with its own costs.

    >>> g = Geometry(stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    >>> sorted(estimate_costs((16, 64, 56, 56), (64, 64, 3, 3), g))
    ['fft', 'im2col', 'winograd', 'winograd2x2']
    """
    N, C, H, W = x_shape
    K, Cg, kh, kw = w_shape
    G = g.groups
    Kg = K // G
    P = _im2col.out_size(H, kh, g.stride[0], g.pads[0] + g.pads[1], g.dilation[0])
    Q = _im2col.out_size(W, kw, g.stride[1], g.pads[2] + g.pads[3], g.dilation[1])
    if inference and N == 1 and G == 1:
        fft = estimate_costs(x_shape, w_shape, g, threads)["fft"] / 3  # one of its three passes
        return {**_single_image_inference_costs(C, K, kh, kw, P, Q, g, threads), "fft": fft}
    gemm = 2.0 * N * K * Cg * kh * kw * P * Q
    cols = N * C * kh * kw * P * Q
    plain = (kh, kw) == (1, 1) and g.stride == (1, 1) and not any(g.pads)
    shared = threads if N == 1 else 1  # how many threads share one image's work
    costs = {"im2col": _CALL + (3 * _gemm_seconds(gemm, min(Kg, Cg * kh * kw))
                                + (0 if plain else 3 * cols * _COPY_ELEM)) / shared}
    if winograd_problem(w_shape, g) is None and min(Cg, Kg) >= 8:  # few channels: degenerate GEMMs
        for name, m in (("winograd", 4), ("winograd2x2", 2)):
            tiles = N * -(-P // m) * -(-Q // m)
            a2 = (m + 2) ** 2
            # (tiles x Cg) @ (Cg x Kg) per transform position: a small image's few tiles make a narrow GEMM
            channel_gemms = 3 * _gemm_seconds(2.0 * a2 * tiles * K * Cg, min(Kg, Cg, tiles))
            transforms = 3 * tiles * a2 * (C + K) * _TILE_ELEM
            filters = 3 * a2 * K * Cg * _FILTER_ELEM  # per call, whatever the batch: dominates at batch 1
            costs[name] = _CALL + (channel_gemms + filters) / shared + transforms
    Hp, Wp = H + g.pads[0] + g.pads[1], W + g.pads[2] + g.pads[3]
    Lh, Lw = _fft.fft_sizes(Hp, Wp)
    planes = N * C + N * K + K * Cg
    costs["fft"] = (_CALL + 3 * planes * Lh * Lw * math.log2(Lh * Lw) * _FFT_ELEM
                    + 3 * 8.0 * N * K * Cg * Lh * (Lw // 2 + 1) * _GEMM_FLOP)
    return costs


# The single-image inference model, fitted to the forward times of eleven 3x3 layers (32-512 channels,
# 4x4 to 56x56; im2col, F(4x4), F(2x2)) at batch 1 on this repository's 2-core machine, on numba's team:
# it picks the fastest on nine, and the two others cost 7 and 66 us more than their fastest (of 85 and
# 410 us). Winograd's forward transforms its filters on every call (alpha^2 K C values), which dominates a
# deep layer's small image; its channel GEMMs have the image's tiles as rows (narrow for small maps).
_INF_GEMM_FLOP = 1 / 120e9   # seconds per flop of one thread's GEMM
_INF_COPY_ELEM = 1.5e-9      # seconds per element of im2col's column fill (one pass)
_INF_TILE_ELEM = 1.6e-9      # seconds per tile element of Winograd's input and output transforms
_INF_FILTER_ELEM = 4e-10     # seconds per transformed-filter element
_INF_CALL = 2e-5             # fixed cost of one forward call


def _single_image_inference_costs(C, K, kh, kw, P, Q, g: Geometry, threads: int) -> dict:
    """Forward seconds of im2col and Winograd for one image (one group), every part shared by
    ``threads``: im2col's fill and GEMM; Winograd's filter transform, tile transforms and GEMMs."""
    gemm = 2.0 * K * C * kh * kw * P * Q
    plain = (kh, kw) == (1, 1) and g.stride == (1, 1) and not any(g.pads)
    fill = 0 if plain else C * kh * kw * P * Q * _INF_COPY_ELEM
    narrow = min(1.0, max(min(K, C * kh * kw), 4) / 64)
    costs = {"im2col": _INF_CALL + (gemm * _INF_GEMM_FLOP / narrow + fill) / threads}
    if winograd_problem((K, C, kh, kw), g) is None and min(C, K) >= 8:
        for name, m in (("winograd", 4), ("winograd2x2", 2)):
            tiles = -(-P // m) * -(-Q // m)
            a2 = (m + 2) ** 2
            channel_gemms = 2.0 * a2 * tiles * K * C * _INF_GEMM_FLOP / min(1.0, max(min(K, C, tiles), 4) / 16)
            transforms = tiles * a2 * (C + K) * _INF_TILE_ELEM
            costs[name] = _INF_CALL + (channel_gemms + transforms + a2 * K * C * _INF_FILTER_ELEM) / threads
    return costs


def choose_algorithm(x_shape, w_shape, g: Geometry, inference: bool = False) -> str:
    """The algorithm ``auto`` runs for these shapes: the cheapest in :func:`estimate_costs`
    (``inference``: the forward will not be differentiated)."""
    return _cheapest(tuple(x_shape), tuple(w_shape), g, _parallel.num_threads(), inference)


@functools.lru_cache(maxsize=1024)  # a network asks about the same few shapes on every step
def _cheapest(x_shape, w_shape, g: Geometry, threads: int, inference: bool) -> str:
    costs = estimate_costs(x_shape, w_shape, g, threads, inference)
    return min(costs, key=costs.get)


# ------------------------------------------------------------------------------------------ Functions
class ConvNd(Function):
    """Convolution of ``x`` with ``w`` (+ ``b``). 1-D and unbatched inputs run as 4-D arrays
    ``x4_shape``/``w4_shape`` (a unit height, a unit batch) and the output is reshaped to ``y_shape``."""

    def forward(ctx, x, w, b, *, geometry, algorithm, x4_shape, w4_shape, y_shape):
        ctx.geometry, ctx.algorithm = geometry, algorithm
        ctx.x_shape, ctx.x4_shape, ctx.w_shape = x.shape, x4_shape, w.shape
        x4, w4 = x.reshape(x4_shape), w.reshape(w4_shape)
        y = _forward(algorithm, x4, w4, geometry, b, team=not any(ctx.needs_input_grad))
        # x only for the weight gradient; w is a reference to the caller's array, free to keep
        ctx.save_for_backward(x4 if ctx.needs_input_grad[1] else None, w4)
        ctx.y4_shape = y.shape
        return y.reshape(y_shape)

    def backward(ctx, gy):
        x4, w4 = ctx.saved
        nx, nw, nb = ctx.needs_input_grad
        gy4 = gy.reshape(ctx.y4_shape)
        gx, gw = _grads(ctx.algorithm, gy4, x4, w4, ctx.geometry, nx, nw, ctx.x4_shape)
        return (gx.reshape(ctx.x_shape) if nx else None,
                gw.reshape(ctx.w_shape) if nw else None,
                gy4.sum(axis=(0, 2, 3)) if nb else None)


class ConvTransposeNd(Function):
    """Transposed convolution: the input gradient of the convolution that maps the output
    (``y4_shape``, C_out channels) to ``x`` (C_in channels) with the same weight, run forward."""

    def forward(ctx, x, w, b, *, geometry, algorithm, x4_shape, w4_shape, y4_shape, y_shape):
        ctx.geometry, ctx.algorithm = geometry, algorithm
        ctx.x_shape, ctx.x4_shape, ctx.w_shape, ctx.y4_shape = x.shape, x4_shape, w.shape, y4_shape
        x4, w4 = x.reshape(x4_shape), w.reshape(w4_shape)
        y = _grads(algorithm, x4, None, w4, geometry, True, False, y4_shape)[0]
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        ctx.save_for_backward(x4 if ctx.needs_input_grad[1] else None, w4)
        return y.reshape(y_shape)

    def backward(ctx, gy):
        x4, w4 = ctx.saved
        nx, nw, nb = ctx.needs_input_grad
        gy4 = gy.reshape(ctx.y4_shape)
        gx = gw = None
        if nx:  # the convolution itself; crop rows only output_padding >= stride added
            H, W = ctx.x4_shape[2:]
            gx = _forward(ctx.algorithm, gy4, w4, ctx.geometry)[:, :, :H, :W].reshape(ctx.x_shape)
        if nw:  # the weight gradient of that convolution, with x as its output gradient
            gw = _grads(ctx.algorithm, x4, gy4, w4, ctx.geometry, False, True, ctx.y4_shape)[1]
            gw = gw.reshape(ctx.w_shape)
        return gx, gw, (gy4.sum(axis=(0, 2, 3)) if nb else None)


# ------------------------------------------------------------------------------------ argument checks
def _ints(op: str, name: str, value, n: int, minimum: int) -> tuple:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        out = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        out = tuple(int(v) for v in value)
    else:
        raise ArgumentError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < minimum for v in out):
        raise ArgumentError(f"{op}: {name} must be >= {minimum} in every dimension, got {value!r}")
    return out


def _check_tensors(op: str, x, w, b, nd: int, weight_layout: str):
    x, w = as_tensor_arg(x), as_tensor_arg(w)
    b = None if b is None else as_tensor_arg(b)
    for name, t in (("input", x), ("weight", w), ("bias", b)):
        if t is not None and t.dtype.kind != "f":
            raise DTypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}; call .float() first")
    dtypes = {t.dtype for t in (x, w, b) if t is not None}
    if len(dtypes) > 1:
        desc = ", ".join(f"{n} {t.dtype}" for n, t in (("input", x), ("weight", w), ("bias", b)) if t is not None)
        raise DTypeError(f"{op}: dtypes differ ({desc}); cast the input (x.float()) or the weights "
                         "(model.double()) so they match")
    spatial = "(N, C, H, W)" if nd == 2 else "(N, C, L)"
    if x.ndim not in (nd + 1, nd + 2):
        raise ShapeError(f"{op}: expected a {nd + 2}-D input {spatial} (or {nd + 1}-D without the batch), got "
                         f"shape {fmt_shape(x.shape)}" + ("; add a channel axis with unsqueeze(1)"
                                                           if x.ndim == nd else ""))
    if w.ndim != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-D {weight_layout}, got shape {fmt_shape(w.shape)}")
    return x, w, b


def _check_groups(op: str, groups, **channels) -> int:
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ArgumentError(f"{op}: groups must be a positive int, got {groups!r}")
    for name, n in channels.items():
        if n % groups:
            raise ArgumentError(f"{op}: groups={groups} must divide {name} ({n}); channels are split into "
                                "groups of equal size")
    return int(groups)


def _channel_error(op: str, x_shape, c_expected: int, w_shape, layout: str) -> ShapeError:
    c = x_shape[1] if len(x_shape) == len(w_shape) else x_shape[0]
    msg = (f"{op}: input has {c} channels but weight expects {c_expected} (weight shape {fmt_shape(w_shape)}"
           f"{layout})")
    if x_shape[-1] == c_expected:
        msg += "; is the image HWC? permute it to CHW (x.permute(0, 3, 1, 2))"
    return ShapeError(msg)


def _check_algorithm(op: str, algorithm: str, w_shape, g: Geometry, x_shape, inference: bool = False) -> str:
    if algorithm not in ALGORITHMS:
        raise ArgumentError(f"{op}: unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    if algorithm == "auto":
        algorithm = choose_algorithm(x_shape, w_shape, g, inference)
    elif algorithm.startswith("winograd"):
        why = winograd_problem(w_shape, g)
        if why:
            raise ArgumentError(f"{op}: algorithm={algorithm!r} needs {why}; use 'im2col', 'direct', 'fft' "
                                "or 'auto' for this convolution")
    if algorithm == "winograd4x4":
        algorithm = "winograd"
    return algorithm


def _prepare(op, input, weight, bias, stride, padding, dilation, groups, nd):
    """Checked tensors and the 4-D geometry of a (1-D or 2-D) convolution:
    ``(x, w, b, geometry, x4_shape, w4_shape, batched)``."""
    x, w, b = _check_tensors(op, input, weight, bias, nd, "(out_channels, in_channels/groups, *kernel)")
    args = (op, x.shape, w.shape, None if b is None else b.shape, stride, padding, dilation, groups, nd)
    if all(_plain(v) for v in (stride, padding, dilation, groups)):
        return (x, w, b) + _geometry_cached(*args)
    return (x, w, b) + _geometry(*args)


def _plain(value) -> bool:
    """Whether an argument can be a cache key that means the same thing for every equal key: exact
    ints, strings, or tuples of exact ints (True == 1, so a bool must not hit a cached int's entry)."""
    return type(value) in (int, str) or (type(value) is tuple and all(type(v) is int for v in value))


def _geometry(op, x_shape, w_shape, b_shape, stride, padding, dilation, groups, nd):
    """The shape checks of a convolution and its 4-D geometry ``(geometry, x4_shape, w4_shape, batched)``."""
    K, Cg = w_shape[:2]
    batched = len(x_shape) == nd + 2
    C = x_shape[1] if batched else x_shape[0]
    groups = _check_groups(op, groups, in_channels=C, out_channels=K)
    if C != Cg * groups:
        raise _channel_error(op, x_shape, Cg * groups, w_shape, f", groups={groups}")
    if b_shape is not None and b_shape != (K,):
        raise ShapeError(f"{op}: bias has shape {fmt_shape(b_shape)} but weight has {K} output channels; "
                         f"expected bias shape ({K},)")
    stride = _ints(op, "stride", stride, nd, 1)
    dilation = _ints(op, "dilation", dilation, nd, 1)
    ksize = tuple(w_shape[2:])
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0,) * (2 * nd)
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ArgumentError(f"{op}: padding='same' is only supported with stride 1 (got stride "
                                    f"{stride}), as in torch; give the padding as numbers instead")
            pads = ()
            for k, d in zip(ksize, dilation):
                total = d * (k - 1)
                pads += (total // 2, total - total // 2)  # the odd pixel goes bottom/right, like torch
        else:
            raise ArgumentError(f"{op}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    else:
        pads = tuple(p for p in _ints(op, "padding", padding, nd, 0) for _ in range(2))
    spatial = tuple(x_shape[-nd:])
    padded = tuple(s + a + c for s, a, c in zip(spatial, pads[::2], pads[1::2]))
    dilated = tuple(d * (k - 1) + 1 for k, d in zip(ksize, dilation))
    if any(p < k for p, k in zip(padded, dilated)):
        raise ShapeError(f"{op}: padded input size {padded} is smaller than the (dilated) kernel {dilated} "
                         f"(input shape {fmt_shape(x_shape)}); pad the input or use a smaller kernel")
    if nd == 1:  # run as 2-D with a unit height
        stride, dilation, pads, ksize = (1,) + stride, (1,) + dilation, (0, 0) + pads, (1,) + ksize
        spatial = (1,) + spatial
    N = x_shape[0] if batched else 1
    g = Geometry(stride, pads, dilation, groups)
    x4_shape = (N, C) + tuple(spatial)
    w4_shape = (K, Cg) + ksize
    return g, x4_shape, w4_shape, batched


# Layers call a convolution with the same shapes and arguments step after step: its checks and
# geometry are computed once (they cost ~30 us a call, as much as a small layer's GEMM at batch 1).
_geometry_cached = functools.lru_cache(maxsize=1024)(_geometry)


def _conv(op, input, weight, bias, stride, padding, dilation, groups, algorithm, nd) -> Tensor:
    x, w, b, g, x4_shape, w4_shape, batched = _prepare(op, input, weight, bias, stride, padding, dilation,
                                                      groups, nd)
    inference = not (grad_mode.enabled and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)))
    alg = _check_algorithm(op, algorithm, w4_shape, g, x4_shape, inference)
    P = _im2col.out_size(x4_shape[2], w4_shape[2], g.stride[0], g.pads[0] + g.pads[1], g.dilation[0])
    Q = _im2col.out_size(x4_shape[3], w4_shape[3], g.stride[1], g.pads[2] + g.pads[3], g.dilation[1])
    y_shape = ((x4_shape[0],) if batched else ()) + (w4_shape[0],) + ((P, Q) if nd == 2 else (Q,))
    _last["algorithm"] = alg
    return ConvNd.apply(x, w, b, geometry=g, algorithm=alg, x4_shape=x4_shape, w4_shape=w4_shape,
                        y_shape=y_shape)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm: str = "auto") -> Tensor:
    """2-D convolution (cross-correlation) over an NCHW batch, like ``torch.nn.functional.conv2d``.

    ``y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] x_pad[n, g(o)*C/groups + c, i*s + u*d, j*s + v*d]``

    Shapes: input ``(N, C, H, W)`` (or ``(C, H, W)``), weight ``(K, C/groups, kh, kw)``, bias ``(K,)``;
    output ``(N, K, P, Q)`` with ``P = floor((H + 2p - d(kh-1) - 1)/s) + 1``. ``padding``: int, pair,
    ``"valid"`` (0) or ``"same"`` (stride 1 only; an odd total goes bottom/right, as in torch).
    ``algorithm``: ``"auto"`` (cost model), ``"direct"``, ``"im2col"``, ``"fft"``, ``"winograd"``
    (F(4x4,3x3)) or ``"winograd2x2"`` (F(2x2,3x3)); see the module docstring and
    ``shendu.ops.conv.last_algorithm()``.

    >>> import shendu
    >>> x = shendu.ones(1, 1, 4, 4)
    >>> w = shendu.ones(1, 1, 3, 3)
    >>> shendu.conv2d(x, w, padding=1)[0, 0].tolist()
    [[4.0, 6.0, 6.0, 4.0], [6.0, 9.0, 9.0, 6.0], [6.0, 9.0, 9.0, 6.0], [4.0, 6.0, 6.0, 4.0]]
    """
    return _conv("conv2d", input, weight, bias, stride, padding, dilation, groups, algorithm, 2)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           algorithm: str = "auto") -> Tensor:
    """1-D convolution (cross-correlation) over ``(N, C, L)``, like ``torch.nn.functional.conv1d``.

    ``y[n,o,i] = b[o] + sum_{c,u} w[o,c,u] x_pad[n, c, i*s + u*d]``; weight ``(K, C/groups, k)``, output
    ``(N, K, floor((L + 2p - d(k-1) - 1)/s) + 1)``. Runs as a 2-D convolution of unit height
    (``algorithm`` as in :func:`conv2d`; Winograd needs a 3x3 kernel, so it does not apply).

    >>> import shendu
    >>> shendu.conv1d(shendu.tensor([[[1.0, 2.0, 3.0, 4.0]]]), shendu.tensor([[[1.0, -1.0]]])).tolist()
    [[[-1.0, -1.0, -1.0]]]
    """
    return _conv("conv1d", input, weight, bias, stride, padding, dilation, groups, algorithm, 1)


def _conv_transpose(op, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm,
                    nd) -> Tensor:
    x, w, b = _check_tensors(op, input, weight, bias, nd, "(in_channels, out_channels/groups, *kernel)")
    batched = x.ndim == nd + 2
    C = x.shape[1] if batched else x.shape[0]
    Cin, Coutg = w.shape[:2]
    if C != Cin:
        raise _channel_error(op, x.shape, Cin, w.shape, ", laid out (in_channels, out_channels/groups, *kernel)")
    groups = _check_groups(op, groups, in_channels=Cin)
    Cout = Coutg * groups
    if b is not None and b.shape != (Cout,):
        raise ShapeError(f"{op}: bias has shape {fmt_shape(b.shape)}; expected ({Cout},) (out_channels)")
    stride = _ints(op, "stride", stride, nd, 1)
    dilation = _ints(op, "dilation", dilation, nd, 1)
    pad = _ints(op, "padding", padding, nd, 0)
    opad = _ints(op, "output_padding", output_padding, nd, 0)
    for o, s, d in zip(opad, stride, dilation):
        if o >= max(s, d):
            raise ArgumentError(f"{op}: output_padding {opad} must be smaller than either stride {stride} or "
                                f"dilation {dilation} in every dimension")
    ksize = tuple(w.shape[2:])
    spatial = tuple(x.shape[-nd:])
    out = tuple((n - 1) * s - 2 * p + d * (k - 1) + o + 1
                for n, s, p, d, k, o in zip(spatial, stride, pad, dilation, ksize, opad))
    if any(o <= 0 for o in out):
        raise ShapeError(f"{op}: the output size {out} is not positive (input {fmt_shape(x.shape)}, kernel "
                         f"{ksize}, stride {stride}, padding {pad}); reduce the padding")
    pads = tuple(p for p in pad for _ in range(2))
    if nd == 1:
        stride, dilation, pads, ksize, spatial, out = ((1,) + stride, (1,) + dilation, (0, 0) + pads,
                                                       (1,) + ksize, (1,) + spatial, (1,) + out)
    g = Geometry(stride, pads, dilation, groups)
    N = x.shape[0] if batched else 1
    y4_shape = (N, Cout) + out
    w4_shape = (Cin, Coutg) + ksize
    if algorithm not in ALGORITHMS:
        raise ArgumentError(f"{op}: unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    # the algorithm of the convolution this is the adjoint of (its input is our output)
    alg = _check_algorithm(op, algorithm, w4_shape, g, y4_shape)
    y_shape = ((N,) if batched else ()) + (Cout,) + (out if nd == 2 else out[1:])
    _last["algorithm"] = alg
    return ConvTransposeNd.apply(x, w, b, geometry=g, algorithm=alg, x4_shape=(N, C) + spatial,
                                 w4_shape=w4_shape, y4_shape=y4_shape, y_shape=y_shape)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     *, algorithm: str = "auto") -> Tensor:
    """2-D transposed convolution ("deconvolution"), like ``torch.nn.functional.conv_transpose2d``.

    The adjoint of :func:`conv2d` with respect to its input: every input pixel scatters ``w``-weighted
    copies of itself into the output, ``s`` pixels apart. Weight ``(C_in, C_out/groups, kh, kw)``
    (torch's layout, the other way round from conv2d); output size
    ``(H - 1) s - 2p + d(kh - 1) + output_padding + 1`` (``output_padding < max(stride, dilation)``
    picks among the input sizes a strided conv2d maps to the same output size).

    >>> import shendu
    >>> x = shendu.tensor([[[[1.0, 2.0]]]])
    >>> shendu.conv_transpose2d(x, shendu.ones(1, 1, 1, 2), stride=2)[0, 0].tolist()
    [[1.0, 1.0, 2.0, 2.0]]
    """
    return _conv_transpose("conv_transpose2d", input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algorithm, 2)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     *, algorithm: str = "auto") -> Tensor:
    """1-D transposed convolution over ``(N, C_in, L)``, like ``torch.nn.functional.conv_transpose1d``;
    weight ``(C_in, C_out/groups, k)``, output length ``(L - 1) s - 2p + d(k - 1) + output_padding + 1``.

    >>> import shendu
    >>> shendu.conv_transpose1d(shendu.tensor([[[1.0, 2.0]]]), shendu.tensor([[[1.0, 1.0]]])).tolist()
    [[[1.0, 3.0, 2.0]]]
    """
    return _conv_transpose("conv_transpose1d", input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algorithm, 1)
