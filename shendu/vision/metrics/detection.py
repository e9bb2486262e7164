"""Detection metrics: average precision per class and its mean (mAP), PASCAL VOC and COCO style.

Every metric here follows one recipe per class: pool the detections of all images, sort them by
descending score (stable), mark each one a true positive (TP) when it matches a not-yet-matched ground
truth box of the same class with IoU at or above the threshold and a false positive (FP) otherwise
(duplicates are FPs), then

    recall_k = cumTP_k / num_GT,        precision_k = cumTP_k / (cumTP_k + cumFP_k)

and summarise the precision/recall curve as one number:

- ``"voc07"``: 11-point interpolation (PASCAL VOC 2007): ``AP = 1/11 sum_{t in 0, .1, ..., 1} max_{r >= t} p``
  (0 where no recall reaches t). The thresholds are exact tenths (``np.arange(11) / 10``); py-faster-rcnn's
  ``np.arange(0, 1.1, 0.1)`` makes 0.3 into 0.30000000000000004, which skips a recall of exactly 0.3.
- ``"voc"``: all-point interpolation (VOC 2010+): the area under the precision envelope (precision made
  non-increasing from the right), summed where recall changes.
- ``"coco"``: 101-point interpolation (pycocotools): precision envelope read at recall 0, .01, ..., 1 at the
  first recall >= each threshold; thresholds beyond the maximum recall count 0.

Conventions, stated once:

- Boxes are ``(x1, y1, x2, y2)`` in continuous coordinates (width = x2 - x1, no "+1" pixel; torchvision's
  and COCO's convention, not the VOC devkit's).
- A match needs IoU >= threshold (the VOC devkit's and COCO's rule; py-faster-rcnn's ``voc_eval`` uses >).
- Matching rule: ``"voc"`` compares a detection with its single best-overlap ground truth, and the detection
  is an FP when that one is already taken (VOC devkit); ``"coco"`` takes the best still-unmatched ground
  truth above the threshold (pycocotools). :func:`evaluate_detections` uses the VOC rule for the VOC APs
  and the COCO rule (with at most ``max_detections`` per image and class) for the COCO APs.
- Classes with no ground truth in the whole set are left out of the mean (pycocotools' -1 entries).
  "Difficult" and crowd boxes are not modelled.
"""

from __future__ import annotations

import numpy as np

from shendu.errors import ArgumentError, ShapeError

__all__ = ["average_precision", "precision_recall", "match_detections", "evaluate_detections",
           "COCO_IOU_THRESHOLDS"]

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_METHODS = ("voc07", "voc", "coco")


def _np(x, dtype) -> np.ndarray:
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else x, dtype=dtype).reshape(-1)


def _as_boxes(boxes) -> np.ndarray:
    return _np(boxes, np.float64).reshape(-1, 4)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (len(a), len(b)) of xyxy float64 boxes; 0 where both boxes are empty."""
    from shendu.vision.ops import box_iou

    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return np.nan_to_num(_np(box_iou(a, b), np.float64).reshape(len(a), len(b)))


def precision_recall(scores, is_tp, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection, the detections taken by descending score (stable).

    ``scores``: (D,); ``is_tp``: (D,) bool; ``num_gt``: ground-truth boxes of the class (> 0).
    Returns ``(precision, recall)``, each (D,) float64.

    >>> p, r = precision_recall([0.9, 0.8, 0.7], [True, False, True], num_gt=4)
    >>> p.tolist(), r.tolist()
    ([1.0, 0.5, 0.6666666666666666], [0.25, 0.25, 0.5])
    """
    scores, is_tp = _np(scores, np.float64), _np(is_tp, bool)
    if scores.shape != is_tp.shape:
        raise ShapeError(f"precision_recall: scores has shape {scores.shape} but is_tp {is_tp.shape}; "
                         "give one TP flag per detection")
    if num_gt <= 0:
        raise ArgumentError(f"precision_recall: num_gt must be positive, got {num_gt}; "
                         "a class without ground truth has no recall")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    return tp / np.maximum(tp + fp, np.finfo(np.float64).eps), tp / num_gt


