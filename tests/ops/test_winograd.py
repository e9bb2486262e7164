"""The Winograd transform generator (shendu/ops/kernels/winograd.py): polynomial arithmetic, exact
F(m, r) matrices from the CRT construction, their known published forms, float32 error growth, and
the tiled layer kernel against torch's conv2d."""

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from shendu.ops.kernels import winograd as wg

RNG = np.random.default_rng(0)


def _frac(rows):
    return [[Fraction(c) for c in row] for row in rows]


# ------------------------------------------------------------------------------ polynomials
def test_division_example_from_the_notes():
    # (x^3 - 2x^2 - 4) = (x - 3)(x^2 + x + 3) + 5
    q, r = wg.poly_divmod([-4, 0, -2, 1], [-3, 1])
    assert q == [3, 1, 1] and r == [5]


def test_gcd_example_from_the_notes():
    # gcd(x^2 + 7x + 6, x^2 - 5x - 6) = x + 1
    assert wg.poly_gcd([6, 7, 1], [-6, -5, 1]) == [1, 1]
    assert wg.poly_gcd([-6, -5, 1], [6, 7, 1]) == [1, 1]


def test_division_reconstructs_the_dividend():
    for _ in range(20):
        a = [Fraction(int(c)) for c in RNG.integers(-9, 10, 6)]
        b = [Fraction(int(c)) for c in RNG.integers(-9, 10, 3)] + [Fraction(1)]
        q, r = wg.poly_divmod(a, b)
        assert len(r) < len(b)
        recon = wg.poly_sub(wg.poly_mul(b, q), [-c for c in r])  # b q + r
        assert recon == wg.poly_trim(a)


def test_extended_gcd_identity():
    a = wg.poly_from_roots([1, 2, 3])
    b = wg.poly_from_roots([2, 5])
    g, s, t = wg.poly_ext_gcd(a, b)
    assert g == [-2, 1]  # x - 2
    lhs = wg.poly_sub(wg.poly_mul(s, a), [-c for c in wg.poly_mul(t, b)])
    assert lhs == g


def test_crt_reconstructs_a_polynomial_from_residues():
    y = [Fraction(c) for c in (3, -1, 4, 1)]  # degree 3: four linear moduli determine it
    moduli = [[-Fraction(a), 1] for a in (0, 1, -1, 2)]
    residues = [wg.poly_divmod(y, m)[1] for m in moduli]
    assert wg.crt(residues, moduli) == y


# ------------------------------------------------------------------------------ transforms
LAVIN_F23 = dict(  # Lavin & Gray, CVPR 2016, eq. (5)-(6), points (0, 1, -1) and infinity
    BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    G=[[1, 0, 0], [Fraction(1, 2), Fraction(1, 2), Fraction(1, 2)], [Fraction(1, 2), Fraction(-1, 2), Fraction(1, 2)],
       [0, 0, 1]],
    AT=[[1, 1, 1, 0], [0, 1, -1, -1]],
)


def test_f23_is_lavin_and_gray_up_to_the_stated_signs():
    """Equal to the paper's F(2,3) except two sign flips that cancel in the product: row 0 of G and
    B^T (the CRT constant N_0 = -1 here), and the infinity pair (last row of B^T, last column of A^T)."""
    AT, G, BT = wg.transforms(2, 3, (0, 1, -1))
    L = {k: _frac(v) for k, v in LAVIN_F23.items()}
    row_sign = [-1, 1, 1, -1]
    for i, s in enumerate(row_sign[:3]):
        assert G[i] == [s * c for c in L["G"][i]]
        assert BT[i] == [s * c for c in L["BT"][i]]
    assert G[3] == L["G"][3]
    assert BT[3] == [-c for c in L["BT"][3]]
    assert [row[3] for row in AT] == [-row[3] for row in L["AT"]]
    assert [row[:3] for row in AT] == [row[:3] for row in L["AT"]]


