"""Losses and regularizers: cross-entropy (fused log-softmax + NLL), NLL, multiclass hinge (torch's and
the CS231n SVM form), binary cross-entropy (on probabilities and on logits), MSE, L1, smooth L1, Huber,
KL divergence, the VAE's Gaussian KL, and L1 / L2 / elastic-net weight penalties.

Every loss takes ``reduction`` with torch's meaning: ``'none'`` keeps one loss per element (per sample
for the class losses), ``'sum'`` adds them, ``'mean'`` divides the sum by their count — except where a
loss says otherwise (cross-entropy and NLL with ``weight`` divide by the summed weights of the counted
targets; ``kl_div`` also takes ``'batchmean'``). Each loss is one Function with an analytic backward
that folds the reduction in, so no intermediate per-element graph is built. The legacy
``size_average``/``reduce`` arguments are accepted in torch's positions and mapped as torch maps them.

Class weights, ``pos_weight`` and element weights are constants: they get no gradient. The targets of
the regression losses, of the BCE losses, of ``kl_div`` and probability targets of ``cross_entropy`` do.
"""

from __future__ import annotations

import numbers

import numpy as np  # shape arithmetic only (broadcast_shapes); array code goes through xp

from shendu.autograd.engine import unbroadcast
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg, ensure_float
from shendu.ops.activation import softplus_array
from shendu.ops.elementwise import _special, sigmoid_array
from shendu.ops.kernels import softmax as _softmax
from shendu.ops.reduce import logsumexp_array

__all__ = [
    "cross_entropy", "nll_loss", "multi_margin_loss", "multiclass_hinge_loss", "svm_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "smooth_l1_loss",
    "huber_loss", "kl_div", "gaussian_kl", "l1_regularization", "l2_regularization", "elastic_net",
]

_REDUCTIONS = ("none", "mean", "sum")


# ------------------------------------------------------------------------------------------- helpers
def _reduction(op: str, reduction: str, size_average=None, reduce=None, allowed=_REDUCTIONS) -> str:
    """Check ``reduction``; the legacy flags win when given (reduce=False -> 'none',
    size_average=False -> 'sum', else 'mean'), as in torch."""
    if size_average is not None or reduce is not None:
        if reduce is False:
            return "none"
        return "sum" if size_average is False else "mean"
    if reduction not in allowed:
        raise ArgumentError(f"{op}: reduction must be one of {', '.join(repr(a) for a in allowed)}, "
                            f"got {reduction!r}")
    return reduction


def _reduce(xp, loss, reduction: str, count=None):
    """Forward of the reduction; ``count`` is the divisor of 'mean' (the number of elements by default)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "mean":
        total = total / (loss.size if count is None else count)
    return xp.asarray(total, dtype=loss.dtype)


def _spread(gy, reduction: str, count):
    """Backward of the reduction: the gradient reaching each element's loss (0-d unless 'none')."""
    return gy / count if reduction == "mean" else gy


def _float_pair(op: str, input, target) -> tuple:
    """Input and target as float tensors of one dtype, the target broadcasting to the input's shape."""
    x, t = as_tensor_arg(input), as_tensor_arg(target)
    ensure_float(op, x)
    if not _broadcasts_to(t.shape, x.shape):
        raise ShapeError(f"{op}: target shape {fmt_shape(t.shape)} does not match input shape "
                         f"{fmt_shape(x.shape)}; give the target the input's shape (a (N, 1) vs (N,) "
                         "mismatch would silently broadcast to (N, N))")
    return x, (t.to(x.dtype) if t.dtype != x.dtype else t)


def _broadcasts_to(shape, target) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without enlarging it."""
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def _const(op: str, name: str, w, x: Tensor, shape=None):
    """A weight argument as a raw array of the input's dtype (weights are constants: no gradient)."""
    if w is None:
        return None
    arr = as_tensor_arg(w).data.astype(x.dtype, copy=False)
    if shape is not None and arr.shape != shape:
        raise ShapeError(f"{op}: {name} has shape {fmt_shape(arr.shape)}, expected {fmt_shape(shape)} "
                         "(one value per class)")
    if shape is None and not _broadcasts_to(arr.shape, x.shape):
        raise ShapeError(f"{op}: {name} of shape {fmt_shape(arr.shape)} does not broadcast to the "
                         f"input shape {fmt_shape(x.shape)}")
    return arr


# ----------------------------------------------------------------------------- class-index targets
def _class_input(op: str, input) -> Tensor:
    x = as_tensor_arg(input)
    ensure_float(op, x)
    if x.ndim == 0:
        raise ShapeError(f"{op}: input must be (C,) or (N, C, d1, ...) scores, got a scalar")
    return x


