"""Single-object classification + localization (CS231n lecture on detection; the notes' "单目标(分类+定位)").

One CNN, two heads on the same features: class scores (softmax over C classes) and one box, four numbers.
The loss adds the two tasks with a weight::

    L = CE(scores, label) + lambda * || box - box^ ||^2

The box is ``(cx, cy, w, h)`` relative to the image (a sigmoid keeps it in [0, 1], so lambda does not depend
on the canvas size); the squared error is summed over the four numbers and both terms are averaged over the
batch. It only fits images with exactly one object (FashionScenes ``single_object=True``): the number of
outputs fixes the number of objects, which is why multi-object detection needs YOLO, SSD or R-CNN.
"""

from __future__ import annotations

import numpy as np

import shendu
import shendu.functional as F
from shendu import nn
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.detection.common import as_array, elementwise_iou, generic_train_step, stack_targets

__all__ = ["Localizer", "localization_loss", "localization_metrics", "build_model", "train_step", "predict",
           "extra_metrics"]


def _conv(cin: int, cout: int) -> list:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class Localizer(nn.Module):
    """``(N, in_channels, H, W)`` -> ``(scores (N, C), box (N, 4))``, box = (cx, cy, w, h) / image side.
    H and W must be multiples of 16; the flattened 4 x 4 grid keeps where things are (a global average pool
    would throw the position away).

    >>> scores, box = Localizer(10)(shendu.randn(2, 1, 64, 64))
    >>> scores.shape, box.shape
    ((2, 10), (2, 4))
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, hidden: int = 128):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv(in_channels, w // 2), nn.MaxPool2d(2), *_conv(w // 2, w), nn.MaxPool2d(2),
            *_conv(w, 2 * w), nn.MaxPool2d(2), *_conv(2 * w, 2 * w), nn.AdaptiveAvgPool2d(4))
        self.fc = nn.Sequential(nn.Linear(2 * w * 16, hidden), nn.ReLU())
        self.cls_head = nn.Linear(hidden, num_classes)
        self.box_head = nn.Linear(hidden, 4)

    def forward(self, x):
        h = self.fc(self.features(x).flatten(1))
        return self.cls_head(h), self.box_head(h).sigmoid()


def _single_targets(targets, image_size) -> tuple[np.ndarray, np.ndarray]:
    """Class indices (N,) in 0..C-1 and relative (cx, cy, w, h) boxes (N, 4) of one-object targets."""
    img, boxes, labels = stack_targets(targets)
    if len(img) != len(targets) or (len(img) and np.any(np.bincount(img, minlength=len(targets)) != 1)):
        raise ArgumentError("localization: every image must hold exactly one object "
                            "(use FashionScenes(..., single_object=True))")
    H, W = image_size
    b = boxes / np.array([W, H, W, H])
    return labels - 1, np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0],
                                 b[:, 3] - b[:, 1]], 1)


def localization_loss(out, targets, image_size, box_weight: float = 5.0):
    """``CE + box_weight * sum of squared box errors``, both averaged over the batch. ``out`` is the
    model's ``(scores, box)``; ``targets`` N dicts with one box (xyxy pixels) and one label in 1..C.
    Returns ``(loss, {"cls": ..., "box": ...})``.

    >>> scores, box = shendu.zeros(1, 3), shendu.full((1, 4), 0.5)
    >>> loss, parts = localization_loss((scores, box), [{"boxes": [[0, 0, 8, 8]], "labels": [1]}], (16, 16))
    >>> round(parts["cls"], 4), round(parts["box"], 4)   # ln 3, 2 * 0.25**2
    (1.0986, 0.125)
    """
    scores, box = out
    if box.ndim != 2 or box.shape[1] != 4 or scores.shape[0] != box.shape[0]:
        raise ShapeError(f"localization_loss: expected scores (N, C) and box (N, 4), got {tuple(scores.shape)} "
                         f"and {tuple(box.shape)}")
    labels, tbox = _single_targets(targets, image_size)
    cls = F.cross_entropy(scores, shendu.tensor(labels))
    err = ((box - shendu.tensor(tbox.astype(as_array(box).dtype))) ** 2).sum(1).mean()
    return cls + box_weight * err, {"cls": float(cls.item()), "box": float(err.item())}


def _to_xyxy(rel: np.ndarray, image_size) -> np.ndarray:
    H, W = image_size
    cx, cy, w, h = rel.T
    return np.stack([(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H], 1)


def localization_metrics(preds, targets) -> dict:
    """Classification accuracy and mean IoU of the predicted box with the true one (whatever the class),
    plus the fraction of images with the right class and IoU >= 0.5 (the "correct localization" rate)."""
    _, boxes, labels = stack_targets(targets)
    # an image left without a detection (below the score threshold) counts as wrong, IoU 0
    pb = np.stack([as_array(p["boxes"], np.float64).reshape(-1, 4)[:1].sum(0) for p in preds])
    pl = np.array([as_array(p["labels"], np.int64)[:1].sum() for p in preds])
    iou = elementwise_iou(pb, boxes)
    right = pl == labels
    return {"accuracy": float(right.mean()), "mean_iou": float(iou.mean()),
            "correct_localization": float((right & (iou >= 0.5)).mean())}


extra_metrics = localization_metrics  # what ``--task detect`` reports besides mAP


# --------------------------------------------------------------------------------- the detector interface
def build_model(name: str = "localize", num_classes: int = 10, in_channels: int = 1, **kw) -> Localizer:
    return Localizer(num_classes=num_classes, in_channels=in_channels, **kw)


def train_step(model, images, targets, optimizer, grad_clip: float | None = None) -> dict:
    """One optimizer step on a batch of one-object images; returns ``{"loss", "cls", "box"}``."""
    return generic_train_step(localization_loss, model, images, targets, optimizer, grad_clip)


def predict(model, images, score_thresh: float = 0.0, nms_thresh: float = 0.45, max_detections: int = 1) -> list:
    """One detection per image (eval mode): the predicted box, the top class and its probability; an image
    whose top probability is below ``score_thresh`` gets none. ``nms_thresh`` and ``max_detections`` are
    accepted for the common detector interface and have nothing to do here."""
    model.eval()
    size = tuple(images.shape[-2:])
    with shendu.no_grad():
        scores, box = model(images)
    probs = as_array(F.softmax(scores, dim=1))
    boxes = np.clip(_to_xyxy(as_array(box, np.float64), size), 0, [size[1], size[0], size[1], size[0]])
    top = probs.argmax(1)
    best = probs[np.arange(len(top)), top]
    keep = best >= score_thresh
    return [{"boxes": boxes[i:i + 1][keep[i:i + 1]].astype(np.float32), "scores": best[i:i + 1][keep[i:i + 1]],
             "labels": (top[i:i + 1] + 1)[keep[i:i + 1]]} for i in range(len(top))]
