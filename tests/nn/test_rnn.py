"""Recurrent layers and cells against torch.nn with the same weights (outputs, final states and every
gradient under a random cotangent), gradient checks, and the layer-normalized variants against a plain
float64 NumPy loop written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shendu
from shendu import nn
from shendu.autograd.gradcheck import gradcheck
from shendu.errors import ArgumentError, ShapeError

TOL = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=2e-4, atol=2e-5)}


def _t(a, requires_grad=False):
    return torch.tensor(np.asarray(a), requires_grad=requires_grad)


def _s(a, requires_grad=False):
    return shendu.tensor(np.asarray(a), requires_grad=requires_grad)


def _backward(outputs, cotangents):
    """Backward of several outputs at once: the gradient of sum_k <output_k, cotangent_k>."""
    total = (outputs[0] * _s(cotangents[0])).sum()
    for o, c in zip(outputs[1:], cotangents[1:]):
        total = total + (o * _s(c)).sum()
    total.backward()


def _copy_weights(torch_module, shendu_module, dtype):
    torch_module.to(torch.float64 if dtype == np.float64 else torch.float32)
    shendu_module.to(dtype)
    shendu_module.load_state_dict({k: v.detach().numpy().astype(dtype) for k, v in torch_module.state_dict().items()})
    assert [n for n, _ in shendu_module.named_parameters()] == [n for n, _ in torch_module.named_parameters()]


def _compare_layer(kind, dtype, L=5, N=3, I=4, H=6, with_state=False, **kw):
    """Build torch.nn.<kind> and nn.<kind>, run both, compare outputs, states and all gradients."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(I, H, **kw)
    sm = getattr(nn, kind)(I, H, **kw)
    _copy_weights(tm, sm, dtype)
    D = 2 if kw.get("bidirectional") else 1
    layers = kw.get("num_layers", 1)
    shape = (N, L, I) if kw.get("batch_first") else (L, N, I)
    x = rng.standard_normal(shape).astype(dtype)
    xs, xt = _s(x, True), _t(x, True)
    states = [rng.standard_normal((D * layers, N, H)).astype(dtype) for _ in range(2 if kind == "LSTM" else 1)]
    ss, ts = [_s(a, True) for a in states], [_t(a, True) for a in states]
    if with_state:
        hs = tuple(ss) if kind == "LSTM" else ss[0]
        ht = tuple(ts) if kind == "LSTM" else ts[0]
        ys, fs = sm(xs, hs)
        yt, ft = tm(xt, ht)
    else:
        ys, fs = sm(xs)
        yt, ft = tm(xt)
    fs = fs if kind == "LSTM" else (fs,)
    ft = ft if kind == "LSTM" else (ft,)
    tol = TOL[dtype]
    assert ys.shape == tuple(yt.shape) and ys.dtype == dtype
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), **tol)
    for a, b in zip(fs, ft):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a.data, b.detach().numpy(), **tol)
    # random cotangents on the output and on every final state
    cots = [rng.standard_normal(yt.shape).astype(dtype)] + [rng.standard_normal(b.shape).astype(dtype) for b in ft]
    _backward([ys, *fs], cots)
    torch.autograd.backward([yt, *ft], [_t(c) for c in cots])
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), **tol)
    if with_state:
        for a, b in zip(ss, ts):
            np.testing.assert_allclose(a.grad.data, b.grad.numpy(), **tol)
    tp = dict(tm.named_parameters())
    for name, p in sm.named_parameters():
        assert p.grad.dtype == dtype, name
        np.testing.assert_allclose(p.grad.data, tp[name].grad.numpy(), err_msg=name, **tol)


CONFIGS = [
    dict(),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(batch_first=True),
    dict(bias=False),
]


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_layer_matches_torch(kind, kw, dtype):
    _compare_layer(kind, dtype, **kw)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_layer_with_initial_state_matches_torch(kind, dtype):
    _compare_layer(kind, dtype, with_state=True, num_layers=2, bidirectional=True)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_sequence_length_one(kind):
    _compare_layer(kind, np.float64, L=1, with_state=True)


@pytest.mark.parametrize("batch_first", [False, True])
def test_relu_rnn_matches_torch(batch_first):
    _compare_layer("RNN", np.float64, nonlinearity="relu", num_layers=2, batch_first=batch_first, with_state=True)
    _compare_layer("RNN", np.float32, nonlinearity="relu", bidirectional=True)