def _check_class_target(op: str, x: Tensor, t: Tensor, ignore_index=None, max_ndim=None) -> None:
    """Class indices: int64, shape = input shape without the class dim 1, values in [0, C)."""
    want = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if max_ndim is not None and x.ndim > max_ndim:
        raise ShapeError(f"{op}: input must be (C,) or (N, C), got shape {fmt_shape(x.shape)}")
    if t.dtype.kind == "f":
        hint = "; use cross_entropy for probability targets" if t.shape == x.shape else ""
        raise DTypeError(f"{op}: target must hold int64 class indices, got dtype {t.dtype}{hint}; "
                         "call target.long()")
    if t.dtype.kind != "i" or t.dtype.itemsize != 8:
        raise DTypeError(f"{op}: target must hold int64 class indices, got dtype {t.dtype}; call target.long()")
    if t.shape != want:
        raise ShapeError(f"{op}: target shape {fmt_shape(t.shape)} does not fit input shape "
                         f"{fmt_shape(x.shape)}; expected target shape {fmt_shape(want)} (the input "
                         "without its class dimension 1)")
    C = x.shape[1] if x.ndim > 1 else x.shape[0]
    td = t.data
    bad = (td < 0) | (td >= C)
    if ignore_index is not None:
        bad &= td != ignore_index
    if bad.any():
        raise IndexOutOfRangeError(f"{op}: target holds class index {int(td[bad].reshape(-1)[0])}, out of "
                                   f"range for C={C} classes (expected 0 <= index < {C}"
                                   + (f", or ignore_index={ignore_index})" if ignore_index is not None else ")"))


def _gather_targets(xp, t, weight, ignore_index, dtype):
    """Safe indices (ignored -> 0), their weights (0 where ignored) and the validity mask."""
    valid = t != ignore_index
    ts = xp.where(valid, t, 0)
    wt = weight[ts] * valid if weight is not None else valid.astype(dtype)
    return ts, wt, valid


def _batched(x, t):
    """(C,) scores and a () target become a batch of one."""
    return (x[None], t[None], True) if x.ndim == 1 else (x, t, False)


def _class_shape(weight, ndim):
    """The class weight shaped to broadcast along dim 1 of an (N, C, d1, ...) array."""
    return weight.reshape((1, -1) + (1,) * (ndim - 2))


class CrossEntropy(Function):
    """Fused log-softmax + NLL over class dim 1. Per position the loss is ``-sum_c a_c log p_c`` with
    ``a`` the (weighted, smoothed) target distribution, so the gradient is ``p * sum(a) - a``.

    With class-index targets only ``lse = log sum_c exp(x_c)`` per position is kept for backward (not
    log p), and ``log p_t = x_t - lse`` is read at the targets alone; the heavy passes over the (N, C, D)
    logits go through :mod:`shendu.ops.kernels.softmax` (cache-sized chunks, reused scratch)."""

    def forward(ctx, x, t, *, weight, ignore_index, reduction, label_smoothing):
        xp = get_array_module(x)
        x, t, unbatched = _batched(x, t)
        C = x.shape[1]
        eps = label_smoothing
        wc = _class_shape(weight, x.ndim) if weight is not None else None
        if t.dtype.kind == "f":  # probability targets: mean over positions, weights not normalised
            z = x - x.max(axis=1, keepdims=True)
            logp = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
            a = t * (1 - eps) + eps / C if eps else t
            if wc is not None:
                a = a * wc
            loss = -(a * logp).sum(axis=1)
            count = loss.size
            ctx.index = None
            ctx.save_for_backward(logp, t)
        else:
            N = x.shape[0]
            x3 = xp.ascontiguousarray(x).reshape(N, C, -1)
            t2 = t.reshape(N, -1)
            ignore = -1 if ignore_index is None else ignore_index  # targets are checked to be >= 0
            lse = _logsumexp_classes(xp, x3)
            picked = _softmax.nll_at_targets(x3, t2, lse, weight, ignore) if _softmax.accepts(x3) else None
            if picked is not None:
                loss, wt = picked
            else:
                ts, wt, _ = _gather_targets(xp, t2, weight, ignore, x.dtype)
                loss = wt * (lse - x3.reshape(-1)[_target_positions(xp, ts, C)])
            if eps:  # torch: (1 - eps) * nll + eps / C * sum_c w_c * (-log p_c), both masked
                w = weight[:, None] if weight is not None else 1
                smooth = (w * (lse[:, None] - x3)).sum(axis=1)  # -sum_c w_c log p_c
                loss = (1 - eps) * loss + (eps / C) * (smooth * (t2 != ignore))
            loss = loss.reshape(t.shape)
            count = wt.sum()
            ctx.index = (t2, wt, ignore)
            ctx.save_for_backward(x3, lse)
        ctx.opts = (wc, reduction, eps, count, unbatched, x.shape)
        out = _reduce(xp, loss, reduction, count)
        return out[0] if unbatched and reduction == "none" else out

    def backward(ctx, gy):
        wc, reduction, eps, count, unbatched, x_shape = ctx.opts
        xp = get_array_module(gy)
        C = x_shape[1]
        g = _spread(gy[None] if unbatched and reduction == "none" else gy, reduction, count)
        gt = None
        if ctx.index is None:
            logp, t = ctx.saved
            g = xp.expand_dims(g, 1) if g.ndim else g  # per position, broadcast over classes
            a = t * (1 - eps) + eps / C if eps else t
            if wc is not None:
                a = a * wc
            gx = (xp.exp(logp) * a.sum(axis=1, keepdims=True) - a) * g
            if ctx.needs_input_grad[1]:
                gt = -(1 - eps) * logp * g if wc is None else -(1 - eps) * (logp * wc) * g
        else:
            x3, lse = ctx.saved
            t2, wt, ignore = ctx.index
            g = g.reshape(lse.shape) if g.ndim else g  # per position (N, D), or one value
            mass = (1 - eps) * wt  # sum_c a_c
            if eps:
                valid = t2 != ignore
                mass = mass + (eps / C) * (wc.sum() if wc is not None else C) * valid
            gx = _softmax_classes(xp, x3, lse, (mass * g).astype(x3.dtype, copy=False))
            if eps:
                w = wc.reshape(1, C, 1) if wc is not None else 1
                gx -= ((eps / C) * w) * xp.expand_dims(valid * g, 1)
            at_target = ((1 - eps) * wt * g).astype(x3.dtype, copy=False)
            if not (_softmax.accepts(gx) and _softmax.subtract_at_targets(gx, t2, ignore, at_target)):
                # ignored positions point at class 0 with weight 0; one target per position, so the
                # flat indices are distinct and -= is a plain scatter
                gx.reshape(-1)[_target_positions(xp, xp.where(t2 != ignore, t2, 0), C)] -= at_target
            gx = gx.reshape(x_shape)
        if unbatched:
            gx = gx[0]
            gt = gt[0] if gt is not None else None
        return gx, gt


