"""Registry entries for shendu/ops/conv.py: conv2d once per algorithm, conv1d, conv_transpose1d/2d.

Every algorithm is checked against torch's conv2d (forward f32/f64, backward with a random
cotangent, float64 gradcheck) on the geometries it supports. float32 tolerances: the sums have up to
~50 terms of size ~4, so absolute errors of ~1e-5 are rounding, not bugs; FFT and Winograd round
through their transforms and get looser bounds (their float32 accuracy is measured in
tests/ops/test_conv.py and examples/conv_algorithms.py).
"""


import shendu
from shendu.errors import ArgumentError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, r


def _alg(m, algorithm):
    """shendu takes ``algorithm=``; torch has one (its own) algorithm."""
    return {"algorithm": algorithm} if m is shendu else {}


def _conv2d_spec(name, algorithm, samples, **tol):
    return OpSpec(name, lambda m, x, w, b=None, **kw: m.conv2d(x, w, b, **kw, **_alg(m, algorithm)),
                  samples, **tol)


# Any geometry: strides, asymmetric padding, dilation, groups, depthwise, 'same' with an even kernel,
# non-square kernels, batch 1, 1x1 (the plain GEMM path), unbatched input, bias and no bias.
_GENERAL = [
    Sample((r(2, 3, 5, 6), r(4, 3, 3, 3), r(4)), dict(padding=1), desc="pad1_bias"),
    Sample((r(1, 3, 7, 6), r(2, 3, 2, 3)), dict(stride=2, padding=(1, 2)), desc="stride2_nonsquare"),
    Sample((r(2, 2, 7, 7), r(3, 2, 3, 3), r(3)), dict(padding=2, dilation=2), desc="dilation2"),
    Sample((r(1, 2, 8, 7), r(2, 2, 3, 2)), dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2)),
           desc="mixed_stride_dilation"),
    Sample((r(2, 4, 5, 5), r(6, 2, 3, 3), r(6)), dict(padding=1, groups=2), desc="groups2"),
    Sample((r(2, 1, 5, 5), r(4, 1, 3, 3)), dict(padding=1), desc="one_to_four_channels"),
    Sample((r(2, 3, 5, 5), r(3, 1, 3, 3), r(3)), dict(padding=1, groups=3), desc="depthwise"),
    Sample((r(1, 2, 5, 4), r(4, 1, 3, 3)), dict(stride=2, padding=1, groups=2), desc="depthwise_mult2_s2"),
    Sample((r(1, 2, 5, 5), r(2, 2, 2, 4), r(2)), dict(padding="same"), desc="same_even_kernel"),
    Sample((r(1, 4, 3, 3), r(5, 4, 1, 1), r(5)), desc="1x1_batch1"),
    Sample((r(2, 3, 4, 4), r(2, 3, 1, 1)), dict(stride=2), desc="1x1_stride2"),
    Sample((r(2, 5, 4), r(3, 2, 3, 3)), dict(padding="valid"), desc="unbatched_valid"),
]

# Winograd: 3x3, stride 1, dilation 1; output sizes that do and do not fill whole tiles; padding
# larger than 2 (the input gradient then crops the output gradient).
_WINOGRAD = [
    Sample((r(2, 3, 5, 6), r(4, 3, 3, 3), r(4)), dict(padding=1), desc="pad1_bias"),
    Sample((r(1, 2, 6, 6), r(3, 2, 3, 3)), desc="pad0_batch1"),
    Sample((r(1, 2, 4, 5), r(2, 2, 3, 3), r(2)), dict(padding=3), desc="pad3"),
    Sample((r(2, 2, 9, 7), r(2, 2, 3, 3)), dict(padding=(2, 0)), desc="asym_pad_tiles"),
    Sample((r(1, 4, 5, 5), r(4, 2, 3, 3), r(4)), dict(padding=1, groups=2), desc="groups2"),
    Sample((r(2, 3, 4, 4), r(3, 1, 3, 3)), dict(padding="same", groups=3), desc="depthwise_same"),
    Sample((r(3, 5, 4), r(2, 3, 3, 3)), dict(padding=1), desc="unbatched"),
]

_TOL = dict(rtol32=1e-4, atol32=2e-5, grad_rtol32=1e-4, grad_atol32=5e-5)
_TOL_TRANSFORM = dict(rtol32=2e-4, atol32=2e-4, grad_rtol32=2e-4, grad_atol32=3e-4)


def _conv1d(m, x, w, b=None, **kw):
    return m.conv1d(x, w, b, **kw)


def _conv_t2d(m, x, w, b=None, **kw):
    return m.conv_transpose2d(x, w, b, **kw)


def _conv_t1d(m, x, w, b=None, **kw):
    return m.conv_transpose1d(x, w, b, **kw)


def _conv_t2d_fft(m, x, w, b=None, **kw):
    return m.conv_transpose2d(x, w, b, **kw, **_alg(m, "fft"))


