"""Behaviour of shendu/ops/indexing.py that the generic registry tests do not cover: views and memory
sharing, in-place writes, gradients torch cannot compute (scatter with an index smaller than src),
unsorted top-k, result types, dtype rules and the integer scatter-add path."""

import numpy as np
import pytest
import torch

import shendu
import shendu.functional as F
from shendu.errors import AutogradError, IndexOutOfRangeError


def test_basic_index_is_a_view_and_writes_reach_the_base():
    x = shendu.arange(12.0).reshape(3, 4)
    y = x[1:, ::2]
    assert np.shares_memory(y.data, x.data)
    y[0, 1] = 100.0  # y[0, 1] is x[1, 2]
    assert x[1, 2].item() == 100.0
    assert not np.shares_memory(x[shendu.tensor([0, 1])].data, x.data)  # advanced indexing copies


def test_full_int_index_gives_0d_tensor():
    x = shendu.arange(6.0).reshape(2, 3)
    y = x[1, 2]
    assert y.shape == () and y.item() == 5.0


def test_list_index_is_one_index_array():
    # torch 2.13 still reads a nested list as a tuple (deprecated); shendu follows NumPy 2 and future torch.
    a = np.arange(24.0).reshape(4, 6)
    got = shendu.from_numpy(a)[[[0, 1], [3, 3]]]
    np.testing.assert_array_equal(got.data, a[np.array([[0, 1], [3, 3]])])


def test_getitem_backward_accumulates_many_repeats():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 7)).astype(np.float32)
    i = rng.integers(0, 50, 400)
    gy = rng.standard_normal((400, 7)).astype(np.float32)
    x = shendu.tensor(a, requires_grad=True)
    x[shendu.from_numpy(i)].backward(shendu.tensor(gy))
    want = np.zeros((50, 7))
    np.add.at(want, i, gy.astype(np.float64))
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.data, want, rtol=1e-5, atol=1e-5)


def test_scatter_src_gradient_when_index_is_smaller_than_src():
    # torch's backward refuses this case, so check against the definition: d out / d src is 1 at the
    # positions index covers, 0 for the rest of src.
    x = shendu.tensor(np.zeros((3, 5)), requires_grad=True)
    src = shendu.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    index = shendu.tensor([[4, 0], [1, 2]])
    for op in (F.scatter, F.scatter_add):
        gy = np.arange(15.0).reshape(3, 5) + 1
        gx, gs = shendu.autograd.grad(op(x, 1, index, src), [x, src], shendu.tensor(gy))
        want = np.zeros((3, 4))
        want[:2, :2] = [[gy[0, 4], gy[0, 0]], [gy[1, 1], gy[1, 2]]]
        np.testing.assert_array_equal(gs.data, want)
        assert shendu.autograd.gradcheck(lambda s, _op=op: _op(x.detach(), 1, index, s), (src,))


def test_topk_unsorted_has_the_same_elements():
    rng = np.random.default_rng(1)
    a = rng.permutation(40).reshape(5, 8).astype(np.float64)
    v, i = shendu.topk(shendu.from_numpy(a), 3, dim=1, sorted=False)
    want = -np.sort(-a, axis=1)[:, :3]
    np.testing.assert_array_equal(np.sort(v.data, axis=1)[:, ::-1], want)
    np.testing.assert_array_equal(np.take_along_axis(a, i.data, 1), v.data)


def test_sort_and_topk_results_are_named_tuples():
    x = shendu.tensor([3.0, 1.0, 2.0])
    res = shendu.sort(x)
    values, indices = res
    assert res.values is values and res.indices is indices
    assert indices.dtype == np.int64 and not indices.requires_grad
    assert shendu.topk(x, 2).indices.tolist() == [0, 2]
    assert x.sort(descending=True).values.tolist() == [3.0, 2.0, 1.0]  # Tensor method


def test_sort_nan_like_torch():
    a = np.array([1.0, np.nan, 0.0, -2.0])
    for desc in (False, True):
        v, i = shendu.sort(shendu.from_numpy(a), descending=desc)
        tv, ti = torch.sort(torch.from_numpy(a), descending=desc)
        np.testing.assert_array_equal(v.data, tv.numpy())
        np.testing.assert_array_equal(i.data, ti.numpy())


def test_index_put_in_place_casts_and_returns_input():
    x = shendu.zeros(4, dtype=shendu.int64)
    out = F.index_put_(x, shendu.tensor([1, 3]), 2.9)
    assert out is x and x.dtype == np.int64 and x.tolist() == [0, 2, 0, 2]
    y = shendu.zeros(3)
    y[shendu.tensor([True, False, True])] = shendu.tensor(np.float64(1.5))
    assert y.dtype == np.float32 and y.tolist() == [1.5, 0.0, 1.5]


def test_index_put_accumulate_integer_repeats_exact():
    big = 2 ** 60  # float64 bincount would round this: the integer path must stay exact
    x = shendu.tensor(np.array([big, 0, 0]))
    F.index_put_(x, shendu.tensor([0, 0, 2]), shendu.tensor([1, 2, 5]), accumulate=True)
    assert x.tolist() == [big + 3, 0, 5]
    s = F.scatter_add(shendu.tensor(np.array([big, 0])), 0, shendu.tensor([0, 0]), shendu.tensor([1, 1]))
    assert s.tolist() == [big + 2, 0]


def test_in_place_put_refuses_tensors_that_require_grad():
    w = shendu.ones(3, requires_grad=True)
    with pytest.raises(AutogradError, match="index_put_"):
        F.index_put_(w, 0, 2.0)
    with shendu.no_grad():
        w[0] = 2.0
    assert w.tolist() == [2.0, 1.0, 1.0]


def test_setitem_on_non_leaf_records_the_graph():
    x = shendu.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = shendu.tensor(10.0, requires_grad=True)
    y = x * 2
    y[1] = v
    (y * shendu.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 6.0]
    assert v.grad.item() == 2.0


def test_masked_fill_keeps_dtype():
    x = shendu.tensor([1.0, 2.0])
    m = shendu.tensor([True, False])
    assert F.masked_fill(x, m, shendu.tensor(np.float64(3.0))).dtype == np.float32
    assert F.masked_fill(shendu.tensor([1, 2]), m, 2.7).tolist() == [2, 2]


def test_one_hot_and_nonzero_shapes():
    oh = F.one_hot(shendu.tensor([[1], [0]]), 3)
    assert oh.dtype == np.int64 and oh.shape == (2, 1, 3)
    assert F.nonzero(shendu.tensor(3.0)).shape == (1, 0)
    assert [t.tolist() for t in F.nonzero(shendu.tensor(3.0), as_tuple=True)] == [[0]]


def test_getitem_error_names_dim_index_and_size():
    x = shendu.zeros(2, 3)
    with pytest.raises(IndexOutOfRangeError, match="index -4 is out of range for dim 1 with size 3"):
        x[:, shendu.tensor([0, -4])]
    with pytest.raises(IndexError):  # also the builtin a Python user catches
        x[2]
