"""StochasticDepth and DropConnectConv2d: the random behaviour (mask statistics, scaling, the same mask in
forward and backward, seeding) and the deterministic modes against torch. The deterministic and seeded
cases of the ops are also in the op registry (tests/opspecs/dropout.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import shendu
from shendu import nn
from shendu.errors import ArgumentError
from shendu.nn.regularization import DropConnectConv2d, StochasticDepth


def _binomial_ok(k, n, p, z=5.0):
    """``k`` successes out of ``n`` are within ``z`` standard deviations of ``n p``."""
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p))


def _t(a, requires_grad=False):
    return torch.tensor(np.asarray(a), requires_grad=requires_grad)


# ---------------------------------------------------------------------------------- stochastic depth
@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_stochastic_depth_row_drops_whole_samples_with_probability_p(p):
    shendu.manual_seed(0)
    n = 20_000
    x = shendu.ones(n, 3, 2, 2, requires_grad=True)
    y = shendu.stochastic_depth(x, p, "row")
    per_row = y.data.reshape(n, -1)
    assert np.all(per_row == per_row[:, :1]), "a sample is either kept whole or dropped whole"
    kept = per_row[:, 0] != 0
    np.testing.assert_allclose(per_row[kept, 0], 1 / (1 - p), rtol=1e-6)  # survivors scaled by 1/(1-p)
    assert _binomial_ok(int(kept.sum()), n, 1 - p)
    gy = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    y.backward(shendu.tensor(gy))
    np.testing.assert_allclose(x.grad.data, gy * (y.data != 0) / (1 - p), rtol=1e-6)  # the forward's mask


def test_stochastic_depth_batch_mode_one_decision_per_call():
    shendu.manual_seed(1)
    p, calls = 0.3, 2000
    kept = 0
    for _ in range(calls):
        y = shendu.stochastic_depth(shendu.ones(4, 5), p, "batch")
        assert len(np.unique(y.data)) == 1, "batch mode keeps or drops the whole batch"
        kept += bool(y.data[0, 0] != 0)
    assert _binomial_ok(kept, calls, 1 - p)


def test_stochastic_depth_eval_p0_p1_and_dtype():
    x = shendu.randn(4, 3)
    assert shendu.stochastic_depth(x, 0.5, "row", training=False) is x
    assert shendu.stochastic_depth(x, 0.0, "row") is x
    assert not np.any(shendu.stochastic_depth(x, 1.0, "row").data)
    y = shendu.stochastic_depth(shendu.ones(8, 2, dtype=shendu.float64), 0.5, "row")
    assert y.dtype == np.float64
    sd = StochasticDepth(0.4, "row")
    assert sd.eval()(x) is x
    assert repr(sd) == "StochasticDepth(p=0.4, mode=row)"  # torchvision's repr


def test_stochastic_depth_seeded_and_generator():
    shendu.manual_seed(7)
    a = StochasticDepth(0.5, "row")(shendu.ones(64, 3))
    shendu.manual_seed(7)
    b = StochasticDepth(0.5, "row")(shendu.ones(64, 3))
    np.testing.assert_array_equal(a.data, b.data)
    c = shendu.stochastic_depth(shendu.ones(64, 3), 0.5, "row", generator=shendu.Generator(7))
    d = shendu.stochastic_depth(shendu.ones(64, 3), 0.5, "row", generator=shendu.Generator(7))
    np.testing.assert_array_equal(c.data, d.data)
    assert not np.array_equal(c.data, shendu.stochastic_depth(shendu.ones(64, 3), 0.5, "row").data)


def test_stochastic_depth_in_a_residual_branch_is_unbiased():
    """E[shortcut + sd(branch)] = shortcut + branch: the inverted scaling keeps the expectation."""
    shendu.manual_seed(2)
    branch = shendu.randn(1, 6)
    n = 40_000
    out = (shendu.stochastic_depth(branch.expand(n, 6), 0.25, "row")).data.mean(0)
    se = branch.data[0] * math.sqrt(0.25 / 0.75) / math.sqrt(n)  # std of the mean of (b/(1-p)) * v
    assert np.all(np.abs(out - branch.data[0]) <= 5 * np.abs(se) + 1e-7)


@pytest.mark.parametrize("args, match", [((1.5, "row"), "between 0 and 1"), ((-0.1, "row"), "between 0 and 1"),
                                         ((0.2, "rows"), "either 'batch' or 'row'")])
def test_stochastic_depth_module_errors(args, match):
    with pytest.raises(ArgumentError, match=match):
        StochasticDepth(*args)


# ------------------------------------------------------------------------------------- DropConnect conv
def _torch_weight_grad(x, w_shape, gy, **conv):
    """d(sum(gy * conv2d(x, W)))/dW: it does not depend on W, so any W gives it."""
    xt = _t(x)
    wt = torch.zeros(w_shape, dtype=xt.dtype, requires_grad=True)
    TF.conv2d(xt, wt, None, **conv).backward(_t(gy))
    return wt.grad.numpy()


@pytest.mark.parametrize("p", [0.3, 0.6])
def test_dropconnect_conv_masks_weights_same_mask_forward_and_backward(p):
    rng = np.random.default_rng(0)
    shendu.manual_seed(4)
    layer = DropConnectConv2d(6, 10, 3, padding=1, stride=2, p=p)
    x = rng.standard_normal((3, 6, 9, 8)).astype(np.float64)
    layer.double()
    xs = shendu.from_numpy(x).requires_grad_()
    y = layer(xs)
    gy = rng.standard_normal(y.shape)
    y.backward(shendu.from_numpy(gy))
    # the weight gradient is torch's (all weights) times the scaled mask: recover the mask from it
    full = _torch_weight_grad(x, layer.weight.shape, gy, stride=2, padding=1)
    mask = layer.weight.grad.data / full
    kept = np.isclose(mask, 1 / (1 - p), rtol=1e-8)
    dropped = layer.weight.grad.data == 0  # exactly zero: no gradient through dropped weights
    assert np.all(kept | dropped), "mask values must be 0 or 1/(1-p)"
    assert _binomial_ok(int(kept.sum()), kept.size, 1 - p)
    # the forward used the same mask: torch with W * mask gives y, and the input gradient matches too
    w_eff = _t(layer.weight.data * np.where(kept, 1 / (1 - p), 0.0))
    xt = _t(x, requires_grad=True)
    yt = TF.conv2d(xt, w_eff, _t(layer.bias.data), stride=2, padding=1)
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    yt.backward(_t(gy))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.data, gy.sum((0, 2, 3)), rtol=1e-10)  # the bias is never dropped


def test_dropconnect_conv_fresh_mask_each_forward_and_seeded():
    layer = DropConnectConv2d(3, 4, 3, p=0.5)
    x = shendu.randn(2, 3, 6, 6)
    shendu.manual_seed(3)
    a = layer(x)
    b = layer(x)
    shendu.manual_seed(3)
    c = layer(x)
    assert not np.allclose(a.data, b.data), "a new mask on every training forward"
    np.testing.assert_array_equal(a.data, c.data)


def test_dropconnect_conv_eval_is_the_plain_convolution():
    tconv = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    layer = DropConnectConv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2, p=0.5)
    layer.load_state_dict(tconv.state_dict())
    x = np.random.default_rng(2).standard_normal((2, 4, 7, 9)).astype(np.float32)
    want = tconv(_t(x)).detach().numpy()
    np.testing.assert_allclose(layer.eval()(shendu.from_numpy(x)).data, want, rtol=1e-5, atol=1e-5)
    plain = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    plain.load_state_dict(layer.state_dict())  # same keys as Conv2d
    np.testing.assert_array_equal(plain(shendu.from_numpy(x)).data, layer(shendu.from_numpy(x)).data)
    p0 = DropConnectConv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2, p=0.0)
    p0.load_state_dict(tconv.state_dict())
    np.testing.assert_allclose(p0(shendu.from_numpy(x)).data, want, rtol=1e-5, atol=1e-5)  # training, p=0


def test_dropconnect_conv_padding_mode_reflect():
    tconv = torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")
    layer = DropConnectConv2d(2, 3, 3, padding=1, padding_mode="reflect", p=0.4)
    layer.load_state_dict(tconv.state_dict())
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(layer.eval()(shendu.from_numpy(x)).data, tconv(_t(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    layer.train()
    y = layer(shendu.from_numpy(x))
    assert y.shape == (1, 3, 5, 6)


def test_dropconnect_conv_errors_and_repr():
    with pytest.raises(ArgumentError, match="DropConnectConv2d: drop probability has to be between 0 and 1"):
        DropConnectConv2d(3, 4, 3, p=1.2)
    layer = DropConnectConv2d(3, 4, 3, p=0.25, bias=False)
    assert repr(layer) == "DropConnectConv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), bias=False, p=0.25)"
    with pytest.raises(shendu.errors.ShapeError, match="dropconnect_conv2d: input has 2 channels"):
        layer(shendu.randn(1, 2, 5, 5))
