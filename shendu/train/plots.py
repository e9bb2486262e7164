"""Figures of a run, saved as PNG with matplotlib's Agg backend (no display needed): loss and accuracy
curves, learning rate, confusion matrix, a grid of images with predicted and true labels, and per-layer
activation / gradient statistics. Each function returns the path it wrote.
"""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np

from shendu.errors import ArgumentError, DataError
from shendu.io.atomic import atomic_write

__all__ = ["load_history", "plot_curves", "plot_lr", "plot_confusion_matrix", "plot_image_grid",
           "layer_statistics", "plot_layer_statistics", "plot_run"]


def _plt():
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:  # nobody chose a backend yet: render off-screen
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> str:
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    atomic_write(path, buf.getvalue())
    return os.fspath(path)


def load_history(source) -> dict:
    """A dict of lists from a History, a dict, or a run folder (``metrics.jsonl`` or ``metrics.csv``)."""
    if hasattr(source, "to_dict"):
        return source.to_dict()
    if isinstance(source, dict):
        return source
    folder = os.fspath(source)
    jsonl, csv_path = os.path.join(folder, "metrics.jsonl"), os.path.join(folder, "metrics.csv")
    rows = []
    if os.path.isfile(jsonl):
        with open(jsonl, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    elif os.path.isfile(csv_path):
        with open(csv_path, encoding="utf-8") as f:
            rows = [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]
    else:
        raise DataError(f"load_history: {folder!r} has neither metrics.jsonl nor metrics.csv")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in keys}


