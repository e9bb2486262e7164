"""Convolution layers: shendu (auto and each algorithm that applies) vs PyTorch, forward and forward+backward.

Every row uses the same float32 data in both libraries, measured in this run. Timing: the
candidates of a row run in interleaved rounds (torch, auto, im2col, ...; then again) and each keeps
its best wall time, so a busy machine penalises all of them alike; in each round a candidate gets a
0.3 s pause (torch's OpenMP threads spin-wait after a parallel region) and then back-to-back timed
calls (at least 3 and 0.25 s), its steady state (``bench._util.interleaved_best``). Forward runs without graph
(``no_grad``); forward+backward computes the gradients of input, weight and bias for a random
cotangent. torch keeps its default thread count; shendu uses its chunk threads (one per CPU).

Peak memory of one forward+backward (auto): for both libraries the growth of the resident set size
(RSS, sampled every 0.2 ms from /proc/self/statm by a helper thread) during the first full-size step,
in a fresh subprocess after a warm-up on a smaller layer (so libraries and kernels are loaded), minus
the RSS just before the step (inputs included there). For shendu also the ``tracemalloc`` peak of the
next step (NumPy reports its allocations to tracemalloc; the allocator's reuse does not hide it).

Run: python bench/conv.py [--rounds 5] [--layers fmnist,stage2,...] [--no-memory] [--algorithms auto,im2col]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import shendu  # noqa: E402
from bench._util import interleaved_best, print_table  # noqa: E402
from shendu.ops import conv as conv_ops  # noqa: E402

# name: (N, C, K, H=W, kernel, stride, padding)
LAYERS = {
    "fmnist": ("Fashion-MNIST 3x3", (64, 32, 64, 28, 3, 1, 1)),
    "stage2": ("ResNet stage2 3x3", (16, 64, 64, 56, 3, 1, 1)),
    "1x1": ("ResNet 1x1", (16, 256, 64, 56, 1, 1, 0)),
    "lenet": ("LeNet 5x5", (64, 1, 32, 28, 5, 1, 2)),
    "stem": ("ResNet stem 7x7/2", (8, 3, 64, 224, 7, 2, 3)),
    "stage4": ("ResNet stage4 3x3", (16, 256, 256, 14, 3, 1, 1)),
}


def make_inputs(spec, seed=0):
    N, C, K, H, k, s, p = spec
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = (rng.standard_normal((K, C, k, k), dtype=np.float32) / np.sqrt(C * k * k)).astype(np.float32)
    b = rng.standard_normal(K, dtype=np.float32)
    P = (H + 2 * p - k) // s + 1
    gy = rng.standard_normal((N, K, P, P), dtype=np.float32)
    return x, w, b, gy


def shendu_steps(spec, x, w, b, gy, algorithm):
    s, p = spec[5], spec[6]
    xs, ws, bs = (shendu.from_numpy(a).requires_grad_() for a in (x, w, b))

    def fwd():
        with shendu.no_grad():
            shendu.conv2d(xs, ws, bs, s, p, algorithm=algorithm)

    def fwd_bwd():
        y = shendu.conv2d(xs, ws, bs, s, p, algorithm=algorithm)
        shendu.autograd.grad([y], [xs, ws, bs], [gy])

    return fwd, fwd_bwd


def torch_steps(spec, x, w, b, gy):
    s, p = spec[5], spec[6]
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    gt = torch.from_numpy(gy)

    def fwd():
        with torch.no_grad():
            TF.conv2d(xt, wt, bt, s, p)

    def fwd_bwd():
        y = TF.conv2d(xt, wt, bt, s, p)
        torch.autograd.grad(y, (xt, wt, bt), gt)

    return fwd, fwd_bwd


def applicable(spec, wanted):
    k, s = spec[4], spec[5]
    algs = ["auto", "im2col", "direct", "fft"]
    if k == 3 and s == 1:
        algs += ["winograd", "winograd2x2"]
    return [a for a in algs if a in wanted]


def time_row(spec, algorithms, rounds):
    x, w, b, gy = make_inputs(spec)
    cands = {"torch": torch_steps(spec, x, w, b, gy)}
    for a in algorithms:
        cands[a] = shendu_steps(spec, x, w, b, gy, a)
    fns = {(c, i): fn for c, pair in cands.items() for i, fn in enumerate(pair)}
    times = interleaved_best(fns, rounds)
    best = {c: [times[c, 0], times[c, 1]] for c in cands}
    shendu.conv2d(x, w, b, spec[5], spec[6])
    return best, conv_ops.last_algorithm()


# ------------------------------------------------------------------------------------------ memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_growth(step) -> int:
    """RSS growth above the level before ``step``, sampled while it runs."""
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0002)

    t = threading.Thread(target=sample)
    t.start()
    step()
    done.set()
    t.join()
    return max(peak[0], _rss_bytes()) - base


def _measure_child(lib, name):
    """Run in a subprocess: peak memory of one forward+backward of layer ``name`` with ``lib``."""
    spec = LAYERS[name][1]
    small = (2, spec[1], spec[2], 16, spec[4], spec[5], spec[6])
    xs, ws, bs, gys = make_inputs(small, 1)  # warm-up: load libraries and kernels
    (torch_steps(small, xs, ws, bs, gys) if lib == "torch" else shendu_steps(small, xs, ws, bs, gys, "auto"))[1]()
    x, w, b, gy = make_inputs(spec)
    step = torch_steps(spec, x, w, b, gy)[1] if lib == "torch" else shendu_steps(spec, x, w, b, gy, "auto")[1]
    out = {"rss": _peak_rss_growth(step)}
    if lib == "shendu":
        tracemalloc.start()
        step()
        out["tracemalloc"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(json.dumps(out))


def measure_memory(name):
    res = {}
    for lib in ("shendu", "torch"):
        cmd = [sys.executable, os.path.abspath(__file__), "--child-memory", lib, name]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        res[lib] = json.loads(out)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--algorithms", default="auto,im2col,direct,fft,winograd,winograd2x2")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--child-memory", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memory:
        return _measure_child(*args.child_memory)
    wanted = args.algorithms.split(",")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), shendu {shendu.__version__}, "
          f"{os.cpu_count()} CPUs, best of {args.rounds} interleaved rounds; times in ms\n")
    rows, summary = [], []
    for name in args.layers.split(","):
        title, spec = LAYERS[name]
        best, chosen = time_row(spec, applicable(spec, wanted), args.rounds)
        tf, tfb = best.pop("torch")
        rows.append([title, "torch", f"{tf * 1e3:.1f}", "", f"{tfb * 1e3:.1f}", ""])
        for alg, (f, fb) in best.items():
            label = f"auto ({chosen})" if alg == "auto" else alg
            rows.append([title, label, f"{f * 1e3:.1f}", f"{f / tf:.2f}", f"{fb * 1e3:.1f}", f"{fb / tfb:.2f}"])
        fastest_fb = min(best, key=lambda a: best[a][1])
        summary.append([title, chosen, f"{best['auto'][1] / tfb:.2f}" if "auto" in best else "",
                        f"{fastest_fb} {best[fastest_fb][1] / tfb:.2f}",
                        *(f"{best[a][0] / tf:.2f}" if a in best else "-" for a in ("winograd", "winograd2x2"))])
        sys.stdout.flush()
    print_table(rows, ["layer", "shendu algorithm", "fwd", "fwd ratio", "fwd+bwd", "fwd+bwd ratio"])
    print("\nratio = shendu / torch (lower is better; goal <= 1.25 for fwd+bwd)\n")
    print_table(summary, ["layer", "auto chose", "auto fwd+bwd ratio", "best fwd+bwd", "winograd fwd ratio",
                          "winograd2x2 fwd ratio"])
    if not args.no_memory:
        mem_rows = []
        for name in args.layers.split(","):
            m = measure_memory(name)
            mb = 1 / 2**20
            mem_rows.append([LAYERS[name][0], f"{m['shendu']['tracemalloc'] * mb:.1f}",
                             f"{m['shendu']['rss'] * mb:.1f}", f"{m['torch']['rss'] * mb:.1f}",
                             f"{m['shendu']['rss'] / max(m['torch']['rss'], 1):.2f}"])
        print("\npeak memory of one forward+backward (auto), MB above the inputs")
        print_table(mem_rows, ["layer", "shendu tracemalloc", "shendu RSS growth", "torch RSS growth",
                               "RSS ratio"])


if __name__ == "__main__":
    main()
