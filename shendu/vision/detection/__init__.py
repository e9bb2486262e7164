"""Detectors: single-object classification + localization, YOLO v1, SSD (and the R-CNN family in ``rcnn``).

Each detector module exposes the same small interface (``build_model``, ``train_step``, ``predict``) that
``shendu train --task detect`` drives; see ``shendu/cli/task_detect.py`` and docs/detection.md.
"""

from shendu.vision.detection import common, localization, ssd, yolo  # noqa: F401