def plot_curves(history, path) -> str:
    """Loss (train and validation) and every accuracy-like metric against the epoch, side by side."""
    h = load_history(history)
    epochs = h.get("epoch") or list(range(1, len(h.get("loss", [])) + 1))
    metrics = [k for k in h if not k.startswith("val_") and k not in ("epoch", "loss", "lr", "time", "images_per_s")
               and all(isinstance(v, (int, float)) for v in h[k] if v is not None)]
    plt = _plt()
    fig, axes = plt.subplots(1, 1 + bool(metrics), figsize=(5 + 5 * bool(metrics), 3.6), squeeze=False)
    ax = axes[0, 0]
    for key in ("loss", "val_loss"):
        if key in h:
            ax.plot(epochs, h[key], marker="o", ms=3, label=key)
    ax.set_xlabel("epoch"), ax.set_ylabel("loss"), ax.legend(), ax.grid(alpha=0.3)
    if metrics:
        ax = axes[0, 1]
        for key in metrics:
            ax.plot(epochs, h[key], marker="o", ms=3, label=key)
            if "val_" + key in h:
                ax.plot(epochs, h["val_" + key], marker="o", ms=3, ls="--", label="val_" + key)
        ax.set_xlabel("epoch"), ax.set_ylabel("metric"), ax.legend(), ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_lr(history, path) -> str:
    """The learning rate against the epoch (log scale)."""
    h = load_history(history)
    if "lr" not in h:
        raise ArgumentError("plot_lr: the history has no 'lr' column")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(h.get("epoch") or range(1, len(h["lr"]) + 1), h["lr"], marker="o", ms=3)
    ax.set_yscale("log"), ax.set_xlabel("epoch"), ax.set_ylabel("learning rate"), ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion_matrix(matrix, path, class_names=None, normalize: bool = True) -> str:
    """A confusion matrix (rows: true class, columns: predicted), row-normalised by default, with counts."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ArgumentError(f"plot_confusion_matrix: expected a square matrix, got shape {m.shape}")
    shown = m / np.maximum(m.sum(1, keepdims=True), 1) if normalize else m
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(m))]
    plt = _plt()
    size = 2 + 0.5 * len(m)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    ax.set_xticks(range(len(m)), names, rotation=45, ha="right"), ax.set_yticks(range(len(m)), names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    if len(m) <= 20:
        for i in range(len(m)):
            for j in range(len(m)):
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > shown.max() / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_image_grid(images, path, pred=None, true=None, class_names=None, ncols: int = 8) -> str:
    """Images ``(N, C, H, W)`` or ``(N, H, W)`` in a grid, titled ``pred / true`` (red when wrong)."""
    x = np.asarray(getattr(images, "data", images))
    if x.ndim == 4:
        x = x[:, 0] if x.shape[1] == 1 else np.moveaxis(x, 1, -1)
    if x.ndim not in (3, 4):
        raise ArgumentError(f"plot_image_grid: expected images (N, C, H, W) or (N, H, W), got shape {x.shape}")
    names = (lambda i: class_names[int(i)]) if class_names is not None else (lambda i: str(int(i)))
    n = len(x)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        img = x[i]
        lo, hi = float(img.min()), float(img.max())
        ax.imshow((img - lo) / (hi - lo) if hi > lo else img * 0, cmap="gray" if img.ndim == 2 else None)
        if pred is not None or true is not None:
            p = names(np.asarray(pred)[i]) if pred is not None else "?"
            t = names(np.asarray(true)[i]) if true is not None else "?"
            wrong = pred is not None and true is not None and int(np.asarray(pred)[i]) != int(np.asarray(true)[i])
            ax.set_title(f"{p} / {t}", fontsize=8, color="red" if wrong else "black")
    return _save(fig, path)


def layer_statistics(model, x, y, loss_fn=None) -> list[dict]:
    """Mean and std of every leaf layer's output and of its weight gradient for one batch (forward hooks
    plus one backward): the diagnostic of the notes' activation histograms (vanishing / exploding
    activations). The model's gradients are cleared afterwards."""
    from shendu.autograd.tensor import Tensor
    if loss_fn is None:
        from shendu.nn import CrossEntropyLoss
        loss_fn = CrossEntropyLoss()
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    y = y if isinstance(y, Tensor) else Tensor(np.asarray(y))
    rows, handles = [], []

    def hook(module, args, out):
        if isinstance(out, Tensor) and not module._modules:
            rows.append({"module": module, "type": type(module).__name__, "act_mean": float(out.data.mean()),
                         "act_std": float(out.data.std())})

    names = {id(m): n for n, m in model.named_modules()}
    for m in model.modules():
        handles.append(m.register_forward_hook(hook))
    try:
        model.zero_grad()
        loss_fn(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    for r in rows:
        m = r.pop("module")
        r["name"] = names.get(id(m), "")
        w = m._parameters.get("weight")
        g = w.grad.data if w is not None and w.grad is not None else None
        r["grad_mean"] = float(g.mean()) if g is not None else None
        r["grad_std"] = float(g.std()) if g is not None else None
    model.zero_grad()
    return rows


def plot_layer_statistics(stats: list[dict], path) -> str:
    """Bar charts of activation std and weight-gradient std per layer (from :func:`layer_statistics`)."""
    plt = _plt()
    labels = [f"{r['name']}\n{r['type']}" for r in stats]
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 0.9 * len(stats)) * 2, 3.6))
    axes[0].bar(range(len(stats)), [r["act_std"] for r in stats])
    axes[0].set_title("activation std")
    axes[1].bar(range(len(stats)), [r["grad_std"] or 0.0 for r in stats], color="tab:orange")
    axes[1].set_title("weight gradient std"), axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xticks(range(len(stats)), labels, fontsize=7)
    return _save(fig, path)


def plot_run(run_dir, out_dir=None) -> list[str]:
    """``curves.png`` and ``lr.png`` for a run folder (from its metrics log); returns the paths written."""
    out_dir = os.fspath(out_dir or run_dir)
    h = load_history(run_dir)
    paths = [plot_curves(h, os.path.join(out_dir, "curves.png"))]
    if "lr" in h:
        paths.append(plot_lr(h, os.path.join(out_dir, "lr.png")))
    return paths
