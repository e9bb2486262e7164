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
