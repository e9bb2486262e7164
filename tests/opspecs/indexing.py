"""Registry entries for shendu/ops/indexing.py.

Index arrays are passed as sample arguments, so the harness turns them into index tensors for both
libraries. Samples include repeated indices wherever the op allows them (getitem, index_select,
gather, scatter_add, index_put with accumulate) so that gradient accumulation is exercised; scatter
and plain index_put get distinct target positions, since the value written by a repeat is
unspecified. Sort and top-k use distinct values (no ties) except the stable-sort samples.
"""

import numpy as np

from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, _rng, distinct, idx, mask, r


def _distinct_ints(*shape):
    """int64 values without ties: torch.sort is not stable, so tied indices may come in any order."""
    return _rng.permutation(100)[: int(np.prod(shape))].reshape(shape).astype(np.int64)


def _distinct_along(size, shape, dim):
    """Integer indices in ``0..size-1`` of ``shape``, never repeating along ``dim`` (a prefix of a
    random permutation at every position of the other dims)."""
    full = list(shape)
    full[dim] = size
    perm = np.argsort(_rng.random(full), axis=dim)
    return np.take(perm, np.arange(shape[dim]), axis=dim).astype(np.int64)


def _setitem(x, index, value):
    """``x[index] = value`` on a non-leaf copy (same code for torch and shendu)."""
    y = x * 1
    y[index] = value
    return y


_I = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
_x345 = r(3, 4, 5)
_mask345 = _x345 > 0
_m3 = np.array([True, False, True])

GETITEM = [
    OpSpec("getitem_slices", lambda m, x: x[1:, ::2],
           [Sample((r(5, 6),), desc="2d"), Sample((r(1, 7),), desc="batch1"), Sample((r(3, 4, 5),), desc="3d")]),
    OpSpec("getitem_int_slice", lambda m, x: x[-1, 2:, 1::3],
           [Sample((r(3, 4, 5),), desc="3d"), Sample((r(1, 3, 7),), desc="batch1")],
           errors=[ErrorCase((r(3, 4),), exc=IndexOutOfRangeError, match="too many indices"),
                   ErrorCase((r(0, 4, 5),), exc=IndexOutOfRangeError,
                             match=r"index -1 is out of range for dim 0 with size 0")]),
    OpSpec("getitem_int", lambda m, x: x[2], [Sample((r(4, 3),)), Sample((r(3),), desc="to_0d")],
           errors=[ErrorCase((r(2, 3),), exc=IndexOutOfRangeError, match="index 2 is out of range for dim 0 "
                                                                         "with size 2")]),
    OpSpec("getitem_none_ellipsis", lambda m, x: x[None, ..., 1, None],
           [Sample((r(3, 4, 5),), desc="3d"), Sample((r(2, 3),), desc="2d")]),
    OpSpec("getitem_ellipsis_slice", lambda m, x: x[..., 1:3], [Sample((r(2, 3, 4),))]),
    OpSpec("getitem_two_ellipses", lambda m, x: x[..., 0, ...], [],
           errors=[ErrorCase((r(2, 3),), exc=IndexOutOfRangeError, match="single ellipsis")]),
    OpSpec("getitem_negative_step", lambda m, x: x[::-1], [],
           errors=[ErrorCase((r(4),), exc=ArgumentError, match="step must be greater than zero")]),
    OpSpec("getitem_int_array", lambda m, x, i: x[i],
           [Sample((r(4, 3), _I(2, 0, 2, 3, 2)), desc="repeats"),
            Sample((r(5, 2, 3), _I(-1, 0, -1)), desc="negative_3d"),
            Sample((r(4, 3), np.array([[0, 1], [1, 1]], dtype=np.int64)), desc="2d_index"),
            Sample((r(1, 3), _I(0, 0)), desc="batch1")],
           errors=[ErrorCase((r(4, 3), _I(0, 4)), exc=IndexOutOfRangeError,
                             match="index 4 is out of range for dim 0 with size 4"),
                   ErrorCase((r(4, 3), np.array([0.0, 1.0])), exc=DTypeError, match="integer or bool")]),
    OpSpec("getitem_two_arrays", lambda m, x, i, j: x[i, :, j],
           [Sample((r(3, 4, 5), _I(2, 0, 2), _I(4, 1, 4)), desc="repeats"),
            Sample((r(3, 4, 5), _I(1, 2)[:, None], _I(0, 3, 3)[None, :]), desc="broadcast")],
           errors=[ErrorCase((r(3, 4, 5), _I(0, 1), _I(0, 1, 2)), exc=ShapeError, match="cannot be broadcast")]),
    OpSpec("getitem_int_then_array", lambda m, x, j: x[0, :, j],  # torch: int applied first -> (4, len(j))
           [Sample((r(3, 4, 5), _I(3, 1, 3)),)]),
    OpSpec("getitem_array_slice", lambda m, x, i: x[1:, i, ::2],
           [Sample((r(3, 4, 5), _I(3, 3, 0)),)]),
    OpSpec("getitem_bool_mask", lambda m, x, mk: x[mk],
           [Sample((_x345, _mask345), desc="full"), Sample((r(3, 4), _m3), desc="leading"),
            Sample((r(1, 4), np.array([True])), desc="batch1")],
           errors=[ErrorCase((r(4, 3), _m3), exc=IndexOutOfRangeError, match=r"mask of shape \(3,\) does not match")]),
    OpSpec("getitem_mask_mixed", lambda m, x, mk: x[1:, mk, 0],
           [Sample((r(3, 4, 5), np.array([True, False, True, True])),)]),
    OpSpec("getitem_mask_and_array", lambda m, x, mk, j: x[mk, j],
           [Sample((r(3, 5), _m3, _I(4, 4)),)]),
]

