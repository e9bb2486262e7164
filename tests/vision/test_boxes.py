"""Box utilities and NMS: hand-computed values, conversions, degenerate boxes, and NMS / batched NMS
against torchvision's C++ kernel transcribed as a scalar loop (both the numba kernel and the NumPy
reference). Gradients of the box functions against torch: tests/opspecs/vision.py."""

import itertools

import numpy as np
import pytest

import shendu
from shendu.errors import ArgumentError, DTypeError, ShapeError
from shendu.vision.ops import (
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    nms,
    remove_small_boxes,
)
from shendu.vision.ops import boxes as box_module

rng = np.random.default_rng(11)


def _t(a, grad=False):
    return shendu.from_numpy(np.asarray(a)).requires_grad_(grad)


def random_boxes(n, spread=100.0, low=2.0, high=30.0, dtype=np.float64):
    xy = rng.uniform(0, spread, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(low, high, (n, 2))], axis=1).astype(dtype)


# ----------------------------------------------------------------------------------- conversion, area
def test_box_convert_hand_values_and_round_trips():
    xyxy = np.array([[1.0, 2.0, 5.0, 10.0]])
    np.testing.assert_array_equal(box_convert(_t(xyxy), "xyxy", "xywh").data, [[1, 2, 4, 8]])
    np.testing.assert_array_equal(box_convert(_t(xyxy), "xyxy", "cxcywh").data, [[3, 6, 4, 8]])
    np.testing.assert_array_equal(box_convert(_t([[3.0, 6.0, 4.0, 8.0]]), "cxcywh", "xywh").data, [[1, 2, 4, 8]])
    b = random_boxes(20)
    for a, c in itertools.permutations(["xyxy", "xywh", "cxcywh"], 2):
        there = box_convert(_t(b), "xyxy", a)
        back = box_convert(box_convert(there, a, c), c, "xyxy")
        np.testing.assert_allclose(back.data, b, rtol=1e-12, atol=1e-12)


def test_box_convert_same_format_is_a_copy_and_keeps_dtype():
    b = _t(random_boxes(3, dtype=np.float32))
    out = box_convert(b, "xywh", "xywh")
    assert out.dtype == np.float32 and out.data is not b.data
    np.testing.assert_array_equal(out.data, b.data)
    assert box_convert(shendu.tensor([[0, 0, 2, 2]]), "xyxy", "cxcywh").tolist() == [[1.0, 1.0, 2.0, 2.0]]


