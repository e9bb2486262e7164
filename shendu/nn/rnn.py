"""Recurrent layers: ``RNNCell``, ``LSTMCell``, ``GRUCell``, ``RNN``, ``LSTM``, ``GRU`` (PyTorch's names,
arguments, parameter names and shapes, so ``load_state_dict`` takes a torch state dict unchanged), and the
layer-normalized ``LayerNormRNN`` / ``LayerNormLSTM`` of Ba, Kiros & Hinton 2016.

The notes' RNN is ``h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)``, ``y_t = W_hy h_t`` (the output layer is a
separate ``Linear``); torch keeps two biases ``b_ih + b_hh`` where the notes have one ``b``.

How a layer runs: for each layer and direction, the input projection ``W_ih x_t + b_ih`` of all time
steps is one matrix product; the loop over time then calls one fused op per step (recurrent product +
gate arithmetic, :mod:`shendu.ops.rnn`). Backprop through time is ordinary autograd over these nodes;
clip exploding gradients with :func:`shendu.nn.utils.clip_grad_norm_` between ``backward`` and ``step``.

All weights and biases start as ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``, as in torch (the forget
gate bias is NOT set to 1).
"""

from __future__ import annotations

import math

import numpy as np

from shendu import backend
from shendu import functional as F
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape
from shendu.nn import init
from shendu.nn.module import Module, Parameter
from shendu.ops.rnn import GRUCellStep, LSTMCellStep, RNNCellStep, gru_cell, lstm_cell, rnn_relu_cell, rnn_tanh_cell

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU", "LayerNormRNN", "LayerNormLSTM"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3, "LN_RNN": 1, "LN_LSTM": 4}


def _param(*shape, dtype=None) -> Parameter:
    return Parameter(np.empty(shape, dtype=np.dtype(dtype) if dtype is not None else backend.get_default_dtype()))


def _check_sizes(layer: str, **sizes) -> None:
    for name, v in sizes.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise ArgumentError(f"{layer}: {name} must be a positive integer, got {v!r}")


def _nonlinearity(layer: str, nonlinearity: str) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ArgumentError(f"{layer}: unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'")
    return nonlinearity


# ------------------------------------------------------------------------------------------- cells
class _CellBase(Module):
    def __init__(self, input_size: int, hidden_size: int, bias: bool, gates: int, dtype=None):
        super().__init__()
        _check_sizes(type(self).__name__, input_size=input_size, hidden_size=hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = _param(gates * hidden_size, input_size, dtype=dtype)
        self.weight_hh = _param(gates * hidden_size, hidden_size, dtype=dtype)
        self.bias_ih = _param(gates * hidden_size, dtype=dtype) if bias else None
        self.bias_hh = _param(gates * hidden_size, dtype=dtype) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k)

    def _prepare(self, input, hx, n_states: int):
        """Input as ``(N, I)`` (a 1-D input is a batch of one), states as ``(N, H)`` (zeros when None)."""
        name = type(self).__name__
        x = input if isinstance(input, Tensor) else Tensor(input)
        if x.ndim not in (1, 2):
            raise ShapeError(f"{name}: expected input of shape (N, {self.input_size}) or ({self.input_size},), "
                             f"got {fmt_shape(x.shape)}")
        batched = x.ndim == 2
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"{name}: input has {x.shape[-1]} features but input_size={self.input_size} "
                             f"(input shape {fmt_shape(x.shape)})")
        if not batched:
            x = x.unsqueeze(0)
        if hx is None:
            states = tuple(F.zeros(x.shape[0], self.hidden_size, dtype=x.dtype) for _ in range(n_states))
        else:
            states = tuple(hx) if n_states == 2 else (hx,)
            if n_states == 2 and len(states) != 2:
                raise ArgumentError(f"{name}: hx must be a pair (h_0, c_0)")
            if not batched:
                states = tuple(s.unsqueeze(0) for s in states)
        return x, states, batched

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s

    def _weights(self):
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh


class RNNCell(_CellBase):
    """Elman RNN cell ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu).

    Shapes: input ``(N, input_size)`` or ``(input_size,)``, hx the same leading shape with ``hidden_size``
    (zeros when omitted) -> ``h' (N, hidden_size)``. Parameters ``weight_ih (H, I)``, ``weight_hh (H, H)``,
    ``bias_ih (H,)``, ``bias_hh (H,)``.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.RNNCell(10, 20)(shendu.randn(3, 10)).shape
    (3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        self.nonlinearity = _nonlinearity("RNNCell", nonlinearity)
        super().__init__(input_size, hidden_size, bias, 1, dtype)

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx, 1)
        cell = rnn_tanh_cell if self.nonlinearity == "tanh" else rnn_relu_cell
        h = cell(x, h, *self._weights())
        return h if batched else h.squeeze(0)


class LSTMCell(_CellBase):
    """LSTM cell, torch's gate order i, f, g, o (see :func:`shendu.ops.rnn.lstm_cell`).

    Shapes: input ``(N, I)`` or ``(I,)``, ``hx = (h, c)`` (zeros when omitted) -> ``(h', c')`` each ``(N, H)``.
    Parameters ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``.

    >>> import shendu
    >>> from shendu import nn
    >>> h, c = nn.LSTMCell(10, 20)(shendu.randn(3, 10))
    >>> h.shape, c.shape
    ((3, 20), (3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, dtype)

    def forward(self, input, hx=None):
        x, (h, c), batched = self._prepare(input, hx, 2)
        h, c = lstm_cell(x, (h, c), *self._weights())
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    """GRU cell with torch's reset-gate placement ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``
    (Cho et al. 2014 put r before the product, ``W_hn (r * h)``; not weight-compatible). See
    :func:`shendu.ops.rnn.gru_cell`.

    Shapes: input ``(N, I)`` or ``(I,)``, hx ``(N, H)`` -> ``h' (N, H)``. Parameters ``weight_ih (3H, I)``,
    ``weight_hh (3H, H)``, ``bias_ih (3H,)``, ``bias_hh (3H,)`` stacked r, z, n.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.GRUCell(10, 20)(shendu.randn(3, 10)).shape
    (3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, dtype)

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, hx, 1)
        h = gru_cell(x, h, *self._weights())
        return h if batched else h.squeeze(0)


# ------------------------------------------------------------------------------------------ layers
class _RNNBase(Module):
    """The multi-layer, optionally bidirectional loop shared by every recurrent layer.

    Subclasses say how many gate blocks they have (``mode``), which extra parameters each layer and
    direction carries (:meth:`_extra_params`), how the input is projected (:meth:`_project`) and what
    one time step does (:meth:`_step`).
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, dtype=None):
        super().__init__()
        name = type(self).__name__
        _check_sizes(name, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ArgumentError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        gates = _GATES[mode] * hidden_size
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for sfx in self._suffixes(layer):
                setattr(self, f"weight_ih{sfx}", _param(gates, layer_in, dtype=dtype))
                setattr(self, f"weight_hh{sfx}", _param(gates, hidden_size, dtype=dtype))
                if bias:
                    for pname, shape in self._bias_params(gates):
                        setattr(self, f"{pname}{sfx}", _param(*shape, dtype=dtype))
                for pname, shape in self._extra_params(gates):
                    setattr(self, f"{pname}{sfx}", _param(*shape, dtype=dtype))
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self, layer: int) -> list:
        return [f"_l{layer}"] + ([f"_l{layer}_reverse"] if self.bidirectional else [])

    def _bias_params(self, gates: int) -> list:
        return [("bias_ih", (gates,)), ("bias_hh", (gates,))]

    def _extra_params(self, gates: int) -> list:
        return []

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k)

    def _params(self, sfx: str) -> dict:
        """This layer-direction's parameters by their name without suffix."""
        return {name[:-len(sfx)]: p for name, p in self._parameters.items() if name.endswith(sfx)}

    # -- what subclasses change
    def _project(self, x: Tensor, p: dict) -> Tensor:
        """``W_ih x_t + b_ih`` for every time step at once: ``(L, N, I) -> (L, N, G)``."""
        return F.linear(x, p["weight_ih"], p.get("bias_ih"))

    def _step(self, gi_t: Tensor, state: tuple, p: dict) -> tuple:
        raise NotImplementedError

    def _n_states(self) -> int:
        return 2 if self.mode in ("LSTM", "LN_LSTM") else 1

    # -- the shared loop
    def _check_input(self, input, hx):
        name = type(self).__name__
        x = input if isinstance(input, Tensor) else Tensor(input)
        if x.dtype.kind != "f":
            raise DTypeError(f"{name}: expected a floating-point input, got {x.dtype}; call .float() first")
        if x.ndim not in (2, 3):
            order = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
            raise ShapeError(f"{name}: expected a 3-D input {order} or a 2-D unbatched input (L, H_in), "
                             f"got {fmt_shape(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"{name}: input has {x.shape[-1]} features (shape {fmt_shape(x.shape)}) but "
                             f"input_size={self.input_size}; with batch_first={self.batch_first} the features are "
                             "the last dim")
        if 0 in x.shape:
            raise ShapeError(f"{name}: got an empty input of shape {fmt_shape(x.shape)}")
        batched = x.ndim == 3
        if not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        n_states = self._n_states()
        want = (self.num_layers * self.num_directions, x.shape[1], self.hidden_size)
        if hx is None:
            states = tuple(F.zeros(*want, dtype=x.dtype) for _ in range(n_states))
        else:
            states = tuple(hx) if n_states == 2 else (hx,)
            if len(states) != n_states:
                raise ArgumentError(f"{name}: hx must be a pair (h_0, c_0)")
            states = tuple(s if isinstance(s, Tensor) else Tensor(s) for s in states)
            if not batched:
                states = tuple(s.unsqueeze(1) for s in states)
            for s in states:
                if s.shape != want:
                    raise ShapeError(f"{name}: initial state has shape {fmt_shape(s.shape)}, expected "
                                     f"{fmt_shape(want)} (num_layers * num_directions, batch, hidden_size)")
                if s.dtype != x.dtype:
                    raise DTypeError(f"{name}: initial state has dtype {s.dtype} but input has {x.dtype}")
        return x, states, batched

    def forward(self, input, hx=None):
        """``input (L, N, H_in)`` (``(N, L, H_in)`` with ``batch_first``, ``(L, H_in)`` unbatched) ->
        ``output (L, N, D*H)`` and the final state(s) ``(D*num_layers, N, H)``."""
        x, states, batched = self._check_input(input, hx)
        finals = []  # one state tuple per layer-direction, in torch's order l0, l0_reverse, l1, ...
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
            outs = []
            for d, sfx in enumerate(self._suffixes(layer)):
                p = self._params(sfx)
                idx = layer * self.num_directions + d
                state = tuple(s[idx] for s in states)
                gis = F.split(self._project(x, p), 1, dim=0)  # L slices (1, N, G): one node, not L
                hs = [None] * len(gis)
                for t in (range(len(gis)) if d == 0 else range(len(gis) - 1, -1, -1)):
                    state = self._step(gis[t], state, p)
                    hs[t] = state[0]
                outs.append(F.stack(hs, 0))
                finals.append(state)
            x = outs[0] if len(outs) == 1 else F.cat(outs, dim=2)
        output = x
        h_n = tuple(F.stack([f[i] for f in finals], 0) for i in range(len(finals[0])))
        if not batched:
            output, h_n = output.squeeze(1), tuple(h.squeeze(1) for h in h_n)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if len(h_n) == 2 else h_n[0])

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        for flag, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, flag) != default:
                s += f", {flag}={getattr(self, flag)}"
        return s


