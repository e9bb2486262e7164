"""RoI Align and RoI Pool against torchvision's kernels transcribed as loops (tests/opspecs/vision.py,
also the registry's references), forward and backward, plus hand-computed cases, gradchecks, layers
and errors. The registry entries (tests/opspecs/vision.py) add the generic checks on top."""

import numpy as np
import pytest

import shendu
from shendu.autograd import gradcheck
from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError
from shendu.vision.ops import MultiScaleRoIAlign, RoIAlign, RoIPool, roi_align, roi_pool
from shendu.vision.ops import roi as roi_module
from shendu.vision.ops.roi import roi_align_matrix
from tests.opspecs.vision import (
    pool_rois,
    roi_align_backward_ref,
    roi_align_ref,
    roi_pool_backward_ref,
    roi_pool_ref,
    rois,
)

rng = np.random.default_rng(7)


@pytest.fixture(params=[True, False], ids=["numba", "numpy"])
def path(request, monkeypatch):
    """Run a test through the numba kernels and through the NumPy reference."""
    if request.param and not roi_module.USE_NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(roi_module, "USE_NUMBA", request.param)
    return request.param


def _t(a, grad=False):
    return shendu.from_numpy(np.ascontiguousarray(a)).requires_grad_(grad)


def _align_both(x, boxes, size, **kw):
    """(output, input gradient) of shendu's roi_align for a fixed random cotangent."""
    xt = _t(x, True)
    out = roi_align(xt, _t(boxes) if isinstance(boxes, np.ndarray) else boxes, size, **kw)
    g = rng.standard_normal(out.shape).astype(x.dtype)
    out.backward(shendu.from_numpy(g))
    return out.data, xt.grad.data, g


