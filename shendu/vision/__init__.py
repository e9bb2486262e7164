"""Computer vision on top of shendu: detection and segmentation building blocks.

``shendu.vision.ops`` holds the torchvision-style ops (boxes, NMS, anchors, box coding, RoI Pool/Align).
"""

from shendu.vision import ops  # noqa: F401
