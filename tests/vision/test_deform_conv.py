"""Deformable convolution (v1/v2) and deformable RoI pooling.

References, none computed by the code under test:
- a float64 plain-loop transcription of torchvision's CPU kernel (``deform_conv2d_kernel.cpp``:
  ``bilinear_interpolate`` and the im2col loop) and of mmcv's ``deform_roi_pool`` kernel;
- PyTorch: ``F.conv2d`` (zero / integer offsets) and a ``F.grid_sample(align_corners=True, zeros)``
  gather + einsum (feature spec §9.8), also differentiated by torch autograd for the gradients;
- float64 central differences (gradcheck) with sample points kept off integer grid lines.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import shendu
from shendu.errors import DTypeError, IndexOutOfRangeError, ShapeError
from shendu.ops.kernels import deform as kernel
from shendu.vision.ops.deform_conv import (
    DeformConv2d,
    DeformRoIPool,
    DeformRoIPoolPack,
    deform_conv2d,
    deform_roi_pool,
    offset_param_groups,
)

RNG = np.random.default_rng(8)


# ------------------------------------------------------------------------------------- references
def bilinear_tv(img, h, w):
    """torchvision's ``bilinear_interpolate`` (deform_conv2d_kernel.cpp), scalar by scalar."""
    H, W = img.shape
    if h <= -1 or H <= h or w <= -1 or W <= w:
        return 0.0
    h_low, w_low = math.floor(h), math.floor(w)
    h_high, w_high = h_low + 1, w_low + 1
    lh, lw = h - h_low, w - w_low
    hh, hw = 1 - lh, 1 - lw
    v1 = img[h_low, w_low] if h_low >= 0 and w_low >= 0 else 0.0
    v2 = img[h_low, w_high] if h_low >= 0 and w_high <= W - 1 else 0.0
    v3 = img[h_high, w_low] if h_high <= H - 1 and w_low >= 0 else 0.0
    v4 = img[h_high, w_high] if h_high <= H - 1 and w_high <= W - 1 else 0.0
    return hh * hw * v1 + hh * lw * v2 + lh * hw * v3 + lh * lw * v4


def deform_conv2d_loop(x, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask=None):
    """Plain loops over every output element and tap, following torchvision's kernel."""
    N, C, H, W = x.shape
    K, Cw, kh, kw = weight.shape
    G = offset.shape[1] // (2 * kh * kw)
    Cg, Gw = C // G, C // Cw
    Kg = K // Gw
    P, Q = offset.shape[2:]
    y = np.zeros((N, K, P, Q))
    for n in range(N):
        for o in range(K):
            gw = o // Kg
            for p in range(P):
                for q in range(Q):
                    acc = 0.0 if bias is None else bias[o]
                    for cw in range(Cw):
                        c = gw * Cw + cw
                        g = c // Cg
                        for i in range(kh):
                            for j in range(kw):
                                k = i * kw + j
                                dy = offset[n, 2 * (g * kh * kw + k), p, q]
                                dx = offset[n, 2 * (g * kh * kw + k) + 1, p, q]
                                m = 1.0 if mask is None else mask[n, g * kh * kw + k, p, q]
                                h = p * stride[0] - padding[0] + i * dilation[0] + dy
                                w = q * stride[1] - padding[1] + j * dilation[1] + dx
                                acc += weight[o, cw, i, j] * m * bilinear_tv(x[n, c], h, w)
                    y[n, o, p, q] = acc
    return y


