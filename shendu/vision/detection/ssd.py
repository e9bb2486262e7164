"""SSD (Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg, "SSD: Single Shot MultiBox Detector", ECCV 2016), small.

Default boxes: on feature map k of m (side f_k), every cell centre ``((j + 0.5)/f_k, (i + 0.5)/f_k)`` gets a
box of scale ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)`` for each aspect ratio a (``w = s sqrt(a)``,
``h = s / sqrt(a)``, a = w/h: 1, then each listed ratio and its inverse) plus one extra square box of scale
``sqrt(s_k s_{k+1})`` (``s_{m+1}`` extrapolated one step). Coordinates are relative to the image, clipped to
[0, 1]. The order is position-major (row, column, then box), the order of a head's ``(N, A*4, H, W)`` output
permuted to ``(N, H, W, A, 4)`` and flattened.

Matching (per image): every truth takes its best default box (forced, whatever the IoU); then every other
default box with IoU >= 0.5 with some truth takes its best truth. Matched boxes are positives, the rest
negatives (background, label 0). Offsets are encoded with the "variances" (0.1, 0.2)::

    t_cx = (g_cx - d_cx) / (0.1 d_w)    t_cy = (g_cy - d_cy) / (0.1 d_h)
    t_w = log(g_w / d_w) / 0.2           t_h = log(g_h / d_h) / 0.2

Loss: ``(L_conf + alpha L_loc) / N`` with N the number of positives in the batch (the loss is 0 when N = 0),
L_loc the smooth-L1 (beta = 1) of the positives' offsets, and L_conf the softmax cross-entropy of the
positives plus the hardest negatives: per image the negatives with the largest background loss, at most 3 per
positive (hard negative mining).

Sized for FashionScenes: a 64 x 64 canvas gives maps of 8, 4 and 2 cells with 4, 6 and 4 boxes each
(368 default boxes) at scales 0.15 .. 0.6 (items are 4..32 px); the paper's SSD300 uses 0.2 .. 0.9 on six
maps (8732 boxes) and an L2-normalised conv4_3, which a network this small does not need.
"""

from __future__ import annotations

import math

import numpy as np

import shendu
import shendu.functional as F
from shendu import nn
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.detection.common import as_array, generic_train_step, postprocess, stack_targets

__all__ = ["SSD", "default_boxes", "match", "encode", "decode_boxes", "hard_negative_mining", "ssd_loss",
           "build_model", "train_step", "predict", "VARIANCES"]

VARIANCES = (0.1, 0.2)


def default_boxes(feature_sizes, aspect_ratios, s_min: float = 0.2, s_max: float = 0.9,
                  clip: bool = True) -> np.ndarray:
    """Default boxes ``(P, 4)`` as ``(cx, cy, w, h)`` relative to the image (module docstring).

    ``feature_sizes``: side f_k of each map; ``aspect_ratios``: per map, the ratios besides 1 (each adds a
    and 1/a), so a map has ``2 + 2 len(ratios)`` boxes per cell.

    >>> d = default_boxes([2, 1], [(2,), ()], s_min=0.2, s_max=0.9)
    >>> d.shape          # 2*2 cells x 4 boxes + 1 cell x 2 boxes
    (18, 4)
    >>> d[0].round(4).tolist(), d[2].round(4).tolist()   # first cell: s_1 = 0.2, then a = 2
    ([0.25, 0.25, 0.2, 0.2], [0.25, 0.25, 0.2828, 0.1414])
    """
    if len(feature_sizes) != len(aspect_ratios):
        raise ArgumentError(f"default_boxes: {len(feature_sizes)} feature maps but {len(aspect_ratios)} "
                            "aspect-ratio lists; give one list per map")
    m = len(feature_sizes)
    step = (s_max - s_min) / (m - 1) if m > 1 else 0.0
    scales = [s_min + step * k for k in range(m + 1)]  # s_{m+1} extrapolated for the last extra box
    out = []
    for k, (f, ratios) in enumerate(zip(feature_sizes, aspect_ratios)):
        s = scales[k]
        wh = [(s, s), (math.sqrt(s * scales[k + 1]),) * 2]
        for a in ratios:
            wh += [(s * math.sqrt(a), s / math.sqrt(a)), (s / math.sqrt(a), s * math.sqrt(a))]
        wh = np.array(wh)                                                     # (A, 2)
        c = (np.arange(f) + 0.5) / f
        cy, cx = np.meshgrid(c, c, indexing="ij")                             # row-major cells
        centres = np.stack([cx, cy], -1).reshape(-1, 1, 2)
        boxes = np.concatenate(np.broadcast_arrays(centres, wh[None]), -1)     # (f*f, A, 4)
        out.append(boxes.reshape(-1, 4))
    boxes = np.concatenate(out)
    return np.clip(boxes, 0.0, 1.0) if clip else boxes