def average_precision(recall, precision, method: str = "voc") -> float:
    """Area under one precision/recall curve; ``method`` is ``"voc07"``, ``"voc"`` or ``"coco"``
    (see the module docstring). ``recall`` must be non-decreasing (detections in score order).

    >>> rec, prec = [0.25, 0.25, 0.5], [1.0, 0.5, 2 / 3]
    >>> round(average_precision(rec, prec, "voc"), 4)     # 0.25 * 1 + 0.25 * 2/3
    0.4167
    >>> round(average_precision(rec, prec, "voc07"), 4)   # (3 * 1 + 3 * 2/3) / 11
    0.4545
    """
    if method not in _METHODS:
        raise ArgumentError(f"average_precision: unknown method {method!r}; choose one of {_METHODS}")
    rec, prec = _np(recall, np.float64), _np(precision, np.float64)
    if rec.shape != prec.shape:
        raise ShapeError(f"average_precision: recall has shape {rec.shape} but precision {prec.shape}")
    if method == "voc07":
        return float(np.mean([prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in np.arange(11) / 10]))
    # the envelope: the best precision at this recall or any higher one
    envelope = np.maximum.accumulate(np.concatenate([prec, [0.0]])[::-1])[::-1]
    if method == "voc":
        r = np.concatenate([[0.0], rec, [1.0]])
        p = np.concatenate([[0.0], envelope])
        changed = np.flatnonzero(r[1:] != r[:-1])
        return float(np.sum((r[changed + 1] - r[changed]) * p[changed + 1]))
    thresholds = np.linspace(0, 1, 101)
    idx = np.searchsorted(rec, thresholds, side="left")  # == len(rec) past the maximum recall: reads the 0
    return float(np.mean(envelope[idx]))


def match_detections(ious: np.ndarray, thresholds, rule: str = "coco") -> np.ndarray:
    """Greedy matching of one image's detections of one class, already sorted by descending score.

    ``ious``: (D, G) IoU of each detection with each ground truth; ``thresholds``: (T,) IoU thresholds.
    Returns (T, D) bool, True where the detection is a TP at that threshold. Each ground truth is
    matched at most once. ``rule="coco"`` takes the best unmatched ground truth with IoU >= t;
    ``rule="voc"`` looks only at the best-overlap ground truth and counts an FP when it is taken.

    >>> ious = np.array([[0.9, 0.0], [0.8, 0.6]])   # the second detection overlaps both boxes
    >>> match_detections(ious, [0.5], "coco").tolist(), match_detections(ious, [0.5], "voc").tolist()
    ([[True, True]], [[True, False]])
    """
    if rule not in ("coco", "voc"):
        raise ArgumentError(f"match_detections: unknown rule {rule!r}; choose 'coco' or 'voc'")
    ious = np.asarray(ious, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1, 1)
    num_det, num_gt = ious.shape
    tp = np.zeros((len(t), num_det), bool)
    taken = np.zeros((len(t), num_gt), bool)
    if num_gt == 0:
        return tp
    rows = np.arange(len(t))
    for d in range(num_det):  # greedy by score: each detection sees what the better ones left
        if rule == "voc":
            g = np.full(len(t), np.argmax(ious[d]))
            ok = (ious[d, g] >= t[:, 0]) & ~taken[rows, g]
        else:
            free = np.where(taken, -1.0, ious[d])                      # (T, G)
            g = np.argmax(free, axis=1)
            ok = free[rows, g] >= t[:, 0]
        tp[ok, d] = True
        taken[rows[ok], g[ok]] = True
    return tp


