"""Registry entries for shendu/ops/reduce.py."""

import numpy as np

from shendu.errors import ArgumentError, DTypeError
from tests.opspecs import ErrorCase, OpSpec, Sample, distinct, idx, mask, r


def _dim_samples(make):
    """The dim variants every reduction runs: full, one dim, negative, tuple, list + keepdim, size-1 dims, 3-d."""
    return [
        Sample((make(3, 4),), desc="full"),
        Sample((make(3, 4),), dict(dim=1), desc="dim1"),
        Sample((make(2, 3, 5),), dict(dim=-1), desc="negdim"),
        Sample((make(2, 3, 5),), dict(dim=(0, 2)), desc="tuple"),
        Sample((make(2, 3, 5),), dict(dim=[-1, 0], keepdim=True), desc="list_keepdim"),
        Sample((make(2, 3, 4),), dict(dim=1, keepdim=True), desc="3d_keepdim"),
        Sample((make(1, 4, 1),), dict(dim=1), desc="batch1"),
        Sample((make(1, 4, 1),), dict(dim=(0, 1), keepdim=True), desc="size1_keepdim"),
        Sample((make(7),), dict(dim=0), desc="1d"),
    ]


def _call(name):
    return lambda m, x, *a, _n=name, **kw: getattr(m, _n)(x, *a, **kw)


def _out_of_range(name, **kw):
    return ErrorCase((r(2, 3),), dict(dim=2, **kw), exc=ArgumentError, match=f"{name}: dim 2 is out of range")


def _repeated(name):
    return ErrorCase((r(2, 3),), dict(dim=(1, -1)), exc=ArgumentError, match=f"{name}: dims .* repeat")


def _with_zeros(*shape, at):
    """Random values with exact zeros at the positions ``at`` (for prod/cumprod gradients)."""
    x = r(*shape)
    for p in at:
        x[p] = 0.0
    return x


def _prod_over(torch_x, dim=None, keepdim=False):
    """torch.prod takes one dim: reduce a tuple one dim at a time (highest first) as the reference."""
    if dim is None or isinstance(dim, int):
        return torch_x.prod() if dim is None else torch_x.prod(dim, keepdim=keepdim)
    for d in sorted((d % torch_x.ndim for d in dim), reverse=True):
        torch_x = torch_x.prod(d, keepdim=keepdim)
    return torch_x


# Ties: the full max and amax/amin split the gradient evenly between equal elements (as torch).
_TIES = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
_ABS_TIES = np.array([[1.0, -3.0, 3.0], [2.0, -2.0, 0.5]])

