"""``shendu train --task segment``: semantic segmentation of FashionScenes; ``shendu segment``: run a model on an image.

Models (:mod:`shendu.vision.segmentation`): ``fcn32s``, ``fcn16s``, ``fcn8s``, the encoder-decoders
``unpool`` (SegNet max unpooling), ``nearest`` and ``nails`` (bed of nails), and the ``sliding`` window
patch classifier baseline. The masks have 11 classes: background and the 10 Fashion-MNIST classes.

Each epoch is ``steps_per_epoch`` steps (default one pass over ``train_scenes``) along a fresh permutation of
the training scenes (items of the Fashion-MNIST *train* split), with random left-right flips; the loss is
the per-pixel cross-entropy (``sliding``: the cross-entropy of ``patches_per_scene`` random windows per
scene, each labelled with its centre pixel). After each epoch the model is scored on ``test_scenes`` scenes
of the *test* split: the FCN paper's pixel accuracy, mean accuracy, mIoU and frequency-weighted IoU from
one confusion matrix over the whole set (see :mod:`shendu.vision.metrics.segmentation`), and the inference
time per image. The run folder gets ``metrics.jsonl`` (one row per epoch), ``config.json``,
``checkpoints/last`` and ``checkpoints/best`` (highest test mIoU; the figures to report are the last
epoch's, which select nothing on the test set), ``segmentation.png`` (test images / truth / prediction) and
``curves.png``. ``--resume`` continues after the last finished epoch with the same schedule.

With ``pretrain_epochs`` > 0 the backbone is first trained as an item classifier
(:class:`~shendu.vision.segmentation.SceneClassifier`: global average pooling + linear) on canvases holding
one item of the same scale range (side: ``scale_max`` rounded up to a multiple of 32), with the same
batch size, warm-up + cosine schedule and flips, and Adam at the same learning rate unless
``pretrain_optimizer`` (``"sgd"``: momentum 0.9, Nesterov), ``pretrain_lr`` or ``pretrain_weight_decay`` say
otherwise; the segmentation training then starts from
that backbone with a fresh optimizer, as the FCN paper fine-tunes a classifier. ``pretrain_head: "fc"``
(FCNs only) puts the FCN's own ``fc6`` and ``fc7`` between pool5 and the pooling
(:meth:`~shendu.vision.segmentation.SceneClassifier.from_fcn`), so the FCN starts as the whole classifier
convolutionalised, with only its score layers new, as in the paper. ``pretrain_erase`` (a probability) zeroes
a random rectangle of 10-40% of that share of the items' boxes (:func:`erase_in_boxes`), as the scenes'
overlapping items hide parts of each other. ``pretrain_objects: N`` > 1 draws 1..N items per pretraining canvas,
placed as in the scenes (overlaps, neighbours in view), and trains the classifier to name all of them
(:func:`item_loss`: a sigmoid per class, not a softmax). Each pretraining epoch's
test accuracy (items of the *test* split) goes to ``pretrain.jsonl``, the classifier and its optimizer to
``checkpoints/pretrained`` after every epoch; ``--resume`` of a run stopped during the pretraining continues
after its last finished epoch.

``backbone_from`` starts the backbone from the ``backbone.*`` weights of another checkpoint folder (say
another run's ``checkpoints/pretrained``, to try segmentation settings without pretraining again; the
``model_options`` must build the same backbone). ``backbone_lr_scale`` trains the backbone at that fraction
of the learning rate during the segmentation training (discriminative fine-tuning: a pretrained backbone
changes less than the new head).
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np

__all__ = ["DEFAULTS", "MODELS", "train", "evaluate", "evaluate_run", "load_ensemble", "predict", "predict_proba",
           "erase_in_boxes", "item_classifier", "item_loss", "pretrain_canvas", "parse_scales", "colorize",
           "save_segmentation_figure", "load_segmenter", "add_commands"]

DEFAULTS = {
    "model": "fcn8s",
    "epochs": 8,
    "batch_size": 32,
    "lr": 2e-3,
    "weight_decay": 0.0,
    "seed": 0,
    "out": None,
    "max_steps": None,
    "data_root": None,
    "image_size": 64,          # canvas side (a multiple of 32)
    "max_objects": 3,
    "scale_min": 20,           # an item's longer side is scale_min..scale_max px
    "scale_max": 36,
    "train_scenes": 60000,     # scenes to draw from (scene i is fixed by the seed)
    "steps_per_epoch": None,   # default: one pass over train_scenes
    "test_scenes": 1000,       # scored after every epoch (sliding: at most sliding_test_scenes)
    "flip": True,
    "patch": 33,               # sliding: window side
    "patches_per_scene": 32,   # sliding: training windows drawn per scene
    "sliding_test_scenes": 20,
    "model_options": {},       # keyword arguments of the model, e.g. {"widths": [32, 64, 128, 192, 256]}
    "pretrain_epochs": 0,      # first train the backbone to classify single items (not for sliding)
    "pretrain_steps_per_epoch": None,  # default: one pass over train_scenes single-item canvases
    "pretrain_optimizer": "adam",      # or "sgd" (momentum 0.9, Nesterov), for the pretraining only
    "pretrain_lr": None,               # default: lr
    "pretrain_weight_decay": None,     # default: weight_decay
    "pretrain_head": "linear",         # or "fc": the FCN's fc6 + fc7 pretrained too (pool5 -> fc6 -> fc7 -> GAP -> fc)
    "pretrain_erase": 0.0,             # chance that a pretraining item gets a random part of its box zeroed
    "pretrain_objects": 1,             # items per pretraining canvas: 1, or up to N named by a multi-label loss
    "backbone_from": None,     # a checkpoint folder whose backbone.* weights start the model (transfer learning)
    "backbone_lr_scale": 1.0,  # the backbone's learning rate in the segmentation training, as a fraction of lr
}

PRETRAIN_OPTIMIZERS = ("adam", "sgd")
PRETRAIN_HEADS = ("linear", "fc")

MODELS = ("fcn32s", "fcn16s", "fcn8s", "unpool", "nearest", "nails", "sliding")


# ------------------------------------------------------------------------------------------------- data
def _scenes(cfg: dict, split: str, length: int):
    from shendu.data.datasets.scenes import FashionScenes

    return FashionScenes(split, size=cfg["image_size"], max_objects=cfg["max_objects"], seed=cfg["seed"],
                         root=cfg["data_root"], length=length, scale=(cfg["scale_min"], cfg["scale_max"]))


def _build(cfg: dict, num_classes: int):
    from shendu.errors import ArgumentError
    from shendu.vision.segmentation import segmentation_model

    if cfg["model"] not in MODELS:
        raise SystemExit(f"shendu train --task segment: unknown model {cfg['model']!r}; "
                         f"choose from {', '.join(MODELS)}")
    options = dict(cfg.get("model_options") or {})
    if cfg["model"] == "sliding":
        options.setdefault("patch", cfg["patch"])
    elif cfg["image_size"] % 32:
        raise SystemExit(f"shendu train --task segment: image_size must be a multiple of 32, got {cfg['image_size']}")
    try:
        return segmentation_model(cfg["model"], num_classes, **options)
    except (TypeError, ArgumentError) as exc:  # an option the model does not take, or a bad value
        raise SystemExit(f"shendu train --task segment: model_options {cfg.get('model_options')} do not fit "
                         f"{cfg['model']}: {exc}") from None


def _lr_at(lr: float, step: int, total: int) -> float:
    """Linear warm-up to ``lr`` over the first 3% of the steps, then cosine decay to 0 (a function of the
    step alone, so a resumed run follows the same schedule)."""
    warm = max(1, int(0.03 * total))
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warm) / max(1, total - warm))))


def _load_backbone(model, cfg: dict) -> None:
    """Copy the ``backbone.*`` weights of the checkpoint folder ``cfg["backbone_from"]`` into ``model.backbone``."""
    from shendu.errors import DataError, StateDictError
    from shendu.train import load_checkpoint

    path = cfg["backbone_from"]
    try:
        saved = load_checkpoint(path, restore_rng=False)["model"]
    except DataError as exc:
        raise SystemExit(f"shendu train --task segment: backbone_from: {exc}") from None
    weights = {k[len("backbone."):]: v for k, v in saved.items() if k.startswith("backbone.")}
    if not weights:
        raise SystemExit(f"shendu train --task segment: backbone_from {path!r} holds no backbone.* weights")
    try:
        model.backbone.load_state_dict(weights)
    except StateDictError as exc:
        raise SystemExit(f"shendu train --task segment: the backbone in backbone_from {path!r} does not fit "
                         f"{cfg['model']} with model_options {cfg['model_options']}: {exc}") from None


def _param_groups(model, cfg: dict) -> tuple[list, list]:
    """The segmentation optimizer's parameter groups and each group's fraction of the learning rate: one
    group, or with ``backbone_lr_scale`` != 1 the head's parameters and then the backbone's."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg["backbone_lr_scale"] == 1.0:
        return [{"params": trainable}], [1.0]
    backbone = {id(p) for p in model.backbone.parameters()}
    return ([{"params": [p for p in trainable if id(p) not in backbone]},
             {"params": [p for p in trainable if id(p) in backbone]}], [1.0, float(cfg["backbone_lr_scale"])])


