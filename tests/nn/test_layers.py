"""Layers against torch.nn with the same weights, and the random behaviour of the dropout family."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import shendu
from shendu import nn
from shendu.errors import ArgumentError, ShapeError


def _t(a, requires_grad=False):
    return torch.tensor(np.asarray(a), requires_grad=requires_grad)


def _binomial_ok(k, n, p, z=5.0):
    """``k`` successes out of ``n`` are within ``z`` standard deviations of ``n p``."""
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p))


# ------------------------------------------------------------------------------------------ Linear
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(bias):
    tl = torch.nn.Linear(6, 4, bias=bias)
    sl = nn.Linear(6, 4, bias=bias)
    sl.load_state_dict(tl.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 6)).astype(np.float32)
    cot = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    xs, xt = shendu.tensor(x, requires_grad=True), _t(x, True)
    ys, yt = sl(xs), tl(xt)
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    ys.backward(shendu.tensor(cot))
    yt.backward(_t(cot))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sl.weight.grad.data, tl.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
    if bias:
        np.testing.assert_allclose(sl.bias.grad.data, tl.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
    assert sl.weight.grad.dtype == np.float32
    assert [n for n, _ in sl.named_parameters()] == [n for n, _ in tl.named_parameters()]


def test_linear_init_distribution_like_torch():
    """kaiming_uniform_(a=sqrt(5)) is U(-1/sqrt(in), 1/sqrt(in)); the bias uses the same bound."""
    fan_in = 400
    sl = nn.Linear(fan_in, 500)
    bound = 1 / math.sqrt(fan_in)
    w = sl.weight.data
    assert w.dtype == np.float32 and w.shape == (500, fan_in)
    assert w.min() >= -bound and w.max() <= bound and w.max() > 0.99 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.01
    assert abs(w.mean()) < 0.01 * bound
    assert sl.bias.data.min() >= -bound and sl.bias.data.max() <= bound
    tw = torch.nn.Linear(fan_in, 500).weight.detach().numpy()
    assert abs(w.std() / tw.std() - 1) < 0.02


def test_linear_errors_name_the_problem():
    with pytest.raises(ShapeError, match=r"linear: input has 5 features.*weight expects 4"):
        nn.Linear(4, 2)(shendu.zeros(3, 5))
    with pytest.raises(ArgumentError, match="in_features must be a non-negative integer"):
        nn.Linear(-1, 2)
    with pytest.raises(shendu.errors.DTypeError, match="dtypes differ"):
        nn.Linear(4, 2)(shendu.zeros(3, 4, dtype=shendu.float64))


def test_linear_dtype_argument():
    assert nn.Linear(3, 2, dtype=shendu.float64).weight.dtype == np.float64


# ----------------------------------------------------------------------------- Bilinear / Embedding
def test_bilinear_matches_torch():
    tb = torch.nn.Bilinear(3, 4, 5)
    sb = nn.Bilinear(3, 4, 5)
    sb.load_state_dict(tb.state_dict())
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_allclose(sb(shendu.tensor(a), shendu.tensor(b)).data, tb(_t(a), _t(b)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    bound = 1 / math.sqrt(3)
    assert np.abs(sb.weight.data).max() <= bound


def test_embedding_matches_torch_with_padding_idx():
    te = torch.nn.Embedding(8, 3, padding_idx=2)
    se = nn.Embedding(8, 3, padding_idx=2)
    assert not se.weight.data[2].any()
    se.load_state_dict(te.state_dict())
    idx = np.array([[2, 1, 1], [7, 2, 0]])
    ys, yt = se(shendu.tensor(idx)), te(torch.tensor(idx))
    np.testing.assert_array_equal(ys.data, yt.detach().numpy())
    cot = np.random.default_rng(3).standard_normal((2, 3, 3)).astype(np.float32)
    ys.backward(shendu.tensor(cot))
    yt.backward(_t(cot))
    np.testing.assert_allclose(se.weight.grad.data, te.weight.grad.numpy(), rtol=1e-6, atol=1e-6)
    assert not se.weight.grad.data[2].any()  # the padding row gets no gradient
    np.testing.assert_allclose(se.weight.grad.data[1], cot[0, 1] + cot[0, 2], rtol=1e-6)  # repeated index adds


def test_embedding_from_pretrained_is_frozen():
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    e = nn.Embedding.from_pretrained(shendu.tensor(w))
    assert not e.weight.requires_grad
    np.testing.assert_array_equal(e(shendu.tensor([2, 0])).data, w[[2, 0]])
    assert nn.Embedding.from_pretrained(w, freeze=False).weight.requires_grad
    with pytest.raises(shendu.errors.IndexOutOfRangeError, match="index 3 is out of range for 3 embeddings"):
        e(shendu.tensor([3]))


# ------------------------------------------------------------------------------- Flatten / Unflatten
@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (1, 2), (-2, -1), (2, 2)])
def test_flatten_like_torch(start, end):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    ys = nn.Flatten(start, end)(shendu.tensor(x))
    yt = torch.nn.Flatten(start, end)(_t(x))
    assert ys.shape == tuple(yt.shape)
    np.testing.assert_array_equal(ys.data, yt.numpy())


def test_unflatten_and_errors():
    x = shendu.randn(2, 12, requires_grad=True)
    y = nn.Unflatten(1, (3, -1))(x)
    assert y.shape == (2, 3, 4)
    y.sum().backward()
    assert x.grad.shape == (2, 12)
    with pytest.raises(ShapeError, match="cannot split dim 1 of size 12"):
        nn.Unflatten(1, (5, 3))(x)
    with pytest.raises(ShapeError, match="Flatten: start_dim=3, end_dim=1"):
        nn.Flatten(3, 1)(shendu.zeros(2, 3, 4, 5))


def test_identity():
    x = shendu.randn(3)
    assert nn.Identity(54, unused="x")(x) is x


# -------------------------------------------------------------------------------------------- Dropout
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_statistics_and_scale(p):
    shendu.manual_seed(0)
    n = 200_000
    x = shendu.ones(n, requires_grad=True)
    y = nn.Dropout(p)(x)
    dropped = int((y.data == 0).sum())
    assert _binomial_ok(dropped, n, p)
    kept = y.data[y.data != 0]
    np.testing.assert_allclose(kept, 1 / (1 - p), rtol=1e-6)  # inverted dropout: scale at train time
    assert abs(y.data.mean() - 1) < 5 * math.sqrt(p / (1 - p) / n)  # expectation preserved
    assert y.dtype == np.float32


def test_dropout_backward_uses_the_forward_mask():
    shendu.manual_seed(1)
    x = shendu.randn(50, 40, requires_grad=True)
    y = shendu.dropout(x, p=0.3)
    cot = np.random.default_rng(0).standard_normal((50, 40)).astype(np.float32)
    y.backward(shendu.tensor(cot))
    mask = (y.data != 0) / 0.7
    np.testing.assert_allclose(x.grad.data, cot * mask, rtol=1e-6)
    np.testing.assert_allclose(y.data, x.data * mask, rtol=1e-6)


def test_dropout_reproducible_with_seed_and_generator():
    shendu.manual_seed(42)
    a = shendu.dropout(shendu.ones(100))
    shendu.manual_seed(42)
    b = shendu.dropout(shendu.ones(100))
    np.testing.assert_array_equal(a.data, b.data)
    c = shendu.dropout(shendu.ones(100))
    assert not np.array_equal(a.data, c.data)  # a new mask on each call
    g1, g2 = shendu.Generator(7), shendu.Generator(7)
    np.testing.assert_array_equal(shendu.dropout(shendu.ones(64), generator=g1).data,
                                  shendu.dropout(shendu.ones(64), generator=g2).data)


def test_dropout_eval_identity_p1_and_errors():
    x = shendu.randn(10)
    d = nn.Dropout(0.9).eval()
    assert d(x) is x
    assert not shendu.dropout(x, p=1.0).data.any()
    with pytest.raises(ArgumentError, match="between 0 and 1, but got 1.2"):
        nn.Dropout(1.2)
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25, inplace=False)"


def test_dropout_float64_kept():
    y = shendu.dropout(shendu.ones(10, dtype=shendu.float64), 0.5)
    assert y.dtype == np.float64


def test_dropout2d_drops_whole_channels():
    shendu.manual_seed(3)
    x = shendu.ones(64, 32, 5, 5, requires_grad=True)
    y = nn.Dropout2d(0.4)(x)
    per_channel = y.data.reshape(64, 32, 25)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))  # each map all dropped or all kept
    dropped = int((per_channel[..., 0] == 0).sum())
    assert _binomial_ok(dropped, 64 * 32, 0.4)
    np.testing.assert_allclose(per_channel[per_channel != 0], 1 / 0.6, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, y.data, rtol=1e-6)  # ones input: grad == mask
    y3 = nn.Dropout2d(0.5)(shendu.ones(4, 8, 9))  # (N, C, L)
    assert np.all(y3.data.min(-1) == y3.data.max(-1))
    y1 = nn.Dropout1d(0.5)(shendu.ones(8, 9))  # (C, L)
    assert np.all(y1.data.min(-1) == y1.data.max(-1))


def test_alpha_dropout_keeps_mean_and_variance():
    shendu.manual_seed(5)
    x = shendu.randn(400_000)
    y = nn.AlphaDropout(0.2)(x)
    assert abs(float(y.data.mean())) < 0.01
    assert abs(float(y.data.std()) - 1) < 0.01
    alpha, p = 1.7580993408473766, 0.2  # SELU's -lambda*alpha; torch's formula for a and b
    a = 1 / math.sqrt((alpha ** 2 * p + 1) * (1 - p))
    dropped_value = a * (-alpha) + alpha * a * p
    assert np.isclose(y.data, dropped_value, atol=1e-6).mean() == pytest.approx(p, abs=0.005)
    kept = ~np.isclose(y.data, dropped_value, atol=1e-6)
    np.testing.assert_allclose(y.data[kept], a * x.data[kept] + alpha * a * p, rtol=1e-5, atol=1e-6)
    assert nn.AlphaDropout(0.2).eval()(x) is x


# -------------------------------------------------------------------------------------- DropConnect
def _effective_weight(layer, in_features, extra=None):
    """Feed the identity batch (plus ``extra`` rows) in ONE forward: row i of the output is the bias plus
    column i of the weight actually used. Returns that weight and the outputs of the extra rows."""
    x = np.eye(in_features, dtype=np.float32)
    if extra is not None:
        x = np.concatenate([x, extra])
    y = layer(shendu.tensor(x)).data
    return (y[:in_features] - layer.linear.bias.data).T, y[in_features:]


def test_dropconnect_drops_weights_not_activations():
    shendu.manual_seed(11)
    lin = nn.Linear(60, 50)
    dc = nn.DropConnect(lin, p=0.3)
    extra = np.random.default_rng(0).standard_normal((3, 60)).astype(np.float32)
    w_eff, y_extra = _effective_weight(dc, 60, extra)
    w = lin.weight.data
    zero = np.isclose(w_eff, 0, atol=1e-7)
    np.testing.assert_allclose(w_eff[~zero], w[~zero] / 0.7, rtol=1e-5)  # kept weights scaled by 1/(1-p)
    assert _binomial_ok(int(zero.sum()), w.size, 0.3)
    # activation dropout would zero whole output units; here every output unit keeps most inputs
    assert np.all(zero.mean(1) < 0.7) and np.all(zero.mean(1) > 0.0)
    # one mask for the whole batch: the other examples saw the same effective weight
    np.testing.assert_allclose(y_extra, extra @ w_eff.T + lin.bias.data, rtol=1e-4, atol=1e-5)
    # and a fresh mask on the next forward
    assert not np.array_equal(_effective_weight(dc, 60)[0], w_eff)


def test_dropconnect_gradient_masks_weights_and_eval_uses_all():
    shendu.manual_seed(2)
    lin = nn.Linear(8, 6)
    dc = nn.DropConnect(lin, p=0.5)
    x = shendu.randn(5, 8, requires_grad=True)
    shendu.manual_seed(9)
    y = dc(x)
    cot = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    y.backward(shendu.tensor(cot))
    shendu.manual_seed(9)
    w_eff, _ = _effective_weight(dc, 8)  # the same mask, replayed by reseeding
    mask = ~np.isclose(w_eff, 0, atol=1e-8)
    np.testing.assert_allclose(lin.weight.grad.data, (cot.T @ x.data) * mask / 0.5, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.data, cot @ w_eff, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lin.bias.grad.data, cot.sum(0), rtol=1e-5)
    dc.eval()
    np.testing.assert_array_equal(dc(x).data, lin(x).data)
    assert list(dc.state_dict()) == ["linear.weight", "linear.bias"]
    with pytest.raises(ArgumentError, match="expected an nn.Linear"):
        nn.DropConnect(nn.Identity())