def _to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def _to_cxcywh(b: np.ndarray) -> np.ndarray:
    return np.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], -1)


def encode(gt_xyxy: np.ndarray, priors: np.ndarray, variances=VARIANCES) -> np.ndarray:
    """Offsets (..., 4) of truths ``gt_xyxy`` (..., 4) from default boxes ``priors`` (..., 4) cxcywh
    (same units). Inverse of :func:`decode_boxes`."""
    g = _to_cxcywh(gt_xyxy)
    return np.concatenate([(g[..., :2] - priors[..., :2]) / (variances[0] * priors[..., 2:]),
                           np.log(g[..., 2:] / priors[..., 2:]) / variances[1]], -1)


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variances=VARIANCES) -> np.ndarray:
    """Boxes xyxy (..., 4) from offsets ``loc`` (..., 4) and default boxes ``priors`` (..., 4) cxcywh.

    >>> priors = np.array([[0.5, 0.5, 0.2, 0.4]])
    >>> gt = np.array([[0.35, 0.3, 0.65, 0.8]])
    >>> np.allclose(decode_boxes(encode(gt, priors), priors), gt)
    True
    """
    c = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    wh = priors[..., 2:] * np.exp(np.minimum(loc[..., 2:] * variances[1], math.log(1000 / 16)))
    return _to_xyxy(np.concatenate([c, wh], -1))


def match(gt_boxes, priors: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Index of the truth each default box is matched to, -1 for background.

    ``gt_boxes``: (G, 4) xyxy; ``priors``: (P, 4) cxcywh, in the same units. Each truth first takes its
    best default box (forced; when two truths pick the same box the later truth keeps it, as the reference
    code's loop does); every other default box takes its best truth when that IoU is >= ``threshold``.

    >>> priors = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.3, 0.3, 0.5, 0.5]])
    >>> match(np.array([[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.8, 0.8]]), priors).tolist()  # 2nd truth: IoU 0.16
    [0, 1, 0]
    """
    gt = as_array(gt_boxes, np.float64).reshape(-1, 4)
    return _match_batch(np.zeros(len(gt), np.int64), gt, 1, priors, threshold)[0]


def _match_batch(img: np.ndarray, gt: np.ndarray, N: int, priors: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`match` for a whole batch at once: ``img`` (M,) the image of each truth ``gt`` (M, 4), sorted by
    image. Returns (N, P) indices into ``gt`` (-1 = background)."""
    from shendu.vision.ops import box_iou

    P = len(priors)
    if len(gt) == 0:
        return np.full((N, P), -1, np.int64)
    counts = np.bincount(img, minlength=N)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(gt)) - starts[img]                                   # position within its image
    iou = np.full((N, counts.max(), P), -1.0)                                 # -1 marks padding slots
    iou[img, slot] = np.asarray(as_array(box_iou(gt, _to_xyxy(priors))), np.float64)
    best_gt = iou.argmax(1)                                                   # (N, P)
    best_iou = np.take_along_axis(iou, best_gt[:, None], 1)[:, 0]
    # Forced matches: each truth's best default box. When truths share one, the later truth keeps it:
    # unique over the reversed list keeps the last occurrence.
    flat = img * P + iou[img, slot].argmax(1)
    uniq, rev_first = np.unique(flat[::-1], return_index=True)
    winner = len(gt) - 1 - rev_first
    best_gt.reshape(-1)[uniq] = slot[winner]
    best_iou.reshape(-1)[uniq] = 2.0
    return np.where(best_iou >= threshold, best_gt + starts[:, None], -1)


