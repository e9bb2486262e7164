"""Train YOLO v1, SSD or the single-object localizer on FashionScenes and report the test figures.

    nice -n 10 python examples/detection_yolo_ssd.py yolo runs/det-yolo
    nice -n 10 python examples/detection_yolo_ssd.py ssd runs/det-ssd
    nice -n 10 python examples/detection_yolo_ssd.py localize runs/det-localize

Each run prints one line per epoch, then the test-split mAP@0.5 (VOC all-point and 11-point), COCO AP
(0.50:0.95, 101 points), AP75 and milliseconds per image, and writes into the run folder metrics.jsonl,
test_metrics.json, curves.png and detections.png (the same as ``shendu train --task detect``).
Pass ``--resume`` as a third argument to continue a run from its last checkpoint, or ``--test-only`` to score
the run's best checkpoint on the test split (for a run stopped early) and write test_metrics.json.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shendu.cli import task_detect  # noqa: E402

# 64 x 64 canvases with 1..4 items of 4..32 px; one epoch = 150 steps of 32 fresh scenes.
SETTINGS = {
    "yolo": {"epochs": 4, "steps_per_epoch": 150, "batch_size": 32, "lr": 2e-3},
    "ssd": {"epochs": 4, "steps_per_epoch": 150, "batch_size": 32, "lr": 2e-3},
    "localize": {"epochs": 3, "steps_per_epoch": 100, "batch_size": 32, "lr": 2e-3},
}

if __name__ == "__main__":
    model, run_dir = sys.argv[1], sys.argv[2]
    cfg = {"model": model, "val_scenes": 300, "test_scenes": 2000, **SETTINGS[model]}
    if "--test-only" in sys.argv[3:]:
        module, net, saved = task_detect.load_detector(run_dir)
        test = task_detect.scenes_for(saved, "test", cfg["test_scenes"], saved["seed"])
        result = task_detect.evaluate(module, net, test, saved)
        with open(os.path.join(run_dir, "test_metrics.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
        sys.exit(0)
    sys.exit(task_detect.train(cfg, run_dir, resume="--resume" in sys.argv[3:]))