def test_batch_of_one_and_odd_sizes():
    _compare_layer("GRU", np.float64, L=7, N=1, I=3, H=5, num_layers=3, bidirectional=True)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_matches_torch(kind):
    torch.manual_seed(1)
    tm, sm = getattr(torch.nn, kind)(3, 4, num_layers=2), getattr(nn, kind)(3, 4, num_layers=2)
    _copy_weights(tm, sm, np.float64)
    x = np.random.default_rng(2).standard_normal((6, 3))
    ys, fs = sm(_s(x))
    yt, ft = tm(_t(x))
    assert ys.shape == (6, 4)
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((fs[0] if kind == "LSTM" else fs).data,
                               (ft[0] if kind == "LSTM" else ft).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_dropout_between_layers_only_when_training():
    shendu.manual_seed(0)
    m = nn.LSTM(3, 5, num_layers=2, dropout=0.5)
    x = shendu.randn(4, 2, 3)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a.data, b.data)
    m.train()
    c, _ = m(x)
    assert not np.allclose(a.data, c.data)
    single = nn.LSTM(3, 5, dropout=0.5)  # one layer: dropout has nothing to act on
    np.testing.assert_array_equal(single(x)[0].data, single.eval()(x)[0].data)


# ------------------------------------------------------------------------------------------- cells
@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_matches_torch(kind, dtype, bias):
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    tm, sm = getattr(torch.nn, kind)(4, 5, bias=bias), getattr(nn, kind)(4, 5, bias=bias)
    _copy_weights(tm, sm, dtype)
    x = rng.standard_normal((3, 4)).astype(dtype)
    states = [rng.standard_normal((3, 5)).astype(dtype) for _ in range(2 if kind == "LSTMCell" else 1)]
    xs, xt = _s(x, True), _t(x, True)
    ss, ts = [_s(a, True) for a in states], [_t(a, True) for a in states]
    ys = sm(xs, tuple(ss) if kind == "LSTMCell" else ss[0])
    yt = tm(xt, tuple(ts) if kind == "LSTMCell" else ts[0])
    ys, yt = (ys, yt) if kind == "LSTMCell" else ((ys,), (yt,))
    tol = TOL[dtype]
    cots = [rng.standard_normal((3, 5)).astype(dtype) for _ in ys]
    for a, b in zip(ys, yt):
        np.testing.assert_allclose(a.data, b.detach().numpy(), **tol)
    _backward(ys, cots)
    torch.autograd.backward(list(yt), [_t(c) for c in cots])
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), **tol)
    for a, b in zip(ss, ts):
        np.testing.assert_allclose(a.grad.data, b.grad.numpy(), **tol)
    tp = dict(tm.named_parameters())
    for name, p in sm.named_parameters():
        np.testing.assert_allclose(p.grad.data, tp[name].grad.numpy(), err_msg=name, **tol)


def test_relu_cell_and_unbatched_cell():
    torch.manual_seed(4)
    tm, sm = torch.nn.RNNCell(3, 4, nonlinearity="relu"), nn.RNNCell(3, 4, nonlinearity="relu")
    _copy_weights(tm, sm, np.float64)
    x = np.random.default_rng(4).standard_normal(3)
    np.testing.assert_allclose(sm(_s(x)).data, tm(_t(x)).detach().numpy(), rtol=1e-12)
    assert sm(_s(x)).shape == (4,)


def test_cell_without_state_starts_from_zeros():
    cell = nn.LSTMCell(3, 4).double()
    x = shendu.randn(2, 3, dtype=shendu.float64)
    z = shendu.zeros(2, 4, dtype=shendu.float64)
    h0, c0 = cell(x)
    h1, c1 = cell(x, (z, z))
    np.testing.assert_array_equal(h0.data, h1.data)
    np.testing.assert_array_equal(c0.data, c1.data)


def test_gru_reset_gate_is_applied_after_the_matmul():
    """torch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); Cho et al.'s W_hn (r * h) differs."""
    rng = np.random.default_rng(5)
    cell = nn.GRUCell(2, 3).double()
    x, h = rng.standard_normal((1, 2)), rng.standard_normal((1, 3))
    W_ih, W_hh = cell.weight_ih.data, cell.weight_hh.data
    b_ih, b_hh = cell.bias_ih.data, cell.bias_hh.data
    gi, gh = x @ W_ih.T + b_ih, h @ W_hh.T + b_hh
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    r, z = sig(gi[:, :3] + gh[:, :3]), sig(gi[:, 3:6] + gh[:, 3:6])
    n_after = np.tanh(gi[:, 6:] + r * gh[:, 6:])
    n_before = np.tanh(gi[:, 6:] + (r * h) @ W_hh[6:].T + b_hh[6:])
    got = cell(_s(x), _s(h)).data
    np.testing.assert_allclose(got, (1 - z) * n_after + z * h, rtol=1e-12)
    assert not np.allclose(got, (1 - z) * n_before + z * h)


