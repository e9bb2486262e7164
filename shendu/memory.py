"""Keep freed array memory in the process, so the next step's arrays reuse it without page faults.

A forward pass allocates an array per layer output and frees it a layer or a step later. With glibc's
default policy, arrays above a (self-adjusting, at most 32 MB) threshold are mapped afresh from the
kernel on every allocation, and the free memory at the top of the heap is handed back once it passes
twice that threshold. Either way the next step's arrays land on pages the kernel must fault in and
zero again: Fashion-MNIST's CNN at batch 32 took ~1,500 minor page faults per inference forward, and
its first convolution and batch norm ran in 1.7 and 1.5 ms instead of 0.6 and 0.5 ms (docs/ops.md,
"Freed memory is kept"). The usual cure for PyTorch on CPU is to preload jemalloc or tcmalloc,
which keep freed memory for reuse; here glibc is told to do the same with ``mallopt``: arrays up to
``MMAP_THRESHOLD`` come from the heap, and up to ``TRIM_THRESHOLD`` of free heap is kept. The cost is
that the process holds on to its peak of array memory (at most the trim threshold above what is in
use), as those allocators also do for a while.

It runs when shendu is imported, on glibc only; ``SHENDU_KEEP_FREED_MEMORY=0`` in the environment
leaves the allocator as it was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from shendu.errors import ArgumentError

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 256 << 20  # larger arrays still get their own mapping, returned when freed
TRIM_THRESHOLD = 1 << 30    # at most this much free memory stays at the top of the heap

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc's malloc.h)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (see the module docstring). Returns True
    when the allocator took both settings, False where there is no glibc (macOS, musl, Windows).

    >>> from shendu.memory import keep_freed_memory
    >>> keep_freed_memory() in (True, False)
    True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: mallopt's numbers differ there
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok


def _from_environment() -> None:
    value = os.environ.get("SHENDU_KEEP_FREED_MEMORY", "1").strip()
    if value not in ("0", "1"):
        raise ArgumentError(f"SHENDU_KEEP_FREED_MEMORY must be 0 or 1, got {value!r}")
    if value == "1":
        keep_freed_memory()
