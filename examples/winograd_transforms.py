"""Winograd minimal filtering: derive the transforms exactly, print them, and measure float32 error growth.

The notes begin the construction (polynomial Euclidean division and GCD, then the Chinese remainder
theorem); ``shendu.ops.kernels.winograd.transforms`` carries it out with exact fractions. This script

1. replays the notes' examples: (x^3 - 2x^2 - 4) / (x - 3) and gcd(x^2 + 7x + 6, x^2 - 5x - 6);
2. prints A^T, G, B^T of F(2, 3) (points 0, 1, -1) next to Lavin & Gray's, and of F(4, 3);
3. measures the float32 error of F(m x m, 3 x 3) for m = 2..6 against float64 direct correlation,
   on random N(0, 1) tiles and on a whole layer (``conv2d(algorithm="winograd")``-style tiling).

Run: python examples/winograd_transforms.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from shendu.ops.kernels import winograd as wg  # noqa: E402


def poly_str(p) -> str:
    terms = []
    for i in reversed(range(len(p))):
        c = p[i]
        if c == 0:
            continue
        mono = "" if i == 0 else ("x" if i == 1 else f"x^{i}")
        coef = str(c) if (abs(c) != 1 or i == 0) else ("-" if c < 0 else "")
        terms.append(f"{coef}{mono}")
    return " + ".join(terms).replace("+ -", "- ") or "0"


def show(name, mat) -> None:
    cells = [[str(c) for c in row] for row in mat]
    width = max(len(c) for row in cells for c in row)
    print(f"{name} =")
    for row in cells:
        print("   [" + " ".join(c.rjust(width) for c in row) + "]")


def tile_errors(m, n_tiles=4000, seed=0) -> float:
    """Mean over random tiles of the max-abs float32 error of one 2-D F(m x m, 3 x 3) tile."""
    rng = np.random.default_rng(seed)
    AT, G, BT = wg.matrices(m, 3, np.float32)
    g = rng.standard_normal((n_tiles, 3, 3))
    d = rng.standard_normal((n_tiles, m + 2, m + 2))
    U = np.einsum("ai,tij,bj->tab", G, g.astype(np.float32), G)
    V = np.einsum("ai,tij,bj->tab", BT, d.astype(np.float32), BT)
    y32 = np.einsum("ia,tab,jb->tij", AT, U * V, AT)
    win = np.lib.stride_tricks.sliding_window_view(d, (3, 3), axis=(1, 2))
    y64 = np.einsum("tijuv,tuv->tij", win, g)
    return float(np.abs(y32 - y64).max(axis=(1, 2)).mean())


def layer_error(m, seed=0) -> float:
    """Relative max error of a whole 3x3 layer (64 -> 64 channels, 28x28) in float32 vs float64."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 64, 28, 28))
    w = rng.standard_normal((64, 64, 3, 3)) / 24
    y64 = wg.conv2d(x, w, (1, 1, 1, 1), 1, m)  # exact in float64 (checked against torch in the tests)
    y32 = wg.conv2d(x.astype(np.float32), w.astype(np.float32), (1, 1, 1, 1), 1, m)
    return float(np.abs(y32 - y64).max() / np.abs(y64).max())


def direct_errors(seed=0) -> tuple:
    """The same two measurements for float32 direct correlation (the floor Winograd adds to)."""
    from shendu.ops.kernels import im2col

    rng = np.random.default_rng(seed)
    g = rng.standard_normal((4000, 3, 3))
    d = rng.standard_normal((4000, 6, 6))
    win = lambda a: np.lib.stride_tricks.sliding_window_view(a, (3, 3), axis=(1, 2))  # noqa: E731
    y32 = np.einsum("tijuv,tuv->tij", win(d.astype(np.float32)), g.astype(np.float32))
    tile = float(np.abs(y32 - np.einsum("tijuv,tuv->tij", win(d), g)).max(axis=(1, 2)).mean())
    x = rng.standard_normal((2, 64, 28, 28))
    w = rng.standard_normal((64, 64, 3, 3)) / 24
    y64 = im2col.conv2d(x, w, pads=(1, 1, 1, 1))
    y32 = im2col.conv2d(x.astype(np.float32), w.astype(np.float32), pads=(1, 1, 1, 1))
    return tile, float(np.abs(y32 - y64).max() / np.abs(y64).max())


def main() -> None:
    print("Polynomial Euclidean division (the notes' long division):")
    q, r = wg.poly_divmod([-4, 0, -2, 1], [-3, 1])
    print(f"  (x^3 - 2x^2 - 4) = (x - 3)({poly_str(q)}) + {poly_str(r)}")
    print("GCD by Euclid:")
    print(f"  gcd(x^2 + 7x + 6, x^2 - 5x - 6) = {poly_str(wg.poly_gcd([6, 7, 1], [-6, -5, 1]))}\n")

    print("F(2, 3), points (0, 1, -1) and infinity, derived by CRT:")
    for name, mat in zip(("A^T", "G", "B^T"), wg.transforms(2, 3, (0, 1, -1))):
        show(name, mat)
    print("Lavin & Gray print B^T row 0 as [1, 0, -1, 0] with G row 0 = [1, 0, 0], and the infinity pair as\n"
          "B^T row 3 = [0, 1, 0, -1], A^T column 3 = [0, -1]: the same algorithm with two sign flips that\n"
          "cancel in the product (here N_0 = 1/M_0(0) = -1 sits in G, as the construction gives it).\n")
    print("F(4, 3), points (0, 1, -1, 2, -2) and infinity (equal to the paper's / wincnn's):")
    for name, mat in zip(("A^T", "G", "B^T"), wg.transforms(4, 3)):
        show(name, mat)

    print("\nfloat32 error of F(m x m, 3 x 3) vs float64 direct correlation")
    print("| m | points | multiplies per output (vs 9) | tile error (mean max-abs) | layer error (relative) |")
    print("|---|--------|------------------------------|---------------------------|------------------------|")
    for m in range(2, 7):
        pts = ", ".join(str(p) for p in wg.default_points(m + 1))
        mults = (m + 2) ** 2 / m ** 2
        print(f"| {m} | {pts} | {mults:.2f} | {tile_errors(m):.2e} | {layer_error(m):.2e} |")
    tile, layer = direct_errors()
    print(f"| direct | - | 9.00 | {tile:.2e} | {layer:.2e} |")
    print("\nThe error grows quickly with m (larger points, ill-conditioned Vandermonde systems), which is why\n"
          "shendu uses F(2x2) and F(4x4) only.")


if __name__ == "__main__":
    main()