def test_box_area_and_iou_by_hand():
    a = _t([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = _t([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    np.testing.assert_array_equal(box_area(a).data, [4.0, 1.0])
    # (0,0,2,2) vs (1,1,3,3): inter 1, union 7; vs itself 1; disjoint 0; (0,0,1,1) inside (0,0,2,2): 1/4
    np.testing.assert_allclose(box_iou(a, b).data, [[1 / 7, 1.0, 0.0], [0.0, 0.25, 0.0]])
    # GIoU: enclosing box of (0,0,2,2) and (1,1,3,3) is 3x3 = 9 -> 1/7 - (9 - 7)/9
    np.testing.assert_allclose(generalized_box_iou(a, b).data[0, :2], [1 / 7 - 2 / 9, 1.0])
    # disjoint (0,0,2,2), (5,5,6,6): union 5, enclosing 36 -> -31/36
    np.testing.assert_allclose(generalized_box_iou(a, b).data[0, 2], -31 / 36)


def test_iou_continuous_coordinates_no_plus_one():
    """Two 1-pixel boxes side by side do not overlap (VOC's +1 convention would say they touch)."""
    iou = box_iou(_t([[0.0, 0.0, 1.0, 1.0]]), _t([[1.0, 0.0, 2.0, 1.0]]))
    assert iou.item() == 0.0


def test_degenerate_boxes_give_zero_not_nan():
    point = _t([[3.0, 3.0, 3.0, 3.0]], grad=True)
    iou = box_iou(point, point)
    giou = generalized_box_iou(point, point)
    assert iou.item() == 0.0 and giou.item() == 0.0  # torchvision: NaN
    (iou.sum() + giou.sum()).backward()
    assert np.all(np.isfinite(point.grad.data))


def test_box_iou_is_differentiable():
    a = _t(random_boxes(3), grad=True)
    b = _t(random_boxes(4, spread=20), grad=True)
    box_iou(a, b).sum().backward()
    assert a.grad is not None and b.grad is not None and a.grad.shape == (3, 4)


def test_iou_against_pairwise_loop():
    a, b = random_boxes(7, spread=30), random_boxes(5, spread=30)
    want = np.zeros((7, 5))
    for i, j in itertools.product(range(7), range(5)):
        w = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
        h = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        want[i, j] = w * h / (area(a[i]) + area(b[j]) - w * h)
    np.testing.assert_allclose(box_iou(_t(a), _t(b)).data, want, rtol=1e-12)


def test_clip_and_remove_small():
    b = _t([[-5.0, -1.0, 50.0, 20.0], [3.0, 4.0, 3.5, 40.0]])
    np.testing.assert_array_equal(clip_boxes_to_image(b, (30, 40)).data, [[0, 0, 40, 20], [3, 4, 3.5, 30]])
    assert remove_small_boxes(b, 1.0).tolist() == [0]
    assert remove_small_boxes(b, 0.5).tolist() == [0, 1]  # >= min_size keeps the 0.5-wide box
    assert remove_small_boxes(b, 100.0).dtype == np.int64


def test_box_errors():
    with pytest.raises(ShapeError, match=r"box_iou: boxes1 must have shape \(N, 4\), got \(3, 5\)"):
        box_iou(_t(np.zeros((3, 5))), _t(np.zeros((2, 4))))
    with pytest.raises(ArgumentError, match="unsupported in_fmt 'xyzw'"):
        box_convert(_t(np.zeros((1, 4))), "xyzw", "xyxy")
    with pytest.raises(DTypeError, match="float32 but boxes2 is float64"):
        box_iou(_t(np.zeros((1, 4), np.float32)), _t(np.zeros((1, 4))))
    with pytest.raises(ArgumentError, match=r"\(height, width\)"):
        clip_boxes_to_image(_t(np.zeros((1, 4))), (10,))


# ---------------------------------------------------------------------------------------------- NMS
def nms_loop(boxes, scores, iou_threshold):
    """torchvision's nms_kernel_impl (csrc/ops/cpu/nms_kernel.cpp), scalar, in the boxes' dtype."""
    T = boxes.dtype.type
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # Python's sort is stable
    suppressed = [False] * len(scores)
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for _i, i in enumerate(order):
            if suppressed[i]:
                continue
            keep.append(i)
            for j in order[_i + 1:]:
                if suppressed[j]:
                    continue
                w = max(T(0), min(x2[i], x2[j]) - max(x1[i], x1[j]))
                h = max(T(0), min(y2[i], y2[j]) - max(y1[i], y1[j]))
                inter = w * h
                if float(inter / (areas[i] + areas[j] - inter)) > iou_threshold:
                    suppressed[j] = True
    return keep


@pytest.fixture(params=[True, False], ids=["numba", "numpy"])
def path(request, monkeypatch):
    if request.param and not box_module.USE_NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(box_module, "USE_NUMBA", request.param)
    return request.param


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_kernel_loop(path, thr, dtype):
    boxes = random_boxes(150, spread=80, dtype=dtype)
    scores = rng.random(150).astype(dtype)
    keep = nms(_t(boxes), _t(scores), thr)
    assert keep.dtype == np.int64
    assert keep.tolist() == nms_loop(boxes, scores, thr)


def test_nms_kept_boxes_are_sorted_and_do_not_overlap(path):
    boxes = random_boxes(500, spread=200)
    scores = rng.random(500)
    keep = nms(_t(boxes), _t(scores), 0.4).data
    assert np.all(np.diff(scores[keep]) <= 0)
    iou = box_iou(_t(boxes[keep]), _t(boxes[keep])).data
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.4
    # every suppressed box overlaps some kept box with a higher score by more than the threshold
    dropped = np.setdiff1d(np.arange(500), keep)
    over = box_iou(_t(boxes[dropped]), _t(boxes[keep])).data > 0.4
    higher = scores[keep][None, :] >= scores[dropped][:, None]
    assert np.all((over & higher).any(axis=1))


def test_nms_threshold_is_strict(path):
    # (0,0,2,2) and (1,0,3,2): IoU exactly 2/6 = 1/3 in binary? Use an exactly representable 0.5 instead:
    # (0,0,4,2) and (0,0,2,2): inter 4, union 8 -> IoU 0.5 exactly
    boxes = _t([[0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    scores = _t([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]  # IoU == threshold survives
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_nms_float32_iou_compared_in_double(path):
    """IoU 1/3 in float32 (0.33333334) is above the double threshold 1/3: suppressed, as in torchvision."""
    boxes = np.array([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]], np.float32)  # inter 1, union 3
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(_t(boxes), _t(scores), 1 / 3).tolist() == nms_loop(boxes, scores, 1 / 3) == [0]
    assert nms(_t(boxes.astype(np.float64)), _t(scores.astype(np.float64)), 1 / 3).tolist() == [0, 1]


def test_nms_equal_scores_keep_input_order(path):
    boxes = _t([[0.0, 0.0, 10.0, 10.0], [0.5, 0.5, 10.0, 10.0], [0.0, 0.0, 9.5, 9.5], [50.0, 50.0, 60.0, 60.0]])
    scores = _t([0.5, 0.5, 0.5, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    scores = _t([0.5, 0.7, 0.7, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]


def test_nms_edge_cases(path):
    empty = nms(_t(np.zeros((0, 4))), _t(np.zeros(0)), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64
    assert nms(_t([[0.0, 0.0, 1.0, 1.0]]), _t([0.3]), 0.5).tolist() == [0]
    # identical boxes: IoU 1 > 0.99 suppresses, never > 1.0
    same = _t([[1.0, 1.0, 4.0, 4.0]] * 3)
    assert nms(same, _t([0.1, 0.3, 0.2]), 0.99).tolist() == [1]
    assert nms(same, _t([0.1, 0.3, 0.2]), 1.0).tolist() == [1, 2, 0]
    # degenerate boxes: 0/0 is NaN, never above the threshold, nothing suppressed
    points = _t([[2.0, 2.0, 2.0, 2.0]] * 2)
    assert nms(points, _t([0.5, 0.4]), 0.0).tolist() == [0, 1]
    # a negative threshold suppresses every later box, overlapping or not (torchvision's rule)
    far = _t([[0.0, 0.0, 1.0, 1.0], [10.0, 10.0, 11.0, 11.0]])
    assert nms(far, _t([0.5, 0.9]), -0.1).tolist() == [1]


def test_nms_large_and_wide_boxes(path):
    """Boxes of very different widths (the candidate search uses the widest one)."""
    boxes = np.concatenate([random_boxes(200, spread=500, low=1, high=5),
                            random_boxes(20, spread=500, low=100, high=400)])
    scores = rng.random(220)
    assert nms(_t(boxes), _t(scores), 0.1).tolist() == nms_loop(boxes, scores, 0.1)


def test_nms_errors():
    with pytest.raises(ShapeError, match=r"nms: boxes must have shape \(N, 4\), got \(3, 5\)"):
        nms(_t(np.zeros((3, 5))), _t(np.zeros(3)), 0.5)
    with pytest.raises(ShapeError, match=r"scores must have shape \(N,\) = \(3,\)"):
        nms(_t(np.zeros((3, 4))), _t(np.zeros(4)), 0.5)
    with pytest.raises(DTypeError, match="float"):
        nms(shendu.tensor([[0, 0, 1, 1]]), _t([0.5]), 0.5)
    with pytest.raises(ArgumentError, match="iou_threshold must be a number"):
        nms(_t(np.zeros((1, 4))), _t([0.5]), "0.5")
    with pytest.raises(ShapeError, match="idxs must have shape"):
        batched_nms(_t(np.zeros((2, 4))), _t([0.5, 0.4]), _t(np.array([0])), 0.5)
    with pytest.raises(DTypeError, match="integer category"):
        batched_nms(_t(np.zeros((1, 4))), _t([0.5]), _t([0.0]), 0.5)


def batched_nms_loop(boxes, scores, idxs, thr):
    """NMS per class with the loop, merged and sorted by decreasing score (stable)."""
    kept = []
    for c in np.unique(idxs):
        members = np.nonzero(idxs == c)[0]
        kept += [members[k] for k in nms_loop(boxes[members], scores[members], thr)]
    return sorted(kept, key=lambda i: (-scores[i], i))


@pytest.mark.parametrize("shift", [0.0, -80.0], ids=["positive", "negative_coordinates"])
def test_batched_nms_is_per_class(path, shift):
    boxes = random_boxes(400, spread=100) + shift  # integer-free coordinates, heavy overlap
    scores = rng.random(400)
    idxs = rng.integers(0, 5, 400)
    keep = batched_nms(_t(boxes), _t(scores), _t(idxs), 0.5)
    assert keep.tolist() == batched_nms_loop(boxes, scores, idxs, 0.5)
    # same boxes in two classes never suppress each other
    two = _t(np.array([[0.0, 0.0, 5.0, 5.0]] * 2) + shift)
    assert batched_nms(two, _t([0.9, 0.8]), _t(np.array([0, 1])), 0.1).tolist() == [0, 1]
    assert batched_nms(two, _t([0.9, 0.8]), _t(np.array([2, 2])), 0.1).tolist() == [0]


def test_batched_nms_empty():
    out = batched_nms(_t(np.zeros((0, 4))), _t(np.zeros(0)), _t(np.zeros(0, np.int64)), 0.5)
    assert out.shape == (0,) and out.dtype == np.int64
