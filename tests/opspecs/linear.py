"""Registry entries for shendu/ops/linear.py (linear, bilinear, embedding).

Until "linear" is listed in ``tests.opspecs.FAMILIES`` these entries are gathered through
tests/opspecs/dropout.py.
"""

from shendu.errors import DTypeError, IndexOutOfRangeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, idx, r


def _F(m):
    return m.nn.functional  # torch.nn.functional / shendu.nn.functional: same names


_idx_rep = idx(3, 4, 5)  # 5 indices into 3 rows per sample: rows repeat, so gradients accumulate
_idx_pad = idx(6, 2, 3, 2)
_idx_pad[0, 0, 0] = 0  # make sure the padding row is looked up

SPECS = [
    OpSpec("linear", lambda m, x, w, b: _F(m).linear(x, w, b), [
        Sample((r(5, 4), r(3, 4), r(3)), desc="2d"),
        Sample((r(2, 3, 4), r(5, 4), r(5)), desc="3d_input"),
        Sample((r(2, 1, 3, 4), r(2, 4), r(2)), desc="4d_input"),
        Sample((r(4), r(3, 4), r(3)), desc="1d_input"),
        Sample((r(1, 7), r(1, 7), r(1)), desc="batch1_out1"),
    ], errors=[
        ErrorCase((r(5, 4), r(3, 5), r(3)), exc=ShapeError, match=r"linear: input has 4 features.*expects 5"),
        ErrorCase((r(5, 4), r(3, 4), r(4)), exc=ShapeError, match=r"linear: bias has shape \(4,\)"),
        ErrorCase((r(5, 4), r(4), None), exc=ShapeError, match="linear: weight must be 2-D"),
        ErrorCase((idx(3, 5, 4), r(3, 4), None), exc=DTypeError, match="linear: input must be a floating"),
    ]),
    OpSpec("linear_nobias", lambda m, x, w: _F(m).linear(x, w), [
        Sample((r(5, 4), r(3, 4)), desc="2d"),
        Sample((r(2, 3, 4), r(6, 4)), desc="3d_input"),
    ]),
    OpSpec("bilinear", lambda m, a, b, w, bias: _F(m).bilinear(a, b, w, bias), [
        Sample((r(4, 3), r(4, 5), r(2, 3, 5), r(2)), desc="2d"),
        Sample((r(2, 3, 3), r(2, 3, 2), r(4, 3, 2), r(4)), desc="3d"),
        Sample((r(1, 2), r(1, 3), r(1, 2, 3), r(1)), desc="batch1"),
    ], errors=[
        ErrorCase((r(4, 3), r(5, 5), r(2, 3, 5), r(2)), exc=ShapeError, match="bilinear: input1"),
        ErrorCase((r(4, 3), r(4, 4), r(2, 3, 5), r(2)), exc=ShapeError, match="bilinear: inputs have 3 and 4"),
    ]),
    OpSpec("bilinear_nobias", lambda m, a, b, w: _F(m).bilinear(a, b, w), [
        Sample((r(4, 3), r(4, 5), r(2, 3, 5)), desc="2d"),
    ]),
    OpSpec("embedding", lambda m, i, w: _F(m).embedding(i, w), [
        Sample((_idx_rep, r(3, 4)), desc="repeated"),
        Sample((idx(7, 6), r(7, 2)), desc="1d"),
        Sample((idx(4, 1), r(4, 3)), desc="one"),
    ], errors=[
        ErrorCase((r(2, 3), r(4, 3)), exc=DTypeError, match="embedding: indices must be an integer"),
        ErrorCase((idx(9, 5) + 5, r(4, 3)), exc=IndexOutOfRangeError, match="out of range for 4 embeddings"),
    ]),
    OpSpec("embedding_padding_idx", lambda m, i, w: _F(m).embedding(i, w, padding_idx=0), [
        Sample((_idx_pad, r(6, 3)), desc="pad0"),
    ], gradcheck=False),  # the padding row's gradient is 0 by definition, not the true derivative
]
