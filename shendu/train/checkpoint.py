"""Checkpoints: everything a run needs to continue exactly where it stopped, in one folder.

A checkpoint folder holds ``tensors.safetensors`` (every array: model weights under ``model/...``,
optimizer moments under ``optimizer/state/...``, ...) and ``state.json`` (everything else: optimizer
options, scheduler and callback state, the data loader's position and generator, the library's and
NumPy's random states, epoch, step, metrics history, the resolved config). It is written atomically
(see :func:`shendu.io.tree.save_tree`) and holds no pickle.

>>> import os, tempfile, shendu
>>> from shendu import nn, optim
>>> model = nn.Linear(3, 2)
>>> opt = optim.Adam(model.parameters(), lr=1e-3)
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt")
>>> save_checkpoint(path, model, opt, epoch=4, step=40, config={"lr": 1e-3})
>>> info = load_checkpoint(path, model, opt)
>>> info["epoch"], info["step"], info["config"]
(4, 40, {'lr': 0.001})
"""

from __future__ import annotations

import os
import random

import numpy as np

from shendu import backend
from shendu.errors import DataError
from shendu.io.tree import load_tree, save_tree

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "FORMAT"]

FORMAT = "shendu-checkpoint-1"


def rng_state() -> dict:
    """The state of every random source a run may draw from: shendu's default generator, NumPy's legacy
    global generator and Python's ``random``."""
    return {"shendu": backend.default_generator.get_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    backend.default_generator.set_state(state["shendu"])
    np.random.set_state(tuple(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path, model, optimizer=None, scheduler=None, loader=None, *, epoch: int = 0, step: int = 0,
                    history=None, config=None, callbacks=None, extra=None) -> None:
    """Write a checkpoint folder at ``path`` (replacing an older one atomically).

    ``history`` is a dict of lists (or a :class:`~shendu.train.History`); ``callbacks`` maps names to
    objects with ``state_dict()``; ``extra`` is any further JSON-and-arrays structure.
    """
    tree = {
        "format": FORMAT,
        "model": dict(model.state_dict()),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "loader": loader.state_dict() if loader is not None and hasattr(loader, "state_dict") else None,
        "callbacks": {k: cb.state_dict() for k, cb in (callbacks or {}).items()},
        "rng": rng_state(),
        "epoch": int(epoch), "step": int(step),
        "history": history.to_dict() if hasattr(history, "to_dict") else history,
        "config": config, "extra": extra,
    }
    save_tree(tree, path, metadata={"format": FORMAT, "epoch": str(int(epoch)), "step": str(int(step))})


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, loader=None, *, callbacks=None,
                    restore_rng: bool = True, strict: bool = True) -> dict:
    """Read a checkpoint folder; load it into whichever of ``model``, ``optimizer``, ``scheduler``, ``loader``
    and ``callbacks`` are given, restore the random states (``restore_rng``), and return the whole tree
    (``epoch``, ``step``, ``history``, ``config``, ``extra``, and the raw states)."""
    if not os.path.isdir(os.fspath(path)) and not os.path.isdir(os.fspath(path) + ".old"):
        raise DataError(f"load_checkpoint: no checkpoint folder at {os.fspath(path)!r}")
    tree = load_tree(path)
    if tree.get("format") != FORMAT:
        raise DataError(f"load_checkpoint: {os.fspath(path)!r} has format {tree.get('format')!r}, expected {FORMAT!r}")
    if model is not None:
        model.load_state_dict(tree["model"], strict=strict)
    if optimizer is not None and tree["optimizer"] is not None:
        optimizer.load_state_dict(tree["optimizer"])
    if scheduler is not None and tree["scheduler"] is not None:
        scheduler.load_state_dict(tree["scheduler"])
    if loader is not None and tree["loader"] is not None and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(tree["loader"])
    for key, cb in (callbacks or {}).items():
        if key in tree["callbacks"]:
            cb.load_state_dict(tree["callbacks"][key])
    if restore_rng:
        set_rng_state(tree["rng"])
    return tree
