"""Normalization ops: batch, instance, layer, group and local response normalization.

Each op is one fused Function with an analytic backward (derivation of the batch-norm one in
``docs/batchnorm_backward.md``). All of them normalise ``x_hat = (x - mean) / sqrt(var + eps)`` with the
**biased** variance over their statistics axes, then apply an optional affine map:

=============  ============================  ======================
op             statistics over               affine parameters
=============  ============================  ======================
batch_norm     N and all spatial dims, per C  per channel ``(C,)``
instance_norm  spatial dims, per (n, c)       per channel ``(C,)``
group_norm     (C/G, spatial), per (n, g)     per channel ``(C,)``
layer_norm     the trailing normalized_shape  elementwise, normalized_shape
=============  ============================  ======================

For every one of them, with ``g = dL/dx_hat`` and ``m`` elements per statistic,
``dx = (1 / (m * sigma)) * (m * g - sum(g) - x_hat * sum(g * x_hat))``.

Large float32/float64 batch and layer norms run the numba kernels of
:mod:`shendu.ops.kernels.norm_numba` when numba is installed (both cores, one pass for the
statistics and one for the output); the NumPy code here is the reference those kernels are tested
against.
"""

from __future__ import annotations

import math
import numbers

from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg, ensure_float
from shendu.ops.kernels import norm_numba as _nb

__all__ = ["batch_norm", "instance_norm", "layer_norm", "group_norm", "local_response_norm"]


def _channel_sums(xp, a3, b3=None):
    """Per-channel ``sum(a)`` (or ``sum(a * b)``) of ``(N, C, S)`` arrays with no full-size temporary."""
    if b3 is None:
        return a3.sum(axis=(0, 2))
    return xp.einsum("ncs,ncs->c", a3, b3)


def _update_running(running, batch_value, momentum: float) -> None:
    """``running <- (1 - momentum) * running + momentum * batch_value``, in place and in running's dtype."""
    running *= 1.0 - momentum
    running += (momentum * batch_value).astype(running.dtype, copy=False)


# ------------------------------------------------------------------------------------------- batch norm
def _centred(xp, x3, center, offset, shape):
    """``(x - center) - offset`` per channel (see BatchNormTrain for why) in a new array of ``shape``,
    returned as the ``(N, C, S)`` view of it; ``.base`` is the array to return from an op, since
    autograd copies gradients that do not own their memory."""
    xc = xp.empty(shape, x3.dtype).reshape(x3.shape)
    xp.subtract(x3, center[:, None], out=xc)
    xc -= offset[:, None]
    return xc


def _whole(a3, shape):
    """The array behind the ``(N, C, S)`` view ``a3`` made by :func:`_centred`, in ``shape``."""
    return a3.base if a3.base is not None and a3.base.shape == tuple(shape) else a3.reshape(shape)


def _per_channel_grads(xp, x3, gy3, center, offset, fast):
    """``sum(gy)`` and ``sum(gy * (x - mean))`` per channel, and the centred input when NumPy made it."""
    if fast and _nb.accepts(x3, gy3):
        return _nb.channel_grad_sums(x3, gy3, center, offset) + (None,)
    xc = _centred(xp, x3, center, offset, gy3.shape)
    return _channel_sums(xp, gy3), _channel_sums(xp, gy3, xc), xc