def deform_conv2d_torch(x, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask=None):
    """Feature spec §9.8's oracle in torch tensors (differentiable): grid_sample each tap, then einsum."""
    N, C, H, W = x.shape
    K, Cw, kh, kw = weight.shape
    kk = kh * kw
    G = offset.shape[1] // (2 * kk)
    Cg, Gw = C // G, C // Cw
    P, Q = offset.shape[2:]
    off = offset.reshape(N, G, kk, 2, P, Q)
    taps = []
    for k in range(kk):
        i, j = divmod(k, kw)
        per_group = []
        for g in range(G):
            py = (torch.arange(P, dtype=x.dtype) * stride[0] - padding[0] + i * dilation[0])[:, None] + off[:, g, k, 0]
            px = (torch.arange(Q, dtype=x.dtype) * stride[1] - padding[1] + j * dilation[1])[None, :] + off[:, g, k, 1]
            grid = torch.stack([2 * px / (W - 1) - 1, 2 * py / (H - 1) - 1], -1)
            s = torch.nn.functional.grid_sample(x[:, g * Cg:(g + 1) * Cg], grid, mode="bilinear",
                                                padding_mode="zeros", align_corners=True)
            if mask is not None:
                s = s * mask[:, g * kk + k][:, None]
            per_group.append(s)
        taps.append(torch.cat(per_group, 1))
    cols = torch.stack(taps, 2).reshape(N, Gw, Cw, kk, P, Q)
    y = torch.einsum("gock,ngckpq->ngopq", weight.reshape(Gw, K // Gw, Cw, kk), cols).reshape(N, K, P, Q)
    return y if bias is None else y + bias[None, :, None, None]


def bilinear_roi(img, y, x):
    """RoI Align's bilinear read with clamping (mmcv / torchvision ``bilinear_interpolate``)."""
    H, W = img.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_high = y_low = H - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_high = x_low = W - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * img[y_low, x_low] + hy * lx * img[y_low, x_high] + ly * hx * img[y_high, x_low]
            + ly * lx * img[y_high, x_high])


def deform_roi_pool_loop(x, rois, offset, output_size, spatial_scale=1.0, sampling_ratio=0, gamma=0.1):
    """mmcv's deform_roi_pool forward kernel, loop by loop."""
    ph, pw = output_size
    K, C = len(rois), x.shape[1]
    out = np.zeros((K, C, ph, pw))
    for r in range(K):
        b = int(rois[r, 0])
        x1, y1, x2, y2 = (rois[r, 1:] * spatial_scale - 0.5)
        roi_w, roi_h = x2 - x1, y2 - y1
        bin_h, bin_w = roi_h / ph, roi_w / pw
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw)
        count = max(gh * gw, 1)
        for i in range(ph):
            for j in range(pw):
                sy, sx = y1, x1
                if offset is not None:
                    sx += gamma * roi_w * offset[r, 0, i, j]
                    sy += gamma * roi_h * offset[r, 1, i, j]
                for c in range(C):
                    acc = 0.0
                    for iy in range(gh):
                        yy = sy + i * bin_h + (iy + 0.5) * bin_h / gh
                        for ix in range(gw):
                            xx = sx + j * bin_w + (ix + 0.5) * bin_w / gw
                            acc += bilinear_roi(x[b, c], yy, xx)
                    out[r, c, i, j] = acc / count
    return out


# ---------------------------------------------------------------------------------------- helpers
def out_hw(H, W, k, stride, padding, dilation):
    return tuple((s + 2 * p - d * (kk - 1) - 1) // st + 1
                 for s, kk, st, p, d in zip((H, W), k, stride, padding, dilation))


def off_grid(*shape, low=-1.8, high=1.8):
    """Offsets whose fractional part stays in [0.15, 0.85]: sample points never touch grid lines (where the
    bilinear weights have kinks), however the integer base position falls."""
    whole = RNG.integers(math.floor(low), math.ceil(high), shape)
    return whole + RNG.uniform(0.15, 0.85, shape)


# (N, C, H, W, K, kernel, stride, padding, dilation, offset groups, weight groups, modulated)
CASES = [
    ("v1-3x3", (2, 3, 6, 7), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, False),
    ("v2-3x3", (2, 3, 6, 7), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True),
    ("v2-stride2-pad2", (1, 2, 7, 8), 3, (3, 3), (2, 2), (2, 2), (1, 1), 1, 1, True),
    ("v1-dilation-rect", (2, 2, 8, 7), 2, (2, 3), (1, 2), (1, 0), (2, 1), 1, 1, False),
    ("v2-offset-groups", (1, 4, 5, 6), 3, (3, 3), (1, 1), (1, 1), (1, 1), 2, 1, True),
    ("v2-weight-groups", (2, 4, 5, 5), 6, (3, 3), (1, 1), (1, 1), (1, 1), 2, 2, True),
    ("v1-1x1", (1, 3, 4, 5), 2, (1, 1), (1, 1), (0, 0), (1, 1), 3, 1, False),
]


