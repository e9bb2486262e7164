"""Gradient clipping against torch.nn.utils.clip_grad_norm_ / clip_grad_value_."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shendu
from shendu.errors import ArgumentError, AutogradError
from shendu.optim import clip_grad_norm_, clip_grad_value_, get_total_norm

SHAPES = [(3, 4), (5,), (), (2, 1, 3)]


def _pair(dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(s) * scale for s in SHAPES]
    ours, theirs = [], []
    for g in grads:
        p = shendu.zeros(*g.shape, dtype=dtype, requires_grad=True)
        p.grad = shendu.tensor(np.asarray(g, dtype=dtype))
        ours.append(p)
        q = torch.zeros(g.shape, dtype=torch.float64 if dtype == np.float64 else torch.float32, requires_grad=True)
        q.grad = torch.tensor(np.asarray(g, dtype=dtype))
        theirs.append(q)
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    ours, theirs = _pair(dtype)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert total.shape == () and total.dtype == dtype
    np.testing.assert_allclose(total.item(), ref.item(), rtol=tol)
    for p, q in zip(ours, theirs):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=tol, atol=tol)


def test_clipped_norm_is_max_norm_and_in_place():
    ours, _ = _pair(np.float64, scale=10.0)
    arrays = [p.grad.data for p in ours]
    before = get_total_norm([p.grad for p in ours]).item()
    total = clip_grad_norm_(ours, 2.0)
    assert total.item() == pytest.approx(before)
    assert get_total_norm([p.grad for p in ours]).item() == pytest.approx(2.0, rel=1e-6)
    assert all(p.grad.data is a for p, a in zip(ours, arrays))  # in place, like torch


def test_single_tensor_none_grads_and_empty():
    p = shendu.tensor([3.0, 4.0], requires_grad=True)
    p.grad = shendu.tensor([3.0, 4.0])
    assert clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.data, [0.6, 0.8], rtol=1e-5)
    q = shendu.zeros(2, requires_grad=True)  # no grad: skipped
    assert clip_grad_norm_([p, q], 10.0).item() == pytest.approx(1.0, rel=1e-5)
    assert q.grad is None
    assert clip_grad_norm_([q], 1.0).item() == 0.0


def test_nonfinite_norm():
    ours, theirs = _pair(np.float64)
    ours[1].grad.data[0] = np.nan
    theirs[1].grad[0] = float("nan")
    with pytest.raises(AutogradError, match="non-finite"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    assert np.isnan(clip_grad_norm_(ours, 1.0).item())
    assert np.isnan(ours[0].grad.data).all()  # torch propagates the NaN too
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert torch.isnan(theirs[0].grad).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_matches_torch(dtype):
    ours, theirs = _pair(dtype, scale=2.0)
    assert clip_grad_value_(ours, 0.7) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for p, q in zip(ours, theirs):
        assert p.grad.dtype == dtype
        np.testing.assert_array_equal(p.grad.data, q.grad.numpy())
        assert np.abs(p.grad.data).max() <= 0.7 + 1e-7


def test_bad_arguments():
    ours, _ = _pair(np.float64)
    with pytest.raises(ArgumentError, match="max_norm"):
        clip_grad_norm_(ours, -1.0)
    with pytest.raises(ArgumentError, match="clip_value"):
        clip_grad_value_(ours, -0.1)
