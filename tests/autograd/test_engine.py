"""The backward engine: ordering, accumulation, broadcasting, grad mode, hooks, retain_graph, errors."""

import numpy as np
import pytest
import torch

import shendu
from shendu.errors import AutogradError, ShapeError


def test_long_chain_has_no_recursion_limit():
    x = shendu.tensor([0.5], requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward(shendu.ones(1))
    np.testing.assert_allclose(x.grad.data, [1.0001 ** 10_000], rtol=1e-3)


def test_fan_out_accumulates_and_matches_torch():
    a = np.array([0.3, -1.2, 2.0])

    def f(lib, x):
        y = x * x
        z = y + x  # x used twice, y used twice below
        return (y * z + z.exp() * y).sum() if lib is torch else (y * z + z.exp() * y).data.sum()

    xs = shendu.tensor(a, requires_grad=True)
    y = xs * xs
    z = y + xs
    out = y * z + z.exp() * y
    out.backward(shendu.ones(3, dtype=shendu.float64))
    xt = torch.tensor(a, requires_grad=True)
    f(torch, xt).backward()
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-12)


def test_diamond_graph_runs_each_node_once():
    calls = []

    class Count(shendu.Function):
        def forward(ctx, x):
            return x * 1

        def backward(ctx, gy):
            calls.append(1)
            return gy

    x = shendu.tensor([1.0, 2.0], requires_grad=True)
    c = Count.apply(x)
    (c * 2 + c * 3).backward(shendu.ones(2))
    assert len(calls) == 1
    np.testing.assert_array_equal(x.grad.data, [5.0, 5.0])


def test_broadcasting_backward_sums_to_input_shape():
    a = shendu.tensor(np.ones((2, 3, 4)), requires_grad=True)
    b = shendu.tensor(np.ones((3, 1)), requires_grad=True)
    (a * b).backward(shendu.ones(2, 3, 4, dtype=shendu.float64))
    assert b.grad.shape == (3, 1)
    np.testing.assert_array_equal(b.grad.data, np.full((3, 1), 8.0))


def test_grad_accumulates_across_backward_calls_and_leaves_do_not_share_arrays():
    a = shendu.tensor([1.0, 2.0], requires_grad=True)
    b = shendu.tensor([3.0, 4.0], requires_grad=True)
    (a + b).backward(shendu.ones(2))
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data *= 10  # in-place change of one grad must not leak into the other
    np.testing.assert_array_equal(b.grad.data, [1.0, 1.0])
    (a + b).backward(shendu.ones(2))
    np.testing.assert_array_equal(b.grad.data, [2.0, 2.0])


def test_no_grad_and_enable_grad():
    x = shendu.ones(2, requires_grad=True)
    with shendu.no_grad():
        y = x * 2
        with shendu.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad
    assert shendu.is_grad_enabled()

    @shendu.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad


def test_second_backward_without_retain_graph_raises_clear_error():
    x = shendu.tensor([1.0], requires_grad=True)
    y = (x.exp() * 2)
    y.backward(shendu.ones(1))
    with pytest.raises(AutogradError, match="second time.*retain_graph=True"):
        y.backward(shendu.ones(1))


def test_retain_graph_allows_second_backward():
    x = shendu.tensor([1.0], requires_grad=True)
    y = x.exp()
    y.backward(shendu.ones(1), retain_graph=True)
    y.backward(shendu.ones(1))
    np.testing.assert_allclose(x.grad.data, [2 * np.e], rtol=1e-6)


def test_backward_needs_gradient_for_non_scalar():
    x = shendu.ones(3, requires_grad=True)
    with pytest.raises(AutogradError, match="only for a tensor with one element"):
        (x * 2).backward()
    with pytest.raises(ShapeError, match=r"gradient has shape \(2,\)"):
        (x * 2).backward(shendu.ones(2))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(AutogradError, match="does not require grad"):
        shendu.ones(1).backward()


def test_autograd_grad_returns_without_touching_dot_grad():
    x = shendu.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    (g,) = shendu.autograd.grad(y, x, shendu.ones(2))
    np.testing.assert_array_equal(g.data, [2.0, 4.0])
    assert x.grad is None


def test_autograd_grad_of_intermediate_tensor():
    x = shendu.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    y = h * h
    (gh,) = shendu.autograd.grad(y, h, shendu.ones(2))
    np.testing.assert_array_equal(gh.data, [6.0, 12.0])


def test_autograd_grad_unused_input():
    x = shendu.ones(2, requires_grad=True)
    u = shendu.ones(2, requires_grad=True)
    with pytest.raises(Exception, match="allow_unused"):
        shendu.autograd.grad(x * 2, [x, u], shendu.ones(2))
    gx, gu = shendu.autograd.grad(x * 2, [x, u], shendu.ones(2), allow_unused=True)
    assert gu is None and gx is not None


def test_hooks_on_leaf_and_intermediate():
    x = shendu.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h = x * 2
    h.register_hook(lambda g: seen.append(g.data.copy()))
    handle = x.register_hook(lambda g: g * 10)
    (h * h).backward(shendu.ones(2))
    np.testing.assert_array_equal(seen[0], [4.0, 8.0])
    np.testing.assert_array_equal(x.grad.data, [80.0, 160.0])
    handle.remove()
    x.grad = None
    (x * 1).backward(shendu.ones(2))
    np.testing.assert_array_equal(x.grad.data, [1.0, 1.0])


def test_retain_grad():
    x = shendu.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    h.retain_grad()
    (h * h).backward(shendu.ones(2))
    np.testing.assert_array_equal(h.grad.data, [4.0, 8.0])


def test_inplace_on_leaf_requiring_grad_raises():
    x = shendu.ones(2, requires_grad=True)
    with pytest.raises(AutogradError, match="leaf tensor that requires grad"):
        x += 1
    with pytest.raises(AutogradError, match="leaf tensor that requires grad"):
        x.mul_(2)


def test_inplace_on_nonleaf_is_differentiable():
    x = shendu.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y += x
    y *= 2
    y.backward(shendu.ones(2))
    np.testing.assert_array_equal(x.grad.data, [8.0, 8.0])


def test_inplace_without_grad_modifies_memory():
    a = np.zeros(3, np.float32)
    t = shendu.from_numpy(a)
    t += 1
    t.mul_(3)
    np.testing.assert_array_equal(a, [3, 3, 3])
    x = shendu.ones(2, requires_grad=True)
    with shendu.no_grad():
        x -= 0.5
    np.testing.assert_array_equal(x.data, [0.5, 0.5])


def test_requires_grad_on_integer_tensor_raises():
    with pytest.raises(shendu.errors.DTypeError, match="floating-point"):
        shendu.tensor([1, 2], requires_grad=True)


def test_detach_cuts_graph():
    x = shendu.ones(2, requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf


def test_non_differentiable_outputs_and_unused_outputs():
    class TwoOut(shendu.Function):
        def forward(ctx, x):
            return x * 2, x * 3

        def backward(ctx, g1, g2):
            return g1 * 2 + g2 * 3

    x = shendu.tensor([1.0], requires_grad=True)
    a, b = TwoOut.apply(x)
    a.backward(shendu.ones(1))  # b unused: its gradient is materialised as zeros
    np.testing.assert_array_equal(x.grad.data, [2.0])


def test_float32_gradients_stay_float32():
    x = shendu.tensor([1.0, 2.0], requires_grad=True)
    (x * 2.5 + x.exp()).backward(shendu.ones(2))
    assert x.grad.dtype == np.float32
