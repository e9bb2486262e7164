"""FCN-32s / 16s / 8s (and the encoder-decoders, and the sliding-window baseline) on FashionScenes: the table.

Trains each model with ``shendu train --task segment`` (:mod:`shendu.cli.task_segment`) in
``OUT/<model>`` and writes ``OUT/table.md``, laid out like Table 1/2 of the FCN paper: pixel accuracy, mean
accuracy, mean IoU and frequency-weighted IoU on the FashionScenes *test* split (items of Fashion-MNIST's test
set), from the last epoch of each run, with the inference time per image and the parameter count.

    python examples/segmentation_fcn.py                          # fcn32s, fcn16s, fcn8s (defaults below)
    python examples/segmentation_fcn.py --models fcn8s,unpool --epochs 4 --train-scenes 20000
    python examples/segmentation_fcn.py --table-only             # rebuild the table from finished runs
    python examples/segmentation_fcn.py --stride-bound           # what the output stride alone allows
    python examples/segmentation_fcn.py --errors RUN [--flip] [--scales 0.75,1,1.25,1.5]   # where a run's errors are
    python examples/segmentation_fcn.py --occlusion RUN         # its item classifier on whole and occluded items

``--stride-bound`` scores :func:`~shendu.vision.segmentation.stride_limited_masks` (the truth averaged over
each output cell, upsampled like FCN's last layer) on 300 test scenes, for several canvas sizes and
strides: an estimate of what the output stride alone costs, however well the network classifies (an
estimate, not a strict bound: see that function).

``--errors RUN`` splits a trained run's test mIoU (last checkpoint, the run's test scenes) into what the
boundaries cost and what the item classes cost. An *item* here is the pixels of one true class in one scene
(two items of one class in a scene count as one; scenes hold 1-3 items of 10 classes). It prints: the
item-vs-background IoU; the mIoU if every pixel predicted as some item got its true class (the boundary
errors alone remain); the share of items whose predicted pixels mostly carry the true class; and the mIoU
once every item's predicted pixels take the item's majority class (what consistent labelling within an item
would give); and the share of items mostly right by how much of the item's box the items drawn after it cover
(none, under 0.2, 0.2-0.3, 0.3 and more; the overlap rule allows 0.4).

``--occlusion RUN`` asks how much of the item classes' errors the scenes themselves cause. It scores the run's
*pretrained* item classifier (``checkpoints/pretrained``) on whole single items of the test split in
``--bins`` size ranges spanning the run's item scales (``--items`` per range), then on the items of the
run's test scenes, each cut out in a window of the pretraining canvas's side centred on its box: once as the
scene shows it (neighbours in view), once with every pixel not of the item's class zeroed (the item alone,
as much of it as the items drawn over it leave visible).

A run that already exists is resumed (so an interrupted script continues where it stopped) and a finished
one is only read.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from shendu.cli import task_segment

NAMES = {"fcn32s": "FCN-32s", "fcn16s": "FCN-16s", "fcn8s": "FCN-8s", "unpool": "SegNet-style (max unpooling)",
         "nearest": "nearest-neighbour decoder", "nails": "bed-of-nails decoder", "sliding": "sliding window"}


def last_row(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[-1] if rows else None


def table(out: str, models: list) -> str:
    lines = ["| model | pixel acc. | mean acc. | mean IoU | f.w. IoU | test scenes | ms / image | epochs x scenes |",
             "|---|---|---|---|---|---|---|---|"]
    for m in models:
        row = last_row(os.path.join(out, m))
        if row is None:
            continue
        with open(os.path.join(out, m, "config.json")) as f:
            cfg = json.load(f)
        scenes = (cfg["steps_per_epoch"] or cfg["train_scenes"] // cfg["batch_size"]) * cfg["batch_size"]
        lines.append(f"| {NAMES.get(m, m)} | {100 * row['test_pixel_accuracy']:.1f} | "
                     f"{100 * row['test_mean_accuracy']:.1f} | {100 * row['test_mean_iou']:.1f} | "
                     f"{100 * row['test_frequency_weighted_iou']:.1f} | {row['test_scenes']} | "
                     f"{1000 * row['test_seconds_per_image']:.1f} | {row['epoch']} x {scenes} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    return text


def stride_bound(scenes: int = 300) -> str:
    """Markdown table: mIoU of the stride-limited truth on ``scenes`` test scenes per canvas and stride."""
    from shendu.data.datasets.scenes import FashionScenes
    from shendu.vision.metrics.segmentation import mean_iou, segmentation_confusion_matrix
    from shendu.vision.segmentation import stride_limited_masks

    lines = ["| canvas | item size (px) | FCN-32s | FCN-16s | FCN-8s | FCN-4s |", "|---|---|---|---|---|---|"]
    defaults = task_segment.DEFAULTS
    for size, scale in ((defaults["image_size"], (defaults["scale_min"], defaults["scale_max"])), (96, (20, 48)),
                        (96, (30, 54)), (128, (40, 72))):
        ds = FashionScenes("test", size=size, max_objects=defaults["max_objects"], seed=0, length=scenes,
                           scale=scale)
        masks = np.stack([t["masks"] for t in ds.get_batch(np.arange(scenes))[1]])
        cells = [mean_iou(segmentation_confusion_matrix(stride_limited_masks(masks, s, 11), masks, 11))
                 for s in (32, 16, 8, 4)]
        lines.append(f"| {size} | {scale[0]}-{scale[1]} | " + " | ".join(f"{100 * v:.1f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


# Shares of an item's box under later items' boxes: [lo, hi) bins, the first for items not covered at all.
COVER_BINS = {"none": (0.0, 0.0), "under 0.2": (1e-9, 0.2), "0.2-0.3": (0.2, 0.3), "0.3 and more": (0.3, 1.0)}


def box_cover(boxes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(B, K): the share of each item's box under the boxes of the items drawn after it (slots k+1...),
    summed over them as the scenes' overlap rule sums them (that rule bounds the share by 0.4 for the
    placed boxes; these are the tighter boxes of the items' pixels, so a share can exceed it a little)."""
    from shendu.data.datasets.scenes import _box_inter

    later = np.triu(np.ones(valid.shape[1:] * 2, bool), 1)[None] & valid[:, None, :]  # [n, k, j]: j drawn over k
    covered = (_box_inter(boxes[:, :, None].astype(np.float64), boxes[:, None].astype(np.float64)) * later).sum(2)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return np.where(valid, covered / np.maximum(area, 1), 0.0)


