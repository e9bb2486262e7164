"""``shendu train --task detect``: train a detector on FashionScenes; ``shendu detect``: run one on an image.

Detectors register in :data:`DETECTORS` (name -> module). A detector module exposes::

    build_model(name: str, num_classes: int, **model_options) -> Module   # num_classes excludes background
    train_step(model, images: Tensor, targets: list[dict], optimizer, grad_clip=None) -> dict[str, float]
        # one optimizer step (forward, loss, zero_grad, backward, step); returns {"loss": ..., <parts>}
    predict(model, images: Tensor, score_thresh, nms_thresh, max_detections) -> list[dict]
        # eval mode, no graph; per image {"boxes" (D, 4) xyxy px, "scores" (D,), "labels" (D,) in 1..C}
    extra_metrics(preds, targets) -> dict      # optional: reported next to the mAP

Targets are FashionScenes' dicts (``boxes`` xyxy pixels, ``labels`` 1..10, 0 = background). An epoch is
``steps_per_epoch`` steps (None: ``train_scenes // batch_size``, one pass) along a fresh permutation of
the training scenes; after each one the
model is scored on ``val_scenes`` scenes composed from training items with another seed (the test split
is only read at the end, for the reported figures).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from shendu.vision.detection import localization, rcnn, ssd, yolo
from shendu.vision.detection.common import flip_batch

__all__ = ["DEFAULTS", "DETECTORS", "train", "evaluate", "scenes_for", "add_commands", "load_detector",
           "draw_detections"]

DETECTORS = {"yolo": yolo, "ssd": ssd, "localize": localization, "faster_rcnn": rcnn, "fast_rcnn": rcnn,
             "rcnn": rcnn}

DEFAULTS = {
    "model": "yolo",
    "epochs": 8,
    "batch_size": 32,
    "lr": 2e-3,
    "weight_decay": 0.0,
    "grad_clip": 10.0,
    "seed": 0,
    "out": None,
    "max_steps": None,
    "data_root": None,
    "image_size": 64,
    "max_objects": 4,
    "train_scenes": 60000,   # scenes to draw from (scene i is fixed by the seed)
    "steps_per_epoch": 150,  # None: one pass over train_scenes
    "val_scenes": 500,
    "test_scenes": 2000,     # read once at the end for the reported mAP
    "flip": True,            # random horizontal flips of image and boxes
    "score_thresh": 0.05,
    "nms_thresh": 0.45,
    "svm_scenes": 500,       # R-CNN only: training scenes its SVMs and box regressors are fitted on
    "model_options": {},     # keyword arguments of the model's constructor, e.g. {"width": 32} for yolo/ssd
}

# What differs per detector, under the options given (the R-CNN family is sized for 96 px canvases; the
# selective-search models precompute proposals per training image, so they train on fewer scenes, unflipped)
MODEL_DEFAULTS = {
    "faster_rcnn": {"image_size": 96, "batch_size": 8, "lr": 1e-3, "epochs": 8, "steps_per_epoch": 250},
    "fast_rcnn": {"image_size": 96, "batch_size": 8, "lr": 1e-3, "epochs": 6, "train_scenes": 2000,
                  "steps_per_epoch": None, "flip": False},
    "rcnn": {"image_size": 96, "batch_size": 8, "lr": 1e-3, "epochs": 6, "train_scenes": 2000,
             "steps_per_epoch": None, "flip": False},
}


def scenes_for(cfg: dict, split: str, length: int, seed: int):
    """The FashionScenes split a detect config trains or scores on (one object per canvas for localize)."""
    from shendu.data.datasets.scenes import FashionScenes

    return FashionScenes(split, size=cfg["image_size"], max_objects=cfg["max_objects"], seed=seed,
                         root=cfg["data_root"], length=length, single_object=cfg["model"] == "localize")


def evaluate(module, model, scenes, cfg: dict, batch_size: int = 128) -> dict:
    """mAP (and the module's extra metrics) of ``model`` on a FashionScenes set, with seconds per image."""
    import shendu
    from shendu.vision.metrics.detection import evaluate_detections

    preds, targets, seconds = [], [], 0.0
    for start in range(0, len(scenes), batch_size):
        images, tg = scenes.get_batch(np.arange(start, min(start + batch_size, len(scenes))))
        t0 = time.perf_counter()
        preds += module.predict(model, shendu.tensor(images), cfg["score_thresh"], cfg["nms_thresh"], 100)
        seconds += time.perf_counter() - t0
        targets += tg
    result = evaluate_detections(preds, targets)
    out = {k: v for k, v in result.items() if k != "per_class"}
    out["ap_50_per_class"] = {int(c): round(e["ap_50"], 4) for c, e in result["per_class"].items()}
    if hasattr(module, "extra_metrics"):
        out.update(module.extra_metrics(preds, targets))
    out["seconds_per_image"] = seconds / max(len(scenes), 1)
    return out


def _lr_at(cfg: dict, step: int, total: int) -> float:
    """Linear warm-up over the first 3% of the steps, then cosine decay to 0 (a function of the step alone,
    so a resumed run follows the same schedule)."""
    warm = max(1, int(0.03 * total))
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    return cfg["lr"] * 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warm) / max(1, total - warm))))


