"""Pooling, normalization, ReLU and cross-entropy on network-sized tensors: shendu vs PyTorch, same run.

Rows: max and average pool 3x3/2 pad 1 and ReLU on (16, 64, 112, 112) (the ResNet stem), max pool
2x2/2 on (64, 64, 56, 56) (VGG / the Fashion-MNIST CNN), batch norm 2d in training mode on
(16, 64, 112, 112) and (64, 64, 28, 28), layer norm over 768 features on (32, 128, 768), cross-entropy
with class-index targets on FCN logits (32, 11, 128, 128) and on ImageNet-sized logits (256, 1000).
Each row is timed forward only and forward + backward (backward with a fixed random cotangent), best
of ``--repeat`` interleaved rounds (shendu, torch, shendu, ...; a 0.3 s pause, then at least 3
back-to-back calls over 0.25 s, as in bench/conv.py); torch keeps its default thread count.
ratio = shendu / torch (goal <= 1.25).
Run: python bench/pool_norm.py [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import shendu  # noqa: E402
import shendu.functional as F  # noqa: E402
from bench._util import interleaved_best, print_table  # noqa: E402


def _rows(scale: int):
    """(name, input shape, op(lib, functional, x, params)) for each row."""
    def bn(lib, fn, x, p):
        return fn.batch_norm(x, p["rm"], p["rv"], p["w"], p["b"], training=True)

    def ln(lib, fn, x, p):
        return fn.layer_norm(x, (768,), p["w"], p["b"])

    def ce(lib, fn, x, p):
        return fn.cross_entropy(x, p["target"])

    return [
        ("max_pool2d 3x3/2 pad 1", (16 // scale, 64, 112, 112), lambda lib, fn, x, p: fn.max_pool2d(x, 3, 2, 1), None),
        ("max_pool2d 2x2/2", (64 // scale, 64, 56, 56), lambda lib, fn, x, p: fn.max_pool2d(x, 2), None),
        ("avg_pool2d 3x3/2 pad 1", (16 // scale, 64, 112, 112), lambda lib, fn, x, p: fn.avg_pool2d(x, 3, 2, 1), None),
        ("batch_norm2d train", (16 // scale, 64, 112, 112), bn, 64),
        ("batch_norm2d train", (64 // scale, 64, 28, 28), bn, 64),
        ("relu", (16 // scale, 64, 112, 112), lambda lib, fn, x, p: fn.relu(x), None),
        ("layer_norm 768", (32 // scale, 128, 768), ln, 768),
        ("cross_entropy", (32 // scale, 11, 128, 128), ce, "targets"),
        ("cross_entropy", (256 // scale, 1000), ce, "targets"),
    ]


def _params(lib, n, x_dtype, shape):
    if n is None:
        return {}
    rng = np.random.default_rng(1)
    if n == "targets":  # class indices for the logits of this shape (classes on dim 1)
        t = rng.integers(0, shape[1], (shape[0],) + tuple(shape[2:]))
        return {"target": torch.tensor(t) if lib is torch else shendu.tensor(t)}
    arr = {"w": rng.uniform(0.5, 2, n), "b": rng.standard_normal(n), "rm": np.zeros(n), "rv": np.ones(n)}
    out = {}
    for k, v in arr.items():
        v = v.astype(x_dtype)
        grad = k in ("w", "b")
        out[k] = torch.tensor(v, requires_grad=grad) if lib is torch else shendu.from_numpy(v).requires_grad_(grad)
    return out


def _callables(lib, shape, op, n_params):
    fn = torch.nn.functional if lib is torch else F
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape, dtype=np.float32)
    x = torch.tensor(x_np, requires_grad=True) if lib is torch else shendu.from_numpy(x_np).requires_grad_(True)
    params = _params(lib, n_params, np.float32, shape)

    def fwd():
        if lib is torch:
            with torch.no_grad():
                return op(lib, fn, x, params)
        with shendu.no_grad():
            return op(lib, fn, x, params)

    gy_cache = {}

    def fwd_bwd():
        x.grad = None
        y = op(lib, fn, x, params)
        if "gy" not in gy_cache:  # the cotangent has the output's shape (pooling shrinks it)
            g = np.random.default_rng(1).standard_normal(tuple(y.shape), dtype=np.float32)
            gy_cache["gy"] = torch.tensor(g) if lib is torch else shendu.from_numpy(g)
        y.backward(gy_cache["gy"])

    return fwd, fwd_bwd


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="batch sizes divided by 4 (smoke test)")
    args = ap.parse_args()
    from shendu.ops.kernels import norm_numba

    print(f"torch threads: {torch.get_num_threads()}; numba kernels: "
          f"{'on' if norm_numba.AVAILABLE else 'off (numba not installed)'}")
    rows = []
    for name, shape, op, n_params in _rows(4 if args.quick else 1):
        if name.startswith(("max_pool", "avg_pool")) and not hasattr(F, name.split()[0]):
            print(f"skipping {name}: shendu.functional.{name.split()[0]} is not available yet")
            continue
        fns = {lib: _callables(lib, shape, op, n_params) for lib in (shendu, torch)}
        best = interleaved_best({(lib, i): fn for lib, pair in fns.items() for i, fn in enumerate(pair)},
                                args.repeat)
        times = {lib: [best[lib, 0], best[lib, 1]] for lib in fns}
        (sf, sb), (tf, tb) = times[shendu], times[torch]
        rows.append([name, "x".join(map(str, shape)), sf * 1e3, tf * 1e3, sf / tf, sb * 1e3, tb * 1e3, sb / tb])
    print_table(rows, ["op", "shape", "fwd shendu ms", "fwd torch ms", "fwd ratio", "fwd+bwd shendu ms",
                       "fwd+bwd torch ms", "fwd+bwd ratio"])


if __name__ == "__main__":
    main()
