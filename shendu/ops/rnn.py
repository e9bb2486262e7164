"""Recurrent cells: one time step of an Elman RNN, an LSTM and a GRU, each a single fused op.

Every cell splits its work the way the recurrent layers use it. The input projection
``gi = x W_ih^T + b_ih`` does not depend on the previous state, so :class:`shendu.nn.RNN` and friends
compute it for all time steps in one matrix product before the loop; the per-step op then takes
``gi_t``, the previous state and ``W_hh, b_hh``, and does the recurrent product together with all the
gate arithmetic in one graph node (forward and analytic backward side by side below). Backprop through
time is the autograd engine walking these nodes in reverse.

Gate layouts and formulas are PyTorch's (weights move between the two unchanged):

- RNN: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`` (or relu). Only ``b_ih + b_hh`` matters; torch keeps two.
- LSTM, gates stacked ``i, f, g, o`` in ``W (4H, *)``:
  ``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)``, ``h' = sigmoid(o) * tanh(c')``.
- GRU, gates stacked ``r, z, n`` in ``W (3H, *)``:
  ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``, ``z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)``,
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.
  The reset gate multiplies ``W_hn h + b_hn`` AFTER the matrix product (torch, cuDNN, Keras
  ``reset_after=True``). Cho et al. 2014 apply it before, ``tanh(W_in x + W_hn (r * h))``; the two are
  not weight-compatible.

The public functions take torch's arguments ``(input, hx, w_ih, w_hh, b_ih, b_hh)``
(``torch.rnn_tanh_cell``, ``torch.lstm_cell``, ...).
"""

from __future__ import annotations

from shendu.autograd.function import Function
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg
from shendu.ops.elementwise import sigmoid_array
from shendu.ops.linear import linear

__all__ = ["rnn_tanh_cell", "rnn_relu_cell", "lstm_cell", "gru_cell"]


def _recurrent(h, w_hh, b_hh):
    """``h W_hh^T + b_hh`` on arrays."""
    gh = h @ w_hh.T
    if b_hh is not None:
        gh += b_hh
    return gh


def _recurrent_grads(ctx, dgh, h, w_hh):
    """Gradients of ``h W_hh^T + b_hh`` w.r.t. ``h, W_hh, b_hh`` given ``dgh``; None where not needed.
    ``ctx.needs_input_grad`` is ordered ``gi, h, [c,] w_hh, b_hh``."""
    need = ctx.needs_input_grad
    dh = dgh @ w_hh if need[1] else None
    dw = dgh.T @ h if need[-2] else None
    db = dgh.sum(0) if need[-1] else None
    return dh, dw, db


class RNNCellStep(Function):
    """``h' = act(gi + h W_hh^T + b_hh)``; ``gi (N, H)`` or ``(1, N, H)`` (a time slice of the precomputed input)."""

    def forward(ctx, gi, h, w_hh, b_hh, *, nonlinearity):
        xp = get_array_module(h)
        ctx.gi_shape = gi.shape
        a = _recurrent(h, w_hh, b_hh)
        a += gi.reshape(a.shape)
        y = xp.tanh(a, out=a) if nonlinearity == "tanh" else xp.maximum(a, 0, out=a)
        ctx.nonlinearity = nonlinearity
        ctx.save_for_backward(h, w_hh, y)
        return y

    def backward(ctx, gy):
        h, w_hh, y = ctx.saved
        da = gy * (1 - y * y) if ctx.nonlinearity == "tanh" else gy * (y > 0)
        dh, dw, db = _recurrent_grads(ctx, da, h, w_hh)
        return da.reshape(ctx.gi_shape), dh, dw, db