# ------------------------------------------------------------------------------------- gradcheck
def test_lstm_gradcheck_float64():
    """Tiny 2-layer bidirectional LSTM: gradients w.r.t. input, h0, c0 and every parameter."""
    m = nn.LSTM(2, 3, num_layers=2, bidirectional=True).double()
    names = [n for n, _ in m.named_parameters()]

    def run(x, h, c, *params):
        for n, p in zip(names, params):  # the parameters become gradcheck inputs
            m._parameters[n] = p
        out, (hn, cn) = m(x, (h, c))
        return out, hn, cn
    rng = np.random.default_rng(6)
    x = _s(rng.standard_normal((3, 2, 2)), True)
    h, c = _s(rng.standard_normal((4, 2, 3)), True), _s(rng.standard_normal((4, 2, 3)), True)
    params = [_s(p.data.copy(), True) for p in m.parameters()]
    assert gradcheck(run, (x, h, c, *params))


@pytest.mark.parametrize("kind", ["RNN", "GRU"])
def test_rnn_gru_gradcheck_float64(kind):
    m = getattr(nn, kind)(2, 3, batch_first=True).double()
    rng = np.random.default_rng(7)
    x, h = _s(rng.standard_normal((2, 4, 2)), True), _s(rng.standard_normal((1, 2, 3)), True)
    assert gradcheck(lambda x, h: m(x, h), (x, h))


# ----------------------------------------------------------------------------- layer-norm variants
def _ln(a, g, b, eps=1e-5):
    mu = a.mean(-1, keepdims=True)
    var = ((a - mu) ** 2).mean(-1, keepdims=True)
    return (a - mu) / np.sqrt(var + eps) * g + b


def _sig(a):
    return 1 / (1 + np.exp(-a))


def _ln_rnn_ref(x, p):
    """Plain loop, one time step and one sample at a time (float64)."""
    L, N, _ = x.shape
    H = p["weight_hh_l0"].shape[0]
    out = np.zeros((L, N, H))
    for n in range(N):
        h = np.zeros(H)
        for t in range(L):
            a = p["weight_ih_l0"] @ x[t, n] + p["weight_hh_l0"] @ h
            h = np.tanh(_ln(a, p["ln_weight_l0"], p["ln_bias_l0"]))
            out[t, n] = h
    return out


def _ln_lstm_ref(x, p):
    L, N, _ = x.shape
    H = p["weight_hh_l0"].shape[1]
    out = np.zeros((L, N, H))
    for n in range(N):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(L):
            gates = (_ln(p["weight_hh_l0"] @ h, p["ln_hh_weight_l0"], p["ln_hh_bias_l0"])
                     + _ln(p["weight_ih_l0"] @ x[t, n], p["ln_ih_weight_l0"], p["ln_ih_bias_l0"]) + p["bias_l0"])
            i, f, g, o = np.split(gates, 4)
            c = _sig(f) * c + _sig(i) * np.tanh(g)
            h = _sig(o) * np.tanh(_ln(c, p["ln_c_weight_l0"], p["ln_c_bias_l0"]))
            out[t, n] = h
    return out


def _randomize(m, rng):
    """Move the LN gains/biases away from 1/0 so the test sees them."""
    for p in m.parameters():
        p.data[...] = p.data + 0.3 * rng.standard_normal(p.shape)


@pytest.mark.parametrize("kind, ref", [("LayerNormRNN", _ln_rnn_ref), ("LayerNormLSTM", _ln_lstm_ref)])
def test_layer_norm_variants_match_loop_reference(kind, ref):
    rng = np.random.default_rng(8)
    m = getattr(nn, kind)(3, 4).double()
    _randomize(m, rng)
    x = rng.standard_normal((5, 2, 3)) * 3
    out, _ = m(_s(x))
    np.testing.assert_allclose(out.data, ref(x, {k: v.data for k, v in m.named_parameters()}), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["LayerNormRNN", "LayerNormLSTM"])