class BatchNormTrain(Function):
    """Training-mode batch norm on ``x`` of shape ``(N, C, *)``: batch statistics per channel; updates
    ``running_mean``/``running_var`` (raw arrays, in place) when given.

    The mean is kept as ``center + offset``: ``center`` is one sample of each channel (in x's dtype) and
    ``offset`` the small rest, so ``(x - center) - offset`` stays exact to rounding when |mean| >> std
    (a float32 mean alone would be off by half an ulp of the mean, which can be a sizeable part of std).
    """

    def forward(ctx, x, weight, bias, running_mean=None, running_var=None, momentum=0.1, eps=1e-5):
        xp = get_array_module(x)
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)
        m = n * x3.shape[2]
        center = x3[0, :, 0].copy()
        fast = _nb.accepts(x3)
        if fast:
            offset, var = _nb.channel_moments(x3, center)  # float64
        else:
            xc = _centred(xp, x3, center, xp.zeros_like(center), x.shape)
            offset = xc.mean(axis=(0, 2))
            xc -= offset[:, None]
            var = _channel_sums(xp, xc, xc) / m
        invstd = 1.0 / xp.sqrt(var + eps)
        scale = invstd if weight is None else invstd * weight
        if fast:
            shift = xp.zeros(c, x.dtype) if bias is None else bias
            y = _nb.channel_affine(x3, center, offset, scale, shift, x.shape)
        else:  # reuse the centred buffer: y = (x - mean) * scale + bias
            xc *= scale.astype(x.dtype, copy=False)[:, None]
            if bias is not None:
                xc += bias[:, None]
            y = _whole(xc, x.shape)
        if running_mean is not None:
            _update_running(running_mean, center + offset, momentum)
        if running_var is not None:
            _update_running(running_var, var * (m / (m - 1)), momentum)  # unbiased, as torch
        ctx.save_for_backward(x3, weight)
        ctx.stats = (center, offset.astype(x.dtype, copy=False), invstd, fast)
        return y

    def backward(ctx, gy):
        x3, weight = ctx.saved
        center, offset, invstd, fast = ctx.stats
        xp = get_array_module(gy)
        need_x, need_w, need_b = ctx.needs_input_grad
        gy3 = gy.reshape(x3.shape)
        m = x3.shape[0] * x3.shape[2]
        sum_gy, sum_gy_xc, xc = _per_channel_grads(xp, x3, gy3, center, offset, fast)
        dx = dw = db = None
        if need_x:
            k = invstd if weight is None else invstd * weight
            # dx = k * (gy - sum(gy)/m - (x - mean) * invstd^2 * sum(gy * (x - mean))/m)
            coef_xc = -(invstd * invstd) * sum_gy_xc / m
            coef_0 = -sum_gy / m
            if xc is None:
                dx = _nb.channel_affine2(gy3, k, x3, center, offset, k * coef_xc, k * coef_0, gy.shape)
            else:
                t = x3.dtype
                xc *= coef_xc.astype(t, copy=False)[:, None]
                xc += coef_0.astype(t, copy=False)[:, None]
                xc += gy3
                xc *= k.astype(t, copy=False)[:, None]
                dx = _whole(xc, gy.shape)
        if need_w:
            dw = (sum_gy_xc * invstd).astype(weight.dtype, copy=False)
        if need_b:
            db = sum_gy.astype(gy.dtype, copy=False)
        return dx, dw, db


