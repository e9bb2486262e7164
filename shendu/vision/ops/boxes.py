"""Boxes for detection: format conversion, area, IoU and generalized IoU, clipping, small-box removal,
and greedy non-maximum suppression — torchvision.ops names, argument order and defaults.

Conventions (also in docs/vision.md):

- A box is ``(x1, y1, x2, y2)`` ("xyxy", torchvision's default) in **continuous coordinates, no +1**:
  ``width = x2 - x1``. The PASCAL VOC devkit and Caffe-era code count inclusive pixels
  (``x2 - x1 + 1``); shendu does not.
- ``box_convert``, ``box_area``, ``box_iou``, ``generalized_box_iou`` and ``clip_boxes_to_image`` are
  compositions of Tensor ops, so gradients flow through them (a GIoU loss works out of the box).
  Integer boxes are converted to the default float dtype first.
- The IoU of two boxes whose union is empty (both degenerate) is 0, not torchvision's NaN;
  likewise GIoU falls back to the IoU when the enclosing box is empty.
- ``nms``, ``batched_nms`` and ``remove_small_boxes`` return int64 index tensors (no gradient).

NMS is the standard greedy loop over kept boxes. It runs as a numba kernel: torchvision's C++ kernel
transcribed, except that each kept box visits only the boxes that can overlap it along x (found by a
sort on x1 and a binary search, so the IoUs it computes are the same, just fewer of them). The NumPy
version — one vectorized IoU row per kept box over all boxes still alive — is the reference the tests
compare it with and the fallback without numba. Set ``USE_NUMBA = False`` to force it.
"""

from __future__ import annotations

import numbers

import numpy as np

from shendu import backend
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape
from shendu.ops._util import as_tensor_arg
from shendu.ops.elementwise import clamp, maximum, minimum, where
from shendu.ops.shape import stack

try:  # numba is the accepted escape hatch for the sequential greedy loop; NumPy remains the reference
    from numba import njit

    USE_NUMBA = True
except ImportError:  # pragma: no cover - numba is installed where shendu is tested
    njit = None
    USE_NUMBA = False

__all__ = ["box_convert", "box_area", "box_iou", "generalized_box_iou", "clip_boxes_to_image",
           "remove_small_boxes", "nms", "batched_nms"]

_FORMATS = ("xyxy", "xywh", "cxcywh")


# ------------------------------------------------------------------------------------------ arguments
def _float_boxes(op: str, boxes, name: str = "boxes", any_leading: bool = False) -> Tensor:
    """``boxes`` as a float Tensor of shape (N, 4) (or (..., 4) when ``any_leading``)."""
    t = as_tensor_arg(boxes)
    ok = t.ndim >= 1 and t.shape[-1] == 4 if any_leading else t.ndim == 2 and t.shape[1] == 4
    if not ok:
        want = "(..., 4)" if any_leading else "(N, 4)"
        raise ShapeError(f"{op}: {name} must have shape {want}, got {fmt_shape(t.shape)}; one box per row as "
                         "(x1, y1, x2, y2)")
    if t.dtype.kind in "iub":
        t = t.to(backend.get_default_dtype())
    elif t.dtype.kind != "f":
        raise DTypeError(f"{op}: {name} must be a float tensor, got dtype {t.dtype}")
    return t


def _columns(b: Tensor):
    return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


