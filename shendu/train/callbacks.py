"""Callbacks for :func:`shendu.train.fit`: early stopping, checkpoints, lr scheduling, a NaN/Inf guard,
metrics logs (CSV, JSONL) and TensorBoard.

A callback overrides any of ``on_train_begin(trainer)``, ``on_epoch_begin(trainer)``,
``on_batch_begin(trainer)``,
``on_loss(trainer, loss)`` (before backward), ``on_batch_end(trainer, logs)``, ``on_epoch_end(trainer, logs)`` and
``on_train_end(trainer)``; ``trainer`` is the :class:`~shendu.train.Trainer` (model, optimizer, epoch,
step, history, ``request_stop(reason)``). Callbacks with ``state_dict()`` are saved in checkpoints, so
early stopping's patience counter and a scheduler continue exactly after a resume.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import sys

import numpy as np

from shendu import backend
from shendu.errors import ArgumentError
from shendu.io.atomic import atomic_append, atomic_write

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LRSchedulerCallback", "NaNGuard", "CSVLogger",
           "JSONLLogger", "TensorBoard", "LambdaCallback", "find_nonfinite"]


class Callback:
    order = 0  # callbacks run in increasing order; checkpointing (100) runs after the others

    def on_train_begin(self, trainer) -> None: ...
    def on_epoch_begin(self, trainer) -> None: ...
    def on_batch_begin(self, trainer) -> None: ...
    def on_loss(self, trainer, loss) -> None: ...  # after forward, before backward (loss is a Tensor)
    def on_batch_end(self, trainer, logs: dict) -> None: ...
    def on_epoch_end(self, trainer, logs: dict) -> None: ...
    def on_train_end(self, trainer) -> None: ...


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda trainer, logs: ...)``."""

    def __init__(self, **hooks):
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise ArgumentError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, fn)