def test_f43_matches_the_published_matrices_exactly():
    # Lavin & Gray's F(4x4, 3x3) / wincnn with points 0, 1, -1, 2, -2 (feature spec 9.4)
    BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
          [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
    F = Fraction
    G = [[F(1, 4), 0, 0], [F(-1, 6), F(-1, 6), F(-1, 6)], [F(-1, 6), F(1, 6), F(-1, 6)],
         [F(1, 24), F(1, 12), F(1, 6)], [F(1, 24), F(-1, 12), F(1, 6)], [0, 0, 1]]
    AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    got = wg.transforms(4, 3)
    assert got == (_frac(AT), _frac(G), _frac(BT))


def _correlate_exact(AT, G, BT, g, d):
    Gg = [sum(row[j] * g[j] for j in range(len(g))) for row in G]
    Bd = [sum(row[j] * d[j] for j in range(len(d))) for row in BT]
    prod = [a * b for a, b in zip(Gg, Bd)]
    return [sum(row[j] * prod[j] for j in range(len(prod))) for row in AT]


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6])
def test_f_m3_is_exact_on_integer_inputs(m):
    AT, G, BT = wg.transforms(m, 3)
    for _ in range(25):
        g = [Fraction(int(v)) for v in RNG.integers(-50, 51, 3)]
        d = [Fraction(int(v)) for v in RNG.integers(-50, 51, m + 2)]
        direct = [sum(g[u] * d[j + u] for u in range(3)) for j in range(m)]
        assert _correlate_exact(AT, G, BT, g, d) == direct


@pytest.mark.parametrize("m, r, points", [(3, 2, None), (2, 5, None), (2, 3, (0, 2, -2)),
                                          (2, 3, ("1/2", -1, 3)), (4, 2, (0, 1, -1, Fraction(1, 3)))])
def test_other_sizes_and_points_are_exact(m, r, points):
    AT, G, BT = wg.transforms(m, r, points)
    for _ in range(10):
        g = [Fraction(int(v)) for v in RNG.integers(-9, 10, r)]
        d = [Fraction(int(v)) for v in RNG.integers(-9, 10, m + r - 1)]
        direct = [sum(g[u] * d[j + u] for u in range(r)) for j in range(m)]
        assert _correlate_exact(AT, G, BT, g, d) == direct


def test_bad_points_are_rejected():
    with pytest.raises(ValueError, match="needs 3 distinct finite points"):
        wg.transforms(2, 3, (0, 1))
    with pytest.raises(ValueError, match="distinct"):
        wg.transforms(2, 3, (0, 1, 1))


def test_float32_error_grows_with_the_tile_size():
    """2-D F(m x m, 3 x 3) on random N(0,1) tiles in float32 vs float64 direct correlation.
    Measured (mean max-abs error): F(2) ~5e-7, F(4) ~4e-6, F(6) ~1.5e-5 (feature spec 9.4)."""
    errs = {}
    for m in (2, 4, 6):
        AT, G, BT = wg.matrices(m, 3, np.float32)
        n = m + 2
        g = RNG.standard_normal((2000, 3, 3))
        d = RNG.standard_normal((2000, n, n))
        y32 = np.einsum("ia,tab,jb->tij", AT, (np.einsum("ai,tij,bj->tab", G, g.astype(np.float32), G)
                                                * np.einsum("ai,tij,bj->tab", BT, d.astype(np.float32), BT)), AT)
        win = np.lib.stride_tricks.sliding_window_view(d, (3, 3), axis=(1, 2))  # (t, m, m, 3, 3)
        y64 = np.einsum("tijuv,tuv->tij", win, g)
        errs[m] = np.abs(y32 - y64).max(axis=(1, 2)).mean()
    assert errs[2] < errs[4] < errs[6]
    assert errs[2] < 2e-6 and errs[4] < 1.5e-5 and errs[6] < 6e-5, errs


# ------------------------------------------------------------------------------ the layer kernel
@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("shape, pads, groups", [((3, 4, 11, 9), (1, 1, 1, 1), 1), ((2, 6, 8, 8), (0, 2, 1, 0), 2),
                                                 ((1, 3, 3, 3), (1, 1, 1, 1), 3)])