# ------------------------------------------------------------------------------------- conversion, area
def box_convert(boxes, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between ``'xyxy'`` (corners), ``'xywh'`` (top-left corner, width, height) and
    ``'cxcywh'`` (centre, width, height), going through xyxy as torchvision does:

    ``xywh -> xyxy: (x, y, x + w, y + h)``; ``cxcywh -> xyxy: (cx - w/2, cy - h/2, cx + w/2, cy + h/2)``;
    ``xyxy -> xywh: (x1, y1, x2 - x1, y2 - y1)``; ``xyxy -> cxcywh: ((x1 + x2)/2, (y1 + y2)/2, x2 - x1, y2 - y1)``.

    Shapes: ``(..., 4) -> (..., 4)``. Differentiable.

    >>> import shendu
    >>> from shendu.vision.ops import box_convert
    >>> box_convert(shendu.tensor([[10.0, 20.0, 4.0, 6.0]]), "cxcywh", "xyxy").tolist()
    [[8.0, 17.0, 12.0, 23.0]]
    """
    for which, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in _FORMATS:
            raise ArgumentError(f"box_convert: unsupported {which} {fmt!r}; expected one of {', '.join(_FORMATS)}")
    b = _float_boxes("box_convert", boxes, any_leading=True)
    if in_fmt == out_fmt:
        return b.clone()
    a0, a1, a2, a3 = _columns(b)
    if in_fmt == "xywh":
        a0, a1, a2, a3 = a0, a1, a0 + a2, a1 + a3
    elif in_fmt == "cxcywh":
        a0, a1, a2, a3 = a0 - 0.5 * a2, a1 - 0.5 * a3, a0 + 0.5 * a2, a1 + 0.5 * a3
    # now (a0, a1, a2, a3) = (x1, y1, x2, y2)
    if out_fmt == "xywh":
        a0, a1, a2, a3 = a0, a1, a2 - a0, a3 - a1
    elif out_fmt == "cxcywh":
        a0, a1, a2, a3 = (a0 + a2) / 2, (a1 + a3) / 2, a2 - a0, a3 - a1
    return stack([a0, a1, a2, a3], dim=-1)


def box_area(boxes) -> Tensor:
    """Area of xyxy boxes: ``(x2 - x1) * (y2 - y1)`` (continuous coordinates, no +1).

    Shapes: ``(N, 4) -> (N,)``. Differentiable.

    >>> import shendu
    >>> from shendu.vision.ops import box_area
    >>> box_area(shendu.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.5, 2.0]])).tolist()
    [6.0, 0.5]
    """
    b = _float_boxes("box_area", boxes)
    x1, y1, x2, y2 = _columns(b)
    return (x2 - x1) * (y2 - y1)


def _inter_union(op: str, boxes1, boxes2):
    b1 = _float_boxes(op, boxes1, "boxes1")
    b2 = _float_boxes(op, boxes2, "boxes2")
    if b1.dtype != b2.dtype:
        raise DTypeError(f"{op}: boxes1 is {b1.dtype} but boxes2 is {b2.dtype}; convert one with .to()")
    lt = maximum(b1[:, None, :2], b2[None, :, :2])  # (N, M, 2) top-left of the intersection
    rb = minimum(b1[:, None, 2:], b2[None, :, 2:])
    wh = clamp(rb - lt, min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(b1)[:, None] + box_area(b2)[None, :] - inter
    return b1, b2, inter, union


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else 0 (no NaN in the value or the gradient)."""
    pos = den > 0
    return where(pos, num / where(pos, den, 1.0), 0.0)


def box_iou(boxes1, boxes2) -> Tensor:
    """Pairwise intersection over union of two sets of xyxy boxes:
    ``IoU = inter / (area1 + area2 - inter)`` with ``inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1))``.
    Pairs with an empty union (two degenerate boxes) get 0.

    Shapes: ``(N, 4), (M, 4) -> (N, M)``. Differentiable in both sets of boxes.

    >>> import shendu
    >>> from shendu.vision.ops import box_iou
    >>> a = shendu.tensor([[0.0, 0.0, 2.0, 2.0]])
    >>> box_iou(a, shendu.tensor([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])).tolist()
    [[0.3333333432674408, 0.0]]
    """
    _, _, inter, union = _inter_union("box_iou", boxes1, boxes2)
    return _safe_ratio(inter, union)


def generalized_box_iou(boxes1, boxes2) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al., CVPR 2019): ``GIoU = IoU - (C - union) / C`` where
    ``C`` is the area of the smallest box enclosing both. In [-1, 1]; where ``C`` is 0, GIoU = IoU.

    Shapes: ``(N, 4), (M, 4) -> (N, M)``. Differentiable.

    >>> import shendu
    >>> from shendu.vision.ops import generalized_box_iou
    >>> generalized_box_iou(shendu.tensor([[0.0, 0.0, 1.0, 1.0]]), shendu.tensor([[2.0, 0.0, 3.0, 1.0]])).tolist()
    [[-0.3333333432674408]]
    """
    b1, b2, inter, union = _inter_union("generalized_box_iou", boxes1, boxes2)
    iou = _safe_ratio(inter, union)
    lt = minimum(b1[:, None, :2], b2[None, :, :2])
    rb = maximum(b1[:, None, 2:], b2[None, :, 2:])
    wh = clamp(rb - lt, min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - _safe_ratio(enclosing - union, enclosing)


def clip_boxes_to_image(boxes, size) -> Tensor:
    """Clip xyxy boxes to an image of ``size = (height, width)``: x into [0, width], y into [0, height].

    Shapes: ``(..., 4) -> (..., 4)``. Differentiable (gradient 0 where a coordinate was clipped).

    >>> import shendu
    >>> from shendu.vision.ops import clip_boxes_to_image
    >>> clip_boxes_to_image(shendu.tensor([[-3.0, 2.0, 50.0, 40.0]]), (30, 40)).tolist()
    [[0.0, 2.0, 40.0, 30.0]]
    """
    if len(size) != 2 or any(not isinstance(s, numbers.Real) or s < 0 for s in size):
        raise ArgumentError(f"clip_boxes_to_image: size must be (height, width) with non-negative values, "
                            f"got {size!r}")
    b = _float_boxes("clip_boxes_to_image", boxes, any_leading=True)
    height, width = size
    xp = get_array_module(b.data)
    upper = Tensor(xp.asarray([width, height, width, height], dtype=b.dtype))
    return clamp(b, min=0, max=upper)


def remove_small_boxes(boxes, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both ``>= min_size``.

    Shapes: ``(N, 4) -> (K,)`` int64.

    >>> import shendu
    >>> from shendu.vision.ops import remove_small_boxes
    >>> remove_small_boxes(shendu.tensor([[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 0.5, 9.0]]), 1.0).tolist()
    [0]
    """
    b = _float_boxes("remove_small_boxes", boxes).data
    xp = get_array_module(b)
    keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    return Tensor(xp.nonzero(keep)[0].astype(xp.int64))