def make_case(shape, K, ksize, stride, padding, dilation, G, Gw, modulated, spread=1.8):
    N, C, H, W = shape
    P, Q = out_hw(H, W, ksize, stride, padding, dilation)
    kk = ksize[0] * ksize[1]
    x = RNG.standard_normal(shape)
    offset = off_grid(N, 2 * G * kk, P, Q, low=-spread, high=spread)
    mask = RNG.uniform(0.05, 1.0, (N, G * kk, P, Q)) if modulated else None
    w = RNG.standard_normal((K, C // Gw) + tuple(ksize))
    b = RNG.standard_normal(K)
    return x, offset, mask, w, b


def st(a, dtype=np.float64, grad=False):
    return None if a is None else shendu.tensor(np.asarray(a, dtype), requires_grad=grad)


def tt(a, grad=False):
    return None if a is None else torch.tensor(a, requires_grad=grad)


@pytest.fixture(params=["numba", "numpy"])
def path(request, monkeypatch):
    """Run a test on the numba kernels and on the NumPy reference."""
    if request.param == "numba" and not kernel.USE_NUMBA:
        pytest.skip("numba not installed")
    monkeypatch.setattr(kernel, "USE_NUMBA", request.param == "numba")
    return request.param


# --------------------------------------------------------------------------------- deform_conv2d
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_loop_reference(case, path):
    _, shape, K, ksize, stride, padding, dilation, G, Gw, modulated = case
    x, offset, mask, w, b = make_case(shape, K, ksize, stride, padding, dilation, G, Gw, modulated)
    want = deform_conv2d_loop(x, offset, w, b, stride, padding, dilation, mask)
    got = deform_conv2d(st(x), st(offset), st(w), st(b), stride, padding, dilation, mask=st(mask))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    got32 = deform_conv2d(st(x, np.float32), st(offset, np.float32), st(w, np.float32), st(b, np.float32),
                          stride, padding, dilation, mask=st(mask, np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32.numpy(), want, rtol=1e-4, atol=1e-4)


def test_border_points_follow_torchvision_rule(path):
    """Points exactly on -1 / H / W and just inside or outside them: zero padding, no clamping."""
    x = RNG.standard_normal((1, 2, 4, 5))
    w = RNG.standard_normal((3, 2, 1, 1))
    edges = np.array([-1.0, -0.999, -0.5, 0.0, 3.0, 3.5, 3.999, 4.0, 4.2, -1.3])
    P, Q = 4, 5
    base_y, base_x = np.arange(P)[:, None], np.arange(Q)[None, :]
    ty = RNG.choice(edges, (P, Q)) - base_y  # offsets that land the (single) tap on the chosen edge rows
    tx = RNG.choice(np.array([-1.0, -0.5, 0.0, 4.0, 4.5, 5.0, 2.25]), (P, Q)) - base_x
    offset = np.stack([ty, tx])[None]
    want = deform_conv2d_loop(x, offset, w)
    np.testing.assert_allclose(deform_conv2d(st(x), st(offset), st(w)).numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES[:4], ids=[c[0] for c in CASES[:4]])
def test_forward_matches_grid_sample_oracle(case):
    _, shape, K, ksize, stride, padding, dilation, G, Gw, modulated = case
    x, offset, mask, w, b = make_case(shape, K, ksize, stride, padding, dilation, G, Gw, modulated, spread=3.5)
    want = deform_conv2d_torch(tt(x), tt(offset), tt(w), tt(b), stride, padding, dilation, tt(mask)).numpy()
    got = deform_conv2d(st(x), st(offset), st(w), st(b), stride, padding, dilation, mask=st(mask))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation,groups", [((1, 1), (1, 1), (1, 1), 1), ((2, 1), (0, 2), (1, 2), 1),
                                                            ((1, 1), (1, 1), (1, 1), 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_zero_offsets_equal_conv2d(stride, padding, dilation, groups, dtype, path):
    x = RNG.standard_normal((2, 4, 7, 6)).astype(dtype)
    w = RNG.standard_normal((6, 4 // groups, 3, 3)).astype(dtype)
    b = RNG.standard_normal(6).astype(dtype)
    P, Q = out_hw(7, 6, (3, 3), stride, padding, dilation)
    offset = np.zeros((2, 18, P, Q), dtype)
    ones = np.ones((2, 9, P, Q), dtype)
    want = torch.nn.functional.conv2d(tt(x), tt(w), tt(b), stride, padding, dilation, groups).numpy()
    plain = shendu.conv2d(st(x, dtype), st(w, dtype), st(b, dtype), stride, padding, dilation, groups)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for mask in (None, ones):
        got = deform_conv2d(st(x, dtype), st(offset, dtype), st(w, dtype), st(b, dtype), stride, padding, dilation,
                            mask=st(mask, dtype))
        assert got.dtype == dtype
        np.testing.assert_allclose(got.numpy(), want, **tol)
        np.testing.assert_allclose(got.numpy(), plain.numpy(), **tol)


@pytest.mark.parametrize("shift", [(1, -2), (-3, 0), (2, 2)])
def test_integer_offsets_equal_shifted_convolution(shift, path):
    """The same integer offset (dy, dx) on every tap moves the whole window: the output is the plain
    convolution's output read (dy, dx) further on, computed here on a canvas padded by s >= |shift|."""
    dy, dx = shift
    s = 3
    x = RNG.standard_normal((2, 3, 8, 9))
    w = RNG.standard_normal((4, 3, 3, 3))
    offset = np.zeros((2, 18, 8, 9))
    offset[:, 0::2], offset[:, 1::2] = dy, dx
    big = torch.nn.functional.conv2d(tt(x), tt(w), padding=1 + s).numpy()
    want = big[:, :, s + dy:s + dy + 8, s + dx:s + dx + 9]
    got = deform_conv2d(st(x), st(offset), st(w), padding=1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_backward_matches_torch_autograd_of_oracle(case, path):
    """Gradients of input, offset, mask, weight and bias for a random cotangent, against torch autograd
    through the grid_sample oracle."""
    _, shape, K, ksize, stride, padding, dilation, G, Gw, modulated = case
    x, offset, mask, w, b = make_case(shape, K, ksize, stride, padding, dilation, G, Gw, modulated)
    t_in = [tt(a, True) for a in (x, offset, mask, w, b) if a is not None]
    tx, toff, *rest = t_in
    tmask = rest.pop(0) if modulated else None
    tw, tb = rest
    ty = deform_conv2d_torch(tx, toff, tw, tb, stride, padding, dilation, tmask)
    cot = RNG.standard_normal(ty.shape)
    want = torch.autograd.grad(ty, t_in, torch.tensor(cot))
    for dtype, tol in ((np.float64, dict(rtol=1e-10, atol=1e-10)), (np.float32, dict(rtol=2e-4, atol=2e-4))):
        s_in = [st(a, dtype, True) for a in (x, offset, mask, w, b) if a is not None]
        sx, soff, *srest = s_in
        smask = srest.pop(0) if modulated else None
        sy = deform_conv2d(sx, soff, srest[0], srest[1], stride, padding, dilation, mask=smask)
        got = shendu.autograd.grad(sy, s_in, cot.astype(dtype))
        names = ["input", "offset"] + (["mask"] if modulated else []) + ["weight", "bias"]
        for name, g, wnt in zip(names, got, want):
            assert g.dtype == dtype, f"{name} gradient dtype {g.dtype}"
            np.testing.assert_allclose(g.numpy(), wnt.numpy(), **tol, err_msg=f"{case[0]} {dtype} grad {name}")


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[4], CASES[5]], ids=lambda c: c[0])
def test_gradcheck(case, path):
    _, shape, K, ksize, stride, padding, dilation, G, Gw, modulated = case
    x, offset, mask, w, b = make_case(shape, K, ksize, stride, padding, dilation, G, Gw, modulated)
    inputs = tuple(st(a, grad=True) for a in (x, offset, mask, w, b))

    def fn(x, offset, mask, w, b):
        return deform_conv2d(x, offset, w, b, stride, padding, dilation, mask=mask)

    for seed in range(3):
        assert shendu.autograd.gradcheck(fn, inputs, mode="directional", atol=1e-7, rtol=1e-5, seed=seed)


def test_gradcheck_full_jacobian_tiny(path):
    x, offset, mask, w, b = make_case((1, 2, 4, 4), 2, (2, 2), (1, 1), (0, 0), (1, 1), 1, 1, True, spread=1.2)
    inputs = tuple(st(a, grad=True) for a in (x, offset, mask, w, b))
    assert shendu.autograd.gradcheck(lambda x, o, m, w, b: deform_conv2d(x, o, w, b, mask=m), inputs, mode="full",
                                     atol=1e-7, rtol=1e-5)


def test_numba_and_numpy_paths_agree_float32(monkeypatch):
    if not kernel.USE_NUMBA:
        pytest.skip("numba not installed")
    x, offset, mask, w, b = make_case((3, 8, 9, 10), 6, (3, 3), (2, 1), (1, 1), (1, 1), 2, 2, True, spread=4)
    args = [a.astype(np.float32) for a in (x, offset, mask, w)]
    gy = RNG.standard_normal((3, 6, 5, 10)).astype(np.float32)
    results = []
    for use in (True, False):
        monkeypatch.setattr(kernel, "USE_NUMBA", use)
        y, cols = kernel.deform_conv2d_forward(*args, (2, 1), (1, 1), (1, 1), 2)
        grads = kernel.deform_conv2d_backward(gy, cols, *args, (2, 1), (1, 1), (1, 1), 2)
        results.append((y,) + grads)
    for a, b_ in zip(*results):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-4)


def test_noncontiguous_inputs_and_backward_twice():
    x, offset, mask, w, b = make_case((2, 3, 6, 6), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True)
    ref = deform_conv2d(st(x), st(offset), st(w), st(b), padding=1, mask=st(mask)).numpy()
    fx = [shendu.from_numpy(np.asfortranarray(a)) for a in (x, offset, mask, w)]
    got = deform_conv2d(fx[0], fx[1], fx[3], st(b), padding=1, mask=fx[2]).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    leaves = [st(a, grad=True) for a in (x, offset, mask, w, b)]
    loss = (deform_conv2d(leaves[0], leaves[1], leaves[3], leaves[4], padding=1, mask=leaves[2]) ** 2).sum()
    loss.backward(retain_graph=True)
    first = [t.grad.numpy().copy() for t in leaves]
    loss.backward()
    for t, g in zip(leaves, first):
        np.testing.assert_allclose(t.grad.numpy(), 2 * g, rtol=1e-12, atol=1e-12)


def test_only_requested_gradients():
    x, offset, mask, w, b = make_case((1, 2, 5, 5), 2, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True)
    ox = st(offset, grad=True)
    y = deform_conv2d(st(x), ox, st(w), padding=1, mask=st(mask))
    y.sum().backward()
    assert ox.grad is not None and ox.grad.shape == offset.shape


ERRORS = [
    (dict(offset=(1, 17, 5, 5)), ShapeError, "2\\*offset_groups\\*kh\\*kw"),
    (dict(offset=(1, 18, 4, 5)), ShapeError, "expected \\(1, 18, 5, 5\\)"),
    (dict(offset=(2, 18, 5, 5)), ShapeError, "batch 1"),
    (dict(offset=(1, 18, 5)), ShapeError, "offset must be 4-D"),
    (dict(mask=(1, 18, 5, 5)), ShapeError, "mask has shape \\(1, 18, 5, 5\\); expected \\(1, 9, 5, 5\\)"),
    (dict(weight=(2, 3, 3, 3)), ShapeError, "not a multiple of weight.shape\\[1\\]"),
    (dict(weight=(3, 1, 3, 3)), ShapeError, "groups=2"),
    (dict(bias=(3,)), ShapeError, "bias has shape"),
    (dict(input=(2, 5, 5)), ShapeError, "input must be 4-D"),
]


@pytest.mark.parametrize("change,exc,match", ERRORS)
def test_errors(change, exc, match):
    shapes = dict(input=(1, 2, 5, 5), offset=(1, 18, 5, 5), weight=(2, 2, 3, 3), bias=(2,), mask=(1, 9, 5, 5))
    shapes.update(change)
    t = {k: shendu.zeros(*v) for k, v in shapes.items()}
    with pytest.raises(exc, match=match):
        deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], padding=1, mask=t["mask"])


def test_errors_offset_groups_dtype_and_arguments():
    x = shendu.zeros(1, 3, 5, 5)
    with pytest.raises(ShapeError, match="offset_groups dividing the 3 input channels"):
        deform_conv2d(x, shendu.zeros(1, 36, 5, 5), shendu.zeros(2, 3, 3, 3), padding=1)
    with pytest.raises(DTypeError, match="dtypes differ"):
        deform_conv2d(x, shendu.zeros(1, 18, 5, 5, dtype=shendu.float64), shendu.zeros(2, 3, 3, 3), padding=1)
    with pytest.raises(shendu.errors.ArgumentError, match="stride must be >= 1"):
        deform_conv2d(x, shendu.zeros(1, 18, 5, 5), shendu.zeros(2, 3, 3, 3), stride=0)
    with pytest.raises(ShapeError, match="smaller than the dilated kernel"):
        deform_conv2d(shendu.zeros(1, 3, 2, 2), shendu.zeros(1, 18, 1, 1), shendu.zeros(2, 3, 3, 3))


# ----------------------------------------------------------------------------------- DeformConv2d
@pytest.mark.parametrize("modulated", [False, True])
def test_module_starts_as_plain_conv_and_learns_offsets(modulated):
    shendu.manual_seed(0)
    layer = DeformConv2d(3, 5, 3, stride=2, padding=1, modulated=modulated, offset_groups=3)
    x = shendu.tensor(RNG.standard_normal((2, 3, 9, 8)).astype(np.float32))
    want = torch.nn.functional.conv2d(torch.tensor(x.numpy()), torch.tensor(layer.weight.detach().numpy()),
                                      torch.tensor(layer.bias.detach().numpy()), 2, 1).numpy()
    y = layer(x)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-5, atol=1e-5)
    assert layer.conv_offset.weight.shape == ((3 if modulated else 2) * 3 * 9, 3, 3, 3)
    (y * shendu.tensor(RNG.standard_normal(y.shape).astype(np.float32))).sum().backward()
    assert np.abs(layer.conv_offset.weight.grad.detach().numpy()).max() > 0  # the branch receives gradient at zero init
    assert layer.weight.grad is not None and layer.bias.grad is not None


def test_module_with_given_offsets_is_the_functional_op():
    layer = DeformConv2d(2, 3, 3, padding=1, bias=False, modulated=True)
    x, offset, mask, _, _ = make_case((1, 2, 5, 5), 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True)
    layer.double()
    got = layer(st(x), st(offset), st(mask))
    want = deform_conv2d(st(x), st(offset), layer.weight, padding=1, mask=st(mask))
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12)


