"""Scratch memory the kernels reuse from one call to the next.

Why: a layer's temporaries (Winograd's transformed filters and tiles, per-thread partial sums) are
megabytes, allocated and freed on every call. glibc serves blocks that large with fresh pages from the
kernel (``mmap``, or a heap top it trimmed after the last call), and every first touch of a page is a
fault. Measured on ResNet stage 4 (16 x 256 x 14 x 14, forward + backward by Winograd): 3,300 page
faults a call, 74 ms, against 61 ms once the memory stayed mapped.

A workspace is a flat array per (thread, name, dtype), grown to the largest size asked for and kept
until :func:`clear`. Its contents are undefined when handed out. The rules that make this safe:
only for scratch that does not outlive the call that asked for it (never for a result), and one name
per use that can be alive at the same time on the same thread.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["workspace", "clear", "nbytes"]

_arrays: dict = {}
_lock = threading.Lock()


def workspace(name: str, size: int, dtype) -> np.ndarray:
    """A flat array of ``size`` elements of ``dtype`` for the calling thread, its contents undefined.

    >>> a = workspace("doc.example", 6, np.float32)
    >>> b = workspace("doc.example", 4, np.float32)  # the same memory, reused
    >>> a.shape, b.shape, np.shares_memory(a, b)
    ((6,), (4,), True)
    """
    key = (threading.get_ident(), name, np.dtype(dtype))
    buf = _arrays.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(max(int(size), 1), dtype)
        with _lock:
            _arrays[key] = buf
    return buf[:size]


def clear() -> None:
    """Free every workspace (they are allocated again, at their new sizes, when next asked for)."""
    with _lock:
        _arrays.clear()


def nbytes() -> int:
    """Bytes held by the workspaces of all threads."""
    with _lock:
        return sum(a.nbytes for a in _arrays.values())