class BatchNormEval(Function):
    """Batch norm with fixed statistics: ``y = (x - mean) / sqrt(var + eps) * weight + bias``, a per-channel
    affine map (``mean``/``var`` are raw arrays, not differentiated, as in torch)."""

    def forward(ctx, x, weight, bias, mean=None, var=None, eps=1e-5):
        xp = get_array_module(x)
        n, c = x.shape[:2]
        x3 = x.reshape(n, c, -1)
        inference = not any(ctx.needs_input_grad)
        if inference and _nb.accepts(x3, *(a for a in (weight, bias) if a is not None), min_size=0):
            # nothing to save for a backward: one kernel computes the factors and makes the pass
            return _nb.batch_norm_inference(x3, mean, var, weight, bias, eps, x.shape)
        center = mean.astype(x.dtype, copy=False)
        offset = xp.zeros(c, x.dtype)
        invstd = 1.0 / xp.sqrt(var.astype(x.dtype, copy=False) + eps)
        scale = invstd if weight is None else invstd * weight
        fast = _nb.accepts(x3, min_size=_nb.AFFINE_MIN_SIZE)
        if fast:
            y = _nb.channel_affine(x3, center, offset, scale, offset if bias is None else bias, x.shape)
        else:  # y = x * scale + (bias - mean * scale): two passes over x, as torch's eval kernel
            scale = scale.astype(x.dtype, copy=False)
            shift = -center * scale if bias is None else bias - center * scale
            y = xp.empty(x.shape, x.dtype)
            y3 = y.reshape(x3.shape)
            xp.multiply(x3, scale[:, None], out=y3)
            y3 += shift[:, None]
        ctx.save_for_backward(x3 if weight is not None else None, weight)
        ctx.stats = (center, offset, invstd, scale, fast)
        return y

    def backward(ctx, gy):
        x3, weight = ctx.saved
        center, offset, invstd, scale, fast = ctx.stats
        xp = get_array_module(gy)
        need_x, need_w, need_b = ctx.needs_input_grad
        gy3 = gy.reshape(gy.shape[0], gy.shape[1], -1)
        dx = None
        if need_x:
            dx = xp.empty(gy.shape, gy.dtype)
            xp.multiply(gy3, scale.astype(gy.dtype, copy=False)[:, None], out=dx.reshape(gy3.shape))
        dw = db = None
        if need_w:
            sum_gy, sum_gy_xc, _ = _per_channel_grads(xp, x3, gy3, center, offset, fast)
            dw = (sum_gy_xc * invstd).astype(weight.dtype, copy=False)
        if need_b:
            db = _channel_sums(xp, gy3).astype(gy.dtype, copy=False)
        return dx, dw, db


def _check_channel_vector(op: str, name: str, t, channels: int, input_shape, hint: str) -> None:
    if t is not None and tuple(t.shape) != (channels,):
        raise ShapeError(f"{op}: {name} has shape {fmt_shape(t.shape)} but input has {channels} channels "
                         f"(input shape {fmt_shape(input_shape)}); expected ({channels},). {hint}")


def _opt(t):
    return None if t is None else as_tensor_arg(t)