def test_module_mask_convention_and_param_groups():
    layer = DeformConv2d(2, 2, 3, padding=1, modulated=True)
    _, mask = layer.offsets(shendu.randn(1, 2, 4, 4))
    np.testing.assert_array_equal(mask.detach().numpy(), 1.0)  # 2 * sigmoid(0), the official DCNv2 convention
    _, half = DeformConv2d(2, 2, 3, padding=1, modulated=True, mask_scale=1.0).offsets(shendu.randn(1, 2, 4, 4))
    np.testing.assert_array_equal(half.detach().numpy(), 0.5)
    groups = layer.param_groups(0.1)
    assert [g["lr"] for g in groups] == [0.1, pytest.approx(0.01)]
    assert {id(p) for p in groups[1]["params"]} == {id(layer.conv_offset.weight), id(layer.conv_offset.bias)}
    assert {id(p) for p in groups[0]["params"]} == {id(layer.weight), id(layer.bias)}
    assert DeformConv2d(2, 2, 3).offset_lr_mult == 1.0
    assert set(layer.state_dict()) == {"weight", "bias", "conv_offset.weight", "conv_offset.bias"}
    opt = shendu.optim.SGD(offset_param_groups(layer, 0.1), lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, pytest.approx(0.01)]


# -------------------------------------------------------------------------------- deform_roi_pool
ROIS = np.array([[0, 1.2, 0.7, 6.3, 5.1], [1, 0.4, 2.2, 3.9, 7.6], [0, 2.0, 2.0, 2.6, 3.1], [1, -1.5, 4.0, 9.5, 8.5]])


