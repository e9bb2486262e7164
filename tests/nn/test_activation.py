"""Activation layers: same outputs and gradients as torch's modules and as shendu's functional ops;
softmax stability; Maxout against a Linear + max written with torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shendu
from shendu import nn
from shendu.errors import ArgumentError, ShapeError

F = shendu.functional
rng = np.random.default_rng(0)

# (name, constructor kwargs, functional equivalent)
MODULES = [
    ("ReLU", {}, lambda x: F.relu(x)),
    ("ReLU", {"inplace": True}, lambda x: F.relu(x)),
    ("ReLU6", {}, lambda x: F.relu6(x)),
    ("LeakyReLU", {"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
    ("ELU", {"alpha": 0.5}, lambda x: F.elu(x, 0.5)),
    ("SELU", {}, lambda x: F.selu(x)),
    ("CELU", {"alpha": 2.0}, lambda x: F.celu(x, 2.0)),
    ("GELU", {}, lambda x: F.gelu(x)),
    ("GELU", {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    ("SiLU", {}, lambda x: F.silu(x)),
    ("Softplus", {"beta": 2.0, "threshold": 3.0}, lambda x: F.softplus(x, 2.0, 3.0)),
    ("Hardtanh", {"min_val": -0.5, "max_val": 2.0}, lambda x: F.hardtanh(x, -0.5, 2.0)),
    ("Hardsigmoid", {}, lambda x: F.hardsigmoid(x)),
    ("Sigmoid", {}, lambda x: F.sigmoid(x)),
    ("Tanh", {}, lambda x: F.tanh(x)),
    ("LogSigmoid", {}, lambda x: F.logsigmoid(x)),
    ("Softmax", {"dim": 1}, lambda x: F.softmax(x, 1)),
    ("LogSoftmax", {"dim": -1}, lambda x: F.log_softmax(x, -1)),
    ("Softmin", {"dim": 0}, lambda x: F.softmin(x, 0)),
]


def _input():
    # values in (-4, 4) kept away from the kinks at 0, +-0.5, 2, +-3 and 6
    x = rng.uniform(-4, 4, (3, 5, 2))
    for k in (0.0, -0.5, 2.0, 3.0, -3.0):
        x = np.where(np.abs(x - k) < 0.05, k + 0.1, x)
    return x


@pytest.mark.parametrize("name,kwargs,fn", MODULES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MODULES)])
def test_module_matches_torch_and_functional(name, kwargs, fn):
    x = _input()
    s_mod = getattr(nn, name)(**kwargs)
    t_mod = getattr(torch.nn, name)(**kwargs)
    xs = shendu.tensor(x, dtype=shendu.float64, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    ys, yt = s_mod(xs), t_mod(xt.clone() if kwargs.get("inplace") else xt)
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ys.data, fn(xs).data)  # the module is the functional op
    g = rng.standard_normal(x.shape)
    ys.backward(shendu.tensor(g, dtype=shendu.float64))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name,kwargs", [("ReLU", {}), ("ReLU", {"inplace": True}), ("LeakyReLU", {}),
                                         ("ELU", {"alpha": 0.5}), ("GELU", {"approximate": "tanh"}),
                                         ("Softplus", {}), ("Hardtanh", {}), ("Softmax", {"dim": 1}),
                                         ("LogSoftmax", {"dim": 1}), ("Sigmoid", {})])
def test_repr_matches_torch(name, kwargs):
    assert repr(getattr(nn, name)(**kwargs)) == repr(getattr(torch.nn, name)(**kwargs))


def test_float32_kept():
    x = shendu.tensor(_input(), dtype=shendu.float32, requires_grad=True)
    for name, kwargs, _ in MODULES:
        y = getattr(nn, name)(**kwargs)(x)
        assert y.dtype == np.float32, name
        (g,) = shendu.autograd.grad([y], [x], [np.ones(y.shape, np.float32)])
        assert g.dtype == np.float32, name


def test_softmax_of_huge_logits_is_finite():
    y = F.softmax(shendu.tensor([1000.0, 1001.0]), dim=0)
    np.testing.assert_allclose(y.data, [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-6)
    ly = F.log_softmax(shendu.tensor([[1000.0, 0.0], [-1000.0, -1001.0]]), dim=1)
    np.testing.assert_allclose(ly.data, [[0.0, -1000.0], [-np.log1p(np.exp(-1.0)), -1 - np.log1p(np.exp(-1.0))]],
                               rtol=1e-6)
    x = shendu.tensor([[1000.0, 1001.0, 999.0]], requires_grad=True)
    F.log_softmax(x, dim=1)[0, 1].backward()
    assert np.all(np.isfinite(x.grad.data))


def test_softmax_rows_sum_to_one_and_dtype_argument():
    x = shendu.tensor(rng.normal(size=(4, 6)) * 50, dtype=shendu.float32)
    y = F.softmax(x, dim=1)
    np.testing.assert_allclose(y.data.sum(1), 1, rtol=1e-6)
    y64 = F.softmax(x, dim=1, dtype=shendu.float64)
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64.data, torch.softmax(torch.tensor(x.data), 1, dtype=torch.float64).numpy(),
                               rtol=1e-12)
    assert x.softmax(1).shape == (4, 6)  # the Tensor method reaches the same op


def test_softmax_needs_a_dim():
    with pytest.raises(ArgumentError, match="dim is required"):
        nn.Softmax()(shendu.zeros(2, 3))
    with pytest.raises(ArgumentError, match="dim 3 is out of range"):
        F.log_softmax(shendu.zeros(2, 3), 3)


def test_elu_selu_saturate():
    np.testing.assert_allclose(F.elu(shendu.tensor([-100.0])).data, [-1.0])
    np.testing.assert_allclose(F.selu(shendu.tensor([-100.0])).data, [-1.7580993408473766], rtol=1e-6)


def test_constructor_errors():
    with pytest.raises(ArgumentError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ArgumentError, match="min_val"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(ArgumentError, match="pieces"):
        nn.Maxout(3, 2, 0)


# ----------------------------------------------------------------------------------------------- Maxout
def _torch_maxout(x, weight, bias, out_features, pieces):
    y = torch.nn.functional.linear(x, weight, bias)
    return y.view(*y.shape[:-1], out_features, pieces).amax(-1)


@pytest.mark.parametrize("shape", [(5, 7), (1, 7), (2, 3, 7)])
def test_maxout_matches_linear_then_max(shape):
    m = nn.Maxout(7, 4, pieces=3).double()
    w = torch.tensor(m.linear.weight.data, requires_grad=True)
    b = torch.tensor(m.linear.bias.data, requires_grad=True)
    x = rng.normal(size=shape)
    xs = shendu.tensor(x, dtype=shendu.float64, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    ys, yt = m(xs), _torch_maxout(xt, w, b, 4, 3)
    assert ys.shape == shape[:-1] + (4,)
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-12)
    g = rng.normal(size=ys.shape)
    ys.backward(shendu.tensor(g, dtype=shendu.float64))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.linear.weight.grad.data, w.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.linear.bias.grad.data, b.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_maxout_parameters_and_state_dict():
    m = nn.Maxout(10, 4, pieces=5)
    assert list(m.state_dict()) == ["linear.weight", "linear.bias"]
    assert m.linear.weight.shape == (20, 10)
    assert sum(p.numel() for p in m.parameters()) == 5 * (10 * 4 + 4)  # pieces times a Linear(10, 4)
    assert nn.Maxout(10, 4, pieces=2, bias=False).linear.bias is None


def test_maxout_gradient_goes_to_the_winning_piece_only():
    x = shendu.tensor([[1.0, 5.0, 3.0, 2.0, -1.0, -4.0]], requires_grad=True)
    y = F.maxout(x, pieces=3)  # groups (1, 5, 3) and (2, -1, -4)
    assert y.tolist() == [[5.0, 2.0]]
    y.backward(shendu.tensor([[10.0, 20.0]]))
    assert x.grad.tolist() == [[0.0, 10.0, 0.0, 20.0, 0.0, 0.0]]


def test_maxout_over_conv_channels():
    x = rng.normal(size=(2, 6, 3, 3))
    y = F.maxout(shendu.tensor(x), pieces=2, dim=1)
    np.testing.assert_array_equal(y.data, x.reshape(2, 3, 2, 3, 3).max(2))


def test_maxout_size_error():
    with pytest.raises(ShapeError, match="not a multiple of pieces=4"):
        F.maxout(shendu.zeros(2, 6), pieces=4)


@pytest.mark.parametrize("shape", [(3, 5, 2), (4, 128, 160)])  # NumPy path and the compiled kernel
def test_inplace_relu_writes_into_its_input_only_without_a_graph(shape):
    x = rng.standard_normal(shape).astype(np.float32)
    expected = torch.relu(torch.from_numpy(x)).numpy()
    xs = shendu.tensor(x.copy())
    with shendu.no_grad():
        assert nn.ReLU(inplace=True)(xs) is xs  # inference: torch's semantics, no new array
    np.testing.assert_array_equal(xs.data, expected)
    xg = shendu.tensor(x.copy(), requires_grad=True)  # under autograd: a new tensor, the input untouched
    yg = nn.ReLU(inplace=True)(xg)
    assert yg is not xg
    np.testing.assert_array_equal(xg.data, x)
    np.testing.assert_array_equal(yg.data, expected)
    xd = shendu.tensor(x.copy())  # autograd on, no grad needed: still a new tensor (x may be saved by a node)
    assert nn.ReLU(inplace=True)(xd) is not xd
    np.testing.assert_array_equal(xd.data, x)
    xi = shendu.tensor(np.array([-2, 3]))  # integers: a new float tensor, as out of place
    assert F.relu(xi, inplace=True).tolist() == [0.0, 3.0] and xi.tolist() == [-2, 3]
