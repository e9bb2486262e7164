"""Why weight initialization matters: the notes' 7-layer, 4096-wide experiment.

A batch of 16 standard-normal inputs goes through 6 fully connected layers of 4096 units
(``dims = [4096] * 7``, no bias), each followed by tanh or ReLU, with the weights drawn as

- ``std = 0.01``            -> tanh activations collapse to zero (and so do the gradients),
- ``std = 0.05``            -> tanh saturates at +-1 (local gradients 1 - tanh^2 ~ 0),
- Xavier ``1/sqrt(Din)``    -> "just right" for tanh (keeps Var(y) = Var(x)),
- Xavier with ReLU          -> shrinks layer by layer (ReLU zeroes half its inputs),
- Kaiming ``sqrt(2/Din)``   -> "just right" for ReLU.

Prints per-layer mean/std tables and writes ``init_statistics.png`` (per-layer histograms and the std
per layer) to ``--out``. Run: ``python examples/init_statistics.py --out out/``.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

import shendu
import shendu.nn.functional as F
from shendu.nn import init

DIMS = [4096] * 7
BATCH = 16

# (activation, init name, weight std as a function of Din). Xavier here is the notes' 1/sqrt(Din), which
# for a square layer equals Glorot's sqrt(2/(Din+Dout)); Kaiming is calculate_gain("relu")/sqrt(Din).
CONFIGS = [
    ("tanh", "std 0.01", lambda din: 0.01),
    ("tanh", "std 0.05", lambda din: 0.05),
    ("tanh", "Xavier 1/sqrt(Din)", lambda din: 1 / math.sqrt(din)),
    ("relu", "Xavier 1/sqrt(Din)", lambda din: 1 / math.sqrt(din)),
    ("relu", "Kaiming sqrt(2/Din)", lambda din: init.calculate_gain("relu") / math.sqrt(din)),
]


def run(seed: int = 0) -> list[list[np.ndarray]]:
    """Forward the notes' network under every config; return each config's per-layer activations.

    Every config is a zero-mean Gaussian, so one standard-normal matrix ``Z`` per layer serves all of
    them (``W = std * Z``): the configs differ only in the scale, and the 4096 x 4096 draws - the slow
    part - happen 6 times instead of 30."""
    shendu.manual_seed(seed)
    x0 = shendu.randn(BATCH, DIMS[0])
    xs = [x0] * len(CONFIGS)
    hs = [[] for _ in CONFIGS]
    z = shendu.empty(DIMS[1], DIMS[0])  # (Dout, Din) as in nn.Linear, refilled per layer
    with shendu.no_grad():
        for din, dout in zip(DIMS[:-1], DIMS[1:]):
            init.normal_(z)
            for i, (activation, _, std) in enumerate(CONFIGS):
                act = shendu.tanh if activation == "tanh" else shendu.relu
                xs[i] = act(F.linear(xs[i], z) * std(din))
                hs[i].append(xs[i].data.copy())
    return hs


def verdict(activation: str, hs: list[np.ndarray]) -> str:
    if activation == "tanh" and np.mean(np.abs(hs[-1]) > 0.95) > 0.3:
        return "saturated"
    if hs[-1].std() < 0.25 * hs[0].std():
        return "collapsing to zero"
    return "just right"


def table(activation: str, name: str, hs: list[np.ndarray]) -> str:
    extra = "|x|>0.95" if activation == "tanh" else "zero"
    lines = [f"{activation} + {name}: {verdict(activation, hs)}",
             f"  {'layer':>5} {'mean':>10} {'std':>10} {extra:>9}"]
    for i, h in enumerate(hs, 1):
        frac = np.mean(np.abs(h) > 0.95) if activation == "tanh" else np.mean(h == 0)
        lines.append(f"  {i:>5} {h.mean():>10.5f} {h.std():>10.5f} {frac:>9.1%}")
    return "\n".join(lines)


def plot(results, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers = len(DIMS) - 1
    fig, axes = plt.subplots(len(results), n_layers + 1, figsize=(2.2 * (n_layers + 1), 2.0 * len(results)))
    for row, (activation, name, hs) in enumerate(results):
        lo, hi = (-1, 1) if activation == "tanh" else (0, max(float(np.percentile(hs[0], 99.5)), 1e-6))
        for col, h in enumerate(hs):
            ax = axes[row, col]
            values = h if activation == "tanh" else h[h > 0]  # ReLU: leave out the half that is exactly 0
            counts, edges = np.histogram(values, bins=50, range=(lo, hi))
            ax.stairs(counts, edges, fill=True, color="C0" if activation == "tanh" else "C1")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if row == 0:
                ax.set_title(f"layer {col + 1}", fontsize=8)
        ax = axes[row, -1]
        ax.plot(range(1, n_layers + 1), [h.std() for h in hs], "o-")
        ax.set_yscale("log")
        ax.set_ylim(0.01, 2)  # the same scale in every row, so collapse shows as a falling line
        ax.minorticks_off()
        ax.tick_params(labelsize=6)
        ax.set_title("std per layer", fontsize=8)
        axes[row, 0].set_ylabel(f"{activation}\n{name}\n{verdict(activation, hs)}", fontsize=7)
    fig.suptitle(f"Activations of a {len(DIMS)}-layer {DIMS[0]}-wide net (batch {BATCH}) under each init "
                 "(ReLU histograms show the non-zero units)",
                 fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.04, top=0.92, wspace=0.25, hspace=0.45)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out", help="folder for init_statistics.png (created if missing)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    results = [(activation, name, hs) for (activation, name, _), hs in zip(CONFIGS, run())]
    for activation, name, hs in results:
        print(table(activation, name, hs), end="\n\n")
    path = os.path.join(args.out, "init_statistics.png")
    plot(results, path)
    print(f"wrote {path} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
