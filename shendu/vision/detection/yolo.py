"""YOLO v1 (Redmon, Divvala, Girshick, Farhadi, "You Only Look Once", CVPR 2016), sized for small canvases.

The image is cut into an S x S grid. Each cell predicts B boxes ``(x, y, w, h, confidence)`` and one set of
C class probabilities (per cell, not per box): ``(x, y)`` is the box centre relative to the cell, in [0, 1];
``(w, h)`` are relative to the image. The cell holding a ground-truth centre is responsible for it, and of
its B predictors the one whose box has the highest IoU with the truth is "responsible" (1^obj_ij). Loss::

    lambda_coord sum 1^obj_ij [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
      + sum 1^obj_ij (C - C^)^2 + lambda_noobj sum 1^noobj_ij C^2 + sum_i 1^obj_i sum_c (p_i(c) - p^_i(c))^2

with lambda_coord = 5, lambda_noobj = 0.5, the target confidence C^ = IoU(predicted, truth) (``conf_target=
"iou"``, the paper's Pr(object) * IoU; ``"one"`` is the common simplification), and 1^noobj_ij = every
predictor that is not responsible (the other boxes of an object cell too). The sum runs over the batch and
is divided by the batch size. At test time the score of class c for a box is ``p(c) * C``, followed by a
threshold and per-class NMS.

What differs from the paper, and why: a fully convolutional backbone (no FC layers) whose stride sets S
(stride 8: S = 8 on a 64 x 64 canvas), so it trains in minutes on a CPU; the outputs go through a sigmoid
(x, y, w, h, confidence, whose targets all lie in [0, 1]) and a softmax over the classes (the paper's outputs
are linear, which needs a careful warm-up). When two truths fall in one cell, the first one listed is kept:
a YOLO v1 cell predicts one object.
"""

from __future__ import annotations

import numpy as np

import shendu
from shendu import nn
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.detection.common import as_array, elementwise_iou, generic_train_step, postprocess, stack_targets

__all__ = ["YOLOv1", "yolo_targets", "yolo_loss", "decode", "build_model", "train_step", "predict"]


def _conv(cin: int, cout: int, k: int = 3) -> list:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1)]


