"""shendu.nn.init: fans and gains equal torch's; sample statistics match the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import shendu
from shendu import nn
from shendu.errors import ArgumentError, DTypeError, ShapeError
from shendu.nn import init

SHAPES = [(4, 3), (16, 8, 3, 3), (10, 2, 5), (6, 3, 2, 2, 2), (32, 1, 7, 7), (5, 0), (1, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fans_equal_torch(shape):
    assert init._calculate_fan_in_and_fan_out(shendu.empty(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fan_of_a_grouped_conv_weight():
    # conv2d(in=16, out=32, k=3, groups=4): weight (32, 4, 3, 3), fan_in = 16/4 * 9
    assert init._calculate_fan_in_and_fan_out(shendu.empty(32, 4, 3, 3)) == (36, 288)


def test_fan_needs_two_dims():
    with pytest.raises(ShapeError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(shendu.empty(5))
    with pytest.raises(ArgumentError, match="mode 'fan_avg' not supported"):
        init.kaiming_normal_(shendu.empty(3, 3), mode="fan_avg")


GAINS = [("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("conv_transpose1d", None),
         ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None),
         ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 1), ("selu", None)]


@pytest.mark.parametrize("nonlinearity,param", GAINS)
def test_calculate_gain_equals_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-15)


def test_calculate_gain_errors():
    with pytest.raises(ArgumentError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ArgumentError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)


def _std_close(a, want, rel=0.02):
    assert abs(float(a.std()) / want - 1) < rel, f"std {a.std()} vs {want}"


BIG = (1024, 512)  # fan_in 512, fan_out 1024; 0.5M samples: the std is within ~0.2% of its value


def test_uniform_and_normal_statistics():
    w = init.uniform_(shendu.empty(*BIG), -2.0, 3.0).data
    assert w.min() >= -2 and w.max() < 3
    assert abs(w.mean() - 0.5) < 0.02
    _std_close(w, 5 / math.sqrt(12))
    w = init.normal_(shendu.empty(*BIG), 1.5, 0.3).data
    assert abs(w.mean() - 1.5) < 0.003
    _std_close(w, 0.3)
    assert abs(stats.skew(w.ravel())) < 0.02


@pytest.mark.parametrize("gain", [1.0, 5 / 3])
def test_xavier(gain):
    fan_in, fan_out = 512, 1024
    w = init.xavier_uniform_(shendu.empty(*BIG), gain=gain).data
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    _std_close(w, gain * math.sqrt(2 / (fan_in + fan_out)))
    w = init.xavier_normal_(shendu.empty(*BIG), gain=gain).data
    _std_close(w, gain * math.sqrt(2 / (fan_in + fan_out)))
    assert abs(w.mean()) < 0.001


@pytest.mark.parametrize("mode,fan", [("fan_in", 512), ("fan_out", 1024)])
@pytest.mark.parametrize("nonlinearity,a", [("relu", 0), ("leaky_relu", 0), ("leaky_relu", 0.2),
                                            ("leaky_relu", math.sqrt(5)), ("tanh", 0)])
def test_kaiming(mode, fan, nonlinearity, a):
    gain = torch.nn.init.calculate_gain(nonlinearity, a)
    w = init.kaiming_uniform_(shendu.empty(*BIG), a=a, mode=mode, nonlinearity=nonlinearity).data
    assert np.abs(w).max() <= gain * math.sqrt(3 / fan) * (1 + 1e-6)
    _std_close(w, gain / math.sqrt(fan))
    w = init.kaiming_normal_(shendu.empty(*BIG), a=a, mode=mode, nonlinearity=nonlinearity).data
    _std_close(w, gain / math.sqrt(fan))


def test_kaiming_on_conv_weight_uses_receptive_field():
    w = init.kaiming_normal_(shendu.empty(64, 32, 3, 3), nonlinearity="relu").data
    _std_close(w, math.sqrt(2 / (32 * 9)), rel=0.03)


def test_trunc_normal():
    w = init.trunc_normal_(shendu.empty(*BIG), mean=0.5, std=1.0, a=-1.0, b=1.5).data
    assert w.min() >= -1.0 and w.max() <= 1.5
    dist = stats.truncnorm(-1.5, 1.0, loc=0.5, scale=1.0)
    assert abs(w.mean() - dist.mean()) < 0.005
    _std_close(w, dist.std(), rel=0.01)


def test_constant_ones_zeros_eye_dirac_equal_torch():
    np.testing.assert_array_equal(init.constant_(shendu.empty(3, 4), 0.25).data, np.full((3, 4), 0.25))
    assert np.all(init.ones_(shendu.empty(5)).data == 1) and not init.zeros_(shendu.ones(5)).data.any()
    np.testing.assert_array_equal(init.eye_(shendu.empty(3, 5)).data, torch.nn.init.eye_(torch.empty(3, 5)).numpy())
    for shape, groups in [((4, 4, 3, 3), 1), ((6, 2, 3, 3), 2), ((5, 3, 3), 1), ((4, 2, 3, 3, 3), 2)]:
        np.testing.assert_array_equal(init.dirac_(shendu.empty(*shape), groups).data,
                                      torch.nn.init.dirac_(torch.empty(shape), groups).numpy(), err_msg=str(shape))
    with pytest.raises(ShapeError, match="only 2-D"):
        init.eye_(shendu.empty(2, 2, 2))


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (64, 64), (8, 2, 3, 3)], ids=str)
def test_orthogonal(shape):
    w = init.orthogonal_(shendu.empty(*shape, dtype=shendu.float64), gain=2.0).data.reshape(shape[0], -1)
    rows, cols = w.shape
    if rows <= cols:
        np.testing.assert_allclose(w @ w.T, 4 * np.eye(rows), atol=1e-10)
    else:
        np.testing.assert_allclose(w.T @ w, 4 * np.eye(cols), atol=1e-10)


def test_orthogonal_float32_is_orthogonal_to_float_precision():
    w = init.orthogonal_(shendu.empty(100, 200)).data
    assert w.dtype == np.float32
    np.testing.assert_allclose(w @ w.T, np.eye(100), atol=1e-5)


def test_in_place_on_parameters_dtype_kept_no_graph():
    p = nn.Parameter(shendu.zeros(20, 10))
    data = p.data
    out = init.kaiming_uniform_(p)
    assert out is p and p.data is data and p.dtype == np.float32 and p.is_leaf and p.grad_fn is None
    q = nn.Parameter(shendu.zeros(20, 10, dtype=shendu.float64))
    init.normal_(q)
    assert q.dtype == np.float64 and q.data.any()
    with pytest.raises(DTypeError, match="floating-point"):
        init.normal_(shendu.zeros(3, dtype=shendu.int64))
    with pytest.raises(ArgumentError, match="expected a shendu Tensor"):
        init.normal_(np.zeros(3))


def test_seed_reproducible_and_generator():
    shendu.manual_seed(123)
    a = init.xavier_normal_(shendu.empty(8, 8)).data.copy()
    shendu.manual_seed(123)
    b = init.xavier_normal_(shendu.empty(8, 8)).data
    np.testing.assert_array_equal(a, b)
    g = shendu.Generator(5)
    c = init.uniform_(shendu.empty(10), generator=g).data.copy()
    np.testing.assert_array_equal(c, init.uniform_(shendu.empty(10), generator=shendu.Generator(5)).data)
    shendu.manual_seed(9)
    l1 = nn.Linear(5, 5)
    shendu.manual_seed(9)
    l2 = nn.Linear(5, 5)
    np.testing.assert_array_equal(l1.weight.data, l2.weight.data)
