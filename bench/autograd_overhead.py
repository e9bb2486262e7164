"""Autograd overhead: forward + backward of a 1,000-op chain of 16-element tensors, shendu vs PyTorch.

The ops are tiny, so this measures the per-op cost of the graph machinery, not arithmetic.
Run: python bench/autograd_overhead.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import shendu  # noqa: E402
from bench._util import best_time, print_table  # noqa: E402

N_OPS = 1000


def chain(lib, x, w):
    # 4 ops per step: mul, add, tanh, sub -> 1000 ops in total
    y = x
    for _ in range(N_OPS // 4):
        y = (y * w + 0.1).tanh() - 0.05
    return y.sum()


def run(lib, make):
    x = make(np.linspace(-1, 1, 16).astype(np.float32), True)
    w = make(np.full(16, 0.9, np.float32), True)

    def step():
        x.grad = None
        w.grad = None
        chain(lib, x, w).backward()

    return best_time(step, repeat=7, number=3)


def main():
    t_s = run(shendu, lambda a, g: shendu.tensor(a, requires_grad=g))
    t_t = run(torch, lambda a, g: torch.tensor(a, requires_grad=g))
    print(f"forward+backward of a {N_OPS}-op chain on 16-element float32 tensors "
          f"(torch threads: {torch.get_num_threads()})")
    print_table([["chain", t_s * 1e3, t_t * 1e3, t_s / t_t, t_s / N_OPS * 1e6, t_t / N_OPS * 1e6]],
                ["case", "shendu ms", "torch ms", "ratio", "shendu us/op", "torch us/op"])


if __name__ == "__main__":
    main()
