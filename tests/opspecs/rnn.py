"""Registry entries for shendu/ops/rnn.py: the four recurrent cells against torch's functional cells
(``torch.rnn_tanh_cell``, ``torch.rnn_relu_cell``, ``torch.lstm_cell``, ``torch.gru_cell``, same argument
order), and each cell unrolled over a sequence (backprop through time through the public cell) against
torch's fused sequence functions ``torch.rnn_tanh`` / ``torch.lstm`` / ``torch.gru`` with the same weights.

The layers (nn.RNN/LSTM/GRU: several layers, both directions, batch_first) are compared with torch.nn in
tests/nn/test_rnn.py. Weights are kept small (|w| <= 0.5) so the gates do not saturate and the gradients
checked are not all near zero; the ReLU samples keep their pre-activations away from 0 (checked below).
"""

import numpy as np

from shendu.errors import ArgumentError, DTypeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, idx, r

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def _w(*shape):
    return r(*shape, low=-0.5, high=0.5)


def _cell_sample(kind, N, I, H, bias=True, desc=""):
    G = _GATES[kind] * H
    hx = [r(N, H), r(N, H)] if kind == "lstm" else r(N, H)
    biases = (_w(G), _w(G)) if bias else (None, None)
    return Sample((r(N, I), hx, _w(G, I), _w(G, H)) + biases, desc=desc)


def _cell_samples(kind):
    return [_cell_sample(kind, 3, 4, 5, desc="bias"), _cell_sample(kind, 1, 2, 3, desc="batch1"),
            _cell_sample(kind, 2, 3, 4, bias=False, desc="nobias")]


def _relu_samples():
    """Samples whose pre-activations are at least 0.05 from the kink of relu (for the gradient check)."""
    out = []
    while len(out) < 3:
        s = _cell_sample("rnn_relu", *[(3, 4, 5), (1, 2, 3), (2, 3, 4)][len(out)], bias=len(out) != 2,
                         desc=["bias", "batch1", "nobias"][len(out)])
        x, h, w_ih, w_hh, b_ih, b_hh = s.args
        a = x @ w_ih.T + h @ w_hh.T + (0 if b_ih is None else b_ih + b_hh)
        if np.abs(a).min() > 0.05:
            out.append(s)
    return out


def _cell(name):
    return lambda m, *args: getattr(m, name)(*args)


# ----------------------------------------------------------------------------- unrolled sequences
def _unrolled(kind):
    """Run the public cell over ``x (L, N, I)`` from ``hx``; return torch.<kind>'s outputs:
    ``(output (L, N, H), h_n (1, N, H)[, c_n (1, N, H)])``."""
    def op(m, x, hx, w_ih, w_hh, b_ih=None, b_hh=None):
        state = tuple(hx) if kind == "lstm" else hx
        hs = []
        for t in range(x.shape[0]):  # backprop through time walks these steps in reverse
            state = getattr(m, f"{kind}_cell")(x[t], state, w_ih, w_hh, b_ih, b_hh)
            hs.append(state[0] if kind == "lstm" else state)
        finals = state if kind == "lstm" else (state,)
        return (m.stack(hs, 0),) + tuple(s.unsqueeze(0) for s in finals)

    def torch_op(m, x, hx, w_ih, w_hh, b_ih=None, b_hh=None):
        params = [w_ih, w_hh] + ([b_ih, b_hh] if b_ih is not None else [])
        h0 = [s.unsqueeze(0) for s in hx] if kind == "lstm" else hx.unsqueeze(0)
        # (input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
        return getattr(m, kind)(x, h0, params, b_ih is not None, 1, 0.0, False, False, False)
    return op, torch_op


def _seq_samples(kind):
    G = _GATES[kind]

    def one(L, N, I, H, bias, desc):
        hx = [r(N, H), r(N, H)] if kind == "lstm" else r(N, H)
        b = (_w(G * H), _w(G * H)) if bias else ()
        return Sample((r(L, N, I), hx, _w(G * H, I), _w(G * H, H)) + b, desc=desc)
    return [one(5, 3, 4, 6, True, "L5"), one(3, 1, 2, 3, False, "L3_batch1_nobias")]


def _unrolled_spec(kind):
    op, torch_op = _unrolled(kind)
    return OpSpec(f"{kind}_unrolled", op, _seq_samples(kind), torch_op=torch_op, grad_rtol32=2e-4, grad_atol32=2e-5)


# ------------------------------------------------------------------------------------------ errors
_CELL_ERRORS = [
    ErrorCase((idx(3, 3, 4), r(3, 5), r(5, 4), r(5, 5)), exc=DTypeError,
              match="rnn_tanh_cell: expected a floating-point input"),
    ErrorCase((r(3, 4), r(3, 5), idx(3, 5, 4), r(5, 5)), exc=DTypeError, match="must have the input's dtype"),
    ErrorCase((r(4), r(1, 5), r(5, 4), r(5, 5)), exc=ShapeError, match=r"expected input of shape \(N, input_size\)"),
    ErrorCase((r(3, 4), r(3, 5), r(5, 3), r(5, 5)), exc=ShapeError, match="is input_size right"),
    ErrorCase((r(3, 4), r(3, 5), r(5, 4), r(5, 4)), exc=ShapeError, match="w_hh must have shape"),
    ErrorCase((r(3, 4), r(2, 5), r(5, 4), r(5, 5)), exc=ShapeError, match=r"hidden state has shape \(2, 5\)"),
    ErrorCase((r(3, 4), r(3, 5), r(5, 4), r(5, 5), r(4), r(5)), exc=ShapeError, match=r"biases must have shape \(5,\)"),
]
_LSTM_ERRORS = [
    ErrorCase((r(3, 4), r(3, 5), r(20, 4), r(20, 5)), exc=ArgumentError, match="lstm_cell: hx must be a pair"),
    ErrorCase((r(3, 4), [r(3, 5), r(3, 4)], r(20, 4), r(20, 5)), exc=ShapeError, match="hidden state has shape"),
    ErrorCase((r(3, 4), [r(3, 5), r(3, 5)], r(15, 4), r(15, 5)), exc=ShapeError, match=r"w_hh must have shape \(4\*"),
]
_GRU_ERRORS = [
    ErrorCase((r(3, 4), r(3, 5), r(15, 4), r(20, 5)), exc=ShapeError, match=r"gru_cell: w_hh must have shape \(3\*"),
]

SPECS = [
    OpSpec("rnn_tanh_cell", _cell("rnn_tanh_cell"), _cell_samples("rnn_tanh"), errors=_CELL_ERRORS),
    OpSpec("rnn_relu_cell", _cell("rnn_relu_cell"), _relu_samples()),
    OpSpec("lstm_cell", _cell("lstm_cell"), _cell_samples("lstm"), errors=_LSTM_ERRORS),
    OpSpec("gru_cell", _cell("gru_cell"), _cell_samples("gru"), errors=_GRU_ERRORS),
    _unrolled_spec("rnn_tanh"),
    _unrolled_spec("lstm"),
    _unrolled_spec("gru"),
]