def train(cfg: dict, run_dir: str, resume: bool) -> int:
    import shendu
    from shendu import optim
    from shendu.io.atomic import atomic_write
    from shendu.train import load_checkpoint, plots, save_checkpoint

    cfg = {**DEFAULTS, **cfg}
    if cfg["model"] not in DETECTORS:
        raise SystemExit(f"shendu train --task detect: unknown model {cfg['model']!r}; choose from {sorted(DETECTORS)}")
    module = DETECTORS[cfg["model"]]
    shendu.manual_seed(cfg["seed"])
    train_set = scenes_for(cfg, "train", cfg["train_scenes"], cfg["seed"])
    val_set = scenes_for(cfg, "train", cfg["val_scenes"], cfg["seed"] + 1000)
    classes = list(train_set.classes)
    cfg["classes"] = classes
    try:
        model = module.build_model(cfg["model"], len(classes) - 1, **cfg["model_options"])
    except TypeError as exc:  # an option the model's constructor does not take
        raise SystemExit(f"shendu train --task detect: model_options {cfg['model_options']} do not fit "
                         f"{cfg['model']}: {exc}") from None
    os.makedirs(run_dir, exist_ok=True)
    optimizer = optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps_per_epoch = cfg["steps_per_epoch"] or max(1, len(train_set) // cfg["batch_size"])
    total = cfg["epochs"] * steps_per_epoch
    if cfg["max_steps"]:
        total = min(total, int(cfg["max_steps"]))
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    epoch, step, history, best = 0, 0, [], -1.0
    if resume:
        tree = load_checkpoint(os.path.join(ckpt_dir, "last"), model, optimizer)
        epoch, step = tree["epoch"], tree["step"]
        history = (tree.get("extra") or {}).get("history", [])
        best = max([h["val_map_50"] for h in history] or [-1.0])
        print(f"shendu train: resuming {run_dir} after epoch {epoch} (step {step})")
    atomic_write(os.path.join(run_dir, "config.json"), json.dumps(cfg, indent=2, default=str))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"shendu train: detect {cfg['model']} ({n_params:,} parameters) on FashionScenes {cfg['image_size']}px, "
          f"{cfg['epochs']} epochs x {steps_per_epoch} steps of {cfg['batch_size']}, run folder {run_dir}")

    while epoch < cfg["epochs"] and step < total:
        rng = np.random.default_rng([cfg["seed"], epoch])  # the epoch's order and flips, fixed for resume
        order = rng.permutation(len(train_set))
        t0, sums, n = time.time(), {}, 0
        for b in range(steps_per_epoch):
            if step >= total:
                break
            images, targets = train_set.get_batch(order[b * cfg["batch_size"]:(b + 1) * cfg["batch_size"]])
            if cfg["flip"]:
                images, targets = flip_batch(images, targets, rng)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(cfg, step, total)
            logs = module.train_step(model, shendu.tensor(images), targets, optimizer, cfg["grad_clip"])
            if not np.isfinite(logs["loss"]):
                raise SystemExit(f"shendu train: the loss became {logs['loss']} at step {step}; lower --lr")
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            n, step = n + 1, step + 1
        epoch += 1
        val = evaluate(module, model, val_set, cfg)
        row = {"epoch": epoch, "step": step, "time": round(time.time() - t0, 2),
               **{k: v / max(n, 1) for k, v in sums.items()},
               **{"val_" + k: v for k, v in val.items() if isinstance(v, float)}}
        history.append(row)
        with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        extra = {"history": history}
        save_checkpoint(os.path.join(ckpt_dir, "last"), model, optimizer, epoch=epoch, step=step, config=cfg,
                        extra=extra)
        if row["val_map_50"] > best:
            best = row["val_map_50"]
            save_checkpoint(os.path.join(ckpt_dir, "best"), model, optimizer, epoch=epoch, step=step, config=cfg,
                            extra=extra)
        print(f"epoch {epoch}: loss {row['loss']:.4f}, val mAP@0.5 {row['val_map_50']:.4f}, "
              f"val AP {row['val_map']:.4f}, {row['time']:.0f}s")

    test_set = scenes_for(cfg, "test", cfg["test_scenes"], cfg["seed"])
    load_checkpoint(os.path.join(ckpt_dir, "best"), model, restore_rng=False)
    if hasattr(module, "post_train"):  # R-CNN: per-class SVMs and box regressors on the fine-tuned features
        t0 = time.time()
        images, targets = train_set.get_batch(np.arange(min(cfg["svm_scenes"], len(train_set))))
        summary = module.post_train(model, shendu.tensor(images), targets)
        if summary:
            save_checkpoint(os.path.join(ckpt_dir, "best"), model, optimizer, epoch=epoch, step=step, config=cfg,
                            extra={"history": history, "post_train": summary})
            scalars = ", ".join(f"{k} {v}" for k, v in summary.items() if np.isscalar(v))
            print(f"shendu train: post-training on {len(images)} scenes ({scalars}), {time.time() - t0:.0f}s")
    result = evaluate(module, model, test_set, cfg)
    with open(os.path.join(run_dir, "test_metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"shendu train: test mAP@0.5 {result['map_50']:.4f} (VOC07 11-point {result['map_50_voc07']:.4f}), "
          f"COCO AP {result['map']:.4f}, AP75 {result['map_75']:.4f}, "
          f"{1000 * result['seconds_per_image']:.2f} ms/image ({len(test_set)} test scenes)")
    plots.plot_curves({k: [h.get(k) for h in history] for k in ("epoch", "loss", "val_map_50", "val_map")},
                      os.path.join(run_dir, "curves.png"))
    images, _ = test_set.get_batch(np.arange(min(8, len(test_set))))
    preds = module.predict(model, shendu.tensor(images), 0.3, cfg["nms_thresh"], 100)
    draw_detections(images, preds, classes, os.path.join(run_dir, "detections.png"))
    return 0


# ------------------------------------------------------------------------------------------- shendu detect
def draw_detections(images: np.ndarray, preds: list, classes, path: str, zoom: int = 4) -> str:
    """A PNG of the images side by side (enlarged ``zoom`` times) with each detection's box, class name
    and score."""
    from PIL import Image, ImageDraw

    from shendu.io.atomic import atomic_write

    images = np.asarray(images, np.float32).reshape(len(images), *np.shape(images)[-2:])
    H, W = images.shape[1:]
    sheet = Image.new("RGB", (len(images) * W * zoom, H * zoom))
    colours = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
    for i, (img, p) in enumerate(zip(images, preds)):
        grey = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).resize((W * zoom, H * zoom))
        sheet.paste(grey.convert("RGB"), (i * W * zoom, 0))
        draw = ImageDraw.Draw(sheet)
        for box, score, label in zip(p["boxes"], p["scores"], p["labels"]):
            x1, y1, x2, y2 = (float(v) * zoom for v in box)
            x1, x2 = x1 + i * W * zoom, x2 + i * W * zoom
            colour = colours[(int(label) - 1) % len(colours)]
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
            draw.text((x1 + 2, y1 + 1), f"{classes[int(label)]} {float(score):.2f}", fill=colour)
    import io
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return path