INDEX_PUT = [
    OpSpec("index_put", lambda m, x, i, v: m.index_put(x, (i,), v),
           [Sample((r(5, 3), _I(3, 0), r(2, 3)), desc="rows"), Sample((r(5, 3), _I(4, 1), r(3)), desc="bcast"),
            Sample((r(1, 3), _I(0), r(1, 3)), desc="batch1")],
           errors=[ErrorCase((r(5, 3), _I(3, 0), r(4)), exc=ShapeError,
                             match=r"value of shape \(4,\) cannot be broadcast to the indexed shape \(2, 3\)")]),
    OpSpec("index_put_2d", lambda m, x, i, j, v: m.index_put(x, (i, j), v),
           [Sample((r(4, 5), _I(0, 3, 1), _I(4, 4, 0), r(3)),)]),
    OpSpec("index_put_accumulate", lambda m, x, i, v: m.index_put(x, (i,), v, accumulate=True),
           [Sample((r(5, 3), _I(3, 0, 3, 3), r(4, 3)), desc="repeats"),
            Sample((r(4, 2, 3), _I(1, 1), r(3)), desc="bcast")]),
    OpSpec("setitem_slice", lambda m, x, v: _setitem(x, (slice(1, None), 0), v),
           [Sample((r(3, 4, 5), r(2, 5)), desc="tensor"), Sample((r(3, 4, 5), r(5)), desc="bcast"),
            Sample((r(3, 4, 5), 2.5), desc="scalar")]),
    OpSpec("setitem_mask", lambda m, x, mk, v: _setitem(x, mk, v),
           [Sample((_x345, _mask345, np.array(0.7)), desc="0d_value"),
            Sample((_x345, _mask345, r(int(_mask345.sum()))), desc="per_element")]),
    OpSpec("setitem_int_array", lambda m, x, j, v: _setitem(x, (0, slice(None), j), v),
           [Sample((r(3, 4, 5), _I(3, 1), r(4, 2)),)]),
]

