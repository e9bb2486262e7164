"""numba's OpenMP thread team: the threads of inference (a single image's GEMMs, and whole inference forwards).

Why: the chunk pool of :mod:`shendu.ops.kernels.parallel` runs Python on threads that sleep between
calls, and on a VM waking one takes 43-90 us (``bench/threads.py``): as long as a batch-1 layer's whole
GEMM. So splitting that GEMM over the pool gained little (the GEMM of a 32 -> 32 channel 3x3 layer at
28x28: 0.163 ms on one thread, 0.132 ms split over two). numba's ``parallel=True`` regions run on OpenMP threads that
spin-wait for a few milliseconds after a region, so the next one starts in microseconds: what torch's
OpenMP threads give its GEMMs. A forward calls its layers back to back, so the team stays awake through
it (``bench/threads.py``, idle: the batch-1 GEMM shapes run at 0.96-1.18x ``torch.mm`` on two threads,
against 0.91-1.61x split over the pool).

Each thread calls BLAS (scipy's ``sgemm``/``dgemm``, Fortran interface, through the addresses
``scipy.linalg.cython_blas`` exports, as numba's own ``np.dot`` does) on its share of the output: a block
of columns (output pixels) when each thread gets at least ``MIN_SPLIT_COLUMNS``, else a block of rows
(output channels), or a share of a stack of GEMMs. BLAS is pinned to one thread inside. Kernels
elsewhere call :func:`_call` from their own regions (Winograd's inference forward).

Training keeps the chunk pool, whose threads sleep: OpenMP threads spinning after every call made a
training step on a busy machine 1.5-3x slower (see :mod:`shendu.ops.kernels.activation_numba`); the
team runs a single image's GEMMs and the convolutions of an inference forward (no gradient asked for).
While its threads may still spin, the pool runs its work on the calling thread
(:func:`shendu.ops.kernels.parallel.note_team_region`). :func:`available` is False without numba, with
one thread, or when numba's threading layer is its own workqueue (not thread-safe: two threads launching
a region at once abort the process); callers then keep the pool.

Operands are strided views: a matrix whose last axis has unit stride is stored as it is, one whose
second-to-last axis has unit stride is a transposed view (BLAS reads either). The kernels take raw
addresses and sizes (so one compiled version serves every dtype and layout, and is cached on disk).
"""

from __future__ import annotations

import numpy as np

from shendu.ops.kernels import parallel

try:
    import llvmlite.binding as _llvm
    from numba import njit, prange, types
    from numba.extending import get_cython_function_address

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is optional
    _HAVE_NUMBA = False

__all__ = ["available", "worth", "gemm", "gemm_batched", "MIN_SPLIT_COLUMNS", "MIN_WORK"]

# A GEMM splits by columns when every thread gets this many: OpenBLAS runs a GEMM with 32 rows at 2/3 of
# its speed with 64, so halving 64 channels is slow; the last stages' small maps (7x7) split by rows.
MIN_SPLIT_COLUMNS = 64

# Multiply-adds below which a GEMM runs on the calling thread: a team call costs ~10 us (Python, BLAS
# arguments, the region), twice a 32 x 9 x 784 GEMM (a 1 -> 32 channel 3x3 layer at 28x28: 5.6 us on one
# thread); a GEMM of 2^20 multiply-adds (64 x 1024 x 16) takes 27 us on one thread.
MIN_WORK = 1 << 20

_state = {"checked": False, "ok": False}


def _make_consts() -> np.ndarray:
    """The constant arguments BLAS reads by address: 'N' and 'T' at bytes 0 and 1, alpha = 1 and
    beta = 0 as float32 at bytes 8 and 12 and as float64 at bytes 16 and 24."""
    c = np.zeros(32, np.uint8)
    c[0], c[1] = ord("N"), ord("T")
    c[8:16] = np.array([1, 0], np.float32).view(np.uint8)
    c[16:32] = np.array([1, 0], np.float64).view(np.uint8)
    return c


_CONSTS = _make_consts()
_CONSTS_ADDRESS = _CONSTS.ctypes.data

