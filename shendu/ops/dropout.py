"""Dropout family: ``dropout``, ``dropout1d``/``dropout2d`` (whole channels), ``alpha_dropout``,
``dropconnect_linear`` and ``dropconnect_conv2d`` (drop weights instead of activations) and
``stochastic_depth`` (drops whole residual branches, per sample or per batch).

All use *inverted* dropout: ``p`` is the probability of DROPPING a unit (PyTorch's convention), and the
kept units are scaled by ``1 / (1 - p)`` at training time, so the expected activation is unchanged and
evaluation (``training=False``) is the identity. The notes write the same thing with the keep
probability ``p_keep = 1 - p``: ``mask = (rand < p_keep) / p_keep``.

The mask is drawn from :func:`shendu.backend.rng` (reseeded by :func:`shendu.manual_seed`, or a given
``generator``) and saved, so backward multiplies the gradient by exactly the mask used in forward.
"""

from __future__ import annotations

import numpy as np

from shendu import backend
from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg
from shendu.ops.conv import _prepare as check_conv_args
from shendu.ops.conv import conv2d
from shendu.ops.linear import check_linear_args, linear

__all__ = ["dropout", "dropout1d", "dropout2d", "alpha_dropout", "dropconnect_linear", "dropconnect_conv2d",
           "stochastic_depth"]

# SELU's negative saturation value -lambda * alpha, which alpha dropout sets dropped units to.
_SELU_NEG_SAT = 1.7580993408473766


def _check(op: str, x: Tensor, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"{op}: dropout probability has to be between 0 and 1, but got {p}; "
                            "p is the probability of dropping a unit (keep probability is 1 - p)")
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: expected a floating-point input, got {x.dtype}; call .float() first")


def _keep_mask(shape, p: float, dtype, generator):
    """``1/(1-p)`` where a unit is kept (probability ``1 - p``), else 0, in ``dtype``."""
    if p == 1.0:
        return np.zeros(shape, dtype)
    u = backend.rng(generator).random(shape, dtype=dtype if dtype == np.float32 else np.float64)
    m = (u >= p).astype(dtype)
    m *= dtype.type(1.0 / (1.0 - p))
    return m


