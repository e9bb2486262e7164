"""numba kernels for the tile transforms of the Winograd layer (:mod:`shendu.ops.kernels.winograd`).

Layouts, per chunk of ``n`` images (``t = (image * th + ty) * tw + tx`` numbers the tiles):

- ``xq[image, row, r, tq, c]``: the padded input, channels last, its columns split into the ``m``
  phases ``column = tq * m + r``. Tile ``tx`` reads column ``tx * m + j`` = phase ``j % m``, slot
  ``tx + j // m``, so for a fixed ``j`` the columns of all the tiles of a tile row are one contiguous
  run of ``L = tw * C`` values;
- ``V[xi, t, c]`` (``xi = i * alpha + j``): the transformed tiles ``B^T d B``, so the channel GEMMs are
  ``M[xi] = V[xi] (T x C) @ U[xi]^T (C x K)``; ``M[xi, t, k]`` the products;
- ``yq[image, row, j, tx, k]``: the output, channels last, columns split into phases ``j = column % m``.

So a 1-D transform along a tile row maps ``alpha`` contiguous runs of length L to ``alpha`` (or m)
runs, one pass with every value in registers: :func:`_apply` (a loop over the runs' position whose
body the compiler vectorizes). F(2x2, 3x3) and F(4x4, 3x3) have their transforms written out (few
operations, ±1 as adds); other sizes use the matrix (the generic path). The NCHW <-> phase layout
copies are scalar loops in their own kernels.

The kernels are serial (``nogil``): the chunk threads of :mod:`shendu.ops.kernels.parallel` run them,
each on its own chunk. :func:`forward_team` runs a whole inference forward on numba's OpenMP team
instead (:mod:`shendu.ops.kernels.team`): each thread takes its chunks through the same kernels and
calls BLAS itself for the channel GEMMs; :func:`forward_image_team` shares a single image's filter
transform, tiles and GEMMs among the threads in three phases. The NumPy code in
:mod:`shendu.ops.kernels.winograd` is the reference, and tests check the written-out transforms
against :func:`shendu.ops.kernels.winograd.matrices`.
"""

from __future__ import annotations

import numpy as np

from shendu.ops.kernels import team as _team

try:
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is optional
    AVAILABLE = False

__all__ = ["AVAILABLE", "forward_team", "forward_image_team", "filter_rows", "filter_groups", "filter_groups_team",
           "gather_input", "scatter_output", "gather_output_grad", "scatter_input_grad", "input_transform",
           "output_transform", "output_adjoint", "input_adjoint", "apply_transform", "BT", "B", "AT", "A"]

# which 1-D transform _apply runs (of F(m, 3)): z = B^T d, d = B z, y = A^T M, r = A g
BT, B, AT, A = 0, 1, 2, 3