def _batch_indices(order: np.ndarray, b: int, batch_size: int) -> np.ndarray:
    """Batch ``b`` of an epoch along ``order``, wrapping around when the epoch has more steps than the
    scenes fill (every batch full)."""
    return order[np.arange(b * batch_size, (b + 1) * batch_size) % len(order)]


def _random_flips(rng: np.random.Generator, images: np.ndarray, masks: np.ndarray | None = None) -> tuple:
    """Each image (and its mask) mirrored left-right with probability 1/2."""
    flip = rng.random(len(images)) < 0.5
    images = np.ascontiguousarray(np.where(flip[:, None, None, None], images[..., ::-1], images))
    if masks is not None:
        masks = np.ascontiguousarray(np.where(flip[:, None, None], masks[..., ::-1], masks))
    return images, masks


def erase_in_boxes(rng: np.random.Generator, images: np.ndarray, boxes: np.ndarray, p: float,
                   area: tuple = (0.1, 0.4), ratio: tuple = (0.3, 3.3)) -> np.ndarray:
    """Random erasing inside each image's box: with probability ``p``, zero one rectangle of ``images[i]``
    (N, C, H, W) within ``boxes[i]`` (N, 4) xyxy.

    Occlusion for the single-item pretraining: in the scenes, later items hide up to 40% of an earlier
    item's box (the overlap rule of :mod:`shendu.data.datasets.scenes`), so the item classifier should not
    need the whole item. The rectangle covers ``area`` (uniform) of the box's area with aspect ratio h/w
    log-uniform in ``ratio`` (Zhong et al. 2017's range), is centred uniformly in the box and clipped to it.

    >>> img = np.ones((1, 1, 8, 8), np.float32)
    >>> out = erase_in_boxes(np.random.default_rng(0), img, np.array([[2, 2, 6, 6]]), p=1.0)
    >>> bool(out[0, 0, :2].all() and out[0, 0, 2:6, 2:6].min() == 0), float(out.sum()) < 64
    (True, True)
    """
    n, _, height, width = images.shape
    x0, y0, x1, y1 = (boxes[:, i].astype(np.float64)[:, None, None] for i in range(4))
    box_area = (x1 - x0) * (y1 - y0)
    share = rng.uniform(area[0], area[1], (n, 1, 1))
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), (n, 1, 1)))
    half_h, half_w = np.sqrt(share * box_area * aspect) / 2, np.sqrt(share * box_area / aspect) / 2
    cy, cx = y0 + rng.random((n, 1, 1)) * (y1 - y0), x0 + rng.random((n, 1, 1)) * (x1 - x0)
    ys, xs = np.arange(height)[None, :, None] + 0.5, np.arange(width)[None, None, :] + 0.5  # pixel centres
    cut = ((np.abs(ys - cy) < half_h) & (np.abs(xs - cx) < half_w) & (ys > y0) & (ys < y1) & (xs > x0) & (xs < x1)
           & (rng.random((n, 1, 1)) < p))
    return np.where(cut[:, None], np.zeros((), images.dtype), images)


