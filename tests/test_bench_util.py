"""The benchmarks' interleaved timing: every candidate gets a turn in every round, and rounds go on until
the minimum span has passed."""

import time

from bench._util import interleaved_best


def test_rounds_alternate_and_last_the_minimum_span():
    order = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    start = time.perf_counter()
    best = interleaved_best(fns, rounds=1, settle=0.0, burst=1, warmup=False, burst_seconds=0.0, min_seconds=0.05)
    assert time.perf_counter() - start >= 0.05
    assert set(best) == {"a", "b"} and all(v >= 0 for v in best.values())
    rounds = [order[i:i + 2] for i in range(0, len(order), 2)]
    assert len(rounds) > 1 and all(r == ["a", "b"] for r in rounds)  # whole rounds, a then b


def test_without_a_span_the_rounds_asked_for_run():
    calls = []
    interleaved_best({"a": lambda: calls.append(1)}, rounds=3, settle=0.0, burst=2, warmup=True, burst_seconds=0.0)
    assert len(calls) == 1 + 3 * 2  # the warm-up, then 3 rounds of 2 calls
