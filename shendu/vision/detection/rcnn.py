"""R-CNN (Girshick, Donahue, Darrell, Malik, CVPR 2014), and the detector interface of the whole R-CNN
family (R-CNN, Fast R-CNN, Faster R-CNN) for ``shendu train --task detect``.

R-CNN in three stages, as in the paper:

1. **Proposals** by selective search; each is enlarged so that ``context`` pixels of surround appear at
   the warped size (the paper's 16 px at 227), then **warped** to ``warp_size x warp_size`` (the paper:
   227) — all proposals of a batch in one RoI Align call (aligned, 2 x 2 samples per output pixel),
   which is bilinear crop-and-resize with no loop over boxes.
2. **Features** from a small CNN (conv-BN-ReLU-pool x 3 and one fully connected layer, the "fc7" of
   this network), **fine-tuned** as a (K + 1)-way softmax classifier on warped proposals: IoU >= 0.5 with
   a ground truth takes its class, the rest is background; mini-batches of 128 windows, 32 of them
   foreground (:func:`loss`/:func:`train_step`).
3. **One linear SVM per class** on the fc7 features (:func:`fit_svms`; hinge loss, trained with
   :class:`shendu.classic.LinearSVM` on the two classes "not c" / "c", whose Weston-Watkins loss is
   the binary hinge on the score difference): positives are the ground-truth boxes of the class,
   negatives the proposals (and other ground truths) with IoU < 0.3 with every box of the class.
   Features are scaled so their mean L2 norm is 20 (the paper's ``feat_norm_mean``). **Box regression**:
   class-specific ridge regression (closed form) from the features to the targets of the proposals
   with IoU >= 0.6 with a box of the class (weights (1, 1, 1, 1)).

Test: warp every proposal, SVM score ``s`` for every class, report ``sigmoid(s)`` as the score (a
monotone map, so rankings and AP are those of the SVM), apply the class's box regressor, per-class NMS
(0.3, the paper's), keep the best 100. Before :func:`fit_svms` has run, the fine-tuned softmax gives the
scores and boxes are not regressed.

The interface (every name takes any of the three models): :func:`build_model`, :func:`loss` (the
training loss of a batch: dict of Tensors summed, and the parts as floats), :func:`train_step`,
:func:`predict`, :func:`post_train` (R-CNN's SVM and regressor stage; nothing for the others).
"""

from __future__ import annotations

import numpy as np

import shendu.functional as F
from shendu import nn
from shendu.autograd.engine import no_grad
from shendu.autograd.tensor import Tensor
from shendu.classic import LinearSVM
from shendu.errors import ArgumentError
from shendu.vision.detection.common import as_array
from shendu.vision.detection.fast_rcnn import FastRCNN, ProposalCache, check_images, rois_tensor
from shendu.vision.detection.faster_rcnn import FasterRCNN
from shendu.vision.detection.rpn import match_boxes, pairwise_iou, sample_balanced
from shendu.vision.ops import BoxCoder, batched_nms, clip_boxes_to_image, remove_small_boxes, roi_align

__all__ = ["RCNN", "MODELS", "build_model", "loss", "train_step", "predict", "post_train", "fit_svms",
           "enlarge_boxes"]