def pretrain_canvas(cfg: dict) -> int:
    """Side of the pretraining's single-item canvases: ``scale_max`` rounded up to a multiple of 32."""
    return -(-cfg["scale_max"] // 32) * 32


def item_classifier(model, cfg: dict):
    """The pretraining's item classifier (10 classes) on ``model``'s backbone (shared, not copied), with the
    FCN's ``fc6`` and ``fc7`` between pool5 and the pooling if ``cfg["pretrain_head"]`` is ``"fc"``."""
    from shendu.data.datasets.scenes import FashionScenes
    from shendu.vision.segmentation import SceneClassifier

    classes = len(FashionScenes.classes) - 1  # the items' classes: no background
    return (SceneClassifier.from_fcn(model, classes) if cfg["pretrain_head"] == "fc"
            else SceneClassifier(classes, backbone=model.backbone))


def item_loss(logits, labels: np.ndarray):
    """The pretraining loss of ``logits`` (B, 10) for canvases whose items have ``labels`` (B, K) (mask classes:
    1-10, 0 for an empty slot). One item per canvas (K = 1): the cross-entropy of its class. Several: each class
    is present or not, ``sum_c BCE(sigmoid(logits[:, c]), present[:, c])`` averaged over the canvases (summed
    over the classes, so that a wrong class costs about what it costs the cross-entropy).

    >>> import shendu
    >>> round(item_loss(shendu.zeros(1, 10), np.array([[3, 5]])).item(), 4)  # 10 classes at p = 1/2
    6.9315
    """
    import shendu
    import shendu.functional as F

    if labels.shape[1] == 1:
        return F.cross_entropy(logits, shendu.tensor(labels[:, 0] - 1))
    present = np.zeros(logits.shape, np.float32)
    canvas, slot = np.nonzero(labels)
    present[canvas, labels[canvas, slot] - 1] = 1.0
    return F.binary_cross_entropy_with_logits(logits, shendu.tensor(present), reduction="sum") / len(labels)


def _pretrain(model, cfg: dict, run_dir: str, checkpoint: str, resume: bool = False) -> None:
    """Train ``model.backbone`` as an item classifier on canvases of ``pretrain_objects`` items (see the module
    doc; scored on single items of the test split), saving
    the classifier and its optimizer to ``checkpoint`` after every epoch. ``resume``: continue after the
    epoch saved there (with every epoch done, this only loads the trained backbone)."""
    import shendu
    from shendu import optim
    from shendu.data.datasets.scenes import FashionScenes
    from shendu.io.atomic import atomic_write
    from shendu.train import load_checkpoint, save_checkpoint

    size = pretrain_canvas(cfg)
    objects = {"train": cfg["pretrain_objects"], "test": 1}  # scored on single items whatever the training
    items = {split: FashionScenes(split, size=size, seed=cfg["seed"], root=cfg["data_root"], length=length,
                                  single_object=objects[split] == 1, max_objects=objects[split],
                                  scale=(cfg["scale_min"], cfg["scale_max"]))
             for split, length in (("train", cfg["train_scenes"]), ("test", cfg["test_scenes"]))}
    classifier = item_classifier(model, cfg)
    lr = cfg["lr"] if cfg["pretrain_lr"] is None else cfg["pretrain_lr"]
    decay = cfg["weight_decay"] if cfg["pretrain_weight_decay"] is None else cfg["pretrain_weight_decay"]
    if cfg["pretrain_optimizer"] == "sgd":
        optimizer = optim.SGD(classifier.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=decay)
    else:
        optimizer = optim.Adam(classifier.parameters(), lr=lr, weight_decay=decay)
    steps_per_epoch = cfg["pretrain_steps_per_epoch"] or max(1, len(items["train"]) // cfg["batch_size"])
    total = cfg["pretrain_epochs"] * steps_per_epoch
    log = os.path.join(run_dir, "pretrain.jsonl")
    done, step = 0, 0
    if resume:
        tree = load_checkpoint(checkpoint, classifier, optimizer)
        done, step = tree["epoch"], tree["step"]
        if done >= cfg["pretrain_epochs"]:
            return
    rows = []  # the log keeps the rows of the epochs saved, not those of an epoch cut short
    if os.path.exists(log):
        with open(log, encoding="utf-8") as f:
            rows = [line for line in f if line.strip() and json.loads(line)["epoch"] <= done]
    atomic_write(log, "".join(rows))
    what = "the backbone" + (" with fc6 and fc7" if classifier.head is not None else "")
    task = "classify single items" if objects["train"] == 1 else f"name the 1-{objects['train']} items"
    print(f"shendu train: pretraining {what} to {task} on {size}px canvases, "
          f"{cfg['pretrain_epochs']} epochs x {steps_per_epoch} steps" + (f", from epoch {done + 1}" if done else ""))
    for epoch in range(done + 1, cfg["pretrain_epochs"] + 1):
        rng = np.random.default_rng([cfg["seed"], epoch, 1])
        order = rng.permutation(len(items["train"]))
        classifier.train()
        t0, loss_sum = time.time(), 0.0
        for b in range(steps_per_epoch):
            batch = items["train"].generate(_batch_indices(order, b, cfg["batch_size"]))
            images = batch["images"]
            for slot in range(objects["train"] if cfg["pretrain_erase"] else 0):  # before the flips (boxes)
                images = erase_in_boxes(rng, images, batch["boxes"][:, slot], cfg["pretrain_erase"])
            images = _random_flips(rng, images)[0] if cfg["flip"] else images
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(lr, step, total)
            loss = item_loss(classifier(shendu.tensor(images)), batch["labels"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum, step = loss_sum + float(loss.item()), step + 1
        classifier.eval()
        correct = 0
        with shendu.no_grad():
            for start in range(0, len(items["test"]), 100):
                batch = items["test"].generate(np.arange(start, min(start + 100, len(items["test"]))))
                correct += int((classifier(shendu.tensor(batch["images"])).data.argmax(1)
                                == batch["labels"][:, 0] - 1).sum())
        row = {"epoch": epoch, "step": step, "loss": loss_sum / steps_per_epoch, "time": round(time.time() - t0, 1),
               "test_accuracy": correct / len(items["test"])}
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        save_checkpoint(checkpoint, classifier, optimizer, epoch=epoch, step=step, config=cfg)
        print(f"pretrain epoch {epoch}/{cfg['pretrain_epochs']}: loss {row['loss']:.4f}, "
              f"test accuracy {row['test_accuracy']:.4f} ({len(items['test'])} items), {row['time']:.0f}s")


def _loss(model, cfg, images: np.ndarray, masks: np.ndarray, rng: np.random.Generator):
    import shendu
    import shendu.functional as F

    if cfg["model"] != "sliding":
        return F.cross_entropy(model(shendu.tensor(images)), shendu.tensor(masks))
    from shendu.vision.segmentation import extract_patches

    B, _, H, W = images.shape
    index = np.repeat(np.arange(B), cfg["patches_per_scene"])
    ys, xs = rng.integers(0, H, len(index)), rng.integers(0, W, len(index))
    patches = extract_patches(images, index, ys, xs, model.patch)
    return F.cross_entropy(model(shendu.tensor(patches)), shendu.tensor(masks[index, ys, xs]))


# ------------------------------------------------------------------------------------------- evaluation
def _scaled_side(side: int, scale: float) -> int:
    """``side * scale`` rounded to a multiple of 32 (the FCNs' five poolings), at least 32."""
    return max(32, int(round(side * scale / 32)) * 32)


def predict_proba(model, images: np.ndarray, flip: bool = False, scales=(1.0,)) -> np.ndarray:
    """Class probabilities ``(N, classes, H, W)`` float32 for images ``(N, 1, H, W)``, averaged over the
    test-time augmentation views; eval mode, no graph.

    ``flip`` adds the mirror image of each view (its probabilities mirrored back); ``scales`` (multi-scale
    inference) runs the image resized by each factor (bilinear, each side rounded to a multiple of 32, at
    least 32), the logits resized back to ``H x W`` (bilinear) before the softmax:
    ``len(scales) * (1 + flip)`` forward passes."""
    import shendu
    import shendu.functional as F

    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise SystemExit(f"segmentation: scales must be positive factors, got {scales}")
    model.eval()
    run = model.segment if hasattr(model, "segment") else model
    images = np.asarray(images, np.float32)
    H, W = images.shape[-2:]
    probs = 0.0
    with shendu.no_grad():
        for scale in scales:
            size = (H, W) if scale == 1.0 else (_scaled_side(H, scale), _scaled_side(W, scale))
            for mirror in (False, True) if flip else (False,):
                x = shendu.tensor(np.ascontiguousarray(images[..., ::-1]) if mirror else images)
                if size != (H, W):
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                logits = run(x)
                if size != (H, W):
                    logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
                p = F.softmax(logits, 1).data
                probs = probs + (p[..., ::-1] if mirror else p)
    return probs / (len(scales) * (1 + flip))


def predict(model, images: np.ndarray, flip: bool = False, scales=(1.0,)) -> np.ndarray:
    """Label maps ``(N, H, W)`` int64 for images ``(N, 1, H, W)``: the arg-max of :func:`predict_proba`
    (``flip`` and ``scales``: test-time augmentation); without it, the arg-max of one pass's logits."""
    import shendu

    if not flip and tuple(float(s) for s in scales) == (1.0,):
        model.eval()
        run = model.segment if hasattr(model, "segment") else model
        with shendu.no_grad():
            return run(shendu.tensor(np.asarray(images, np.float32))).data.argmax(1)
    return predict_proba(model, images, flip, scales).argmax(1)


def evaluate(model, scenes, batch_size: int = 100, limit: int | None = None, flip: bool = False,
             scales=(1.0,)) -> dict:
    """FCN metrics of ``model`` on (the first ``limit``) scenes, one confusion matrix over all of them,
    with the confusion matrix itself and the inference seconds per image (``flip``, ``scales``: test-time
    augmentation, see :func:`predict`)."""
    from shendu.vision.metrics.segmentation import SegmentationMetrics

    n = len(scenes) if limit is None else min(limit, len(scenes))
    metric = SegmentationMetrics(len(scenes.classes))
    seconds = 0.0
    for start in range(0, n, batch_size):
        batch = scenes.generate(np.arange(start, min(start + batch_size, n)))
        t0 = time.perf_counter()
        pred = predict(model, batch["images"], flip, scales)
        seconds += time.perf_counter() - t0
        metric.update(pred, batch["masks"])
    return {**metric.compute(), "confusion_matrix": metric.matrix.tolist(), "seconds_per_image": seconds / max(n, 1),
            "scenes": n}


# ---------------------------------------------------------------------------------------------- figures
PALETTE = np.array([(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
                    (170, 110, 40), (128, 128, 128)], np.uint8)


def colorize(mask: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 of a label map: background black, one fixed colour per class."""
    return PALETTE[np.asarray(mask) % len(PALETTE)]


def _png(image, path: str) -> str:
    from shendu.io.atomic import atomic_write

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return path


def save_segmentation_figure(images: np.ndarray, truth: np.ndarray, pred: np.ndarray, classes, path: str,
                             zoom: int = 3) -> str:
    """A PNG with one row per scene: the image, the true mask, the predicted mask; a colour legend below."""
    from PIL import Image, ImageDraw

    images = np.asarray(images, np.float32).reshape(len(images), *np.shape(images)[-2:])
    N, H, W = images.shape
    grey = np.repeat((np.clip(images, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)
    rows = [np.concatenate([g, colorize(t), colorize(p)], 1) for g, t, p in zip(grey, truth, pred)]
    sheet = np.concatenate(rows, 0).repeat(zoom, 0).repeat(zoom, 1)
    legend_h = 14 * ((len(classes) + 2) // 3) + 20
    canvas = Image.new("RGB", (sheet.shape[1], sheet.shape[0] + legend_h))
    canvas.paste(Image.fromarray(sheet), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, sheet.shape[0] + 2), "image | truth | prediction", fill=(255, 255, 255))
    col_w = sheet.shape[1] // 3
    for c, name in enumerate(classes):
        x, y = (c % 3) * col_w + 2, sheet.shape[0] + 18 + 14 * (c // 3)
        draw.rectangle([x, y + 2, x + 9, y + 11], fill=tuple(int(v) for v in PALETTE[c % len(PALETTE)]))
        draw.text((x + 13, y), str(name), fill=(255, 255, 255))
    return _png(canvas, path)


# ------------------------------------------------------------------------------------------------ train
def train(cfg: dict, run_dir: str, resume: bool) -> int:
    import shendu
    from shendu import optim
    from shendu.io.atomic import atomic_write
    from shendu.train import load_checkpoint, plots, save_checkpoint

    cfg = {**DEFAULTS, **cfg}
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    pretrained = os.path.join(ckpt_dir, "pretrained")
    has = {name: os.path.exists(os.path.join(ckpt_dir, name, "state.json")) for name in ("last", "pretrained")}
    if resume:
        if not any(has.values()):
            raise SystemExit(f"shendu train --task segment: nothing to resume in {run_dir!r} (no checkpoints/last)")
        with open(os.path.join(ckpt_dir, "last" if has["last"] else "pretrained", "state.json"), encoding="utf-8") as f:
            saved = json.load(f)["config"]
        # The run keeps its saved settings; only epochs / max_steps (given to --resume) change its length.
        cfg = {**DEFAULTS, **saved, **{k: cfg[k] for k in ("epochs", "max_steps")}}
    shendu.manual_seed(cfg["seed"])
    train_set = _scenes(cfg, "train", cfg["train_scenes"])
    test_set = _scenes(cfg, "test", cfg["test_scenes"])
    classes = list(train_set.classes)
    cfg["classes"], cfg["task"] = classes, "segment"
    model = _build(cfg, len(classes))
    uses = [k for k in ("pretrain_epochs", "backbone_from") if cfg[k]] + (
        ["backbone_lr_scale"] if cfg["backbone_lr_scale"] != 1.0 else [])
    if uses and not hasattr(model, "backbone"):
        raise SystemExit(f"shendu train --task segment: {', '.join(uses)} needs a model built on the scene backbone "
                         f"({', '.join(m for m in MODELS if m != 'sliding')}), not {cfg['model']}")
    scale = cfg["backbone_lr_scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 <= scale <= 1.0:
        raise SystemExit(f"shendu train --task segment: backbone_lr_scale must be in [0, 1], "
                         f"got {cfg['backbone_lr_scale']!r}")
    if cfg["backbone_from"] and not (resume and any(has.values())):  # a resumed run has its own weights
        _load_backbone(model, cfg)
    if cfg["pretrain_optimizer"] not in PRETRAIN_OPTIMIZERS:
        raise SystemExit(f"shendu train --task segment: unknown pretrain_optimizer {cfg['pretrain_optimizer']!r}; "
                         f"choose from {', '.join(PRETRAIN_OPTIMIZERS)}")
    if cfg["pretrain_head"] not in PRETRAIN_HEADS:
        raise SystemExit(f"shendu train --task segment: unknown pretrain_head {cfg['pretrain_head']!r}; "
                         f"choose from {', '.join(PRETRAIN_HEADS)}")
    objects = cfg["pretrain_objects"]
    if isinstance(objects, bool) or not isinstance(objects, int) or objects < 1:
        raise SystemExit(f"shendu train --task segment: pretrain_objects is a whole number of items >= 1, "
                         f"got {objects!r}")
    erase = cfg["pretrain_erase"]
    if isinstance(erase, bool) or not isinstance(erase, (int, float)) or not 0.0 <= erase <= 1.0:
        raise SystemExit(f"shendu train --task segment: pretrain_erase is a probability in [0, 1], got {erase!r}")
    if cfg["pretrain_epochs"] and cfg["pretrain_head"] == "fc" and not hasattr(model, "fc6"):
        raise SystemExit(f"shendu train --task segment: pretrain_head 'fc' pretrains an FCN's fc6 and fc7; "
                         f"{cfg['model']} has none (use fcn32s, fcn16s or fcn8s, or pretrain_head 'linear')")
    os.makedirs(run_dir, exist_ok=True)  # only once the settings are known to work: a refused run leaves nothing
    # Written before the pretraining too: `shendu train --resume` finds the run (and its task) by this file.
    atomic_write(os.path.join(run_dir, "config.json"), json.dumps(cfg, indent=2, default=str))
    if cfg["pretrain_epochs"] and not (resume and has["last"]):  # stopped before the first segmentation epoch
        _pretrain(model, cfg, run_dir, pretrained, resume=resume and has["pretrained"])
    groups, lr_scales = _param_groups(model, cfg)
    optimizer = optim.Adam(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps_per_epoch = cfg["steps_per_epoch"] or max(1, len(train_set) // cfg["batch_size"])
    total = cfg["epochs"] * steps_per_epoch
    if cfg["max_steps"]:
        total = min(total, int(cfg["max_steps"]))
    test_limit = cfg["sliding_test_scenes"] if cfg["model"] == "sliding" else None
    epoch, step, history, best = 0, 0, [], -1.0
    if resume and has["last"]:
        tree = load_checkpoint(os.path.join(ckpt_dir, "last"), model, optimizer)
        epoch, step = tree["epoch"], tree["step"]
        history = (tree.get("extra") or {}).get("history", [])
        best = max([h["test_mean_iou"] for h in history] or [-1.0])
        print(f"shendu train: resuming {run_dir} after epoch {epoch} (step {step})")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"shendu train: segment {cfg['model']} ({n_params:,} parameters) on FashionScenes {cfg['image_size']}px, "
          f"{cfg['epochs']} epochs x {steps_per_epoch} steps of {cfg['batch_size']}, run folder {run_dir}")

    while epoch < cfg["epochs"] and step < total:
        rng = np.random.default_rng([cfg["seed"], epoch])  # the epoch's order, flips and windows
        order = rng.permutation(len(train_set))
        model.train()
        t0, loss_sum, n = time.time(), 0.0, 0
        for b in range(steps_per_epoch):
            if step >= total:
                break
            batch = train_set.generate(_batch_indices(order, b, cfg["batch_size"]))
            images, masks = batch["images"], batch["masks"]
            if cfg["flip"]:
                images, masks = _random_flips(rng, images, masks)
            for group, fraction in zip(optimizer.param_groups, lr_scales):
                group["lr"] = fraction * _lr_at(cfg["lr"], step, total)
            loss = _loss(model, cfg, images, masks, rng)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = float(loss.item())
            if not np.isfinite(value):
                raise SystemExit(f"shendu train: the loss became {value} at step {step}; lower --lr")
            loss_sum, n, step = loss_sum + value, n + 1, step + 1
        epoch += 1
        train_time = time.time() - t0
        test = evaluate(model, test_set, limit=test_limit)
        row = {"epoch": epoch, "step": step, "loss": loss_sum / max(n, 1), "time": round(train_time, 1),
               **{"test_" + k: v for k, v in test.items() if k != "confusion_matrix"}}
        history.append(row)
        with open(os.path.join(run_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        extra = {"history": history, "confusion_matrix": test["confusion_matrix"]}
        save_checkpoint(os.path.join(ckpt_dir, "last"), model, optimizer, epoch=epoch, step=step, config=cfg,
                        extra=extra)
        if row["test_mean_iou"] > best:
            best = row["test_mean_iou"]
            save_checkpoint(os.path.join(ckpt_dir, "best"), model, optimizer, epoch=epoch, step=step, config=cfg,
                            extra=extra)
        shown = test_set.generate(np.arange(min(8, len(test_set))))
        save_segmentation_figure(shown["images"], shown["masks"], predict(model, shown["images"]), classes,
                                 os.path.join(run_dir, "segmentation.png"))
        plots.plot_curves({k: [h.get(k) for h in history] for k in
                           ("epoch", "loss", "test_mean_iou", "test_pixel_accuracy", "test_mean_accuracy")},
                          os.path.join(run_dir, "curves.png"))
        print(f"epoch {epoch}/{cfg['epochs']}: loss {row['loss']:.4f}, test mIoU {row['test_mean_iou']:.4f}, "
              f"pixel acc {row['test_pixel_accuracy']:.4f}, mean acc {row['test_mean_accuracy']:.4f}, "
              f"fw IoU {row['test_frequency_weighted_iou']:.4f} ({test['scenes']} scenes, "
              f"{1000 * row['test_seconds_per_image']:.1f} ms/image), {train_time:.0f}s")
    return 0


# ------------------------------------------------------------------------------------------ shendu segment
def load_segmenter(path: str):
    """``(model, config)`` from a run folder or a checkpoint folder of ``--task segment``."""
    from shendu.train import load_checkpoint

    folder = os.path.normpath(path)
    if not os.path.exists(os.path.join(folder, "state.json")):
        found = [c for c in (os.path.join(folder, "checkpoints", n) for n in ("best", "last"))
                 if os.path.exists(os.path.join(c, "state.json"))]
        if not found:
            raise SystemExit(f"shendu segment: no checkpoint in {path!r} (expected checkpoints/best or /last)")
        folder = found[0]
    tree = load_checkpoint(folder, restore_rng=False)
    cfg = tree["config"]
    if not cfg or cfg.get("task") != "segment":
        raise SystemExit(f"shendu segment: {folder!r} is not a checkpoint of `shendu train --task segment`")
    model = _build(cfg, len(cfg["classes"]))
    model.load_state_dict(tree["model"])
    model.eval()
    return model, cfg


# The settings that make two runs' scenes the same kind of scenes (and their classes the same classes).
SCENE_KEYS = ("image_size", "max_objects", "scale_min", "scale_max", "classes")


def load_ensemble(paths) -> tuple:
    """``(model, config)`` of one run (its last checkpoint) or of several: their
    :class:`~shendu.train.Ensemble` (``mode="prob"``: the log of the models' mean class probabilities) with
    the first run's config. The runs must have been trained on the same kind of scenes (``SCENE_KEYS``:
    canvas, item scales and count, classes), whatever their seeds; sliding-window runs cannot join one."""
    from shendu.train import Ensemble

    paths = [str(p) for p in paths]
    if not paths:
        raise SystemExit("shendu eval: give at least one run")
    loaded = []
    for p in paths:
        last = os.path.join(p, "checkpoints", "last")
        loaded.append(load_segmenter(last if os.path.exists(os.path.join(last, "state.json")) else p))
    if len(loaded) == 1:
        return loaded[0]
    cfg = loaded[0][1]
    for p, (_, other) in zip(paths[1:], loaded[1:]):
        differ = [k for k in SCENE_KEYS if other.get(k, DEFAULTS.get(k)) != cfg.get(k, DEFAULTS.get(k))]
        if differ:
            raise SystemExit(f"shendu eval: {p} was trained on other scenes than {paths[0]} ("
                             + ", ".join(f"{k} {other.get(k)!r} vs {cfg.get(k)!r}" for k in differ)
                             + "); an ensemble needs runs of the same scenes")
    if any(c["model"] == "sliding" for _, c in loaded):
        raise SystemExit("shendu eval: the sliding-window model cannot join an ensemble (it classifies windows, "
                         "not whole images)")
    return Ensemble([m for m, _ in loaded], mode="prob").eval(), cfg


def evaluate_run(path, flip: bool = False, scenes: int | None = None, scales=(1.0,), split: str = "test") -> dict:
    """``shendu eval`` of a segmentation run: the metrics of :func:`evaluate` on the first ``scenes`` scenes of
    the test split (default: the run's ``test_scenes``, those it was scored on after each epoch), without the
    confusion matrix, per-class IoU and accuracy by class name. A run folder is scored with its *last*
    checkpoint (``best`` was picked on these scenes). ``split="train"`` scores the first scenes of the
    training split instead (made of the training items): a model that scores them no better than the test
    scenes underfits, one that scores them much better overfits. ``path`` may be a list of runs: their
    ensemble (:func:`load_ensemble`) is scored on the first run's scenes.
    """
    if split not in ("train", "test"):
        raise SystemExit(f"shendu eval: split is 'train' or 'test', got {split!r}")
    if scenes is not None and (isinstance(scenes, bool) or not isinstance(scenes, (int, np.integer))
                               or scenes < 1):
        raise SystemExit(f"shendu eval: the number of scenes is a whole number >= 1, got {scenes!r}")
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    model, cfg = load_ensemble(paths)
    n = cfg["test_scenes"] if scenes is None else int(scenes)
    limit = cfg["sliding_test_scenes"] if cfg["model"] == "sliding" else None
    result = evaluate(model, _scenes(cfg, split, n), limit=limit, flip=flip, scales=scales)
    result.pop("confusion_matrix")
    for key in ("iou", "accuracy"):  # per-class lists
        result[key] = {name: round(float(v), 4) for name, v in zip(cfg["classes"], result[key])}
    result["split"] = split
    result["flip"] = flip
    result["scales"] = [float(v) for v in scales]
    if len(paths) > 1:
        result["ensemble"] = [str(p) for p in paths]
    return result


def _read_canvas(path: str, size: int) -> np.ndarray:
    """The image as float32 (size, size) in [0, 1]: an .npy canvas (H, W) or (1, H, W), or an image file
    read as greyscale; resized (bilinear) when its size differs."""
    from PIL import Image

    if path.endswith(".npy"):
        a = np.load(path, allow_pickle=False).astype(np.float32)
        a = a.reshape(a.shape[-2:]) if a.ndim == 3 and a.shape[0] == 1 else a
        if a.ndim != 2:
            raise SystemExit(f"shendu segment: {path} holds an array of shape {a.shape}; expected (H, W) or (1, H, W)")
        if a.max() > 1.0:  # 0..255 grey levels
            a = a / 255.0
        img = Image.fromarray(a, mode="F")
    else:
        img = Image.open(path).convert("L")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    a = np.asarray(img, np.float32)
    return a if path.endswith(".npy") else a / 255.0


def cmd_segment(args) -> int:
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("shendu segment: reading and writing images needs Pillow (`pip install pillow`)") from None
    model, cfg = load_segmenter(args.checkpoint)
    canvas = _read_canvas(args.image, cfg["image_size"])
    mask = predict(model, canvas[None, None], flip=args.flip, scales=args.scales)[0]
    names = cfg["classes"]
    counts = np.bincount(mask.reshape(-1), minlength=len(names))
    for c in np.flatnonzero(counts):
        print(f"{names[c]:<12} {counts[c]:6d} px")
    out = args.out or os.path.splitext(args.image)[0] + "_segmentation.png"
    print(_png(Image.fromarray(colorize(mask)), out))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("segment", help="write the coloured class mask a segmentation model predicts for an image")
    p.add_argument("checkpoint", help="a run folder of `shendu train --task segment` or one of its checkpoints")
    p.add_argument("image", help="an image file (read as greyscale) or an .npy canvas; resized to the model's size")
    p.add_argument("--out", help="PNG to write (default IMAGE_segmentation.png)")
    p.add_argument("--flip", action="store_true", help="average the class probabilities of the image and its "
                   "mirror image (test-time augmentation)")
    p.add_argument("--scales", type=parse_scales, default=(1.0,), metavar="S1,S2,...",
                   help="multi-scale test-time augmentation: also run the image resized by these factors "
                   "(sides rounded to multiples of 32) and average the class probabilities, e.g. 0.75,1,1.25,1.5")
    p.set_defaults(func=cmd_segment)


def parse_scales(text: str) -> tuple:
    """``"0.75,1,1.5"`` -> ``(0.75, 1.0, 1.5)`` (an argparse type: bad input is a usage error)."""
    import argparse

    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        scales = ()
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive factors separated by commas, got {text!r}")
    return scales
