"""Semantic segmentation metrics of the FCN paper (Long, Shelhamer, Darrell, CVPR 2015, section 5).

Everything comes from one confusion matrix ``n`` accumulated over the **whole** evaluation set:
``n[i, j]`` = number of pixels of true class ``i`` predicted as ``j``; ``t_i = sum_j n[i, j]`` pixels of
class ``i`` in the truth. Then

- pixel accuracy      ``sum_i n_ii / sum_i t_i``
- mean accuracy       ``(1/n_cl) sum_i n_ii / t_i``
- mean IoU            ``(1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)``
- frequency-weighted IoU  ``(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)``

Conventions, stated once:

- **Accumulate, then divide.** The mean over images of per-image mIoU is a different (and wrong) number.
- **Absent classes are left out of the means.** A class with no pixel in the truth *and* none in the
  prediction has IoU 0/0: it is NaN and excluded (``n_cl`` counts the classes that remain). A class absent
  from the truth but predicted somewhere has IoU 0 and counts. Mean accuracy leaves out every class with
  ``t_i = 0`` (its accuracy is 0/0 whatever was predicted). Frequency weighting gives such classes weight 0.
  With no valid pixel at all every figure is NaN.
- ``ignore_index`` (e.g. 255, the VOC object boundaries): pixels whose truth equals it are dropped before
  counting, whatever was predicted there.

>>> import numpy as np
>>> truth = np.array([[0, 0, 1], [1, 2, 255]])
>>> pred = np.array([[0, 1, 1], [1, 2, 0]])
>>> m = SegmentationMetrics(3, ignore_index=255)
>>> m.update(pred, truth)
>>> {k: round(v, 4) for k, v in m.compute().items() if k in ("pixel_accuracy", "mean_iou")}
{'pixel_accuracy': 0.8, 'mean_iou': 0.7222}
"""

from __future__ import annotations

import numpy as np

from shendu.errors import ArgumentError, ShapeError, fmt_shape
from shendu.train.metrics import Metric

__all__ = ["segmentation_confusion_matrix", "pixel_accuracy", "mean_accuracy", "per_class_iou", "mean_iou",
           "frequency_weighted_iou", "segmentation_scores", "SegmentationMetrics"]


def _array(x) -> np.ndarray:
    data = getattr(x, "data", x)
    return data if isinstance(data, np.ndarray) else np.asarray(data)


def segmentation_confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 matrix ``n[i, j]`` = pixels of true class ``i`` predicted ``j``.

    ``pred``: integer labels of ``target``'s shape, or scores ``(N, C, ...)`` for a ``(N, ...)`` target
    (the arg-max over dim 1 is taken). Pixels whose target equals ``ignore_index`` are dropped. One
    ``bincount`` of ``num_classes * truth + pred``.

    >>> segmentation_confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    op = "segmentation_confusion_matrix"
    p, t = _array(pred), _array(target)
    if int(num_classes) < 1:
        raise ArgumentError(f"{op}: num_classes must be >= 1, got {num_classes}")
    if p.ndim == t.ndim + 1 and p.dtype.kind == "f":  # scores (N, C, ...): class dim 1
        if p.shape[1] != num_classes:
            raise ShapeError(f"{op}: scores have {p.shape[1]} classes along dim 1, expected {num_classes}")
        p = p.argmax(1)
    if p.shape != t.shape:
        raise ShapeError(f"{op}: prediction {fmt_shape(p.shape)} and target {fmt_shape(t.shape)} differ; pass "
                         "label maps of the same shape, or scores (N, C, ...) for a (N, ...) target")
    if p.dtype.kind not in "iub" or t.dtype.kind not in "iub":
        raise ArgumentError(f"{op}: labels must be integers, got prediction {p.dtype} and target {t.dtype}")
    p, t = p.reshape(-1).astype(np.int64), t.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    for name, v in (("target", t), ("prediction", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            hint = "; set ignore_index for labels such as 255" if name == "target" else ""
            raise ArgumentError(f"{op}: {name} labels must be in [0, {num_classes}), got values in "
                                f"[{v.min()}, {v.max()}]{hint}")
    return np.bincount(num_classes * t + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _parts(hist) -> tuple:
    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 2 or hist.shape[0] != hist.shape[1]:
        raise ShapeError(f"segmentation metrics: expected a square confusion matrix, got {fmt_shape(hist.shape)}")
    return hist, np.diag(hist), hist.sum(1), hist.sum(0)


def per_class_iou(hist) -> np.ndarray:
    """IoU of each class, ``n_ii / (t_i + sum_j n_ji - n_ii)``; NaN where the class is in neither truth nor
    prediction."""
    _, diag, truth, predicted = _parts(hist)
    union = truth + predicted - diag
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, diag / union, np.nan)


def _nanmean(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def pixel_accuracy(hist) -> float:
    """``sum_i n_ii / sum_i t_i`` (NaN when there are no pixels)."""
    hist, diag, _, _ = _parts(hist)
    total = hist.sum()
    return float(diag.sum() / total) if total else float("nan")


def mean_accuracy(hist) -> float:
    """``(1/n_cl) sum_i n_ii / t_i`` over the classes present in the truth."""
    _, diag, truth, _ = _parts(hist)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nanmean(np.where(truth > 0, diag / truth, np.nan))


def mean_iou(hist) -> float:
    """Mean of :func:`per_class_iou` over the classes present in the truth or the prediction."""
    return _nanmean(per_class_iou(hist))


def frequency_weighted_iou(hist) -> float:
    """``(sum_k t_k)^-1 sum_i t_i IoU_i``: each class's IoU weighted by its share of the true pixels."""
    hist, _, truth, _ = _parts(hist)
    total = truth.sum()
    if not total:
        return float("nan")
    iou = per_class_iou(hist)
    present = truth > 0  # their IoU is defined; absent classes weigh 0
    return float((truth[present] * iou[present]).sum() / total)


def segmentation_scores(hist) -> dict:
    """All four FCN figures plus the per-class IoU and accuracy (lists, NaN for left-out classes)."""
    _, diag, truth, _ = _parts(hist)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(truth > 0, diag / truth, np.nan)
    return {"pixel_accuracy": pixel_accuracy(hist), "mean_accuracy": mean_accuracy(hist),
            "mean_iou": mean_iou(hist), "frequency_weighted_iou": frequency_weighted_iou(hist),
            "iou": per_class_iou(hist).tolist(), "accuracy": acc.tolist()}


class SegmentationMetrics(Metric):
    """Streaming FCN metrics: ``update(pred, target)`` per batch adds to one confusion matrix; ``compute()``
    returns :func:`segmentation_scores` of the accumulated matrix. ``pred`` is label maps or scores
    ``(N, C, H, W)``; ``state_dict``/``load_state_dict`` (from :class:`shendu.train.metrics.Metric`) keep the
    running matrix across a resume.
    """

    name = "segmentation"

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        if int(num_classes) < 1:
            raise ArgumentError(f"SegmentationMetrics: num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        super().__init__()

    def reset(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, target) -> None:
        self.matrix += segmentation_confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict:
        return segmentation_scores(self.matrix)
