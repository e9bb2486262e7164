"""Tests of shendu/ops/linalg.py beyond the generic registry (tests/opspecs/linalg.py): the GEMM fast
paths at realistic sizes, empty dimensions, integer products, operator dispatch and einsum corners."""

import numpy as np
import pytest
import torch

import shendu
from shendu.errors import ShapeError

RNG = np.random.default_rng(0)


def _grads_vs_torch(fn_s, fn_t, arrays, dtype, rtol, atol):
    """Forward and backward (random cotangent) of fn_s on shendu tensors vs fn_t on torch tensors."""
    s_in = [shendu.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    t_in = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    s_out, t_out = fn_s(*s_in), fn_t(*t_in)
    np.testing.assert_allclose(s_out.data, t_out.detach().numpy(), rtol=rtol, atol=atol)
    cot = RNG.standard_normal(s_out.shape).astype(dtype)
    s_out.backward(cot)
    t_out.backward(torch.tensor(cot))
    for s, t in zip(s_in, t_in):
        assert s.grad.dtype == dtype and s.grad.shape == s.shape
        np.testing.assert_allclose(s.grad.data, t.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("sa, sb", [
    ((128, 784), (784, 512)),     # an MLP layer
    ((4, 33, 64), (64, 48)),      # Linear on a sequence: batch folded into the rows
    ((64, 48), (4, 48, 33)),      # shared left matrix: batch contracted by tensordot
    ((3, 1, 17, 20), (5, 20, 9)),  # general broadcast batch
])
def test_matmul_realistic_sizes_float32(sa, sb):
    a, b = RNG.standard_normal(sa), RNG.standard_normal(sb)
    _grads_vs_torch(shendu.matmul, torch.matmul, [a, b], np.float32, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("sa, sb", [((0, 3), (3, 4)), ((2, 0), (0, 3)), ((2, 0, 3), (3, 4)), ((0,), (0,)),
                                    ((2, 3), (0, 3, 4))])
def test_matmul_empty_dimensions(sa, sb):
    a, b = RNG.standard_normal(sa), RNG.standard_normal(sb)
    _grads_vs_torch(shendu.matmul, torch.matmul, [a, b], np.float64, rtol=1e-12, atol=1e-12)


def test_integer_matmul_is_exact_and_not_differentiable():
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    b = np.arange(8, dtype=np.int64).reshape(4, 2)
    y = shendu.tensor(a) @ shendu.tensor(b)
    assert y.dtype == np.int64 and not y.requires_grad
    np.testing.assert_array_equal(y.data, a @ b)


def test_matmul_operator_with_numpy_on_either_side():
    a = RNG.standard_normal((3, 4)).astype(np.float32)
    t = shendu.tensor(a, requires_grad=True)
    m = np.eye(4, dtype=np.float32)
    left, right = t @ m, m[:3, :3] @ t
    assert isinstance(left, shendu.Tensor) and isinstance(right, shendu.Tensor)
    np.testing.assert_allclose(left.data, a)
    np.testing.assert_allclose(right.data, a)


def test_matmul_error_is_raised_before_any_work():
    a = shendu.ones(2, 3, requires_grad=True)
    with pytest.raises(ShapeError, match=r"matmul: \(2, 3\) @ \(4, 5\): inner dimensions 3 and 4 differ"):
        a @ shendu.ones(4, 5)
    with pytest.raises(ValueError):  # a ShapeError is also a ValueError
        shendu.matmul(shendu.ones(2, 3, 4), shendu.ones(5, 4, 2))


def test_ger_is_outer():
    a, b = shendu.tensor([1.0, 2.0]), shendu.tensor([3.0, 4.0, 5.0])
    np.testing.assert_array_equal(shendu.ger(a, b).data, np.outer(a.data, b.data))


def test_einsum_plan_cache_keys_on_shapes():
    for n in (2, 5):
        a, b = RNG.standard_normal((n, 3)), RNG.standard_normal((3, n + 1))
        np.testing.assert_allclose(shendu.einsum("ij,jk", shendu.tensor(a), shendu.tensor(b)).data, a @ b,
                                   rtol=1e-6)


@pytest.mark.parametrize("eq, shapes", [
    ("...i->i", [(2, 3, 4)]),               # '...' summed away when the output omits it
    ("i...->...", [(3, 2)]),
    ("ijk,kj->i", [(2, 3, 4), (4, 3)]),     # contraction over two letters
    ("iij,j->ij", [(3, 3, 4), (4,)]),       # repeated letter that reaches the output
    ("ij,kl->", [(2, 3), (4, 5)]),          # no shared letters: product of sums
    ("ba,ab->ab", [(1, 3), (3, 1)]),        # size-1 broadcast on both sides
])
def test_einsum_more_cases_vs_torch(eq, shapes):
    arrays = [RNG.standard_normal(s) for s in shapes]
    _grads_vs_torch(lambda *x: shendu.einsum(eq, *x), lambda *x: torch.einsum(eq, *x), arrays, np.float64,
                    rtol=1e-10, atol=1e-12)


def test_einsum_keeps_float32():
    a = shendu.tensor(RNG.standard_normal((2, 3, 4)).astype(np.float32), requires_grad=True)
    y = shendu.einsum("bij->", a)
    y.backward()
    assert y.dtype == np.float32 and a.grad.dtype == np.float32
    np.testing.assert_array_equal(a.grad.data, np.ones((2, 3, 4), np.float32))


def test_trace_and_diag_grads_vs_torch():
    m = RNG.standard_normal((4, 6))
    _grads_vs_torch(shendu.trace, torch.trace, [m], np.float32, rtol=1e-6, atol=1e-6)
    _grads_vs_torch(lambda x: shendu.diag(x, -2), lambda x: torch.diag(x, -2), [m], np.float32, rtol=0, atol=0)