def enlarge_boxes(boxes: np.ndarray, warp_size: int, context: float) -> np.ndarray:
    """Grow xyxy boxes about their centres by ``warp_size / (warp_size - 2 context)``, so that after warping
    to ``warp_size`` the original box spans the middle with ``context`` pixels around it.

    >>> enlarge_boxes(np.array([[10.0, 10.0, 38.0, 24.0]]), 32, 2).tolist()
    [[8.0, 9.0, 40.0, 25.0]]
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    grow = warp_size / (warp_size - 2.0 * context)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * grow
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


class RCNN(nn.Module):
    """R-CNN for small grey canvases. ``num_classes`` counts the background (FashionScenes: 11).

    ``forward(images, targets=None)``: in training mode with targets, ``{"loss_classifier"}`` (the
    fine-tuning loss); else one detections dict per image. The SVMs and box regressors are buffers
    (saved with the weights); :func:`fit_svms` fills them.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, warp_size: int = 32, context: float = 2.0,
                 widths: tuple = (16, 32, 64), feature_dim: int = 256, max_proposals: int = 300,
                 batch_size: int = 128, positive_fraction: float = 0.25, fg_iou_thresh: float = 0.5,
                 score_thresh: float = 0.05, nms_thresh: float = 0.3, detections_per_img: int = 100,
                 selective_search_kwargs: dict | None = None):
        super().__init__()
        if num_classes < 2:
            raise ArgumentError(f"RCNN: num_classes counts the background and must be >= 2, got {num_classes}")
        if warp_size % 8:
            raise ArgumentError(f"RCNN: warp_size must be a multiple of 8 (three 2x2 pools), got {warp_size}")
        self.num_classes, self.warp_size, self.context = num_classes, warp_size, context
        layers, cin = [], in_channels
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = w
        side = warp_size // 8
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * side * side, feature_dim),
                                      nn.ReLU(inplace=True))
        self.classifier = nn.Linear(feature_dim, num_classes)
        k = num_classes - 1
        self.register_buffer("svm_weight", Tensor(np.zeros((feature_dim, k), np.float32)))
        self.register_buffer("svm_bias", Tensor(np.zeros(k, np.float32)))
        self.register_buffer("bbox_weight", Tensor(np.zeros((k, feature_dim + 1, 4), np.float32)))
        self.register_buffer("feature_scale", Tensor(np.ones(1, np.float32)))
        self.register_buffer("svm_fitted", Tensor(np.zeros(1, np.float32)))
        self.max_proposals, self.batch_size, self.positive_fraction = max_proposals, batch_size, positive_fraction
        self.fg_iou_thresh = fg_iou_thresh
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.proposals = ProposalCache(**(selective_search_kwargs or {}))

    def propose(self, images: Tensor) -> list:
        return [self.proposals(im)[:self.max_proposals] for im in as_array(images)]

    def warp(self, images: Tensor, boxes_per_image: list) -> Tensor:
        """Every box (with context) cropped and resized to ``(R, C, warp_size, warp_size)``, one RoI Align."""
        rois = rois_tensor([enlarge_boxes(b, self.warp_size, self.context) for b in boxes_per_image])
        return roi_align(images, rois, self.warp_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)

    def window_features(self, images: Tensor, boxes_per_image: list, chunk: int = 512) -> np.ndarray:
        """fc7 features ``(R, D)`` of all boxes (no graph), computed ``chunk`` windows at a time."""
        counts = np.cumsum([0] + [len(b) for b in boxes_per_image])
        owner = np.repeat(np.arange(len(boxes_per_image)), np.diff(counts))
        flat = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes_per_image])
        out = []
        with no_grad():
            for s in range(0, len(flat), chunk):
                part = [flat[s:s + chunk][owner[s:s + chunk] == i] for i in range(len(boxes_per_image))]
                out.append(as_array(self.features(self.warp(images, part))))
        return np.concatenate(out) if out else np.zeros((0, self.classifier.in_features), np.float32)

    def finetune_loss(self, images: Tensor, targets) -> dict:
        """Softmax fine-tuning: proposals + ground truth of the batch labelled at IoU 0.5, 128 windows with
        25% foreground drawn over the whole batch, cross-entropy."""
        boxes, labels = [], []
        for props, t in zip(self.propose(images), targets):
            gt = as_array(t["boxes"], np.float32).reshape(-1, 4)
            gt_labels = as_array(t["labels"], np.int64).reshape(-1)
            b = np.concatenate([props, gt])
            m = match_boxes(pairwise_iou(gt, b), self.fg_iou_thresh, self.fg_iou_thresh)
            boxes.append(b)
            labels.append(np.where(m >= 0, gt_labels[np.maximum(m, 0)] if len(gt) else 0, 0))
        owner = np.repeat(np.arange(len(boxes)), [len(b) for b in boxes])
        flat_boxes, flat_labels = np.concatenate(boxes), np.concatenate(labels)
        pos, neg = sample_balanced(flat_labels, self.batch_size, self.positive_fraction)
        pick = np.sort(np.concatenate([pos, neg]))  # grouped by image, as rois_tensor orders them
        per_image = [flat_boxes[pick][owner[pick] == i] for i in range(len(boxes))]
        logits = self.classifier(self.features(self.warp(images, per_image)))
        return {"loss_classifier": F.cross_entropy(logits, Tensor(flat_labels[pick]))}

    def detect(self, images: Tensor) -> list:
        proposals = self.propose(images)
        feats = self.window_features(images, proposals)
        k = self.num_classes - 1
        if float(self.svm_fitted.data[0]) > 0:
            x = feats * float(self.feature_scale.data[0])
            scores = 1.0 / (1.0 + np.exp(-(x @ self.svm_weight.data + self.svm_bias.data)))
            deltas = np.einsum("rd,kdj->rkj", np.concatenate([x, np.ones((len(x), 1), x.dtype)], 1),
                               self.bbox_weight.data, optimize=True)
        else:
            with no_grad():
                scores = as_array(F.softmax(self.classifier(Tensor(feats)), dim=-1))[:, 1:]
            deltas = np.zeros((len(feats), k, 4), np.float32)
        flat_props = np.concatenate(proposals) if proposals else np.zeros((0, 4), np.float32)
        with no_grad():
            boxes = self.box_coder.decode_single(deltas.reshape(len(feats), 4 * k).astype(np.float32), flat_props)
        boxes = as_array(clip_boxes_to_image(as_array(boxes).reshape(-1, k, 4), tuple(images.shape[-2:])), np.float32)
        out, start = [], 0
        for props in proposals:
            n = len(props)
            b, s = boxes[start:start + n].reshape(-1, 4), scores[start:start + n].reshape(-1).astype(np.float32)
            lab = np.tile(np.arange(1, k + 1), n)
            start += n
            keep = np.flatnonzero(s > self.score_thresh)
            keep = keep[as_array(remove_small_boxes(b[keep], 1e-2), np.int64)]
            keep = keep[as_array(batched_nms(b[keep], s[keep], lab[keep], self.nms_thresh), np.int64)]
            keep = keep[:self.detections_per_img]
            out.append({"boxes": b[keep].reshape(-1, 4), "scores": s[keep], "labels": lab[keep].astype(np.int64)})
        return out

    def forward(self, images, targets=None):
        images = check_images("RCNN", images)
        if self.training and targets is not None:
            return self.finetune_loss(images, targets)
        return self.detect(images)