def hard_negative_mining(background_loss: np.ndarray, positive: np.ndarray, neg_pos_ratio: int = 3) -> np.ndarray:
    """The negatives to train on: per row (image), the ``min(ratio * positives, negatives)`` default boxes
    with the largest background loss among the negatives (ties: the lower index first).

    ``background_loss``: (N, P) cross-entropy of the background class; ``positive``: (N, P) bool.

    >>> loss = np.array([[0.1, 0.9, 0.5, 0.7, 0.3]])
    >>> hard_negative_mining(loss, np.array([[False, True, False, False, False]]), 3).astype(int).tolist()
    [[0, 0, 1, 1, 1]]
    """
    loss = np.where(positive, -np.inf, background_loss)
    order = np.argsort(-loss, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(loss.shape[1])[None].repeat(len(loss), 0), axis=1)
    num_pos = positive.sum(1, keepdims=True)
    num_neg = np.minimum(neg_pos_ratio * num_pos, loss.shape[1] - num_pos)
    return rank < num_neg


def ssd_targets(targets, priors: np.ndarray, image_size, threshold: float = 0.5):
    """Per default box of each image: ``labels`` int64 (N, P) (0 = background) and encoded offsets
    float64 (N, P, 4) (zeros for the background). The whole batch is matched in one pass."""
    H, W = image_size
    img, boxes, labels = stack_targets(targets)
    boxes = boxes / np.array([W, H, W, H], np.float64)
    m = _match_batch(img, boxes, len(targets), priors, threshold)
    pos = m >= 0
    out_labels = np.where(pos, labels[np.maximum(m, 0)] if len(labels) else 0, 0)
    out_loc = np.zeros(m.shape + (4,))
    out_loc[pos] = encode(boxes[m[pos]], np.broadcast_to(priors, m.shape + (4,))[pos])
    return out_labels, out_loc


def ssd_loss(loc, conf, priors: np.ndarray, targets, image_size, neg_pos_ratio: int = 3, alpha: float = 1.0,
             threshold: float = 0.5):
    """The SSD multibox loss (module docstring).

    ``loc``: (N, P, 4) offsets; ``conf``: (N, P, C + 1) logits, class 0 = background; ``priors``: (P, 4)
    cxcywh relative to the image; ``targets``: N dicts with ``boxes`` (K, 4) xyxy pixels and ``labels`` in
    1..C; ``image_size``: (H, W). Returns ``(loss, parts)`` with the float ``loc``, ``conf`` and
    ``positives``.
    """
    if loc.ndim != 3 or loc.shape[-1] != 4 or conf.ndim != 3 or conf.shape[:2] != loc.shape[:2] \
            or loc.shape[1] != len(priors):
        raise ShapeError(f"ssd_loss: expected loc (N, P, 4) and conf (N, P, C+1) with P = {len(priors)} default "
                         f"boxes, got loc {tuple(loc.shape)} and conf {tuple(conf.shape)}")
    if len(targets) != loc.shape[0]:
        raise ArgumentError(f"ssd_loss: {len(targets)} targets for a batch of {loc.shape[0]}")
    labels, offsets = ssd_targets(targets, priors, image_size, threshold)
    positive = labels > 0
    num_pos = int(positive.sum())
    if num_pos == 0:
        zero = (loc.sum() + conf.sum()) * 0.0
        return zero, {"loc": 0.0, "conf": 0.0, "positives": 0.0}
    logits = as_array(conf, np.float64)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    negative = hard_negative_mining(lse - logits[..., 0], positive, neg_pos_ratio)

    C1 = conf.shape[-1]
    dtype = np.float64 if conf.dtype == shendu.float64 else np.float32
    used = np.flatnonzero(positive | negative)
    l_conf = F.cross_entropy(conf.reshape(-1, C1)[used], shendu.tensor(labels.reshape(-1)[used]), reduction="sum")
    pos = np.flatnonzero(positive)
    l_loc = F.smooth_l1_loss(loc.reshape(-1, 4)[pos], shendu.tensor(offsets.reshape(-1, 4)[pos].astype(dtype)),
                             reduction="sum", beta=1.0)
    loss = (l_conf + alpha * l_loc) / num_pos
    return loss, {"loc": float(l_loc.item()) / num_pos, "conf": float(l_conf.item()) / num_pos,
                  "positives": float(num_pos)}