def test_layer_norm_statistics_are_per_step_and_per_sample(kind):
    """Scaling the input at later steps, or of another sample, leaves earlier outputs unchanged: the
    statistics are never shared across time or batch. Scaling a whole step's input barely matters for
    the LN-RNN input part (LN is scale-invariant), which shows the normalization is actually applied."""
    rng = np.random.default_rng(9)
    m = getattr(nn, kind)(3, 4).double()
    x = rng.standard_normal((6, 2, 3))
    base = m(_s(x))[0].data
    x2 = x.copy()
    x2[3:] *= 50.0
    x2[:, 1] *= 20.0
    out = m(_s(x2))[0].data
    np.testing.assert_allclose(out[:3, 0], base[:3, 0], rtol=1e-12, atol=1e-14)
    assert not np.allclose(out[3:, 0], base[3:, 0])


def test_layer_norm_rnn_normalizes_the_preactivation():
    """With h_0 = 0, step 1 is tanh(LN(W_ih x_1)): invariant to scaling x_1 (exactly so as eps -> 0).
    The residue is ~eps / var(a): seeded weights, and an eps far below any variance the draw can give
    (with eps 1e-12 a draw whose preactivations had variance ~1e-4 missed rtol 1e-9)."""
    shendu.manual_seed(0)
    m = nn.LayerNormRNN(3, 8, eps=1e-24).double()
    x = np.random.default_rng(10).standard_normal((1, 2, 3))
    a, b = m(_s(x))[0].data, m(_s(x * 1000.0))[0].data
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["LayerNormRNN", "LayerNormLSTM"])
def test_layer_norm_variants_gradcheck(kind):
    rng = np.random.default_rng(11)
    m = getattr(nn, kind)(2, 3, bidirectional=True, num_layers=2).double()
    _randomize(m, rng)
    names = [n for n, _ in m.named_parameters()]
    params = [_s(p.data.copy(), True) for p in m.parameters()]

    def run(x, *ps):
        for n, p in zip(names, ps):
            m._parameters[n] = p
        return m(x)[0]
    x = _s(rng.standard_normal((3, 2, 2)), True)
    assert gradcheck(run, (x, *params))


def test_layer_norm_parameter_names():
    names = [n for n, _ in nn.LayerNormLSTM(2, 3).named_parameters()]
    assert names == ["weight_ih_l0", "weight_hh_l0", "bias_l0", "ln_ih_weight_l0", "ln_ih_bias_l0",
                     "ln_hh_weight_l0", "ln_hh_bias_l0", "ln_c_weight_l0", "ln_c_bias_l0"]
    assert [n for n, _ in nn.LayerNormRNN(2, 3, bias=False).named_parameters()] == \
        ["weight_ih_l0", "weight_hh_l0", "ln_weight_l0"]


# ------------------------------------------------------------------------------- init, clip, errors
def test_init_bounds_and_names_like_torch():
    H = 50
    m = nn.LSTM(30, H, num_layers=2, bidirectional=True)
    t = torch.nn.LSTM(30, H, num_layers=2, bidirectional=True)
    assert [(n, p.shape) for n, p in m.named_parameters()] == [(n, tuple(p.shape)) for n, p in t.named_parameters()]
    k = 1 / np.sqrt(H)
    w = np.concatenate([p.data.ravel() for p in m.parameters()])
    assert w.dtype == np.float32 and w.min() >= -k and w.max() <= k and w.max() > 0.99 * k
    assert abs(w.std() / (k / np.sqrt(3)) - 1) < 0.02


def test_clip_grad_norm_on_rnn_gradients():
    m = nn.RNN(3, 4)
    out, _ = m(shendu.randn(20, 2, 3))
    (out * 1000.0).sum().backward()
    total = nn.utils.clip_grad_norm_(m.parameters(), max_norm=1.0)
    assert float(total) > 1.0
    norm = np.sqrt(sum(float((p.grad.data.astype(np.float64) ** 2).sum()) for p in m.parameters()))
    assert abs(norm - 1.0) < 1e-4


def test_errors():
    m = nn.GRU(3, 4)
    with pytest.raises(ShapeError, match="input_size=3"):
        m(shendu.randn(5, 2, 7))
    with pytest.raises(ShapeError, match="3-D input"):
        m(shendu.randn(5))
    with pytest.raises(ShapeError, match="initial state"):
        m(shendu.randn(5, 2, 3), shendu.zeros(2, 2, 4))
    with pytest.raises(ArgumentError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ArgumentError, match="hidden_size"):
        nn.LSTM(3, 0)
    with pytest.raises(ArgumentError, match="dropout"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ShapeError, match="input_size=3"):
        nn.LSTMCell(3, 4)(shendu.randn(2, 5))
    with pytest.raises(ShapeError, match="hidden state"):
        nn.GRUCell(3, 4)(shendu.randn(2, 3), shendu.zeros(3, 4))