def load_detector(path: str):
    """``(module, model, config)`` from a run folder or a checkpoint folder of ``--task detect``."""
    from shendu.train import load_checkpoint

    folder = os.path.normpath(path)
    if not os.path.exists(os.path.join(folder, "state.json")):
        cands = [os.path.join(folder, "checkpoints", n) for n in ("best", "last")]
        found = [c for c in cands if os.path.exists(os.path.join(c, "state.json"))]
        if not found:
            raise SystemExit(f"shendu detect: no checkpoint in {path!r} (expected checkpoints/best or /last)")
        folder = found[0]
    tree = load_checkpoint(folder, restore_rng=False)
    cfg = tree["config"]
    module = DETECTORS[cfg["model"]]
    model = module.build_model(cfg["model"], len(cfg["classes"]) - 1, **cfg.get("model_options", {}))
    model.load_state_dict(tree["model"])
    model.eval()
    return module, model, cfg


def cmd_detect(args) -> int:
    import shendu

    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("shendu detect: reading images needs Pillow (`pip install pillow`)") from None
    module, model, cfg = load_detector(args.checkpoint)
    img = Image.open(args.image).convert("L")
    size = cfg["image_size"]
    scale = np.array([img.width / size, img.height / size] * 2, np.float32)
    x = np.asarray(img.resize((size, size), Image.BILINEAR), np.float32)[None, None] / 255.0
    preds = module.predict(model, shendu.tensor(x), args.score_thresh, cfg["nms_thresh"], 100)
    names = cfg["classes"]
    for box, score, label in zip(preds[0]["boxes"], preds[0]["scores"], preds[0]["labels"]):
        print(f"{names[int(label)]:<12} {float(score):.3f}  box {np.round(box * scale, 1).tolist()}")
    if not len(preds[0]["boxes"]):
        print(f"no detection above score {args.score_thresh}")
    out = args.out or os.path.splitext(args.image)[0] + "_detections.png"
    print(draw_detections(x[:, 0], preds, names, out))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("detect", help="draw a detector's boxes, class names and scores on an image")
    p.add_argument("checkpoint", help="a run folder of `shendu train --task detect` or one of its checkpoints")
    p.add_argument("image", help="an image file (read as greyscale, resized to the model's canvas)")
    p.add_argument("--out", help="PNG to write (default IMAGE_detections.png)")
    p.add_argument("--score-thresh", dest="score_thresh", type=float, default=0.3,
                   help="hide detections scoring below this (default 0.3)")
    p.set_defaults(func=cmd_detect)