class LSTMCellStep(Function):
    """``(h', c')`` from ``gates = gi + h W_hh^T + b_hh`` (order i, f, g, o)."""

    def forward(ctx, gi, h, c, w_hh, b_hh):
        xp = get_array_module(h)
        ctx.gi_shape = gi.shape
        gates = _recurrent(h, w_hh, b_hh)
        gates += gi.reshape(gates.shape)
        H = h.shape[-1]
        # activate in place (the pre-activations are not needed again): i, f, o by sigmoid, g by tanh
        gates[:, :2 * H] = sigmoid_array(xp, gates[:, :2 * H])
        gates[:, 3 * H:] = sigmoid_array(xp, gates[:, 3 * H:])
        xp.tanh(gates[:, 2 * H:3 * H], out=gates[:, 2 * H:3 * H])
        i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
        c_new = f * c + i * g
        tc = xp.tanh(c_new)
        h_new = o * tc
        ctx.save_for_backward(h, c, w_hh, gates, tc)
        return h_new, c_new

    def backward(ctx, gh_new, gc_new):
        h, c, w_hh, gates, tc = ctx.saved
        xp = get_array_module(gates)
        H = h.shape[-1]
        i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
        dc = gh_new * o * (1 - tc * tc) + gc_new
        d = xp.empty_like(gates)  # gradient w.r.t. the pre-activations
        xp.multiply(dc * g, i * (1 - i), out=d[:, :H])
        xp.multiply(dc * c, f * (1 - f), out=d[:, H:2 * H])
        xp.multiply(dc * i, 1 - g * g, out=d[:, 2 * H:3 * H])
        xp.multiply(gh_new * tc, o * (1 - o), out=d[:, 3 * H:])
        need = ctx.needs_input_grad
        dh, dw, db = _recurrent_grads(ctx, d, h, w_hh)
        dc_prev = dc * f if need[2] else None
        return d.reshape(ctx.gi_shape), dh, dc_prev, dw, db


class GRUCellStep(Function):
    """``h'`` from ``gi`` (r, z, n parts of ``W_ih x + b_ih``) and ``gh = h W_hh^T + b_hh``."""

    def forward(ctx, gi, h, w_hh, b_hh):
        xp = get_array_module(h)
        ctx.gi_shape = gi.shape
        gh = _recurrent(h, w_hh, b_hh)
        gi = gi.reshape(gh.shape)
        H = h.shape[-1]
        rz = sigmoid_array(xp, gi[:, :2 * H] + gh[:, :2 * H])
        r, z = rz[:, :H], rz[:, H:]
        ghn = gh[:, 2 * H:]
        n = xp.tanh(gi[:, 2 * H:] + r * ghn)
        h_new = n + z * (h - n)
        ctx.save_for_backward(h, w_hh, rz, n, ghn)
        return h_new

    def backward(ctx, gy):
        h, w_hh, rz, n, ghn = ctx.saved
        xp = get_array_module(rz)
        H = h.shape[-1]
        r, z = rz[:, :H], rz[:, H:]
        dan = gy * (1 - z) * (1 - n * n)  # w.r.t. the argument of tanh
        dgi = xp.empty(h.shape[:-1] + (3 * H,), dtype=rz.dtype)
        xp.multiply(dan * ghn, r * (1 - r), out=dgi[:, :H])
        xp.multiply(gy * (h - n), z * (1 - z), out=dgi[:, H:2 * H])
        dgi[:, 2 * H:] = dan
        dgh = dgi.copy()
        dgh[:, 2 * H:] *= r
        dh, dw, db = _recurrent_grads(ctx, dgh, h, w_hh)
        if dh is not None:
            dh += gy * z
        return dgi.reshape(ctx.gi_shape), dh, dw, db


# ----------------------------------------------------------------------------------- public cells
def _check_cell(op: str, gates: int, x: Tensor, hs: tuple, w_ih: Tensor, w_hh: Tensor, b_ih, b_hh) -> None:
    """Validate torch-style cell arguments: ``x (N, I)``, each state ``(N, H)``, ``w_ih (G*H, I)``,
    ``w_hh (G*H, H)``, biases ``(G*H,)`` or None."""
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: expected a floating-point input, got {x.dtype}; call .float() first")
    for t in (*hs, w_ih, w_hh, b_ih, b_hh):
        if t is not None and t.dtype != x.dtype:
            raise DTypeError(f"{op}: all tensors must have the input's dtype {x.dtype}, got one of {t.dtype}; "
                             "convert the state or the weights with .to(dtype)")
    if x.ndim != 2:
        raise ShapeError(f"{op}: expected input of shape (N, input_size), got {fmt_shape(x.shape)}")
    if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise ShapeError(f"{op}: w_hh must have shape ({gates}*hidden_size, hidden_size), got {fmt_shape(w_hh.shape)}")
    G, H = w_hh.shape
    if w_ih.shape != (G, x.shape[1]):
        raise ShapeError(f"{op}: w_ih has shape {fmt_shape(w_ih.shape)} but input {fmt_shape(x.shape)} and "
                         f"w_hh {fmt_shape(w_hh.shape)} need ({G}, {x.shape[1]}); is input_size right?")
    for b in (b_ih, b_hh):
        if b is not None and b.shape != (G,):
            raise ShapeError(f"{op}: biases must have shape ({G},), got {fmt_shape(b.shape)}")
    for s in hs:
        if s.shape != (x.shape[0], H):
            raise ShapeError(f"{op}: hidden state has shape {fmt_shape(s.shape)}, expected ({x.shape[0]}, {H}) "
                             "(batch, hidden_size)")