SPECS = [
    OpSpec("sum", _call("sum"), _dim_samples(r) + [Sample((r(),), desc="0d")],
           errors=[_out_of_range("sum"), _repeated("sum"),
                   ErrorCase((r(2, 3),), dict(dim=1.0), exc=ArgumentError, match="sum: dim must be an int")]),
    OpSpec("sum_int", _call("sum"), [Sample((idx(5, 3, 4),), desc="full"), Sample((idx(5, 3, 4),), dict(dim=1)),
                                     Sample((mask(3, 4),), dict(dim=0), desc="bool")], differentiable=False),
    OpSpec("mean", _call("mean"), _dim_samples(r),
           errors=[_out_of_range("mean"),
                   ErrorCase((idx(5, 3, 4),), exc=DTypeError, match="mean: could not infer the output dtype")]),
    OpSpec("prod", _call("prod"),
           [Sample((r(3, 4),), desc="full"), Sample((r(3, 4),), dict(dim=1), desc="dim1"),
            Sample((r(2, 3, 4),), dict(dim=-2, keepdim=True), desc="negdim_keepdim"),
            Sample((r(1, 5),), dict(dim=0), desc="batch1"),
            Sample((_with_zeros(3, 4, at=[(0, 1), (2, 0), (2, 3)]),), dict(dim=1), desc="zeros_dim"),
            Sample((_with_zeros(2, 3, at=[(1, 1)]),), desc="one_zero_full"),
            Sample((_with_zeros(2, 3, at=[(0, 2), (1, 1)]),), desc="two_zeros_full"),
            Sample((_with_zeros(4, 3, at=[(0, 0), (3, 2)]),), dict(dim=0), desc="zeros_dim0")],
           errors=[_out_of_range("prod")]),
    OpSpec("prod_tuple", _call("prod"),
           [Sample((r(2, 3, 4),), dict(dim=(0, 2)), desc="tuple"),
            Sample((_with_zeros(2, 3, 2, at=[(1, 0, 1)]),), dict(dim=(-1, 0), keepdim=True), desc="zero_keepdim")],
           torch_op=lambda m, x, **kw: _prod_over(x, **kw)),
    OpSpec("prod_int", _call("prod"), [Sample((idx(4, 3, 4) + 1,), dict(dim=1))], differentiable=False),
    OpSpec("max", _call("max"),
           [Sample((distinct(3, 4),), desc="full"), Sample((distinct(2, 3, 5),), desc="3d"),
            Sample((_TIES,), desc="ties")]),
    OpSpec("max_dim", _call("max"),
           [Sample((distinct(3, 4), 1), desc="dim1"), Sample((distinct(2, 3, 5), -1), dict(keepdim=True),
                                                            desc="negdim_keepdim"),
            Sample((distinct(2, 3, 4),), dict(dim=0), desc="3d_dim0"), Sample((distinct(1, 6), 0), desc="batch1"),
            Sample((distinct(6),), dict(dim=0), desc="1d")],
           errors=[_out_of_range("max"),
                   ErrorCase((r(2, 3),), dict(dim=(0, 1)), exc=ArgumentError, match="max: dim must be a single int"),
                   ErrorCase((r(0, 3),), exc=ArgumentError, match="max: cannot reduce over an empty dimension")]),
    OpSpec("max_binary", lambda m, a, b: m.max(a, b), [Sample((distinct(3, 4), distinct(3, 4) + 0.03))]),
    OpSpec("min", _call("min"),
           [Sample((distinct(3, 4),), desc="full"), Sample((distinct(2, 3, 5),), desc="3d"),
            Sample((_TIES,), desc="ties")]),
    OpSpec("min_dim", _call("min"),
           [Sample((distinct(3, 4), 1), desc="dim1"), Sample((distinct(2, 3, 5), -1), dict(keepdim=True),
                                                            desc="negdim_keepdim"),
            Sample((distinct(2, 3, 4),), dict(dim=0), desc="3d_dim0"), Sample((distinct(1, 6), 0), desc="batch1")],
           errors=[_out_of_range("min")]),
    OpSpec("amax", _call("amax"),
           _dim_samples(distinct) + [Sample((_TIES,), desc="ties_full"), Sample((_TIES,), dict(dim=1), desc="ties_dim"),
                                     Sample((_TIES[None],), dict(dim=(0, 2), keepdim=True), desc="ties_tuple")],
           errors=[_out_of_range("amax"), _repeated("amax"),
                   ErrorCase((r(2, 0),), dict(dim=1), exc=ArgumentError, match="amax: cannot reduce over an empty")]),
    OpSpec("amin", _call("amin"),
           _dim_samples(distinct) + [Sample((_TIES,), desc="ties_full"),
                                     Sample((_TIES,), dict(dim=0), desc="ties_dim")],
           errors=[_out_of_range("amin")]),
    OpSpec("var", _call("var"),
           _dim_samples(r) + [Sample((r(3, 5),), dict(dim=1, correction=0), desc="correction0"),
                              Sample((r(3, 5),), dict(dim=0, unbiased=False), desc="unbiased_false"),
                              Sample((r(4, 5),), dict(dim=(0, 1), correction=2, keepdim=True), desc="correction2"),
                              Sample((r(3, 4), 1, True, True), desc="positional")],
           errors=[_out_of_range("var"),
                   ErrorCase((r(3),), dict(unbiased=True, correction=0), exc=ArgumentError, match="var: give either"),
                   ErrorCase((idx(4, 3),), exc=DTypeError, match="var: expected a floating-point")]),
    OpSpec("var_unbiased_arg", lambda m, x: m.var(x, False), [Sample((r(3, 4),))]),
    OpSpec("std", _call("std"),
           _dim_samples(r) + [Sample((r(3, 5),), dict(dim=1, correction=0), desc="correction0"),
                              Sample((r(3, 5),), dict(dim=0, unbiased=False, keepdim=True), desc="unbiased_false")],
           errors=[_out_of_range("std")]),
    OpSpec("std_constant_row", lambda m, x: m.std(x, 1),
           [Sample((np.array([[1.5, 1.5, 1.5], [0.0, 1.0, 3.0]]),), desc="zero_std")]),
    OpSpec("norm", _call("norm"),
           [Sample((r(3, 4),), desc="fro_full"), Sample((r(3, 4),), dict(dim=1), desc="fro_dim1"),
            Sample((r(2, 3, 4),), dict(dim=(0, 2), keepdim=True), desc="fro_tuple_keepdim"),
            Sample((r(2, 3, 4), 2, -1), desc="p2_negdim"),
            Sample((distinct(3, 4) + 0.05, 1), desc="p1_full"),
            Sample((distinct(2, 3, 5) + 0.05, 1, (0, 2)), desc="p1_tuple"),
            Sample((distinct(3, 5) + 0.05, 3, 1), desc="p3"),
            Sample((distinct(3, 5) + 0.05, 1.5, 1), desc="p1.5"),
            Sample((distinct(3, 5) + 0.05, 0.5, 0), desc="p0.5"),
            Sample((distinct(3, 5) + 0.05, -1.0, 1), desc="p-1"),
            Sample((distinct(3, 5) + 0.05, float("inf"), 1), desc="inf"),
            Sample((distinct(2, 3, 4) + 0.05, float("-inf")), dict(dim=(1, 2)), desc="-inf_tuple"),
            Sample((distinct(3, 4) + 0.05, 0, 1), desc="p0"),
            Sample((_ABS_TIES, float("inf"), 1), desc="inf_ties"),
            Sample((np.array([[0.0, 0.0, 0.0], [1.0, 2.0, -2.0]]),), dict(dim=1), desc="zero_row")],
           errors=[ErrorCase((r(3, 4), "nuc"), exc=ArgumentError, match="norm: p='nuc' is not supported"),
                   ErrorCase((idx(4, 3),), exc=DTypeError, match="norm: expected a floating-point"),
                   _out_of_range("norm")]),
    OpSpec("logsumexp", _call("logsumexp"),
           [Sample((r(3, 4), 1), desc="dim1"), Sample((r(2, 3, 5), -1), dict(keepdim=True), desc="negdim_keepdim"),
            Sample((r(2, 3, 5), (0, 2)), desc="tuple"), Sample((r(1, 4, 1), 0), desc="batch1"),
            Sample((r(3, 4) * 30 + 500, 0), desc="large")],
           errors=[_out_of_range("logsumexp")]),
    OpSpec("argmax", _call("argmax"),
           [Sample((distinct(3, 4),), desc="flat"), Sample((distinct(3, 4),), dict(dim=1), desc="dim1"),
            Sample((distinct(2, 3, 5),), dict(dim=-1, keepdim=True), desc="negdim_keepdim"),
            Sample((distinct(2, 3, 4),), dict(keepdim=True), desc="flat_keepdim"),
            Sample((_TIES,), dict(dim=1), desc="ties_first")], differentiable=False,
           errors=[_out_of_range("argmax")]),
    OpSpec("argmin", _call("argmin"),
           [Sample((distinct(3, 4),), desc="flat"), Sample((distinct(3, 4),), dict(dim=0), desc="dim0"),
            Sample((distinct(2, 3, 5),), dict(dim=-2, keepdim=True), desc="negdim_keepdim"),
            Sample((_TIES,), dict(dim=0), desc="ties_first")], differentiable=False,
           errors=[_out_of_range("argmin")]),
    OpSpec("cumsum", _call("cumsum"),
           [Sample((r(3, 4), 1), desc="dim1"), Sample((r(3, 4), 0), desc="dim0"),
            Sample((r(2, 3, 4),), dict(dim=-2), desc="negdim"), Sample((r(1, 5), 1), desc="batch1"),
            Sample((r(6), 0), desc="1d")],
           errors=[_out_of_range("cumsum"),
                   ErrorCase((r(2, 3), (0, 1)), exc=ArgumentError, match="cumsum: dim must be a single int")]),
    OpSpec("cumsum_int", _call("cumsum"), [Sample((idx(5, 3, 4), 1)), Sample((mask(2, 5), 1), desc="bool")],
           differentiable=False),
    OpSpec("cumprod", _call("cumprod"),
           [Sample((r(3, 4), 1), desc="dim1"), Sample((r(2, 3, 4),), dict(dim=-2), desc="negdim"),
            Sample((r(1, 5), 0), desc="batch1"),
            Sample((_with_zeros(4, 5, at=[(0, 2), (1, 0), (2, 4), (3, 1), (3, 3)]), 1), desc="zeros"),
            Sample((_with_zeros(5, 3, at=[(1, 0), (2, 0), (4, 2)]), 0), desc="zeros_dim0")],
           errors=[_out_of_range("cumprod")]),
    OpSpec("all", _call("all"),
           [Sample((mask(3, 4, p=0.8),), desc="full"), Sample((mask(3, 4, p=0.8),), dict(dim=1), desc="dim1"),
            Sample((mask(2, 3, 4, p=0.8),), dict(dim=(0, 2), keepdim=True), desc="tuple_keepdim"),
            Sample((np.array([[1.0, 0.0], [2.0, 3.0]]),), dict(dim=-1), desc="float")],
           differentiable=False, errors=[_out_of_range("all")]),
    OpSpec("any", _call("any"),
           [Sample((mask(3, 4, p=0.2),), desc="full"), Sample((mask(3, 4, p=0.2),), dict(dim=0), desc="dim0"),
            Sample((mask(2, 3, 4, p=0.2),), dict(dim=(-1, 0)), desc="tuple"),
            Sample((idx(2, 3, 4),), dict(dim=1, keepdim=True), desc="int")],
           differentiable=False, errors=[_out_of_range("any")]),
]
