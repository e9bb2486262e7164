"""Tensor construction, attributes, conversions, operators and repr."""

import numpy as np
import pytest
import torch

import shendu


def test_default_dtypes_follow_torch():
    assert shendu.tensor([1.0, 2.0]).dtype == shendu.float32
    assert shendu.tensor([1, 2]).dtype == shendu.int64
    assert shendu.tensor([True]).dtype == shendu.bool
    assert shendu.tensor(np.zeros(2)).dtype == shendu.float64  # arrays keep their dtype
    assert shendu.zeros(2).dtype == shendu.float32
    assert shendu.arange(3).dtype == shendu.int64
    assert shendu.arange(0.0, 1.0, 0.5).dtype == shendu.float32
    assert shendu.full((2,), 1.5).dtype == shendu.float32


@pytest.mark.parametrize("expr", ["a * 2.5", "a / 2", "a + 0.5", "2 ** a"])
def test_scalar_promotion_matches_torch(expr):
    for a_np in (np.array([1, 2, 3]), np.array([1.0, 2.0], np.float32), np.array([1.0, 2.0])):
        a = shendu.from_numpy(a_np)  # noqa: F841 - used by eval(expr)
        s = eval(expr)
        a = torch.from_numpy(a_np)  # noqa: F841 - used by eval(expr)
        t = eval(expr)
        assert s.dtype == np.dtype(str(t.dtype).replace("torch.", "")), (expr, a_np.dtype)
        np.testing.assert_allclose(s.data, t.numpy(), rtol=1e-6)


def test_int_float_tensor_promotion():
    assert (shendu.tensor([1, 2]) * shendu.tensor([0.5, 1.0])).dtype == shendu.float32


def test_attributes_and_conversions():
    x = shendu.arange(6).reshape(2, 3) if hasattr(shendu, "reshape") else None
    t = shendu.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and t.size(1) == 3 and len(t) == 2
    assert t.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert isinstance(t.numpy(), np.ndarray)
    assert shendu.tensor([3.5]).item() == 3.5
    assert float(shendu.tensor(2.0)) == 2.0 and int(shendu.tensor(7)) == 7
    assert t.double().dtype == shendu.float64 and t.long().dtype == shendu.int64
    assert t.to(shendu.float64).dtype == shendu.float64
    assert np.asarray(t).shape == (2, 3)
    del x


def test_item_and_bool_errors():
    with pytest.raises(shendu.errors.ShapeError, match="one element"):
        shendu.ones(2).item()
    with pytest.raises(shendu.errors.ShapeError, match="ambiguous"):
        bool(shendu.ones(2))


def test_numpy_of_tensor_requiring_grad_raises():
    with pytest.raises(shendu.errors.AutogradError, match="detach"):
        shendu.ones(2, requires_grad=True).numpy()


def test_repr_like_torch():
    assert repr(shendu.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(shendu.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(shendu.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "dtype=float64" in repr(shendu.zeros(2, dtype=shendu.float64))
    assert "grad_fn=<MulBackward>" in repr(shendu.ones(1, requires_grad=True) * 2)


def test_reflected_operators():
    x = shendu.tensor([1.0, 2.0])
    np.testing.assert_array_equal((1 - x).data, [0, -1])
    np.testing.assert_array_equal((2 / x).data, [2, 1])
    np.testing.assert_array_equal((2 ** x).data, [2, 4])
    np.testing.assert_array_equal((np.float32(3) * x).data, [3, 6])
    np.testing.assert_array_equal((-x).data, [-1, -2])
    np.testing.assert_array_equal(abs(-x).data, [1, 2])
    np.testing.assert_array_equal(((x > 1) & (x < 3)).data, [False, True])
    np.testing.assert_array_equal((~(x > 1)).data, [True, False])


def test_factories():
    assert shendu.eye(3).tolist() == np.eye(3).tolist()
    assert shendu.linspace(0, 1, 3).tolist() == [0, 0.5, 1]
    assert shendu.zeros_like(shendu.ones(2, 3, dtype=shendu.float64)).dtype == shendu.float64
    assert shendu.ones_like(shendu.ones(2)).tolist() == [1, 1]
    assert shendu.full_like(shendu.ones(2), 7).tolist() == [7, 7]
    r = shendu.randint(0, 5, (1000,))
    assert r.dtype == shendu.int64 and 0 <= r.data.min() and r.data.max() < 5
    u = shendu.rand(10000)
    assert 0 <= u.data.min() and u.data.max() < 1 and abs(u.data.mean() - 0.5) < 0.02
    n = shendu.randn(100000)
    assert n.dtype == shendu.float32 and abs(n.data.std() - 1) < 0.02
    assert sorted(shendu.randperm(5).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(shendu.errors.ShapeError, match="negative dimension"):
        shendu.zeros(-1)


def test_manual_seed_makes_randomness_reproducible():
    shendu.manual_seed(42)
    a = (shendu.rand(5), shendu.randn(5), shendu.randint(0, 100, (5,)), shendu.randperm(7))
    shendu.manual_seed(42)
    b = (shendu.rand(5), shendu.randn(5), shendu.randint(0, 100, (5,)), shendu.randperm(7))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.data, y.data)
    shendu.manual_seed(43)
    assert not np.array_equal(shendu.rand(5).data, a[0].data)


def test_generator_state_round_trip():
    g = shendu.Generator(7)
    state = g.get_state()
    a = shendu.rand(4, generator=g)
    g.set_state(state)
    np.testing.assert_array_equal(shendu.rand(4, generator=g).data, a.data)