ALONG = [
    OpSpec("gather", lambda m, x, i: m.gather(x, 1, i),
           [Sample((r(3, 4), idx(4, 3, 6)), desc="repeats_wider"), Sample((r(3, 4), idx(4, 2, 2)), desc="smaller"),
            Sample((r(1, 5), idx(5, 1, 1)), desc="batch1")],
           errors=[ErrorCase((r(3, 4), np.zeros((3, 2))), exc=DTypeError, match="index must be an integer"),
                   ErrorCase((r(3, 4), idx(4, 3)), exc=ShapeError, match=r"index of shape \(3,\) must have as many "
                                                                       r"dimensions as the input of shape \(3, 4\)"),
                   ErrorCase((r(3, 4), idx(4, 4, 2)), exc=ShapeError, match="larger than the input"),
                   ErrorCase((r(3, 4), np.array([[0, 4]])), exc=IndexOutOfRangeError,
                             match="index 4 is out of range for dim 1 with size 4")]),
    OpSpec("gather_3d_negdim", lambda m, x, i: m.gather(x, -3, i),
           [Sample((r(3, 4, 2), idx(3, 5, 4, 2)),)]),
    OpSpec("gather_dim_error", lambda m, x, i: m.gather(x, 2, i), [],
           errors=[ErrorCase((r(3, 4), idx(3, 3, 4)), exc=ArgumentError, match="dim 2 is out of range")]),
    OpSpec("scatter", lambda m, x, i, s: m.scatter(x, 1, i, s),
           [Sample((r(3, 5), _distinct_along(5, (3, 3), 1), r(3, 3)), desc="2d"),
            Sample((r(1, 4), _distinct_along(4, (1, 4), 1), r(1, 4)), desc="batch1_full"),
            Sample((r(3, 5), _distinct_along(5, (2, 3), 1), r(3, 4)), grad=(0,), desc="src_larger")],
           errors=[ErrorCase((r(3, 5), idx(5, 2, 3), r(2, 2)), exc=ShapeError, match="no larger than src")]),
    OpSpec("scatter_3d_negdim", lambda m, x, i, s: m.scatter(x, -2, i, s),
           [Sample((r(2, 4, 3), _distinct_along(4, (2, 3, 3), 1), r(2, 3, 3)),)]),
    OpSpec("scatter_value", lambda m, x, i: m.scatter(x, 0, i, value=2.5),
           [Sample((r(4, 3), idx(4, 2, 3)),)]),
    OpSpec("scatter_src_and_value", lambda m, x, i, s: m.scatter(x, 0, i, s, value=1.0), [],
           errors=[ErrorCase((r(4, 3), idx(4, 2, 3), r(2, 3)), exc=ArgumentError, match="exactly one of src")]),
    OpSpec("scatter_add", lambda m, x, i, s: m.scatter_add(x, 1, i, s),
           [Sample((r(3, 4), idx(4, 3, 6), r(3, 6)), desc="repeats"),
            Sample((r(3, 4, 2), idx(3, 2, 4, 2), r(2, 4, 2)), desc="3d"),
            Sample((r(3, 4), idx(4, 2, 2), r(3, 3)), grad=(0,), desc="src_larger")],
           errors=[ErrorCase((r(3, 4), idx(4, 3, 2).astype(np.float64), r(3, 2)), exc=DTypeError, match="integer")]),
    OpSpec("scatter_add_negdim", lambda m, x, i, s: m.scatter_add(x, -1, i, s),
           [Sample((r(2, 3, 4), idx(4, 2, 3, 7), r(2, 3, 7)),)]),
    OpSpec("index_select", lambda m, x, i: m.index_select(x, 0, i),
           [Sample((r(4, 3), _I(3, 0, 3, 3)), desc="repeats"), Sample((r(1, 5), _I(0, 0)), desc="batch1"),
            Sample((r(4, 3), np.array(2)), desc="0d_index")],
           errors=[ErrorCase((r(4, 3), idx(4, 2, 2)), exc=ShapeError, match="index must be 1-d"),
                   ErrorCase((r(4, 3), _I(-1)), exc=IndexOutOfRangeError, match="index -1 is out of range"),
                   ErrorCase((r(4, 3), np.array([1.0])), exc=DTypeError, match="integer")]),
    OpSpec("index_select_negdim", lambda m, x, i: m.index_select(x, -1, i),
           [Sample((r(2, 3, 5), _I(4, 0, 4)),)]),
]

