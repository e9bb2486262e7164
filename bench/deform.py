"""Deformable convolution: shendu's deform_conv2d vs a plain convolution of the same size, in shendu and
PyTorch, forward and forward+backward.

PyTorch has no deformable convolution without torchvision, so the PyTorch columns are (a) its
``conv2d`` of the same shape (the floor any deformable convolution pays: the same GEMM) and (b) the
deformable convolution composed from torch ops: ``grid_sample`` per kernel tap + ``einsum`` (the
test oracle of feature spec §9.8), a fair "what you would write in torch" reference. shendu also
runs its NumPy reference path (``USE_NUMBA = False``) on the smaller layers to show why the numba
kernels exist.

Every row uses the same float32 data (random fractional offsets of a few pixels; v2 adds a mask),
measured in this run: the candidates run in interleaved rounds and each keeps its best wall time
(a 0.3 s pause, then 3 back-to-back calls per round: ``bench._util.interleaved_best``). Forward
runs without graph; forward+backward computes the gradients of input, offset, (mask,) weight and
bias for a random cotangent. The machine may be shared: repeat and compare ratios, not seconds.

``--threads N`` sets every thread pool (torch, BLAS, numba, shendu's chunk threads) to N; on a busy
shared machine ``--threads 1`` gives the steadier comparison (threads that wait at barriers behind
other processes' work distort the multi-threaded numbers far more than the single-threaded ones).

Run: python bench/deform.py [--rounds 3] [--layers fmnist,stage3,stage4] [--numpy] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import shendu  # noqa: E402
from bench._util import interleaved_best, print_table  # noqa: E402
from shendu.ops.kernels import deform as kernel  # noqa: E402
from shendu.vision.ops.deform_conv import deform_conv2d  # noqa: E402

# name: (label, (N, C, K, H=W, kernel, stride, padding))
LAYERS = {
    "fmnist": ("Fashion-MNIST 3x3 14x14", (64, 32, 64, 14, 3, 1, 1)),
    "stage3": ("ResNet stage3 3x3 28x28", (8, 128, 128, 28, 3, 1, 1)),
    "stage4": ("ResNet stage4 3x3 14x14", (16, 256, 256, 14, 3, 1, 1)),
}


def make_inputs(spec, modulated, seed=0):
    N, C, K, H, k, s, p = spec
    rng = np.random.default_rng(seed)
    P = (H + 2 * p - k) // s + 1
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = (rng.standard_normal((K, C, k, k), dtype=np.float32) / np.sqrt(C * k * k)).astype(np.float32)
    b = rng.standard_normal(K, dtype=np.float32)
    off = rng.uniform(-3, 3, (N, 2 * k * k, P, P)).astype(np.float32)
    mask = rng.uniform(0, 1, (N, k * k, P, P)).astype(np.float32) if modulated else None
    gy = rng.standard_normal((N, K, P, P), dtype=np.float32)
    return x, off, mask, w, b, gy


def torch_deform(x, off, w, b, s, p, mask):
    """The grid_sample + einsum composition (feature spec §9.8)."""
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    P, Q = off.shape[2:]
    o = off.reshape(N, kh * kw, 2, P, Q)
    taps = []
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        py = (torch.arange(P, dtype=x.dtype) * s - p + i)[:, None] + o[:, k, 0]
        px = (torch.arange(Q, dtype=x.dtype) * s - p + j)[None, :] + o[:, k, 1]
        grid = torch.stack([2 * px / (W - 1) - 1, 2 * py / (H - 1) - 1], -1)
        t = TF.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        taps.append(t if mask is None else t * mask[:, k:k + 1])
    cols = torch.stack(taps, 2)  # (N, C, kk, P, Q)
    return torch.einsum("ock,nckpq->nopq", w.reshape(K, C, kh * kw), cols) + b[None, :, None, None]


def candidates(spec, modulated, with_numpy):
    N, C, K, H, k, s, p = spec
    x, off, mask, w, b, gy = make_inputs(spec, modulated)
    out = {}

    def shendu_deform(backward, numba=True):
        def run():
            kernel.USE_NUMBA = numba
            try:
                ts = [shendu.tensor(a, requires_grad=backward) if a is not None else None for a in (x, off, mask, w, b)]
                if backward:
                    y = deform_conv2d(ts[0], ts[1], ts[3], ts[4], s, p, mask=ts[2])
                    y.backward(shendu.tensor(gy))
                else:
                    with shendu.no_grad():
                        deform_conv2d(ts[0], ts[1], ts[3], ts[4], s, p, mask=ts[2])
            finally:
                kernel.USE_NUMBA = True
        return run

    def shendu_conv(backward):
        def run():
            ts = [shendu.tensor(a, requires_grad=backward) for a in (x, w, b)]
            if backward:
                shendu.conv2d(ts[0], ts[1], ts[2], s, p).backward(shendu.tensor(gy))
            else:
                with shendu.no_grad():
                    shendu.conv2d(ts[0], ts[1], ts[2], s, p)
        return run

    def torch_run(backward, deform):
        def run():
            ts = [torch.tensor(a, requires_grad=backward) if a is not None else None for a in (x, off, mask, w, b)]
            with torch.set_grad_enabled(backward):
                y = torch_deform(ts[0], ts[1], ts[3], ts[4], s, p, ts[2]) if deform else \
                    TF.conv2d(ts[0], ts[3], ts[4], s, p)
                if backward:
                    y.backward(torch.tensor(gy))
        return run

    for mode, bw in (("fwd", False), ("fwd+bwd", True)):
        out[mode] = {"shendu deform": shendu_deform(bw), "shendu conv2d": shendu_conv(bw),
                     "torch conv2d": torch_run(bw, False), "torch grid_sample deform": torch_run(bw, True)}
        if with_numpy:
            out[mode]["shendu deform (NumPy ref)"] = shendu_deform(bw, numba=False)
    return out


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    shendu.set_num_threads(n)  # shendu's kernels, numba and BLAS (process-wide until exit)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--numpy", action="store_true", help="also time the NumPy reference path (slow)")
    ap.add_argument("--threads", type=int, default=0, help="threads for every pool (0: each library's default)")
    args = ap.parse_args(argv)
    if args.threads:
        set_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numba kernels: {kernel.USE_NUMBA}; "
          f"best of {args.rounds} interleaved rounds, float32, seconds")
    rows = []
    for name in args.layers.split(","):
        label, spec = LAYERS[name]
        for modulated in (False, True):
            table = candidates(spec, modulated, args.numpy and name == "fmnist")
            for mode, fns in table.items():
                t = interleaved_best(fns, args.rounds)
                d = t["shendu deform"]
                row = [f"{label} {'v2' if modulated else 'v1'}", mode, d, t["shendu conv2d"], t["torch conv2d"],
                       t["torch grid_sample deform"], d / t["shendu conv2d"], d / t["torch conv2d"],
                       d / t["torch grid_sample deform"]]
                if "shendu deform (NumPy ref)" in t:
                    row[0] += f" [NumPy ref {t['shendu deform (NumPy ref)']:.3f}s]"
                rows.append(row)
                print(".", end="", flush=True)
    print()
    print_table(rows, ["layer (N, C->K as in LAYERS)", "pass", "shendu deform", "shendu conv2d", "torch conv2d",
                       "torch gs-deform", "deform/shendu conv", "deform/torch conv", "deform/torch gs-deform"])


if __name__ == "__main__":
    main()
