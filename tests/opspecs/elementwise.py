"""Registry entries for shendu/ops/elementwise.py."""

import numpy as np

from shendu.errors import DTypeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, distinct, idx, mask, pos, r

# Shapes that exercise broadcasting both ways, a scalar, and batch 1.
_BIN = [
    Sample((r(3, 4), r(3, 4)), desc="same"),
    Sample((r(2, 3, 4), r(4)), desc="bcast_trailing"),
    Sample((r(3, 1), r(1, 5)), desc="bcast_outer"),
    Sample((r(1, 4), r(2, 3, 1)), desc="bcast_both"),
    Sample((r(4), 1.5), desc="scalar"),
]
_BIN_ERR = [ErrorCase((r(2, 3), r(4)), exc=ShapeError, match=r"\(2, 3\) and \(4,\) cannot be broadcast")]


def _unary(name, sample_fn=r, **kw):
    return OpSpec(name, lambda m, x, _n=name: getattr(m, _n)(x),
                  [Sample((sample_fn(3, 4),), desc="2d"), Sample((sample_fn(5),), desc="1d"),
                   Sample((sample_fn(1, 2, 3),), desc="3d")], **kw)


SPECS = [
    OpSpec("add", lambda m, a, b: m.add(a, b), _BIN, errors=_BIN_ERR),
    OpSpec("add_alpha", lambda m, a, b: m.add(a, b, alpha=2.5), _BIN[:3]),
    OpSpec("sub", lambda m, a, b: m.sub(a, b), _BIN, errors=[
        ErrorCase((r(2, 3), r(3, 2)), exc=ShapeError, match="sub: shapes")]),
    OpSpec("rsub_scalar", lambda m, a: 3.0 - a, [Sample((r(3, 4),))]),
    OpSpec("mul", lambda m, a, b: m.mul(a, b), _BIN, errors=_BIN_ERR[:0] + [
        ErrorCase((r(5), r(4)), exc=ShapeError, match="mul")]),
    OpSpec("div", lambda m, a, b: m.div(a, b),
           [Sample((r(3, 4), pos(3, 4))), Sample((r(2, 3, 4), pos(4)), desc="bcast"),
            Sample((r(4), 2.0), desc="scalar"), Sample((pos(3), pos(2, 1)), desc="bcast2")],
           errors=[ErrorCase((r(2), r(3)), exc=ShapeError, match="div")]),
    OpSpec("rdiv_scalar", lambda m, a: 2.0 / a, [Sample((pos(3, 4),))]),
    OpSpec("div_int", lambda m, a, b: m.div(a, b), [Sample((idx(10, 5), 4), desc="int")],
           differentiable=False),
    OpSpec("remainder", lambda m, a, b: m.remainder(a, b),
           [Sample((r(3, 4) * 3 + 0.05, pos(3, 4)), desc="tt"), Sample((r(6) * 3 + 0.05, 1.7), desc="scalar")],
           gradcheck=False),  # kinks where a/b is an integer; checked against torch instead
    OpSpec("neg", lambda m, x: m.neg(x), [Sample((r(3, 4),)), Sample((r(2),))]),
    OpSpec("pow_scalar", lambda m, x: m.pow(x, 3), [Sample((r(3, 4),)), Sample((r(5),))]),
    OpSpec("pow_square", lambda m, x: x ** 2, [Sample((r(3, 4),))]),
    OpSpec("pow_frac", lambda m, x: m.pow(x, 0.5), [Sample((pos(3, 4),))]),
    OpSpec("pow_tensor", lambda m, a, b: m.pow(a, b),
           [Sample((pos(3, 4), r(3, 4))), Sample((pos(2, 3), r(3)), desc="bcast")]),
    OpSpec("rpow_scalar", lambda m, x: 2.0 ** x, [Sample((r(3, 4),))]),
    _unary("exp"),
    _unary("log", pos, errors=[]),
    _unary("log1p", pos),
    _unary("log2", pos),
    _unary("log10", pos),
    _unary("expm1"),
    _unary("sqrt", pos),
    _unary("rsqrt", pos),
    _unary("abs", lambda *s: distinct(*s) + 0.05),
    _unary("reciprocal", pos),
    _unary("square"),
    _unary("sin"),
    _unary("cos"),
    _unary("tan", lambda *s: r(*s, low=-1.2, high=1.2)),
    _unary("tanh"),
    _unary("sigmoid", lambda *s: r(*s, low=-6, high=6)),
    OpSpec("sign", lambda m, x: m.sign(x), [Sample((distinct(3, 4) + 0.05,))], gradcheck=False),
    OpSpec("floor", lambda m, x: m.floor(x), [Sample((distinct(3, 4) + 0.05,))], gradcheck=False),
    OpSpec("ceil", lambda m, x: m.ceil(x), [Sample((distinct(3, 4) + 0.05,))], gradcheck=False),
    OpSpec("round", lambda m, x: m.round(x), [Sample((distinct(3, 4) + 0.05,))], gradcheck=False),
    OpSpec("trunc", lambda m, x: m.trunc(x), [Sample((distinct(3, 4) + 0.05,))], gradcheck=False),
    OpSpec("clamp", lambda m, x: m.clamp(x, -0.7, 0.9),
           [Sample((distinct(3, 4, spacing=0.23),)), Sample((distinct(7, spacing=0.31),))]),
    OpSpec("clamp_min", lambda m, x: m.clamp(x, min=0.1), [Sample((distinct(3, 4, spacing=0.23),))]),
    OpSpec("clamp_max", lambda m, x: m.clamp(x, max=0.1), [Sample((distinct(3, 4, spacing=0.23),))]),
    OpSpec("clamp_tensor", lambda m, x, lo, hi: m.clamp(x, lo, hi),
           [Sample((distinct(3, 4, spacing=0.23), distinct(3, 4, spacing=0.17) - 0.8,
                    distinct(4, spacing=0.13) + 0.83))],
           errors=[ErrorCase((r(3), None, None), match="at least one")]),
    OpSpec("clip", lambda m, x: m.clip(x, -0.5, 0.5), [Sample((distinct(3, 4, spacing=0.23),))]),
    OpSpec("maximum", lambda m, a, b: m.maximum(a, b),
           [Sample((distinct(3, 4), distinct(3, 4) + 0.03)), Sample((distinct(2, 3), distinct(3) + 0.02),
                                                                    desc="bcast")]),
    OpSpec("minimum", lambda m, a, b: m.minimum(a, b),
           [Sample((distinct(3, 4), distinct(3, 4) + 0.03)), Sample((distinct(2, 3), distinct(3) + 0.02),
                                                                    desc="bcast")]),
    OpSpec("where", lambda m, c, a, b: m.where(c, a, b),
           [Sample((mask(3, 4), r(3, 4), r(3, 4))), Sample((mask(3, 1), r(4), r(3, 4)), desc="bcast")],
           errors=[ErrorCase((r(3), r(3), r(3)), exc=DTypeError, match="condition must be a bool")]),
    OpSpec("where_scalar", lambda m, c, a: m.where(c, a, 0.0), [Sample((mask(3, 4), r(3, 4)))]),
]

