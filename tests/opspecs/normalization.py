"""Registry entries for shendu/ops/normalization.py.

Batch/instance norm take their running statistics as positional sample arguments (excluded from
``grad``) so both libraries get fresh copies; the generic tests compare outputs and gradients, and
tests/ops/test_normalization.py compares the running statistics after the call.
"""


from shendu.errors import ArgumentError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, pos, r


def _bn(m, x, w, b, rm, rv, **k):
    return m.nn.functional.batch_norm(x, rm, rv, w, b, **k)


def _bn_sample(shape, affine=True, stats=True, desc="", **kw):
    c = shape[1]
    w, b = (pos(c), r(c)) if affine else (None, None)
    rm, rv = (r(c), pos(c)) if stats else (None, None)
    return Sample((r(*shape), w, b, rm, rv), kw, grad=(0, 1, 2) if affine else (0,), desc=desc)


def _in(m, x, w, b, rm, rv, **k):
    return m.nn.functional.instance_norm(x, rm, rv, w, b, **k)


def _gn(m, x, groups, w=None, b=None, **k):
    return m.nn.functional.group_norm(x, groups, w, b, **k)


def _ln(m, x, shape, w=None, b=None, **k):
    return m.nn.functional.layer_norm(x, shape, w, b, **k)


def _lrn(m, x, **k):
    return m.nn.functional.local_response_norm(x, **k)


