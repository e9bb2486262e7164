"""The ``shendu`` command (also ``python -m shendu``): train, eval, predict, models, datasets, plot.

``shendu train`` with no arguments trains the reference CNN on Fashion-MNIST when its files are present
and on the embedded 8x8 digits otherwise, and says which. Every run writes a folder (``runs/NAME`` by
default) with the resolved config, metrics logs and checkpoints; ``--resume RUN_DIR`` continues it exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ["main", "build_parser"]

DEFAULTS = {
    "task": "classify",
    "model": None,          # chosen from the dataset: cnn_fmnist for 28x28, cnn_digits for 8x8
    "dataset": None,        # fashion-mnist when present, else digits
    "epochs": None,         # 15 for Fashion-MNIST, 30 for digits
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "none",
    "augment": "none",
    "seed": 0,
    "out": None,
    "data_root": None,
    "max_steps": None,
    "grad_clip": None,
    "label_smoothing": 0.0,
}

# Tasks besides classification live in their own modules: DEFAULTS (their options), train(cfg, run_dir,
# resume) and optionally add_commands(sub) for commands such as `shendu detect`. train() makes the run folder
# and writes config.json (which --resume reads) only once its settings check out, so a refused run leaves nothing.
TASKS = {"classify": None, "segment": "shendu.cli.task_segment", "detect": "shendu.cli.task_detect",
         "gan": "shendu.cli.task_gan", "vae": "shendu.cli.task_vae"}

DATASETS = ("fashion-mnist", "mnist", "digits", "cifar10")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("none", "step", "cosine", "onecycle")
AUGMENTS = ("none", "flip", "crop", "standard", "cutout")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shendu", description="shendu: deep learning from scratch on NumPy.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model (default: the reference CNN on Fashion-MNIST or digits)")
    t.add_argument("--config", help="JSON file of options; flags given on the command line override it")
    t.add_argument("--task", choices=list(TASKS), help="what to train (default classify); segment, detect, gan "
                   "and vae take their own defaults (see docs/)")
    t.add_argument("--model", help="a name from `shendu models`")
    t.add_argument("--dataset", choices=DATASETS)
    t.add_argument("--data-root", dest="data_root", help="folder holding the dataset files")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--lr", type=float)
    t.add_argument("--momentum", type=float, help="SGD/RMSprop momentum (default 0.9)")
    t.add_argument("--weight-decay", dest="weight_decay", type=float)
    t.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (per step)")
    t.add_argument("--augment", choices=AUGMENTS, help="training-time augmentation")
    t.add_argument("--label-smoothing", dest="label_smoothing", type=float)
    t.add_argument("--grad-clip", dest="grad_clip", type=float, help="clip the global gradient norm")
    t.add_argument("--max-steps", dest="max_steps", type=int, help="stop after this many optimizer steps")
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="run folder (default runs/MODEL-DATASET-TIME)")
    t.add_argument("--resume", help="a run folder (or checkpoint folder) to continue exactly")
    t.add_argument("--threads", type=int, help="threads for every compute pool (default: all cores; "
                   "a bit-exact resume needs the count of the run it continues)")

    e = sub.add_parser("eval", help="evaluate a checkpoint (or the ensemble of several) on its dataset's test split")
    e.add_argument("checkpoint", nargs="+", help="a run folder or a checkpoint folder; several: their ensemble "
                   "(the models' class probabilities averaged), runs of the same task and data")
    e.add_argument("--data-root", dest="data_root")
    e.add_argument("--batch-size", dest="batch_size", type=int, default=256)
    e.add_argument("--plots", metavar="DIR", help="also write confusion.png and predictions.png (a grid of test "
                   "images with predicted / true labels) into DIR")
    e.add_argument("--flip", action="store_true", help="segmentation runs: average the class probabilities of "
                   "each test image and its mirror image (test-time augmentation)")
    e.add_argument("--scales", type=_parse_scales, default=(1.0,), metavar="S1,S2,...",
                   help="segmentation runs: multi-scale test-time augmentation, the class probabilities averaged "
                   "over the image resized by these factors (sides rounded to multiples of 32), e.g. 0.75,1,1.25,1.5")
    e.add_argument("--split", choices=("test", "train"), default="test",
                   help="segmentation runs: score the test scenes (default) or the first scenes of the training "
                   "split (train against test: does the model under- or overfit?)")
    e.add_argument("--scenes", type=int, metavar="N",
                   help="segmentation runs: how many scenes to score (default: the run's test_scenes)")

    pr = sub.add_parser("predict", help="classify image files with a checkpoint (top-k with class names)")
    pr.add_argument("checkpoint")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--topk", type=int, default=3)

    sub.add_parser("models", help="list the model zoo")
    d = sub.add_parser("datasets", help="list datasets and where their files are; `datasets fetch NAME`")
    d.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    d.add_argument("name", nargs="?")
    d.add_argument("--dest", help="where `fetch` puts the files (default the user cache)")

    pl = sub.add_parser("plot", help="write loss/accuracy/learning-rate plots of a run folder")
    pl.add_argument("run_dir")
    for module in _task_modules():
        if hasattr(module, "add_commands"):
            module.add_commands(sub)
    return p


def _parse_scales(text: str) -> tuple:
    from shendu.cli.task_segment import parse_scales

    return parse_scales(text)


def _task_modules() -> list:
    """The task modules that are installed (each imports its heavy dependencies lazily)."""
    import importlib

    modules = []
    for name in filter(None, TASKS.values()):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it needs is missing: say so
                raise
    return modules


# ----------------------------------------------------------------------------------------------- data
def fashion_mnist_present(root=None) -> bool:
    from shendu.data.datasets import find_files

    try:
        find_files("fashion-mnist", "train", root)
        return True
    except Exception:
        return False


def load_split(name: str, train: bool, root=None, transform=None):
    """The dataset object for one split (images come out as float32 (N, C, H, W) in [0, 1])."""
    from shendu.data import datasets

    if name == "fashion-mnist":
        return datasets.FashionMNIST(root, train=train, transform=transform)
    if name == "mnist":
        return datasets.MNIST(root, train=train, transform=transform)
    if name == "digits":
        return datasets.Digits(train=train, transform=transform)
    if name == "cifar10":
        return datasets.CIFAR10(root, train=train, transform=transform)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def _augmentation(name: str, size: int, mean, std):
    from shendu.data import transforms as T

    pad = max(1, size // 14)
    steps = {
        "none": [],
        "flip": [T.RandomHorizontalFlip()],
        "crop": [T.RandomCrop(size, padding=pad)],
        "standard": [T.RandomCrop(size, padding=pad), T.RandomHorizontalFlip()],
        "cutout": [T.RandomCrop(size, padding=pad), T.RandomHorizontalFlip(), T.Cutout(1, size // 2)],
    }[name]
    return T.Compose(steps + [T.Normalize(mean, std)])


# ----------------------------------------------------------------------------------------------- train
def resolve_config(args) -> dict:
    cfg = dict(DEFAULTS)
    if getattr(args, "config", None):
        with open(args.config) as f:
            given = json.load(f)
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise SystemExit(f"shendu train: unknown option(s) {unknown} in {args.config}; "
                             f"known: {sorted(DEFAULTS)}")
        cfg.update(given)
    for key in DEFAULTS:
        v = getattr(args, key, None)
        if v is not None:
            cfg[key] = v
    if cfg["dataset"] is None:
        cfg["dataset"] = "fashion-mnist" if fashion_mnist_present(cfg["data_root"]) else "digits"
        cfg["dataset_reason"] = ("Fashion-MNIST files found" if cfg["dataset"] == "fashion-mnist" else
                                 "Fashion-MNIST not found (apt-get install dataset-fashion-mnist, or "
                                 "`shendu datasets fetch fashion-mnist`); using the embedded 8x8 digits")
    if cfg["model"] is None:
        cfg["model"] = {"digits": "cnn_digits", "cifar10": "resnet18_small"}.get(cfg["dataset"], "cnn_fmnist")
    if cfg["epochs"] is None:
        cfg["epochs"] = 30 if cfg["dataset"] == "digits" else 15
    if cfg["out"] is None:
        cfg["out"] = os.path.join("runs", f"{cfg['model']}-{cfg['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg


def _optimizer(cfg, params):
    from shendu import optim

    name, lr, wd = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd, nesterov=cfg["momentum"] > 0)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd)
    return optim.Adagrad(params, lr=lr, weight_decay=wd)


def _schedule(cfg, optimizer, steps_per_epoch):
    from shendu.optim import lr_scheduler as S

    total = cfg["epochs"] * steps_per_epoch
    if cfg["schedule"] == "none":
        return None
    if cfg["schedule"] == "step":
        return S.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if cfg["schedule"] == "cosine":
        return S.CosineAnnealingLR(optimizer, T_max=max(1, total))
    return S.OneCycleLR(optimizer, max_lr=cfg["lr"], total_steps=max(1, total))


def build_run(cfg):
    """Model, loaders, loss, optimizer and callbacks for a resolved config (shared by train and resume)."""
    import numpy as np

    import shendu
    from shendu import models, nn
    from shendu.data import DataLoader
    from shendu.train import LRSchedulerCallback

    shendu.manual_seed(cfg["seed"])
    plain = load_split(cfg["dataset"], True, cfg["data_root"])
    images = plain.images
    mean = images.mean(axis=(0, 2, 3)).tolist()  # statistics of the training split only
    std = images.std(axis=(0, 2, 3)).tolist()
    size, channels = images.shape[-1], images.shape[1]
    train_set = load_split(cfg["dataset"], True, cfg["data_root"], _augmentation(cfg["augment"], size, mean, std))
    test_set = load_split(cfg["dataset"], False, cfg["data_root"], _augmentation("none", size, mean, std))
    classes = list(getattr(plain, "classes", [str(i) for i in range(int(np.max(plain.targets)) + 1)]))
    train_loader = DataLoader(train_set, batch_size=cfg["batch_size"], shuffle=True,
                              generator=shendu.Generator(cfg["seed"]))
    test_loader = DataLoader(test_set, batch_size=256)
    model = models.get_model(cfg["model"], num_classes=len(classes), in_channels=channels)
    optimizer = _optimizer(cfg, model.parameters())
    scheduler = _schedule(cfg, optimizer, len(train_loader))
    # a resumed run given a new --epochs continues on the cosine of its new length
    callbacks = [LRSchedulerCallback(scheduler, interval="step", follow_length=True)] if scheduler is not None else []
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
    norm = {"mean": mean, "std": std, "classes": classes, "size": size, "channels": channels}
    return model, train_loader, test_loader, loss_fn, optimizer, callbacks, norm


def train_task(task: str, args) -> int:
    """``shendu train --task segment|detect|gan|vae``: the task module's defaults, updated by the config
    file and the flags given, then the module's ``train`` (which saves them as ``config.json``)."""
    import importlib

    module = importlib.import_module(TASKS[task])
    if args.resume:
        cfg, run_dir = _resume_config(args), _run_dir(args.resume)
        print(f"shendu train: resuming {run_dir} (task {task})")
        return module.train(cfg, run_dir, True)
    given = {}
    if args.config:
        with open(args.config) as f:
            given.update(json.load(f))
    given.update({k: v for k, v in vars(args).items()
                  if k in DEFAULTS and k not in ("task", "out") and v is not None})
    unknown = sorted(set(given) - set(module.DEFAULTS) - {"task"})
    if unknown:
        raise SystemExit(f"shendu train --task {task}: option(s) {', '.join(unknown)} do not apply; "
                         f"its options: {', '.join(sorted(module.DEFAULTS))}")
    model_defaults = getattr(module, "MODEL_DEFAULTS", {}).get(given.get("model", module.DEFAULTS.get("model")), {})
    cfg = {**module.DEFAULTS, **model_defaults, **given, "task": task}
    run_dir = args.out or cfg.get("out") or os.path.join(
        "runs", f"{task}-{cfg.get('model', task)}-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg["out"] = run_dir  # the task makes the folder and writes config.json once its settings check out
    print(f"shendu train: task {task}, run folder {run_dir}")
    return module.train(cfg, run_dir, False)


def cmd_train(args) -> int:
    from shendu.train import evaluate, fit

    if args.threads is not None:
        from shendu.threads import set_num_threads

        set_num_threads(args.threads)
    task = args.task or (_run_config(args.resume).get("task", "classify") if args.resume else "classify")
    if task != "classify":
        return train_task(task, args)
    if args.resume:
        cfg = _resume_config(args)
        run_dir = _run_dir(args.resume)
        print(f"shendu train: resuming {run_dir}")
    else:
        cfg = resolve_config(args)
        run_dir = cfg["out"]
        if cfg.get("dataset_reason"):
            print(f"shendu train: dataset {cfg['dataset']} ({cfg['dataset_reason']})")
    model, train_loader, test_loader, loss_fn, optimizer, callbacks, norm = build_run(cfg)
    cfg["normalization"] = norm
    n_params = sum(p.numel() for p in model.parameters())
    print(f"shendu train: model {cfg['model']} ({n_params:,} parameters), {cfg['epochs']} epochs, "
          f"batch {cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']}, augment {cfg['augment']}, "
          f"run folder {run_dir}")
    history = fit(model, train_loader, test_loader, loss_fn=loss_fn, optimizer=optimizer, epochs=cfg["epochs"],
                  callbacks=callbacks, out_dir=run_dir, resume_from=run_dir if args.resume else None,
                  grad_clip=cfg["grad_clip"], config=cfg, max_steps=cfg["max_steps"])
    result = evaluate(model, test_loader, loss_fn)
    print(f"shendu train: test accuracy {result['accuracy']:.4f}, test loss {result['loss']:.4f} "
          f"({cfg['dataset']}, {len(test_loader.dataset)} images)")
    if getattr(history, "interrupted", False):
        print(f"shendu train: interrupted; continue with `shendu train --resume {run_dir}`")
    return 0


def _run_dir(path: str) -> str:
    path = os.path.normpath(path)
    for _ in range(3):  # a checkpoint folder lives in RUN/checkpoints/NAME
        if os.path.exists(os.path.join(path, "config.json")):
            return path
        path = os.path.dirname(path)
    raise SystemExit(f"shendu: no config.json found at or above {path!r}; is it a run folder from `shendu train`?")


def _run_config(path: str) -> dict:
    with open(os.path.join(_run_dir(path), "config.json")) as f:
        return json.load(f)


# What `--resume` may change: the run's length. Anything else would make the continued run a different run.
RESUME_OPTIONS = ("epochs", "max_steps")


def _resume_config(args) -> dict:
    """The saved config of the run ``args.resume``, with ``--epochs`` / ``--max-steps`` applied (the cosine
    schedule follows the new length from the step the run stopped at, the step schedule keeps its saved
    decay steps, a one-cycle schedule refuses a new ``--epochs``); any other option is refused."""
    cfg = _run_config(args.resume)
    given = {k: v for k, v in vars(args).items()
             if k in DEFAULTS and k not in ("task", "threads") and v is not None}
    other = sorted(set(given) - set(RESUME_OPTIONS))
    if other or args.config:
        names = ", ".join(["--" + k.replace("_", "-") for k in other] + (["--config"] if args.config else []))
        raise SystemExit(f"shendu train --resume: {names} cannot change a run being resumed (only --epochs and "
                         f"--max-steps can); start a new run with --out instead")
    if (cfg.get("task", "classify") == "classify" and "epochs" in given and given["epochs"] != cfg["epochs"]
            and cfg.get("schedule") == "onecycle"):
        # one cycle's phases (warm-up end, annealing) are fractions of its length: a new length is a new run
        raise SystemExit("shendu train --resume: --epochs cannot change a run with the onecycle schedule "
                         "(its phases are fractions of the run's length); --max-steps can stop it earlier")
    return {**cfg, **given}


def _checkpoint_folder(path: str) -> str:
    path = os.path.normpath(path)
    if os.path.exists(os.path.join(path, "state.json")):
        return path
    for name in ("best", "last"):
        cand = os.path.join(_run_dir(path), "checkpoints", name)
        if os.path.exists(os.path.join(cand, "state.json")):
            return cand
    raise SystemExit(f"shendu: no checkpoint found in {path!r} (expected checkpoints/best or checkpoints/last)")


def _load_model(path: str):
    from shendu import models
    from shendu.train import load_checkpoint

    cfg = _run_config(path)
    norm = cfg["normalization"]
    model = models.get_model(cfg["model"], num_classes=len(norm["classes"]), in_channels=norm["channels"])
    load_checkpoint(_checkpoint_folder(path), model, restore_rng=False)
    model.eval()
    return model, cfg


def cmd_eval(args) -> int:
    import numpy as np

    from shendu import nn, no_grad, tensor
    from shendu.data import DataLoader
    from shendu.train import evaluate, plots
    from shendu.train.metrics import ConfusionMatrix

    paths = list(args.checkpoint)
    tasks = {p: _run_config(p).get("task", "classify") for p in paths}
    if len(set(tasks.values())) > 1:
        raise SystemExit("shendu eval: an ensemble needs runs of one task, got "
                         + ", ".join(f"{p} ({t})" for p, t in tasks.items()))
    if tasks[paths[0]] not in ("classify", "segment"):
        raise SystemExit(f"shendu eval scores classification and segmentation runs; {paths[0]} is a "
                         f"{tasks[paths[0]]} run, whose test figures are in its metrics.jsonl")
    if tasks[paths[0]] == "segment":
        from shendu.cli import task_segment

        result = task_segment.evaluate_run(paths if len(paths) > 1 else paths[0], flip=args.flip, scales=args.scales,
                                           scenes=args.scenes, split=args.split)
        print(json.dumps(result, indent=1))
        return 0
    if args.flip or args.scales != (1.0,) or args.split != "test" or args.scenes is not None:
        raise SystemExit("shendu eval: --flip, --scales, --split and --scenes are for segmentation runs "
                         "(`shendu train --task segment`)")
    loaded = [_load_model(p) for p in paths]
    model, cfg = loaded[0]
    for p, (_, other) in zip(paths[1:], loaded[1:]):
        differ = [k for k in ("dataset", "normalization") if other.get(k) != cfg.get(k)]
        if differ:
            raise SystemExit(f"shendu eval: {p} was trained on other data than {paths[0]} (its {' and '.join(differ)} "
                             f"differ); an ensemble needs runs of the same dataset and preprocessing")
    if len(loaded) > 1:
        from shendu.train import Ensemble

        model = Ensemble([m for m, _ in loaded], mode="prob").eval()
    norm = cfg["normalization"]
    test = load_split(cfg["dataset"], False, args.data_root or cfg.get("data_root"),
                      _augmentation("none", norm["size"], norm["mean"], norm["std"]))
    names = norm["classes"]
    result = evaluate(model, DataLoader(test, batch_size=args.batch_size), nn.CrossEntropyLoss(),
                      metrics=("accuracy", "top5", ConfusionMatrix(len(names))))
    matrix = result.pop("confusion_matrix")
    out = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items() if isinstance(v, (int, float))}
    recall = np.diag(matrix) / np.maximum(matrix.sum(1), 1)
    out["per_class_accuracy"] = {name: round(float(r), 4) for name, r in zip(names, recall)}
    if len(paths) > 1:
        out["ensemble"] = paths
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        images, labels = next(iter(DataLoader(test, batch_size=32)))
        with no_grad():
            pred = model(tensor(images)).numpy().argmax(1)
        shown = images.numpy() * np.reshape(norm["std"], (1, -1, 1, 1)) + np.reshape(norm["mean"], (1, -1, 1, 1))
        out["plots"] = [plots.plot_confusion_matrix(matrix, os.path.join(args.plots, "confusion.png"), names),
                        plots.plot_image_grid(shown, os.path.join(args.plots, "predictions.png"), pred,
                                              labels.numpy(), names)]
    print(json.dumps(out, indent=1))
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    import shendu
    import shendu.functional as F

    model, cfg = _load_model(args.checkpoint)
    norm = cfg["normalization"]
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("shendu predict: reading images needs Pillow (`pip install pillow`)") from None
    batch = []
    for path in args.images:
        img = Image.open(path).convert("L" if norm["channels"] == 1 else "RGB").resize((norm["size"],) * 2)
        a = np.asarray(img, np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        mean, std = (np.array(norm[k], np.float32)[:, None, None] for k in ("mean", "std"))
        batch.append((a - mean) / std)
    with shendu.no_grad():
        probs = F.softmax(model(shendu.tensor(np.stack(batch))), dim=1).numpy()
    k = min(args.topk, probs.shape[1])
    for path, p in zip(args.images, probs):
        top = np.argsort(-p)[:k]
        print(f"{path}: " + ", ".join(f"{norm['classes'][i]} {p[i]:.3f}" for i in top))
    return 0


def cmd_models(args) -> int:
    from shendu import models

    descriptions = models.model_descriptions()
    width = max(map(len, descriptions))
    for name, text in descriptions.items():
        print(f"{name:<{width}}  {text}")
    return 0


def cmd_datasets(args) -> int:
    from shendu.data import datasets

    if args.action == "fetch":
        if args.name not in ("fashion-mnist", "mnist"):
            raise SystemExit("shendu datasets fetch: NAME must be fashion-mnist or mnist")
        print(datasets.fetch(args.name, args.dest))
        return 0
    for name in ("fashion-mnist", "mnist"):
        try:
            status = f"present ({os.path.dirname(datasets.find_files(name, 'train', None)[0])})"
        except Exception:
            status = f"missing (`shendu datasets fetch {name}`" + (
                " or `apt-get install dataset-fashion-mnist`)" if name == "fashion-mnist" else ")")
        print(f"{name:<14} 28x28 grey, 10 classes: {status}")
    print(f"{'digits':<14} 8x8 grey, 10 classes: embedded (ships with scikit-learn)")
    print(f"{'cifar10':<14} 32x32 colour, 10 classes: python batches under --data-root when present")
    return 0


def cmd_plot(args) -> int:
    from shendu.train import plots

    written = plots.plot_run(args.run_dir)
    for path in written:
        print(path)
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "models": cmd_models,
            "datasets": cmd_datasets, "plot": cmd_plot}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from shendu.errors import ShenduError

    try:
        return (getattr(args, "func", None) or COMMANDS[args.command])(args)
    except ShenduError as exc:
        print(f"shendu {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