def test_layer_kernel_matches_torch_float64(m, shape, pads, groups):
    x = RNG.standard_normal(shape)
    K = 2 * shape[1] if groups == 1 else shape[1]
    w = RNG.standard_normal((K, shape[1] // groups, 3, 3))
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = TF.conv2d(TF.pad(xt, (pads[2], pads[3], pads[0], pads[1])), wt, groups=groups)
    y = wg.conv2d(x, w, pads, groups, m)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-11, atol=1e-11)
    gy = RNG.standard_normal(y.shape)
    gxt, gwt = torch.autograd.grad(yt, (xt, wt), torch.tensor(gy))
    gx, gw = wg.conv2d_grads(gy, x, w, pads, groups, m)
    np.testing.assert_allclose(gx, gxt.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gw, gwt.numpy(), rtol=1e-11, atol=1e-10)


# ------------------------------------------------------------------------------ the numba kernels
needs_numba = pytest.mark.skipif(not wg.USE_NUMBA, reason="numba not installed")


@needs_numba
@pytest.mark.parametrize("m", [2, 4, 6])
def test_written_out_transforms_equal_the_matrices(m):
    """F(2x2) and F(4x4) have their 1-D transforms written out in winograd_numba; they (and the
    generic matrix path, F(6x6)) must equal B^T, B, A^T and A from the exact construction."""
    from shendu.ops.kernels import winograd_numba as wn

    AT, _, BT = wg.matrices(m, 3, np.float64)
    a = m + 2
    cases = [(wn.BT, BT, BT, a), (wn.B, BT, BT.T, a), (wn.AT, AT, AT, a), (wn.A, AT, AT.T, m)]
    for kind, given, expected, n_in in cases:
        rows = RNG.standard_normal((n_in, 21))
        np.testing.assert_allclose(wn.apply_transform(kind, m, given, rows), expected @ rows, rtol=1e-13, atol=1e-13)


@needs_numba
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape, K, pads, groups", [
    ((3, 5, 9, 7), 4, (1, 1, 1, 1), 1), ((2, 4, 8, 8), 6, (0, 2, 1, 0), 2), ((4, 8, 13, 11), 8, (0, 0, 0, 0), 1),
    ((2, 3, 3, 3), 2, (2, 2, 2, 2), 1), ((1, 6, 5, 6), 6, (1, 1, 1, 1), 6),
])
def test_numba_path_equals_numpy_reference(m, shape, K, pads, groups, monkeypatch):
    """The numba tile kernels (phase-split layout, fused copies, 3x3-domain weight-gradient sums) give
    the NumPy reference's results in float64, with chunks of 1 and 2 images (short last chunk)."""
    x = RNG.standard_normal(shape)
    w = RNG.standard_normal((K, shape[1] // groups, 3, 3))
    y_ref = wg.conv2d_numpy(x, w, pads, groups, m)
    gy = RNG.standard_normal(y_ref.shape)
    gx_ref, gw_ref = wg.conv2d_grads_numpy(gy, x, w, pads, groups, m)
    for nb in (1, 2):
        monkeypatch.setattr(wg, "_chunk", lambda N, *a, nb=nb: nb)
        np.testing.assert_allclose(wg.conv2d(x, w, pads, groups, m), y_ref, rtol=1e-12, atol=1e-12)
        gx, gw = wg.conv2d_grads(gy, x, w, pads, groups, m)
        np.testing.assert_allclose(gx, gx_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw, gw_ref, rtol=1e-12, atol=1e-11)
        gx_only, none = wg.conv2d_grads(gy, None, w, pads, groups, m, need_weight=False, x_shape=x.shape)
        assert none is None
        np.testing.assert_array_equal(gx_only, gx)
        assert wg.conv2d(x.astype(np.float32), w.astype(np.float32), pads, groups, m).dtype == np.float32


@needs_numba
def test_chunks_fit_the_tiles_and_the_threads(monkeypatch):
    from shendu.ops.kernels import parallel

    monkeypatch.setattr(parallel, "num_threads", lambda: 2)
    monkeypatch.setattr(wg, "num_threads", lambda: 2)
    f32 = np.dtype(np.float32)
    assert wg._chunk(128, 32, 32, 49, f32) == 3             # ~128 tiles (28x28 images, 49 tiles each)
    assert wg._chunk(16, 64, 64, 196, f32) == 1             # one 56x56 image is already 196 tiles
    nb = wg._chunk(16, 256, 256, 16, f32)                   # wide layer: scratch cap, even chunk count
    assert nb * 36 * 512 * 16 * 4 <= wg._SCRATCH_BYTES and -(-16 // nb) % 2 == 0
    assert wg._chunk(3, 8, 8, 4, f32) == 2                  # a small batch still uses both threads
