"""What the single-stage detectors share: targets in array form, per-class NMS on decoded candidates,
and the ``train_step``/``predict`` pair every detector module exposes to ``shendu train --task detect``.

Detection targets are the FashionScenes form: one dict per image with ``"boxes"`` (K, 4) xyxy in pixels
(continuous coordinates) and ``"labels"`` (K,) in 1..C, 0 being background. Predictions come back in
the same form plus ``"scores"``, as NumPy arrays (the form :func:`shendu.vision.metrics.detection.
evaluate_detections` takes).
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_array", "elementwise_iou", "stack_targets", "flip_batch", "postprocess", "generic_train_step"]


def as_array(x, dtype=None) -> np.ndarray:
    """A NumPy view of a Tensor (detached) or array-like (no copy when the dtype already matches)."""
    a = x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)
    return a if dtype is None else a.astype(dtype, copy=False)


def elementwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corresponding xyxy boxes (broadcasting); 0 where the union is empty."""
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda z: np.clip(z[..., 2] - z[..., 0], 0, None) * np.clip(z[..., 3] - z[..., 1], 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def stack_targets(targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All boxes of a batch in one array: ``(image_index (M,), boxes (M, 4) float64, labels (M,) int64)``."""
    boxes = [as_array(t["boxes"], np.float64).reshape(-1, 4) for t in targets]
    labels = [as_array(t["labels"], np.int64).reshape(-1) for t in targets]
    index = np.repeat(np.arange(len(targets)), [len(b) for b in boxes])
    return index, np.concatenate(boxes or [np.zeros((0, 4))]), np.concatenate(labels or [np.zeros(0, np.int64)])


def flip_batch(images: np.ndarray, targets: list, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Flip a random half of a batch ``(N, C, H, W)`` left-right, boxes with it (x1, x2 -> W - x2, W - x1).

    >>> img = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
    >>> out, t = flip_batch(img, [{"boxes": np.array([[0, 0, 1, 1]]), "labels": np.array([1])}],
    ...                     np.random.default_rng(2))
    >>> out.ravel().tolist(), t[0]["boxes"].tolist()
    ([3.0, 2.0, 1.0, 0.0], [[3.0, 0.0, 4.0, 1.0]])
    """
    W = images.shape[-1]
    flip = rng.random(len(images)) < 0.5
    images = np.ascontiguousarray(np.where(flip[:, None, None, None], images[..., ::-1], images))
    out = []
    for t, f in zip(targets, flip):  # per-image dicts of a few boxes each
        b = np.asarray(t["boxes"], np.float32).reshape(-1, 4)
        out.append({**t, "boxes": np.stack([W - b[:, 2], b[:, 1], W - b[:, 0], b[:, 3]], 1) if f else b})
    return images, out


def postprocess(boxes: np.ndarray, scores: np.ndarray, score_thresh: float = 0.05, nms_thresh: float = 0.45,
                max_detections: int = 100, image_size: tuple | None = None) -> list[dict]:
    """Candidates to detections: per image, keep (box, class) pairs scoring above ``score_thresh``, run
    per-class NMS (:func:`shendu.vision.ops.batched_nms`) and keep the ``max_detections`` best.

    ``boxes``: (N, M, 4) xyxy pixels, one box per candidate shared by all classes; ``scores``: (N, M, C),
    the score of class ``c + 1`` (column 0 is the first foreground class). ``image_size`` (H, W) clips the
    boxes. Returns one dict per image: ``boxes`` float32 (D, 4), ``scores`` float32 (D,), ``labels`` int64
    (D,) in 1..C, by descending score.
    """
    from shendu.vision.ops import batched_nms, clip_boxes_to_image

    out = []
    for b, s in zip(boxes, scores):  # one image at a time: each keeps its own number of detections
        cand, cls = np.nonzero(s > score_thresh)
        kb, ks = b[cand].astype(np.float32), s[cand, cls].astype(np.float32)
        if image_size is not None:
            kb = as_array(clip_boxes_to_image(kb, tuple(image_size)), np.float32)
        keep = as_array(batched_nms(kb, ks, cls, nms_thresh), np.int64)[:max_detections]
        out.append({"boxes": kb[keep].reshape(-1, 4), "scores": ks[keep], "labels": cls[keep].astype(np.int64) + 1})
    return out


def generic_train_step(loss_fn, model, images, targets, optimizer, grad_clip: float | None = None) -> dict:
    """One optimizer step on ``loss_fn(model(images), targets, image_size)``; returns the float parts."""
    from shendu.nn.utils import clip_grad_norm_

    model.train()
    out = model(images)
    loss, parts = loss_fn(out, targets, tuple(images.shape[-2:]))
    optimizer.zero_grad()
    loss.backward()
    if grad_clip:
        clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return {"loss": float(loss.item()), **{k: float(v) for k, v in parts.items()}}