def mostly_right_by_cover(truth: np.ndarray, pred: np.ndarray, batch: dict) -> dict:
    """The share of items whose predicted item pixels mostly carry the true class, by :func:`box_cover` bin.
    An item here is one slot: the pixels of its class inside its box (a same-class neighbour's pixels
    inside the box count too)."""
    valid, boxes, labels = batch["valid"], batch["boxes"], batch["labels"]
    B, K = valid.shape
    k = int(max(truth.max(), pred.max(), labels.max())) + 1
    ys, xs = np.arange(truth.shape[1])[None, :, None], np.arange(truth.shape[2])[None, None, :]
    votes = np.zeros((B * K, k), np.int64)
    for slot in range(K):  # slots, not items: each pass covers every scene at once
        x0, y0, x1, y1 = (boxes[:, slot, i, None, None] for i in range(4))
        own = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1) & (truth == labels[:, slot, None, None]) & (pred > 0)
        scene = np.nonzero(own)[0]
        votes += np.bincount((scene * K + slot) * k + pred[own], minlength=B * K * k).reshape(B * K, k)
    right = (votes.argmax(1) == labels.reshape(-1)) & (votes.sum(1) > 0)
    cover = box_cover(boxes, valid).reshape(-1)
    out = {}
    for name, (lo, hi) in COVER_BINS.items():
        sel = valid.reshape(-1) & ((cover == 0) if hi == 0 else (cover >= lo) & (cover < hi))
        out[name] = {"items": int(sel.sum()), "mostly_right": float(right[sel].mean()) if sel.any() else None}
    return out