def _logsumexp_classes(xp, x3):
    """``log sum_c exp(x3[:, c])`` (N, D) of logits (N, C, D), shifted by the max for stability."""
    if _softmax.accepts(x3):
        return _softmax.logsumexp_classes(x3)
    return logsumexp_array(xp, x3, (1,))[:, 0]


def _softmax_classes(xp, x3, lse, scale):
    """``exp(x3 - lse) * scale`` per position: the probabilities, scaled (a new array)."""
    if _softmax.accepts(x3, lse, scale):
        return _softmax.softmax_classes(x3, lse, scale)
    return xp.exp(x3 - lse[:, None]) * scale[:, None]


def _target_positions(xp, ts, C):
    """Flat indices into an (N, C, D) array of each position's target class ``ts`` (N, D)."""
    N, D = ts.shape
    flat = ts * D
    flat += (xp.arange(N) * (C * D))[:, None]
    flat += xp.arange(D)
    return flat


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits ``input`` against class indices or class probabilities ``target``.

    ``CE(z, y) = logsumexp(z) - z_y`` per position, computed as one fused op (log-softmax + NLL);
    the gradient is ``softmax(z) - t`` (divided by N for the mean). **input is logits**, not
    probabilities.

    Shapes: input ``(N, C)``, ``(N, C, d1, ...)`` (class dim 1, e.g. segmentation) or ``(C,)``;
    target ``(N,)`` / ``(N, d1, ...)`` / ``()`` int64 class indices, or float probabilities of the
    input's shape. Output: a scalar, or ``(N, d1, ...)`` for ``reduction='none'``.

    - ``weight`` (C,): per-class weights; with indices the mean divides by ``sum_i w[t_i]`` over
      counted targets, not by N. With probabilities the mean divides by the number of positions.
    - ``ignore_index``: targets equal to it count neither in the sum nor in the divisor.
    - ``label_smoothing`` eps: the target becomes ``(1 - eps) * onehot + eps / C`` (the mass eps
      spread over all C classes, the true one included), as torch.

    >>> import shendu
    >>> z = shendu.tensor([[2.0, 0.0, 0.0]])
    >>> round(shendu.cross_entropy(z, shendu.tensor([0])).item(), 4)
    0.2395
    """
    op = "cross_entropy"
    reduction = _reduction(op, reduction, size_average, reduce)
    x, t = _class_input(op, input), as_tensor_arg(target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ArgumentError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    C = x.shape[1] if x.ndim > 1 else x.shape[0]
    w = _const(op, "weight", weight, x, (C,))
    if t.dtype.kind == "f" and t.ndim == x.ndim:  # class probabilities
        if t.shape != x.shape:
            raise ShapeError(f"{op}: probability target shape {fmt_shape(t.shape)} does not fit input shape "
                             f"{fmt_shape(x.shape)}; soft targets need the input's shape")
        t = t.to(x.dtype) if t.dtype != x.dtype else t
    else:
        _check_class_target(op, x, t, ignore_index)
    return CrossEntropy.apply(x, t, weight=w, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=float(label_smoothing))


class NLLLoss(Function):
    def forward(ctx, x, t, *, weight, ignore_index, reduction):
        xp = get_array_module(x)
        x, t, unbatched = _batched(x, t)
        ts, wt, _ = _gather_targets(xp, t, weight, ignore_index, x.dtype)
        loss = -(wt * xp.take_along_axis(x, ts[:, None], axis=1)[:, 0])
        count = wt.sum()
        ctx.save_for_backward(ts, wt)
        ctx.opts = (x.shape, reduction, count, unbatched)
        out = _reduce(xp, loss, reduction, count)
        return out[0] if unbatched and reduction == "none" else out

    def backward(ctx, gy):
        ts, wt = ctx.saved
        shape, reduction, count, unbatched = ctx.opts
        xp = get_array_module(gy)
        g = _spread(gy[None] if unbatched and reduction == "none" else gy, reduction, count)
        gx = xp.zeros(shape, gy.dtype)
        xp.put_along_axis(gx, ts[:, None], xp.expand_dims(-wt * g, 1), axis=1)
        return (gx[0] if unbatched else gx), None


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood ``-w[y] * input[y]`` of log-probabilities ``input`` (e.g. log_softmax).

    Shapes and ``weight`` / ``ignore_index`` / mean rules as :func:`cross_entropy` with class indices:
    ``cross_entropy(z, y) == nll_loss(log_softmax(z, 1), y)``.

    >>> import shendu
    >>> logp = shendu.tensor([[-0.5, -1.0], [-2.0, -0.1]])
    >>> round(shendu.nll_loss(logp, shendu.tensor([0, 1])).item(), 4)
    0.3
    """
    op = "nll_loss"
    reduction = _reduction(op, reduction, size_average, reduce)
    x, t = _class_input(op, input), as_tensor_arg(target)
    C = x.shape[1] if x.ndim > 1 else x.shape[0]
    w = _const(op, "weight", weight, x, (C,))
    _check_class_target(op, x, t, ignore_index)
    return NLLLoss.apply(x, t, weight=w, ignore_index=ignore_index, reduction=reduction)


