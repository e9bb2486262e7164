"""Where a random transform draws from: its own generator, else the loader's per-batch one, else shendu's.

The DataLoader runs each batch's transforms under :func:`batch_generator`, a generator seeded from
(loader seed, epoch, batch index). So augmentation does not depend on whether batches are prefetched in
a background thread, never races with the training thread for the global generator, and is replayed
exactly when a loader resumes mid-epoch.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from shendu import backend

_local = threading.local()


@contextlib.contextmanager
def batch_generator(generator: backend.Generator):
    """Make ``generator`` the source of transforms that were given none, in this thread only."""
    previous = getattr(_local, "generator", None)
    _local.generator = generator
    try:
        yield generator
    finally:
        _local.generator = previous


def transform_rng(own: backend.Generator | None) -> np.random.Generator:
    """The NumPy generator a transform should draw from (see the module docstring for the order)."""
    if own is not None:
        return own.rng
    current = getattr(_local, "generator", None)
    return current.rng if current is not None else backend.rng()