@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("with_offset", [False, True])
def test_roi_pool_matches_loop_reference(sampling_ratio, with_offset):
    x = RNG.standard_normal((2, 3, 8, 9))
    offset = RNG.uniform(-1, 1, (4, 2, 3, 2)) if with_offset else None
    want = deform_roi_pool_loop(x, ROIS, offset, (3, 2), 1.0, sampling_ratio, 0.2)
    got = deform_roi_pool(st(x), st(ROIS), st(offset), (3, 2), 1.0, sampling_ratio, 0.2)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    got32 = deform_roi_pool(st(x, np.float32), st(ROIS, np.float32), st(offset, np.float32), (3, 2), 1.0,
                            sampling_ratio, 0.2)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32.detach().numpy(), want, rtol=1e-4, atol=1e-4)


def test_roi_pool_spatial_scale_and_zero_offset():
    x = RNG.standard_normal((2, 2, 6, 7))
    rois = ROIS * np.array([1, 2, 2, 2, 2])
    want = deform_roi_pool_loop(x, rois, None, (2, 2), 0.5)
    got = deform_roi_pool(st(x), st(rois), st(np.zeros((4, 2, 2, 2))), 2, spatial_scale=0.5)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-12)


def test_roi_pool_gradcheck():
    x = RNG.standard_normal((2, 2, 8, 9))
    rois = ROIS[:3]  # inside the map: no clamped samples, where the offset derivative has a kink
    offset = RNG.uniform(-0.6, 0.6, (3, 2, 2, 2))
    inputs = (st(x, grad=True), st(offset, grad=True))
    for sr in (0, 2):
        def fn(x, o):
            return deform_roi_pool(x, st(rois), o, 2, 1.0, sr, 0.3)
        for seed in range(3):
            assert shendu.autograd.gradcheck(fn, inputs, mode="directional", atol=1e-7, rtol=1e-5, seed=seed)


