"""Large elementwise and reduction ops: shendu vs PyTorch on 10^7-element float32 arrays.

Each row is the best of several runs of the same op on the same data in both libraries, measured in
this run; torch keeps its default thread count. The chain row times forward + backward of
``(tanh(x * w + 0.1) * sigmoid(x)).sum()`` with gradients for x and w.
Run: python bench/elementwise.py [--n 10000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import shendu  # noqa: E402
from bench._util import best_time, print_table  # noqa: E402


def cases(lib, x, y):
    """Name -> zero-argument callable, written once for both libraries (shendu keeps torch's API)."""
    return {
        "add": lambda: lib.add(x, y),
        "mul": lambda: lib.mul(x, y),
        "exp": lambda: lib.exp(x),
        "tanh": lambda: lib.tanh(x),
        "sigmoid": lambda: lib.sigmoid(x),
        "sum (all)": lambda: lib.sum(x),
        "sum (dim=0)": lambda: lib.sum(x, 0),
        "sum (dim=1)": lambda: lib.sum(x, 1),
        "mean (all)": lambda: lib.mean(x),
        "mean (dim=1)": lambda: lib.mean(x, 1),
        "amax (all)": lambda: lib.amax(x),
        "amax (dim=1)": lambda: lib.amax(x, 1),
        "max (dim=1) values+indices": lambda: lib.max(x, 1),
        "var (all)": lambda: lib.var(x),
        "var (dim=1)": lambda: lib.var(x, 1),
        "logsumexp (dim=1)": lambda: lib.logsumexp(x, 1),
    }


def chain_step(lib, x, w):
    def step():
        x.grad = None
        w.grad = None
        (lib.tanh(x * w + 0.1) * lib.sigmoid(x)).sum().backward()

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10**7, help="elements per array (a rows x 1000 matrix)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cols = 1000
    rows_ = args.n // cols
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows_, cols), dtype=np.float32)
    b = rng.standard_normal((rows_, cols), dtype=np.float32)

    sx, sy = shendu.from_numpy(a), shendu.from_numpy(b)
    tx, ty = torch.from_numpy(a), torch.from_numpy(b)
    s_cases, t_cases = cases(shendu, sx, sy), cases(torch, tx, ty)
    table = []
    for name in s_cases:
        ts = best_time(s_cases[name], repeat=args.repeat)
        tt = best_time(t_cases[name], repeat=args.repeat)
        table.append([name, ts * 1e3, tt * 1e3, ts / tt])

    sw = shendu.from_numpy(b.copy()).requires_grad_(True)
    sxg = shendu.from_numpy(a.copy()).requires_grad_(True)
    tw = torch.from_numpy(b.copy()).requires_grad_(True)
    txg = torch.from_numpy(a.copy()).requires_grad_(True)
    ts = best_time(chain_step(shendu, sxg, sw), repeat=args.repeat)
    tt = best_time(chain_step(torch, txg, tw), repeat=args.repeat)
    table.append(["chain fwd+bwd (6 ops)", ts * 1e3, tt * 1e3, ts / tt])

    print(f"float32 ({rows_}, {cols}) = {rows_ * cols:.0e} elements; best of {args.repeat}; "
          f"numpy {np.__version__}, torch {torch.__version__} with {torch.get_num_threads()} threads")
    print_table(table, ["op", "shendu ms", "torch ms", "ratio"])


if __name__ == "__main__":
    main()
