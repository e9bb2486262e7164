"""Fast R-CNN (Girshick, ICCV 2015) and the RoI head it shares with Faster R-CNN.

One feature map per image; each proposal is projected onto it and pooled to a fixed ``7 x 7`` grid
(RoI Pool here, RoI Align in Faster R-CNN), then two fully connected layers and two sibling outputs:
``K + 1`` class scores and class-specific box deltas ``4 (K + 1)``. Training samples RoIs per image
(the ground-truth boxes are added to the proposals): foreground when the best IoU with a ground truth
is ``>= 0.5`` (label = that ground truth's class), background when it lies in ``[bg_iou_low, 0.5)``
(the paper's ``[0.1, 0.5)``; torchvision's Faster R-CNN uses ``[0, 0.5)``), ignored below. The
multi-task loss is

    L = CE(p, u) + lambda * sum_{u >= 1} smooth-L1_beta(t^u - v) / (number of sampled RoIs)

with ``t^u`` the deltas predicted for the true class u and ``v`` the ground truth encoded against the
proposal with weights (10, 10, 5, 5); ``beta = 1`` in the paper, ``1/9`` in torchvision's Faster R-CNN.
Inference: softmax scores, per-class decoded and clipped boxes, score threshold, per-class NMS (0.5),
the best ``detections_per_img``.

Proposals for Fast R-CNN come from selective search (:mod:`shendu.vision.selective_search`), computed
once per distinct image and cached by the image's bytes (:class:`ProposalCache`), since they do not
change during training.
"""

from __future__ import annotations

import hashlib

import numpy as np

import shendu.functional as F
from shendu import nn
from shendu.autograd.engine import no_grad
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, ShapeError, fmt_shape
from shendu.vision.detection.common import as_array
from shendu.vision.detection.rpn import BACKGROUND, match_boxes, pairwise_iou, sample_balanced
from shendu.vision.ops import BoxCoder, RoIPool, batched_nms, clip_boxes_to_image, remove_small_boxes
from shendu.vision.selective_search import selective_search

__all__ = ["small_backbone", "ProposalCache", "TwoMLPHead", "FastRCNNPredictor", "fastrcnn_loss", "RoIHeads",
           "FastRCNN", "rois_tensor", "check_images"]


def small_backbone(in_channels: int = 1, widths: tuple = (32, 64, 128)) -> nn.Sequential:
    """A VGG-style feature extractor of stride 8 for small canvases: conv-BN-ReLU at width w1, pool,
    w2, pool, w3 twice, pool. ``out_channels`` and ``stride`` are set on the returned module.

    >>> import shendu
    >>> small_backbone()(shendu.zeros(2, 1, 96, 96)).shape
    (2, 128, 12, 12)
    """
    w1, w2, w3 = widths

    def cbr(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    net = nn.Sequential(*cbr(in_channels, w1), nn.MaxPool2d(2), *cbr(w1, w2), nn.MaxPool2d(2),
                        *cbr(w2, w3), *cbr(w3, w3), nn.MaxPool2d(2))
    net.out_channels, net.stride = w3, 8
    return net


def check_images(op: str, images) -> Tensor:
    """A float (N, C, H, W) batch as a Tensor, or a ShapeError naming ``op``."""
    x = images if isinstance(images, Tensor) else Tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 4:
        raise ShapeError(f"{op}: images must be a batch (N, C, H, W), got shape {fmt_shape(x.shape)}; "
                         "add a batch dimension with images[None]")
    return x


class ProposalCache:
    """Selective-search proposals per image, remembered by the SHA-1 of the image's bytes: the proposals
    of a training image are computed in the first epoch and reused after. ``enabled=False`` recomputes
    every time (for timing). Keyword arguments go to :func:`selective_search`."""

    def __init__(self, enabled: bool = True, **ss_kwargs):
        self.enabled, self.ss_kwargs, self.store = enabled, ss_kwargs, {}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image, dtype=np.float32)
        if not self.enabled:
            return selective_search(image, **self.ss_kwargs)
        key = hashlib.sha1(image.tobytes()).hexdigest() + str(image.shape)
        if key not in self.store:
            self.store[key] = selective_search(image, **self.ss_kwargs)
        return self.store[key]


def rois_tensor(boxes_per_image: list) -> Tensor:
    """``(sum K_i, 5)`` float32 RoIs ``(batch_index, x1, y1, x2, y2)`` from one (K_i, 4) array per image."""
    index = np.repeat(np.arange(len(boxes_per_image)), [len(b) for b in boxes_per_image]).astype(np.float32)
    boxes = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes_per_image])
    return Tensor(np.concatenate([index[:, None], boxes], axis=1))