# ------------------------------------------------------------------------------------------------ the model
def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> list:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class SSD(nn.Module):
    """A small SSD: ``(N, in_channels, H, W)`` -> ``(loc (N, P, 4), conf (N, P, C + 1), priors (P, 4))`` with
    H, W multiples of 32 and maps at strides 8, 16, 32 (8, 4, 2 cells on a 64 x 64 canvas).

    >>> model = SSD(num_classes=10)
    >>> loc, conf, priors = model(shendu.randn(2, 1, 64, 64))
    >>> loc.shape, conf.shape, priors.shape
    ((2, 368, 4), (2, 368, 11), (368, 4))
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16,
                 aspect_ratios=((2,), (2, 3), (2,)), s_min: float = 0.15, s_max: float = 0.6):
        super().__init__()
        self.num_classes, self.aspect_ratios, self.s_min, self.s_max = num_classes, aspect_ratios, s_min, s_max
        w = width
        self.backbone = nn.Sequential(
            *_conv(in_channels, w // 2), nn.MaxPool2d(2), *_conv(w // 2, w), nn.MaxPool2d(2),
            *_conv(w, 2 * w), nn.MaxPool2d(2), *_conv(2 * w, 4 * w), *_conv(4 * w, 4 * w))   # stride 8
        self.extras = nn.ModuleList([
            nn.Sequential(*_conv(4 * w, 2 * w, 1), *_conv(2 * w, 4 * w, 3, 2)),              # stride 16
            nn.Sequential(*_conv(4 * w, 2 * w, 1), *_conv(2 * w, 4 * w, 3, 2)),              # stride 32
        ])
        boxes = [2 + 2 * len(r) for r in aspect_ratios]
        self.loc_heads = nn.ModuleList([nn.Conv2d(4 * w, a * 4, 3, padding=1) for a in boxes])
        self.conf_heads = nn.ModuleList([nn.Conv2d(4 * w, a * (num_classes + 1), 3, padding=1) for a in boxes])
        self._priors: dict = {}

    def priors(self, feature_sizes: tuple) -> np.ndarray:
        if feature_sizes not in self._priors:
            self._priors[feature_sizes] = default_boxes(feature_sizes, self.aspect_ratios, self.s_min, self.s_max)
        return self._priors[feature_sizes]

    def forward(self, x):
        maps = [self.backbone(x)]
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        N = x.shape[0]
        # (N, A*k, H, W) -> (N, H, W, A*k) -> (N, H*W*A, k): the default boxes' position-major order
        loc = shendu.cat([h(m).permute(0, 2, 3, 1).reshape(N, -1, 4) for h, m in zip(self.loc_heads, maps)], 1)
        conf = shendu.cat([h(m).permute(0, 2, 3, 1).reshape(N, -1, self.num_classes + 1)
                           for h, m in zip(self.conf_heads, maps)], 1)
        return loc, conf, self.priors(tuple(m.shape[-1] for m in maps))


def decode(loc, conf, priors: np.ndarray, image_size) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, P, 4) xyxy pixels and foreground class probabilities (N, P, C) from the model's output."""
    H, W = image_size
    logits = as_array(conf)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    boxes = decode_boxes(as_array(loc), priors.astype(logits.dtype))
    return boxes * np.array([W, H, W, H], logits.dtype), probs[..., 1:]


# --------------------------------------------------------------------------------- the detector interface
def build_model(name: str = "ssd", num_classes: int = 10, in_channels: int = 1, **kw) -> SSD:
    """The detector of ``shendu train --task detect --model ssd``; ``num_classes`` excludes background."""
    return SSD(num_classes=num_classes, in_channels=in_channels, **kw)


def train_step(model, images, targets, optimizer, grad_clip: float | None = None) -> dict:
    """One optimizer step on a batch; returns ``{"loss": ..., "loc": ..., "conf": ..., "positives": ...}``."""
    loss_fn = lambda out, tg, size: ssd_loss(out[0], out[1], out[2], tg, size)
    return generic_train_step(loss_fn, model, images, targets, optimizer, grad_clip)


def predict(model, images, score_thresh: float = 0.05, nms_thresh: float = 0.45, max_detections: int = 100) -> list:
    """Detections for a batch (eval mode, no graph): one dict of ``boxes``/``scores``/``labels`` per image."""
    model.eval()
    size = tuple(images.shape[-2:])
    with shendu.no_grad():
        boxes, scores = decode(*model(images), size)
    return postprocess(boxes, scores, score_thresh, nms_thresh, max_detections, size)
