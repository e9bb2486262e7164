"""The R-CNN family on FashionScenes: R-CNN, Fast R-CNN and Faster R-CNN trained from scratch, with their
test mAP@0.5 and time per image (the table the notes draw: each generation is faster).

    nice -n 10 python examples/detection_rcnn_family.py                      # the full run (see docs)
    python examples/detection_rcnn_family.py --quick                         # a smoke run, minutes
    python examples/detection_rcnn_family.py --models faster_rcnn --epochs 12

Data: 96 x 96 canvases of 1..4 Fashion-MNIST items (``FashionScenes``; train scenes from the training
items, test scenes from the test items). Each model trains with Adam and a cosine learning rate;
Faster R-CNN sees random horizontal flips, the two selective-search models do not (their proposals are
computed once per training image and cached). R-CNN's SVMs and box regressors are fitted after its
fine-tuning on ``--svm-images`` training scenes.

Reported per model: mAP@0.5 (VOC all-point, IoU >= 0.5) and COCO AP on ``--test`` test scenes, from
:func:`shendu.vision.metrics.detection.evaluate_detections`; the time per image measured one image at a
time on ``--time-images`` test scenes with nothing cached (selective search included), split into the
proposal stage and the rest; the training time. Timings on a shared machine are noisy: the table
says so.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import shendu
from shendu import io, optim
from shendu.data.datasets.scenes import FashionScenes
from shendu.vision.detection import rcnn as family
from shendu.vision.detection.common import flip_batch
from shendu.vision.detection.fast_rcnn import ProposalCache
from shendu.vision.metrics.detection import evaluate_detections

# per model: constructor arguments, training scenes, epochs, batch size, learning rate. Faster R-CNN
# trains on more scenes (it has no proposal stage to precompute); the selective-search models on fewer.
SETTINGS = {
    "faster_rcnn": ({}, 4000, 4, 8, 1e-3),
    "fast_rcnn": ({}, 2000, 6, 8, 1e-3),
    "rcnn": ({}, 2000, 6, 8, 1e-3),
}


def train(name, model, train_set, epochs, batch_size, lr, seed, use_flip, log_every=50):
    opt = optim.Adam(model.parameters(), lr=lr)
    steps = epochs * (len(train_set) // batch_size)
    step, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(train_set))
        sums, n = {}, 0
        for b in range(len(train_set) // batch_size):
            images, targets = train_set.get_batch(order[b * batch_size:(b + 1) * batch_size])
            if use_flip:
                images, targets = flip_batch(images, targets, rng)
            warm = min(1.0, (step + 1) / 100)  # linear warm-up over 100 steps, then cosine decay
            for g in opt.param_groups:
                g["lr"] = lr * warm * 0.5 * (1 + np.cos(np.pi * step / steps))
            logs = family.train_step(model, shendu.tensor(images), targets, opt, grad_clip=10.0)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            n, step = n + 1, step + 1
            if step % log_every == 0:
                print(f"  {name} step {step}/{steps} loss {logs['loss']:.3f} ({time.perf_counter() - t0:.0f}s)",
                      flush=True)
        print(f"  {name} epoch {epoch + 1}: " + ", ".join(f"{k} {v / n:.4f}" for k, v in sums.items())
              + f" ({time.perf_counter() - t0:.0f}s)", flush=True)
    return time.perf_counter() - t0


def evaluate(model, test_set, batch_size=16) -> dict:
    preds, targets = [], []
    for s in range(0, len(test_set), batch_size):
        images, tg = test_set.get_batch(np.arange(s, min(s + batch_size, len(test_set))))
        preds += family.predict(model, shendu.tensor(images), score_thresh=0.05)
        targets += tg
    r = evaluate_detections(preds, targets)
    return {"map_50": r["map_50"], "map": r["map"], "map_75": r["map_75"],
            "ap_50_per_class": {int(c): round(e["ap_50"], 3) for c, e in r["per_class"].items()}}


def time_per_image(model, test_set, count: int) -> dict:
    """Seconds per image, one image per call, proposals recomputed (no cache); the proposal stage
    (selective search, or nothing for Faster R-CNN, whose RPN is part of the network) timed apart."""
    images, _ = test_set.get_batch(np.arange(count))
    has_ss = hasattr(model, "proposals")
    if has_ss:
        saved, model.proposals = model.proposals, ProposalCache(enabled=False, **model.proposals.ss_kwargs)
    family.predict(model, shendu.tensor(images[:1]))  # warm-up (numba, allocations)
    total = proposal = 0.0
    for im in images:
        t = time.perf_counter()
        if has_ss:
            model.proposals(im)
        proposal += time.perf_counter() - t
        t = time.perf_counter()
        family.predict(model, shendu.tensor(im[None]))
        total += time.perf_counter() - t
    if has_ss:
        model.proposals = saved
        # predict() ran selective search itself; the separately timed call measured its share
    return {"seconds_per_image": total / count, "proposal_seconds": proposal / count if has_ss else 0.0}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="faster_rcnn,fast_rcnn,rcnn")
    p.add_argument("--train", type=int, default=None, help="override every model's training scenes")
    p.add_argument("--test", type=int, default=500, help="test scenes for the mAP")
    p.add_argument("--svm-images", type=int, default=500, help="training scenes for R-CNN's SVMs")
    p.add_argument("--time-images", type=int, default=20)
    p.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="200 train / 50 test scenes, 1 epoch")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--save", default=None, help="folder for the trained weights (<model>.safetensors)")
    p.add_argument("--load", default=None, help="folder of weights saved by --save: evaluate them, no training")
    args = p.parse_args(argv)
    if args.quick:
        args.train, args.test, args.svm_images, args.time_images, args.epochs = 200, 50, 50, 5, 1

    test_set = FashionScenes("test", size=args.size, max_objects=4, seed=args.seed, length=args.test)
    print(f"FashionScenes {args.size}x{args.size}, {len(test_set)} test scenes", flush=True)
    shared = ProposalCache()  # selective search once per image, shared by R-CNN and Fast R-CNN
    results = {}
    for name in args.models.split(","):
        kw, scenes, epochs, batch, lr = SETTINGS[name]
        epochs = args.epochs or epochs
        train_set = FashionScenes("train", size=args.size, max_objects=4, seed=args.seed, length=args.train or scenes)
        shendu.manual_seed(args.seed)
        model = family.build_model(name, 10, **kw)
        if hasattr(model, "proposals"):
            model.proposals = shared
        if hasattr(model, "proposals") and not args.load:
            t = time.perf_counter()
            for s in range(len(train_set)):
                model.proposals(train_set[s][0])
            print(f"{name}: selective search on {len(train_set)} training scenes took {time.perf_counter() - t:.0f}s "
                  f"({np.mean([len(v) for v in shared.store.values()]):.0f} boxes per image)", flush=True)
        n_params = sum(q.numel() for q in model.parameters())
        if args.load:
            io.load_state_dict(os.path.join(args.load, f"{name}.safetensors"), model)
            train_seconds = float("nan")
        else:
            print(f"{name}: {n_params:,} parameters, {len(train_set)} training scenes, {epochs} epochs of batch "
                  f"{batch}, lr {lr}", flush=True)
            train_seconds = train(name, model, train_set, epochs, batch, lr, args.seed, use_flip=name == "faster_rcnn")
        if name == "rcnn" and not args.load:
            t = time.perf_counter()
            images, targets = train_set.get_batch(np.arange(min(args.svm_images, len(train_set))))
            summary = family.post_train(model, shendu.tensor(images), targets)
            train_seconds += time.perf_counter() - t
            print(f"rcnn: SVMs and box regressors on {summary['windows']} windows ({time.perf_counter() - t:.0f}s)",
                  flush=True)
        if args.save:
            os.makedirs(args.save, exist_ok=True)
            io.save_state_dict(model, os.path.join(args.save, f"{name}.safetensors"))
        r = evaluate(model, test_set)
        r.update(time_per_image(model, test_set, args.time_images))
        r["train_seconds"] = train_seconds
        results[name] = r
        print(f"{name}: mAP@0.5 {r['map_50']:.4f}, COCO AP {r['map']:.4f}, "
              f"{1000 * r['seconds_per_image']:.0f} ms/image (proposals {1000 * r['proposal_seconds']:.0f} ms)",
              flush=True)

    print("\n| model | test mAP@0.5 | COCO AP | ms / image (proposals) | train time |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['map_50']:.3f} | {r['map']:.3f} | {1000 * r['seconds_per_image']:.0f} "
              f"({1000 * r['proposal_seconds']:.0f}) | {r['train_seconds'] / 60:.1f} min |")
    print(f"({len(test_set)} test scenes; times from {args.time_images} images one at a time on a shared 2-core "
          "machine: noisy)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