# ---------------------------------------------------------------------------------------------- NMS
def _nms_args(op: str, boxes, scores):
    b = boxes.data if isinstance(boxes, Tensor) else np.asarray(boxes)
    s = scores.data if isinstance(scores, Tensor) else np.asarray(scores)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ShapeError(f"{op}: boxes must have shape (N, 4), got {fmt_shape(b.shape)}; one (x1, y1, x2, y2) "
                         "box per row")
    if s.ndim != 1 or s.shape[0] != b.shape[0]:
        raise ShapeError(f"{op}: scores must have shape (N,) = ({b.shape[0]},) to match boxes "
                         f"{fmt_shape(b.shape)}, got {fmt_shape(s.shape)}")
    if b.dtype.kind != "f" or s.dtype.kind != "f":
        raise DTypeError(f"{op}: boxes and scores must be float tensors, got {b.dtype} and {s.dtype}")
    return b, s


def _check_threshold(op: str, iou_threshold) -> float:
    if not isinstance(iou_threshold, numbers.Real):
        raise ArgumentError(f"{op}: iou_threshold must be a number, got {type(iou_threshold).__name__}")
    return float(iou_threshold)


def nms_sorted_numpy(x1, y1, x2, y2, areas, iou_threshold: float):
    """Greedy NMS over boxes already sorted by decreasing score; returns the kept positions.

    One step per kept box: the IoU of that box with every box still alive, in one vectorized pass.
    The arithmetic is done in the boxes' dtype, and the comparison ``IoU > threshold`` in float64,
    exactly as torchvision's C++ kernel (a float32 IoU is compared with a double threshold).
    """
    xp = get_array_module(x1)
    alive = xp.arange(x1.shape[0])
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 for degenerate pairs: NaN, never suppressed
        while alive.size:
            i, rest = alive[0], alive[1:]
            keep.append(i)
            w = xp.minimum(x2[i], x2[rest]) - xp.maximum(x1[i], x1[rest])
            h = xp.minimum(y2[i], y2[rest]) - xp.maximum(y1[i], y1[rest])
            w = xp.where(w > 0, w, 0)  # std::max(0, w): NaN -> 0 like the C++ kernel
            h = xp.where(h > 0, h, 0)
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            alive = rest[~(iou.astype(xp.float64) > iou_threshold)]
    return xp.asarray(keep, dtype=xp.int64)


if USE_NUMBA:
    # error_model="numpy": 0/0 gives NaN (never suppressed) instead of raising ZeroDivisionError
    @njit(cache=True, nogil=True, error_model="numpy")
    def _nms_sorted_numba(x1, y1, x2, y2, areas, iou_threshold, zero, by_x, lo, hi):  # pragma: no cover
        n = x1.shape[0]
        suppressed = np.zeros(n, np.bool_)
        keep = np.empty(n, np.int64)
        n_keep = 0
        for i in range(n):
            if suppressed[i]:
                continue
            keep[n_keep] = i
            n_keep += 1
            ix1, iy1, ix2, iy2, iarea = x1[i], y1[i], x2[i], y2[i], areas[i]
            for t in range(lo[i], hi[i]):  # the candidates that can overlap box i (see _candidates)
                j = by_x[t]
                if j <= i or suppressed[j]:
                    continue
                w = min(ix2, x2[j]) - max(ix1, x1[j])
                h = min(iy2, y2[j]) - max(iy1, y1[j])
                if not w > zero:  # `zero` has the boxes' dtype, so float32 stays float32
                    w = zero
                if not h > zero:
                    h = zero
                inter = w * h
                if inter / (iarea + areas[j] - inter) > iou_threshold:
                    suppressed[j] = True
        return keep[:n_keep]


