"""The training loop: a plain :func:`train_one_epoch` and :func:`evaluate` anyone can read, and
:func:`fit`, the Keras-style driver on top of them (callbacks, progress, checkpoints, exact resume, Ctrl-C).

>>> import numpy as np, shendu
>>> from shendu import nn, optim
>>> from shendu.data import DataLoader, TensorDataset
>>> from shendu.train import fit
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((64, 4)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int64)
>>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
>>> loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=shendu.Generator(0))
>>> hist = fit(model, loader, epochs=20, optimizer=optim.Adam(model.parameters(), lr=1e-2), progress=False, seed=0)
>>> hist["accuracy"][-1] > 0.9
True
"""

from __future__ import annotations

import json
import operator
import os
import signal
import sys
import threading
import time
import warnings
from typing import Callable, Iterable

import numpy as np

from shendu import backend
from shendu.autograd.engine import no_grad
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError
from shendu.io.atomic import atomic_write
from shendu.train import callbacks as cbs
from shendu.train.checkpoint import load_checkpoint, save_checkpoint
from shendu.train.metrics import Mean, make_metric

__all__ = ["History", "Trainer", "train_step", "train_one_epoch", "evaluate", "fit"]


# ------------------------------------------------------------------------------------------------ data
def _batch(batch):
    """``(x, y)`` Tensors from a loader's batch (tuples/lists of arrays or Tensors)."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ArgumentError(f"fit: a batch must be a pair (inputs, targets), got {type(batch).__name__}")
    x, y = batch[0], batch[1]
    return tuple(v if isinstance(v, Tensor) else Tensor(np.asarray(v)) for v in (x, y))


# -------------------------------------------------------------------------------------------- history
class History:
    """Per-epoch figures: ``history["loss"]``, ``["val_loss"]``, ``["accuracy"]``, ``["lr"]``, ...

    ``interrupted`` is True when Ctrl-C stopped the run, ``stop_reason`` says why it ended early.
    """

    def __init__(self, history: dict | None = None):
        self.history: dict[str, list] = {k: list(v) for k, v in (history or {}).items()}
        self.interrupted = False
        self.stop_reason: str | None = None

    def append(self, logs: dict) -> None:
        n = len(self.history.get("epoch", []))
        for key in list(dict.fromkeys([*self.history, *logs])):  # keep the column order
            self.history.setdefault(key, [None] * n).append(_plain(logs.get(key)))

    def __getitem__(self, key: str) -> list:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    @property
    def epochs(self) -> int:
        return len(self.history.get("epoch", []))

    def rows(self) -> list[dict]:
        return [{k: v[i] for k, v in self.history.items()} for i in range(self.epochs)]

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in self.history.items()}

    def __repr__(self) -> str:
        last = {k: v[-1] for k, v in self.history.items() if v}
        return f"History(epochs={self.epochs}, last={last}, interrupted={self.interrupted})"


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v.item() if isinstance(v, np.generic) else v


# ------------------------------------------------------------------------------------------ the loop
def train_step(model, x, y, loss_fn, optimizer, grad_clip: float | None = None, veto: Callable | None = None):
    """One update: forward, loss, backward, optional gradient-norm clipping, optimizer step.
    Returns ``(loss Tensor, model output)``, or None when ``veto(loss, output)`` returned True (then
    no backward and no update happen: the weights stay those that produced the loss)."""
    optimizer.zero_grad()
    output = model(x)
    loss = loss_fn(output, y)
    if veto is not None and veto(loss, output):
        return None
    loss.backward()
    if grad_clip is not None:
        from shendu.optim import clip_grad_norm_
        clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    optimizer.step()
    return loss, output


def train_one_epoch(model, data: Iterable, loss_fn, optimizer, metrics=("accuracy",), grad_clip=None,
                    meters: dict | None = None, on_batch_begin: Callable | None = None,
                    on_batch_end: Callable | None = None, veto: Callable | None = None) -> dict:
    """Train ``model`` on every batch of ``data`` once; return ``{"loss": mean, metric: value, ...}``.

    ``meters`` (from an earlier call) continues running averages; ``on_batch_begin(x, y)`` and
    ``on_batch_end(loss, output, x, y)`` are hooks, and the epoch stops early when the latter returns True.
    ``veto(loss, output)`` sees the loss before backward; returning True skips that update and ends the epoch.
    """
    model.train()
    meters = meters if meters is not None else _meters(metrics)
    batches = iter(data)
    for batch in batches:
        x, y = _batch(batch)
        if on_batch_begin is not None:
            on_batch_begin(x, y)
        result = train_step(model, x, y, loss_fn, optimizer, grad_clip, veto)
        if result is None:
            break
        loss, output = result
        n = x.shape[0] if x.ndim else 1
        meters["loss"].update(loss.item(), n)
        for name, m in meters.items():
            if name != "loss":
                m.update(output, y)
        if on_batch_end is not None and on_batch_end(loss, output, x, y):
            break
    if operator.length_hint(batches, 1) == 0:
        # Stopped at the last batch: finish the pass, so that a loader counting epochs (DataLoader) ends this
        # one and a checkpoint taken now resumes at the next epoch, not at the empty rest of this one.
        next(batches, None)
    return {name: m.compute() for name, m in meters.items()}


def evaluate(model, data: Iterable, loss_fn=None, metrics=("accuracy",)) -> dict:
    """Loss and metrics of ``model`` over ``data`` in eval mode without gradients (the mode is restored).

    ``metrics`` are names (``"accuracy"``, ``"top5"``) or :class:`~shendu.train.metrics.Metric` objects
    (e.g. ``ConfusionMatrix(10)``); the result maps each name to its value.
    """
    loss_fn = loss_fn if loss_fn is not None else _default_loss()
    meters = _meters(metrics)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for batch in data:
                x, y = _batch(batch)
                output = model(x)
                meters["loss"].update(loss_fn(output, y).item(), x.shape[0] if x.ndim else 1)
                for name, m in meters.items():
                    if name != "loss":
                        m.update(output, y)
    finally:
        model.train(was_training)
    return {name: m.compute() for name, m in meters.items()}


def _meters(metrics) -> dict:
    out = {"loss": Mean("loss")}
    for spec in metrics or ():
        m = make_metric(spec)
        out[m.name] = m
    return out


def _default_loss():
    from shendu.nn import CrossEntropyLoss
    return CrossEntropyLoss()


# --------------------------------------------------------------------------------------- the trainer
class Trainer:
    """The state of a :func:`fit` run, handed to every callback: ``model``, ``optimizer``, ``loss_fn``,
    ``train_data``, ``epoch`` (epochs finished), ``step`` (updates done), ``batch`` (updates done in the
    current epoch), ``history``, ``stop_training`` (set it to end the run), ``stop_reason``, ``out_dir``.
    """

    def __init__(self, model, train_data, val_data, loss_fn, optimizer, epochs, metrics, callbacks, out_dir,
                 grad_clip, config, max_steps):
        self.model, self.train_data, self.val_data = model, train_data, val_data
        self.loss_fn, self.optimizer, self.epochs, self.metrics = loss_fn, optimizer, epochs, metrics
        self.callbacks, self.out_dir, self.grad_clip, self.config = callbacks, out_dir, grad_clip, config
        self.max_steps = max_steps
        self.epoch = self.step = self.batch = 0
        self.history = History()
        self.meters = _meters(metrics)
        self.stop_training, self.stop_reason, self.save_on_stop = False, None, True
        self.current_batch = None
        self.samples_seen, self.epoch_start = 0, time.perf_counter()

    def request_stop(self, reason: str, save: bool = True) -> None:
        """End the run after the current step; ``save=False`` skips the checkpoint (e.g. NaN weights)."""
        if not self.stop_training:
            self.stop_training, self.stop_reason, self.save_on_stop = True, reason, save

    @property
    def checkpoint_dir(self) -> str | None:
        for cb in self.callbacks:
            if isinstance(cb, cbs.ModelCheckpoint):
                return cb.dirpath
        return os.path.join(self.out_dir, "checkpoints") if self.out_dir else None

    def _stateful_callbacks(self) -> dict:
        return {f"{i}.{type(cb).__name__}": cb for i, cb in enumerate(self.callbacks) if hasattr(cb, "state_dict")}

    def save_checkpoint(self, path: str) -> None:
        save_checkpoint(path, self.model, self.optimizer, loader=self.train_data, epoch=self.epoch, step=self.step,
                        history=self.history, config=self.config, callbacks=self._stateful_callbacks(),
                        extra={"batch": self.batch, "meters": {k: m.state_dict() for k, m in self.meters.items()}})

    def load_checkpoint(self, path: str) -> None:
        tree = load_checkpoint(path, self.model, self.optimizer, loader=self.train_data,
                               callbacks=self._stateful_callbacks())
        self.epoch, self.step = tree["epoch"], tree["step"]
        self.history = History(tree["history"])
        self.batch = tree["extra"]["batch"]
        for k, state in tree["extra"]["meters"].items():
            if k in self.meters:
                self.meters[k].load_state_dict(state)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def _resolve_checkpoint(path: str) -> str:
    """A run folder resumes from its last checkpoint; a checkpoint folder is used as is."""
    for candidate in (os.path.join(path, "checkpoints", "last"), os.path.join(path, "last")):
        if os.path.isdir(candidate) or os.path.isdir(candidate + ".old"):
            return candidate
    return path


class _SigintGuard:
    """During fit: the first Ctrl-C asks the run to stop after the current step (and save); the second
    raises KeyboardInterrupt at once. The previous handler comes back when fit returns."""

    def __init__(self, trainer: Trainer, log):
        self.trainer, self.log, self.previous, self.count = trainer, log, None, 0

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.count += 1
        if self.count > 1:
            signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.trainer.history.interrupted = True
        self.trainer.request_stop("interrupted by Ctrl-C")
        self.log("\nInterrupted: finishing this step and saving a checkpoint; press Ctrl-C again to quit now.")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def fit(model, train_data, val_data=None, loss_fn=None, optimizer=None, scheduler=None, epochs: int = 1,
        callbacks=(), metrics=("accuracy",), device=None, log_every: int = 10, progress="auto", out_dir=None,
        resume_from=None, grad_clip: float | None = None, seed: int | None = None, config: dict | None = None,
        max_steps: int | None = None) -> History:
    """Train ``model`` on ``train_data`` for ``epochs`` epochs, Keras-style; returns a :class:`History`.

    Args:
        train_data / val_data: iterables of ``(inputs, targets)`` batches, typically a
            :class:`shendu.data.DataLoader`; a loader with ``state_dict()`` is checkpointed for exact resume.
        loss_fn: default ``CrossEntropyLoss()``. optimizer: default ``Adam(lr=1e-3)``.
        scheduler: an lr scheduler stepped once per epoch (``ReduceLROnPlateau`` gets ``val_loss``);
            for per-step schedules pass ``LRSchedulerCallback(sched, interval="step")`` in ``callbacks``.
        metrics: names or Metric objects computed on train and validation data.
        progress: ``"auto"`` draws a tqdm bar on a terminal and prints one line per epoch otherwise;
            True/False force the line output on/off. ``log_every``: bar refresh, in steps.
        out_dir: run folder: ``config.json``, ``metrics.csv``, ``metrics.jsonl`` and ``checkpoints/{last,best}``.
        resume_from: a checkpoint folder or run folder; training continues exactly where it stopped.
        grad_clip: clip the global gradient norm to this value. seed: ``shendu.manual_seed(seed)`` first.
        config: the resolved configuration, saved in the run folder and in checkpoints.
        max_steps: stop (and checkpoint) after this many optimizer steps in total.

    The first Ctrl-C stops after the current step, saves ``checkpoints/last`` and returns the History with
    ``interrupted=True``; a second Ctrl-C raises KeyboardInterrupt at once.
    """
    from shendu.nn import Module
    if not isinstance(model, Module):
        raise ArgumentError(f"fit: model must be a shendu.nn.Module, got {type(model).__name__}")
    if device not in (None, "cpu"):
        raise ArgumentError(f"fit: device {device!r} is not available; shendu runs on the CPU")
    if int(epochs) < 0:
        raise ArgumentError(f"fit: epochs must be >= 0, got {epochs}")
    loss_fn = loss_fn if loss_fn is not None else _default_loss()
    if optimizer is None:
        from shendu.optim import Adam
        optimizer = Adam(model.parameters(), lr=1e-3)
    callbacks = list(callbacks)
    if scheduler is not None:
        callbacks.insert(0, cbs.LRSchedulerCallback(scheduler, interval="epoch"))
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        defaults = [(cbs.CSVLogger, lambda: cbs.CSVLogger(os.path.join(out_dir, "metrics.csv"))),
                    (cbs.JSONLLogger, lambda: cbs.JSONLLogger(os.path.join(out_dir, "metrics.jsonl"))),
                    (cbs.ModelCheckpoint, lambda: cbs.ModelCheckpoint(os.path.join(out_dir, "checkpoints")))]
        callbacks += [make() for kind, make in defaults if not any(isinstance(c, kind) for c in callbacks)]
    callbacks.sort(key=lambda c: getattr(c, "order", 0))  # checkpointing runs last, after every state changed
    trainer = Trainer(model, train_data, val_data, loss_fn, optimizer, int(epochs), metrics, callbacks, out_dir,
                      grad_clip, config, max_steps)
    bar = _Progress(progress, log_every)

    if resume_from is not None:
        trainer.load_checkpoint(_resolve_checkpoint(os.fspath(resume_from)))
        bar.log(f"Resumed from {os.fspath(resume_from)} at epoch {trainer.epoch}, step {trainer.step}")
    elif seed is not None:
        backend.manual_seed(seed)
    if out_dir is not None and config is not None:
        atomic_write(os.path.join(out_dir, "config.json"), json.dumps(config, indent=2, default=str))

    def before(x, y):
        trainer.current_batch = (x, y)
        for cb in callbacks:
            cb.on_batch_begin(trainer)

    def after(loss, output, x, y):
        trainer.step += 1
        trainer.batch += 1
        trainer.samples_seen += x.shape[0]
        logs = {"loss": float(loss.item()), "lr": trainer.lr()}
        for cb in callbacks:
            cb.on_batch_end(trainer, logs)
        if trainer.max_steps is not None and trainer.step >= trainer.max_steps:
            trainer.request_stop(f"reached max_steps={trainer.max_steps}")
        bar.update(trainer, logs)
        return trainer.stop_training

    def veto(loss, output):
        for cb in callbacks:
            cb.on_loss(trainer, loss)
        return trainer.stop_training and not trainer.save_on_stop  # a callback refused this update

    with _SigintGuard(trainer, bar.log):
        for cb in callbacks:
            cb.on_train_begin(trainer)
        while trainer.epoch < trainer.epochs and not trainer.stop_training:
            if trainer.batch == 0:
                for m in trainer.meters.values():
                    m.reset()
                for cb in callbacks:
                    cb.on_epoch_begin(trainer)
            trainer.samples_seen, trainer.epoch_start = 0, time.perf_counter()
            bar.start_epoch(trainer, _length(train_data))
            logs = train_one_epoch(model, train_data, loss_fn, optimizer, grad_clip=grad_clip,
                                   meters=trainer.meters, on_batch_begin=before, on_batch_end=after, veto=veto)
            bar.close()
            if trainer.stop_training and _unfinished(train_data, trainer):
                break  # stopped mid-epoch: the epoch's figures are incomplete, the checkpoint below resumes it
            elapsed = time.perf_counter() - trainer.epoch_start
            logs = {"epoch": trainer.epoch + 1, **logs, "lr": trainer.lr(), "time": elapsed,
                    "images_per_s": trainer.samples_seen / elapsed if elapsed > 0 else float("nan")}
            if val_data is not None:
                logs.update({"val_" + k: v for k, v in evaluate(model, val_data, loss_fn, metrics).items()})
            trainer.history.append(logs)
            trainer.epoch += 1
            trainer.batch = 0
            for cb in callbacks:
                cb.on_epoch_end(trainer, logs)
            bar.epoch_line(trainer, logs)
        if trainer.stop_training and trainer.batch > 0 and trainer.save_on_stop:
            where = trainer.checkpoint_dir
            if where is not None:
                trainer.save_checkpoint(os.path.join(where, "last"))
                bar.log(f"Saved checkpoint {os.path.join(where, 'last')} (epoch {trainer.epoch}, step {trainer.step})")
            elif trainer.history.interrupted:
                warnings.warn("fit: interrupted without out_dir or ModelCheckpoint; nothing was saved", stacklevel=2)
        trainer.history.stop_reason = trainer.stop_reason
        for cb in callbacks:
            cb.on_train_end(trainer)
    return trainer.history


def _length(data):
    try:
        return len(data)
    except TypeError:
        return None


def _unfinished(data, trainer) -> bool:
    n = _length(data)
    return n is None or trainer.batch < n


# -------------------------------------------------------------------------------------------- progress
class _Progress:
    """A tqdm bar per epoch on a terminal (loss, accuracy, images/s); one plain line per epoch otherwise."""

    def __init__(self, mode, log_every: int):
        self.log_every = max(1, int(log_every))
        tty = sys.stderr.isatty()
        self.enabled = bool(mode)
        self.use_bar = False
        if mode == "auto" and tty:
            try:
                import tqdm  # noqa: F401
                self.use_bar = True
            except ImportError:
                pass
        self.bar = None

    def log(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr if self.use_bar else sys.stdout, flush=True)

    def start_epoch(self, trainer, total) -> None:
        if self.use_bar:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=trainer.batch, desc=f"epoch {trainer.epoch + 1}/{trainer.epochs}",
                            leave=True, dynamic_ncols=True)

    def update(self, trainer, logs) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if trainer.batch % self.log_every == 0:
            elapsed = max(time.perf_counter() - trainer.epoch_start, 1e-9)
            post = {"loss": f"{trainer.meters['loss'].compute():.4f}"}
            if "accuracy" in trainer.meters:
                post["acc"] = f"{trainer.meters['accuracy'].compute():.4f}"
            post["img/s"] = f"{trainer.samples_seen / elapsed:.0f}"
            self.bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def epoch_line(self, trainer, logs) -> None:
        if not self.enabled:
            return
        parts = [f"epoch {logs['epoch']}/{trainer.epochs}"]
        for k, v in logs.items():
            if k in ("epoch", "time", "images_per_s") or not isinstance(v, (int, float)):
                continue
            parts.append(f"{k} {v:.4g}" if k == "lr" else f"{k} {v:.4f}")
        parts.append(f"{logs['images_per_s']:.0f} img/s")
        parts.append(f"{logs['time']:.1f}s")
        self.log("  ".join(parts))
