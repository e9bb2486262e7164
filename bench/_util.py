"""Timing helpers shared by the benchmarks: best-of-N wall time and a ratio table."""

from __future__ import annotations

import time


def best_time(fn, repeat: int = 5, number: int = 1, warmup: int = 1) -> float:
    """Best wall time of ``number`` calls of ``fn`` over ``repeat`` runs, in seconds per call."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


SETTLE = 0.3       # seconds of pause before each candidate's burst (see interleaved_best)
BURST = 3          # at least this many consecutive timed calls per candidate and round ...
BURST_SECONDS = 0.25  # ... and at least this long (measured: after the pause the first ~60 ms of calls
                      # run slower, both libraries, by up to 1.7x: 3 calls of a 10 ms kernel are all slow)


def interleaved_best(fns: dict, rounds: int, settle: float = SETTLE, burst: int = BURST,
                     warmup: bool = True, burst_seconds: float = BURST_SECONDS, min_seconds: float = 0.0) -> dict:
    """Best wall time (seconds) of each callable in ``fns`` ({label: fn}), measured in interleaved rounds.

    In every round each candidate gets a pause of ``settle`` seconds, then back-to-back timed calls, at
    least ``burst`` of them and for at least ``burst_seconds``. The pause is for torch's OpenMP threads,
    which spin-wait after a parallel region and would otherwise take the cores from whatever runs next;
    the burst measures each library in its steady state, as in a training loop (the calls of the first
    ~60 ms after a pause are slower for both: idle cores, caches and freed pages have to come back).
    Interleaving the rounds makes a busy machine penalise every candidate alike. More rounds follow, each
    still giving every candidate its turn, until ``min_seconds`` have passed since the first: a VM's slow
    stretches last seconds, and a case whose few rounds all fall in one measures the stretch, not the code.
    """
    if warmup:
        for fn in fns.values():  # numba compilation, allocator, thread start-up
            fn()
    best = {k: float("inf") for k in fns}
    start_rounds = time.perf_counter()
    done = 0
    while done < rounds or time.perf_counter() - start_rounds < min_seconds:
        done += 1
        for k, fn in fns.items():
            time.sleep(settle)
            start = time.perf_counter()
            calls = 0
            while calls < burst or time.perf_counter() - start < burst_seconds:
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
                calls += 1
    return best


def print_table(rows, headers) -> None:
    """Print rows (lists of str/float) as a Markdown table."""
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |")