def error_analysis(run_dir: str, flip: bool = False, scales=(1.0,)) -> dict:
    """Where a segmentation run's test errors are (see the module docstring), as a dict of figures."""
    from shendu.vision.metrics.segmentation import mean_iou, segmentation_confusion_matrix

    model, cfg = task_segment.load_segmenter(os.path.join(run_dir, "checkpoints", "last"))
    scenes = task_segment._scenes(cfg, "test", cfg["test_scenes"])
    k = len(scenes.classes)
    truth, pred = [], []
    for start in range(0, len(scenes), 100):
        batch = scenes.generate(np.arange(start, min(start + 100, len(scenes))))
        truth.append(batch["masks"])
        pred.append(task_segment.predict(model, batch["images"], flip, scales))
    truth, pred = np.concatenate(truth), np.concatenate(pred)
    by_cover = mostly_right_by_cover(truth, pred, scenes.generate(np.arange(len(scenes))))

    def miou(p):
        return float(mean_iou(segmentation_confusion_matrix(p, truth, k)))

    item, said_item = truth > 0, pred > 0
    both = item & said_item
    # items: (scene, true class) pairs; per item, how many of its pixels got each predicted class
    region = np.arange(len(truth))[:, None, None] * k + truth
    votes = np.bincount(region[both] * k + pred[both], minlength=len(truth) * k * k).reshape(-1, k)
    present = np.bincount(region[item], minlength=len(truth) * k) > 0
    majority = votes.argmax(1)
    true_class = np.arange(len(truth) * k) % k
    return {"mean_iou": miou(pred),
            "item_vs_background_iou": float(both.sum() / (item | said_item).sum()),
            "mean_iou_with_true_item_classes": miou(np.where(both, truth, pred)),
            "items": int(present.sum()),
            "items_mostly_right": float((majority[present] == true_class[present]).mean()),
            "mean_iou_with_item_majority_classes": miou(np.where(both, majority[region], pred)),
            "items_mostly_right_by_box_cover": by_cover,
            "flip": flip, "scales": [float(v) for v in scales]}


def scene_item_crops(batch: dict, side: int) -> tuple:
    """The items of ``FashionScenes.generate`` scenes, each cut out in a ``side`` x ``side`` window centred on
    its box (zero outside the canvas): ``(as_seen, alone, labels)``, ``alone`` with every pixel whose mask
    class is not the item's zeroed; ``labels`` are the items' Fashion-MNIST classes (0-9)."""
    from shendu.vision.segmentation import extract_patches

    scene, slot = np.nonzero(batch["valid"])
    boxes = batch["boxes"][scene, slot]
    ys = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(np.int64)
    xs = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(np.int64)
    labels = batch["labels"][scene, slot]
    as_seen = extract_patches(batch["images"], scene, ys, xs, side)
    classes = extract_patches(batch["masks"][:, None].astype(np.float32), scene, ys, xs, side)
    alone = np.where(classes == labels[:, None, None, None], as_seen, np.float32(0))
    return as_seen, alone, labels - 1


