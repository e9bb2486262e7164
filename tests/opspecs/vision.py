"""Registry entries for shendu/vision/ops (boxes, box coding, RoI Align, RoI Pool).

There is no torchvision here, so:

- the box functions and the box coder are checked against torchvision's Python formulas transcribed
  in torch below (forward, and backward through torch autograd);
- ``roi_align`` and ``roi_pool`` against the plain loops below, which follow torchvision's C++ kernels
  (``csrc/ops/cpu/roi_align_kernel.cpp``, ``roi_align_common.h``, ``roi_pool_kernel.cpp``) line by line,
  doing the arithmetic in the input's dtype ``T`` as the kernels do. tests/vision/test_roi.py uses them
  too (with the backward loops there).

RoI samples: boxes partly outside the map, smaller than a bin, on and off the grid, several images;
gradients only w.r.t. the input (none flow to the boxes). RoI Pool inputs have distinct values (no ties).
"""

import math

import numpy as np

import shendu.vision.ops as V
from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, distinct, r

_rng = np.random.default_rng(2024)
FLT_MAX = float(np.finfo(np.float32).max)


# ------------------------------------------------------------------------------------- loop references
def rois_from_list(boxes):
    """torchvision's ``convert_boxes_to_roi_format``: a list of (K_i, 4) -> (K, 5) with the image index."""
    rows = [[i, *map(float, b)] for i, per_image in enumerate(boxes) for b in per_image]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def _bilinear_ref(plane, height, width, y, x):
    """roi_align_common.h: pre_calc_for_bilinear_interpolate, and the 4-term sum of the forward kernel."""
    if not (y >= -1.0 and y <= height and x >= -1.0 and x <= width):
        return 0.0, []
    if y <= 0:
        y = y * 0  # keeps T
    if x <= 0:
        x = x * 0
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = type(y)(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = type(x)(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
    taps = [(y_low, x_low, w1), (y_low, x_high, w2), (y_high, x_low, w3), (y_high, x_high, w4)]
    return sum(w * plane[h, ww] for h, ww, w in taps), taps


def roi_align_geometry(roi, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned, T):
    """Per-RoI quantities of the kernel: start, bin sizes, grid and count, in T arithmetic."""
    offset = T(0.5) if aligned else T(0.0)
    roi_start_w = T(roi[1]) * T(spatial_scale) - offset
    roi_start_h = T(roi[2]) * T(spatial_scale) - offset
    roi_end_w = T(roi[3]) * T(spatial_scale) - offset
    roi_end_h = T(roi[4]) * T(spatial_scale) - offset
    roi_width = roi_end_w - roi_start_w
    roi_height = roi_end_h - roi_start_h
    if not aligned:  # force malformed RoIs to be 1x1
        roi_width = max(roi_width, T(1.0))
        roi_height = max(roi_height, T(1.0))
    bin_size_h = roi_height / T(pooled_h)
    bin_size_w = roi_width / T(pooled_w)
    grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_height / T(pooled_h)))
    grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_width / T(pooled_w)))
    count = T(max(grid_h * grid_w, 1))
    return roi_start_h, roi_start_w, bin_size_h, bin_size_w, grid_h, grid_w, count


def roi_align_samples(roi, height, width, spatial_scale, ph, pw, pooled, sampling_ratio, aligned, T):
    """The (y, x) sample points of bin (ph, pw), in the kernel's order, and the bin's count."""
    start_h, start_w, bin_h, bin_w, grid_h, grid_w, count = roi_align_geometry(
        roi, spatial_scale, pooled[0], pooled[1], sampling_ratio, aligned, T)
    points = []
    for iy in range(grid_h):
        y = start_h + T(ph) * bin_h + T(iy + 0.5) * bin_h / T(grid_h)
        for ix in range(grid_w):
            x = start_w + T(pw) * bin_w + T(ix + 0.5) * bin_w / T(grid_w)
            points.append((y, x))
    return points, count


