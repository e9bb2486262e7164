"""The region proposal network of Faster R-CNN (Ren, He, Girshick, Sun, NeurIPS 2015), and the two
labelling steps the whole R-CNN family shares: matching boxes to ground truth by IoU, and drawing a
balanced sample of positives and negatives.

**Matching** (:func:`match_boxes`, torchvision's ``Matcher``): every candidate box (anchor or proposal)
takes its best-IoU ground truth; it is foreground when that IoU is ``>= high``, background when
``< low``, ignored in between. With ``allow_low_quality_matches`` the candidates that have the highest
IoU of all candidates with some ground truth become foreground too (the paper's "anchor with the highest
IoU with a ground-truth box" rule, so every object gets at least one anchor). Unlike torchvision, a
ground truth that overlaps no candidate at all (highest IoU 0) does not make every zero-IoU anchor
positive.

**Sampling** (:func:`sample_balanced`, ``BalancedPositiveNegativeSampler``): per image, up to
``batch_size * positive_fraction`` foreground candidates drawn at random, filled up with background.

**RPN**: a 3x3 conv + ReLU, then two sibling 1x1 convs: objectness ``(A, H, W)`` (one logit per anchor,
sigmoid as in torchvision, not the paper's 2-way softmax) and deltas ``(4A, H, W)``. Both are flattened
position-major, ``(H, W, A)``, the order of :class:`shendu.vision.ops.AnchorGenerator`'s anchors.
Training: anchors labelled with IoU 0.7 / 0.3 (+ low-quality matches), 256 sampled per image (half
positive at most), losses

    loss_objectness = mean over the sampled anchors of BCE-with-logits(o, label)
    loss_rpn_box_reg = sum over the sampled positives of smooth-L1_{beta=1/9}(t - t*) / (number sampled)

with ``t*`` the ground truth encoded against the anchor with weights (1, 1, 1, 1). Proposals: decode every
anchor, keep the ``pre_nms_top_n`` best objectness per image, clip to the image, drop boxes smaller
than ``min_size``, NMS at 0.7, keep ``post_nms_top_n``. No gradient flows through the proposal
coordinates (approximate joint training).
"""

from __future__ import annotations

import numpy as np

import shendu.functional as F
from shendu import backend, nn
from shendu.autograd.engine import no_grad
from shendu.vision.detection.common import as_array
from shendu.vision.ops import AnchorGenerator, BoxCoder, box_iou, clip_boxes_to_image, nms, remove_small_boxes

__all__ = ["BACKGROUND", "IGNORE", "pairwise_iou", "match_boxes", "sample_balanced", "RPNHead",
           "RegionProposalNetwork"]

BACKGROUND = -1  # match_boxes: best IoU below the low threshold
IGNORE = -2      # match_boxes: best IoU between the thresholds


def pairwise_iou(a, b) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of two sets of xyxy boxes as a float64 array (no gradient)."""
    a, b = as_array(a, np.float64).reshape(-1, 4), as_array(b, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return as_array(box_iou(a, b))


def match_boxes(iou: np.ndarray, high: float, low: float, allow_low_quality_matches: bool = False) -> np.ndarray:
    """For each column of ``iou`` (G ground truths x N candidates): the index of its best ground truth
    when that IoU is ``>= high``, ``BACKGROUND`` (-1) when ``< low``, ``IGNORE`` (-2) in between.

    ``allow_low_quality_matches``: every candidate holding the highest IoU (> 0) of some ground truth
    gets its best match back, whatever its IoU.

    >>> iou = np.array([[0.9, 0.5, 0.1], [0.0, 0.2, 0.25]])
    >>> match_boxes(iou, 0.7, 0.3).tolist()
    [0, -2, -1]
    >>> match_boxes(iou, 0.7, 0.3, allow_low_quality_matches=True).tolist()   # GT 1's best is column 2
    [0, -2, 1]
    """
    g, n = iou.shape
    if g == 0:
        return np.full(n, BACKGROUND, np.int64)
    best = iou.argmax(axis=0)
    best_iou = iou[best, np.arange(n)]
    matches = best.astype(np.int64)
    matches[best_iou < low] = BACKGROUND
    matches[(best_iou >= low) & (best_iou < high)] = IGNORE
    if allow_low_quality_matches:
        highest = iou.max(axis=1, keepdims=True)
        _, cols = np.nonzero((iou == highest) & (highest > 0))
        matches[cols] = best[cols]
    return matches


def sample_balanced(labels: np.ndarray, batch_size_per_image: int, positive_fraction: float,
                    generator=None) -> tuple[np.ndarray, np.ndarray]:
    """Random indices ``(positives, negatives)`` of one image's candidates: ``labels >= 1`` are positive,
    ``== 0`` negative, anything else (-1) ignored. At most ``int(batch_size_per_image * positive_fraction)``
    positives; negatives fill the batch up to ``batch_size_per_image``.

    >>> pos, neg = sample_balanced(np.array([1, 0, 0, -1, 2, 0]), 4, 0.25)
    >>> len(pos), len(neg), set(pos.tolist()) <= {0, 4}, set(neg.tolist()) <= {1, 2, 5}
    (1, 3, True, True)
    """
    rng = backend.rng(generator)
    pos = np.flatnonzero(labels >= 1)
    neg = np.flatnonzero(labels == 0)
    num_pos = min(int(batch_size_per_image * positive_fraction), len(pos))
    num_neg = min(batch_size_per_image - num_pos, len(neg))
    return rng.permutation(pos)[:num_pos], rng.permutation(neg)[:num_neg]


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 objectness (A channels) and 1x1 box deltas (4A channels).

    Weights N(0, 0.01), biases 0 (torchvision's init).
    """

    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        t = F.relu(self.conv(x))
        return self.cls_logits(t), self.bbox_pred(t)