# ------------------------------------------------------------------------------------------ RoI Align
ALIGN_SETTINGS = [
    dict(sampling_ratio=2),
    dict(sampling_ratio=-1),
    dict(sampling_ratio=0, aligned=True),
    dict(sampling_ratio=3, aligned=True, spatial_scale=0.5),
    dict(sampling_ratio=-1, spatial_scale=0.25),
    dict(sampling_ratio=1, aligned=True, spatial_scale=2.0),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", ALIGN_SETTINGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_roi_align_matches_kernel_loops(kw, dtype, path):
    N, C, H, W = 2, 3, 9, 11
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    boxes = rois(9, N, H, W, kw.get("spatial_scale", 1.0)).astype(dtype)
    size = (3, 4)
    out, gx, g = _align_both(x, boxes, size, **kw)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
    assert out.dtype == dtype and gx.dtype == dtype
    np.testing.assert_allclose(out, roi_align_ref(x, boxes, size, **kw), **tol)
    np.testing.assert_allclose(gx, roi_align_backward_ref(g, x.shape, boxes, size, **kw), **tol)


def test_roi_align_adaptive_grid_differs_per_box(path):
    """Adaptive sampling: a big and a small box in one call get different sample counts."""
    x = rng.standard_normal((1, 2, 20, 20))
    boxes = np.array([[0, 0.3, 0.2, 18.7, 19.1], [0, 3.1, 4.2, 4.9, 5.3], [0, 5.5, 1.5, 13.0, 6.2]])
    out, gx, g = _align_both(x, boxes, 2, sampling_ratio=0)
    np.testing.assert_allclose(out, roi_align_ref(x, boxes, 2, sampling_ratio=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, roi_align_backward_ref(g, x.shape, boxes, 2, sampling_ratio=0), rtol=1e-12,
                               atol=1e-12)


def test_roi_align_degenerate_and_outside_boxes(path):
    """Boxes with x2 < x1 (aligned: no samples, output 0), zero size, fully outside, on the far border."""
    x = rng.standard_normal((2, 2, 6, 7))
    boxes = np.array([[0, 4.0, 4.0, 2.0, 1.0],     # reversed
                      [1, 3.0, 3.0, 3.0, 3.0],     # empty
                      [0, 20.0, 20.0, 30.0, 25.0],  # fully outside
                      [1, -9.0, -9.0, -3.0, -2.0],  # fully outside, negative
                      [0, 5.5, 4.5, 7.0, 6.0],     # reaches past the last row/column (clamped reads)
                      [1, -1.5, -0.5, 2.0, 1.0]])   # starts before the first pixel
    for kw in (dict(aligned=False, sampling_ratio=-1), dict(aligned=True, sampling_ratio=-1),
               dict(aligned=True, sampling_ratio=2), dict(aligned=False, sampling_ratio=2)):
        out, gx, g = _align_both(x, boxes, (2, 3), **kw)
        np.testing.assert_allclose(out, roi_align_ref(x, boxes, (2, 3), **kw), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, roi_align_backward_ref(g, x.shape, boxes, (2, 3), **kw), rtol=1e-12,
                                   atol=1e-12)
    out = roi_align(_t(x), _t(boxes), 2, aligned=True).data
    assert np.all(out[0] == 0) and np.all(out[1] == 0) and np.all(out[2] == 0)


def test_roi_align_hand_computed(path):
    x = np.arange(20.0).reshape(1, 1, 4, 5)  # value = 5 h + w: bilinear reads are exact
    box = _t(np.array([[0, 1.0, 1.0, 3.0, 3.0]]))
    # not aligned: samples at 1.5, 2.5 (one per bin): bin (0, 0) reads (y, x) = (1.5, 1.5) -> 5*1.5 + 1.5
    out = roi_align(_t(x), box, 2, sampling_ratio=1).data[0, 0]
    np.testing.assert_allclose(out, [[9.0, 10.0], [14.0, 15.0]])
    # aligned: the box shifts by -0.5, samples at 1.0, 2.0: pixel centres exactly
    out = roi_align(_t(x), box, 2, sampling_ratio=1, aligned=True).data[0, 0]
    np.testing.assert_allclose(out, [[6.0, 7.0], [11.0, 12.0]])
    # two samples per bin along each axis average to the bin centre for a linear map
    out = roi_align(_t(x), box, 1, sampling_ratio=2).data[0, 0]
    np.testing.assert_allclose(out, [[12.0]])
    # a box smaller than one bin, not aligned: forced to 1x1, sample at 2.2 + 0.5 = 2.7 -> 5*2.7 + 2.7
    out = roi_align(_t(x), _t(np.array([[0, 2.2, 2.2, 2.3, 2.3]])), 1, sampling_ratio=1).data
    np.testing.assert_allclose(out, [[[[16.2]]]])
    # samples beyond the last row/column clamp to it: (3.5, 4.5) reads pixel (3, 4) = 19; past H + 1: zero
    out = roi_align(_t(x), _t(np.array([[0, 4.0, 3.0, 5.0, 4.0]])), 1, sampling_ratio=1).data
    np.testing.assert_allclose(out, [[[[19.0]]]])
    out = roi_align(_t(x), _t(np.array([[0, 5.5, 4.5, 6.5, 5.5]])), 1, sampling_ratio=1).data
    np.testing.assert_allclose(out, [[[[0.0]]]])
    # samples exactly at y = H or x = W, or at -1, are still read (clamped); just past them read 0
    out = roi_align(_t(x), _t(np.array([[0, 4.5, 3.5, 5.5, 4.5]])), 1, sampling_ratio=1).data  # (4, 5)
    np.testing.assert_allclose(out, [[[[19.0]]]])
    out = roi_align(_t(x), _t(np.array([[0, -1.5, -1.5, -0.5, -0.5]])), 1, sampling_ratio=1).data  # (-1, -1)
    np.testing.assert_allclose(out, [[[[0.0]]]])  # pixel (0, 0) holds 0: use a shifted map to see the read
    out = roi_align(_t(x + 1), _t(np.array([[0, -1.5, -1.5, -0.5, -0.5]])), 1, sampling_ratio=1).data
    np.testing.assert_allclose(out, [[[[1.0]]]])
    out = roi_align(_t(x + 1), _t(np.array([[0, -1.6, -1.5, -0.6, -0.5]])), 1, sampling_ratio=1).data
    np.testing.assert_allclose(out, [[[[0.0]]]])
    # out-of-range samples still count in the average: one of two samples is past W (x = 6.25 > 5)
    out = roi_align(_t(x), _t(np.array([[0, 3.0, 0.0, 7.0, 1.0]])), 1, sampling_ratio=2).data
    # samples x = 4.0 (reads 5*y + 4) and 6.0 (zero), y = 0.25 and 0.75: mean of (1.25+4, 3.75+4, 0, 0) / 4
    np.testing.assert_allclose(out, [[[[(5.25 + 7.75) / 4]]]])


def test_roi_align_list_boxes_equal_tensor_boxes():
    x = rng.standard_normal((2, 3, 8, 8))
    b0 = np.array([[0.5, 1.2, 6.3, 5.1], [2.0, 2.5, 4.0, 7.0]])
    b1 = np.array([[1.1, 0.3, 3.3, 2.2]])
    as_list = roi_align(_t(x), [_t(b0), _t(b1)], 3, 0.5, 2).data
    rois5 = np.concatenate([np.c_[np.zeros(2), b0], np.c_[np.ones(1), b1]])
    np.testing.assert_array_equal(as_list, roi_align(_t(x), _t(rois5), 3, 0.5, 2).data)


def test_roi_align_no_boxes(path):
    x = _t(rng.standard_normal((1, 4, 5, 5)), True)
    out = roi_align(x, _t(np.zeros((0, 5))), (2, 3))
    assert out.shape == (0, 4, 2, 3)
    out.sum().backward()
    assert np.all(x.grad.data == 0)


def test_roi_align_matrix_is_the_linear_map():
    """M @ x equals the output, column by column: the sparse matrix holds the kernel's weights."""
    x = rng.standard_normal((1, 1, 5, 6))
    boxes = np.array([[0, 0.7, 0.4, 4.6, 3.9]])
    M = roi_align_matrix(boxes, x.shape, (2, 2), 1.0, 2, False).toarray()
    np.testing.assert_allclose(M @ x.reshape(-1), roi_align_ref(x, boxes, 2, sampling_ratio=2).reshape(-1),
                               rtol=1e-12)
    np.testing.assert_allclose(M.sum(axis=1), 1.0)  # all samples inside: weights of a bin sum to 1


@pytest.mark.parametrize("kw", [dict(sampling_ratio=2), dict(sampling_ratio=-1, aligned=True, spatial_scale=0.5)])
def test_roi_align_gradcheck(kw, path):
    x = _t(rng.standard_normal((2, 2, 5, 6)), True)
    boxes = _t(rois(4, 2, 5, 6, kw.get("spatial_scale", 1.0)))
    assert gradcheck(lambda t: roi_align(t, boxes, (2, 3), **kw), (x,), mode="directional", atol=1e-7, rtol=1e-5)
    small = _t(rng.standard_normal((1, 1, 4, 4)), True)
    assert gradcheck(lambda t: roi_align(t, _t(np.array([[0, 0.3, 0.6, 3.2, 2.9]])), 2, **kw), (small,),
                     mode="full")


# ------------------------------------------------------------------------------------------- RoI Pool
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_roi_pool_matches_kernel_loops(scale, dtype, path):
    N, C, H, W = 2, 3, 9, 10
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    boxes = rois(10, N, H, W, scale).astype(dtype)
    xt = _t(x, True)
    out = roi_pool(xt, _t(boxes), (3, 2), scale)
    ref, argmax = roi_pool_ref(x, boxes, (3, 2), scale, return_argmax=True)
    np.testing.assert_array_equal(out.data, ref)
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(shendu.from_numpy(g))
    assert xt.grad.dtype == dtype
    np.testing.assert_allclose(xt.grad.data, roi_pool_backward_ref(g, x.shape, argmax, boxes), rtol=1e-6,
                               atol=1e-6)


def test_roi_pool_ties_go_to_the_first_maximum_and_empty_bins_are_zero(path):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = 3.0  # a tie in one bin: row-major first (1, 2) wins
    boxes = np.array([[0, 0.0, 0.0, 3.0, 3.0], [0, 6.0, 6.0, 9.0, 9.0]])  # the second is off the map
    xt = _t(x, True)
    out = roi_pool(xt, _t(boxes), 1)
    np.testing.assert_array_equal(out.data.ravel(), [3.0, 0.0])
    out.sum().backward()
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 1, 2] = 1.0
    np.testing.assert_array_equal(xt.grad.data, expected)


def test_roi_pool_rounds_half_away_from_zero(path):
    """x1 * scale = 2.5 rounds to 3 (C's round), not 2 (NumPy's round-half-to-even)."""
    x = -np.arange(36.0).reshape(1, 1, 6, 6)  # the max of a window is at its top-left corner
    out = roi_pool(_t(x), _t(np.array([[0, 5.0, 5.0, 11.0, 11.0]])), 1, spatial_scale=0.5).data
    # start = round(2.5) = 3, end = round(5.5) = 6 -> rows/cols 3..5 (clipped): max at (3, 3)
    assert out.item() == x[0, 0, 3, 3]
    out = roi_pool(_t(x), _t(np.array([[0, 5.0, 5.0, 5.0, 5.0]])), 1, spatial_scale=0.5).data
    assert out.item() == x[0, 0, 3, 3]  # a single pixel at (3, 3), inclusive end
    # float32 0.49999997 rounds to 0 (floor(v + 0.5) in float32 would give 1)
    x32 = x.astype(np.float32)
    just_below = np.float32(0.49999997)
    out = roi_pool(_t(x32), _t(np.array([[0, just_below, just_below, 2, 2]], np.float32)), 1).data
    assert out.item() == x32[0, 0, 0, 0]


def test_roi_pool_hand_computed_bins(path):
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    # box 0..4 -> 5 pixels, 2 bins: [floor(0), ceil(2.5)) = [0, 3) and [floor(2.5), ceil(5)) = [2, 5): overlap
    out = roi_pool(_t(x), _t(np.array([[0, 0.0, 0.0, 4.0, 4.0]])), 2).data[0, 0]
    np.testing.assert_array_equal(out, [[12.0, 14.0], [22.0, 24.0]])


def test_roi_pool_gradcheck(path):
    x = _t(rng.permutation(40).reshape(1, 2, 4, 5) * 0.1, True)  # distinct values: no ties
    boxes = _t(pool_rois(3, 1, 4, 5, 1.0))
    assert gradcheck(lambda t: roi_pool(t, boxes, 2), (x,), mode="full")


# ----------------------------------------------------------------------------------------------- layers
def test_layers_match_functions():
    x = _t(rng.standard_normal((2, 3, 8, 8)))
    boxes = _t(rois(5, 2, 8, 8, 0.5))
    np.testing.assert_array_equal(RoIAlign((2, 3), 0.5, 2)(x, boxes).data, roi_align(x, boxes, (2, 3), 0.5, 2).data)
    np.testing.assert_array_equal(RoIPool(3, 0.5)(x, boxes).data, roi_pool(x, boxes, 3, 0.5).data)
    assert "sampling_ratio=2" in repr(RoIAlign((2, 3), 0.5, 2))


def test_multiscale_roi_align_routes_boxes_to_fpn_levels():
    feats = {"p2": _t(rng.standard_normal((1, 2, 64, 64)), True), "p3": _t(rng.standard_normal((1, 2, 32, 32))),
             "pool": _t(rng.standard_normal((1, 2, 16, 16)))}
    boxes = [_t(np.array([[10.0, 10.0, 40.0, 40.0],      # sqrt(area) 30 -> level 4 + log2(30/224) -> 1 -> p2
                          [0.0, 0.0, 200.0, 200.0],      # 200 -> floor(3.84) = 3 -> p3
                          [5.0, 5.0, 60.0, 80.0]]))]     # ~64 -> floor(2.2) -> 2 -> p2
    layer = MultiScaleRoIAlign(["p2", "p3"], 2, 2)
    out = layer(feats, boxes, [(256, 256)])
    assert out.shape == (3, 2, 2, 2)
    b = boxes[0].data
    np.testing.assert_allclose(out.data[[0, 2]], roi_align(feats["p2"], [_t(b[[0, 2]])], 2, 0.25, 2).data)
    np.testing.assert_allclose(out.data[[1]], roi_align(feats["p3"], [_t(b[[1]])], 2, 0.125, 2).data)
    out.sum().backward()
    assert feats["p2"].grad is not None and np.any(feats["p2"].grad.data)
    # a single level is plain roi_align
    single = MultiScaleRoIAlign(["p3"], 2, 2)(feats, boxes, [(256, 256)])
    np.testing.assert_allclose(single.data, roi_align(feats["p3"], boxes, 2, 0.125, 2).data)


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("fn", [roi_align, roi_pool])
def test_errors(fn):
    x = _t(np.zeros((2, 3, 5, 5)))
    with pytest.raises(ShapeError, match=r"\(K, 5\)"):
        fn(x, _t(np.zeros((3, 4))), 2)
    with pytest.raises(ShapeError, match=r"boxes\[1\].*\(K_i, 4\)"):
        fn(x, [_t(np.zeros((1, 4))), _t(np.zeros((2, 5)))], 2)
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        fn(_t(np.zeros((3, 5, 5))), _t(np.zeros((1, 5))), 2)
    with pytest.raises(IndexOutOfRangeError, match="batch index"):
        fn(x, _t(np.array([[2.0, 0, 0, 1, 1]])), 2)
    with pytest.raises(IndexOutOfRangeError, match="integers"):
        fn(x, _t(np.array([[0.5, 0, 0, 1, 1]])), 2)
    with pytest.raises(ArgumentError, match="output_size"):
        fn(x, _t(np.zeros((1, 5))), (0, 2))
    with pytest.raises(ArgumentError, match="output_size"):
        fn(x, _t(np.zeros((1, 5))), -3)
    with pytest.raises(ArgumentError, match="spatial_scale"):
        fn(x, _t(np.zeros((1, 5))), 2, 0.0)
    with pytest.raises(ArgumentError, match="NaN or infinite"):
        fn(x, _t(np.array([[0, 0, 0, np.nan, 1]])), 2)
    with pytest.raises(DTypeError, match="boxes must be a float"):
        fn(x, shendu.tensor([[0, 0, 0, 1, 1]]), 2)
    with pytest.raises(DTypeError, match="input must be a float"):
        fn(shendu.zeros(1, 1, 3, 3, dtype=shendu.int64), _t(np.zeros((1, 5))), 2)


def test_roi_align_sampling_ratio_must_be_int():
    with pytest.raises(ArgumentError, match="sampling_ratio"):
        roi_align(_t(np.zeros((1, 1, 4, 4))), _t(np.zeros((1, 5))), 2, sampling_ratio=1.5)