class TwoMLPHead(nn.Module):
    """Flatten the pooled RoI features and apply two fully connected layers with ReLU (torchvision's)."""

    def __init__(self, in_features: int, representation_size: int):
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x):
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class FastRCNNPredictor(nn.Module):
    """``cls_score`` (K + 1 logits, class 0 = background) and ``bbox_pred`` (4 (K + 1) deltas)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, 4 * num_classes)
        # Fast R-CNN's init: N(0, 0.01) scores, N(0, 0.001) deltas (small deltas keep early proposals put)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x):
        return self.cls_score(x), self.bbox_pred(x)


def fastrcnn_loss(class_logits, box_regression, labels: np.ndarray, regression_targets: np.ndarray,
                  beta: float = 1.0 / 9) -> tuple:
    """``(loss_classifier, loss_box_reg)``: cross-entropy over all sampled RoIs, and smooth-L1 between the
    deltas of each foreground RoI's true class and its targets, summed and divided by the number of
    sampled RoIs. ``class_logits`` (R, K+1), ``box_regression`` (R, 4 (K+1)), ``labels`` (R,) int,
    ``regression_targets`` (R, 4).
    """
    labels = np.asarray(labels, np.int64)
    loss_cls = F.cross_entropy(class_logits, Tensor(labels))
    pos = np.flatnonzero(labels > 0)
    cols = 4 * labels[pos][:, None] + np.arange(4)
    pred = box_regression[pos[:, None], cols]
    target = Tensor(np.asarray(regression_targets, np.float32)[pos])
    loss_box = F.smooth_l1_loss(pred, target, beta=beta, reduction="sum") / max(len(labels), 1)
    return loss_cls, loss_box


class RoIHeads(nn.Module):
    """RoI sampling, pooling, box head, predictor, losses and post-processing (torchvision's ``RoIHeads``
    for boxes). ``forward(features, proposals, image_size, targets=None) -> (detections, losses)``."""

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, box_predictor: nn.Module,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5, bg_iou_low: float = 0.0,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25,
                 bbox_reg_weights: tuple = (10.0, 10.0, 5.0, 5.0), box_loss_beta: float = 1.0 / 9,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100):
        super().__init__()
        self.box_roi_pool, self.box_head, self.box_predictor = box_roi_pool, box_head, box_predictor
        self.fg_iou_thresh, self.bg_iou_thresh, self.bg_iou_low = fg_iou_thresh, bg_iou_thresh, bg_iou_low
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.box_coder = BoxCoder(bbox_reg_weights)
        self.box_loss_beta = box_loss_beta
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img

    def label_proposals(self, proposals: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray) -> tuple:
        """``(labels (P,), matched gt boxes (P, 4))``: the class of the matched ground truth for IoU >= fg,
        0 for IoU in [bg_iou_low, bg), -1 (ignored) below ``bg_iou_low``."""
        iou = pairwise_iou(gt_boxes, proposals)
        m = match_boxes(iou, self.fg_iou_thresh, self.bg_iou_thresh)
        best = iou.max(axis=0) if len(gt_boxes) else np.zeros(len(proposals))
        labels = np.where(m >= 0, gt_labels[np.maximum(m, 0)] if len(gt_labels) else 0, -1)
        labels[(m == BACKGROUND) & (best >= self.bg_iou_low)] = 0
        matched = gt_boxes[np.maximum(m, 0)] if len(gt_boxes) else np.zeros((len(proposals), 4), np.float32)
        return labels.astype(np.int64), matched.astype(np.float32)

    def select_training_samples(self, proposals: list, targets) -> tuple:
        """Per image: add the ground truth to the proposals, label them, sample ``batch_size_per_image``
        with at most ``positive_fraction`` foreground. Returns lists of sampled boxes, labels and
        regression targets."""
        boxes, labels, reg_targets = [], [], []
        for props, t in zip(proposals, targets):
            gt = as_array(t["boxes"], np.float32).reshape(-1, 4)
            gt_labels = as_array(t["labels"], np.int64).reshape(-1)
            props = np.concatenate([np.asarray(props, np.float32).reshape(-1, 4), gt])
            lab, matched = self.label_proposals(props, gt, gt_labels)
            pos, neg = sample_balanced(lab, self.batch_size_per_image, self.positive_fraction)
            keep = np.concatenate([pos, neg])
            boxes.append(props[keep])
            labels.append(lab[keep])
            with no_grad():
                enc = self.box_coder.encode_single(matched[keep], props[keep]) if len(keep) else np.zeros((0, 4))
            reg_targets.append(as_array(enc, np.float32))
        return boxes, labels, reg_targets

    def postprocess_detections(self, class_logits, box_regression, proposals: list, image_size: tuple) -> list:
        """Softmax scores and per-class decoded boxes to one detections dict per image (float32 boxes,
        scores, int64 labels in 1..K, by decreasing score)."""
        scores = as_array(F.softmax(class_logits, dim=-1))
        all_props = np.concatenate([np.asarray(p, np.float32).reshape(-1, 4) for p in proposals])
        k1 = scores.shape[1]
        boxes = as_array(self.box_coder.decode_single(box_regression.detach(), all_props)).reshape(-1, k1, 4)
        boxes = as_array(clip_boxes_to_image(boxes, image_size), np.float32)
        out, start = [], 0
        for props in proposals:
            n = len(props)
            b, s = boxes[start:start + n, 1:].reshape(-1, 4), scores[start:start + n, 1:].reshape(-1)
            lab = np.tile(np.arange(1, k1), n)
            start += n
            keep = np.flatnonzero(s > self.score_thresh)
            b, s, lab = b[keep], s[keep], lab[keep]
            keep = as_array(remove_small_boxes(b, 1e-2), np.int64)
            b, s, lab = b[keep], s[keep], lab[keep]
            keep = as_array(batched_nms(b, s, lab, self.nms_thresh), np.int64)[:self.detections_per_img]
            out.append({"boxes": b[keep].reshape(-1, 4), "scores": s[keep].astype(np.float32),
                        "labels": lab[keep].astype(np.int64)})
        return out

    def forward(self, features, proposals: list, image_size: tuple, targets=None) -> tuple:
        if targets is not None:
            proposals, labels, reg_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.box_roi_pool(features, rois_tensor(proposals)))
        class_logits, box_regression = self.box_predictor(x)
        if targets is not None:
            loss_cls, loss_box = fastrcnn_loss(class_logits, box_regression, np.concatenate(labels),
                                               np.concatenate(reg_targets), self.box_loss_beta)
            return [], {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
        with no_grad():
            return self.postprocess_detections(class_logits, box_regression, proposals, image_size), {}


class FastRCNN(nn.Module):
    """Fast R-CNN on selective-search proposals: :func:`small_backbone` (stride 8), RoI Pool 7x7,
    :class:`TwoMLPHead`, :class:`FastRCNNPredictor`.

    ``forward(images, targets=None)``: the loss dict in training mode with targets; a list of
    detections dicts otherwise. ``proposals`` (a :class:`ProposalCache`) supplies the boxes; at most
    ``max_proposals`` per image are used (selective search's ranking decides which).
    Training defaults follow the paper: 64 RoIs per image, 25% foreground, background IoU in [0.1, 0.5),
    smooth-L1 beta 1.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, widths: tuple = (16, 32, 64),
                 representation_size: int = 256, roi_output_size: int = 7, max_proposals: int = 300,
                 rois_per_image: int = 64, positive_fraction: float = 0.25, bg_iou_low: float = 0.1,
                 box_loss_beta: float = 1.0, score_thresh: float = 0.05, nms_thresh: float = 0.3,
                 detections_per_img: int = 100, selective_search_kwargs: dict | None = None):
        super().__init__()
        if num_classes < 2:
            raise ArgumentError(f"FastRCNN: num_classes counts the background and must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = small_backbone(in_channels, widths)
        stride, ch = self.backbone.stride, self.backbone.out_channels
        self.roi_heads = RoIHeads(
            RoIPool(roi_output_size, 1.0 / stride), TwoMLPHead(ch * roi_output_size ** 2, representation_size),
            FastRCNNPredictor(representation_size, num_classes), bg_iou_low=bg_iou_low,
            batch_size_per_image=rois_per_image, positive_fraction=positive_fraction, box_loss_beta=box_loss_beta,
            score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img)
        self.max_proposals = max_proposals
        self.proposals = ProposalCache(**(selective_search_kwargs or {}))

    def propose(self, images: Tensor) -> list:
        return [self.proposals(im)[:self.max_proposals] for im in as_array(images)]

    def forward(self, images, targets=None):
        images = check_images("FastRCNN", images)
        proposals = self.propose(images)
        features = self.backbone(images)
        detections, losses = self.roi_heads(features, proposals, tuple(images.shape[-2:]),
                                            targets if self.training else None)
        return losses if self.training else detections
