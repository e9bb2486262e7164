"""Faster R-CNN (Ren, He, Girshick, Sun, NeurIPS 2015): a region proposal network on the shared feature
map replaces selective search, and the Fast R-CNN head (here with RoI Align, as torchvision) classifies
and refines its proposals. Trained end to end by approximate joint training: the four losses
(``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``) are summed, and no
gradient flows through the proposal coordinates.

Sized for small canvases (96 x 96 FashionScenes): a stride-8 backbone (:func:`small_backbone`), anchors
of 16, 24, 32 and 48 px at ratios 0.5, 1, 2 (12 per position), fewer proposals than torchvision's
2000/1000 (600 before NMS and 300 after in training, 300/100 at test). The rest are torchvision's
defaults: RPN IoU 0.7/0.3, 256 anchors per image at half positives, NMS 0.7; head IoU 0.5, 512 RoIs per
image at 25% positives, box weights (10, 10, 5, 5), smooth-L1 beta 1/9, RoI Align 7x7 with sampling
ratio 2, score threshold 0.05, per-class NMS 0.5, 100 detections per image.
"""

from __future__ import annotations

from shendu import nn
from shendu.errors import ArgumentError
from shendu.vision.detection.fast_rcnn import FastRCNNPredictor, RoIHeads, TwoMLPHead, check_images, small_backbone
from shendu.vision.detection.rpn import RegionProposalNetwork, RPNHead
from shendu.vision.ops import AnchorGenerator, RoIAlign

__all__ = ["FasterRCNN"]


class FasterRCNN(nn.Module):
    """Backbone + :class:`RegionProposalNetwork` + :class:`RoIHeads` (RoI Align).

    ``forward(images, targets=None)``: in training mode with targets, the dict of the four losses; else a
    list of detections dicts ``{"boxes", "scores", "labels"}`` (NumPy arrays), one per image.

    >>> import shendu
    >>> model = FasterRCNN(num_classes=3, widths=(8, 8, 16), representation_size=32).eval()
    >>> det = model(shendu.rand(1, 1, 48, 48))
    >>> sorted(det[0])
    ['boxes', 'labels', 'scores']
    """

    def __init__(self, num_classes: int, in_channels: int = 1, widths: tuple = (16, 32, 64),
                 representation_size: int = 256, anchor_sizes: tuple = ((16, 24, 32, 48),),
                 aspect_ratios: tuple = ((0.5, 1.0, 2.0),), rpn_pre_nms_top_n_train: int = 600,
                 rpn_pre_nms_top_n_test: int = 300, rpn_post_nms_top_n_train: int = 150,
                 rpn_post_nms_top_n_test: int = 100, rpn_nms_thresh: float = 0.7, rpn_fg_iou_thresh: float = 0.7,
                 rpn_bg_iou_thresh: float = 0.3, rpn_batch_size_per_image: int = 256,
                 rpn_positive_fraction: float = 0.5, box_roi_output_size: int = 7, box_sampling_ratio: int = 2,
                 box_fg_iou_thresh: float = 0.5, box_bg_iou_thresh: float = 0.5, box_batch_size_per_image: int = 512,
                 box_positive_fraction: float = 0.25, bbox_reg_weights: tuple = (10.0, 10.0, 5.0, 5.0),
                 box_score_thresh: float = 0.05, box_nms_thresh: float = 0.5, box_detections_per_img: int = 100):
        super().__init__()
        if num_classes < 2:
            raise ArgumentError(f"FasterRCNN: num_classes counts the background and must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = small_backbone(in_channels, widths)
        stride, ch = self.backbone.stride, self.backbone.out_channels
        anchors = AnchorGenerator(anchor_sizes, aspect_ratios)
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(ch, anchors.num_anchors_per_location()[0]), rpn_fg_iou_thresh, rpn_bg_iou_thresh,
            rpn_batch_size_per_image, rpn_positive_fraction,
            {"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            {"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test}, rpn_nms_thresh)
        self.roi_heads = RoIHeads(
            RoIAlign(box_roi_output_size, 1.0 / stride, box_sampling_ratio),
            TwoMLPHead(ch * box_roi_output_size ** 2, representation_size),
            FastRCNNPredictor(representation_size, num_classes), box_fg_iou_thresh, box_bg_iou_thresh, 0.0,
            box_batch_size_per_image, box_positive_fraction, bbox_reg_weights, 1.0 / 9, box_score_thresh,
            box_nms_thresh, box_detections_per_img)

    def forward(self, images, targets=None):
        images = check_images("FasterRCNN", images)
        targets = targets if self.training else None
        features = self.backbone(images)
        proposals, rpn_losses = self.rpn(images, features, targets)
        detections, head_losses = self.roi_heads(features, proposals, tuple(images.shape[-2:]), targets)
        return {**rpn_losses, **head_losses} if self.training else detections
