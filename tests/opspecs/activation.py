"""Registry entries for shendu/ops/activation.py."""

import numpy as np

from shendu.errors import ArgumentError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, distinct, r


def _off_kinks(*shape, kinks=(0.0,)):
    """Distinct values in about [-3, 3] kept at least 0.02 away from each kink."""
    x = distinct(*shape, spacing=6.0 / max(int(np.prod(shape)), 1))
    for k in kinks:
        near = np.abs(x - k) < 0.02
        x = np.where(near, k + 0.05 * np.sign(x - k + 1e-9), x)
    return x


def _shapes(fn, kwargs):
    """Odd shapes, batch 1, 1-d and 4-d."""
    return [Sample((fn(3, 5),), kwargs, desc="2d"), Sample((fn(7),), kwargs, desc="1d"),
            Sample((fn(1, 3),), kwargs, desc="batch1"), Sample((fn(2, 3, 2, 3),), kwargs, desc="4d")]


def _act(name, fname, sample_fn=r, kwargs=None, scale=1.0, **kw):
    """``F.<fname>(scale * x, **kwargs)``; scaling spreads the samples over the interesting range."""
    def op(m, x, **k):
        return getattr(m.nn.functional, fname)(x * scale if scale != 1.0 else x, **k)
    return OpSpec(name, op, _shapes(sample_fn, kwargs or {}), **kw)


def _maxout_ref(x, pieces, dim=1):
    """Plain loop: out[..., c, ...] = max_j x[..., c * pieces + j, ...]."""
    xm = np.moveaxis(x, dim, -1)
    channels = xm.shape[-1] // pieces
    out = np.empty(xm.shape[:-1] + (channels,), x.dtype)
    for idx in np.ndindex(*xm.shape[:-1]):
        for c in range(channels):
            out[idx + (c,)] = max(xm[idx + (c * pieces + j,)] for j in range(pieces))
    return np.moveaxis(out, -1, dim)


_BIG = np.array([[1000.0, 1001.0, 999.5], [-1000.0, -1001.0, -999.5]])

SPECS = [
    _act("relu", "relu", _off_kinks),
    _act("relu6", "relu6", lambda *s: _off_kinks(*s, kinks=(0.0, 2.0)), scale=3.0),
    _act("hardtanh", "hardtanh", lambda *s: _off_kinks(*s, kinks=(-0.5, 1.5)),
         {"min_val": -0.5, "max_val": 1.5},
         errors=[ErrorCase((r(3),), {"min_val": 2.0, "max_val": 1.0}, ArgumentError, "must not exceed")]),
    _act("leaky_relu", "leaky_relu", _off_kinks),
    _act("leaky_relu_slope", "leaky_relu", _off_kinks, {"negative_slope": 0.2}),
    _act("elu", "elu", _off_kinks),
    _act("elu_alpha", "elu", _off_kinks, {"alpha": 0.7}),
    _act("elu_far", "elu", r, scale=60.0),  # elu(-100) = -alpha without overflow warnings
    _act("selu", "selu", _off_kinks),
    _act("celu", "celu", _off_kinks, {"alpha": 1.5},
         errors=[ErrorCase((r(3),), {"alpha": 0.0}, ArgumentError, "celu: alpha")]),
    _act("gelu", "gelu"),
    _act("gelu_tanh", "gelu", r, {"approximate": "tanh"},
         errors=[ErrorCase((r(3),), {"approximate": "fast"}, ArgumentError, "'none' or 'tanh'")]),
    _act("silu", "silu"),
    _act("softplus", "softplus"),
    # beta * x crosses the threshold inside the sample: both branches and the switch are covered
    _act("softplus_beta", "softplus", lambda *s: _off_kinks(*s, kinks=(0.625,)), {"beta": 2.0, "threshold": 5.0},
         scale=4.0, errors=[ErrorCase((r(3),), {"beta": 0}, ArgumentError, "beta must not be 0")]),
    # torch's own hardsigmoid backward multiplies by 1/6 rounded to float32 even in float64; the
    # reference is its definition relu6(x + 3) / 6 instead
    _act("hardsigmoid", "hardsigmoid", lambda *s: _off_kinks(*s, kinks=(-1.5, 1.5)), scale=2.0,
         torch_op=lambda m, x: m.nn.functional.relu6(x * 2.0 + 3.0) / 6.0),
    _act("logsigmoid", "logsigmoid", r, scale=30.0),
    OpSpec("softmax", lambda m, x, dim: m.nn.functional.softmax(x, dim=dim),
           [Sample((r(3, 5), 1), desc="dim1"), Sample((r(3, 5), 0), desc="dim0"),
            Sample((r(2, 3, 4), -1), desc="last"), Sample((r(2, 3, 2, 3), 1), desc="nchw"),
            Sample((r(1, 7), 1), desc="batch1"), Sample((_BIG, 1), desc="huge")],
           errors=[ErrorCase((r(3, 4), None), exc=ArgumentError, match="dim is required"),
                   ErrorCase((r(3, 4), 2), exc=ArgumentError, match="softmax: dim 2 is out of range")]),
    OpSpec("log_softmax", lambda m, x, dim: m.nn.functional.log_softmax(x, dim=dim),
           [Sample((r(3, 5), 1), desc="dim1"), Sample((r(3, 5), 0), desc="dim0"),
            Sample((r(2, 3, 4), -1), desc="last"), Sample((r(2, 3, 2, 3), 1), desc="nchw"),
            Sample((r(1, 7), 1), desc="batch1"), Sample((_BIG, 1), desc="huge")],
           errors=[ErrorCase((r(3, 4), None), exc=ArgumentError, match="log_softmax: dim is required")]),
    OpSpec("softmin", lambda m, x, dim: m.nn.functional.softmin(x, dim=dim),
           [Sample((r(3, 5), 1), desc="dim1"), Sample((r(2, 3, 4), 0), desc="dim0")]),
    OpSpec("maxout", lambda m, x, **kw: m.nn.functional.maxout(x, **kw),
           [Sample((distinct(3, 6),), {"pieces": 2}, desc="2d"),
            Sample((distinct(1, 9),), {"pieces": 3}, desc="batch1"),
            Sample((distinct(2, 6, 3, 2),), {"pieces": 3}, desc="nchw"),
            Sample((distinct(2, 3, 8),), {"pieces": 4, "dim": -1}, desc="last"),
            Sample((distinct(5, 4),), {"pieces": 1}, desc="k1")],
           ref=_maxout_ref,
           errors=[ErrorCase((r(3, 5),), {"pieces": 2}, ShapeError, "not a multiple of pieces=2"),
                   ErrorCase((r(3, 4),), {"pieces": 0}, ArgumentError, "positive integer")]),
]
