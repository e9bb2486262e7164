"""Normalization beyond the op registry: running statistics vs torch, the layers (same weights as torch:
outputs, gradients, buffers, state_dict keys), the numba kernels vs the NumPy reference path,
``fuse_conv_bn``, and the layer-level errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shendu
import shendu.functional as F
from shendu import nn
from shendu.errors import ArgumentError, ShapeError
from shendu.nn.module import Module
from shendu.ops.kernels import norm_numba

rng = np.random.default_rng(0)


def _t(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


def _s(a, grad=False):
    return shendu.from_numpy(a.copy()).requires_grad_(grad)


@pytest.fixture(params=["numpy", "numba"])
def path(request, monkeypatch):
    """Run a test with the NumPy reference path and (when installed) the numba kernels."""
    if request.param == "numba":
        if not norm_numba.AVAILABLE:
            pytest.skip("numba not installed")
        monkeypatch.setattr(norm_numba, "_MIN_SIZE", 1)
        monkeypatch.setattr(norm_numba, "enabled", True)
    else:
        monkeypatch.setattr(norm_numba, "enabled", False)
    return request.param


# ------------------------------------------------------------------------------ functional running stats
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 4, 5, 6)])
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batch_norm_running_stats_match_torch(shape, momentum, path):
    c = shape[1]
    rm0, rv0 = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    s_rm, s_rv = _s(rm0), _s(rv0)
    t_rm, t_rv = _t(rm0.copy()), _t(rv0.copy())
    for _ in range(3):  # several steps so the momentum recursion is exercised
        x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
        F.batch_norm(_s(x), s_rm, s_rv, training=True, momentum=momentum)
        torch.nn.functional.batch_norm(_t(x), t_rm, t_rv, training=True, momentum=momentum)
    np.testing.assert_allclose(s_rm.data, t_rm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s_rv.data, t_rv.numpy(), rtol=1e-5, atol=1e-6)
    assert s_rm.dtype == np.float32 and s_rv.dtype == np.float32


def test_batch_norm_eval_leaves_running_stats_alone():
    rm, rv = _s(np.array([1.0, 2.0])), _s(np.array([3.0, 4.0]))
    F.batch_norm(_s(rng.standard_normal((4, 2))), rm, rv, training=False)
    assert rm.data.tolist() == [1.0, 2.0] and rv.data.tolist() == [3.0, 4.0]


def test_instance_norm_running_stats_match_torch():
    x = rng.standard_normal((3, 4, 5, 6))
    s_rm, s_rv = _s(np.zeros(4)), _s(np.ones(4))
    t_rm, t_rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    F.instance_norm(_s(x), s_rm, s_rv, momentum=0.2)
    torch.nn.functional.instance_norm(_t(x), t_rm, t_rv, momentum=0.2)
    np.testing.assert_allclose(s_rm.data, t_rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(s_rv.data, t_rv.numpy(), rtol=1e-12)


# --------------------------------------------------------------------------------- numba vs NumPy
def _bn_outputs(x, w, b, training, grad_seed=1):
    xs, ws, bs = _s(x, True), _s(w, True), _s(b, True)
    rm, rv = _s(np.zeros(x.shape[1], x.dtype) + 0.3), _s(np.ones(x.shape[1], x.dtype) * 1.5)
    y = F.batch_norm(xs, rm, rv, ws, bs, training=training)
    gy = np.random.default_rng(grad_seed).standard_normal(x.shape).astype(x.dtype)
    y.backward(shendu.from_numpy(gy))
    return [y.data, xs.grad.data, ws.grad.data, bs.grad.data, rm.data, rv.data]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last_view"])
def test_batch_norm_numba_matches_numpy(dtype, training, layout, monkeypatch):
    if not norm_numba.AVAILABLE:
        pytest.skip("numba not installed")
    x = (rng.standard_normal((8, 16, 20, 24)) * 2 + 5).astype(dtype)
    if layout == "channels_last_view":  # same values, NHWC memory: the kernels see strided arrays
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w, b = rng.uniform(0.5, 2, 16).astype(dtype), rng.standard_normal(16).astype(dtype)
    monkeypatch.setattr(norm_numba, "enabled", False)
    ref = _bn_outputs(x, w, b, training)
    monkeypatch.setattr(norm_numba, "enabled", True)
    monkeypatch.setattr(norm_numba, "_MIN_SIZE", 1)
    got = _bn_outputs(x, w, b, training)
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for name, g, r in zip(["y", "dx", "dw", "db", "running_mean", "running_var"], got, ref):
        assert g.dtype == dtype, name
        np.testing.assert_allclose(g, r, **tol, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_numba_matches_numpy(dtype, monkeypatch):
    if not norm_numba.AVAILABLE:
        pytest.skip("numba not installed")
    x = (rng.standard_normal((6, 10, 48)) + 3).astype(dtype)
    w, b = rng.uniform(0.5, 2, 48).astype(dtype), rng.standard_normal(48).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    outs = []
    for enabled in (False, True):
        monkeypatch.setattr(norm_numba, "enabled", enabled)
        monkeypatch.setattr(norm_numba, "_MIN_SIZE", 1)
        xs, ws, bs = _s(x, True), _s(w, True), _s(b, True)
        y = F.layer_norm(xs, (48,), ws, bs)
        y.backward(shendu.from_numpy(gy))
        outs.append([y.data, xs.grad.data, ws.grad.data, bs.grad.data])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for g, r in zip(outs[1], outs[0]):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, **tol)


def test_batch_norm_float32_statistics_do_not_cancel(path):
    """A large mean and small spread (mean 1000, std 0.01): the variance must not cancel in float32."""
    x64 = 1000.0 + 0.01 * rng.standard_normal((16, 4, 32, 32))
    x32 = x64.astype(np.float32)
    y = F.batch_norm(_s(x32), None, None, training=True).data
    ref = torch.nn.functional.batch_norm(_t(x32.astype(np.float64)), None, None, training=True).numpy()
    np.testing.assert_allclose(y, ref, atol=2e-3)


# ---------------------------------------------------------------------------------------- layers
def _copy_params(s_mod, t_mod):
    for name, p in t_mod.named_parameters():
        getattr(s_mod, name).data[...] = p.detach().numpy()


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (8, 3)), ("BatchNorm1d", (4, 3, 7)),
                                       ("BatchNorm2d", (4, 3, 5, 6))])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_layer_matches_torch(cls, shape, momentum, affine, path):
    c = shape[1]
    s_bn = getattr(nn, cls)(c, momentum=momentum, affine=affine)
    t_bn = getattr(torch.nn, cls)(c, momentum=momentum, affine=affine)
    if affine:
        with torch.no_grad():
            t_bn.weight.uniform_(0.5, 2)
            t_bn.bias.normal_()
        _copy_params(s_bn, t_bn)
    assert list(s_bn.state_dict()) == list(t_bn.state_dict())
    for step in range(3):
        x = (rng.standard_normal(shape) * 2 + step).astype(np.float32)
        gy = rng.standard_normal(shape).astype(np.float32)
        xs, xt = _s(x, True), _t(x, True)
        ys, yt = s_bn(xs), t_bn(xt)
        np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
        ys.backward(shendu.from_numpy(gy))
        yt.backward(_t(gy))
        np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    if affine:
        np.testing.assert_allclose(s_bn.weight.grad.data, t_bn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(s_bn.bias.grad.data, t_bn.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
    for key, tv in t_bn.state_dict().items():
        np.testing.assert_allclose(s_bn.state_dict()[key].data, tv.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
    s_bn.eval()
    t_bn.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(s_bn(_s(x)).data, t_bn(_t(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert int(s_bn.num_batches_tracked.item()) == 3


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    s_bn = nn.BatchNorm2d(3, track_running_stats=False).eval()
    t_bn = torch.nn.BatchNorm2d(3, track_running_stats=False).eval()
    assert list(s_bn.state_dict()) == list(t_bn.state_dict())
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(s_bn(_s(x)).data, t_bn(_t(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_batchnorm_layer_errors_and_state_untouched():
    bn = nn.BatchNorm2d(4)
    with pytest.raises(ShapeError, match="num_features=4"):
        bn(shendu.randn(2, 3, 5, 5))
    with pytest.raises(ShapeError, match=r"expected 4D input"):
        bn(shendu.randn(2, 4, 5))
    bn1 = nn.BatchNorm1d(3)
    with pytest.raises(ArgumentError, match="Expected more than 1 value per channel when training"):
        bn1(shendu.randn(1, 3))
    assert int(bn1.num_batches_tracked.item()) == 0 and bn1.running_mean.data.tolist() == [0, 0, 0]
    bn1.eval()
    assert bn1(shendu.randn(1, 3)).shape == (1, 3)  # eval with one sample is fine


@pytest.mark.parametrize("cls,shape", [("InstanceNorm1d", (2, 3, 7)), ("InstanceNorm2d", (2, 3, 5, 4)),
                                       ("InstanceNorm2d", (3, 5, 4))])
@pytest.mark.parametrize("affine,track", [(False, False), (True, True)])
def test_instancenorm_layer_matches_torch(cls, shape, affine, track):
    c = 3  # every shape above has 3 channels (the last one is an unbatched (C, H, W) sample)
    s_in = getattr(nn, cls)(c, affine=affine, track_running_stats=track).double()
    t_in = getattr(torch.nn, cls)(c, affine=affine, track_running_stats=track).double()
    if affine:
        with torch.no_grad():
            t_in.weight.uniform_(0.5, 2)
            t_in.bias.normal_()
        _copy_params(s_in, t_in)
    assert list(s_in.state_dict()) == list(t_in.state_dict())
    x = rng.standard_normal(shape)
    xs, xt = _s(x, True), _t(x, True)
    ys, yt = s_in(xs), t_in(xt)
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(shape)
    ys.backward(shendu.from_numpy(gy))
    yt.backward(_t(gy))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    for key, tv in t_in.state_dict().items():
        np.testing.assert_allclose(s_in.state_dict()[key].data, tv.numpy(), rtol=1e-6, err_msg=key)
    s_in.eval()
    t_in.eval()
    np.testing.assert_allclose(s_in(_s(x)).data, t_in(_t(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("normalized_shape,shape", [(768, (2, 3, 768)), ((4, 5), (3, 4, 5)), ((2, 3, 4), (2, 3, 4))])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_layer_matches_torch(normalized_shape, shape, bias, path):
    s_ln, t_ln = nn.LayerNorm(normalized_shape, bias=bias), torch.nn.LayerNorm(normalized_shape, bias=bias)
    with torch.no_grad():
        t_ln.weight.uniform_(0.5, 2)
        if bias:
            t_ln.bias.normal_()
    _copy_params(s_ln, t_ln)
    assert list(s_ln.state_dict()) == list(t_ln.state_dict())
    x = rng.standard_normal(shape).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    xs, xt = _s(x, True), _t(x, True)
    ys, yt = s_ln(xs), t_ln(xt)
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    ys.backward(shendu.from_numpy(gy))
    yt.backward(_t(gy))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, p in t_ln.named_parameters():
        np.testing.assert_allclose(getattr(s_ln, name).grad.data, p.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_groupnorm_and_lrn_layers_match_torch():
    x = rng.standard_normal((2, 6, 4, 5))
    s_gn, t_gn = nn.GroupNorm(3, 6).double(), torch.nn.GroupNorm(3, 6).double()
    with torch.no_grad():
        t_gn.weight.uniform_(0.5, 2)
    _copy_params(s_gn, t_gn)
    assert list(s_gn.state_dict()) == list(t_gn.state_dict())
    np.testing.assert_allclose(s_gn(_s(x)).data, t_gn(_t(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ArgumentError, match="divisible"):
        nn.GroupNorm(4, 6)
    lrn = nn.LocalResponseNorm(3, alpha=0.1, beta=0.6, k=1.5)
    t_lrn = torch.nn.LocalResponseNorm(3, alpha=0.1, beta=0.6, k=1.5)
    np.testing.assert_allclose(lrn(_s(x)).data, t_lrn(_t(x)).numpy(), rtol=1e-10, atol=1e-12)


def test_lrn_reproduces_alexnet_paper_formula():
    """The paper's b_c = a_c / (k + alpha * sum a^2)^beta (k=2, n=5, alpha=1e-4, beta=0.75) is torch's
    definition with alpha * n; checked against a plain loop."""
    a = rng.standard_normal((2, 7, 3, 3)) * 10
    ref = np.empty_like(a)
    n, C = 5, a.shape[1]
    for c in range(C):
        lo, hi = max(0, c - n // 2), min(C - 1, c + n // 2)
        ref[:, c] = a[:, c] / (2 + 1e-4 * (a[:, lo:hi + 1] ** 2).sum(axis=1)) ** 0.75
    got = F.local_response_norm(_s(a), size=5, alpha=5e-4, beta=0.75, k=2.0).data
    np.testing.assert_allclose(got, ref, rtol=1e-12)


# --------------------------------------------------------------------------------- fuse_conv_bn
class _TorchLikeConv(Module):
    """A stand-in with the documented Conv2d attributes, so fuse_conv_bn is tested without nn.Conv2d."""

    def __init__(self, weight, bias, stride=1, padding=0, dilation=1, groups=1):
        super().__init__()
        self.weight = nn.Parameter(shendu.from_numpy(weight))
        self.bias = None if bias is None else nn.Parameter(shendu.from_numpy(bias))
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _trained_bn(c):
    t_bn = torch.nn.BatchNorm2d(c)
    with torch.no_grad():
        t_bn.weight.uniform_(0.5, 2)
        t_bn.bias.normal_()
        t_bn.running_mean.normal_()
        t_bn.running_var.uniform_(0.5, 3)
    bn = nn.BatchNorm2d(c)
    bn.load_state_dict({k: v.numpy() for k, v in t_bn.state_dict().items()})
    return bn.eval(), t_bn.eval()


@pytest.mark.parametrize("has_bias,groups", [(True, 1), (False, 1), (True, 2)])
def test_fuse_conv_bn_matches_torch_conv_bn(has_bias, groups):
    w = rng.standard_normal((6, 4 // groups, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(6).astype(np.float32) if has_bias else None
    conv = _TorchLikeConv(w, b, stride=2, padding=1, groups=groups)
    bn, t_bn = _trained_bn(6)
    t_conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=groups, bias=has_bias)
    with torch.no_grad():
        t_conv.weight.copy_(_t(w))
        if has_bias:
            t_conv.bias.copy_(_t(b))
    fused = nn.fuse_conv_bn(conv, bn)
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    want = t_bn(t_conv(_t(x))).detach().numpy()
    np.testing.assert_allclose(fused(_s(x)).data, want, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(bn(conv(_s(x))).data, want, atol=1e-5, rtol=1e-5)
    assert fused is not conv and np.array_equal(conv.weight.data, w)  # the original is untouched
    assert fused.weight.dtype == np.float32 and fused.bias.dtype == np.float32


def test_fuse_conv_bn_with_shendu_conv2d():
    if not hasattr(nn, "Conv2d"):
        pytest.skip("nn.Conv2d not available yet")
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)
    bn, _ = _trained_bn(5)
    x = shendu.randn(2, 3, 8, 8)
    fused = nn.fuse_conv_bn(conv, bn)
    np.testing.assert_allclose(fused(x).data, bn(conv(x)).data, atol=1e-5, rtol=1e-5)


def test_fuse_conv_bn_errors():
    conv = _TorchLikeConv(np.ones((4, 2, 1, 1), np.float32), None)
    with pytest.raises(ShapeError, match="num_features=4"):
        nn.fuse_conv_bn(conv, nn.BatchNorm2d(3))
    with pytest.raises(ArgumentError, match="running statistics"):
        nn.fuse_conv_bn(conv, nn.BatchNorm2d(4, track_running_stats=False))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(1, 8, 5, 7), (3, 16, 6), (2, 5)])
def test_batch_norm_inference_matches_torch_and_the_numpy_path(monkeypatch, dtype, affine, shape):
    """Eval batch norm with no gradient to prepare runs one kernel (factors and pass together); it equals
    torch's eval, and the NumPy reference, with running statistics far from 0 (centring matters)."""
    c = shape[1]
    t_bn = torch.nn.BatchNorm1d(c, affine=affine) if len(shape) < 4 else torch.nn.BatchNorm2d(c, affine=affine)
    with torch.no_grad():
        t_bn.running_mean.uniform_(-50, 50)
        t_bn.running_var.uniform_(0.1, 4)
        if affine:
            t_bn.weight.uniform_(-2, 2)
            t_bn.bias.normal_()
    t_bn = t_bn.to(torch.float64 if dtype == np.float64 else torch.float32).eval()
    s_bn = type(nn.BatchNorm1d(c) if len(shape) < 4 else nn.BatchNorm2d(c))(c, affine=affine)
    s_bn.load_state_dict({k: v.numpy() for k, v in t_bn.state_dict().items()})
    s_bn = s_bn.to(dtype).eval()
    mean = t_bn.running_mean.numpy().reshape((1, c) + (1,) * (len(shape) - 2))
    x = (rng.standard_normal(shape) + mean).astype(dtype)  # inputs near the running means
    tol = 1e-5 if dtype == np.float32 else 1e-12
    with shendu.no_grad():
        got = s_bn(_s(x)).data
    assert got.dtype == dtype
    want = t_bn(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    monkeypatch.setattr(norm_numba, "enabled", False)  # the NumPy reference
    with shendu.no_grad():
        np.testing.assert_allclose(got, s_bn(_s(x)).data, rtol=tol, atol=tol)


def test_batch_norm_inference_on_the_team_matches_one_thread(two_threads, monkeypatch):
    x = rng.standard_normal((3, 6, 5, 7)).astype(np.float32)
    x3 = x.reshape(3, 6, -1)
    mean, var = rng.standard_normal(6), rng.random(6) + 0.5  # float64 statistics, float32 data
    w, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    one = norm_numba.batch_norm_inference(x3, mean, var, w, b, 1e-5, x.shape)
    monkeypatch.setattr(norm_numba, "TEAM_MIN_SIZE", 0)
    np.testing.assert_array_equal(norm_numba.batch_norm_inference(x3, mean, var, w, b, 1e-5, x.shape), one)
    want = (x - mean.reshape(6, 1, 1)) / np.sqrt(var.reshape(6, 1, 1) + 1e-5) * w.reshape(6, 1, 1) + b.reshape(6, 1, 1)
    np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-5)
