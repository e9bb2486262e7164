"""One training step of a 784-512-256-10 MLP (batch 128, Adam lr 1e-3, cross-entropy), shendu vs PyTorch.

The step is zero_grad, forward, loss, backward, Adam step; both libraries start from the same weights and
see the same batch. ``--profile`` also prints where the shendu step spends its time (cProfile).
Run: python bench/mlp_step.py [--repeat 7] [--number 10] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import shendu  # noqa: E402
from bench._util import best_time, print_table  # noqa: E402

SIZES = (784, 512, 256, 10)
BATCH = 128


def shendu_model():
    from shendu import nn
    shendu.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))


def torch_model_like(model):
    """The same MLP in torch with ``model``'s weights copied over."""
    net = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10))
    net.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in model.state_dict().items()})
    return net


def step_fn(lib, model, x, y):
    """A closure doing one training step of ``model`` on the batch ``(x, y)`` with the library ``lib``."""
    if lib is shendu:
        from shendu import functional as F
        from shendu import optim
        opt = optim.Adam(model.parameters(), lr=1e-3)
        x, y = shendu.tensor(x), shendu.tensor(y)
    else:
        F = torch.nn.functional
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=10, help="steps per timed run")
    parser.add_argument("--profile", action="store_true", help="cProfile 50 shendu steps and print the top entries")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 784), dtype=np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    model = shendu_model()
    s_step, t_step = step_fn(shendu, model, x, y), step_fn(torch, torch_model_like(model), x, y)
    first_s, first_t = float(s_step().item()), float(t_step().item())  # same weights, same batch: same loss
    t_s = best_time(s_step, repeat=args.repeat, number=args.number)
    t_t = best_time(t_step, repeat=args.repeat, number=args.number)
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, Adam 1e-3, cross-entropy; one step = zero_grad, "
          f"forward, loss, backward, step (best of {args.repeat} x {args.number} steps; "
          f"torch threads: {torch.get_num_threads()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')})")
    print(f"first-step loss: shendu {first_s:.6f}, torch {first_t:.6f}")
    print_table([["train step", t_s * 1e3, t_t * 1e3, t_s / t_t]],
                ["case", "shendu ms", "torch ms", "ratio (goal <= 1.2)"])

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(50):
            s_step()
        prof.disable()
        print("\nshendu step, cProfile of 50 steps (tottime = time in the function itself):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