def occlusion_analysis(run_dir: str, items: int = 3000, bins: int = 4) -> dict:
    """A run's pretrained item classifier on whole items by size and on its test scenes' items (see the
    module docstring), as a dict of accuracies."""
    import shendu
    from shendu.data.datasets.scenes import FashionScenes
    from shendu.train import load_checkpoint

    path = os.path.join(run_dir, "checkpoints", "pretrained")
    if not os.path.exists(os.path.join(path, "state.json")):
        raise SystemExit(f"--occlusion: {run_dir!r} has no pretrained item classifier (checkpoints/pretrained)")
    cfg = {**task_segment.DEFAULTS, **load_checkpoint(path, restore_rng=False)["config"]}
    classifier = task_segment.item_classifier(task_segment._build(cfg, len(cfg["classes"])), cfg)
    load_checkpoint(path, classifier, restore_rng=False)
    classifier.eval()

    def accuracy(images, labels):
        with shendu.no_grad():
            pred = np.concatenate([classifier(shendu.tensor(images[i:i + 200])).numpy().argmax(1)
                                   for i in range(0, len(images), 200)])
        return float((pred == labels).mean())

    side = task_segment.pretrain_canvas(cfg)
    edges = np.linspace(cfg["scale_min"], cfg["scale_max"] + 1, bins + 1).round().astype(int)
    by_size = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        whole = FashionScenes("test", size=side, seed=cfg["seed"], root=cfg["data_root"], length=items,
                              single_object=True, scale=(lo, hi - 1)).generate(np.arange(items))
        by_size[f"{lo}-{hi - 1}px"] = accuracy(whole["images"], whole["labels"][:, 0] - 1)
    scenes = task_segment._scenes(cfg, "test", cfg["test_scenes"])
    as_seen, alone, labels = scene_item_crops(scenes.generate(np.arange(len(scenes))), side)
    return {"whole_items_by_size": by_size, "whole_items_each": items, "scene_items": int(len(labels)),
            "scene_items_as_seen": accuracy(as_seen, labels), "scene_items_alone": accuracy(alone, labels)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="fcn32s,fcn16s,fcn8s")
    p.add_argument("--out", default="runs/segmentation")
    p.add_argument("--epochs", type=int, default=task_segment.DEFAULTS["epochs"])
    p.add_argument("--train-scenes", type=int, default=task_segment.DEFAULTS["train_scenes"])
    p.add_argument("--test-scenes", type=int, default=task_segment.DEFAULTS["test_scenes"])
    p.add_argument("--batch-size", type=int, default=task_segment.DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=task_segment.DEFAULTS["lr"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--stride-bound", action="store_true", help="print the output-stride bound table and exit")
    p.add_argument("--errors", metavar="RUN", help="print where a trained run's test errors are (JSON) and exit")
    p.add_argument("--flip", action="store_true", help="--errors: mirror test-time augmentation")
    p.add_argument("--scales", type=task_segment.parse_scales, default=(1.0,), help="--errors: e.g. 0.75,1,1.25,1.5")
    p.add_argument("--occlusion", metavar="RUN", help="print its item classifier's accuracy on whole and on "
                   "occluded items (JSON) and exit")
    p.add_argument("--items", type=int, default=3000, help="--occlusion: whole items per size range")
    p.add_argument("--bins", type=int, default=4, help="--occlusion: size ranges")
    args = p.parse_args()
    if args.occlusion:
        print(json.dumps(occlusion_analysis(args.occlusion, args.items, args.bins), indent=1))
        return
    if args.stride_bound:
        print(stride_bound(), end="")
        return
    if args.errors:
        print(json.dumps(error_analysis(args.errors, args.flip, args.scales), indent=1))
        return
    models = [m for m in args.models.split(",") if m]
    if not args.table_only:
        for m in models:
            run_dir = os.path.join(args.out, m)
            row = last_row(run_dir)
            if row is not None and row["epoch"] >= args.epochs:
                continue
            cfg = {**task_segment.DEFAULTS, "model": m, "epochs": args.epochs, "train_scenes": args.train_scenes,
                   "test_scenes": args.test_scenes, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
            resume = os.path.exists(os.path.join(run_dir, "checkpoints", "last", "state.json"))
            task_segment.train(cfg, run_dir, resume=resume)
    print(table(args.out, models), end="")


if __name__ == "__main__":
    main()