class MultiMargin(Function):
    """``sum_{j != y} w_y * max(0, margin - s_y + s_j)^p``, divided by C when ``per_class``."""

    def forward(ctx, x, t, *, p, margin, weight, reduction, per_class):
        xp = get_array_module(x)
        x, t, unbatched = _batched(x, t)
        C = x.shape[1]
        z = margin - xp.take_along_axis(x, t[:, None], axis=1) + x
        xp.put_along_axis(z, t[:, None], 0, axis=1)  # the j = y term is not part of the sum
        h = xp.maximum(z, 0)
        if p == 2:
            h = h * h
        wt = weight[t][:, None] if weight is not None else None
        if wt is not None:
            h = h * wt
        loss = h.sum(axis=1)
        if per_class:
            loss = loss / C
        ctx.save_for_backward(z, t)
        ctx.opts = (p, wt, reduction, per_class, unbatched)
        out = _reduce(xp, loss, reduction)
        return out[0] if unbatched and reduction == "none" else out

    def backward(ctx, gy):
        z, t = ctx.saved
        p, wt, reduction, per_class, unbatched = ctx.opts
        xp = get_array_module(gy)
        N, C = z.shape
        g = _spread(gy[None] if unbatched and reduction == "none" else gy, reduction, N)
        g = g[:, None] if g.ndim else g
        if per_class:
            g = g / C
        # strict > 0: a margin of exactly 0 gets subgradient 0
        dz = (z > 0) * g if p == 1 else (2 * xp.maximum(z, 0)) * g
        if wt is not None:
            dz = dz * wt
        dz = dz.astype(gy.dtype, copy=False)
        xp.put_along_axis(dz, t[:, None], -dz.sum(axis=1, keepdims=True), axis=1)
        return (dz[0] if unbatched else dz), None


def _margin_args(op, input, target, p):
    x, t = _class_input(op, input), as_tensor_arg(target)
    if p not in (1, 2):
        raise ArgumentError(f"{op}: p must be 1 or 2, got {p!r}")
    _check_class_target(op, x, t, max_ndim=2)
    return x, t