def flatten_head_outputs(objectness, deltas) -> tuple:
    """``(N, A, H, W)`` and ``(N, 4A, H, W)`` to ``(N, H*W*A)`` and ``(N, H*W*A, 4)``, position-major."""
    n, a, h, w = objectness.shape
    obj = objectness.permute(0, 2, 3, 1).reshape(n, h * w * a)
    box = deltas.reshape(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a, 4)
    return obj, box


class RegionProposalNetwork(nn.Module):
    """Anchors + :class:`RPNHead` + labelling, losses and proposal filtering, on one feature map.

    ``forward(images, features, targets=None) -> (proposals, losses)``: ``proposals`` one float32
    ``(P_i, 4)`` array per image (no gradient), ``losses`` ``{"loss_objectness", "loss_rpn_box_reg"}``
    (Tensors) when ``targets`` are given, else empty. Defaults are torchvision's except the top-n counts,
    which are given for small canvases by the caller.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, fg_iou_thresh: float = 0.7,
                 bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: dict | None = None, post_nms_top_n: dict | None = None, nms_thresh: float = 0.7,
                 min_size: float = 1e-3, box_loss_beta: float = 1.0 / 9):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.fg_iou_thresh, self.bg_iou_thresh = fg_iou_thresh, bg_iou_thresh
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.pre_nms_top_n = pre_nms_top_n or {"training": 2000, "testing": 1000}
        self.post_nms_top_n = post_nms_top_n or {"training": 2000, "testing": 1000}
        self.nms_thresh, self.min_size, self.box_loss_beta = nms_thresh, min_size, box_loss_beta

    def _top_n(self, table: dict) -> int:
        return table["training" if self.training else "testing"]

    def assign_targets(self, anchors: np.ndarray, targets) -> tuple[np.ndarray, np.ndarray]:
        """Per image: labels ``(N, M)`` (1 foreground, 0 background, -1 ignored) and the matched ground
        truth boxes ``(N, M, 4)`` (zeros where there is none)."""
        labels = np.zeros((len(targets), len(anchors)), np.int64)
        matched = np.zeros((len(targets), len(anchors), 4), np.float32)
        for i, t in enumerate(targets):
            gt = as_array(t["boxes"], np.float32).reshape(-1, 4)
            m = match_boxes(pairwise_iou(gt, anchors), self.fg_iou_thresh, self.bg_iou_thresh, True)
            labels[i] = np.where(m >= 0, 1, np.where(m == BACKGROUND, 0, -1))
            if len(gt):
                matched[i] = gt[np.maximum(m, 0)]
        return labels, matched

    def compute_loss(self, objectness, deltas, anchors: np.ndarray, labels: np.ndarray, matched: np.ndarray) -> dict:
        """The two RPN losses over the anchors sampled from ``labels`` (N, M); ``objectness`` (N, M) and
        ``deltas`` (N, M, 4) are the flattened head outputs."""
        n, m = labels.shape
        pos, neg = [], []
        for i in range(n):
            p, q = sample_balanced(labels[i], self.batch_size_per_image, self.positive_fraction)
            pos.append(p + i * m)
            neg.append(q + i * m)
        pos, neg = np.concatenate(pos), np.concatenate(neg)
        sampled = np.concatenate([pos, neg])
        target = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.float32)
        loss_obj = F.binary_cross_entropy_with_logits(objectness.reshape(-1)[sampled], target)
        flat_anchors = np.broadcast_to(anchors, (n, m, 4)).reshape(-1, 4)
        t = self.box_coder.encode_single(matched.reshape(-1, 4)[pos], flat_anchors[pos])
        loss_box = F.smooth_l1_loss(deltas.reshape(-1, 4)[pos], t, beta=self.box_loss_beta,
                                    reduction="sum") / max(len(sampled), 1)
        return {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_box}

    def filter_proposals(self, boxes: np.ndarray, scores: np.ndarray, image_size: tuple) -> list:
        """``boxes`` (N, M, 4) decoded anchors and ``scores`` (N, M) objectness logits to one (P_i, 4)
        float32 array per image: top-n, clip, drop small, NMS, top-n."""
        out = []
        pre, post = self._top_n(self.pre_nms_top_n), self._top_n(self.post_nms_top_n)
        for b, s in zip(boxes, scores):
            top = np.argsort(-s, kind="stable")[:pre]
            b = as_array(clip_boxes_to_image(b[top], image_size), np.float32)
            s = s[top]
            keep = as_array(remove_small_boxes(b, self.min_size), np.int64)
            b, s = b[keep], s[keep]
            keep = as_array(nms(b, s, self.nms_thresh), np.int64)[:post]
            out.append(b[keep])
        return out

    def forward(self, images, features, targets=None) -> tuple[list, dict]:
        anchors = as_array(self.anchor_generator(images, [features])[0], np.float32)
        objectness, deltas = flatten_head_outputs(*self.head(features))
        n, m = objectness.shape
        with no_grad():
            decoded = self.box_coder.decode_single(deltas.detach().reshape(n * m, 4),
                                                   np.tile(anchors, (n, 1)))
        proposals = self.filter_proposals(as_array(decoded).reshape(n, m, 4), as_array(objectness.detach()),
                                          tuple(images.shape[-2:]))
        losses = {}
        if targets is not None:
            labels, matched = self.assign_targets(anchors, targets)
            losses = self.compute_loss(objectness, deltas, anchors, labels, matched)
        return proposals, losses
