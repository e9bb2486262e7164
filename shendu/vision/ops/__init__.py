"""Detection ops with torchvision's names, argument order and defaults (``torchvision.ops`` and the
anchor/box-coder helpers of ``torchvision.models.detection``). Conventions: docs/vision.md.

One module per family; add a family by importing its public names here.
"""

from shendu.vision.ops.anchors import AnchorGenerator, BoxCoder  # noqa: F401
from shendu.vision.ops.boxes import (batched_nms, box_area, box_convert, box_iou, clip_boxes_to_image,  # noqa: F401
                                     generalized_box_iou, nms, remove_small_boxes)
from shendu.vision.ops.roi import MultiScaleRoIAlign, RoIAlign, RoIPool, roi_align, roi_pool  # noqa: F401
from shendu.vision.ops.deform_conv import (DeformConv2d, DeformRoIPool, DeformRoIPoolPack,  # noqa: F401
                                           deform_conv2d, deform_roi_pool, offset_param_groups)