def roi_align_ref(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """torchvision's roi_align_forward_kernel_impl as plain loops."""
    rois = rois_from_list(boxes) if isinstance(boxes, list) else boxes
    T = input.dtype.type
    N, C, H, W = input.shape
    PH, PW = _pair(output_size)
    out = np.zeros((rois.shape[0], C, PH, PW), input.dtype)
    for n in range(rois.shape[0]):
        b = int(rois[n, 0])
        for ph in range(PH):
            for pw in range(PW):
                points, count = roi_align_samples(rois[n], H, W, spatial_scale, ph, pw, (PH, PW),
                                                  sampling_ratio, aligned, T)
                for c in range(C):
                    val = T(0.0)
                    for y, x in points:
                        val += _bilinear_ref(input[b, c], H, W, y, x)[0]
                    out[n, c, ph, pw] = val / count
    return out


def roi_align_backward_ref(grad_out, input_shape, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1,
                           aligned=False):
    """torchvision's roi_align_backward_kernel_impl: g / count to the 4 neighbours of every sample."""
    rois = rois_from_list(boxes) if isinstance(boxes, list) else boxes
    T = grad_out.dtype.type
    N, C, H, W = input_shape
    PH, PW = _pair(output_size)
    grad = np.zeros(input_shape, grad_out.dtype)
    for n in range(rois.shape[0]):
        b = int(rois[n, 0])
        for ph in range(PH):
            for pw in range(PW):
                points, count = roi_align_samples(rois[n], H, W, spatial_scale, ph, pw, (PH, PW),
                                                  sampling_ratio, aligned, T)
                for c in range(C):
                    g = grad_out[n, c, ph, pw]
                    for y, x in points:
                        for h, w, wt in _bilinear_ref(np.zeros((H, W)), H, W, y, x)[1]:
                            grad[b, c, h, w] += g * wt / count
    return grad


def c_round(v):
    """C's round(): halves away from zero, exactly (no float rounding in the test)."""
    v = float(v)  # exact for float32 and float64
    t = math.trunc(v)
    return int(t + (math.copysign(1, v) if abs(v - t) >= 0.5 else 0))


def roi_pool_ref(input, boxes, output_size, spatial_scale=1.0, return_argmax=False):
    """torchvision's roi_pool_forward_kernel_impl as plain loops (argmax flat within the plane)."""
    rois = rois_from_list(boxes) if isinstance(boxes, list) else boxes
    T = input.dtype.type
    N, C, H, W = input.shape
    PH, PW = _pair(output_size)
    K = rois.shape[0]
    out = np.zeros((K, C, PH, PW), input.dtype)
    argmax = np.full((K, C, PH, PW), -1, np.int64)
    for n in range(K):
        b = int(rois[n, 0])
        roi_start_w = c_round(T(rois[n, 1]) * T(spatial_scale))
        roi_start_h = c_round(T(rois[n, 2]) * T(spatial_scale))
        roi_end_w = c_round(T(rois[n, 3]) * T(spatial_scale))
        roi_end_h = c_round(T(rois[n, 4]) * T(spatial_scale))
        roi_width = max(roi_end_w - roi_start_w + 1, 1)
        roi_height = max(roi_end_h - roi_start_h + 1, 1)
        bin_size_h = T(roi_height) / T(PH)
        bin_size_w = T(roi_width) / T(PW)
        for ph in range(PH):
            for pw in range(PW):
                hstart = int(math.floor(T(ph) * bin_size_h))
                wstart = int(math.floor(T(pw) * bin_size_w))
                hend = int(math.ceil(T(ph + 1) * bin_size_h))
                wend = int(math.ceil(T(pw + 1) * bin_size_w))
                hstart = min(max(hstart + roi_start_h, 0), H)
                hend = min(max(hend + roi_start_h, 0), H)
                wstart = min(max(wstart + roi_start_w, 0), W)
                wend = min(max(wend + roi_start_w, 0), W)
                is_empty = hend <= hstart or wend <= wstart
                for c in range(C):
                    maxval = T(0) if is_empty else T(-FLT_MAX)
                    maxidx = -1
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            if input[b, c, h, w] > maxval:
                                maxval = input[b, c, h, w]
                                maxidx = h * W + w
                    out[n, c, ph, pw] = maxval
                    argmax[n, c, ph, pw] = maxidx
    return (out, argmax) if return_argmax else out


def roi_pool_backward_ref(grad_out, input_shape, argmax, boxes):
    """torchvision's roi_pool_backward_kernel_impl: each output gradient added at its argmax."""
    rois = rois_from_list(boxes) if isinstance(boxes, list) else boxes
    N, C, H, W = input_shape
    grad = np.zeros(input_shape, grad_out.dtype)
    K, _, PH, PW = grad_out.shape
    for n in range(K):
        b = int(rois[n, 0])
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    a = argmax[n, c, ph, pw]
                    if a != -1:
                        grad[b, c, a // W, a % W] += grad_out[n, c, ph, pw]
    return grad


# ------------------------------------------------------------------------- torchvision formulas in torch
def _tv_box_convert(torch, boxes, in_fmt, out_fmt):
    if in_fmt == "xywh":
        x, y, w, h = boxes.unbind(-1)
        boxes = torch.stack([x, y, x + w, y + h], dim=-1)
    elif in_fmt == "cxcywh":
        cx, cy, w, h = boxes.unbind(-1)
        boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    x1, y1, x2, y2 = boxes.unbind(-1)
    if out_fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)
    if out_fmt == "cxcywh":
        return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)
    return boxes


