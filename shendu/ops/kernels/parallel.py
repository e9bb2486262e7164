"""Spread independent chunks of a batch over threads, with BLAS single-threaded inside each chunk.

Why not just let OpenBLAS thread each GEMM: a convolution is a sequence of memory-bound copies
(im2col, col2im, tile transforms) and medium-sized GEMMs. Threaded BLAS leaves the copies on one core,
and its threads meet at a barrier inside every GEMM, which collapses when the machine is busy (measured
here: 20x slower under load). Chunks of images are independent, so each thread runs whole chunks —
copy, GEMM, scatter — with a one-thread BLAS. Thread t takes chunks t, t + T, t + 2T, ... (a fixed
assignment, so partial sums such as a weight gradient are added in the same order on every run and
results are reproducible). NumPy releases the GIL in both its copy loops and BLAS calls.

BLAS is pinned to one thread (every BLAS library loaded: NumPy's and SciPy's OpenBLAS are separate)
with ``threadpoolctl`` the first time the kernels run on several threads, and stays so for the
process; :func:`set_num_threads(1) <set_num_threads>` gives it its threads back. Measured on a busy
machine: switching BLAS to one thread around each call and back let its idle threads spin, and a
LeNet convolution's forward+backward took 49-3560 ms (median ~300) instead of 47-71 ms pinned; a
whole training step 1.7-8 s instead of 1.1-1.8 s. Without threadpoolctl the chunks run one after
another with BLAS's own threading.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from shendu.ops.kernels import workspace

__all__ = ["num_threads", "set_num_threads", "parallel_chunks", "chunk_size", "split_rows", "single_threaded_blas"]

_state = {"threads": os.cpu_count() or 1, "pool": None, "blas": None, "pinned": None, "team_until": 0.0}

_lock = threading.Lock()

# How long numba's OpenMP threads (shendu.ops.kernels.team) keep spinning after a region: ~3 ms measured
# with libgomp's default spin count on the 2-core VM (a region 2 ms after the last started in 4 us, one
# 5 ms after in 110 us, the threads asleep).
TEAM_SPIN_SECONDS = 0.004


def note_team_region() -> None:
    """Called by :mod:`shendu.ops.kernels.team` after each region: its threads now spin for a while."""
    _state["team_until"] = time.perf_counter() + TEAM_SPIN_SECONDS


def _team_spinning() -> bool:
    """Whether the OpenMP team's threads may still be spinning. The pool's threads then stay out of
    the way: a pool thread woken now would share a core with a spinning thread (which does not yield)
    and wait for the scheduler's time slice, milliseconds; the work runs on the calling thread instead."""
    return time.perf_counter() < _state["team_until"]


def num_threads() -> int:
    """Threads the convolution kernels use (default: the number of CPUs)."""
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Set how many threads the kernels use (1 = run chunks serially with BLAS's own threading)."""
    with _lock:
        _state["threads"] = max(1, int(n))
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=False)
            _state["pool"] = None
            workspace.clear()  # the old pool threads' workspaces would otherwise stay held
        if _state["threads"] == 1 and _state["pinned"]:  # BLAS gets its threads back
            for lib, count in _state["pinned"]:
                lib.set_num_threads(count)
            _state["pinned"] = None


def _blas():
    """threadpoolctl's controllers of the BLAS libraries loaded, or False when unavailable."""
    if _state["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController

            libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
            _state["blas"] = libs or False
        except Exception:  # not installed, or an unusual BLAS: fall back to serial chunks
            _state["blas"] = False
    return _state["blas"]


def _pin_blas() -> bool:
    """Pin every BLAS to one thread (once; see the module docstring). False if it cannot be done."""
    libs = _blas()
    if not libs:
        return False
    with _lock:
        if _state["pinned"] is None:
            _state["pinned"] = [(lib, lib.num_threads) for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
    return True


def _pool() -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = ThreadPoolExecutor(_state["threads"], thread_name_prefix="shendu-kernel")
        return _state["pool"]


def chunk_size(n_items: int, bytes_per_item: int, target_bytes: int) -> int:
    """Items per chunk: about ``target_bytes`` of scratch, and at least two chunks per thread when the
    batch allows (so threads can balance)."""
    by_bytes = max(1, target_bytes // max(bytes_per_item, 1))
    threads = num_threads()
    balance = max(1, -(-n_items // (2 * threads))) if threads > 1 else n_items
    return max(1, min(n_items, by_bytes, balance))


def parallel_chunks(fn, n_items: int, chunk: int, make_state=None) -> list:
    """Call ``fn(state, lo, hi)`` for the chunks ``[lo, hi)`` of ``range(n_items)``, on up to
    :func:`num_threads` threads; ``state = make_state()`` is per-thread scratch (buffers, partial
    sums). Returns the states of the threads that ran (sum partial results over them)."""
    starts = list(range(0, n_items, chunk))
    workers = min(num_threads(), len(starts))
    if workers <= 1 or _team_spinning() or not _pin_blas():
        state = make_state() if make_state else None
        for lo in starts:
            fn(state, lo, min(lo + chunk, n_items))
        return [state]

    def work(t):
        state = make_state() if make_state else None
        for lo in starts[t::workers]:
            fn(state, lo, min(lo + chunk, n_items))
        return state

    # The calling thread takes the first share itself: one thread fewer to wake (on a VM, waking an
    # idle core is slow) and no idle caller waiting.
    futures = [_pool().submit(work, t) for t in range(1, workers)]
    states = [work(0)]
    return states + [f.result() for f in futures]


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS calls inside the ``with`` block run on one thread when the kernels use several (for the
    small GEMMs kernels make outside :func:`parallel_chunks`, e.g. Winograd's filter transform)."""
    if num_threads() > 1:
        _pin_blas()
    yield


# Below this many array elements touched, split_rows runs on the calling thread: waking a pool thread
# costs more than the work it would take over (measured on the 2-core VM: a 1x8x4x4 im2col convolution
# used 0.29 ms of CPU with its fill and GEMM split, 0.17 ms without; ReLU and the batch-norm affine pass
# on 1x64x56x56, 0.4 M elements touched, took 124 / 119 us on two threads against 100 / 83 us on one,
# and 241 / 233 against 311 / 295 us at four times the size).
MIN_SPLIT_ELEMENTS = 1 << 19


def split_rows(fn, n_rows: int, elements: int | None = None) -> None:
    """Call ``fn(lo, hi)`` on :func:`num_threads` contiguous slices of ``range(n_rows)`` at once.

    For memory-bound NumPy reductions, which release the GIL: each thread reads its own rows.
    ``elements``: how many array elements the whole call reads and writes; below
    ``MIN_SPLIT_ELEMENTS`` it runs as one ``fn(0, n_rows)`` on the calling thread.
    """
    threads = min(num_threads(), n_rows) if elements is None or elements >= MIN_SPLIT_ELEMENTS else 1
    if threads > 1 and _team_spinning():
        threads = 1
    bounds = [n_rows * t // threads for t in range(threads + 1)]
    if threads <= 1:
        fn(0, n_rows)
        return
    futures = [_pool().submit(fn, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    fn(bounds[0], bounds[1])
    for f in futures:
        f.result()
