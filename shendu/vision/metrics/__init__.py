"""Evaluation metrics for vision tasks: semantic segmentation (FCN paper section 5) and detection (mAP)."""

from shendu.vision.metrics.detection import *  # noqa: F401,F403
from shendu.vision.metrics.segmentation import *  # noqa: F401,F403