_ERRORS = [
    ErrorCase((r(1, 5, 5, 3), r(4, 3, 3, 3)), exc=ShapeError, match="input has 5 channels.*is the image HWC"),
    ErrorCase((r(5, 5), r(4, 3, 3, 3)), exc=ShapeError, match="expected a 4-D input"),
    ErrorCase((r(1, 3, 5, 5), r(4, 3, 3)), exc=ShapeError, match="weight must be 4-D"),
    ErrorCase((r(1, 4, 5, 5), r(6, 2, 3, 3)), dict(groups=3), exc=ArgumentError,
              match="groups=3 must divide in_channels"),
    ErrorCase((r(1, 3, 5, 5), r(4, 3, 3, 3)), dict(stride=2, algorithm="winograd"), exc=ArgumentError,
              match="needs stride 1"),
    ErrorCase((r(1, 3, 5, 5), r(4, 3, 5, 5)), dict(algorithm="winograd2x2"), exc=ArgumentError,
              match="needs a 3x3 kernel"),
    ErrorCase((r(1, 3, 5, 5), r(4, 3, 3, 3)), dict(stride=2, padding="same"), exc=ArgumentError,
              match="'same' is only supported with stride 1"),
    ErrorCase((r(1, 3, 2, 2), r(4, 3, 3, 3)), exc=ShapeError, match="smaller than the .*kernel"),
    ErrorCase((r(1, 3, 5, 5), r(4, 3, 3, 3), r(3)), exc=ShapeError, match=r"expected bias shape \(4,\)"),
    ErrorCase((r(1, 3, 5, 5), r(4, 3, 3, 3)), dict(algorithm="gemm"), exc=ArgumentError,
              match="unknown algorithm 'gemm'"),
    ErrorCase((r(1, 3, 5, 5), r(4, 3, 3, 3)), dict(padding=-1), exc=ArgumentError, match="padding must be >= 0"),
]


def _conv2d_err(m, x, w, b=None, **kw):
    return m.conv2d(x, w, b, **kw)


SPECS = [
    _conv2d_spec("conv2d", "auto", _GENERAL, errors=[], **_TOL),
    OpSpec("conv2d_errors", _conv2d_err, [], errors=_ERRORS),
    _conv2d_spec("conv2d_direct", "direct", _GENERAL, **_TOL),
    _conv2d_spec("conv2d_im2col", "im2col", _GENERAL, **_TOL),
    _conv2d_spec("conv2d_fft", "fft", _GENERAL, **_TOL_TRANSFORM),
    _conv2d_spec("conv2d_winograd", "winograd", _WINOGRAD, **_TOL_TRANSFORM),
    _conv2d_spec("conv2d_winograd2x2", "winograd2x2", _WINOGRAD, **_TOL_TRANSFORM),
    _conv2d_spec("conv2d_auto_3x3", "auto", [Sample((r(2, 16, 6, 6), r(16, 16, 3, 3), r(16)), dict(padding=1),
                                                     desc="winograd_sized")], **_TOL_TRANSFORM),
    OpSpec("conv1d", _conv1d, [
        Sample((r(2, 3, 9), r(4, 3, 3), r(4)), dict(padding=1), desc="pad1_bias"),
        Sample((r(1, 2, 10), r(3, 2, 4)), dict(stride=2, padding=2, dilation=2), desc="stride_dilation"),
        Sample((r(2, 4, 7), r(4, 2, 2), r(4)), dict(padding="same", groups=2), desc="same_even_groups"),
        Sample((r(3, 8), r(2, 3, 3)), desc="unbatched"),
    ], errors=[
        ErrorCase((r(2, 3, 9), r(4, 3, 3, 3)), exc=ShapeError, match="weight must be 3-D"),
        ErrorCase((r(2, 9, 3), r(4, 3, 3)), exc=ShapeError, match="input has 9 channels.*HWC"),
        ErrorCase((r(2, 3, 9), r(4, 3, 3)), dict(algorithm="winograd"), exc=ArgumentError,
                  match="3x3 kernel"),
    ], **_TOL),
    OpSpec("conv_transpose2d", _conv_t2d, [
        Sample((r(2, 4, 3, 3), r(4, 3, 3, 3), r(3)), dict(stride=2, padding=1, output_padding=1),
               desc="stride2_output_padding"),
        Sample((r(1, 4, 3, 4), r(4, 2, 3, 2), r(4)), dict(stride=(1, 2), groups=2), desc="groups2_nonsquare"),
        Sample((r(1, 2, 4, 3), r(2, 3, 3, 3)), dict(padding=1, dilation=2), desc="dilation2"),
        Sample((r(2, 2, 3, 3), r(2, 2, 3, 3)), dict(dilation=2, output_padding=1), desc="opad_via_dilation"),
        Sample((r(1, 3, 3, 3), r(3, 1, 3, 3)), dict(stride=2, groups=3), desc="depthwise"),
        Sample((r(3, 4, 4), r(3, 2, 3, 3)), dict(padding=1), desc="unbatched_stride1"),
    ], errors=[
        ErrorCase((r(1, 3, 3, 3), r(3, 2, 3, 3)), dict(stride=2, output_padding=2), exc=ArgumentError,
                  match="output_padding .* must be smaller"),
        ErrorCase((r(1, 5, 3, 3), r(3, 2, 3, 3)), exc=ShapeError, match="input has 5 channels"),
        ErrorCase((r(1, 4, 3, 3), r(4, 2, 3, 3)), dict(groups=3), exc=ArgumentError, match="groups=3 must divide"),
    ], **_TOL),
    OpSpec("conv_transpose2d_fft", _conv_t2d_fft, [
        Sample((r(2, 4, 3, 3), r(4, 3, 3, 3), r(3)), dict(stride=2, padding=1, output_padding=1),
               desc="stride2_output_padding"),
        Sample((r(1, 2, 4, 3), r(2, 3, 3, 3)), dict(padding=1, dilation=2), desc="dilation2"),
    ], **_TOL_TRANSFORM),
    OpSpec("conv_transpose1d", _conv_t1d, [
        Sample((r(2, 3, 5), r(3, 2, 3), r(2)), dict(stride=2, padding=1, output_padding=1), desc="stride2"),
        Sample((r(1, 4, 4), r(4, 1, 2)), dict(groups=2, dilation=3), desc="groups_dilation"),
    ], **_TOL),
]