def fit_svms(model: RCNN, images, targets, svm_reg: float = 1e-4, svm_lr: float = 1e-2, svm_iters: int = 3000,
             neg_iou: float = 0.3, bbox_iou: float = 0.6, bbox_lambda: float = 100.0, hard_negative_rounds: int = 2,
             seed: int = 0) -> dict:
    """R-CNN's stages after fine-tuning: one linear SVM per class and one ridge box regressor per class on
    the fc7 features of ``images`` (N, C, H, W) and their ``targets``. Returns a summary dict.

    ``svm_*``: the SGD of :class:`shendu.classic.LinearSVM` (its regulariser ``reg * |W|^2``);
    ``neg_iou``: negatives have IoU below it with every box of the class; ``hard_negative_rounds``: see
    :func:`_train_svm`; ``bbox_iou``/``bbox_lambda``: the regressor's training windows and ridge penalty.
    """
    model.eval()
    images = check_images("fit_svms", images)
    proposals = model.propose(images)
    gts = [as_array(t["boxes"], np.float32).reshape(-1, 4) for t in targets]
    gt_labels = [as_array(t["labels"], np.int64).reshape(-1) for t in targets]
    windows = [np.concatenate([p, g]) for p, g in zip(proposals, gts)]
    is_gt = np.concatenate([np.r_[np.zeros(len(p), bool), np.ones(len(g), bool)] for p, g in zip(proposals, gts)])
    feats = model.window_features(images, windows)
    scale = 20.0 / max(float(np.linalg.norm(feats, axis=1).mean()), 1e-12)
    x = (feats * scale).astype(np.float64)
    k = model.num_classes - 1
    # per window and class: the best IoU with a box of that class, and that box
    best_iou = np.zeros((len(x), k))
    best_box = np.zeros((len(x), k, 4), np.float32)
    start = 0
    for w, g, lab in zip(windows, gts, gt_labels):
        iou = pairwise_iou(g, w)  # (G, W)
        for c in np.unique(lab):  # the few classes present in this image
            rows = np.flatnonzero(lab == c)
            j = iou[rows].argmax(0)
            best_iou[start:start + len(w), c - 1] = iou[rows[j], np.arange(len(w))]
            best_box[start:start + len(w), c - 1] = g[rows[j]]
        start += len(w)
    label_of_window = np.concatenate([np.r_[np.zeros(len(p), np.int64), lab] for p, lab in zip(proposals, gt_labels)])
    weight = np.zeros((x.shape[1], k), np.float32)
    bias = np.zeros(k, np.float32)
    reg = np.zeros((k, x.shape[1] + 1, 4), np.float32)
    summary = {"windows": int(len(x)), "positives": [], "bbox_samples": []}
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    for c in range(1, k + 1):
        pos = np.flatnonzero(is_gt & (label_of_window == c))
        neg = np.flatnonzero(best_iou[:, c - 1] < neg_iou)
        svm = _train_svm(x, pos, neg, svm_lr, svm_reg, svm_iters, hard_negative_rounds, seed + c)
        weight[:, c - 1] = svm.W[:, 1] - svm.W[:, 0]  # the binary decision score s_c - s_not_c
        bias[c - 1] = svm.b[1] - svm.b[0]
        near = np.flatnonzero(best_iou[:, c - 1] >= bbox_iou)
        summary["positives"].append(int(len(pos)))
        summary["bbox_samples"].append(int(len(near)))
        if len(near):
            with no_grad():
                t = as_array(model.box_coder.encode_single(best_box[near, c - 1], np.concatenate(windows)[near]))
            a = x1[near]
            reg[c - 1] = np.linalg.solve(a.T @ a + bbox_lambda * np.eye(a.shape[1]), a.T @ t)
    model.svm_weight.data[...] = weight
    model.svm_bias.data[...] = bias
    model.bbox_weight.data[...] = reg
    model.feature_scale.data[...] = scale
    model.svm_fitted.data[...] = 1.0
    return summary