MASKS = [
    OpSpec("masked_fill", lambda m, x, mk: m.masked_fill(x, mk, -1.5),
           [Sample((r(3, 4), mask(3, 4)), desc="same"), Sample((r(3, 4), mask(3, 1)), desc="bcast_mask"),
            Sample((r(4), mask(3, 1)), desc="bcast_both"), Sample((r(1, 3), mask(1, 3)), desc="batch1")],
           errors=[ErrorCase((r(3, 4), r(3, 4)), exc=DTypeError, match="mask must be a bool"),
                   ErrorCase((r(3, 4), mask(2, 4)), exc=ShapeError, match="cannot be broadcast")]),
    OpSpec("masked_fill_tensor_value", lambda m, x, mk, v: m.masked_fill(x, mk, v),
           [Sample((r(3, 4), mask(3, 4), np.array(0.3)),)],
           errors=[ErrorCase((r(3, 4), mask(3, 4), r(1)), exc=ShapeError, match="0-d tensor")]),
    OpSpec("masked_fill_int", lambda m, x, mk: m.masked_fill(x, mk, 7.9),  # value cast to the input's int dtype
           [Sample((idx(9, 3, 4), mask(3, 4)),)], differentiable=False),
    OpSpec("masked_select", lambda m, x, mk: m.masked_select(x, mk),
           [Sample((r(3, 4), mask(3, 4)), desc="same"), Sample((r(3, 4), mask(4)), desc="bcast_mask"),
            Sample((r(4), mask(3, 1)), desc="bcast_both")],
           errors=[ErrorCase((r(3, 4), idx(2, 3, 4)), exc=DTypeError, match="mask must be a bool")]),
    OpSpec("one_hot", lambda m, t, n: m.one_hot(t, n),
           [Sample((idx(5, 7), 5), desc="1d"), Sample((idx(3, 2, 3), 4), desc="2d"),
            Sample((np.array(1), 3), desc="0d")],
           torch_op=lambda m, t, n: m.nn.functional.one_hot(t, n), differentiable=False,
           errors=[ErrorCase((_I(0, -1), 3), exc=IndexOutOfRangeError, match="non-negative"),
                   ErrorCase((_I(0, 3), 3), exc=IndexOutOfRangeError, match="smaller than num_classes=3"),
                   ErrorCase((np.array([0.0, 1.0]), 3), exc=DTypeError, match="integer tensor"),
                   ErrorCase((np.zeros(0, np.int64), -1), exc=ArgumentError, match="empty")]),
    OpSpec("one_hot_infer", lambda m, t: m.one_hot(t), [Sample((_I(2, 0, 4, 2),))],
           torch_op=lambda m, t: m.nn.functional.one_hot(t), differentiable=False),
    OpSpec("nonzero", lambda m, x: m.nonzero(x),
           [Sample((r(3, 4) * mask(3, 4),), desc="2d"), Sample((mask(2, 3, 2),), desc="bool_3d"),
            Sample((np.zeros(5),), desc="none")], differentiable=False),
    OpSpec("nonzero_tuple", lambda m, x: m.nonzero(x, as_tuple=True),
           [Sample((r(3, 4) * mask(3, 4),),)], differentiable=False),
]

SORTING = [
    OpSpec("sort", lambda m, x: m.sort(x),
           [Sample((distinct(3, 5),), desc="2d"), Sample((distinct(1, 6),), desc="batch1"),
            Sample((distinct(7),), desc="1d")],
           errors=[ErrorCase((np.array(1.0),), exc=ShapeError, match="at least 1 dimension")]),
    OpSpec("sort_desc_3d", lambda m, x: m.sort(x, dim=-2, descending=True), [Sample((distinct(2, 5, 3),))]),
    OpSpec("sort_dim0", lambda m, x: m.sort(x, 0), [Sample((distinct(4, 3),))]),
    OpSpec("sort_stable_ties", lambda m, x: m.sort(x, dim=1, stable=True),
           [Sample((np.array([[2.0, 1.0, 2.0, 1.0, 3.0], [0.5, 0.5, 0.5, -1.0, 0.5]]),))],
           gradcheck=False),  # ties: a perturbation reorders them; backward is checked against torch
    OpSpec("sort_stable_ties_desc", lambda m, x: m.sort(x, dim=1, descending=True, stable=True),
           [Sample((np.array([[2.0, 1.0, 2.0, 1.0, 3.0], [0.5, 0.5, 0.5, -1.0, 0.5]]),))],
           gradcheck=False),  # ties: a perturbation reorders them; backward is checked against torch
    OpSpec("sort_int", lambda m, x: m.sort(x, descending=True), [Sample((_distinct_ints(3, 6),))],
           differentiable=False),
    OpSpec("argsort", lambda m, x: m.argsort(x, dim=0, descending=True),
           [Sample((distinct(4, 3),), desc="2d"), Sample((distinct(5),), desc="1d")], differentiable=False),
    OpSpec("topk", lambda m, x: m.topk(x, 3),
           [Sample((distinct(4, 7),), desc="2d"), Sample((distinct(1, 3),), desc="k_eq_n"),
            Sample((distinct(9),), desc="1d")],
           errors=[ErrorCase((r(2, 2),), exc=ArgumentError, match="k=3 is out of range for dim 1 of size 2")]),
    OpSpec("topk_smallest_dim0", lambda m, x: m.topk(x, 2, dim=0, largest=False), [Sample((distinct(5, 3),))]),
    OpSpec("topk_3d_negdim", lambda m, x: m.topk(x, 1, dim=-2), [Sample((distinct(2, 6, 3),))]),
    OpSpec("topk_k0", lambda m, x: m.topk(x, 0), [Sample((distinct(3, 4),))], differentiable=False),
]

SPECS = GETITEM + INDEX_PUT + ALONG + MASKS + SORTING