if AVAILABLE:
    _opts = dict(cache=True, nogil=True)
    # Constants as float32: exact for these small integers, and float32 * float32 stays float32 (a
    # Python int would promote the float32 kernels to float64).
    _2, _4, _5, _8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)

    @njit(**_opts)
    def _apply(kind, m, mat, src, so, dst, do, L):  # pragma: no cover - compiled
        """``dst[do[k]:do[k] + L] = sum_j T[k, j] src[so[j]:so[j] + L]`` for the transform ``kind`` of
        F(m, 3) (``mat``: its matrix, used for sizes without a written-out version).

        Runs are contiguous 1-D slices, so every statement below vectorizes over q."""
        a = m + 2
        if m == 4 and kind == BT:
            s0, s1, s2, s3, s4, s5 = (src[so[0]:so[0] + L], src[so[1]:so[1] + L], src[so[2]:so[2] + L],
                                      src[so[3]:so[3] + L], src[so[4]:so[4] + L], src[so[5]:so[5] + L])
            z0, z1, z2, z3, z4, z5 = (dst[do[0]:do[0] + L], dst[do[1]:do[1] + L], dst[do[2]:do[2] + L],
                                      dst[do[3]:do[3] + L], dst[do[4]:do[4] + L], dst[do[5]:do[5] + L])
            for q in range(L):
                d0, d1, d2, d3, d4, d5 = s0[q], s1[q], s2[q], s3[q], s4[q], s5[q]
                z0[q] = _4 * d0 - _5 * d2 + d4
                z1[q] = (d3 + d4) - _4 * (d1 + d2)
                z2[q] = (d4 - d3) + _4 * (d1 - d2)
                z3[q] = (d4 - d2) + _2 * (d3 - d1)
                z4[q] = (d4 - d2) - _2 * (d3 - d1)
                z5[q] = _4 * d1 - _5 * d3 + d5
        elif m == 4 and kind == B:
            s0, s1, s2, s3, s4, s5 = (src[so[0]:so[0] + L], src[so[1]:so[1] + L], src[so[2]:so[2] + L],
                                      src[so[3]:so[3] + L], src[so[4]:so[4] + L], src[so[5]:so[5] + L])
            e0, e1, e2, e3, e4, e5 = (dst[do[0]:do[0] + L], dst[do[1]:do[1] + L], dst[do[2]:do[2] + L],
                                      dst[do[3]:do[3] + L], dst[do[4]:do[4] + L], dst[do[5]:do[5] + L])
            for q in range(L):
                z0, z1, z2, z3, z4, z5 = s0[q], s1[q], s2[q], s3[q], s4[q], s5[q]
                e0[q] = _4 * z0
                e1[q] = _4 * (z2 - z1 + z5) + _2 * (z4 - z3)
                e2[q] = -(_5 * z0 + _4 * (z1 + z2) + z3 + z4)
                e3[q] = (z1 - z2) + _2 * (z3 - z4) - _5 * z5
                e4[q] = z0 + z1 + z2 + z3 + z4
                e5[q] = z5
        elif m == 4 and kind == AT:
            s0, s1, s2, s3, s4, s5 = (src[so[0]:so[0] + L], src[so[1]:so[1] + L], src[so[2]:so[2] + L],
                                      src[so[3]:so[3] + L], src[so[4]:so[4] + L], src[so[5]:so[5] + L])
            y0, y1, y2, y3 = dst[do[0]:do[0] + L], dst[do[1]:do[1] + L], dst[do[2]:do[2] + L], dst[do[3]:do[3] + L]
            for q in range(L):
                m0, m1, m2, m3, m4, m5 = s0[q], s1[q], s2[q], s3[q], s4[q], s5[q]
                p, d, p2, d2 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
                y0[q] = m0 + p + p2
                y1[q] = d + _2 * d2
                y2[q] = p + _4 * p2
                y3[q] = d + _8 * d2 + m5
        elif m == 4 and kind == A:
            s0, s1, s2, s3 = src[so[0]:so[0] + L], src[so[1]:so[1] + L], src[so[2]:so[2] + L], src[so[3]:so[3] + L]
            r0, r1, r2, r3, r4, r5 = (dst[do[0]:do[0] + L], dst[do[1]:do[1] + L], dst[do[2]:do[2] + L],
                                      dst[do[3]:do[3] + L], dst[do[4]:do[4] + L], dst[do[5]:do[5] + L])
            for q in range(L):
                g0, g1, g2, g3 = s0[q], s1[q], s2[q], s3[q]
                e, o, e2, o2 = g0 + g2, g1 + g3, g0 + _4 * g2, _2 * g1 + _8 * g3
                r0[q] = g0
                r1[q] = e + o
                r2[q] = e - o
                r3[q] = e2 + o2
                r4[q] = e2 - o2
                r5[q] = g3
        elif m == 2 and kind == BT:
            s0, s1, s2, s3 = src[so[0]:so[0] + L], src[so[1]:so[1] + L], src[so[2]:so[2] + L], src[so[3]:so[3] + L]
            z0, z1, z2, z3 = dst[do[0]:do[0] + L], dst[do[1]:do[1] + L], dst[do[2]:do[2] + L], dst[do[3]:do[3] + L]
            for q in range(L):
                d0, d1, d2, d3 = s0[q], s1[q], s2[q], s3[q]
                z0[q] = d2 - d0
                z1[q] = d1 + d2
                z2[q] = d2 - d1
                z3[q] = d3 - d1
        elif m == 2 and kind == B:
            s0, s1, s2, s3 = src[so[0]:so[0] + L], src[so[1]:so[1] + L], src[so[2]:so[2] + L], src[so[3]:so[3] + L]
            e0, e1, e2, e3 = dst[do[0]:do[0] + L], dst[do[1]:do[1] + L], dst[do[2]:do[2] + L], dst[do[3]:do[3] + L]
            for q in range(L):
                z0, z1, z2, z3 = s0[q], s1[q], s2[q], s3[q]
                e0[q] = -z0
                e1[q] = z1 - z2 - z3
                e2[q] = z0 + z1 + z2
                e3[q] = z3
        elif m == 2 and kind == AT:
            s0, s1, s2, s3 = src[so[0]:so[0] + L], src[so[1]:so[1] + L], src[so[2]:so[2] + L], src[so[3]:so[3] + L]
            y0, y1 = dst[do[0]:do[0] + L], dst[do[1]:do[1] + L]
            for q in range(L):
                y0[q] = s0[q] + s1[q] + s2[q]
                y1[q] = s1[q] - s2[q] + s3[q]
        elif m == 2 and kind == A:
            s0, s1 = src[so[0]:so[0] + L], src[so[1]:so[1] + L]
            r0, r1, r2, r3 = dst[do[0]:do[0] + L], dst[do[1]:do[1] + L], dst[do[2]:do[2] + L], dst[do[3]:do[3] + L]
            for q in range(L):
                g0, g1 = s0[q], s1[q]
                r0[q] = g0
                r1[q] = g0 + g1
                r2[q] = g0 - g1
                r3[q] = g1
        else:  # any other F(m, 3): the matrix, one scaled run at a time
            n_out, n_in = (a, a) if kind <= B else ((m, a) if kind == AT else (a, m))
            for k in range(n_out):
                d = dst[do[k]:do[k] + L]
                d[:] = 0
                for j in range(n_in):
                    c = mat[k, j] if kind != B and kind != A else mat[j, k]
                    if c != 0:
                        s = src[so[j]:so[j] + L]
                        for q in range(L):
                            d[q] += c * s[q]

    def apply_transform(kind, m, mat, rows):
        """The 1-D transform ``kind`` of F(m, 3) on ``rows`` (n_in, L): the kernel's output rows, for
        the tests that check the written-out transforms against the matrices."""
        rows = np.ascontiguousarray(rows)
        n_in, L = rows.shape
        n_out = m if kind == AT else m + 2
        out = np.empty((n_out, L), rows.dtype)
        _apply(kind, m, np.ascontiguousarray(mat, rows.dtype), rows.reshape(-1), np.arange(n_in) * L,
               out.reshape(-1), np.arange(n_out) * L, L)
        return out

    @njit(**_opts)
    def input_transform(xq, mat, th, tw, V):  # pragma: no cover - compiled
        """``V[:, t] = B^T d B`` for every tile ``d`` of the phase-split images ``xq``
        (``mat``: the B^T matrix)."""
        n, Hp, m, tq, C = xq.shape
        a = m + 2
        T = V.shape[1]
        L = tw * C
        xf, vf = xq.reshape(-1), V.reshape(-1)
        Z = np.empty(a * a * L, V.dtype)
        so, do = np.empty(a, np.int64), np.empty(a, np.int64)
        for img in range(n):
            for ty in range(th):
                t0 = (img * th + ty) * tw
                for i in range(a):  # along the columns: Z[i, jp] = sum_j BT[jp, j] d[i, j]
                    row = (img * Hp + ty * m + i) * m
                    for j in range(a):
                        so[j] = ((row + j % m) * tq + j // m) * C
                        do[j] = (i * a + j) * L
                    _apply(BT, m, mat, xf, so, Z, do, L)
                for jp in range(a):  # along the rows: V[ip a + jp] = sum_i BT[ip, i] Z[i, jp]
                    for i in range(a):
                        so[i] = (i * a + jp) * L
                        do[i] = ((i * a + jp) * T + t0) * C
                    _apply(BT, m, mat, Z, so, vf, do, L)

    @njit(**_opts)
    def output_transform(M, mat, th, tw, yq):  # pragma: no cover - compiled
        """The output tiles ``A^T M A`` into the phase-split ``yq`` (``mat``: the A^T matrix)."""
        n, R_, m, _, K = yq.shape
        a = m + 2
        T = M.shape[1]
        L = tw * K
        mf, yf = M.reshape(-1), yq.reshape(-1)
        R = np.empty(m * a * L, M.dtype)
        so, do = np.empty(a, np.int64), np.empty(a, np.int64)
        for img in range(n):
            for ty in range(th):
                t0 = (img * th + ty) * tw
                for jp in range(a):  # R[i, jp] = sum_ip AT[i, ip] M[ip a + jp]
                    for ip in range(a):
                        so[ip] = ((ip * a + jp) * T + t0) * K
                    for i in range(m):
                        do[i] = (i * a + jp) * L
                    _apply(AT, m, mat, mf, so, R, do, L)
                for i in range(m):  # yq[row i, phase j] = sum_jp AT[j, jp] R[i, jp]
                    for jp in range(a):
                        so[jp] = (i * a + jp) * L
                    for j in range(m):
                        do[j] = ((img * R_ + ty * m + i) * m + j) * L
                    _apply(AT, m, mat, R, so, yf, do, L)

    @njit(**_opts)
    def output_adjoint(gyq, mat, th, tw, GY):  # pragma: no cover - compiled
        """``GY[:, t] = A g A^T`` for every ``m x m`` tile ``g`` of the phase-split ``gyq``: the
        adjoint of :func:`output_transform` (``mat``: the A^T matrix)."""
        n, R_, m, _, K = gyq.shape
        a = m + 2
        T = GY.shape[1]
        L = tw * K
        gf, of = gyq.reshape(-1), GY.reshape(-1)
        R = np.empty(m * a * L, GY.dtype)
        so, do = np.empty(a, np.int64), np.empty(a, np.int64)
        for img in range(n):
            for ty in range(th):
                t0 = (img * th + ty) * tw
                for i in range(m):  # R[i, jp] = sum_j AT[j, jp] g[i, j]
                    for j in range(m):
                        so[j] = ((img * R_ + ty * m + i) * m + j) * L
                    for jp in range(a):
                        do[jp] = (i * a + jp) * L
                    _apply(A, m, mat, gf, so, R, do, L)
                for jp in range(a):  # GY[ip a + jp] = sum_i AT[i, ip] R[i, jp]
                    for i in range(m):
                        so[i] = (i * a + jp) * L
                    for ip in range(a):
                        do[ip] = ((ip * a + jp) * T + t0) * K
                    _apply(A, m, mat, R, so, of, do, L)

    @njit(**_opts)
    def input_adjoint(GX, mat, th, tw, gxq):  # pragma: no cover - compiled
        """Overlap-add of ``B GX B^T`` over every tile into the phase-split ``gxq`` (overwritten):
        the adjoint of :func:`input_transform` (``mat``: the B^T matrix)."""
        n, Hp, m, tq, C = gxq.shape
        a = m + 2
        T = GX.shape[1]
        L = tw * C
        gf, of = GX.reshape(-1), gxq.reshape(-1)
        Z = np.empty(a * a * L, GX.dtype)
        E = np.empty(a * L, GX.dtype)
        so, do = np.empty(a, np.int64), np.empty(a, np.int64)
        of[:] = 0
        for img in range(n):
            for ty in range(th):
                t0 = (img * th + ty) * tw
                for jp in range(a):  # Z[i, jp] = sum_ip BT[ip, i] GX[ip a + jp]
                    for ip in range(a):
                        so[ip] = ((ip * a + jp) * T + t0) * C
                        do[ip] = (ip * a + jp) * L
                    _apply(B, m, mat, gf, so, Z, do, L)
                for i in range(a):  # d[i, j] += sum_jp BT[jp, j] Z[i, jp]
                    for j in range(a):
                        so[j] = (i * a + j) * L
                        do[j] = j * L
                    _apply(B, m, mat, Z, so, E, do, L)
                    row = (img * Hp + ty * m + i) * m
                    for j in range(a):  # tiles overlap (j and j + m hit the same columns): add
                        d = of[((row + j % m) * tq + j // m) * C:][:L]
                        e = E[j * L:(j + 1) * L]
                        for q in range(L):
                            d[q] += e[q]

    # ---------------------------------------------------------------- NCHW <-> phase-split layouts
    # Scalar copies whose inner loop runs over the channels-last buffer (contiguous, in cache) and
    # strides through the NCHW array: measured fastest both ways (1.4x / 2.2x over the other loop
    # order). No integer division in an inner loop; unsigned indices, so numba adds no
    # negative-index checks.

    @njit(**_opts)
    def gather_input(x, lo, top, left, xq):  # pragma: no cover - compiled
        """``xq[i, top + h, (left + w) % m, (left + w) // m, c] = x[lo + i, c, h, w]``, zeros elsewhere
        (a negative ``top`` gathers a band of rows: xq's row 0 is padded row ``-top``)."""
        n, Hp, m, tq, C = xq.shape
        H, W = x.shape[2], x.shape[3]
        xf, qf = x.reshape(-1), xq.reshape(-1)
        qf[:] = 0
        hw = np.uint64(H * W)
        for img in range(n):
            for h in range(max(0, -top), min(H, Hp - top)):
                for w in range(W):
                    wp = w + left
                    d0 = (((img * Hp + top + h) * m + wp % m) * tq + wp // m) * C
                    s0 = np.uint64((((lo + img) * C) * H + h) * W + w)
                    for c in range(C):
                        qf[np.uint64(d0 + c)] = xf[s0 + np.uint64(c) * hw]

    @njit(**_opts)
    def scatter_output(yq, y, lo, row0):  # pragma: no cover - compiled
        """``y[lo + i, k, row0 + r, col] = yq[i, r, col % m, col // m, k]`` for the rows/columns of ``y``
        (``row0``: where a band of tile rows starts; 0 for whole images)."""
        n, R_, m, tw, K = yq.shape
        P, Q = y.shape[2], y.shape[3]
        qf, yf = yq.reshape(-1), y.reshape(-1)
        pq = np.uint64(P * Q)
        for img in range(n):
            for r in range(min(R_, P - row0)):
                for j in range(m):
                    for tx in range(tw):
                        col = tx * m + j
                        if col < Q:
                            s0 = (((img * R_ + r) * m + j) * tw + tx) * K
                            d0 = np.uint64(((lo + img) * K * P + row0 + r) * Q + col)
                            for k in range(K):
                                yf[d0 + np.uint64(k) * pq] = qf[np.uint64(s0 + k)]

    @njit(**_opts)
    def gather_output_grad(gy, lo, gyq):  # pragma: no cover - compiled
        """``gyq[i, r, col % m, col // m, k] = gy[lo + i, k, r, col]``, zeros past gy's rows/columns."""
        n, R_, m, tw, K = gyq.shape
        P, Q = gy.shape[2], gy.shape[3]
        gf, qf = gy.reshape(-1), gyq.reshape(-1)
        qf[:] = 0
        pq = np.uint64(P * Q)
        for img in range(n):
            for r in range(P):
                for tx in range(tw):
                    for j in range(min(m, Q - tx * m)):
                        d0 = (((img * R_ + r) * m + j) * tw + tx) * K
                        s0 = np.uint64(((lo + img) * K * P + r) * Q + tx * m + j)
                        for k in range(K):
                            qf[np.uint64(d0 + k)] = gf[s0 + np.uint64(k) * pq]

    @njit(**_opts)
    def scatter_input_grad(gxq, top, left, gx, lo):  # pragma: no cover - compiled
        """``gx[lo + i, c, h, w] = gxq[i, top + h, (left + w) % m, (left + w) // m, c]``."""
        n, Hp, m, tq, C = gxq.shape
        H, W = gx.shape[2], gx.shape[3]
        qf, gf = gxq.reshape(-1), gx.reshape(-1)
        hw = np.uint64(H * W)
        for img in range(n):
            for h in range(H):
                for sq in range(tq):  # padded column sq * m + r holds input column sq * m + r - left
                    for r in range(m):
                        w = sq * m + r - left
                        if 0 <= w < W:
                            s0 = (((img * Hp + top + h) * m + r) * tq + sq) * C
                            d0 = np.uint64((((lo + img) * C) * H + h) * W + w)
                            for c in range(C):
                                gf[d0 + np.uint64(c) * hw] = qf[np.uint64(s0 + c)]

    @njit(nogil=True, cache=True)
    def _band_input(x, lo, n, top, left, BT, a2, row0, th, tw, abuf, vbuf):  # pragma: no cover - compiled
        """Images lo..lo+n, the ``th`` tile rows of the band starting at output row ``row0``: gather and
        ``V = B^T d B`` into ``vbuf``, returned as (alpha^2, T, C)."""
        C = x.shape[1]
        m = BT.shape[0] - 2
        Hp = th * m + 2
        xq = abuf[:n * Hp * m * (tw + 1) * C].reshape((n, Hp, m, tw + 1, C))
        gather_input(x, lo, top - row0, left, xq)
        V = vbuf[:a2 * n * th * tw * C].reshape((a2, n * th * tw, C))
        input_transform(xq, BT, th, tw, V)
        return V

    @njit(nogil=True, cache=True)
    def _band_gemm(V, U, M, xi, ints, consts):  # pragma: no cover - compiled
        """``M[xi] (T x K) = V[xi] (T x C) @ U[xi]^T`` (``U[xi]`` stored K x C), by BLAS through
        :func:`shendu.ops.kernels.team._call`."""
        T, C = V.shape[1], V.shape[2]
        K = U.shape[1]
        it = V.itemsize
        _team._call(ints, consts, it, 0, 1, T, K, C, V.ctypes.data + xi * T * C * it, C,
                    U.ctypes.data + xi * K * C * it, C, M.ctypes.data + xi * T * K * it, K)

    @njit(nogil=True, cache=True)
    def _band_output(M, AT, y, lo, n, row0, th, tw, abuf):  # pragma: no cover - compiled
        """``Y = A^T M A`` of the band's tiles, scattered into ``y``."""
        m = AT.shape[0]
        K = M.shape[2]
        yq = abuf[:n * th * m * m * tw * K].reshape((n, th * m, m, tw, K))
        output_transform(M, AT, th, tw, yq)
        scatter_output(yq, y, lo, row0)

    @njit(nogil=True, cache=True)
    def _forward_band(x, lo, n, top, left, BT, AT, U, y, row0, th, tw, abuf, vbuf, mbuf, ints,
                      consts):  # pragma: no cover - compiled
        """Images lo..lo+n, tile rows of the band starting at output row ``row0`` (``th`` of them), through
        the whole forward: gather, ``V = B^T d B``, ``M[xi] = V[xi] @ U[xi]^T`` (``U``: (alpha^2, K, C)
        transformed filters), ``Y = A^T M A``, scatter into ``y``. ``abuf``, ``vbuf``, ``mbuf``: this
        thread's scratch."""
        a2, K = U.shape[0], U.shape[1]
        V = _band_input(x, lo, n, top, left, BT, a2, row0, th, tw, abuf, vbuf)
        M = mbuf[:a2 * V.shape[1] * K].reshape((a2, V.shape[1], K))
        for xi in range(a2):
            _band_gemm(V, U, M, xi, ints, consts)
        _band_output(M, AT, y, lo, n, row0, th, tw, abuf)

    @njit(nogil=True, cache=True)
    def filter_rows(w9, G, U, lo, hi):  # pragma: no cover - compiled
        """``U[i alpha + j, f] = (G g_f G^T)[i, j]`` for the filters ``f`` in lo:hi (``w9``: the (K C, 9)
        weights, ``G``: (alpha, 3), ``U``: (alpha^2, K C)), separably (G along the rows, then along the
        columns: 3 alpha (alpha + 3) multiply-adds a filter, half of ``kron(G, G)``'s 9 alpha^2), by blocks
        of 256 filters first laid out tap-major so that every loop over filters vectorizes. Measured on
        256 x 256 filters, one thread: 0.33 ms for F(2x2) and 0.54 for F(4x4), against 1.0 and 2.4 for the
        BLAS GEMM with its inner dimension of 9."""
        al = G.shape[0]
        B = 256
        g = np.empty((9, B), w9.dtype)
        t1 = np.empty((al * 3, B), w9.dtype)
        for f0 in range(lo, hi, B):
            fb = min(B, hi - f0)
            for q in range(fb):
                for j in range(9):
                    g[j, q] = w9[f0 + q, j]
            for i in range(al):  # t1[i, b] = sum_a G[i, a] g[a, b]
                c0, c1, c2 = G[i, 0], G[i, 1], G[i, 2]
                for b in range(3):
                    d = t1[i * 3 + b]
                    s0, s1, s2 = g[b], g[3 + b], g[6 + b]
                    for q in range(fb):
                        d[q] = c0 * s0[q] + c1 * s1[q] + c2 * s2[q]
            for i in range(al):  # U[i, j] = sum_b t1[i, b] G[j, b]
                s0, s1, s2 = t1[i * 3], t1[i * 3 + 1], t1[i * 3 + 2]
                for j in range(al):
                    c0, c1, c2 = G[j, 0], G[j, 1], G[j, 2]
                    d = U[i * al + j, f0:f0 + fb]
                    for q in range(fb):
                        d[q] = c0 * s0[q] + c1 * s1[q] + c2 * s2[q]

    @njit(parallel=True, nogil=True, cache=True)
    def forward_team(x, top, left, BT, AT, U, y, nb, th, tw, abuf, vbuf, mbuf, ints, consts,
                     threads):  # pragma: no cover - compiled
        """The forward of :func:`shendu.ops.kernels.winograd.conv2d` (one group) on ``threads`` threads
        of the team, thread t taking chunks t, t + threads, ... of ``nb`` images (:func:`_forward_band`
        on each; per-thread scratch rows ``abuf[t]`` ...; ``ints``/``consts``: BLAS's by-address
        arguments)."""
        N = x.shape[0]
        chunks = (N + nb - 1) // nb
        for t in prange(threads):
            for ch in range(t, chunks, threads):
                lo = ch * nb
                _forward_band(x, lo, min(N, lo + nb) - lo, top, left, BT, AT, U, y, 0, th, tw, abuf[t], vbuf[t],
                              mbuf[t], ints[t], consts)

    @njit(nogil=True, cache=True)
    def filter_groups(w9, G, U, lo, hi):  # pragma: no cover - compiled
        """:func:`filter_rows` of the filters lo:hi of every group (``w9``: (groups, K C/groups, 9),
        ``U``: (groups, alpha^2, K C/groups))."""
        for g in range(w9.shape[0]):
            filter_rows(w9[g], G, U[g], lo, hi)

    @njit(parallel=True, nogil=True, cache=True)
    def filter_groups_team(w9, G, U, threads):  # pragma: no cover - compiled
        """:func:`filter_groups`, thread t taking its share of each group's filters."""
        n = w9.shape[1]
        for t in prange(threads):
            filter_groups(w9, G, U, n * t // threads, n * (t + 1) // threads)

    @njit(parallel=True, nogil=True, cache=True)
    def forward_image_team(x, w9, G, top, left, BT, AT, U, y, th, tw, abuf, vbuf, mbuf, ints, consts,
                           threads):  # pragma: no cover - compiled
        """:func:`forward_team` for a single image, in three phases (each a parallel loop; the team
        waits at the end of each): (1) thread t transforms its share of the filters into ``U``
        (:func:`filter_rows`) and gathers and transforms the tiles of its band of tile rows; (2) thread
        t runs the channel GEMMs of its share of the alpha^2 positions, for every band, so each ``U[xi]``
        is read by one thread, while in cache; (3) thread t transforms and scatters its band's output.
        Splitting the whole forward by bands instead made every thread read all of ``U`` (at batch 1 a
        deep layer's U, 4x its weights for F(4x4), is larger than its tiles)."""
        a2, K, C = U.shape
        m = AT.shape[0]
        KC = K * C
        Uf = U.reshape((a2, KC))
        for t in prange(threads):
            filter_rows(w9, G, Uf, KC * t // threads, KC * (t + 1) // threads)
            ty0, ty1 = th * t // threads, th * (t + 1) // threads
            if ty1 > ty0:
                _band_input(x, 0, 1, top, left, BT, a2, ty0 * m, ty1 - ty0, tw, abuf[t], vbuf[t])
        for s in prange(threads):
            for xi in range(a2 * s // threads, a2 * (s + 1) // threads):
                for t in range(threads):
                    T = (th * (t + 1) // threads - th * t // threads) * tw
                    if T:
                        V = vbuf[t][:a2 * T * C].reshape((a2, T, C))
                        M = mbuf[t][:a2 * T * K].reshape((a2, T, K))
                        _band_gemm(V, U, M, xi, ints[s], consts)
        for t in prange(threads):
            ty0, ty1 = th * t // threads, th * (t + 1) // threads
            if ty1 > ty0:
                T = (ty1 - ty0) * tw
                _band_output(mbuf[t][:a2 * T * K].reshape((a2, T, K)), AT, y, 0, 1, ty0 * m, ty1 - ty0, tw, abuf[t])