class MaskMul(Function):
    """``y = x * mask`` with a fixed (saved) mask that may broadcast over ``x``; backward ``gy * mask``."""

    def forward(ctx, x, mask):
        ctx.mask = mask
        return x * mask

    def backward(ctx, gy):
        return gy * ctx.mask, None


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False, generator=None) -> Tensor:
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` elementwise, so ``E[y] = x``; with
    ``training=False`` or ``p=0`` the input is returned unchanged (as in torch). ``p`` is the DROP
    probability (the notes' ``p_keep`` is ``1 - p``). ``inplace`` is accepted for torch compatibility;
    the result is always a new tensor. Shapes: any; output like ``input``.

    >>> import shendu
    >>> _ = shendu.manual_seed(0)
    >>> y = shendu.dropout(shendu.ones(8), p=0.5)
    >>> sorted(set(y.tolist()))  # kept units are scaled by 1 / (1 - 0.5)
    [0.0, 2.0]
    >>> shendu.dropout(shendu.ones(3), p=0.5, training=False).tolist()
    [1.0, 1.0, 1.0]
    """
    x = as_tensor_arg(input)
    _check("dropout", x, p)
    if not training or p == 0.0 or x.data.size == 0:
        return x
    return MaskMul.apply(x, _keep_mask(x.shape, p, x.dtype, generator))


def _feature_dropout(op: str, x: Tensor, p: float, training: bool, generator, spatial: int) -> Tensor:
    """Drop whole channels: one mask value per (sample, channel), broadcast over the spatial dims."""
    _check(op, x, p)
    if x.ndim not in (spatial + 1, spatial + 2):
        raise ShapeError(f"{op}: expected a {spatial + 2}-D (N, C, ...) or {spatial + 1}-D (C, ...) input, "
                         f"got shape {fmt_shape(x.shape)}")
    if not training or p == 0.0 or x.data.size == 0:
        return x
    mask_shape = x.shape[: x.ndim - spatial] + (1,) * spatial
    return MaskMul.apply(x, _keep_mask(mask_shape, p, x.dtype, generator))


def dropout1d(input, p: float = 0.5, training: bool = True, inplace: bool = False, generator=None) -> Tensor:
    """Channel dropout for ``(N, C, L)`` or ``(C, L)`` input: each channel of each sample is zeroed
    with probability ``p`` (kept ones scaled by ``1/(1-p)``)."""
    return _feature_dropout("dropout1d", as_tensor_arg(input), p, training, generator, spatial=1)


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False, generator=None) -> Tensor:
    """Channel (spatial) dropout: zero whole feature maps with probability ``p``, scale the rest by ``1/(1-p)``.

    Adjacent pixels of a feature map are strongly correlated, so dropping single pixels regularises
    little; dropping entire channels does. Shapes: ``(N, C, H, W)``, or ``(N, C, L)`` (a 3-D input is
    read as channel-wise 1-D dropout, as torch does).

    >>> import shendu
    >>> _ = shendu.manual_seed(0)
    >>> y = shendu.dropout2d(shendu.ones(2, 6, 3, 3), p=0.5)
    >>> bool(((y.sum((2, 3)) == 0) | (y.sum((2, 3)) == 18)).all())  # each channel all-dropped or all-kept
    True
    """
    x = as_tensor_arg(input)
    if x.ndim not in (3, 4):
        raise ShapeError(f"dropout2d: expected a 4-D (N, C, H, W) or 3-D (N, C, L) input, got shape "
                         f"{fmt_shape(x.shape)}")
    return _feature_dropout("dropout2d", x, p, training, generator, spatial=2 if x.ndim == 4 else 1)


class AlphaDropout(Function):
    def forward(ctx, x, keep_scaled, offset):
        ctx.keep_scaled = keep_scaled
        return x * keep_scaled + offset

    def backward(ctx, gy):
        return gy * ctx.keep_scaled, None, None


def alpha_dropout(input, p: float = 0.5, training: bool = False, inplace: bool = False,
                  generator=None) -> Tensor:
    """Dropout for SELU networks: dropped units are set to SELU's saturation value ``-lambda*alpha``
    and an affine map ``a*y + b`` restores zero mean and unit variance (Klambauer et al., 2017).

    ``a = ((1 - p)(1 + p alpha'^2))^(-1/2)``, ``b = -a alpha' p`` for dropped value ``-alpha'``.
    """
    x = as_tensor_arg(input)
    _check("alpha_dropout", x, p)
    if not training or p == 0.0 or x.data.size == 0:
        return x
    xp = get_array_module(x.data)
    if p == 1.0:
        return x * 0.0
    keep = backend.rng(generator).random(x.shape) >= p
    a = (1.0 / ((_SELU_NEG_SAT ** 2 * p + 1.0) * (1.0 - p))) ** 0.5
    keep_scaled = xp.where(keep, a, 0.0).astype(x.dtype)
    offset = xp.where(keep, a * _SELU_NEG_SAT * p, a * _SELU_NEG_SAT * (p - 1.0)).astype(x.dtype)
    return AlphaDropout.apply(x, keep_scaled, offset)


class DropConnectLinear(Function):
    def forward(ctx, x, w, b, wmask):
        wm = w * wmask
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ wm.T
        if b is not None:
            y += b
        ctx.save_for_backward(x2, wm, wmask)
        ctx.x_shape = x.shape
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(ctx, gy):
        x2, wm, wmask = ctx.saved
        nx, nw, nb, _ = ctx.needs_input_grad
        gy2 = gy.reshape(-1, gy.shape[-1])
        gx = (gy2 @ wm).reshape(ctx.x_shape) if nx else None
        gw = (gy2.T @ x2) * wmask if nw else None  # dropped connections get no gradient
        gb = gy2.sum(0) if nb else None
        return gx, gw, gb, None


def dropconnect_linear(input, weight, bias=None, p: float = 0.5, training: bool = True,
                       generator=None) -> Tensor:
    """DropConnect (Wan et al., 2013): a linear layer whose WEIGHTS are dropped, not its activations.

    ``y = x (W * M / (1 - p))^T + b`` with ``M ~ Bernoulli(1 - p)`` of the shape of ``W``, drawn fresh
    on every call and shared by the whole batch (one GEMM; the paper draws a mask per example). The
    ``1/(1-p)`` scaling makes the expected pre-activation equal to ``x W^T + b``, so at evaluation all
    connections are used unscaled: ``training=False`` is plain :func:`linear`. (The paper instead
    approximates inference by moment matching a Gaussian over the pre-activations and sampling; this
    mean-weight rule is the cheap, common alternative.) The bias is not dropped.

    Shapes: ``input (*, in)``, ``weight (out, in)``, ``bias (out,)`` or None; output ``(*, out)``.

    >>> import shendu
    >>> x, w = shendu.ones(1, 4), shendu.ones(3, 4)
    >>> shendu.dropconnect_linear(x, w, training=False).tolist()
    [[4.0, 4.0, 4.0]]
    >>> _ = shendu.manual_seed(0)
    >>> y = shendu.dropconnect_linear(x, w, p=0.5)
    >>> all(v in (0.0, 2.0, 4.0, 6.0, 8.0) for v in y.tolist()[0])
    True
    """
    x, w = as_tensor_arg(input), as_tensor_arg(weight)
    b = None if bias is None else as_tensor_arg(bias)
    _check("dropconnect_linear", w, p)
    if not training or p == 0.0:
        return linear(x, w, b)
    check_linear_args("dropconnect_linear", x, w, b)
    return DropConnectLinear.apply(x, w, b, _keep_mask(w.shape, p, w.dtype, generator))



def dropconnect_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, p: float = 0.5,
                       training: bool = True, generator=None, *, algorithm: str = "auto") -> Tensor:
    """DropConnect for a convolution: drop each WEIGHT of the kernel with probability ``p``.

    ``y = conv2d(x, W * M / (1 - p)) + b`` with ``M ~ Bernoulli(1 - p)`` of the shape of ``W``
    ``(out, in/groups, kh, kw)``, drawn fresh on every call and shared by the whole batch (a per-batch
    mask: the paper, Wan et al. 2013, draws one per example, which would cost one convolution per
    sample). Dropped weights get no gradient. Inference rule: the mean network. With the inverted
    ``1/(1-p)`` scaling the expected kernel is ``W``, so ``training=False`` is plain :func:`conv2d`
    (the paper's moment-matching inference is not implemented). The bias is never dropped.

    Arguments and shapes as :func:`conv2d`: input ``(N, C, H, W)``, weight ``(K, C/groups, kh, kw)``,
    bias ``(K,)`` or None; output ``(N, K, P, Q)``.

    >>> import shendu
    >>> x, w = shendu.ones(1, 1, 3, 3), shendu.ones(2, 1, 3, 3)
    >>> shendu.dropconnect_conv2d(x, w, training=False).flatten().tolist()
    [9.0, 9.0]
    >>> _ = shendu.manual_seed(0)
    >>> y = shendu.dropconnect_conv2d(x, w, p=0.5)  # each output sums 2 * (number of kept weights)
    >>> all(v % 2 == 0 and v <= 18 for v in y.flatten().tolist())
    True
    """
    x, w = as_tensor_arg(input), as_tensor_arg(weight)
    _check("dropconnect_conv2d", w, p)
    check_conv_args("dropconnect_conv2d", x, w, bias, stride, padding, dilation, groups, 2)
    if training and p > 0.0:
        w = MaskMul.apply(w, _keep_mask(w.shape, p, w.dtype, generator))
    return conv2d(x, w, bias, stride, padding, dilation, groups, algorithm=algorithm)


def stochastic_depth(input, p: float, mode: str, training: bool = True, generator=None) -> Tensor:
    """Stochastic depth (Huang et al., ECCV 2016), as ``torchvision.ops.stochastic_depth``: drop the
    whole input (a residual branch) with probability ``p``, scale survivors by ``1/(1-p)``.

    ``y = x * b / (1 - p)`` with ``b ~ Bernoulli(1 - p)``: one ``b`` per sample (``mode="row"``, the
    "DropPath" of later networks; ``b`` has shape ``(N, 1, ..., 1)``) or one for the whole batch
    (``mode="batch"``). ``p`` is the DROP probability. This is the inverted form: evaluation
    (``training=False``) is the identity. The paper instead keeps the branch unscaled in training and
    multiplies it by the survival probability ``1 - p`` at test time; both give the same expectation.
    Use it on the residual branch only: ``out = shortcut(x) + stochastic_depth(branch(x), p, "row")``.

    Shapes: any, with the batch first for ``"row"``; output like ``input``.

    >>> import shendu
    >>> _ = shendu.manual_seed(0)
    >>> y = shendu.stochastic_depth(shendu.ones(6, 2), p=0.5, mode="row")
    >>> [row[0] == row[1] and row[0] in (0.0, 2.0) for row in y.tolist()]  # whole rows kept (x2) or dropped
    [True, True, True, True, True, True]
    >>> shendu.stochastic_depth(shendu.ones(2), 0.5, "batch", training=False).tolist()
    [1.0, 1.0]
    """
    x = as_tensor_arg(input)
    _check("stochastic_depth", x, p)
    if mode not in ("row", "batch"):
        raise ArgumentError(f"stochastic_depth: mode has to be either 'batch' or 'row', but got {mode!r}; "
                            "'row' drops each sample's branch independently, 'batch' all at once")
    if mode == "row" and x.ndim == 0:
        raise ShapeError("stochastic_depth: mode='row' needs a batch dimension, got a 0-d input; "
                         "use mode='batch'")
    if not training or p == 0.0 or x.data.size == 0:
        return x
    mask_shape = ((x.shape[0] if mode == "row" else 1,) + (1,) * (x.ndim - 1)) if x.ndim else ()
    return MaskMul.apply(x, _keep_mask(mask_shape, p, x.dtype, generator))
