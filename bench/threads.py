"""Batch-1 GEMMs on two threads: the chunk pool's sleeping threads against the OpenMP team's spinning ones.

A batch of one image gives ``parallel_chunks`` nothing to share out, so shendu splits a batch-1
convolution's GEMM over two threads: numba's OpenMP team (:mod:`shendu.ops.kernels.team`) when it is
available, else the chunk pool (:func:`shendu.ops.kernels.parallel.split_rows`). This script measures
what each costs and gains:

- the round trip of handing a no-op to a pool thread and waiting for it (best and median): the thread
  sleeps between calls, and on a VM waking it takes tens of microseconds; and the round trip of an empty
  region of the team, whose threads spin-wait for a few milliseconds after each region;
- GEMMs shaped like batch-1 im2col convolutions (``M`` output channels, ``K = C * 9``, ``N`` output
  pixels), timed on one thread (NumPy, BLAS pinned to one thread as the kernels run it), split by
  columns over the two pool threads, split over the team (``team.gemm``, as the kernels call it), and as
  ``torch.mm`` on one and on two threads (OpenMP, like the team).

Timing as bench/conv.py (``bench._util.interleaved_best``). ratios = shendu split (pool, team) / torch
on two threads.

Run: python bench/threads.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench._util import interleaved_best, print_table  # noqa: E402
from shendu.ops.kernels import parallel, team  # noqa: E402

# (M, K, N): ResNet-style batch-1 3x3 convolutions of the 28x28 models and ResNet-18 at 224x224
SHAPES = [(32, 288, 784, "32->32 ch at 28x28"), (64, 576, 196, "64->64 ch at 14x14"),
          (128, 1152, 49, "128->128 ch at 7x7"), (64, 576, 3136, "64->64 ch at 56x56"),
          (256, 2304, 196, "256->256 ch at 14x14")]


def round_trips(calls: int = 3000) -> tuple:
    """Best and median seconds of ``split_rows`` handing half of a no-op to a pool thread."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        parallel.split_rows(lambda lo, hi: None, 2)  # no ``elements``: always split
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def team_round_trips(calls: int = 3000) -> tuple:
    """Best and median seconds of an empty region of the team (one tiny GEMM per thread)."""
    a, out = np.ones((2, 1)), np.empty((2, 2))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        team.gemm(a, a.T, out)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if parallel.num_threads() < 2:
        raise SystemExit("bench/threads.py: needs at least 2 CPUs (shendu's kernel threads: "
                         f"{parallel.num_threads()})")
    torch.set_num_threads(2)
    parallel.split_rows(lambda lo, hi: None, 2)  # start the pool
    best, median = round_trips()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print(f"pool round trip (split_rows of a no-op over 2 threads): best {best * 1e6:.0f} us, "
          f"median {median * 1e6:.0f} us", flush=True)
    has_team = team.available()
    if has_team:
        best, median = team_round_trips()
        print(f"team round trip (a 2x1x2 GEMM on each of 2 OpenMP threads, Python included): best "
              f"{best * 1e6:.0f} us, median {median * 1e6:.0f} us\n", flush=True)
    else:
        print("team: not available (numba's threading layer is not OpenMP or TBB); its column is empty\n")
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n, label in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((m, n), np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def one_thread():
            with parallel.single_threaded_blas():
                np.matmul(a, b, out=out)

        def split():
            with parallel.single_threaded_blas():
                parallel.split_rows(lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]), n)

        fns = {"one": one_thread, "split": split, "torch2": lambda: torch.mm(ta, tb)}
        if has_team:
            fns["team"] = lambda: team.gemm(a, b, out)
        torch.set_num_threads(2)
        t = interleaved_best(fns, args.rounds)
        torch.set_num_threads(1)
        t.update(interleaved_best({"torch1": lambda: torch.mm(ta, tb)}, args.rounds))
        np.testing.assert_allclose(out, torch.mm(ta, tb).numpy(), rtol=1e-3, atol=1e-3)
        team_ms = f"{t['team'] * 1e3:.3f}" if has_team else ""
        team_ratio = f"{t['team'] / t['torch2']:.2f}" if has_team else ""
        rows.append([f"{m}x{k}x{n}", label, t["one"] * 1e3, t["split"] * 1e3, team_ms, t["torch1"] * 1e3,
                     t["torch2"] * 1e3, t["torch1"] / t["torch2"], t["split"] / t["torch2"], team_ratio])
        print(f"{label}: done", flush=True)
    print()
    print_table(rows, ["GEMM MxKxN", "conv", "1 thread ms", "pool ms", "team ms", "torch 1 ms", "torch 2 ms",
                       "torch speed-up", "pool ratio", "team ratio"])
    print("\nratios = shendu on two threads (pool, team) / torch on two threads (lower is better)")


if __name__ == "__main__":
    main()