class RNN(_RNNBase):
    """Multi-layer Elman RNN: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (or relu) per layer;
    layer ``l > 0`` reads the outputs of layer ``l - 1`` (with dropout between layers when training).

    Shapes (torch's): input ``(L, N, H_in)``, or ``(N, L, H_in)`` with ``batch_first=True``, or ``(L, H_in)``;
    ``h_0 (D*num_layers, N, H)`` (zeros when omitted; D = 2 if bidirectional) -> ``output (L, N, D*H)``
    (the last layer's ``h_t``, both directions concatenated) and ``h_n (D*num_layers, N, H)``.
    Parameters ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (+ ``_reverse``).

    >>> import shendu
    >>> from shendu import nn
    >>> rnn = nn.RNN(10, 20, num_layers=2)
    >>> out, h_n = rnn(shendu.randn(5, 3, 10))
    >>> out.shape, h_n.shape
    ((5, 3, 20), (2, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        self.nonlinearity = _nonlinearity("RNN", nonlinearity)
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, dtype)

    def _step(self, gi_t, state, p):
        return (RNNCellStep.apply(gi_t, state[0], p["weight_hh"], p.get("bias_hh"), nonlinearity=self.nonlinearity),)


class LSTM(_RNNBase):
    """Multi-layer LSTM, torch's gate order i, f, g, o (:func:`shendu.ops.rnn.lstm_cell`).

    Shapes as :class:`RNN`, with ``hx = (h_0, c_0)`` and the result ``output, (h_n, c_n)``;
    ``weight_ih_l{k} (4H, H_in)``, ``weight_hh_l{k} (4H, H)``.

    >>> import shendu
    >>> from shendu import nn
    >>> out, (h_n, c_n) = nn.LSTM(10, 20, bidirectional=True, batch_first=True)(shendu.randn(3, 5, 10))
    >>> out.shape, h_n.shape, c_n.shape
    ((3, 5, 40), (2, 3, 20), (2, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype)

    def _step(self, gi_t, state, p):
        return LSTMCellStep.apply(gi_t, state[0], state[1], p["weight_hh"], p.get("bias_hh"))


class GRU(_RNNBase):
    """Multi-layer GRU with torch's reset-gate placement (:func:`shendu.ops.rnn.gru_cell`).

    Shapes as :class:`RNN`; ``weight_ih_l{k} (3H, H_in)``, ``weight_hh_l{k} (3H, H)``, stacked r, z, n.

    >>> import shendu
    >>> from shendu import nn
    >>> out, h_n = nn.GRU(28, 16)(shendu.randn(28, 4, 28))
    >>> out.shape, h_n.shape
    ((28, 4, 16), (1, 4, 16))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype)

    def _step(self, gi_t, state, p):
        return (GRUCellStep.apply(gi_t, state[0], p["weight_hh"], p.get("bias_hh")),)


# ------------------------------------------------------------------------------- layer-normalized
def _layer_norm(a: Tensor, gain: Tensor, bias: Tensor | None, eps: float) -> Tensor:
    """Normalize over the last dim (the hidden units of one sample at one time step), then ``gain * . + bias``."""
    mu = F.mean(a, -1, keepdim=True)
    var = F.var(a, -1, keepdim=True, correction=0)
    y = (a - mu) * F.rsqrt(var + eps) * gain
    return y if bias is None else y + bias


class LayerNormRNN(_RNNBase):
    """Layer-normalized Elman RNN (Ba, Kiros & Hinton 2016, section 3.1 / eq. 4):

    ``a_t = W_ih x_t + W_hh h_{t-1}``, ``h_t = act(g * (a_t - mu_t) / sigma_t + b)``

    where ``mu_t, sigma_t`` are the mean and standard deviation of the H summed inputs ``a_t`` of ONE sample
    at ONE time step (``sigma_t = sqrt(var_t + eps)``, biased variance). LN is applied to the full recurrent
    pre-activation, before the nonlinearity; its bias ``b`` replaces the RNN bias. Statistics are recomputed
    at every step and never shared across time or batch, so training and evaluation compute the same thing.

    Parameters per layer/direction: ``weight_ih_l{k} (H, H_in)``, ``weight_hh_l{k} (H, H)``,
    ``ln_weight_l{k} (H,)`` = g (ones) and, when ``bias``, ``ln_bias_l{k} (H,)`` = b (zeros). Shapes and
    the other arguments as :class:`RNN`.

    >>> import shendu
    >>> from shendu import nn
    >>> out, h_n = nn.LayerNormRNN(10, 20)(shendu.randn(5, 3, 10))
    >>> out.shape, h_n.shape
    ((5, 3, 20), (1, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 eps: float = 1e-5, device=None, dtype=None):
        self.nonlinearity = _nonlinearity("LayerNormRNN", nonlinearity)
        self.eps = eps
        super().__init__("LN_RNN", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype)

    def _bias_params(self, gates):
        return [("ln_bias", (gates,))]

    def _extra_params(self, gates):
        return [("ln_weight", (gates,))]

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("weight_"):
                init.uniform_(p, -k, k)
            else:
                (init.ones_ if name.startswith("ln_weight") else init.zeros_)(p)

    def _project(self, x, p):
        return F.linear(x, p["weight_ih"])

    def _step(self, gi_t, state, p):
        a = gi_t.squeeze(0) + F.linear(state[0], p["weight_hh"])
        a = _layer_norm(a, p["ln_weight"], p.get("ln_bias"), self.eps)
        return (F.tanh(a) if self.nonlinearity == "tanh" else F.relu(a),)


class LayerNormLSTM(_RNNBase):
    """Layer-normalized LSTM (Ba, Kiros & Hinton 2016, section 3.1 / eqs. 20-22), torch's gate order i, f, g, o:

    ``(i, f, g, o) = LN(W_hh h_{t-1}; g_hh, b_hh) + LN(W_ih x_t; g_ih, b_ih) + bias``
    ``c_t = σ(f) c_{t-1} + σ(i) tanh(g)``, ``h_t = σ(o) tanh(LN(c_t; g_c, b_c))``

    LN is applied in three places, each over the units of one sample at one time step: over the 4H recurrent
    pre-activations, over the 4H input pre-activations (computed for all steps in one product; the
    statistics are still per step and per sample), and over the H cell values before the output tanh (the
    cell state itself is carried un-normalized). Gains start at 1, LN biases at 0.

    Parameters per layer/direction: ``weight_ih_l{k} (4H, H_in)``, ``weight_hh_l{k} (4H, H)``,
    ``bias_l{k} (4H,)`` (when ``bias``; U(-1/sqrt(H), 1/sqrt(H))), ``ln_ih_weight_l{k}``, ``ln_ih_bias_l{k}``,
    ``ln_hh_weight_l{k}``, ``ln_hh_bias_l{k}`` (4H,), ``ln_c_weight_l{k}``, ``ln_c_bias_l{k}`` (H,).
    Shapes and the result ``output, (h_n, c_n)`` as :class:`LSTM`.

    >>> import shendu
    >>> from shendu import nn
    >>> out, (h_n, c_n) = nn.LayerNormLSTM(10, 20)(shendu.randn(5, 3, 10))
    >>> out.shape, c_n.shape
    ((5, 3, 20), (1, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, eps: float = 1e-5,
                 device=None, dtype=None):
        self.eps = eps
        super().__init__("LN_LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype)

    def _bias_params(self, gates):
        return [("bias", (gates,))]

    def _extra_params(self, gates):
        H = self.hidden_size
        return [("ln_ih_weight", (gates,)), ("ln_ih_bias", (gates,)), ("ln_hh_weight", (gates,)),
                ("ln_hh_bias", (gates,)), ("ln_c_weight", (H,)), ("ln_c_bias", (H,))]

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith(("weight_", "bias_")):
                init.uniform_(p, -k, k)
            else:
                (init.ones_ if "_weight" in name else init.zeros_)(p)

    def _project(self, x, p):
        return _layer_norm(F.linear(x, p["weight_ih"]), p["ln_ih_weight"], p["ln_ih_bias"], self.eps)

    def _step(self, gi_t, state, p):
        h, c = state
        gates = gi_t.squeeze(0) + _layer_norm(F.linear(h, p["weight_hh"]), p["ln_hh_weight"], p["ln_hh_bias"],
                                              self.eps)
        if "bias" in p:
            gates = gates + p["bias"]
        i, f, g, o = F.chunk(gates, 4, dim=-1)
        c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
        h = F.sigmoid(o) * F.tanh(_layer_norm(c, p["ln_c_weight"], p["ln_c_bias"], self.eps))
        return h, c