def multi_margin_loss(input, target, p: int = 1, margin: float = 1.0, weight=None, size_average=None,
                      reduce=None, reduction: str = "mean") -> Tensor:
    """PyTorch's multiclass hinge loss: ``sum_{j != y} max(0, w_y (margin - s_y + s_j))^p / C``.

    Note the division by the number of classes C: the CS231n SVM loss (see
    :func:`multiclass_hinge_loss`) does not divide, so it is C times this one. ``weight`` (C,)
    scales each sample by the weight of its true class. Shapes: input ``(N, C)`` or ``(C,)``,
    target ``(N,)`` or ``()`` int64; ``p`` is 1 or 2.

    >>> import shendu
    >>> s = shendu.tensor([[3.2, 5.1, -1.7]])
    >>> round(shendu.multi_margin_loss(s, shendu.tensor([0])).item(), 4)
    0.9667
    """
    op = "multi_margin_loss"
    reduction = _reduction(op, reduction, size_average, reduce)
    x, t = _margin_args(op, input, target, p)
    w = _const(op, "weight", weight, x, (x.shape[-1],))
    return MultiMargin.apply(x, t, p=p, margin=float(margin), weight=w, reduction=reduction,
                             per_class=True)


def multiclass_hinge_loss(input, target, margin: float = 1.0, p: int = 1, reduction: str = "mean") -> Tensor:
    """The multiclass SVM loss of CS231n (Weston–Watkins form), one row of scores per example:

    ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin)^p``, **not** divided by C (unlike
    :func:`multi_margin_loss`); 'mean' averages over the N examples, the notes' data loss.
    ``p=2`` gives the squared hinge. Gradient: +1 for every class with a positive margin and minus
    their count for the true class (a margin of exactly 0 counts as inactive).

    Shapes: input ``(N, C)`` or ``(C,)``, target ``(N,)`` or ``()`` int64. The notes print scores as
    one column per example; transpose them to rows.

    >>> import shendu
    >>> scores = shendu.tensor([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])  # cat, car, frog
    >>> [round(v, 4) for v in shendu.svm_loss(scores, shendu.tensor([0, 1, 2]), reduction='none').tolist()]
    [2.9, 0.0, 12.9]
    """
    op = "multiclass_hinge_loss"
    reduction = _reduction(op, reduction)
    x, t = _margin_args(op, input, target, p)
    return MultiMargin.apply(x, t, p=p, margin=float(margin), weight=None, reduction=reduction, per_class=False)


svm_loss = multiclass_hinge_loss


# ------------------------------------------------------------------------------- binary cross-entropy
class BinaryCrossEntropy(Function):
    def forward(ctx, x, t, *, weight, reduction):
        xp = get_array_module(x)
        with xp.errstate(divide="ignore"):
            log_x = xp.maximum(xp.log(x), -100)  # torch clamps the logs at -100: log(0) is finite
            log_1mx = xp.maximum(xp.log1p(-x), -100)
        loss = -(t * log_x + (1 - t) * log_1mx)
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, t, log_x, log_1mx)
        ctx.opts = (weight, reduction)
        return _reduce(xp, loss, reduction)

    def backward(ctx, gy):
        x, t, log_x, log_1mx = ctx.saved
        weight, reduction = ctx.opts
        xp = get_array_module(gy)
        g = _spread(gy, reduction, x.size)
        if weight is not None:
            g = g * weight
        nx, nt = ctx.needs_input_grad
        # d/dx = (x - t) / (x (1 - x)), with the denominator kept >= 1e-12 as torch
        gx = g * (x - t) / xp.maximum(x * (1 - x), 1e-12) if nx else None
        gt = unbroadcast(g * (log_1mx - log_x), t.shape) if nt else None
        return gx, gt


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean") -> Tensor:
    """``-w [t log x + (1 - t) log(1 - x)]`` of probabilities ``input`` in [0, 1].

    The logs are clamped at -100 as in torch, so x = 0 or 1 gives a finite loss. Prefer
    :func:`binary_cross_entropy_with_logits` on logits: ``sigmoid`` then this loses precision.
    Shapes: target (and the optional element ``weight``) broadcast to the input's shape.

    >>> import shendu
    >>> round(shendu.binary_cross_entropy(shendu.tensor([0.8]), shendu.tensor([1.0])).item(), 4)
    0.2231
    """
    op = "binary_cross_entropy"
    reduction = _reduction(op, reduction, size_average, reduce)
    x, t = _float_pair(op, input, target)
    xd = x.data
    if ((xd < 0) | (xd > 1)).any():
        raise ArgumentError(f"{op}: input must hold probabilities in [0, 1], found values from "
                            f"{float(xd.min()):.4g} to {float(xd.max()):.4g}; for logits use "
                            "binary_cross_entropy_with_logits")
    w = _const(op, "weight", weight, x)
    return BinaryCrossEntropy.apply(x, t, weight=w, reduction=reduction)