_cmp_samples = [Sample((distinct(3, 4), distinct(3, 4))), Sample((distinct(2, 3), 0.05), desc="scalar"),
                Sample((idx(5, 6), idx(5, 6)), desc="int")]
for _name in ["eq", "ne", "lt", "le", "gt", "ge"]:
    SPECS.append(OpSpec(_name, lambda m, a, b, _n=_name: getattr(m, _n)(a, b), _cmp_samples,
                        differentiable=False,
                        errors=[ErrorCase((r(2, 3), r(2)), exc=ShapeError, match=f"{_name}: shapes")]))
_cmp_samples_eq = [Sample((np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0])), desc="ties")]
SPECS.append(OpSpec("eq_ties", lambda m, a, b: m.eq(a, b), _cmp_samples_eq, differentiable=False))
for _name in ["logical_and", "logical_or", "logical_xor"]:
    SPECS.append(OpSpec(_name, lambda m, a, b, _n=_name: getattr(m, _n)(a, b),
                        [Sample((mask(3, 4), mask(3, 4))), Sample((mask(2, 3), mask(3)), desc="bcast")],
                        differentiable=False))
SPECS.append(OpSpec("logical_not", lambda m, a: m.logical_not(a), [Sample((mask(3, 4),))], differentiable=False))
SPECS.append(OpSpec("isnan", lambda m, a: m.isnan(a), [Sample((np.array([1.0, np.nan, np.inf]),))],
                    differentiable=False))
SPECS.append(OpSpec("isfinite", lambda m, a: m.isfinite(a), [Sample((np.array([1.0, np.nan, -np.inf]),))],
                    differentiable=False))
