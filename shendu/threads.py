"""How many threads shendu computes with, for every pool at once (``torch.set_num_threads``).

Three pools do the work: shendu's chunked convolution kernels (:mod:`shendu.ops.kernels.parallel`),
numba's parallel kernels (batch norm, pooling, ReLU) and BLAS. :func:`set_num_threads` bounds all
three; ``SHENDU_NUM_THREADS=N`` in the environment does the same when shendu is imported. On a
2-core machine, two runs side by side with one thread each finish sooner than one after the other
with two threads each, as threads that wait at barriers behind another process lose their turn.

Results do not depend on timing, but a weight gradient summed over chunks is added in an order set
by the thread count, so a bit-exact resume needs the same count as the run it continues.
"""

from __future__ import annotations

import os

from shendu.errors import ArgumentError
from shendu.ops.kernels import parallel

__all__ = ["set_num_threads", "get_num_threads"]


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads in shendu's kernels, numba's kernels and BLAS.

    >>> import shendu
    >>> before = shendu.get_num_threads()
    >>> shendu.set_num_threads(1)
    >>> shendu.get_num_threads()
    1
    >>> shendu.set_num_threads(before)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ArgumentError(f"set_num_threads: n must be a positive integer, got {n!r}")
    parallel.set_num_threads(n)  # first: with n == 1 it hands BLAS back its own count, bounded below
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)  # BLAS and OpenMP, process-wide from here on
    except ImportError:
        pass


def get_num_threads() -> int:
    """The thread count of shendu's kernels (see :func:`set_num_threads`).

    >>> import shendu
    >>> shendu.get_num_threads() >= 1
    True
    """
    return parallel.num_threads()


def _from_environment() -> None:
    value = os.environ.get("SHENDU_NUM_THREADS")
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ArgumentError(f"SHENDU_NUM_THREADS must be a positive integer, got {value!r}") from None
        set_num_threads(n)
