"""Targeted tests for shendu/ops/reduce.py beyond the generic registry (tests/opspecs/reduce.py)."""

import warnings

import numpy as np
import pytest
import torch

import shendu
from shendu.errors import ArgumentError, DTypeError


def _pair(a, requires_grad=True):
    return (shendu.from_numpy(a.copy()).requires_grad_(requires_grad),
            torch.tensor(a, requires_grad=requires_grad))


def test_max_dim_returns_named_tuple():
    x = shendu.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    out = shendu.max(x, 1)
    assert isinstance(out, tuple) and len(out) == 2
    values, indices = out
    assert out.values is values and out.indices is indices
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert indices.dtype == np.int64 and not indices.requires_grad
    assert type(shendu.min(x, 0)).__name__ == "min"


def test_tensor_methods_delegate():
    x = shendu.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    assert x.sum(1).tolist() == [8.0, 10.0]
    assert x.max(dim=0).indices.tolist() == [1, 0, 1]
    assert x.amax((0, 1)).item() == 7.0
    np.testing.assert_allclose(x.std(unbiased=False).item(), np.std(x.data), rtol=1e-6)
    assert x.argmin().item() == 4


def test_max_dim_ties_gradient_goes_to_first_index_like_torch():
    a = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    s, t = _pair(a)
    g = np.array([1.5, -2.0])
    shendu.max(s, 1).values.backward(shendu.tensor(g))
    torch.max(t, 1).values.backward(torch.tensor(g))
    np.testing.assert_array_equal(s.grad.data, t.grad.numpy())
    np.testing.assert_array_equal(s.grad.data, [[1.5, 0, 0], [-2.0, 0, 0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_and_mean_dtype_argument(dtype):
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    s, t = _pair(a)
    ys = shendu.sum(s, 1, dtype=shendu.float64)
    yt = torch.sum(t, 1, dtype=torch.float64)
    assert ys.dtype == np.float64
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), rtol=1e-12)
    g = np.arange(3.0)
    ys.backward(shendu.tensor(g))
    yt.backward(torch.tensor(g))
    assert s.grad.dtype == dtype
    np.testing.assert_allclose(s.grad.data, t.grad.numpy())
    ints = shendu.tensor([[1, 2], [3, 5]])
    m = shendu.mean(ints, dtype=shendu.float32)
    assert m.dtype == np.float32 and m.item() == 2.75


def test_mean_of_int_raises_like_torch():
    with pytest.raises(DTypeError, match="mean"):
        shendu.mean(shendu.tensor([1, 2, 3]))
    with pytest.raises(RuntimeError):
        torch.mean(torch.tensor([1, 2, 3]))


def test_var_with_no_degrees_of_freedom_matches_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a, kw in [(np.array([[1.0], [2.0]]), dict(dim=1)), (np.array([1.0, 2.0]), dict(correction=3))]:
            want = torch.var(torch.tensor(a), **kw).numpy()
            np.testing.assert_array_equal(shendu.var(shendu.tensor(a), **kw).data, want)


def test_logsumexp_of_all_minus_inf_is_minus_inf():
    a = np.array([[-np.inf, -np.inf], [0.0, -np.inf]], dtype=np.float32)
    got = shendu.logsumexp(shendu.tensor(a), 1).data
    np.testing.assert_array_equal(got, torch.logsumexp(torch.tensor(a), 1).numpy())


def test_logsumexp_int_input_becomes_float32():
    y = shendu.logsumexp(shendu.tensor([1, 2]), 0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.item(), torch.logsumexp(torch.tensor([1, 2]), 0).item(), rtol=1e-6)


def test_zero_dim_inputs_like_torch():
    a = np.array(2.5)
    s, t = shendu.tensor(a), torch.tensor(a)
    assert shendu.sum(s).shape == ()
    assert shendu.sum(s, 0).item() == torch.sum(t, 0).item()
    v, i = shendu.max(s, 0)
    tv, ti = torch.max(t, 0)
    assert v.shape == () and i.shape == () and v.item() == tv.item() and i.item() == ti.item()
    assert shendu.cumsum(s, 0).shape == () and shendu.cumsum(s, -1).item() == 2.5
    assert shendu.argmax(s).item() == 0 and shendu.argmax(s, 0).item() == 0


def test_reduction_gradient_is_a_broadcast_view_not_a_copy():
    x = shendu.randn(50, 60, requires_grad=True)
    for y in (shendu.sum(x, 1), shendu.mean(x, 1)):
        g = y.grad_fn.backward(np.ones(50, np.float32))
        assert g.shape == (50, 60) and g.dtype == np.float32
        assert g.strides[1] == 0  # the 50 row gradients are broadcast, not materialised


def test_float32_sum_of_many_elements_is_accurate():
    a = np.random.default_rng(1).uniform(0, 1, 10**6).astype(np.float32)
    got = shendu.sum(shendu.from_numpy(a)).item()
    np.testing.assert_allclose(got, a.astype(np.float64).sum(), rtol=1e-6)


def test_prod_gradient_exact_with_zeros_in_many_rows():
    rng = np.random.default_rng(2)
    a = rng.uniform(0.5, 1.5, (200, 7))
    a[rng.random(a.shape) < 0.15] = 0.0  # rows with no, one and several zeros
    s, t = _pair(a)
    g = rng.standard_normal(200)
    shendu.prod(s, 1).backward(shendu.tensor(g))
    torch.prod(t, 1).backward(torch.tensor(g))
    assert np.isfinite(s.grad.data).all()
    np.testing.assert_allclose(s.grad.data, t.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cumprod_gradient_exact_with_zeros_float32():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 1.5, (100, 9)).astype(np.float32)
    a[rng.random(a.shape) < 0.2] = 0.0
    s, t = _pair(a)
    g = rng.standard_normal(a.shape).astype(np.float32)
    shendu.cumprod(s, 1).backward(shendu.tensor(g))
    torch.cumprod(t, 1).backward(torch.tensor(g))
    assert s.grad.dtype == np.float32
    np.testing.assert_allclose(s.grad.data, t.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_max_with_other_tensor_is_maximum():
    a, b = shendu.tensor([1.0, 5.0]), shendu.tensor([3.0, 2.0])
    assert shendu.max(a, b).tolist() == [3.0, 5.0] and shendu.min(a, b).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("call, match", [
    (lambda x: shendu.sum(x, dim=(0, 5)), "sum: dim 5 is out of range"),
    (lambda x: shendu.amax(x, dim="1"), "amax: dim must be an int"),
    (lambda x: shendu.norm(x, "fro", dim=(0, 1, 2)), "at most 2 dims"),
    (lambda x: shendu.var(x, correction=-1), "correction must be a non-negative"),
    (lambda x: shendu.cumsum(x, None), "cumsum: dim must be a single int"),
    (lambda x: shendu.argmax(shendu.zeros(0)), "argmax: cannot reduce over an empty"),
])
def test_argument_errors(call, match):
    with pytest.raises(ArgumentError, match=match):
        call(shendu.ones(2, 3, 4))


@pytest.mark.parametrize("layout, dim", [
    ("c", None), ("c", 1), ("c", 0), ("c", (1, 2)), ("c", -1), ("transposed", None), ("transposed", 1),
])
def test_tiled_reductions_on_large_inputs_match_float64(layout, dim):
    """var/std/norm/logsumexp build their temporaries tile by tile on large inputs (see _sum_of)."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((96, 80, 120)).astype(np.float32) + 3  # > 8 tiles of 2^16 elements
    if layout == "transposed":
        a = a.transpose(2, 0, 1)
    x = shendu.from_numpy(a)
    a64 = a.astype(np.float64)
    axes = tuple(range(3)) if dim is None else ((dim,) if isinstance(dim, int) else dim)
    m = a64.mean(axis=axes, keepdims=True)
    want_var = ((a64 - m) ** 2).sum(axis=axes) / (np.prod([a.shape[i] for i in axes]) - 1)
    np.testing.assert_allclose(shendu.var(x, dim).data, want_var, rtol=2e-5)
    np.testing.assert_allclose(shendu.std(x, dim, keepdim=True).data,
                               np.sqrt(want_var).reshape(m.shape), rtol=2e-5)
    np.testing.assert_allclose(shendu.norm(x, dim=dim).data, np.sqrt((a64 ** 2).sum(axis=axes)), rtol=2e-5)
    np.testing.assert_allclose(shendu.norm(x, 1, dim).data, np.abs(a64).sum(axis=axes), rtol=2e-5)
    if dim is not None:
        mx = a64.max(axis=axes, keepdims=True)
        want_lse = (np.log(np.exp(a64 - mx).sum(axis=axes, keepdims=True)) + mx).squeeze(axis=axes)
        got = shendu.logsumexp(x, dim)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.data, want_lse, rtol=2e-6)


@pytest.mark.parametrize("shape,dim", [((300, 500), None), ((300, 500), 1), ((300, 500), 0), ((4, 50, 700), (1, 2)),
                                       ((4, 50, 700), (0, 1)), ((2 ** 17,), None), ((6, 90, 130), 1)])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_large_sum_and_mean_fast_path_accuracy(shape, dim, op):
    """Large float32 inputs take the matrix-vector path; compare with float64 and with torch."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) + 0.5
    got = getattr(shendu, op)(shendu.tensor(x), dim=dim).numpy()
    want = getattr(x.astype(np.float64), op)(axis=dim)
    scale = np.abs(x).astype(np.float64).sum(axis=dim) / (1 if op == "sum" else x.size / np.size(want))
    assert got.dtype == np.float32 and got.shape == np.shape(want)
    assert np.all(np.abs(got - want) <= 1e-5 * scale + 1e-6)
    ref = getattr(torch.from_numpy(x), op)() if dim is None else getattr(torch.from_numpy(x), op)(dim=dim)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,dim", [((2000, 1000), None), ((2000, 1000), 1), ((4, 600, 700), (1, 2)),
                                       ((3, 1000, 700), -1)])
@pytest.mark.parametrize("op", ["amax", "amin"])
def test_large_amax_amin_threaded_path(shape, dim, op):
    """Large inputs split their rows over threads; the result must equal NumPy's exactly."""
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    got = getattr(shendu, op)(shendu.tensor(x), dim=dim if dim is not None else ()).numpy()
    want = getattr(np, op)(x, axis=dim)
    np.testing.assert_array_equal(got, want)
    t = shendu.tensor(x, requires_grad=True)
    getattr(shendu, op)(t, dim=dim if dim is not None else ()).sum().backward()
    assert t.grad.data.sum() == pytest.approx(np.size(want))