def _args(*ts):
    return tuple(None if t is None else as_tensor_arg(t) for t in ts)


def _rnn_cell(op, nonlinearity, input, hx, w_ih, w_hh, b_ih, b_hh) -> Tensor:
    x, h, w_ih, w_hh, b_ih, b_hh = _args(input, hx, w_ih, w_hh, b_ih, b_hh)
    _check_cell(op, 1, x, (h,), w_ih, w_hh, b_ih, b_hh)
    return RNNCellStep.apply(linear(x, w_ih, b_ih), h, w_hh, b_hh, nonlinearity=nonlinearity)


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """One Elman RNN step: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (the notes' ``h_t = tanh(W_hh h_{t-1}
    + W_xh x_t + b)`` with the bias split in two, as torch does).

    Shapes: ``input (N, I)``, ``hx (N, H)``, ``w_ih (H, I)``, ``w_hh (H, H)``, biases ``(H,)`` or None;
    output ``(N, H)``.

    >>> import shendu
    >>> x, h = shendu.ones(2, 3), shendu.zeros(2, 4)
    >>> shendu.ops.rnn.rnn_tanh_cell(x, h, shendu.ones(4, 3), shendu.ones(4, 4)).shape
    (2, 4)
    """
    return _rnn_cell("rnn_tanh_cell", "tanh", input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """One Elman RNN step with ReLU: ``h' = max(0, x W_ih^T + b_ih + h W_hh^T + b_hh)``; shapes as
    :func:`rnn_tanh_cell`.

    >>> import shendu
    >>> x, h = -shendu.ones(1, 2), shendu.zeros(1, 3)
    >>> shendu.ops.rnn.rnn_relu_cell(x, h, shendu.ones(3, 2), shendu.ones(3, 3)).tolist()
    [[0.0, 0.0, 0.0]]
    """
    return _rnn_cell("rnn_relu_cell", "relu", input, hx, w_ih, w_hh, b_ih, b_hh)


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple:
    """One LSTM step (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), torch's gate order:

    ``(i, f, g, o) = x W_ih^T + b_ih + h W_hh^T + b_hh``, ``c' = σ(f) c + σ(i) tanh(g)``, ``h' = σ(o) tanh(c')``.

    Shapes: ``input (N, I)``, ``hx = (h, c)`` each ``(N, H)``, ``w_ih (4H, I)``, ``w_hh (4H, H)``, biases
    ``(4H,)`` or None; returns ``(h', c')``.

    >>> import shendu
    >>> h, c = shendu.zeros(2, 3), shendu.zeros(2, 3)
    >>> h1, c1 = shendu.ops.rnn.lstm_cell(shendu.ones(2, 5), (h, c), shendu.ones(12, 5), shendu.ones(12, 3))
    >>> h1.shape, c1.shape
    ((2, 3), (2, 3))
    """
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise ArgumentError(f"lstm_cell: hx must be a pair (h, c), got {type(hx).__name__}")
    x, h, c, w_ih, w_hh, b_ih, b_hh = _args(input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh)
    _check_cell("lstm_cell", 4, x, (h, c), w_ih, w_hh, b_ih, b_hh)
    return LSTMCellStep.apply(linear(x, w_ih, b_ih), h, c, w_hh, b_hh)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """One GRU step (Cho et al. 2014) with torch's reset-gate placement (after the matrix product):

    ``r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr)``, ``z = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)``,
    ``n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn))``, ``h' = (1 - z) n + z h``.

    Shapes: ``input (N, I)``, ``hx (N, H)``, ``w_ih (3H, I)``, ``w_hh (3H, H)``, biases ``(3H,)`` or None;
    output ``(N, H)``.

    >>> import shendu
    >>> shendu.ops.rnn.gru_cell(shendu.ones(2, 5), shendu.zeros(2, 3), shendu.ones(9, 5), shendu.ones(9, 3)).shape
    (2, 3)
    """
    x, h, w_ih, w_hh, b_ih, b_hh = _args(input, hx, w_ih, w_hh, b_ih, b_hh)
    _check_cell("gru_cell", 3, x, (h,), w_ih, w_hh, b_ih, b_hh)
    return GRUCellStep.apply(linear(x, w_ih, b_ih), h, w_hh, b_hh)
