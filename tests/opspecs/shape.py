"""Registry entries for shendu/ops/shape.py."""

from shendu.errors import ArgumentError, IndexOutOfRangeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, idx, r


def _call(name):
    return lambda m, *a, _n=name, **kw: getattr(m, _n)(*a, **kw)


def _pad(m, x, *a, **kw):
    return m.nn.functional.pad(x, *a, **kw)


def _out_of_range(name, args, dim):
    return ErrorCase(args, exc=ArgumentError, match=f"{name}: dim {dim} is out of range")


SPECS = [
    OpSpec("reshape", _call("reshape"), [
        Sample((r(3, 4), (2, 6)), desc="2d"),
        Sample((r(3, 4), (-1,)), desc="flat"),
        Sample((r(2, 3, 4), (4, -1, 2)), desc="infer"),
        Sample((r(1, 5), (5, 1)), desc="batch1"),
        Sample((r(1), ()), desc="to0d"),
        Sample((r(), (1, 1)), desc="from0d"),
    ], errors=[
        ErrorCase((r(2, 3), (4, 2)), exc=ShapeError,
                  match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into shape \(4, 2\) \(8 elem"),
        ErrorCase((r(2, 3), (4, -1)), exc=ShapeError, match=r"reshape: .*\(4, -1\).*multiple of 4 elements"),
        ErrorCase((r(2, 3), (-1, -1)), exc=ShapeError, match="only one dimension can be -1"),
        ErrorCase((r(2, 3), (-2, 3)), exc=ShapeError, match="invalid size -2"),
        ErrorCase((r(0, 3), (-1, 0)), exc=ShapeError, match="ambiguous"),
        ErrorCase((r(2, 3), (2.0, 3)), exc=ArgumentError, match="shape must be an int or a sequence of ints"),
    ]),
    OpSpec("view", lambda m, x: x.view(3, -1), [Sample((r(2, 6),)), Sample((r(12),), desc="1d")]),
    OpSpec("flatten", _call("flatten"), [
        Sample((r(2, 3, 4),), desc="all"),
        Sample((r(2, 3, 4),), dict(start_dim=1), desc="from1"),
        Sample((r(2, 3, 4, 5), 1, 2), desc="middle"),
        Sample((r(2, 3, 4), -2, -1), desc="negdims"),
        Sample((r(2, 3, 4), 1, 1), desc="same"),
        Sample((r(1, 3),), desc="batch1"),
        Sample((r(),), desc="0d"),
    ], errors=[
        ErrorCase((r(2, 3, 4), 2, 1), exc=ArgumentError, match="start_dim 2 comes after end_dim 1"),
        _out_of_range("flatten", (r(2, 3), 3), 3),
    ]),
    OpSpec("unflatten", _call("unflatten"), [
        Sample((r(2, 12), 1, (3, -1)), desc="infer"),
        Sample((r(6), 0, (2, 3)), desc="1d"),
        Sample((r(2, 3, 4), -1, (2, 2)), desc="negdim"),
        Sample((r(4, 1), 1, (1, 1)), desc="ones"),
    ], errors=[
        ErrorCase((r(2, 12), 1, (5, -1)), exc=ShapeError,
                  match=r"unflatten: cannot reshape dim 1 of size 12 \(input shape \(2, 12\)\)"),
        ErrorCase((r(2, 12), 1, (5, 2)), exc=ShapeError, match=r"\(10 elements\)"),
    ]),
    OpSpec("permute", _call("permute"), [
        Sample((r(2, 3, 4), (2, 0, 1)), desc="3d"),
        Sample((r(2, 3, 4), (-1, 0, 1)), desc="negdims"),
        Sample((r(1, 3, 2, 2), (3, 1, 0, 2)), desc="batch1"),
        Sample((r(5), (0,)), desc="1d"),
        Sample((r(), ()), desc="0d"),
    ], errors=[
        ErrorCase((r(2, 3), (1, 0, 2)), exc=ArgumentError, match=r"permute: got 3 dims \(1, 0, 2\) for a tensor "
                                                                 r"with 2 dimension\(s\) \(shape \(2, 3\)\)"),
        ErrorCase((r(2, 3), (1, 1)), exc=ArgumentError, match="repeat a dimension"),
        _out_of_range("permute", (r(2, 3), (0, 2)), 2),
    ]),
    OpSpec("transpose", _call("transpose"), [
        Sample((r(2, 3, 4), 0, 2), desc="3d"),
        Sample((r(3, 4), -1, -2), desc="negdims"),
        Sample((r(1, 3), 0, 1), desc="batch1"),
        Sample((r(2, 3, 4), 1, 1), desc="same"),
        Sample((r(5), 0, -1), desc="1d"),
        Sample((r(), 0, -1), desc="0d"),
    ], errors=[_out_of_range("transpose", (r(2, 3), 0, 2), 2)]),
    OpSpec("swapaxes", _call("swapaxes"), [Sample((r(2, 3, 4), 0, -1))]),
    OpSpec("movedim", _call("movedim"), [
        Sample((r(2, 3, 4), 0, -1), desc="int"),
        Sample((r(2, 3, 4), (0, 1), (2, 0)), desc="tuple"),
        Sample((r(1, 2, 3, 4), (-1,), (0,)), desc="negdims"),
    ], errors=[
        ErrorCase((r(2, 3, 4), (0, 1), (2,)), exc=ArgumentError, match="must list the same number of dims"),
        ErrorCase((r(2, 3, 4), (0, 0), (1, 2)), exc=ArgumentError, match="repeat a dimension"),
    ]),
    OpSpec("squeeze", _call("squeeze"), [
        Sample((r(1, 3, 1),), desc="all"),
        Sample((r(1, 3, 1), 0), desc="dim0"),
        Sample((r(1, 3, 1), -1), desc="negdim"),
        Sample((r(1, 3, 1), (0, 2)), desc="tuple"),
        Sample((r(1, 3, 1), 1), desc="not1_noop"),
        Sample((r(1),), desc="1d"),
        Sample((r(),), desc="0d"),
        Sample((r(), 0), desc="0d_dim"),
    ], errors=[_out_of_range("squeeze", (r(1, 3), 2), 2)]),
    OpSpec("unsqueeze", _call("unsqueeze"), [
        Sample((r(2, 3), 0), desc="front"),
        Sample((r(2, 3), -1), desc="back"),
        Sample((r(2, 3), 1), desc="middle"),
        Sample((r(4), -2), desc="1d"),
        Sample((r(), 0), desc="0d"),
    ], errors=[_out_of_range("unsqueeze", (r(2), 2), 2)]),
    OpSpec("expand", _call("expand"), [
        Sample((r(3, 1), (3, 4)), desc="2d"),
        Sample((r(3, 1), (2, -1, 4)), desc="leading"),
        Sample((r(1, 1, 3), (-1, 4, -1)), desc="keep"),
        Sample((r(1), (5,)), desc="1d"),
        Sample((r(), (2, 3)), desc="0d"),
        Sample((r(2, 3), (2, 3)), desc="same"),
    ], torch_op=lambda m, x, s: x.expand(s), errors=[
        ErrorCase((r(2, 3), (2, 4)), exc=ShapeError,
                  match=r"expand: cannot expand a tensor of shape \(2, 3\) to \(2, 4\): dim 1 has size 3"),
        ErrorCase((r(2, 3), (3,)), exc=ShapeError, match="give at least one size per dimension"),
        ErrorCase((r(2, 3), (-1, 2, 3)), exc=ShapeError, match="invalid for a new leading dimension"),
    ]),
    OpSpec("broadcast_to", _call("broadcast_to"), [
        Sample((r(3), (2, 3)), desc="leading"),
        Sample((r(3, 1), (3, 4)), desc="inner"),
        Sample((r(1, 1), (-1, 5)), desc="keep"),
    ], errors=[ErrorCase((r(3), (2, 4)), exc=ShapeError, match=r"broadcast_to: cannot expand .*\(3,\)")]),
    OpSpec("repeat", _call("repeat"), [
        Sample((r(2, 3), (2, 1)), desc="2d"),
        Sample((r(2, 3), (2, 1, 3)), desc="leading"),
        Sample((r(3), (4,)), desc="1d"),
        Sample((r(), (2, 3)), desc="0d"),
        Sample((r(1, 2), (1, 1)), desc="ones"),
    ], torch_op=lambda m, x, s: x.repeat(s), errors=[
        ErrorCase((r(2, 3), (2,)), exc=ShapeError, match=r"repeat: got 1 repeat sizes \(2,\) for a tensor of shape"),
        ErrorCase((r(2, 3), (2, -1)), exc=ArgumentError, match="must be >= 0"),
    ]),
    OpSpec("tile", _call("tile"), [
        Sample((r(2, 3), (2,)), desc="short"),
        Sample((r(2, 3), (2, 2, 1)), desc="long"),
        Sample((r(3), (2, 2)), desc="1d"),
    ]),
    OpSpec("cat", _call("cat"), [
        Sample(([r(2, 3), r(1, 3)],), desc="dim0"),
        Sample(([r(2, 3), r(2, 5)], 1), desc="dim1"),
        Sample(([r(2, 3, 4), r(2, 3, 1), r(2, 3, 2)], -1), desc="three_negdim"),
        Sample(([r(1, 4)],), desc="single"),
        Sample(([r(3), r(2)],), desc="1d"),
        Sample(([r(0), r(2, 3)],), desc="legacy_empty"),
        Sample(([r(2, 0), r(2, 3)], 1), desc="empty_dim"),
    ], errors=[
        ErrorCase(([r(2, 3), r(2, 4)],), exc=ShapeError,
                  match=r"cat: tensor 1 has shape \(2, 4\) but tensor 0 has shape \(2, 3\)"),
        ErrorCase(([r(2, 3), r(3)],), exc=ShapeError, match=r"tensor 1 has shape \(3,\)"),
        ErrorCase(([],), exc=ArgumentError, match="non-empty list"),
        ErrorCase(([r(), r()],), exc=ShapeError, match="tensor 0 is 0-d"),
        ErrorCase(([r(2, 3)], 2), exc=ArgumentError, match="cat: dim 2 is out of range"),
        ErrorCase((r(2, 3),), exc=ArgumentError, match="expected a list or tuple of tensors"),
    ]),
    OpSpec("cat_mixed_dtype", lambda m, ts: m.cat(ts), [Sample(([idx(5, 2, 3), r(1, 3)],))],
           differentiable=False),
    OpSpec("concat", _call("concat"), [Sample(([r(2, 3), r(2, 2)], -1))]),
    OpSpec("concatenate", _call("concatenate"), [Sample(([r(2, 3), r(4, 3)],))]),
    OpSpec("stack", _call("stack"), [
        Sample(([r(2, 3), r(2, 3)],), desc="dim0"),
        Sample(([r(2, 3), r(2, 3), r(2, 3)], 1), desc="dim1"),
        Sample(([r(2, 3), r(2, 3)], -1), desc="negdim"),
        Sample(([r(1, 3)],), desc="single"),
        Sample(([r(), r()],), desc="0d"),
    ], errors=[
        ErrorCase(([r(2, 3), r(2, 4)],), exc=ShapeError,
                  match=r"stack: tensor 1 has shape \(2, 4\) but tensor 0 has shape \(2, 3\)"),
        ErrorCase(([],), exc=ArgumentError, match="stack: expected a non-empty list"),
        ErrorCase(([r(2, 3)], 3), exc=ArgumentError, match="stack: dim 3 is out of range"),
    ]),
    OpSpec("split", _call("split"), [
        Sample((r(5, 3), 2), desc="size"),
        Sample((r(5, 3), (1, 4)), desc="sections"),
        Sample((r(3, 7), 3, 1), desc="dim1"),
        Sample((r(3, 7), (2, 0, 5), -1), desc="zero_section"),
        Sample((r(4), 10), desc="one_piece"),
    ], errors=[
        ErrorCase((r(5), [2, 2]), exc=ArgumentError, match=r"split sizes \(2, 2\) must be >= 0 and sum to 5"),
        ErrorCase((r(5), 0), exc=ArgumentError, match="split_size must be positive"),
        ErrorCase((r(), 1), exc=ShapeError, match="0-d"),
    ]),
    OpSpec("chunk", _call("chunk"), [
        Sample((r(5, 2), 4), desc="ceil"),
        Sample((r(6), 4), desc="fewer"),
        Sample((r(3, 7), 3, 1), desc="dim1"),
        Sample((r(2, 5), 1, -1), desc="one"),
        Sample((r(1, 3), 2), desc="batch1"),
    ], errors=[ErrorCase((r(6), 0), exc=ArgumentError, match="chunks must be a positive int, got 0")]),
    OpSpec("flip", _call("flip"), [
        Sample((r(2, 3, 4), (0, 2)), desc="two"),
        Sample((r(3, 4), (-1,)), desc="negdim"),
        Sample((r(5), (0,)), desc="1d"),
        Sample((r(), (0,)), desc="0d"),
    ], errors=[ErrorCase((r(2, 3), (0, 0)), exc=ArgumentError, match="flip: dims .* repeat a dimension")]),
    OpSpec("roll", _call("roll"), [
        Sample((r(2, 3, 4), 5), desc="flat"),
        Sample((r(2, 3, 4), (1, -2), (0, 2)), desc="two"),
        Sample((r(5), -7, 0), desc="1d_wrap"),
        Sample((r(3, 4), 2, -1), desc="negdim"),
        Sample((r(), 1), desc="0d"),
    ], errors=[ErrorCase((r(2, 3), (1, 2), (0,)), exc=ArgumentError, match="must have the same length")]),
    OpSpec("narrow", _call("narrow"), [
        Sample((r(6, 3), 0, 1, 3), desc="dim0"),
        Sample((r(4, 5), -1, -2, 2), desc="negstart"),
        Sample((r(4, 5), 1, 0, 5), desc="whole"),
        Sample((r(4, 5), 1, 5, 0), desc="empty"),
    ], errors=[
        ErrorCase((r(6), 0, 4, 3), exc=IndexOutOfRangeError, match=r"start \(4\) \+ length \(3\) must lie within"),
        ErrorCase((r(6), 0, 7, 0), exc=IndexOutOfRangeError, match="start 7 is out of range"),
    ]),
    OpSpec("diagonal", _call("diagonal"), [
        Sample((r(3, 4),), desc="main"),
        Sample((r(3, 4), 1), desc="above"),
        Sample((r(3, 4), -2), desc="below"),
        Sample((r(2, 3, 4), 0, 1, 2), desc="batched"),
        Sample((r(2, 3, 4), 1, -1, 0), desc="negdims"),
        Sample((r(3, 4), 5), desc="empty"),
    ], errors=[
        ErrorCase((r(3),), exc=ShapeError, match="at least 2 dimensions"),
        ErrorCase((r(3, 4), 0, 1, -1), exc=ArgumentError, match="repeat a dimension"),
    ]),
    OpSpec("triu", _call("triu"), [
        Sample((r(3, 4),), desc="main"),
        Sample((r(4, 3), 1), desc="above"),
        Sample((r(2, 3, 4), -1), desc="batched"),
        Sample((r(1, 3, 3),), desc="batch1"),
    ], errors=[ErrorCase((r(3),), exc=ShapeError, match=r"triu: needs a tensor with at least 2 dim.*\(3,\)")]),
    OpSpec("tril", _call("tril"), [
        Sample((r(3, 4),), desc="main"),
        Sample((r(4, 3), -1), desc="below"),
        Sample((r(2, 3, 4), 2), desc="batched"),
    ], errors=[ErrorCase((r(),), exc=ShapeError, match="tril: needs")]),
    OpSpec("pad_constant", _pad, [
        Sample((r(2, 3), (1, 2)), desc="last"),
        Sample((r(2, 3, 4), (1, 0, 2, 1)), desc="two_dims"),
        Sample((r(2, 3), (1, 1, 1, 1)), dict(value=1.5), desc="value"),
        Sample((r(1, 2, 3), (0, 0, 0, 0, 1, 1)), desc="first_dim"),
        Sample((r(3), (2, 2)), desc="1d"),
        Sample((r(2, 5), (-1, 2, 1, -1)), desc="negative"),
        Sample((r(2, 5), (-3, -1, 1, 0)), desc="crop"),
    ], errors=[
        ErrorCase((r(2, 5), (6, 2)), kwargs=dict(mode="circular"), exc=ShapeError,
                  match=r"pad: pad \(6, 2\) is too large for dim 1 of size 5 .*at most 5 per side"),
        ErrorCase((r(2, 5), (5, 1)), kwargs=dict(mode="reflect"), exc=ShapeError,
                  match=r"pad \(5, 1\) is too large .*'reflect' allows at most 4"),
        ErrorCase((r(2, 5), (1, 1)), kwargs=dict(mode="foo"), exc=ArgumentError,
                  match="mode must be 'constant', 'reflect', 'replicate' or 'circular', got 'foo'"),
        ErrorCase((r(2, 5), (1, 2, 3)), exc=ArgumentError, match="odd length 3"),
        ErrorCase((r(5), (1, 1, 1, 1)), exc=ShapeError, match=r"covers 2 dims but the input has shape \(5,\)"),
        ErrorCase((r(5), (1, 1)), kwargs=dict(mode="reflect"), exc=ShapeError,
                  match=r"needs a 2-d or 3-d input, got shape \(5,\)"),
        ErrorCase((r(2, 5), (1, 1)), kwargs=dict(mode="replicate", value=2.0), exc=ArgumentError,
                  match="takes no fill value"),
        ErrorCase((r(2, 5), (-3, -3)), exc=ShapeError, match="crops dim 1 of size 5 below zero"),
    ]),
    OpSpec("pad_reflect", lambda m, x, p: _pad(m, x, p, mode="reflect"), [
        Sample((r(2, 5), (2, 3)), desc="1d_pad"),
        Sample((r(1, 2, 4, 5), (1, 2, 3, 0)), desc="2d_pad"),
        Sample((r(2, 3, 4, 3), (2, 1, 1, 3)), desc="2d_pad_batch"),
        Sample((r(1, 2, 3, 4, 3), (1, 1, 2, 0, 1, 2)), desc="3d_pad"),
        Sample((r(2, 5), (4, 4)), desc="max"),
        Sample((r(2, 5), (-1, 2)), desc="negative"),
    ]),
    OpSpec("pad_replicate", lambda m, x, p: _pad(m, x, p, mode="replicate"), [
        Sample((r(2, 5), (3, 7)), desc="wide"),
        Sample((r(1, 2, 4, 5), (1, 2, 3, 0)), desc="2d_pad"),
        Sample((r(2, 1, 3), (2, 2)), desc="size1"),
        Sample((r(2, 3, 2, 3), (0, 2, 1, 1, 2, 0)), desc="3d_pad"),
        Sample((r(2, 5), (2, -1)), desc="negative"),
    ]),
    OpSpec("pad_circular", lambda m, x, p: _pad(m, x, p, mode="circular"), [
        Sample((r(2, 5), (5, 2)), desc="full_wrap"),
        Sample((r(1, 2, 4, 5), (1, 2, 3, 0)), desc="2d_pad"),
        Sample((r(2, 3, 2, 3), (1, 1, 2, 0, 0, 1)), desc="3d_pad"),
        Sample((r(2, 5), (-1, 2)), desc="negative"),
    ]),
]