if _HAVE_NUMBA:
    # Fortran BLAS: every argument by address. Addresses are passed as 64-bit integers (the same
    # registers as pointers in the C ABI), so the kernels never type an array.
    _SIG = types.void(*([types.intp] * 13))
    _llvm.add_symbol("shendu_team_sgemm", get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
    _llvm.add_symbol("shendu_team_dgemm", get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))
    _sgemm = types.ExternalFunction("shendu_team_sgemm", _SIG)
    _dgemm = types.ExternalFunction("shendu_team_dgemm", _SIG)

    @njit(nogil=True, cache=True)
    def _call(ints, consts, itemsize, ta, tb, M, N, K, pa, lda, pb, ldb, pc, ldc):  # pragma: no cover
        """Row-major ``C (M x N) = op(A) @ op(B)`` at byte addresses ``pa, pb, pc``: column-major BLAS
        computes ``C^T = op(B)^T op(A)^T``, so B comes first (``ta``/``tb``: 0 if the operand is stored
        as it is, 1 if transposed; ``ld*``: leading dimensions in elements). BLAS takes every argument
        by address: ``ints`` is this thread's 6 int32 for the sizes, ``consts`` the address of
        :data:`_CONSTS` (the characters 'N' and 'T', then 1 and 0 as float32 and as float64)."""
        ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = N, M, K, ldb, lda, ldc
        ip = ints.ctypes.data
        if itemsize == 4:
            _sgemm(consts + tb, consts + ta, ip, ip + 4, ip + 8, consts + 8, pb, ip + 12, pa, ip + 16, consts + 12,
                   pc, ip + 20)
        else:
            _dgemm(consts + tb, consts + ta, ip, ip + 4, ip + 8, consts + 16, pb, ip + 12, pa, ip + 16, consts + 24,
                   pc, ip + 20)

    @njit(parallel=True, nogil=True, cache=True)
    def _gemm(scratch, consts, threads, by_columns, itemsize, ta, tb, M, N, K, pa, lda, pb, ldb, pc,
              ldc):  # pragma: no cover - compiled
        """One GEMM, each thread on a block of columns (``by_columns``) or of rows of C."""
        for t in prange(threads):
            if by_columns:
                lo, hi = N * t // threads, N * (t + 1) // threads
                if hi > lo:  # column lo of op(B): an element step if stored as is, a row step if transposed
                    ob = lo if tb == 0 else lo * ldb
                    _call(scratch[t], consts, itemsize, ta, tb, M, hi - lo, K, pa, lda, pb + ob * itemsize,
                          ldb, pc + lo * itemsize, ldc)
            else:
                lo, hi = M * t // threads, M * (t + 1) // threads
                if hi > lo:
                    oa = lo * lda if ta == 0 else lo
                    _call(scratch[t], consts, itemsize, ta, tb, hi - lo, N, K, pa + oa * itemsize, lda, pb,
                          ldb, pc + lo * ldc * itemsize, ldc)

    @njit(parallel=True, nogil=True, cache=True)
    def _gemm_batched(scratch, consts, threads, S, sa, sb, sc, itemsize, ta, tb, M, N, K, pa, lda, pb, ldb, pc,
                      ldc):  # pragma: no cover - compiled
        """``S`` GEMMs ``C[i] = op(A[i]) @ op(B[i])`` (batch strides ``sa, sb, sc`` in bytes), each
        thread on a block of them."""
        for t in prange(threads):
            for i in range(S * t // threads, S * (t + 1) // threads):
                _call(scratch[t], consts, itemsize, ta, tb, M, N, K, pa + i * sa, lda, pb + i * sb, ldb,
                      pc + i * sc, ldc)

    @njit(parallel=True, nogil=True, cache=True)
    def _probe(a):  # pragma: no cover - compiled; launches the threading layer
        for t in prange(a.shape[0]):
            a[t] = t


def available() -> bool:
    """Whether the team can run: numba with a thread-safe threading layer (OpenMP or TBB) and more
    than one thread."""
    if parallel.num_threads() < 2 or not _HAVE_NUMBA:
        return False
    if not _state["checked"]:
        import numba

        try:
            _probe(np.zeros(2))
            _state["ok"] = numba.threading_layer() in ("omp", "tbb")
        except Exception:  # no layer could be loaded
            _state["ok"] = False
        _state["checked"] = True
    return _state["ok"]


def consts_address() -> int:
    """The address of the constant BLAS arguments, for kernels elsewhere that call :func:`_call`."""
    return _CONSTS_ADDRESS


def worth(macs: int) -> bool:
    """Whether a GEMM of ``macs`` multiply-adds should run on the team (:func:`available` and large
    enough, :data:`MIN_WORK`)."""
    return macs >= MIN_WORK and available()


def _operand(x):
    """``(trans, ld)`` of a matrix view (its last two axes) for BLAS, or None if neither axis is unit."""
    r, c = x.shape[-2:]
    s0, s1 = x.strides[-2:]
    it = x.itemsize
    if (s1 == it or c == 1) and s0 % it == 0 and s0 // it >= max(c, 1):
        return 0, s0 // it  # stored as it is
    if (s0 == it or r == 1) and s1 % it == 0 and s1 // it >= max(r, 1):
        return 1, s1 // it  # a transposed view
    return None


def _operands(a, b, out):
    """BLAS layouts of ``a``, ``b`` (copied if neither axis is unit) and ``out`` (must be row-major)."""
    la, lb, lc = _operand(a), _operand(b), _operand(out)
    if la is None:
        a = np.ascontiguousarray(a)
        la = _operand(a)
    if lb is None:
        b = np.ascontiguousarray(b)
        lb = _operand(b)
    if lc is None or lc[0] != 0:
        raise ValueError("team.gemm: out must have a unit stride on its last axis")
    return a, b, la, lb, lc


def _check(a, b, out):
    if not (a.dtype == b.dtype == out.dtype and a.dtype in (np.float32, np.float64)):
        raise TypeError(f"team.gemm: float32 or float64 operands of one dtype, got {a.dtype}, {b.dtype}, {out.dtype}")
    if a.shape[-1] != b.shape[-2] or out.shape[-2:] != (a.shape[-2], b.shape[-1]):
        raise ValueError(f"team.gemm: shapes {a.shape} @ {b.shape} -> {out.shape} do not match")


def _no_gemm(out, K) -> bool:
    """Whether there is nothing for BLAS to do: an empty ``out``, or an empty sum (``K == 0``, then
    ``out`` is zeroed)."""
    if out.size and K == 0:
        out.fill(0)
    return out.size == 0 or K == 0


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = a @ b`` for 2-D float32/float64 views, split over the team's threads: by columns of
    ``out`` when each thread gets at least :data:`MIN_SPLIT_COLUMNS`, else by rows. ``out`` needs a
    unit stride on its last axis; ``a`` and ``b`` may be transposed views. Call :func:`available` first.

    >>> a, b = np.ones((3, 4), np.float32), np.ones((4, 200), np.float32)
    >>> out = np.empty((3, 200), np.float32)
    >>> if available(): _ = gemm(a, b, out)
    ... else: _ = np.matmul(a, b, out=out)
    >>> float(out.sum())
    2400.0
    """
    _check(a, b, out)
    M, K = a.shape
    if _no_gemm(out, K):
        return out
    N = b.shape[1]
    a, b, (ta, lda), (tb, ldb), (_, ldc) = _operands(a, b, out)
    threads = parallel.num_threads()
    with parallel.single_threaded_blas():  # BLAS runs inside the team's threads: one thread each
        _gemm(np.empty((threads, 6), np.int32), _CONSTS_ADDRESS, threads, N // threads >= MIN_SPLIT_COLUMNS,
              a.itemsize, ta, tb, M, N, K, a.ctypes.data, lda, b.ctypes.data, ldb, out.ctypes.data, ldc)
    parallel.note_team_region()
    return out


def gemm_batched(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[i] = a[i] @ b[i]`` for 3-D float32/float64 stacks of views (as :func:`gemm`), each thread
    on a block of the stack (Winograd's alpha^2 channel GEMMs of one image).

    >>> a, b = np.ones((4, 2, 3)), np.ones((4, 3, 5))
    >>> out = np.empty((4, 2, 5))
    >>> if available(): _ = gemm_batched(a, b, out)
    ... else: _ = np.matmul(a, b, out=out)
    >>> out[3].tolist()[0]
    [3.0, 3.0, 3.0, 3.0, 3.0]
    """
    _check(a, b, out)
    if not (a.ndim == b.ndim == out.ndim == 3 and a.shape[0] == b.shape[0] == out.shape[0]):
        raise ValueError(f"team.gemm_batched: stacks of equal length, got {a.shape}, {b.shape}, {out.shape}")
    S, M, K = a.shape
    if _no_gemm(out, K):
        return out
    N = b.shape[2]
    a, b, (ta, lda), (tb, ldb), (_, ldc) = _operands(a, b, out)
    threads = parallel.num_threads()
    with parallel.single_threaded_blas():
        _gemm_batched(np.empty((threads, 6), np.int32), _CONSTS_ADDRESS, threads, S, a.strides[0], b.strides[0],
                      out.strides[0], a.itemsize, ta, tb, M, N, K, a.ctypes.data, lda, b.ctypes.data, ldb,
                      out.ctypes.data, ldc)
    parallel.note_team_region()
    return out