class BCEWithLogits(Function):
    """``(1 - t) x + l * softplus(-x)``, ``l = 1 + (pos_weight - 1) t``: the stable form."""

    def forward(ctx, x, t, *, weight, pos_weight, reduction):
        xp = get_array_module(x)
        sp = softplus_array(xp, -x)  # softplus(-x) = -log sigmoid(x), no overflow at |x| = 1000
        lw = 1 + (pos_weight - 1) * t if pos_weight is not None else None
        loss = (1 - t) * x + (sp if lw is None else lw * sp)
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, t)
        ctx.opts = (weight, pos_weight, reduction)
        return _reduce(xp, loss, reduction)

    def backward(ctx, gy):
        x, t = ctx.saved
        weight, pos_weight, reduction = ctx.opts
        xp = get_array_module(gy)
        g = _spread(gy, reduction, x.size)
        if weight is not None:
            g = g * weight
        nx, nt = ctx.needs_input_grad
        gx = gt = None
        if nx:
            s_neg = sigmoid_array(xp, -x)  # 1 - sigmoid(x)
            # without pos_weight: (1 - t) - (1 - sigmoid(x)) = sigmoid(x) - t
            gx = g * ((1 - t) - (s_neg if pos_weight is None else (1 + (pos_weight - 1) * t) * s_neg))
        if nt:
            dt = -x if pos_weight is None else (pos_weight - 1) * softplus_array(xp, -x) - x
            gt = unbroadcast(g * dt, t.shape)
        return gx, gt


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable op: ``max(x, 0) - x t + log(1 + e^-|x|)``.

    Finite and exact at logits of +-100 (and beyond); gradient ``sigmoid(x) - t``. ``pos_weight`` p
    (broadcast along the last dim, one value per class) scales only the positive term:
    ``-[p t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]``. ``weight`` scales each element.

    >>> import shendu
    >>> x, t = shendu.tensor([100.0, -100.0]), shendu.tensor([0.0, 1.0])  # confidently wrong: finite
    >>> shendu.binary_cross_entropy_with_logits(x, t).item()
    100.0
    """
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction(op, reduction, size_average, reduce)
    x, t = _float_pair(op, input, target)
    w = _const(op, "weight", weight, x)
    pw = _const(op, "pos_weight", pos_weight, x)
    return BCEWithLogits.apply(x, t, weight=w, pos_weight=pw, reduction=reduction)


# --------------------------------------------------------------------------------- regression losses
class _DiffLoss(Function):
    """A loss of ``d = input - target`` elementwise; subclasses give ``f(xp, d, **params)`` and ``df``."""

    def forward(ctx, x, t, *, reduction, **params):
        xp = get_array_module(x)
        d = x - t
        ctx.save_for_backward(d)
        ctx.opts = (reduction, params, t.shape)
        return _reduce(xp, ctx.f(xp, d, **params), reduction)

    def backward(ctx, gy):
        d, = ctx.saved
        reduction, params, t_shape = ctx.opts
        xp = get_array_module(gy)
        g = (_spread(gy, reduction, d.size) * ctx.df(xp, d, **params)).astype(gy.dtype, copy=False)
        nx, nt = ctx.needs_input_grad
        return (g if nx else None), (unbroadcast(-g, t_shape) if nt else None)


def _diff_loss(name, f, df):
    return type(name, (_DiffLoss,), {"f": staticmethod(f), "df": staticmethod(df)})


def _smooth_l1(xp, d, beta):
    a = xp.abs(d)
    return xp.where(a < beta, (0.5 / beta) * d * d, a - 0.5 * beta) if beta > 0 else a


def _smooth_l1_grad(xp, d, beta):
    return xp.where(xp.abs(d) < beta, d * (1 / beta), xp.sign(d)) if beta > 0 else xp.sign(d)


MSE = _diff_loss("MSE", lambda xp, d: d * d, lambda xp, d: 2 * d)
L1 = _diff_loss("L1", lambda xp, d: xp.abs(d), lambda xp, d: xp.sign(d))  # subgradient 0 at 0, as torch
SmoothL1 = _diff_loss("SmoothL1", _smooth_l1, _smooth_l1_grad)
# Huber with delta is delta * smooth_l1 with beta = delta
Huber = _diff_loss("Huber", lambda xp, d, delta: delta * _smooth_l1(xp, d, delta),
                   lambda xp, d, delta: delta * _smooth_l1_grad(xp, d, delta))


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(x - t)^2`` (the L2 loss), averaged over **all elements**; gradient
    ``2 (x - t) / numel``. The target must have the input's shape (or broadcast to it).

    >>> import shendu
    >>> shendu.mse_loss(shendu.tensor([1.0, 3.0]), shendu.tensor([0.0, 0.0])).item()
    5.0
    """
    reduction = _reduction("mse_loss", reduction, size_average, reduce)
    x, t = _float_pair("mse_loss", input, target)
    return MSE.apply(x, t, reduction=reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``|x - t|``; subgradient ``sign(x - t)`` (0 where equal).

    >>> import shendu
    >>> shendu.l1_loss(shendu.tensor([1.0, -3.0]), shendu.tensor([0.0, 0.0])).item()
    2.0
    """
    reduction = _reduction("l1_loss", reduction, size_average, reduce)
    x, t = _float_pair("l1_loss", input, target)
    return L1.apply(x, t, reduction=reduction)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (d = x - t); beta = 0 is L1.

    Fast R-CNN's box loss uses beta = 1/9.

    >>> import shendu
    >>> shendu.smooth_l1_loss(shendu.tensor([0.5, 3.0]), shendu.tensor([0.0, 0.0]), reduction='none').tolist()
    [0.125, 2.5]
    """
    op = "smooth_l1_loss"
    reduction = _reduction(op, reduction, size_average, reduce)
    if beta < 0:
        raise ArgumentError(f"{op}: beta must be >= 0, got {beta}")
    x, t = _float_pair(op, input, target)
    return SmoothL1.apply(x, t, reduction=reduction, beta=float(beta))


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``; equals
    ``delta * smooth_l1_loss(beta=delta)``.

    >>> import shendu
    >>> shendu.huber_loss(shendu.tensor([0.5, 3.0]), shendu.tensor([0.0, 0.0]), reduction='none', delta=2.0).tolist()
    [0.125, 4.0]
    """
    op = "huber_loss"
    reduction = _reduction(op, reduction)
    if delta <= 0:
        raise ArgumentError(f"{op}: delta must be > 0, got {delta}")
    x, t = _float_pair(op, input, target)
    return Huber.apply(x, t, reduction=reduction, delta=float(delta))


# ------------------------------------------------------------------------------------ KL divergences
class KLDiv(Function):
    def forward(ctx, x, t, *, reduction, log_target):
        xp = get_array_module(x)
        if log_target:
            loss = xp.exp(t) * (t - x)
        else:
            loss = _special(xp).xlogy(t, t) - t * x  # 0 log 0 = 0
        ctx.save_for_backward(x, t)
        ctx.opts = (reduction, log_target)
        if reduction == "batchmean":
            return _reduce(xp, loss, "mean", x.shape[0] if x.ndim else 1)
        return _reduce(xp, loss, reduction)

    def backward(ctx, gy):
        x, t = ctx.saved
        reduction, log_target = ctx.opts
        xp = get_array_module(gy)
        if reduction == "batchmean":
            g = gy / (x.shape[0] if x.ndim else 1)
        else:
            g = _spread(gy, reduction, x.size)
        nx, nt = ctx.needs_input_grad
        p = xp.exp(t) if log_target else t
        gx = -g * p if nx else None
        gt = None
        if nt:
            with xp.errstate(divide="ignore"):
                dt = p * (t - x + 1) if log_target else xp.log(t) + 1 - x
            gt = unbroadcast(g * dt, t.shape)
        return gx, gt


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """KL divergence ``D(P || Q)`` with torch's convention: **input is log Q** (log-probabilities),
    target is P (or log P with ``log_target=True``). Pointwise ``P (log P - input)``, with 0 log 0 = 0.

    ``reduction='batchmean'`` (sum / N) is the true KL per sample; ``'mean'`` divides by the number
    of elements (torch's default, kept for compatibility). Gradient w.r.t. input: ``-P / N``.

    >>> import shendu
    >>> logq = shendu.log(shendu.tensor([[0.5, 0.5]]))
    >>> round(shendu.kl_div(logq, shendu.tensor([[0.9, 0.1]]), reduction='batchmean').item(), 4)
    0.3681
    """
    op = "kl_div"
    reduction = _reduction(op, reduction, size_average, reduce, allowed=_REDUCTIONS + ("batchmean",))
    x, t = _float_pair(op, input, target)
    return KLDiv.apply(x, t, reduction=reduction, log_target=bool(log_target))


class GaussianKL(Function):
    def forward(ctx, mu, logvar, *, reduction):
        xp = get_array_module(mu)
        per = 0.5 * (mu * mu + xp.exp(logvar) - logvar - 1)
        loss = per.reshape(per.shape[0], -1).sum(axis=1) if per.ndim > 1 else per
        ctx.save_for_backward(mu, logvar)
        ctx.reduction = reduction
        return _reduce(xp, loss, reduction)

    def backward(ctx, gy):
        mu, logvar = ctx.saved
        xp = get_array_module(gy)
        g = _spread(gy, ctx.reduction, mu.shape[0])
        if g.ndim:
            g = g.reshape(g.shape + (1,) * (mu.ndim - 1))  # one value per sample, over its latent dims
        nm, nl = ctx.needs_input_grad
        return (g * mu if nm else None), (g * (0.5 * (xp.exp(logvar) - 1)) if nl else None)


def gaussian_kl(mu, logvar, reduction: str = "mean") -> Tensor:
    """KL divergence of ``N(mu, exp(logvar))`` from ``N(0, I)``, in closed form (the VAE's KL term):

    ``KL_i = 0.5 * sum_d (mu^2 + exp(logvar) - logvar - 1)`` summed over the latent dims (every dim
    after the first); ``'mean'`` averages over the batch (dim 0), ``'sum'`` adds, ``'none'`` gives
    ``(N,)``. Gradients: ``mu`` and ``(exp(logvar) - 1) / 2``.

    >>> import shendu
    >>> shendu.gaussian_kl(shendu.zeros(4, 2), shendu.zeros(4, 2)).item()
    0.0
    """
    op = "gaussian_kl"
    reduction = _reduction(op, reduction)
    m, lv = as_tensor_arg(mu), as_tensor_arg(logvar)
    ensure_float(op, m)
    if m.shape != lv.shape or m.ndim == 0:
        raise ShapeError(f"{op}: mu {fmt_shape(m.shape)} and logvar {fmt_shape(lv.shape)} must have one "
                         "shape (N, latent...)")
    if lv.dtype != m.dtype:
        lv = lv.to(m.dtype)
    return GaussianKL.apply(m, lv, reduction=reduction)


# -------------------------------------------------------------------------------------- regularizers
class SumSquares(Function):
    def forward(ctx, w):
        ctx.save_for_backward(w)
        flat = w.reshape(-1)
        return get_array_module(w).asarray(flat.dot(flat))

    def backward(ctx, gy):
        w, = ctx.saved
        return 2 * gy * w


class SumAbs(Function):
    def forward(ctx, w):
        ctx.save_for_backward(w)
        xp = get_array_module(w)
        return xp.asarray(xp.abs(w).sum())

    def backward(ctx, gy):
        w, = ctx.saved
        return gy * get_array_module(gy).sign(w)  # subgradient 0 at 0


def _penalized(op: str, params, weights_only: bool) -> list:
    """The tensors a penalty applies to: a Module's parameters or an iterable of tensors, keeping only
    those with ndim > 1 (Linear / Conv / Embedding weights) when ``weights_only``: biases and
    normalization scales and shifts are not regularized."""
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    if isinstance(params, Tensor):
        params = [params]
    out = []
    for p in params:
        if not isinstance(p, Tensor):
            raise DTypeError(f"{op}: expected a Module or an iterable of tensors, got an element of type "
                             f"{type(p).__name__}")
        if not weights_only or p.ndim > 1:
            out.append(p)
    return out


def _total(terms) -> Tensor:
    out = None
    for term in terms:
        out = term if out is None else out + term
    return out if out is not None else Tensor(0.0)


def l2_regularization(params, weights_only: bool = True) -> Tensor:
    """``R(W) = sum W^2`` over the weights (the notes' L2 penalty, **no factor 1/2**: its gradient is
    ``2W``; CS231n's ``reg * np.sum(W * W)``). Multiply by lambda yourself: ``loss + lam * R``.

    ``params``: a Module or an iterable of tensors. With ``weights_only`` (default) only tensors of
    ndim > 1 count (matrices and kernels), so biases and BatchNorm's gamma/beta are left alone.

    >>> import shendu
    >>> shendu.l2_regularization([shendu.tensor([[1.0, -2.0]]), shendu.tensor([5.0])]).item()
    5.0
    """
    return _total(SumSquares.apply(p) for p in _penalized("l2_regularization", params, weights_only))


def l1_regularization(params, weights_only: bool = True) -> Tensor:
    """``R(W) = sum |W|`` over the weights; subgradient ``sign(W)`` (0 at 0), which drives weights to
    exactly zero. Same parameter rule as :func:`l2_regularization`.

    >>> import shendu
    >>> shendu.l1_regularization([shendu.tensor([[1.0, -2.0]]), shendu.tensor([5.0])]).item()
    3.0
    """
    return _total(SumAbs.apply(p) for p in _penalized("l1_regularization", params, weights_only))


def elastic_net(params, beta: float = 1.0, weights_only: bool = True) -> Tensor:
    """The notes' elastic net ``R(W) = sum (beta W^2 + |W|)``, L2 and L1 together. Same parameter
    rule as :func:`l2_regularization`.

    >>> import shendu
    >>> shendu.elastic_net([shendu.tensor([[1.0, -2.0]])], beta=0.5).item()
    5.5
    """
    if not isinstance(beta, numbers.Real):
        raise ArgumentError(f"elastic_net: beta must be a number, got {beta!r}")
    ps = _penalized("elastic_net", params, weights_only)
    return _total(SumSquares.apply(p) * beta + SumAbs.apply(p) for p in ps)