class YOLOv1(nn.Module):
    """``(N, in_channels, H, W)`` -> ``(N, S, S, B*5 + C)`` with S = H / 8: per cell, B boxes
    ``(x, y, w, h, conf)`` (sigmoid) then C class probabilities (softmax).

    >>> model = YOLOv1(num_classes=10)
    >>> model(shendu.randn(2, 1, 64, 64)).shape
    (2, 8, 8, 20)
    """

    def __init__(self, num_classes: int = 10, num_boxes: int = 2, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.num_classes, self.num_boxes = num_classes, num_boxes
        w = width
        self.features = nn.Sequential(
            *_conv(in_channels, w // 2), nn.MaxPool2d(2),
            *_conv(w // 2, w), nn.MaxPool2d(2),
            *_conv(w, 2 * w), nn.MaxPool2d(2),
            *_conv(2 * w, 4 * w), *_conv(4 * w, 2 * w, 1), *_conv(2 * w, 4 * w),
        )
        self.head = nn.Conv2d(4 * w, num_boxes * 5 + num_classes, 1)

    def forward(self, x):
        out = self.head(self.features(x)).permute(0, 2, 3, 1)  # (N, S, S, B*5 + C), the paper's layout
        nb = self.num_boxes * 5
        return shendu.cat([out[..., :nb].sigmoid(), out[..., nb:].softmax(-1)], dim=-1)


def _cell_boxes_to_xyxy(box: np.ndarray, S: int) -> np.ndarray:
    """(N, S, S, B, 4) cell-relative (x, y, w, h) -> image-relative xyxy in [0, 1]."""
    i = np.arange(S)[:, None, None]  # row of the cell
    j = np.arange(S)[None, :, None]  # column
    cx, cy = (j + box[..., 0]) / S, (i + box[..., 1]) / S
    w, h = box[..., 2], box[..., 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def yolo_targets(targets, S: int, num_classes: int, image_size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid targets of a batch: ``obj`` bool (N, S, S), ``box`` float64 (N, S, S, 4) as (x, y) in the cell and
    (w, h) of the image, ``cls`` float64 (N, S, S, C) one-hot. The cell is the one holding the box centre;
    of several truths in one cell the first listed is kept."""
    H, W = image_size
    N = len(targets)
    img, boxes, labels = stack_targets(targets)
    if labels.size and (labels.min() < 1 or labels.max() > num_classes):
        raise ArgumentError(f"yolo_targets: labels must be in 1..{num_classes} (0 is background), "
                                          f"got values in [{labels.min()}, {labels.max()}]")
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / (2 * W), (boxes[:, 1] + boxes[:, 3]) / (2 * H)
    col = np.clip((cx * S).astype(np.int64), 0, S - 1)
    row = np.clip((cy * S).astype(np.int64), 0, S - 1)
    _, first = np.unique((img * S + row) * S + col, return_index=True)  # first truth of each occupied cell
    img, row, col = img[first], row[first], col[first]
    obj = np.zeros((N, S, S), bool)
    box = np.zeros((N, S, S, 4))
    cls = np.zeros((N, S, S, num_classes))
    obj[img, row, col] = True
    box[img, row, col] = np.stack([cx[first] * S - col, cy[first] * S - row,
                                   (boxes[first, 2] - boxes[first, 0]) / W, (boxes[first, 3] - boxes[first, 1]) / H], 1)
    cls[img, row, col, labels[first] - 1] = 1.0
    return obj, box, cls


def yolo_loss(pred, targets, image_size, num_boxes: int = 2, lambda_coord: float = 5.0, lambda_noobj: float = 0.5,
              conf_target: str = "iou"):
    """The YOLO v1 sum-squared loss (module docstring), summed over the batch and divided by its size.

    ``pred``: (N, S, S, B*5 + C) as :class:`YOLOv1` returns it; ``targets``: N dicts with ``boxes`` (K, 4) xyxy
    pixels and ``labels`` (K,) in 1..C; ``image_size``: (H, W). Returns ``(loss, parts)`` where ``parts``
    holds the float value of each term (``coord``, ``obj``, ``noobj``, ``cls``), each already divided by N.
    The responsible-predictor choice and the IoU target are constants (no gradient flows through them).

    >>> pred = shendu.rand(2, 4, 4, 2 * 5 + 3)
    >>> targets = [{"boxes": [[4.0, 4.0, 20.0, 24.0]], "labels": [2]}, {"boxes": [[0, 0, 32, 32]], "labels": [3]}]
    >>> loss, parts = yolo_loss(pred, targets, (32, 32))
    >>> sorted(parts), loss.shape
    (['cls', 'coord', 'noobj', 'obj'], ())
    """
    if conf_target not in ("iou", "one"):
        raise ArgumentError(f"yolo_loss: conf_target must be 'iou' or 'one', got {conf_target!r}")
    if pred.ndim != 4 or pred.shape[1] != pred.shape[2] or pred.shape[3] <= num_boxes * 5:
        raise ShapeError(f"yolo_loss: pred must be (N, S, S, B*5 + C) with B = {num_boxes}, "
                                       f"got shape {tuple(pred.shape)}")
    if len(targets) != pred.shape[0]:
        raise ArgumentError(f"yolo_loss: {len(targets)} targets for a batch of {pred.shape[0]}")
    N, S, B = pred.shape[0], pred.shape[1], num_boxes
    C = pred.shape[3] - 5 * B
    obj, tbox, tcls = yolo_targets(targets, S, C, image_size)

    boxes = pred[..., : 5 * B].reshape(N, S, S, B, 5)
    raw = as_array(boxes, np.float64)
    iou = elementwise_iou(_cell_boxes_to_xyxy(raw[..., :4], S), _cell_boxes_to_xyxy(tbox[:, :, :, None], S))
    best = np.argmax(iou, axis=-1)                                                 # (N, S, S)
    resp = obj[..., None] & (np.arange(B) == best[..., None])                      # 1^obj_ij
    dtype = raw.dtype if pred.dtype == shendu.float64 else np.float32
    conf_goal = iou if conf_target == "iou" else np.ones_like(iou)

    r = shendu.tensor(resp.astype(dtype))
    t = shendu.tensor(tbox[:, :, :, None, :].astype(dtype))
    xy_err = ((boxes[..., 0:2] - t[..., 0:2]) ** 2).sum(-1)
    wh_err = ((boxes[..., 2:4].clamp(min=1e-9).sqrt() - t[..., 2:4].sqrt()) ** 2).sum(-1)
    conf = boxes[..., 4]
    coord = lambda_coord * (r * (xy_err + wh_err)).sum()
    obj_term = (r * (conf - shendu.tensor((conf_goal * resp).astype(dtype))) ** 2).sum()
    noobj_term = lambda_noobj * ((1 - r) * conf ** 2).sum()
    cls_err = (pred[..., 5 * B:] - shendu.tensor(tcls.astype(dtype))) ** 2
    cls_term = (shendu.tensor(obj[..., None].astype(dtype)) * cls_err).sum()
    parts = {"coord": coord / N, "obj": obj_term / N, "noobj": noobj_term / N, "cls": cls_term / N}
    loss = parts["coord"] + parts["obj"] + parts["noobj"] + parts["cls"]
    return loss, {k: float(v.item()) for k, v in parts.items()}


def decode(pred, image_size, num_boxes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Every predictor of every cell as a candidate: ``boxes`` (N, S*S*B, 4) xyxy pixels and class
    scores ``p(c) * confidence`` (N, S*S*B, C)."""
    p = as_array(pred)
    N, S, B = p.shape[0], p.shape[1], num_boxes
    H, W = image_size
    boxes = p[..., : 5 * B].reshape(N, S, S, B, 5)
    xyxy = _cell_boxes_to_xyxy(boxes[..., :4], S) * np.array([W, H, W, H], p.dtype)
    scores = p[..., None, 5 * B:] * boxes[..., 4:5]                                  # (N, S, S, B, C)
    return xyxy.reshape(N, S * S * B, 4), scores.reshape(N, S * S * B, -1)


# --------------------------------------------------------------------------------- the detector interface
def build_model(name: str = "yolo", num_classes: int = 10, in_channels: int = 1, **kw) -> YOLOv1:
    """The detector of ``shendu train --task detect --model yolo``; ``num_classes`` excludes background."""
    return YOLOv1(num_classes=num_classes, in_channels=in_channels, **kw)


def train_step(model, images, targets, optimizer, grad_clip: float | None = None) -> dict:
    """One optimizer step on a batch; returns ``{"loss": ..., "coord": ..., "obj": ..., "noobj": ..., "cls": ...}``."""
    loss_fn = lambda out, tg, size: yolo_loss(out, tg, size, num_boxes=model.num_boxes)
    return generic_train_step(loss_fn, model, images, targets, optimizer, grad_clip)


def predict(model, images, score_thresh: float = 0.05, nms_thresh: float = 0.45, max_detections: int = 100) -> list:
    """Detections for a batch (eval mode, no graph): one dict of ``boxes``/``scores``/``labels`` per image."""
    model.eval()
    size = tuple(images.shape[-2:])
    with shendu.no_grad():
        boxes, scores = decode(model(images), size, model.num_boxes)
    return postprocess(boxes, scores, score_thresh, nms_thresh, max_detections, size)