def test_roi_pool_errors():
    x = shendu.zeros(2, 3, 8, 8)
    with pytest.raises(ShapeError, match="rois must be \\(K, 5\\)"):
        deform_roi_pool(x, shendu.zeros(3, 4), None, 2)
    with pytest.raises(ShapeError, match="offset has shape"):
        deform_roi_pool(x, shendu.zeros(3, 5), shendu.zeros(3, 2, 3, 3), 2)
    with pytest.raises(IndexOutOfRangeError, match="batch indices"):
        deform_roi_pool(x, shendu.tensor([[2.0, 0, 0, 4, 4]]), None, 2)
    with pytest.raises(ShapeError, match="input must be 4-D"):
        deform_roi_pool(shendu.zeros(3, 8, 8), shendu.zeros(1, 5), None, 2)


def test_roi_pool_pack_starts_as_plain_pooling_and_learns():
    shendu.manual_seed(1)
    x = shendu.tensor(RNG.standard_normal((2, 3, 8, 9)).astype(np.float32))
    rois = shendu.tensor(ROIS.astype(np.float32))
    pack = DeformRoIPoolPack(2, output_channels=3, deform_fc_channels=8)
    plain = DeformRoIPool(2)(x, rois)
    y = pack(x, rois)
    np.testing.assert_allclose(y.detach().numpy(), plain.detach().numpy(), rtol=1e-6, atol=1e-6)
    (y * shendu.tensor(RNG.standard_normal(y.shape).astype(np.float32))).sum().backward()
    assert np.abs(pack.offset_fc[-1].weight.grad.detach().numpy()).max() > 0
    groups = offset_param_groups(pack, 1.0)
    assert [g["lr"] for g in groups] == [1.0, 0.01] and len(groups[0]["params"]) == 0


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_pool_zero_offset_is_roi_align_aligned(sampling_ratio):
    """With no offsets deformable RoI pooling is RoI Align (aligned=True), cross-checked with shendu's roi_align."""
    roi = pytest.importorskip("shendu.vision.ops.roi")
    x = RNG.standard_normal((2, 3, 8, 9))
    want = roi.roi_align(st(x), st(ROIS), (3, 2), 1.0, sampling_ratio, aligned=True).numpy()
    got = deform_roi_pool(st(x), st(ROIS), None, (3, 2), 1.0, sampling_ratio)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
