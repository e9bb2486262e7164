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


# ------------------------------------------------------------------------------- seeded random masks
# A random op becomes deterministic when every call gets a fresh generator with a fixed seed. The
# references draw the same uniforms independently (shendu.Generator(seed) is NumPy's PCG64(seed);
# the masks are drawn in the input's float dtype) and apply the documented rule: keep where u >= p.
def _keep_scaled(shape, p, seed, dtype):
    dtype = np.dtype(dtype)
    u = np.random.Generator(np.random.PCG64(seed)).random(shape, dtype=np.float32 if dtype == np.float32
                                                           else np.float64)
    return ((u >= p) / (1.0 - p)).astype(dtype)


def _stochastic_depth_ref(x, p, mode, training=True, seed=None):
    """float64 loop: each sample (row) or the whole batch is kept and scaled by 1/(1-p), or zeroed."""
    if not training or p == 0.0:
        return x.copy()
    if p == 1.0:
        return np.zeros_like(x)
    keep = _keep_scaled((x.shape[0] if mode == "row" else 1,), p, seed, x.dtype)
    out = np.empty(x.shape, np.float64)
    for n in range(x.shape[0]):  # plain loop over samples
        out[n] = x[n].astype(np.float64) * float(keep[n if mode == "row" else 0])
    return out.astype(x.dtype)


def _sd(p, mode, training=True, seed=None):
    def op(m, x, **override):  # error cases override the arguments
        kw = {"p": p, "mode": mode, "training": training, **override}
        return _F(m).stochastic_depth(x, generator=None if seed is None else m.Generator(seed), **kw)
    return op


_SD_MAPS = [Sample((r(6, 3, 4, 5),), desc="nchw"), Sample((r(1, 2, 3),), desc="batch1"),
            Sample((r(7, 4),), desc="rows")]
_SD_ERRORS = [
    ErrorCase((r(3, 2),), {"p": 1.5, "mode": "row"}, exc=ArgumentError, match="between 0 and 1, but got 1.5"),
    ErrorCase((r(3, 2),), {"p": 0.2, "mode": "col"}, exc=ArgumentError, match="either 'batch' or 'row'"),
    ErrorCase((idx(3, 4),), {"p": 0.2, "mode": "row"}, exc=DTypeError, match="stochastic_depth: expected a float"),
    ErrorCase((np.array(1.0),), {"p": 0.2, "mode": "row"}, exc=ShapeError, match="needs a batch dimension"),
]
# seed 3 keeps some rows and drops others of the 6- and 7-row samples, in float32 and float64
_SD_SEED = 3

SPECS += [
    OpSpec("stochastic_depth_eval", _sd(0.5, "row", training=False), _SD_MAPS,
           ref=lambda x: _stochastic_depth_ref(x, 0.5, "row", training=False),
           errors=_SD_ERRORS),
    OpSpec("stochastic_depth_p0", _sd(0.0, "batch"), _SD_MAPS[:1],
           ref=lambda x: _stochastic_depth_ref(x, 0.0, "batch")),
    OpSpec("stochastic_depth_p1", _sd(1.0, "row"), _SD_MAPS[:1], ref=lambda x: _stochastic_depth_ref(x, 1.0, "row")),
    OpSpec("stochastic_depth_row_seeded", _sd(0.5, "row", seed=_SD_SEED), _SD_MAPS,
           ref=lambda x: _stochastic_depth_ref(x, 0.5, "row", seed=_SD_SEED)),
    OpSpec("stochastic_depth_batch_seeded", _sd(0.3, "batch", seed=0), _SD_MAPS[:1],  # seed 0 keeps the batch
           ref=lambda x: _stochastic_depth_ref(x, 0.3, "batch", seed=0)),
]


def _dropconnect_conv(p, training=True, seed=None, **conv):
    def op(m, x, w, b):
        gen = None if seed is None else m.Generator(seed)
        return _F(m).dropconnect_conv2d(x, w, b, p=p, training=training, generator=gen, **conv)

    def torch_op(m, x, w, b):  # torch's conv2d with the same mask applied to the weight
        if training and p > 0.0:
            w = w * m.from_numpy(_keep_scaled(tuple(w.shape), p, seed, str(w.dtype).removeprefix("torch.")))
        return _F(m).conv2d(x, w, b, **conv)
    return op, torch_op


def _dc_spec(name, p, training=True, seed=None, errors=(), **conv):
    op, torch_op = _dropconnect_conv(p, training, seed, **conv)
    return OpSpec(name, op, _DC_SAMPLES if not conv.get("groups") else _DC_GROUPED, torch_op=torch_op,
                  errors=list(errors))


_DC_SAMPLES = [Sample((r(2, 3, 7, 6), r(4, 3, 3, 3), r(4)), desc="nchw"),
               Sample((r(1, 2, 5, 5), r(3, 2, 2, 3), r(3)), desc="batch1")]
_DC_GROUPED = [Sample((r(2, 4, 6, 5), r(6, 2, 3, 3), r(6)), desc="groups2")]
_DC_ERRORS = [
    ErrorCase((r(1, 3, 5, 5), r(2, 4, 3, 3), r(2)), exc=ShapeError, match="dropconnect_conv2d: input has 3 channels"),
    ErrorCase((r(1, 3, 5, 5), r(2, 3, 3, 3), r(2)), {"p": -0.5}, exc=ArgumentError, match="between 0 and 1"),
]

SPECS += [
    OpSpec("dropconnect_conv2d_eval", lambda m, x, w, b, p=0.5: _F(m).dropconnect_conv2d(x, w, b, padding=1, p=p,
                                                                                           training=False),
           _DC_SAMPLES, torch_op=lambda m, x, w, b: _F(m).conv2d(x, w, b, padding=1),
           errors=_DC_ERRORS),
    _dc_spec("dropconnect_conv2d_p0", 0.0, stride=2),
    _dc_spec("dropconnect_conv2d_seeded", 0.5, seed=5, padding=1),
    _dc_spec("dropconnect_conv2d_seeded_strided", 0.3, seed=6, stride=2, padding=(1, 0), dilation=(1, 2)),
    _dc_spec("dropconnect_conv2d_seeded_groups", 0.4, seed=7, groups=2, padding=1),
]