def _train_svm(x: np.ndarray, pos: np.ndarray, neg: np.ndarray, lr: float, reg: float, iters: int, rounds: int,
               seed: int) -> LinearSVM:
    """A two-class LinearSVM (not c / c) with hard negative mining, the paper's remedy for a sea of easy
    negatives: start from the positives and a random subset of negatives (20 per positive, at least
    1,000), then ``rounds`` times add every negative that violates the margin (binary score > -1) and
    train on, ``iters`` SGD steps split over the rounds."""
    rng = np.random.default_rng(seed)
    active = rng.permutation(neg)[:max(20 * len(pos), 1000)]
    svm = LinearSVM(weight_scale=1e-3)
    for r in range(rounds + 1):
        rows = np.concatenate([pos, active])
        y = np.r_[np.ones(len(pos), np.int64), np.zeros(len(active), np.int64)]
        svm.train(x[rows], y, learning_rate=lr, reg=reg, num_iters=iters // (rounds + 1), batch_size=256,
                  seed=seed + r, num_classes=2)
        if r < rounds:
            score = x[neg] @ (svm.W[:, 1] - svm.W[:, 0]) + (svm.b[1] - svm.b[0])
            active = np.union1d(active, neg[score > -1.0])
    return svm


# ------------------------------------------------------------------------------------------- interface

MODELS = {"rcnn": RCNN, "fast_rcnn": FastRCNN, "faster_rcnn": FasterRCNN}


def build_model(name: str = "faster_rcnn", num_classes: int = 10, **kw) -> nn.Module:
    """``"rcnn"``, ``"fast_rcnn"`` or ``"faster_rcnn"``; ``num_classes`` excludes the background (as the other
    detectors of ``shendu train --task detect``); keyword arguments go to the model's constructor.

    >>> build_model("faster_rcnn", 10).num_classes   # 10 classes + background
    11
    """
    if name not in MODELS:
        raise ArgumentError(f"build_model: unknown R-CNN model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](num_classes + 1, **kw)


def loss(model: nn.Module, images, targets) -> tuple:
    """The training loss of a batch: ``(total Tensor, {part: float})`` with the model's loss parts
    (R-CNN: the fine-tuning cross-entropy; Fast R-CNN: classifier and box terms; Faster R-CNN: the four
    losses). Puts the model in training mode."""
    model.train()
    parts = model(images, targets)
    total = sum(parts.values(), Tensor(np.zeros((), np.float32)))
    return total, {k: float(v.item()) for k, v in parts.items()}


def train_step(model: nn.Module, images, targets, optimizer, grad_clip: float | None = None) -> dict:
    """One optimizer step on :func:`loss`; returns ``{"loss": total, <parts>}`` as floats."""
    from shendu.nn.utils import clip_grad_norm_

    total, parts = loss(model, images, targets)
    optimizer.zero_grad()
    total.backward()
    if grad_clip:
        clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return {"loss": float(total.item()), **parts}


def predict(model: nn.Module, images, score_thresh: float = 0.05, nms_thresh: float | None = None,
            max_detections: int = 100) -> list:
    """Detections in eval mode without a graph: one dict per image with ``boxes`` float32 (D, 4) xyxy,
    ``scores`` float32 (D,), ``labels`` int64 (D,) in 1..K, by decreasing score. ``nms_thresh=None`` keeps
    the model's own per-class NMS threshold."""
    model.eval()
    owner = model.roi_heads if hasattr(model, "roi_heads") else model
    saved = owner.score_thresh, owner.nms_thresh, owner.detections_per_img
    owner.score_thresh, owner.detections_per_img = score_thresh, max_detections
    if nms_thresh is not None:
        owner.nms_thresh = nms_thresh
    try:
        with no_grad():
            return model(images)
    finally:
        owner.score_thresh, owner.nms_thresh, owner.detections_per_img = saved


def post_train(model: nn.Module, images, targets, **kw) -> dict:
    """After the gradient training: R-CNN fits its SVMs and box regressors (:func:`fit_svms`) on the given
    training images; Fast and Faster R-CNN need nothing (returns ``{}``)."""
    return fit_svms(model, images, targets, **kw) if isinstance(model, RCNN) else {}