def _raw(t):
    return None if t is None else (t.data if isinstance(t, Tensor) else t)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization (Ioffe & Szegedy, 2015) over ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``.

    Training: per channel, over N and all spatial positions (m values),
    ``mu = mean(x)``, ``sigma^2 = mean((x - mu)^2)`` (biased), ``y = weight * (x - mu) / sqrt(sigma^2 + eps) + bias``,
    and, when given, ``running_mean <- (1 - momentum) * running_mean + momentum * mu`` and
    ``running_var <- (1 - momentum) * running_var + momentum * sigma^2 * m / (m - 1)`` (unbiased), in place.
    Eval (``training=False``): the same with the running statistics, which are left unchanged.
    ``momentum=None`` (the cumulative average) is handled by the modules, which pass ``1 / num_batches``.

    Backward (per channel, ``x_hat`` the normalised input, ``sigma = sqrt(sigma^2 + eps)``):
    ``dweight = sum(gy * x_hat)``, ``dbias = sum(gy)``,
    ``dx = weight / (m * sigma) * (m * gy - sum(gy) - x_hat * sum(gy * x_hat))``.

    Shapes: ``input (N, C, *)``; ``running_mean``, ``running_var``, ``weight``, ``bias``: ``(C,)`` or None.

    >>> import shendu
    >>> import shendu.functional as F
    >>> x = shendu.tensor([[1.0, 10.0], [3.0, 30.0]])
    >>> rm, rv = shendu.zeros(2), shendu.ones(2)
    >>> F.batch_norm(x, rm, rv, training=True, eps=0.0).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    >>> [round(v, 4) for v in rm.tolist()], [round(v, 4) for v in rv.tolist()]
    ([0.2, 2.0], [1.1, 20.9])
    """
    op = "batch_norm"
    input = as_tensor_arg(input)
    ensure_float(op, input)
    if input.ndim < 2:
        raise ShapeError(f"{op}: expected input of shape (N, C, *) with at least 2 dimensions, got "
                         f"{fmt_shape(input.shape)}; add a batch dimension with unsqueeze(0)")
    c = input.shape[1]
    hint = "num_features of the layer must equal the input's channel dimension (dim 1)"
    weight, bias = _opt(weight), _opt(bias)
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        _check_channel_vector(op, name, t, c, input.shape, hint)
    if momentum is None or not isinstance(momentum, numbers.Real):
        raise ArgumentError(f"{op}: momentum must be a float, got {momentum!r}; for a cumulative average "
                            "pass 1 / num_batches_tracked (BatchNorm modules with momentum=None do this)")
    rm, rv = _raw(running_mean), _raw(running_var)
    if training:
        if input.numel() // max(c, 1) <= 1:
            raise ArgumentError(f"{op}: Expected more than 1 value per channel when training, got input "
                                f"size {fmt_shape(input.shape)}; use a batch of at least 2 or call eval()")
        return BatchNormTrain.apply(input, weight, bias, running_mean=rm, running_var=rv,
                                    momentum=float(momentum), eps=float(eps))
    if rm is None or rv is None:
        raise ArgumentError(f"{op}: running_mean and running_var are required when training=False; pass "
                            "training=True to normalise with batch statistics")
    return BatchNormEval.apply(input, weight, bias, mean=rm, var=rv, eps=float(eps))


# -------------------------------------------------------------------------------- group / instance norm
class GroupNorm(Function):
    """``x (N, C, *)`` normalised over each of ``num_groups`` contiguous channel blocks of each sample,
    then a per-channel affine map. With ``running_mean``/``running_var`` (instance norm's running
    statistics, ``num_groups = C``) the per-sample statistics averaged over N update them in place."""

    def forward(ctx, x, weight, bias, num_groups=1, eps=1e-5, running_mean=None, running_var=None,
                momentum=0.1):
        xp = get_array_module(x)
        n, c = x.shape[:2]
        xg = x.reshape(n, num_groups, -1)
        size = xg.shape[2]
        mean = xg.mean(axis=2, keepdims=True)
        x_hat = xg - mean
        var = xp.einsum("ngr,ngr->ng", x_hat, x_hat)[..., None] / size
        invstd = 1.0 / xp.sqrt(var + eps)
        x_hat *= invstd
        y = x_hat.reshape(n, c, -1)
        if weight is not None:
            y = y * weight[:, None]
        if bias is not None:
            y = y + bias[:, None]
        if running_mean is not None:
            _update_running(running_mean, mean.reshape(n, c).mean(axis=0), momentum)
        if running_var is not None:
            _update_running(running_var, var.reshape(n, c).mean(axis=0) * (size / (size - 1)), momentum)
        ctx.save_for_backward(x_hat, invstd, weight)
        return y.reshape(x.shape)

    def backward(ctx, gy):
        x_hat, invstd, weight = ctx.saved
        xp = get_array_module(gy)
        need_x, need_w, need_b = ctx.needs_input_grad
        n, groups, size = x_hat.shape
        gy3 = gy.reshape(n, gy.shape[1], -1)
        dx = dw = db = None
        if need_w:
            dw = xp.einsum("ncs,ncs->c", gy3, x_hat.reshape(gy3.shape))
        if need_b:
            db = gy3.sum(axis=(0, 2))
        if need_x:
            g = (gy3 * weight[:, None] if weight is not None else gy3).reshape(x_hat.shape)
            mean_g = g.mean(axis=2, keepdims=True)
            mean_gx = xp.einsum("ngr,ngr->ng", g, x_hat)[..., None] / size
            t = x_hat * mean_gx
            t += mean_g
            xp.subtract(g, t, out=t)
            t *= invstd
            dx = t.reshape(gy.shape)
        return dx, dw, db


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Group normalization (Wu & He, 2018): the C channels split into ``num_groups`` contiguous blocks;
    each (sample, group) is normalised over its ``C / num_groups`` channels and all spatial positions
    (biased variance), then ``y = x_hat * weight[c] + bias[c]``. The same in training and eval.

    ``num_groups = 1`` normalises like layer norm over ``(C, *)`` (but with per-channel affine);
    ``num_groups = C`` is instance norm.

    Shapes: ``input (N, C, *)``; ``weight``, ``bias`` ``(C,)`` or None.

    >>> import shendu
    >>> import shendu.functional as F
    >>> x = shendu.tensor([[[1.0], [3.0], [4.0], [8.0]]])
    >>> F.group_norm(x, 2, eps=0.0).flatten().tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    op = "group_norm"
    input = as_tensor_arg(input)
    ensure_float(op, input)
    if input.ndim < 2:
        raise ShapeError(f"{op}: expected input of shape (N, C, *), got {fmt_shape(input.shape)}")
    c = input.shape[1]
    if not isinstance(num_groups, numbers.Integral) or num_groups <= 0 or c % num_groups:
        raise ArgumentError(f"{op}: num_groups={num_groups!r} must be a positive divisor of the number of "
                            f"channels {c} (input shape {fmt_shape(input.shape)}); try one of "
                            f"{[g for g in range(1, c + 1) if c % g == 0]}")
    weight, bias = _opt(weight), _opt(bias)
    hint = "num_channels of the layer must equal the input's channel dimension (dim 1)"
    _check_channel_vector(op, "weight", weight, c, input.shape, hint)
    _check_channel_vector(op, "bias", bias, c, input.shape, hint)
    return GroupNorm.apply(input, weight, bias, num_groups=int(num_groups), eps=float(eps))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Instance normalization (Ulyanov, Vedaldi & Lempitsky, 2016): every (sample, channel) plane is
    normalised over its own spatial positions (biased variance), ``y = x_hat * weight[c] + bias[c]``.

    With ``use_input_stats=True`` (the default, in training and eval alike) running statistics, when
    given, are updated in place with the per-instance mean and unbiased variance averaged over the
    batch; with ``use_input_stats=False`` the running statistics normalise instead.

    Shapes: ``input (N, C, *)`` with at least one spatial dim; the vectors ``(C,)`` or None.

    >>> import shendu
    >>> import shendu.functional as F
    >>> F.instance_norm(shendu.tensor([[[1.0, 3.0], [2.0, 6.0]]]), eps=0.0).tolist()
    [[[-1.0, 1.0], [-1.0, 1.0]]]
    """
    op = "instance_norm"
    input = as_tensor_arg(input)
    ensure_float(op, input)
    if input.ndim < 3:
        raise ShapeError(f"{op}: expected input of shape (N, C, *) with spatial dimensions, got "
                         f"{fmt_shape(input.shape)}; for (N, C) features use batch_norm or layer_norm")
    c = input.shape[1]
    weight, bias = _opt(weight), _opt(bias)
    hint = "num_features of the layer must equal the input's channel dimension (dim 1)"
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        _check_channel_vector(op, name, t, c, input.shape, hint)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ArgumentError(f"{op}: use_input_stats=False needs running_mean and running_var")
        return BatchNormEval.apply(input, weight, bias, mean=_raw(running_mean), var=_raw(running_var),
                                   eps=float(eps))
    if math.prod(input.shape[2:]) <= 1:
        raise ArgumentError(f"{op}: Expected more than 1 spatial element when training, got input size "
                            f"{fmt_shape(input.shape)}")
    return GroupNorm.apply(input, weight, bias, num_groups=c, eps=float(eps), running_mean=_raw(running_mean),
                           running_var=_raw(running_var), momentum=float(momentum))