def _per_class(preds, targets, label: int, thresholds, rule: str, max_det: int | None):
    """(scores (D,), tp (T, D), num_gt) of one class pooled over the images."""
    scores, flags, num_gt = [], [], 0
    for p, t in zip(preds, targets):
        gt = _as_boxes(t["boxes"])[_np(t["labels"], np.int64) == label]
        sel = _np(p["labels"], np.int64) == label
        s = _np(p["scores"], np.float64)[sel]
        order = np.argsort(-s, kind="stable")[:max_det]
        boxes = _as_boxes(p["boxes"])[sel][order]
        num_gt += len(gt)
        scores.append(s[order])
        flags.append(match_detections(_iou(boxes, gt), thresholds, rule))
    return np.concatenate(scores), np.concatenate(flags, axis=1), num_gt


def _check(preds, targets) -> None:
    if len(preds) != len(targets):
        raise ArgumentError(f"evaluate_detections: {len(preds)} predictions but {len(targets)} targets; "
                         "give one dict per image in both")
    for i, (p, t) in enumerate(zip(preds, targets)):
        for d, keys, what in ((p, ("boxes", "scores", "labels"), "prediction"), (t, ("boxes", "labels"), "target")):
            missing = [k for k in keys if k not in d]
            if missing:
                raise ArgumentError(f"evaluate_detections: {what} {i} lacks {missing}; expected keys {keys}")


def evaluate_detections(preds, targets, iou_thresholds=COCO_IOU_THRESHOLDS, max_detections: int = 100) -> dict:
    """VOC and COCO average precision of a detector over a set of images.

    ``preds``: one dict per image with ``boxes`` (D, 4) xyxy, ``scores`` (D,), ``labels`` (D,);
    ``targets``: one dict per image with ``boxes`` (G, 4) xyxy and ``labels`` (G,). Arrays or Tensors.

    Returns a dict: ``map_50`` (VOC all-point AP at IoU 0.5, averaged over classes), ``map_50_voc07``
    (11-point), ``map`` (COCO AP averaged over ``iou_thresholds``, 0.50:0.05:0.95), ``map_50_coco`` and
    ``map_75`` (COCO AP at 0.5 and 0.75), and ``per_class``: ``{label: {"ap_50": ..., "ap_50_voc07": ...,
    "ap": ..., "num_gt": ...}}`` for every label that has ground truth.

    >>> gt = [{"boxes": [[0, 0, 10, 10]], "labels": [1]}]
    >>> det = [{"boxes": [[0, 0, 10, 9], [20, 20, 30, 30]], "scores": [0.9, 0.8], "labels": [1, 1]}]
    >>> r = evaluate_detections(det, gt)
    >>> r["map_50"], r["map_75"], round(r["map"], 2)   # IoU 0.9: a TP up to threshold 0.9
    (1.0, 1.0, 0.9)
    """
    _check(preds, targets)
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    labels = np.unique(np.concatenate([_np(t["labels"], np.int64) for t in targets] or [np.zeros(0, np.int64)]))
    per_class = {}
    for c in labels.tolist():
        s, tp, n = _per_class(preds, targets, c, [0.5], "voc", None)
        p, r = precision_recall(s, tp[0], n)
        entry = {"num_gt": n, "ap_50": average_precision(r, p, "voc"), "ap_50_voc07": average_precision(r, p, "voc07")}
        s, tp, n = _per_class(preds, targets, c, thresholds, "coco", max_detections)
        coco = [average_precision(*precision_recall(s, f, n)[::-1], "coco") for f in tp]
        entry["ap_per_threshold"] = coco
        entry["ap"] = float(np.mean(coco))
        per_class[c] = entry

    def mean(key, i=None):
        vals = [e[key] if i is None else e[key][i] for e in per_class.values()]
        return float(np.mean(vals)) if vals else float("nan")

    def at(t):
        hit = np.flatnonzero(np.isclose(thresholds, t))
        return mean("ap_per_threshold", int(hit[0])) if len(hit) else float("nan")

    return {"map_50": mean("ap_50"), "map_50_voc07": mean("ap_50_voc07"), "map": mean("ap"),
            "map_50_coco": at(0.5), "map_75": at(0.75), "per_class": per_class}
