"""Registry entries for shendu/ops/dropout.py.

The deterministic cases are registered here: ``p=0`` (exactly the identity, like torch) and
``training=False``. The random behaviour (mask statistics, scaling, the same mask in backward,
seeding, DropConnect dropping weights) is tested in tests/nn/test_layers.py.
"""

import warnings

import numpy as np

from shendu.errors import ArgumentError, DTypeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, idx, r


def _F(m):
    return m.nn.functional


def _dropconnect_ref(x, w, b, p=0.5, training=True):
    """float64 reference of DropConnect when no weight is dropped: the plain linear map."""
    assert p == 0.0 or not training
    out = np.zeros(x.shape[:-1] + (w.shape[0],), dtype=np.float64)
    for o in range(w.shape[0]):  # plain loop over output features
        out[..., o] = (x.astype(np.float64) * w[o]).sum(-1) + b[o]
    return out.astype(x.dtype)


def _torch_dropout2d_quiet(m, x):
    with warnings.catch_warnings():  # torch warns that 3-D input means (N, C, L); so does shendu's doc
        warnings.simplefilter("ignore")
        return _F(m).dropout2d(x, p=0.0)


_DENSE = [Sample((r(3, 4),), desc="2d"), Sample((r(2, 3, 5),), desc="3d"), Sample((r(7),), desc="1d")]
_MAPS4 = [Sample((r(2, 3, 4, 5),), desc="nchw"), Sample((r(1, 2, 3, 3),), desc="batch1")]
_MAPS3 = [Sample((r(2, 3, 5),), desc="ncl")]

SPECS = [
    OpSpec("dropout_p0", lambda m, x, p=0.0: _F(m).dropout(x, p=p), _DENSE, errors=[
        ErrorCase((r(3),), {"p": 1.5}, exc=ArgumentError, match="between 0 and 1, but got 1.5"),
        ErrorCase((r(3),), {"p": -0.1}, exc=ArgumentError, match="between 0 and 1"),
        ErrorCase((idx(3, 4),), exc=DTypeError, match="dropout: expected a floating-point input"),
    ]),
    OpSpec("dropout_eval", lambda m, x: _F(m).dropout(x, p=0.5, training=False), _DENSE),
    OpSpec("dropout2d_p0", lambda m, x: _F(m).dropout2d(x, p=0.0), _MAPS4 + _MAPS3, errors=[
        ErrorCase((r(3, 4),), exc=ShapeError, match=r"dropout2d: expected a 4-D .* got shape \(3, 4\)"),
    ], torch_op=_torch_dropout2d_quiet),
    OpSpec("dropout2d_eval", lambda m, x: _F(m).dropout2d(x, p=0.3, training=False), _MAPS4),
    OpSpec("dropout1d_eval", lambda m, x: _F(m).dropout1d(x, p=0.3, training=False), _MAPS3 + [
        Sample((r(3, 5),), desc="cl")]),
    OpSpec("alpha_dropout_eval", lambda m, x: _F(m).alpha_dropout(x, p=0.2, training=False), _DENSE[:2]),
    OpSpec("dropconnect_linear_p0",
           lambda m, x, w, b, p=0.0: _F(m).dropconnect_linear(x, w, b, p=p, training=True),
           [Sample((r(5, 4), r(3, 4), r(3)), desc="2d"), Sample((r(2, 3, 4), r(2, 4), r(2)), desc="3d")],
           ref=lambda x, w, b: _dropconnect_ref(x, w, b, 0.0, True),
           errors=[ErrorCase((r(5, 4), r(3, 5), r(3)), exc=ShapeError, match="input has 4 features"),
                   ErrorCase((r(5, 4), r(3, 4), r(3)), {"p": 2.0}, exc=ArgumentError, match="between 0 and 1")]),
    OpSpec("dropconnect_linear_eval",
           lambda m, x, w, b: _F(m).dropconnect_linear(x, w, b, p=0.5, training=False),
           [Sample((r(5, 4), r(3, 4), r(3)), desc="2d")],
           ref=lambda x, w, b: _dropconnect_ref(x, w, b, 0.5, False)),
]
