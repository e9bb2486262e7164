"""Winograd minimal filtering (Lavin & Gray, CVPR 2016): transforms derived exactly, and the layer kernel.

**The transforms.** ``F(m, r)`` computes ``m`` outputs of an ``r``-tap correlation with
``n = m + r - 1`` multiplications: ``Y = A^T [(G g) * (B^T d)]`` for a filter ``g`` (r) and an input
tile ``d`` (n). :func:`transforms` derives ``A^T, G, B^T`` from interpolation points, exactly, with
:class:`fractions.Fraction`, by the polynomial construction the notes begin:

1. Linear convolution of ``g(x)`` (degree r-1) and ``h(x)`` (degree m-1) is polynomial
   multiplication; the product ``y(x)`` has degree n-1.
2. Take the moduli ``m_i(x) = x - a_i`` for n-1 distinct points; ``M(x) = prod m_i``. By the Chinese
   remainder theorem ``y mod M`` is fixed by the residues ``y mod m_i = g(a_i) h(a_i)``: one
   multiplication per point. Reconstruction: ``y mod M = sum_i y_i N_i M_i`` with ``M_i = M / m_i``
   (Euclidean division) and ``N_i = M_i^{-1} mod m_i`` (extended Euclid / polynomial GCD).
3. The point at infinity supplies the leading coefficient: ``y = (y mod M) + g_{r-1} h_{m-1} M(x)``,
   one more multiplication (the extra 0/1 rows and columns of every matrix).
4. So ``y = C [(A_g g) * (A_h h)]`` with ``A_g`` rows ``N_i (1, a_i, .., a_i^{r-1})`` (the CRT
   constants go into the filter transform, as in Lavin's matrices) and ``C``'s columns the
   coefficients of ``M_i`` (and of ``M``). Correlation, the operation CNNs need, is the transpose of
   this algorithm (transposition principle): ``G = A_g``, ``B^T = C^T``, ``A^T = A_h^T``.

Sign/scale conventions: the result equals wincnn's (and the paper's F(4x4, 3x3)) exactly. For
points (0, 1, -1) it equals Lavin & Gray's printed F(2, 3) up to two sign flips that cancel in the
product: row 0 of both ``G`` and ``B^T`` (``N_0 = -1`` here) and the infinity pair (last row of
``B^T``, last column of ``A^T``). The matrices are not unique, so tests compare outputs.

**The layer.** Tiles of ``m x m`` outputs read overlapping ``alpha x alpha`` input tiles
(``alpha = m + 2``, stride m). ``U = G g G^T`` per (K, C) once; per chunk of images (threads run
chunks in parallel): ``V = B^T d B`` for every tile; for each of the ``alpha^2`` transform positions
one channel GEMM ``M[xi] = V[xi] (tiles x C) @ U[xi]^T (C x K)``; ``Y = A^T M A`` back to NCHW. 3x3
kernels, stride 1 and dilation 1 only. Backward is the exact adjoint of these steps, so the input and
the weight gradient are also alpha^2 channel GEMMs (see :func:`conv2d_grads`).

Two implementations of the tile transforms give the same results:

- numba (:mod:`shendu.ops.kernels.winograd_numba`), used when numba is installed: each transform is
  one pass over a chunk in a channels-last, column-phase-split layout, fused with the NCHW copy;
  F(2x2) and F(4x4) have their transforms written out. Measured (bench/conv.py layers, one thread):
  the transforms went from ~70% to ~35% of a layer's time; forward+backward 1.3-2x faster.
- NumPy (:func:`conv2d_numpy`, :func:`conv2d_grads_numpy`, the reference; ``USE_NUMBA = False``):
  the input goes channels-last so every tile gather copies contiguous runs of C values; the 2-D
  transform of all tiles is one GEMM with ``kron(B^T, B^T)`` (and ``kron(A^T, A^T)``).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import scipy.linalg.blas as _blas

from shendu.ops.kernels import parallel
from shendu.ops.kernels import team as _team
from shendu.ops.kernels import winograd_numba as _wn
from shendu.ops.kernels.parallel import num_threads, parallel_chunks, single_threaded_blas, split_rows
from shendu.ops.kernels.workspace import workspace

__all__ = [
    "poly_trim", "poly_mul", "poly_sub", "poly_divmod", "poly_gcd", "poly_ext_gcd", "poly_from_roots",
    "crt", "default_points", "transforms", "matrices", "filter_transform", "conv2d", "conv2d_grads",
    "conv2d_numpy", "conv2d_grads_numpy", "USE_NUMBA",
]

# The numba tile kernels (winograd_numba) when numba is installed; False forces the NumPy reference.
USE_NUMBA = _wn.AVAILABLE


# ------------------------------------------------------------------------------ polynomial arithmetic
# A polynomial is a list of Fractions in ascending powers: [c0, c1, c2] is c0 + c1 x + c2 x^2.

def poly_trim(p) -> list:
    """Drop zero leading coefficients (``[]`` is the zero polynomial)."""
    p = [Fraction(c) for c in p]
    while p and p[-1] == 0:
        p.pop()
    return p


def poly_mul(a, b) -> list:
    a, b = poly_trim(a), poly_trim(b)
    if not a or not b:
        return []
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            out[i + j] += ai * bj
    return out


def poly_sub(a, b) -> list:
    n = max(len(a), len(b))
    a = list(a) + [0] * (n - len(a))
    b = list(b) + [0] * (n - len(b))
    return poly_trim([x - y for x, y in zip(a, b)])


def poly_divmod(a, b) -> tuple:
    """Euclidean division ``a = b q + r`` with ``deg r < deg b``: the long division of the notes.

    >>> q, r = poly_divmod([-4, 0, -2, 1], [-3, 1])   # (x^3 - 2x^2 - 4) / (x - 3)
    >>> [str(c) for c in q], [str(c) for c in r]
    (['3', '1', '1'], ['5'])
    """
    a, b = poly_trim(a), poly_trim(b)
    if not b:
        raise ZeroDivisionError("poly_divmod: division by the zero polynomial")
    r = list(a)
    q = [Fraction(0)] * max(len(a) - len(b) + 1, 0)
    while len(r) >= len(b):
        shift = len(r) - len(b)
        c = r[-1] / b[-1]  # cancel the leading term
        q[shift] = c
        for i, bi in enumerate(b):
            r[i + shift] -= c * bi
        r = poly_trim(r)
    return poly_trim(q), r


def _monic(p) -> list:
    return [c / p[-1] for c in p] if p else []


def poly_gcd(a, b) -> list:
    """Monic greatest common divisor by Euclid's algorithm (repeated :func:`poly_divmod`).

    >>> [str(c) for c in poly_gcd([6, 7, 1], [-6, -5, 1])]   # (x+1)(x+6), (x+1)(x-6)
    ['1', '1']
    """
    a, b = poly_trim(a), poly_trim(b)
    while b:
        a, b = b, poly_divmod(a, b)[1]
    return _monic(a)


def poly_ext_gcd(a, b) -> tuple:
    """``(g, s, t)`` with ``s a + t b = g = gcd(a, b)`` (monic): extended Euclid on polynomials."""
    r0, r1 = poly_trim(a), poly_trim(b)
    s0, s1, t0, t1 = [Fraction(1)], [], [], [Fraction(1)]
    while r1:
        q, r = poly_divmod(r0, r1)
        r0, r1 = r1, r
        s0, s1 = s1, poly_sub(s0, poly_mul(q, s1))
        t0, t1 = t1, poly_sub(t0, poly_mul(q, t1))
    lead = r0[-1]
    return _monic(r0), [c / lead for c in s0], [c / lead for c in t0]


def poly_from_roots(roots) -> list:
    """``prod (x - a)`` over ``roots``."""
    p = [Fraction(1)]
    for a in roots:
        p = poly_mul(p, [-Fraction(a), 1])
    return p


def crt(residues, moduli) -> list:
    """The polynomial ``y`` of degree < deg(prod moduli) with ``y = residues[i] mod moduli[i]``
    (moduli pairwise coprime): ``y = sum_i r_i N_i M_i mod M``, ``N_i = M_i^{-1} mod m_i``."""
    M = [Fraction(1)]
    for m in moduli:
        M = poly_mul(M, m)
    y = []
    for r, m in zip(residues, moduli):
        Mi, rem = poly_divmod(M, m)
        assert not rem
        g, Ni, _ = poly_ext_gcd(Mi, m)
        if g != [1]:
            raise ValueError("crt: moduli are not pairwise coprime")
        term = poly_divmod(poly_mul(poly_mul(r, Ni), Mi), M)[1]
        y = poly_trim([a + b for a, b in zip(y + [0] * len(term), term + [0] * len(y))])
    return poly_divmod(y, M)[1]


# ------------------------------------------------------------------------------ transform matrices
def default_points(count: int) -> tuple:
    """The usual interpolation points, small first: 0, 1, -1, 2, -2, 1/2, -1/2, 3, -3, 1/3, -1/3, ..."""
    pts = [Fraction(0)]
    k = 1
    while len(pts) < count:
        pts += [Fraction(k), Fraction(-k)]
        if k > 1:
            pts += [Fraction(1, k), Fraction(-1, k)]
        k += 1
    return tuple(pts[:count])


def transforms(m: int, r: int, points=None) -> tuple:
    """Exact ``(AT, G, BT)`` (lists of lists of Fractions) of Winograd's ``F(m, r)``.

    ``points``: the ``m + r - 2`` distinct finite interpolation points (the point at infinity is
    added); default :func:`default_points`. Shapes: ``AT`` m x n, ``G`` n x r, ``BT`` n x n with
    ``n = m + r - 1``; ``Y = AT [(G g) * (BT d)]`` is the correlation ``Y[j] = sum_u g[u] d[j+u]``.

    >>> AT, G, BT = transforms(2, 3, (0, 1, -1))
    >>> [[str(c) for c in row] for row in G]
    [['-1', '0', '0'], ['1/2', '1/2', '1/2'], ['1/2', '-1/2', '1/2'], ['0', '0', '1']]
    """
    n = m + r - 1
    pts = default_points(n - 1) if points is None else tuple(Fraction(p) for p in points)
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"transforms: F({m}, {r}) needs {n - 1} distinct finite points, got {pts}")
    moduli = [[-a, Fraction(1)] for a in pts]  # x - a_i
    M = poly_from_roots(pts)
    G, BT = [], []
    for a, mi in zip(pts, moduli):
        Mi, rem = poly_divmod(M, mi)
        assert not rem
        _, Ni, _ = poly_ext_gcd(Mi, mi)  # Ni * Mi = 1 mod (x - a): the CRT constant (degree 0)
        Ni = Ni[0]
        G.append([Ni * a ** j for j in range(r)])
        BT.append(Mi + [Fraction(0)] * (n - len(Mi)))
    G.append([Fraction(0)] * (r - 1) + [Fraction(1)])  # the point at infinity: g_{r-1} * h_{m-1} * M(x)
    BT.append(M + [Fraction(0)] * (n - len(M)))
    AT = [[a ** i for a in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    return AT, G, BT


@functools.lru_cache(maxsize=None)
def matrices(m: int, r: int = 3, dtype=np.float32, points=None) -> tuple:
    """Float ``(AT, G, BT)`` arrays of :func:`transforms` (cached, read-only)."""
    out = []
    for mat in transforms(m, r, points):
        a = np.array([[float(c) for c in row] for row in mat], dtype=dtype)
        a.flags.writeable = False
        out.append(a)
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _kron(m: int, dtype) -> tuple:
    """The 2-D transforms as matrices on flattened tiles: ``kron(B^T, B^T)`` (alpha^2 x alpha^2),
    ``kron(A^T, A^T)`` (m^2 x alpha^2) and ``kron(G, G)`` (alpha^2 x 9), so that a transform of every
    tile is one GEMM (``V = B^T d B`` is ``kron(B^T, B^T) @ vec(d)``) and its adjoint the transposed GEMM."""
    AT, G, BT = matrices(m, 3, np.float64)
    out = tuple(np.kron(a, a).astype(dtype) for a in (BT, AT, G))
    for a in out:
        a.flags.writeable = False
    return out


# ------------------------------------------------------------------------------ the layer kernel
def filter_transform(w, m: int, groups: int = 1, out: np.ndarray | None = None, team: bool = False,
                     numpy_only: bool = False) -> np.ndarray:
    """``U = G g G^T`` of every (k, c) filter: ``(groups, alpha^2, K/groups, C/groups)``, so that
    ``U[g, xi]`` is group g's (Kg x Cg) filter matrix at transform position xi (the channel GEMMs read it
    transposed where they need ``(Cg x Kg)``; BLAS takes either at the same speed).

    With numba, :func:`shendu.ops.kernels.winograd_numba.filter_rows` computes it separably, shares of the
    filters on the chunk pool's threads, or on numba's OpenMP team when ``team`` (the inference forwards
    that run there). Without, one GEMM ``kron(G, G) (alpha^2 x 9) @ w^T (9 x K C/groups)`` per group
    (measured on 256 x 256 filters, one thread: F(2x2) 1.0 ms and F(4x4) 2.4 ms, against the kernel's
    0.33 and 0.54). ``numpy_only``: the GEMM even with numba (the NumPy reference layers use it, so they
    share no kernel with the code the tests compare them with). ``out``: a flat array of
    ``alpha^2 K C/groups`` elements to write into (the layers pass a workspace)."""
    K, Cg = w.shape[:2]
    G, Kg = groups, K // groups
    a2 = (m + 2) ** 2
    shape = (G, a2, Kg * Cg)
    U = np.empty(shape, w.dtype) if out is None else out.reshape(shape)
    wv = w.reshape(G, Kg * Cg, 9)
    if not numpy_only and _use_numba(w):
        Gm = matrices(m, 3, w.dtype)[1]
        wv = np.ascontiguousarray(wv)
        if team and _team.available():
            _wn.filter_groups_team(wv, Gm, U, num_threads())
            parallel.note_team_region()
        else:
            split_rows(lambda lo, hi: _wn.filter_groups(wv, Gm, U, lo, hi), Kg * Cg, w.size + U.size)
        return U.reshape(G, a2, Kg, Cg)
    KG = _kron(m, w.dtype)[2]
    with single_threaded_blas():  # memory-bound (U is 4x the weight for F(4x4)): every thread writes a share
        split_rows(lambda lo, hi: np.matmul(KG, wv[:, lo:hi].transpose(0, 2, 1), out=U[:, :, lo:hi]), Kg * Cg,
                   w.size + U.size)
    return U.reshape(G, a2, Kg, Cg)


def _filters(w, m: int, groups: int, team: bool = False, numpy_only: bool = False) -> np.ndarray:
    """:func:`filter_transform` into the calling thread's workspace (a layer's transformed filters are
    4x its weight for F(4x4): megabytes of fresh pages on every call otherwise)."""
    return filter_transform(w, m, groups, out=workspace("winograd.U", (m + 2) ** 2 * w.shape[0] * w.shape[1],
                                                        w.dtype), team=team, numpy_only=numpy_only)


def _zeros(name: str, shape: tuple, dtype) -> np.ndarray:
    """A zeroed workspace array (for a thread's partial sums)."""
    out = workspace(name, math.prod(shape), dtype).reshape(shape)
    out.fill(0)
    return out


def _tiles(x_shape, pads, m):
    """Output size and tile grid of a 3x3, stride-1 convolution tiled by m x m."""
    H, W = x_shape[2:]
    t, b, l, r = pads
    P, Q = H + t + b - 2, W + l + r - 2
    return P, Q, -(-P // m), -(-Q // m)


# Chunk sizing, measured with the numba kernels (bench/conv.py layers, single thread): the alpha^2
# channel GEMMs run best with ~100-200 tiles per chunk (fewer: narrow GEMMs; more: the chunk's
# transformed tiles leave the cache). The scratch of one chunk is also capped, which bounds the
# memory of wide layers (ResNet stage 4: 256 channels, a few tiles per image).
_TILES = 128
_SCRATCH_BYTES = 6 << 20


def _chunk(N, C, K, T1, dt) -> int:
    """Images per chunk: ~``_TILES`` tiles, at most ``_SCRATCH_BYTES`` of transformed tiles, and a
    chunk count that is a multiple of the thread count (so threads finish together)."""
    nb = max(1, round(_TILES / T1))
    nb = min(nb, max(1, _SCRATCH_BYTES // (36 * (C + K) * T1 * dt.itemsize)), N)
    threads = num_threads()
    chunks = -(-N // nb)
    chunks = -(-chunks // threads) * threads if chunks > 1 or N >= threads else chunks
    return -(-N // min(chunks, N))


def _channels_last(x, lo, hi, top, left, out):
    """Images lo..hi of ``x`` (N, C, H, W) placed at (top, left) in ``out`` (n, Hp, Wp, C), zeros around
    (only the border strips are written, not the whole buffer). Channels last, so tiles are then
    gathered with contiguous runs of C values whatever the image size."""
    H, W = x.shape[2:]
    Hp, Wp = out.shape[1:3]
    t, l = max(top, 0), max(left, 0)
    src = x[lo:hi, :, t - top:, l - left:][:, :, :Hp - t, :Wp - l]
    h, w = src.shape[2:]
    out[:, :t] = 0
    out[:, t + h:] = 0
    out[:, t:t + h, :l] = 0
    out[:, t:t + h, l + w:] = 0
    out[:, t:t + h, l:l + w, :] = src.transpose(0, 2, 3, 1)


def _input_tiles(xh, m, th, tw, out):
    """``out[i, j, n, ty, tx, c] = xh[n, ty*m + i, tx*m + j, c]``: the overlapping (m+2)^2 tiles."""
    a = m + 2
    sN, sH, sW, sC = xh.strides
    n, C = xh.shape[0], xh.shape[3]
    view = np.lib.stride_tricks.as_strided(xh, (a, a, n, th, tw, C), (sH, sW, sN, m * sH, m * sW, sC),
                                           writeable=False)
    np.copyto(out, view)


def _overlap_add(tiles, m, th, tw, out):
    """Sum the overlapping (m+2)^2 tiles ``tiles[i, j, n, ty, tx, c]`` into ``out[n, ty*m + i, tx*m + j, c]``
    (the adjoint of :func:`_input_tiles`). The m x m cores of the tiles do not overlap, so they are
    written with plain assignments (which also clear ``out``); only the 2-wide rims are added."""
    a = m + 2
    out[:, m * th:] = 0  # the last two rows and columns are reached only by rims
    out[:, :m * th, m * tw:] = 0
    for i in range(m):
        for j in range(m):
            out[:, i:i + m * th:m, j:j + m * tw:m, :] = tiles[i, j]
    for i in range(a):
        for j in range(a):
            if i >= m or j >= m:
                out[:, i:i + m * th:m, j:j + m * tw:m, :] += tiles[i, j]


class _Buffers:
    """A thread's flat scratch arrays, viewed with each chunk's shape (a short last chunk included).
    The steps of a chunk pass their result from one buffer to the next (``a`` -> ``b`` -> ``a`` ...),
    so a few buffers serve every intermediate."""

    def __init__(self, dtype, **sizes):
        self.flat = {k: workspace("winograd." + k, v, dtype) for k, v in sizes.items() if v}
        self.views = {}  # (name, shape) -> view: chunks repeat the same few shapes

    def get(self, name, shape):
        key = (name, shape)
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = self.flat[name][:math.prod(shape)].reshape(shape)
        return view


def conv2d(x, w, pads=(0, 0, 0, 0), groups=1, m=4, bias=None, team=False) -> np.ndarray:
    """3x3, stride-1 cross-correlation of ``x`` (N, C, H, W) with ``w`` (K, C/groups, 3, 3) by
    Winograd ``F(m x m, 3 x 3)``, plus ``bias`` (K,) if given: the numba kernels when available
    (:func:`_conv2d_numba`; ``team``: on numba's OpenMP team, for inference, :func:`_conv2d_team`), else
    the NumPy reference (:func:`conv2d_numpy`)."""
    if _use_numba(x, w, bias):
        N, K = x.shape[0], w.shape[0]
        if groups == 1 and ((team and N > 1 and _team.available())
                            or (N == 1 and _team.worth(9 * K * x[0].size))):
            return _conv2d_team(x, w, pads, m, bias)
        return _conv2d_numba(x, w, pads, groups, m, bias)
    y = conv2d_numpy(x, w, pads, groups, m)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def conv2d_grads(gy, x, w, pads=(0, 0, 0, 0), groups=1, m=4, need_input=True, need_weight=True,
                 x_shape=None):
    """``(gx, gw)`` of :func:`conv2d` (numba kernels or the NumPy reference, as :func:`conv2d`)."""
    if _use_numba(gy, w, x):
        return _conv2d_grads_numba(gy, x, w, pads, groups, m, need_input, need_weight, x_shape)
    return conv2d_grads_numpy(gy, x, w, pads, groups, m, need_input, need_weight, x_shape)


def conv2d_numpy(x, w, pads=(0, 0, 0, 0), groups=1, m=4) -> np.ndarray:
    """The NumPy reference of :func:`conv2d`.

    Per chunk of images, channels last: pad, gather the tiles ``d``, ``V = B^T d B`` for all tiles (one
    GEMM with ``kron(B^T, B^T)``), ``M[xi] = V[xi] (tiles x C) @ U[xi]^T (C x K)`` for each of the
    alpha^2 transform positions, ``Y = A^T M A`` (one GEMM), then scatter the m x m output tiles and
    transpose back to NCHW."""
    N, C, H, W = x.shape
    K, Cg = w.shape[:2]
    G, Kg = groups, K // groups
    a, a2 = m + 2, (m + 2) ** 2
    P, Q, th, tw = _tiles(x.shape, pads, m)
    Hp, Wp = th * m + 2, tw * m + 2
    dt = x.dtype
    KB, KA, _ = _kron(m, dt)
    UT = _filters(w, m, G, numpy_only=True).transpose(1, 0, 3, 2)  # (a2,G,Cg,Kg)
    y = np.empty((N, K, P, Q), dt)
    T1 = th * tw
    nb = _chunk(N, C, K, T1, dt)

    def scratch():
        big = a2 * nb * T1 * max(C, K)
        return _Buffers(dt, xh=nb * Hp * Wp * C, a=big, b=big)

    def run(s, lo, hi):
        n = hi - lo
        T = n * T1
        xh = s.get("xh", (n, Hp, Wp, C))
        _channels_last(x, lo, hi, pads[0], pads[2], xh)
        d = s.get("a", (a, a, n, th, tw, C))
        _input_tiles(xh, m, th, tw, d)
        V = s.get("b", (a2, T * C))
        np.matmul(KB, d.reshape(a2, T * C), out=V)
        M = s.get("a", (a2, G, T, Kg))
        np.matmul(V.reshape(a2, T, G, Cg).transpose(0, 2, 1, 3), UT, out=M)
        Y = s.get("b", (m * m, T * K))
        np.matmul(KA, M.transpose(0, 2, 1, 3).reshape(a2, T * K) if G > 1 else M.reshape(a2, T * K), out=Y)
        yh = s.get("a", (n, th, m, tw, m, K))
        yh[...] = Y.reshape(m, m, n, th, tw, K).transpose(2, 3, 0, 4, 1, 5)
        y[lo:hi] = yh.reshape(n, th * m, tw * m, K)[:, :P, :Q, :].transpose(0, 3, 1, 2)

    parallel_chunks(run, N, nb, scratch)
    return y


def conv2d_grads_numpy(gy, x, w, pads=(0, 0, 0, 0), groups=1, m=4, need_input=True, need_weight=True,
                       x_shape=None):
    """The NumPy reference of :func:`conv2d_grads`: the exact adjoint of the Winograd algorithm.

    With ``GY = A gy A^T`` per output tile (zeros beyond the output): ``gx`` overlap-adds the tiles
    ``B (GY[xi] @ U[xi]) B^T`` and ``gw = G^T (sum_tiles V[xi]^T @ GY[xi]) G`` — both gradients are
    alpha^2 channel GEMMs, like the forward, and share ``GY``. ``V`` is recomputed chunk by chunk.
    """
    x_shape = x.shape if x is not None else tuple(x_shape)
    N, C, H, W = x_shape
    K, Cg = w.shape[:2]
    G, Kg = groups, K // groups
    a, a2 = m + 2, (m + 2) ** 2
    P, Q, th, tw = _tiles(x_shape, pads, m)
    Hp, Wp = th * m + 2, tw * m + 2
    t, l = pads[0], pads[2]
    dt = gy.dtype
    KB, KA, KG = _kron(m, dt)
    T1 = th * tw
    U = _filters(w, m, G, numpy_only=True).transpose(1, 0, 2, 3) if need_input else None  # (a2,G,Kg,Cg)
    gx = np.empty(x_shape, dt) if need_input else None
    nb = _chunk(N, C, K, T1, dt)

    def scratch():
        big = a2 * nb * T1 * max(C, K)
        s = _Buffers(dt, a=big, b=big, GY=a2 * nb * T1 * K, xh=nb * Hp * Wp * C)
        s.dU = _zeros("winograd.dU", (a2, G, Cg, Kg), dt) if need_weight else None
        return s

    def run(s, lo, hi):
        n = hi - lo
        T = n * T1
        gyh = s.get("a", (n, th * m, tw * m, K))
        _channels_last(gy, lo, hi, 0, 0, gyh)  # zeros past the output: those tiles' outputs were cropped
        gyt = s.get("b", (m, m, n, th, tw, K))
        gyt[...] = gyh.reshape(n, th, m, tw, m, K).transpose(2, 4, 0, 1, 3, 5)
        GY = s.get("GY", (a2, T, G, Kg))
        np.matmul(KA.T, gyt.reshape(m * m, T * K), out=GY.reshape(a2, T * K))
        GYg = GY.transpose(0, 2, 1, 3)                                     # (a2, G, T, Kg)
        if need_weight:
            xh = s.get("xh", (n, Hp, Wp, C))
            _channels_last(x, lo, hi, pads[0], pads[2], xh)
            d = s.get("a", (a, a, n, th, tw, C))
            _input_tiles(xh, m, th, tw, d)
            V = s.get("b", (a2, T, G, Cg))
            np.matmul(KB, d.reshape(a2, T * C), out=V.reshape(a2, T * C))
            s.dU += np.matmul(V.transpose(0, 2, 3, 1), GYg)                 # V^T @ GY: (a2, G, Cg, Kg)
        if need_input:
            GX = s.get("a", (a2, T, G, Cg))
            np.matmul(GYg, U, out=GX.transpose(0, 2, 1, 3))                  # GY @ U: (a2, G, T, Cg)
            gd = s.get("b", (a, a, n, th, tw, C))
            np.matmul(KB.T, GX.reshape(a2, T * C), out=gd.reshape(a2, T * C))
            gxh = s.get("xh", (n, Hp, Wp, C))
            _overlap_add(gd, m, th, tw, gxh)
            gx[lo:hi] = gxh[:, t:t + H, l:l + W, :].transpose(0, 3, 1, 2)

    states = parallel_chunks(run, N, nb, scratch)
    gw = None
    if need_weight:
        dU = states[0].dU
        for s in states[1:]:
            dU = dU + s.dU
        gw = np.matmul(KG.T, dU.transpose(0, 1, 3, 2).reshape(a2, K * Cg))    # (9, K*Cg)
        gw = np.ascontiguousarray(gw.reshape(3, 3, K, Cg).transpose(2, 3, 0, 1))
    return gx, gw


# ------------------------------------------------------------------------------ the numba path
def _use_numba(*arrays) -> bool:
    a0 = arrays[0]
    return USE_NUMBA and a0.dtype in (np.float32, np.float64) and all(
        a is None or (type(a) is np.ndarray and a.dtype == a0.dtype) for a in arrays)


def _conv2d_numba(x, w, pads, groups, m, bias=None):
    """:func:`conv2d` with the numba tile kernels: per chunk of images, gather the padded input into
    the phase-split channels-last layout, ``V = B^T d B``, the alpha^2 channel GEMMs (BLAS),
    ``Y = A^T M A``, scatter into NCHW (see :mod:`shendu.ops.kernels.winograd_numba`)."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    K, Cg = w.shape[:2]
    G, Kg = groups, K // groups
    a2 = (m + 2) ** 2
    P, Q, th, tw = _tiles(x.shape, pads, m)
    Hp = th * m + 2
    dt = x.dtype
    AT, _, BT = matrices(m, 3, dt)
    UT = _filters(w, m, G).transpose(0, 1, 3, 2)  # (G,a2,Cg,Kg)
    y = np.empty((N, K, P, Q), dt)
    T1 = th * tw
    nb = _chunk(N, C, K, T1, dt)
    xq_size, yq_size = nb * Hp * m * (tw + 1) * C, nb * th * m * m * tw * K

    def scratch():  # the buffers of the backward (same names and sizes): training keeps no extra memory
        return _Buffers(dt, a=max(xq_size, yq_size), V=a2 * nb * T1 * C, GY=a2 * nb * T1 * K)

    def run(s, lo, hi):
        n = hi - lo
        T = n * T1
        xq = s.get("a", (n, Hp, m, tw + 1, C))
        _wn.gather_input(x, lo, pads[0], pads[2], xq)
        V = s.get("V", (a2, T, C))
        _wn.input_transform(xq, BT, th, tw, V)
        M = s.get("GY", (a2, T, K))

        def channel_gemms(k0, k1):  # M[xi] = V[xi] @ U[xi]^T, per group, output channels k0:k1
            for g in range(G):
                np.matmul(V[:, :, g * Cg:(g + 1) * Cg], UT[g][:, :, k0:k1], out=M[:, :, g * Kg + k0:g * Kg + k1])

        if N == 1 and num_threads() > 1:  # a single chunk: the threads share its GEMMs instead
            with single_threaded_blas():
                split_rows(channel_gemms, Kg, V.size + M.size + UT.size)
        else:
            channel_gemms(0, Kg)
        yq = s.get("a", (n, th * m, m, tw, K))
        _wn.output_transform(M, AT, th, tw, yq)
        _wn.scatter_output(yq, y, lo, 0)
        if bias is not None:
            y[lo:hi] += bias.reshape(K, 1, 1)

    parallel_chunks(run, N, nb, scratch)
    return y


def _conv2d_team(x, w, pads, m, bias=None):
    """:func:`_conv2d_numba` for one group on numba's OpenMP team, in one call: the threads take chunks
    of images (:func:`shendu.ops.kernels.winograd_numba.forward_team`), or, for a single image, share its
    filter transform, bands of its tile rows and the alpha^2 channel GEMMs in turn (``forward_image_team``),
    each thread with its own BLAS calls."""
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    K = w.shape[0]
    a2 = (m + 2) ** 2
    P, Q, th, tw = _tiles(x.shape, pads, m)
    dt = x.dtype
    AT, _, BT = matrices(m, 3, dt)
    y = np.empty((N, K, P, Q), dt)
    threads = num_threads()
    nb = _chunk(N, C, K, th * tw, dt) if N > 1 else 1
    rows = th if N > 1 else -(-th // threads)  # tile rows of a thread's band
    T = nb * rows * tw
    sizes = {"a": nb * max((rows * m + 2) * m * (tw + 1) * C, rows * m * m * tw * K), "V": a2 * T * C,
             "GY": a2 * T * K}
    a, V, GY = (workspace("winograd.team." + k, threads * v, dt).reshape(threads, v) for k, v in sizes.items())
    ints = np.empty((threads, 6), np.int32)
    with single_threaded_blas():  # BLAS runs inside the team's threads: one thread each
        if N > 1:
            U = _filters(w, m, 1, team=True)[0]  # (a2, K, C)
            _wn.forward_team(x, pads[0], pads[2], BT, AT, U, y, nb, th, tw, a, V, GY, ints, _team.consts_address(),
                             threads)
        else:  # the kernel transforms the filters itself, into the workspace
            U = workspace("winograd.U", a2 * K * C, dt).reshape(a2, K, C)
            w9 = np.ascontiguousarray(w, dt).reshape(K * C, 9)
            _wn.forward_image_team(x, w9, matrices(m, 3, dt)[1], pads[0], pads[2], BT, AT, U, y, th, tw, a, V, GY,
                                   ints, _team.consts_address(), threads)
    parallel.note_team_region()
    if bias is not None:
        y += bias.reshape(K, 1, 1)
    return y


def _add_gemm(acc, a, b):
    """``acc += a @ b`` in place (BLAS gemm with beta = 1: no temporary of acc's size). C-ordered
    ``acc = a @ b`` is the Fortran-ordered ``acc^T = b^T @ a^T``."""
    gemm = _blas.sgemm if acc.dtype == np.float32 else _blas.dgemm
    gemm(1.0, b.T, a.T, beta=1.0, c=acc.T, overwrite_c=1)


def _conv2d_grads_numba(gy, x, w, pads, groups, m, need_input, need_weight, x_shape):
    """:func:`conv2d_grads` with the numba tile kernels: ``GY = A gy A^T`` per tile (shared), then
    ``gx`` = overlap-add of ``B (GY U) B^T`` and ``dU = V^T GY`` (V recomputed from x).

    ``gw = G^T dU G`` is linear, so each thread adds every chunk's ``dU`` straight into its own
    3x3-domain sum, a block of input channels at a time: no per-thread alpha^2 x C x K array (4x the
    weight for F(4x4)), each block's ``dU`` (~1 MB) and its share of the sum stay in cache while they
    meet (blocking by transform position instead made every block read and write the whole sum), and
    the per-thread sums are added in a fixed order (reproducible)."""
    x_shape = x.shape if x is not None else tuple(x_shape)
    gy = np.ascontiguousarray(gy)
    x = None if x is None else np.ascontiguousarray(x)
    N, C, H, W = x_shape
    K, Cg = w.shape[:2]
    G, Kg = groups, K // groups
    a2 = (m + 2) ** 2
    P, Q, th, tw = _tiles(x_shape, pads, m)
    Hp = th * m + 2
    dt = gy.dtype
    AT, _, BT = matrices(m, 3, dt)
    KGT = np.ascontiguousarray(_kron(m, dt)[2].T)  # (9, a2)
    T1 = th * tw
    U = _filters(w, m, G) if need_input else None  # (G,a2,Kg,Cg)
    gx = np.empty(x_shape, dt) if need_input else None
    nb = _chunk(N, C, K, T1, dt)
    cstep = max(1, min(Cg, (1 << 20) // (a2 * Kg * dt.itemsize)))  # input channels per dU block (~1 MB)
    blocks = [(c0, min(Cg, c0 + cstep)) for c0 in range(0, Cg, cstep)]
    xq_size, gyq_size = nb * Hp * m * (tw + 1) * C, nb * th * m * m * tw * K

    def scratch():
        s = _Buffers(dt, a=max(xq_size, gyq_size), GY=a2 * nb * T1 * K, V=a2 * nb * T1 * C,
                     D=a2 * cstep * Kg if need_weight else 0)
        # block c0:c1 of the partial sum at 9*c0*Kg, laid out (9, c1-c0, Kg)
        s.gw = _zeros("winograd.gw", (G, 9 * Cg * Kg), dt) if need_weight else None
        return s

    def run(s, lo, hi):
        n = hi - lo
        T = n * T1
        gyq = s.get("a", (n, th * m, m, tw, K))
        _wn.gather_output_grad(gy, lo, gyq)
        GY = s.get("GY", (a2, T, K))
        _wn.output_adjoint(gyq, AT, th, tw, GY)
        if need_weight:
            xq = s.get("a", (n, Hp, m, tw + 1, C))
            _wn.gather_input(x, lo, pads[0], pads[2], xq)
            V = s.get("V", (a2, T, C))
            _wn.input_transform(xq, BT, th, tw, V)
            for g in range(G):
                for c0, c1 in blocks:  # dU[xi] = V[xi]^T @ GY[xi] for channels c0:c1; gw += G^T dU G
                    D = s.get("D", (a2, c1 - c0, Kg))
                    np.matmul(V[:, :, g * Cg + c0:g * Cg + c1].transpose(0, 2, 1), GY[:, :, g * Kg:(g + 1) * Kg],
                              out=D)
                    _add_gemm(s.gw[g, 9 * c0 * Kg:9 * c1 * Kg].reshape(9, (c1 - c0) * Kg), KGT,
                              D.reshape(a2, (c1 - c0) * Kg))
        if need_input:
            GX = s.get("V", (a2, T, C))
            for g in range(G):  # GX[xi] = GY[xi] @ U[xi]
                np.matmul(GY[:, :, g * Kg:(g + 1) * Kg], U[g], out=GX[:, :, g * Cg:(g + 1) * Cg])
            gxq = s.get("a", (n, Hp, m, tw + 1, C))
            _wn.input_adjoint(GX, BT, th, tw, gxq)
            _wn.scatter_input_grad(gxq, pads[0], pads[2], gx, lo)

    states = parallel_chunks(run, N, nb, scratch)
    gw = None
    if need_weight:
        acc = states[0].gw
        for s in states[1:]:
            acc += s.gw
        gw = np.empty((G, Kg, Cg, 3, 3), dt)
        for c0, c1 in blocks:
            gw[:, :, c0:c1] = acc[:, 9 * c0 * Kg:9 * c1 * Kg].reshape(G, 3, 3, c1 - c0, Kg).transpose(0, 4, 3, 1, 2)
        gw = gw.reshape(K, Cg, 3, 3)
    return gx, gw