# ------------------------------------------------------------------------------------------- layer norm
class LayerNorm(Function):
    """``x (*, K)`` (K = prod(normalized_shape)) normalised per row, then ``x_hat * weight + bias``
    elementwise over the K trailing values."""

    def forward(ctx, x, weight, bias, size=1, eps=1e-5):
        xp = get_array_module(x)
        x2 = x.reshape(-1, size)
        ctx.wshape = None if weight is None else weight.shape
        ctx.bshape = None if bias is None else bias.shape
        w = None if weight is None else weight.reshape(-1)
        b = None if bias is None else bias.reshape(-1)
        if _nb.accepts(x2):
            y, mean, invstd = _nb.layer_norm_forward(x2, xp.ones(size) if w is None else w,
                                                     xp.zeros(size) if b is None else b, eps, x.shape)
            ctx.save_for_backward(x2, w)
            ctx.stats = (mean, invstd, None)
            return y
        mean = x2.mean(axis=1, keepdims=True)
        x_hat = x2 - mean
        var = xp.einsum("mk,mk->m", x_hat, x_hat)[:, None] / size
        invstd = 1.0 / xp.sqrt(var + eps)
        x_hat *= invstd
        y = x_hat if w is None else x_hat * w
        if b is not None:
            y = y + b if w is None else xp.add(y, b, out=y)
        ctx.save_for_backward(x2, w)
        ctx.stats = (None, invstd, x_hat)
        return y.reshape(x.shape)

    def backward(ctx, gy):
        x2, w = ctx.saved
        mean, invstd, x_hat = ctx.stats
        xp = get_array_module(gy)
        need_x, need_w, need_b = ctx.needs_input_grad
        gy2 = gy.reshape(x2.shape)
        size = x2.shape[1]
        dx = dw = db = None
        if x_hat is None and _nb.accepts(x2, gy2):
            ones = xp.ones(size, x2.dtype)
            dx, dw, db = _nb.layer_norm_backward(x2, gy2, mean, invstd, ones if w is None else w, gy.shape)
            dx = dx if need_x else None
            dw = dw if need_w else None
            db = db if need_b else None
        else:
            if x_hat is None:  # the fast forward ran but backward got an array the kernels refuse
                x_hat = (x2 - mean.astype(x2.dtype)[:, None]) * invstd.astype(x2.dtype)[:, None]
            if need_w:
                dw = xp.einsum("mk,mk->k", gy2, x_hat)
            if need_b:
                db = gy2.sum(axis=0)
            if need_x:
                g = gy2 * w if w is not None else gy2
                mean_g = g.mean(axis=1, keepdims=True)
                mean_gx = xp.einsum("mk,mk->m", g, x_hat)[:, None] / size
                dx = xp.empty(gy.shape, x2.dtype)  # owned by the result, so autograd need not copy it
                t = dx.reshape(x2.shape)
                xp.multiply(x_hat, mean_gx.astype(x2.dtype, copy=False), out=t)
                t += mean_g
                xp.subtract(g, t, out=t)
                t *= invstd.astype(x2.dtype, copy=False)
        if dw is not None:
            dw = dw.astype(gy.dtype, copy=False).reshape(ctx.wshape)
        if db is not None:
            db = db.astype(gy.dtype, copy=False).reshape(ctx.bshape)
        return dx, dw, db


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Layer normalization (Ba, Kiros & Hinton, 2016): each sample is normalised over its trailing
    ``normalized_shape`` dims (biased variance), then ``y = x_hat * weight + bias`` elementwise
    (``weight``, ``bias`` of shape ``normalized_shape``). The same in training and eval.

    Shapes: ``input (*, *normalized_shape)``; output the same.

    >>> import shendu
    >>> import shendu.functional as F
    >>> F.layer_norm(shendu.tensor([[1.0, 3.0], [4.0, 8.0]]), (2,), eps=0.0).tolist()
    [[-1.0, 1.0], [-1.0, 1.0]]
    """
    op = "layer_norm"
    input = as_tensor_arg(input)
    ensure_float(op, input)
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(int(s) for s in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or input.ndim < k or tuple(input.shape[input.ndim - k:]) != normalized_shape:
        raise ShapeError(f"{op}: normalized_shape {fmt_shape(normalized_shape)} must match the trailing "
                         f"dimensions of the input, got input shape {fmt_shape(input.shape)}; expected input "
                         f"of shape (*, {', '.join(map(str, normalized_shape))})")
    weight, bias = _opt(weight), _opt(bias)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != normalized_shape:
            raise ShapeError(f"{op}: {name} has shape {fmt_shape(t.shape)} but normalized_shape is "
                             f"{fmt_shape(normalized_shape)}; they must be equal")
    return LayerNorm.apply(input, weight, bias, size=math.prod(normalized_shape), eps=float(eps))


# ------------------------------------------------------------------------------ local response norm
def _channel_window_sum(xp, a, before: int, after: int):
    """``out[:, c] = sum(a[:, c - before : c + after + 1])`` along dim 1, clipped at the ends; one slice
    addition per window offset."""
    c = a.shape[1]
    out = a.copy()
    for o in range(-before, after + 1):
        if o > 0 and o < c:
            out[:, :c - o] += a[:, o:]
        elif o < 0 and -o < c:
            out[:, -o:] += a[:, :c + o]
    return out


class LocalResponseNorm(Function):
    """``y = x / (k + alpha / size * S)^beta``, ``S[c]`` the sum of ``x^2`` over the channel window of c."""

    def forward(ctx, x, size=5, alpha=1e-4, beta=0.75, k=1.0):
        xp = get_array_module(x)
        before, after = size // 2, (size - 1) // 2
        base = _channel_window_sum(xp, x * x, before, after)
        base *= alpha / size
        base += k
        inv = base ** -beta
        y = x * inv
        ctx.save_for_backward(x, y, base, inv)
        ctx.params = (size, alpha, beta, before, after)
        return y

    def backward(ctx, gy):
        x, y, base, inv = ctx.saved
        size, alpha, beta, before, after = ctx.params
        xp = get_array_module(gy)
        # dy_j/dx_c = [j == c] base_c^-beta - 2 alpha beta / size * x_j x_c base_j^(-beta-1) [c in window(j)];
        # c is in window(j) iff j is in [c - after, c + before]: the transposed window
        t = gy * y
        t /= base
        gx = _channel_window_sum(xp, t, after, before)
        gx *= x
        gx *= -2.0 * alpha * beta / size
        gx += gy * inv
        return gx


def local_response_norm(input, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Tensor:
    """Local response normalization across channels, torch's (and Caffe's) definition:
    ``b_c = a_c / (k + alpha / size * sum_{c'} a_{c'}^2)^beta``, the sum over channels
    ``c - size//2 <= c' <= c + (size-1)//2`` clipped at the ends (missing channels count as zero).

    AlexNet's paper (Krizhevsky et al., 2012) writes ``b_c = a_c / (k + alpha * sum a_{c'}^2)^beta`` with
    k=2, n=5, alpha=1e-4, beta=0.75 — alpha *not* divided by n; reproduce it here with
    ``size=5, alpha=5e-4, k=2``.

    Shapes: ``input (N, C, *)`` with at least one spatial dim; output the same.

    >>> import shendu
    >>> import shendu.functional as F
    >>> x = shendu.tensor([[[2.0], [0.0], [0.0]]])
    >>> [round(v, 6) for v in F.local_response_norm(x, size=1, alpha=1.0, beta=1.0, k=1.0).flatten().tolist()]
    [0.4, 0.0, 0.0]
    """
    op = "local_response_norm"
    input = as_tensor_arg(input)
    ensure_float(op, input)
    if input.ndim < 3:
        raise ShapeError(f"{op}: expected input of shape (N, C, *) with at least 3 dimensions, got "
                         f"{fmt_shape(input.shape)}; add a spatial dimension with unsqueeze(-1)")
    if not isinstance(size, numbers.Integral) or size < 1:
        raise ArgumentError(f"{op}: size must be a positive integer (channels in the window), got {size!r}")
    return LocalResponseNorm.apply(input, size=int(size), alpha=float(alpha), beta=float(beta), k=float(k))