def _candidates(x1, x2, iou_threshold: float):
    """For each box i, the boxes that can overlap it in x, as a range ``[lo[i], hi[i])`` of ``by_x`` (the
    boxes sorted by x1): box j needs ``x1_i - widest < x1_j < x2_i``, ``widest`` being the largest box
    width; any other box has zero intersection, so IoU 0 (or NaN), never above a threshold >= 0. The
    lower bound is widened a little so float rounding can only add candidates, never drop one.
    With a negative threshold or non-finite coordinates every later box is a candidate."""
    n = x1.shape[0]
    if iou_threshold < 0 or not (np.isfinite(x1).all() and np.isfinite(x2).all()):
        return np.arange(n), np.arange(1, n + 1), np.full(n, n)
    by_x = np.argsort(x1, kind="stable")
    xs = x1[by_x].astype(np.float64)
    left = x1.astype(np.float64)
    widest = max(float((x2.astype(np.float64) - left).max()), 0.0)
    margin = 1e-6 * (np.abs(left) + widest) + 1e-30
    lo = np.searchsorted(xs, left - widest - margin, side="left")
    hi = np.searchsorted(x1[by_x], x2, side="left")  # x1_j < x2_i, compared in the boxes' dtype
    return by_x, lo, hi


def _nms_sorted(x1, y1, x2, y2, areas, iou_threshold: float):
    if USE_NUMBA and isinstance(x1, np.ndarray):
        return _nms_sorted_numba(x1, y1, x2, y2, areas, iou_threshold, x1.dtype.type(0),
                                 *_candidates(x1, x2, iou_threshold))
    return nms_sorted_numpy(x1, y1, x2, y2, areas, iou_threshold)


def nms(boxes, scores, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression (torchvision's ``nms``): visit boxes by decreasing score
    (stable sort, so equal scores keep their input order), keep a box unless a kept box overlaps it
    with ``IoU > iou_threshold`` (strictly greater: IoU equal to the threshold survives).

    Shapes: boxes ``(N, 4)`` xyxy, scores ``(N,)`` -> int64 ``(K,)`` indices of the kept boxes, sorted by
    decreasing score. No gradient.

    >>> import shendu
    >>> from shendu.vision.ops import nms
    >>> boxes = shendu.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    >>> nms(boxes, shendu.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]
    """
    b, s = _nms_args("nms", boxes, scores)
    thr = _check_threshold("nms", iou_threshold)
    xp = get_array_module(b)
    if b.shape[0] == 0:
        return Tensor(xp.zeros((0,), dtype=xp.int64))
    order = xp.argsort(-s, kind="stable")
    coords = xp.ascontiguousarray(b[order].T)  # 4 rows x1, y1, x2, y2 in score order
    x1, y1, x2, y2 = coords
    areas = (x2 - x1) * (y2 - y1)
    return Tensor(order[_nms_sorted(x1, y1, x2, y2, areas, thr)].astype(xp.int64))


def batched_nms(boxes, scores, idxs, iou_threshold: float) -> Tensor:
    """NMS applied independently per category ``idxs``: boxes of different categories never suppress
    each other. Done with torchvision's coordinate trick — shift each box by
    ``idx * (max_coordinate + 1)`` so that categories cannot overlap, then one :func:`nms` call.
    If some coordinate is negative, the boxes are first translated so that the smallest is 0
    (torchvision assumes coordinates >= 0; the translation leaves the IoUs unchanged).

    Shapes: boxes ``(N, 4)``, scores ``(N,)``, idxs ``(N,)`` integers -> int64 ``(K,)`` kept indices by
    decreasing score. No gradient.

    >>> import shendu
    >>> from shendu.vision.ops import batched_nms
    >>> boxes = shendu.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [1.0, 1.0, 11.0, 11.0]])
    >>> batched_nms(boxes, shendu.tensor([0.9, 0.8, 0.7]), shendu.tensor([0, 0, 1]), 0.5).tolist()
    [0, 2]
    """
    b, s = _nms_args("batched_nms", boxes, scores)
    thr = _check_threshold("batched_nms", iou_threshold)
    ids = idxs.data if isinstance(idxs, Tensor) else np.asarray(idxs)
    if ids.shape != s.shape:
        raise ShapeError(f"batched_nms: idxs must have shape ({b.shape[0]},) like scores, got {fmt_shape(ids.shape)}")
    if ids.dtype.kind not in "iub":
        raise DTypeError(f"batched_nms: idxs must hold integer category indices, got dtype {ids.dtype}")
    xp = get_array_module(b)
    if b.shape[0] == 0:
        return Tensor(xp.zeros((0,), dtype=xp.int64))
    low = b.min()
    if low < 0:
        b = b - low
    offsets = ids.astype(b.dtype) * (b.max() + 1)
    return nms(b + offsets[:, None], s, thr)