def _monitor_mode(name: str, monitor: str, mode: str) -> str:
    if mode == "auto":
        return "max" if any(s in monitor for s in ("acc", "top", "iou", "ap")) else "min"
    if mode not in ("min", "max"):
        raise ArgumentError(f"{name}: mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


def _monitored(name: str, logs: dict, monitor: str):
    value = logs.get(monitor)
    if value is None:
        raise ArgumentError(f"{name}: monitored quantity {monitor!r} is not in the epoch logs "
                            f"{sorted(logs)}; pass val_data to fit or monitor one of these")
    return float(value)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` (default True, unlike Keras: the notes say to restore the best) the
    model ends with the weights of its best epoch.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", patience: int = 0, min_delta: float = 0.0,
                 restore_best_weights: bool = True):
        self.monitor, self.mode = monitor, _monitor_mode("EarlyStopping", monitor, mode)
        self.patience, self.min_delta = int(patience), abs(float(min_delta))
        self.restore_best_weights = restore_best_weights
        self.best, self.best_epoch, self.wait, self.best_weights, self.stopped_epoch = None, None, 0, None, None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, trainer, logs) -> None:
        value = _monitored("EarlyStopping", logs, self.monitor)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, int(logs["epoch"]), 0
            if self.restore_best_weights:
                self.best_weights = {k: v.data.copy() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = int(logs["epoch"])
            trainer.request_stop(f"early stopping: {self.monitor} did not improve for {self.wait} epoch(s); "
                                 f"best {self.best:.6g} at epoch {self.best_epoch}")

    def on_train_end(self, trainer) -> None:
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch is not None:
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


class ModelCheckpoint(Callback):
    """Save a full checkpoint to ``dirpath/last`` after every epoch and to ``dirpath/best`` when ``monitor``
    improves (with ``save_best_only=False`` also ``dirpath/epoch-NNN`` every epoch). ``monitor=None`` or a
    missing monitored value (no validation data) falls back to ``loss``."""

    order = 100

    def __init__(self, dirpath, monitor: str | None = "val_loss", mode: str = "auto", save_best_only: bool = True,
                 save_last: bool = True):
        self.dirpath = os.fspath(dirpath)
        self.monitor = monitor or "loss"
        self.mode = _monitor_mode("ModelCheckpoint", self.monitor, mode)
        self.save_best_only, self.save_last = save_best_only, save_last
        self.best = None

    def on_epoch_end(self, trainer, logs) -> None:
        key = self.monitor if self.monitor in logs else "loss"
        value = logs.get(key)
        if value is not None and math.isfinite(value) and (
                self.best is None or (value < self.best if self.mode == "min" or key == "loss" else value > self.best)):
            self.best = float(value)
            trainer.save_checkpoint(os.path.join(self.dirpath, "best"))
        if not self.save_best_only:
            trainer.save_checkpoint(os.path.join(self.dirpath, f"epoch-{trainer.epoch:03d}"))
        if self.save_last:
            trainer.save_checkpoint(os.path.join(self.dirpath, "last"))

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]


class LRSchedulerCallback(Callback):
    """Step ``scheduler`` after every optimizer step (``interval="step"``) or every epoch ("epoch").
    ``ReduceLROnPlateau`` is stepped per epoch with ``logs[monitor]`` (``val_loss``, else ``loss``).

    ``follow_length=True``: when a run is resumed with a cosine schedule (``T_max``) longer or shorter
    than the checkpoint's, the schedule takes the new ``T_max`` and the learning rate moves at once to
    that cosine at the step reached (a warm restart when a finished run is lengthened), instead of the
    saved length overriding the new one."""

    def __init__(self, scheduler, interval: str = "epoch", monitor: str = "val_loss", follow_length: bool = False):
        if interval not in ("epoch", "step"):
            raise ArgumentError(f"LRSchedulerCallback: interval must be 'epoch' or 'step', got {interval!r}")
        self.scheduler, self.monitor, self.follow_length = scheduler, monitor, follow_length
        self.plateau = type(scheduler).__name__ == "ReduceLROnPlateau"
        if self.plateau and interval == "step":
            raise ArgumentError("LRSchedulerCallback: ReduceLROnPlateau needs a metric and steps per epoch; "
                                "use interval='epoch'")
        self.interval = interval

    def on_batch_end(self, trainer, logs) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def on_epoch_end(self, trainer, logs) -> None:
        if self.interval != "epoch":
            return
        if self.plateau:
            self.scheduler.step(logs.get(self.monitor, logs["loss"]))
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        length = getattr(self.scheduler, "T_max", None)
        self.scheduler.load_state_dict(state)
        if self.follow_length and length is not None and self.scheduler.T_max != length:
            self.scheduler.T_max = length
            self.scheduler.step(self.scheduler.last_epoch)  # the closed form at the step reached


def _nonfinite(out) -> bool:
    arrays = [o.data for o in (out if isinstance(out, (tuple, list)) else (out,)) if hasattr(o, "data")]
    return any(isinstance(a, np.ndarray) and a.dtype.kind in "fc" and not np.isfinite(a).all() for a in arrays)


def find_nonfinite(model, x, y=None, loss_fn=None) -> dict | None:
    """Run ``model(x)`` with forward hooks and report the first module whose output holds NaN/Inf.

    Hooks fire when a module finishes, so the first report is the innermost module where the problem
    appears. Returns ``{"name", "type", "op", "input_finite", "bad_params"}`` (``name`` is ``"<input>"``
    when the batch itself is non-finite, ``"<loss>"`` when only the loss is), or None when all is finite.
    """
    if _nonfinite(x):
        return {"name": "<input>", "type": "batch", "op": None, "input_finite": False, "bad_params": []}
    names = {id(m): n for n, m in model.named_modules()}
    found: list = []

    def hook(module, args, out):
        if not found and _nonfinite(out):
            first = out[0] if isinstance(out, (tuple, list)) else out
            bad = [n for n, p in module.named_parameters(recurse=False) if not np.isfinite(p.data).all()]
            found.append({"name": names.get(id(module)) or type(module).__name__, "type": type(module).__name__,
                          "op": first.grad_fn.name if getattr(first, "grad_fn", None) is not None else None,
                          "input_finite": not any(_nonfinite(a) for a in args), "bad_params": bad})

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    if found:
        return found[0]
    if loss_fn is not None and y is not None:
        loss = loss_fn(out, y)
        if _nonfinite(loss):
            return {"name": "<loss>", "type": type(loss_fn).__name__,
                    "op": loss.grad_fn.name if loss.grad_fn is not None else None, "input_finite": True,
                    "bad_params": []}
    return None


class NaNGuard(Callback):
    """Stop the run when the loss becomes NaN/Inf, naming the layer and op that first produced it.

    The loss is checked before backward, so the update is skipped and the weights are still the ones that
    produced it; the batch is run again with forward hooks (the random state rewound, so dropout draws
    the same masks) to find the first module with a non-finite output. The checkpoint of the last good
    epoch is kept. ``raise_error=True`` raises FloatingPointError instead of stopping.
    """

    def __init__(self, raise_error: bool = False):
        self.raise_error = raise_error
        self.message = None
        self._rng = None

    def on_batch_begin(self, trainer) -> None:
        self._rng = backend.default_generator.get_state()

    def on_loss(self, trainer, loss) -> None:
        loss = loss.item()
        if math.isfinite(loss):
            return
        x, y = trainer.current_batch
        after = backend.default_generator.get_state()
        backend.default_generator.set_state(self._rng)
        try:
            where = find_nonfinite(trainer.model, x, y, trainer.loss_fn)
        finally:
            backend.default_generator.set_state(after)
        head = f"NaNGuard: loss is {loss} at epoch {trainer.epoch + 1}, step {trainer.step + 1}"
        if where is None:
            detail = "no module output was non-finite on a re-run of the batch"
        elif where["name"] == "<input>":
            detail = "the input batch itself contains NaN/Inf; check the data and its transforms"
        elif where["name"] == "<loss>":
            detail = (f"the model outputs are finite but the loss {where['type']} (op {where['op']}) is not; "
                      "check the targets and the loss (log of 0? probabilities outside [0, 1]?)")
        else:
            detail = f"first non-finite output from layer {where['name']!r} ({where['type']}), op {where['op']}"
            if where["bad_params"]:
                detail += (f"; its parameters {where['bad_params']} already contain NaN/Inf (an earlier update "
                           "diverged: lower the learning rate or pass grad_clip=...)")
            elif where["input_finite"]:
                detail += "; its input and parameters were finite (overflow inside this op: check its scale)"
        self.message = f"{head}: {detail}"
        print(self.message, file=sys.stderr, flush=True)
        if self.raise_error:
            raise FloatingPointError(self.message)
        trainer.request_stop(self.message, save=False)


def _rows_until(rows: list[dict], epoch: int) -> list[dict]:
    return [r for r in rows if r.get("epoch") is not None and r["epoch"] <= epoch]


class CSVLogger(Callback):
    """One row per epoch in a CSV file, rewritten atomically each epoch from the run's history (so a
    resumed run's file has each epoch exactly once, and columns may appear later)."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def on_epoch_end(self, trainer, logs) -> None:
        rows = trainer.history.rows()
        columns = list(dict.fromkeys(k for r in rows for k in r))
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if v is None else json.dumps(v) if isinstance(v, list) else v
                             for k, v in r.items()})
        atomic_write(self.path, buf.getvalue())


class JSONLLogger(Callback):
    """One JSON object per epoch appended to a ``.jsonl`` file (``atomic_append``: whole lines only). On
    resume, lines of epochs after the checkpoint are dropped first (atomically), so none repeats."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def on_train_begin(self, trainer) -> None:
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
            keep = _rows_until(rows, trainer.epoch)
            if len(keep) != len(rows):
                atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def on_epoch_end(self, trainer, logs) -> None:
        row = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in logs.items()}
        atomic_append(self.path, json.dumps(row) + "\n")


class TensorBoard(Callback):
    """Scalars of every epoch (and the per-step loss and lr) as TensorBoard event files; needs the
    optional package ``tensorboardX``."""

    def __init__(self, log_dir, log_every: int = 10):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError("TensorBoard callback: the optional package tensorboardX is not installed; "
                              "`pip install tensorboardX`, or use CSVLogger/JSONLLogger and "
                              "shendu.train.plots instead") from None
        self.writer = SummaryWriter(os.fspath(log_dir))
        self.log_every = int(log_every)

    def on_batch_end(self, trainer, logs) -> None:
        if trainer.step % self.log_every == 0:
            for k, v in logs.items():
                self.writer.add_scalar(f"step/{k}", v, trainer.step)

    def on_epoch_end(self, trainer, logs) -> None:
        for k, v in logs.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self.writer.add_scalar(f"epoch/{k}", v, int(logs["epoch"]))
        self.writer.flush()

    def on_train_end(self, trainer) -> None:
        self.writer.close()