SPECS = [
    OpSpec("batch_norm_train", _bn, [
        _bn_sample((3, 4, 5, 6), training=True, desc="4d"),
        _bn_sample((5, 3), training=True, desc="NC"),
        _bn_sample((4, 3, 7), training=True, desc="NCL"),
        _bn_sample((1, 3, 4, 5), training=True, desc="batch1"),
        _bn_sample((2, 3, 1, 1), training=True, desc="1x1-spatial"),
        _bn_sample((3, 2, 3, 4), training=True, momentum=0.3, eps=1e-3, desc="momentum-eps"),
        _bn_sample((4, 3, 2, 3), affine=False, training=True, desc="no-affine"),
        _bn_sample((4, 3, 2, 3), stats=False, training=True, desc="no-running-stats"),
    ], errors=[
        ErrorCase((r(2, 3, 4), None, None, r(4), pos(4)), {"training": True}, ShapeError, "num_features"),
        ErrorCase((r(2, 3), pos(5), None, None, None), {"training": True}, ShapeError, "weight has shape"),
        ErrorCase((r(1, 3), None, None, r(3), pos(3)), {"training": True}, ArgumentError,
                  "more than 1 value per channel"),
        ErrorCase((r(1, 3, 1, 1), None, None, None, None), {"training": True}, ArgumentError,
                  "more than 1 value per channel"),
        ErrorCase((r(3), None, None, None, None), {"training": True}, ShapeError, "at least 2 dimensions"),
        ErrorCase((r(2, 3), None, None, None, None), {"training": False}, ArgumentError, "required"),
    ]),
    OpSpec("batch_norm_eval", _bn, [
        _bn_sample((3, 4, 5, 6), desc="4d"),
        _bn_sample((5, 3), desc="NC"),
        _bn_sample((1, 3, 7), desc="NCL-batch1"),
        _bn_sample((2, 3, 2, 3), affine=False, desc="no-affine"),
    ]),
    OpSpec("instance_norm", _in, [
        Sample((r(2, 3, 5, 4), None, None, None, None), grad=(0,), desc="default"),
        Sample((r(2, 3, 5, 4), pos(3), r(3), None, None), grad=(0, 1, 2), desc="affine"),
        Sample((r(3, 2, 7), pos(2), r(2), r(2), pos(2)), grad=(0, 1, 2), desc="NCL-running-stats"),
        Sample((r(1, 3, 4, 4), pos(3), r(3), r(3), pos(3)), {"use_input_stats": False}, grad=(0, 1, 2),
               desc="use-running-stats"),
    ], errors=[
        ErrorCase((r(2, 3), None, None, None, None), {}, ShapeError, "spatial"),
        ErrorCase((r(2, 3, 1), None, None, None, None), {}, ArgumentError, "more than 1 spatial element"),
        ErrorCase((r(2, 3, 4), pos(4), None, None, None), {}, ShapeError, "num_features"),
    ]),
    OpSpec("group_norm", _gn, [
        Sample((r(2, 6, 3, 4), 1, pos(6), r(6)), grad=(0, 2, 3), desc="G1"),
        Sample((r(2, 6, 3, 4), 2, pos(6), r(6)), grad=(0, 2, 3), desc="G2"),
        Sample((r(2, 6, 3, 4), 3, pos(6), r(6)), grad=(0, 2, 3), desc="G3"),
        Sample((r(2, 6, 3, 4), 6, pos(6), r(6)), grad=(0, 2, 3), desc="G=C"),
        Sample((r(1, 4, 5), 2), grad=(0,), desc="NCL-batch1-no-affine"),
        Sample((r(3, 8), 2, pos(8), r(8)), grad=(0, 2, 3), desc="NC"),
        Sample((r(2, 4, 3, 3), 2, pos(4), r(4)), {"eps": 1e-2}, grad=(0, 2, 3), desc="eps"),
    ], errors=[
        ErrorCase((r(2, 6, 3), 4), {}, ArgumentError, "num_groups=4 must be a positive divisor"),
        ErrorCase((r(2, 6, 3), 0), {}, ArgumentError, "num_groups"),
        ErrorCase((r(2, 6, 3), 3, pos(3)), {}, ShapeError, "weight has shape"),
    ]),
    OpSpec("layer_norm", _ln, [
        Sample((r(3, 5), (5,), pos(5), r(5)), grad=(0, 2, 3), desc="last-dim"),
        Sample((r(2, 3, 4), (3, 4), pos(3, 4), r(3, 4)), grad=(0, 2, 3), desc="two-dims"),
        Sample((r(2, 3, 4), (2, 3, 4), pos(2, 3, 4), r(2, 3, 4)), grad=(0, 2, 3), desc="all-dims"),
        Sample((r(1, 7), [7]), grad=(0,), desc="batch1-no-affine"),
        Sample((r(2, 3, 2, 5), (5,), pos(5)), grad=(0, 2), desc="4d-weight-only"),
        Sample((r(4, 6), (6,), pos(6), r(6)), {"eps": 1e-3}, grad=(0, 2, 3), desc="eps"),
    ], errors=[
        ErrorCase((r(2, 5), (4,)), {}, ShapeError, "normalized_shape"),
        ErrorCase((r(2, 3, 4), (3,)), {}, ShapeError, "trailing dimensions"),
        ErrorCase((r(2, 5), (5,), pos(4)), {}, ShapeError, "weight has shape"),
    ]),
    OpSpec("local_response_norm", _lrn, [
        Sample((r(2, 7, 3, 4),), {"size": 5}, desc="size5"),
        Sample((r(2, 6, 5),), {"size": 2, "alpha": 0.1, "beta": 0.5, "k": 2.0}, desc="NCL-even-size"),
        Sample((r(1, 4, 3, 3),), {"size": 1, "alpha": 0.5}, desc="size1"),
        Sample((r(2, 4, 2, 3),), {"size": 9, "alpha": 0.3, "beta": 1.2}, desc="size>C"),
        Sample((r(2, 5, 3, 3) * 3,), {"size": 3, "alpha": 5e-1, "beta": 0.75, "k": 2.0}, desc="strong"),
    ], errors=[
        ErrorCase((r(2, 5),), {"size": 3}, ShapeError, "at least 3 dimensions"),
        ErrorCase((r(2, 5, 3),), {"size": 0}, ArgumentError, "size must be a positive integer"),
    ]),
]