def _tv_box_area(torch, b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _tv_inter_union(torch, b1, b2):
    lt = torch.max(b1[:, None, :2], b2[:, :2])
    rb = torch.min(b1[:, None, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter, _tv_box_area(torch, b1)[:, None] + _tv_box_area(torch, b2) - inter


def _tv_box_iou(torch, b1, b2):
    inter, union = _tv_inter_union(torch, b1, b2)
    return inter / union


def _tv_giou(torch, b1, b2):
    inter, union = _tv_inter_union(torch, b1, b2)
    iou = inter / union
    lti = torch.min(b1[:, None, :2], b2[:, :2])
    rbi = torch.max(b1[:, None, 2:], b2[:, 2:])
    whi = (rbi - lti).clamp(min=0)
    areai = whi[:, :, 0] * whi[:, :, 1]
    return iou - (areai - union) / areai


def _tv_clip(torch, boxes, size):
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=boxes.dim()).reshape(boxes.shape)


def _tv_encode(torch, gt, ref, weights):
    wx, wy, ww, wh = weights
    ex_w, ex_h = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    ex_x, ex_y = ref[:, 0] + 0.5 * ex_w, ref[:, 1] + 0.5 * ex_h
    gt_w, gt_h = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gt_x, gt_y = gt[:, 0] + 0.5 * gt_w, gt[:, 1] + 0.5 * gt_h
    return torch.stack([wx * (gt_x - ex_x) / ex_w, wy * (gt_y - ex_y) / ex_h,
                        ww * torch.log(gt_w / ex_w), wh * torch.log(gt_h / ex_h)], dim=1)


def _tv_decode(torch, codes, boxes, weights, clip=math.log(1000.0 / 16)):
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ctr_x, ctr_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = codes[:, 0::4] / wx, codes[:, 1::4] / wy
    dw = torch.clamp(codes[:, 2::4] / ww, max=clip)
    dh = torch.clamp(codes[:, 3::4] / wh, max=clip)
    px, py = dx * widths[:, None] + ctr_x[:, None], dy * heights[:, None] + ctr_y[:, None]
    pw, ph = torch.exp(dw) * widths[:, None], torch.exp(dh) * heights[:, None]
    return torch.stack((px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph), dim=2).flatten(1)


def _use_torch(fn):
    """``torch_op`` from a formula taking ``(torch, *args)``."""
    return lambda m, *args, **kw: fn(m, *args, **kw)


# ------------------------------------------------------------------------------------------- samples
def boxes_xyxy(n, low=0.0, high=20.0, min_size=0.5, max_size=8.0):
    """n random xyxy boxes with continuous (tie-free) coordinates."""
    xy = _rng.uniform(low, high, (n, 2))
    wh = _rng.uniform(min_size, max_size, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def rois(K, N, H, W, scale):
    """(K, 5) RoIs in image coordinates for an (N, ., H, W) map at ``scale``: random boxes, some hanging
    over the border, one smaller than a pixel; coordinates off the integer grid."""
    x1 = _rng.uniform(-2.0, W - 1.0, K)
    y1 = _rng.uniform(-2.0, H - 1.0, K)
    w = _rng.uniform(0.3, W * 0.8, K)
    h = _rng.uniform(0.3, H * 0.8, K)
    w[0], h[0] = 0.4, 0.6  # smaller than one bin
    b = np.stack([x1, y1, x1 + w, y1 + h], axis=1) / scale + 0.0123
    idx = _rng.integers(0, N, (K, 1)).astype(np.float64)
    return np.concatenate([idx, b], axis=1)


def pool_rois(K, N, H, W, scale):
    """RoIs for RoI Pool whose scaled coordinates stay away from .5 (the rounding cut)."""
    b = rois(K, N, H, W, scale)
    scaled = b[:, 1:] * scale
    frac = scaled - np.floor(scaled)
    b[:, 1:] += np.where(np.abs(frac - 0.5) < 0.05, 0.1, 0.0) / scale
    return b


_AL = dict(grad=(0,))
_ROI_ALIGN = [
    Sample((r(2, 3, 7, 9), rois(6, 2, 7, 9, 1.0), (3, 2)), dict(sampling_ratio=2), desc="sr2", **_AL),
    Sample((r(2, 3, 8, 6), rois(5, 2, 8, 6, 0.5), 2), dict(spatial_scale=0.5), desc="adaptive_scale", **_AL),
    Sample((r(1, 2, 6, 7), rois(5, 1, 6, 7, 0.25), (2, 3)), dict(spatial_scale=0.25, sampling_ratio=3,
                                                                 aligned=True), desc="aligned_sr3", **_AL),
    Sample((r(2, 2, 9, 8), rois(4, 2, 9, 8, 1.0), 3), dict(aligned=True), desc="aligned_adaptive", **_AL),
    Sample((r(2, 3, 5, 6), [boxes_xyxy(2, -1, 5, 0.7, 4), boxes_xyxy(3, 0, 4, 0.5, 3)], (2, 2)),
           dict(sampling_ratio=1), desc="list_boxes", **_AL),
]
_ROI_POOL = [
    Sample((distinct(2, 3, 7, 9), pool_rois(6, 2, 7, 9, 1.0), (3, 2)), desc="plain", **_AL),
    Sample((distinct(1, 2, 8, 10), pool_rois(5, 1, 8, 10, 0.5), 2), dict(spatial_scale=0.5), desc="scale",
           **_AL),
    Sample((distinct(2, 2, 6, 5), [pool_rois(2, 1, 6, 5, 1.0)[:, 1:], pool_rois(3, 1, 6, 5, 1.0)[:, 1:]], (4, 3)),
           desc="list_boxes_fine_bins", **_AL),
]
_ROI_ERRORS = [
    ErrorCase((r(1, 2, 4, 4), r(3, 4), 2), exc=ShapeError, match=r"\(K, 5\)"),
    ErrorCase((r(1, 2, 4, 4), [r(3, 5)], 2), exc=ShapeError, match=r"\(K_i, 4\)"),
    ErrorCase((r(2, 4, 4), np.array([[0, 0, 0, 2, 2.0]]), 2), exc=ShapeError, match=r"\(N, C, H, W\)"),
    ErrorCase((r(1, 2, 4, 4), np.array([[1, 0, 0, 2, 2.0]]), 2), exc=IndexOutOfRangeError, match=r"\[0, 0\]"),
    ErrorCase((r(1, 2, 4, 4), np.array([[0, 0, 0, 2, 2.0]]), (2, -1)), exc=ArgumentError, match="positive"),
    ErrorCase((r(1, 2, 4, 4), np.array([[0, 0, 0, 2, 2.0]]), 2), dict(spatial_scale=-1.0), exc=ArgumentError,
              match="spatial_scale"),
    ErrorCase((np.arange(16).reshape(1, 1, 4, 4), np.array([[0, 0, 0, 2, 2.0]]), 2), exc=DTypeError,
              match="float"),
]

_B1, _B2 = boxes_xyxy(5), boxes_xyxy(4)
_BOX_ERR = [ErrorCase((r(3, 5),), exc=ShapeError, match=r"\(N, 4\)")]

SPECS = [
    OpSpec("vision.roi_align", lambda m, x, b, size, **kw: V.roi_align(x, b, size, **kw), _ROI_ALIGN,
           ref=roi_align_ref, errors=_ROI_ERRORS),
    OpSpec("vision.roi_pool", lambda m, x, b, size, **kw: V.roi_pool(x, b, size, **kw), _ROI_POOL,
           ref=roi_pool_ref, errors=_ROI_ERRORS[:4]),
    OpSpec("vision.box_convert", lambda m, b, i, o: V.box_convert(b, i, o),
           [Sample((boxes_xyxy(5), "xyxy", "cxcywh"), desc="xyxy_cxcywh"),
            Sample((boxes_xyxy(4), "xyxy", "xywh"), desc="xyxy_xywh"),
            Sample((boxes_xyxy(3), "cxcywh", "xywh"), desc="cxcywh_xywh"),
            Sample((boxes_xyxy(6).reshape(2, 3, 4), "xywh", "cxcywh"), desc="batched_xywh_cxcywh")],
           torch_op=_use_torch(_tv_box_convert),
           errors=[ErrorCase((r(3, 4), "xyxy", "yxyx"), exc=ArgumentError, match="unsupported out_fmt"),
                   ErrorCase((r(3, 3), "xyxy", "xywh"), exc=ShapeError, match=r"\(\.\.\., 4\)")]),
    OpSpec("vision.box_area", lambda m, b: V.box_area(b), [Sample((boxes_xyxy(7),))],
           torch_op=_use_torch(_tv_box_area), errors=_BOX_ERR),
    OpSpec("vision.box_iou", lambda m, a, b: V.box_iou(a, b),
           [Sample((_B1, _B2), desc="5x4"), Sample((boxes_xyxy(1, 0, 3), boxes_xyxy(6, 0, 3)), desc="1x6_dense")],
           torch_op=_use_torch(_tv_box_iou),
           errors=[ErrorCase((r(3, 4), r(2, 5)), exc=ShapeError, match=r"boxes2 must have shape \(N, 4\)")]),
    OpSpec("vision.generalized_box_iou", lambda m, a, b: V.generalized_box_iou(a, b),
           [Sample((_B1, _B2), desc="5x4"), Sample((boxes_xyxy(3, 0, 4), boxes_xyxy(2, 0, 4)), desc="3x2_dense")],
           torch_op=_use_torch(_tv_giou)),
    OpSpec("vision.clip_boxes_to_image", lambda m, b, size: V.clip_boxes_to_image(b, size),
           [Sample((boxes_xyxy(8, -5, 15) + 0.01, (13, 11)),)],
           torch_op=_use_torch(_tv_clip),
           errors=[ErrorCase((r(3, 4), (5, -1)), exc=ArgumentError, match="non-negative")]),
    OpSpec("vision.box_coder_encode",
           lambda m, gt, ref, w: V.BoxCoder(w).encode_single(gt, ref),
           [Sample((boxes_xyxy(6), boxes_xyxy(6), (1.0, 1.0, 1.0, 1.0)), desc="rpn"),
            Sample((boxes_xyxy(5), boxes_xyxy(5), (10.0, 10.0, 5.0, 5.0)), desc="head")],
           torch_op=_use_torch(_tv_encode)),
    OpSpec("vision.box_coder_decode",
           lambda m, codes, ref, w: V.BoxCoder(w).decode_single(codes, ref),
           [Sample((r(6, 4), boxes_xyxy(6), (1.0, 1.0, 1.0, 1.0)), desc="rpn"),
            Sample((r(5, 12) * 5, boxes_xyxy(5), (10.0, 10.0, 5.0, 5.0)), desc="head_3_classes"),
            Sample((np.array([[0.1, -0.2, 6.0, -5.0], [0.3, 0.2, 4.5, 8.0]]), boxes_xyxy(2), (1.0, 1.0, 1.0, 1.0)),
                   desc="clamped_dw_dh")],
           torch_op=_use_torch(_tv_decode),
           errors=[ErrorCase((r(3, 6), r(3, 4), (1.0, 1.0, 1.0, 1.0)), exc=ShapeError, match=r"4 \* k")]),
]
