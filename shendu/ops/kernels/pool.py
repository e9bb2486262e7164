"""Array kernels for pooling (no autograd): window geometry, max/avg pooling forward and backward,
pooling over variable bins (adaptive and fractional), and separable resampling matrices.

Every kernel works on planes: ``x`` of shape ``(P, H, W)`` where ``P`` gathers all leading dims
(batch, channels), so 1-d pooling is 2-d pooling with ``H = 1``. Indices are flat within a plane
(``h * W + w``), as torch's ``return_indices``.

Max pooling has two implementations that give identical results:

- the NumPy reference (a loop over the ``kh * kw`` kernel offsets on strided views, a running
  max/argmax, ``bincount`` scatter for backward, and a reshape fast path for ``k == stride``);
- a numba kernel (one pass, planes split over the cores by shendu's kernel pool), used when numba is importable because
  NumPy's offset loop costs ~9 full passes for a 3x3 window and cannot get close to torch. The two windows
  networks use most have their own kernels whose inner loop has no bounds checks: 2x2/2 (VGG, LeNet) and
  3x3/2 with padding 0 or 1 (ResNet's stem: 64 x 112 x 112 planes, 6.2 -> 4.8 ms on one thread).
  Set ``USE_NUMBA = False`` to force the reference (the tests compare both).

An inference forward that returns no indices needs no arg-max: :func:`max_pool2d_values` computes the
values alone, the 3x3/2 window separably (3 + 3 comparisons an output instead of 9), on numba's OpenMP
team for large inputs. ResNet's stem pool at batch 1 (64 x 112 x 112): 1.9 ms -> 0.36 ms (torch 3.0 ms).
"""

from __future__ import annotations

import math

import numpy as np

from shendu.ops.kernels import parallel
from shendu.ops.kernels import team as _team
from shendu.ops.kernels.parallel import split_rows

__all__ = ["out_size", "max_pool2d_forward", "max_pool2d_values", "max_pool2d_backward", "avg_pool2d_forward",
           "avg_pool2d_backward", "avg_pool2d_numpy", "avg_pool2d_backward_numpy", "adaptive_bins",
           "bin_max_forward", "scatter_planes", "resample_matrix", "USE_NUMBA"]

try:  # numba is the accepted escape hatch for the hot max-pool loops; NumPy remains the reference
    import numba

    USE_NUMBA = True
except ImportError:  # pragma: no cover - numba is installed where shendu is tested
    numba = None
    USE_NUMBA = False


def out_size(L: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    """Pooled length: ``floor_or_ceil((L + 2p - d(k-1) - 1) / s) + 1``; in ceil mode the last window
    is dropped when it would start in the right padding (torch's rule)."""
    span = L + 2 * p - d * (k - 1) - 1
    n = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n - 1) * s >= L + p:
        n -= 1
    return n


# ------------------------------------------------------------------------------------------- max pool
def _padded(x, ph, pw, Hp, Wp, fill):
    """``x`` (P, H, W) placed at (ph, pw) in a (P, Hp, Wp) array of ``fill``; no copy when not needed."""
    P, H, W = x.shape
    if ph == 0 and pw == 0 and Hp <= H and Wp <= W:
        return x
    out = np.full((P, max(Hp, H + ph), max(Wp, W + pw)), fill, dtype=x.dtype)
    out[:, ph:ph + H, pw:pw + W] = x
    return out


def _offset_view(xp, u, v, sh, sw, OH, OW):
    """The input values read by kernel offset (u, v) (already multiplied by dilation) for every output."""
    return xp[:, u:u + sh * (OH - 1) + 1:sh, v:v + sw * (OW - 1) + 1:sw]


def max_pool2d_numpy(x, k, s, p, d, out):
    """Reference max pooling: ``(y, idx)`` with the first maximum winning ties and NaN propagating."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (OH, OW) = k, s, p, d, out
    P, H, W = x.shape
    if (kh, kw) == (sh, sw) and p == (0, 0) and d == (1, 1) and OH * kh <= H and OW * kw <= W:
        # non-overlapping windows inside the input: one reshape
        r = x[:, :OH * kh, :OW * kw].reshape(P, OH, kh, OW, kw).transpose(0, 1, 3, 2, 4).reshape(P, OH, OW, -1)
        a = r.argmax(-1)
        y = np.take_along_axis(r, a[..., None], -1)[..., 0]
        u, v = np.divmod(a, kw)
    else:
        xp = _padded(x, ph, pw, (OH - 1) * sh + (kh - 1) * dh + 1, (OW - 1) * sw + (kw - 1) * dw + 1, -np.inf)
        y = a = None
        for ku in range(kh):
            for kv in range(kw):
                val = _offset_view(xp, ku * dh, kv * dw, sh, sw, OH, OW)
                if y is None:
                    y, a = val.copy(), np.zeros(val.shape, np.int64)
                    continue
                better = (val > y) | np.isnan(val)
                np.copyto(y, val, where=better)
                a[better] = ku * kw + kv
        u, v = np.divmod(a, kw)
    rows = np.arange(OH)[:, None] * sh - ph + u * dh
    cols = np.arange(OW)[None, :] * sw - pw + v * dw
    return y, rows * W + cols


if numba is not None:
    @numba.njit(cache=True, nogil=True)
    def _max_pool2d_numba(x, kh, kw, sh, sw, ph, pw, dh, dw, y, idx, lo, hi):  # pragma: no cover - compiled
        P, H, W = x.shape
        OH, OW = y.shape[1], y.shape[2]
        for p in range(lo, hi):
            for i in range(OH):
                h0 = i * sh - ph
                for j in range(OW):
                    w0 = j * sw - pw
                    best = -np.inf
                    bi = -1
                    for u in range(kh):
                        h = h0 + u * dh
                        if h < 0 or h >= H:
                            continue
                        for v in range(kw):
                            w = w0 + v * dw
                            if w < 0 or w >= W:
                                continue
                            val = x[p, h, w]
                            if val > best or np.isnan(val):
                                best = val
                                bi = h * W + w
                    y[p, i, j] = best
                    idx[p, i, j] = bi

    @numba.njit(cache=True, nogil=True)
    def _max_pool2x2_numba(x, y, idx, lo, hi):  # pragma: no cover - compiled
        # the common 2x2/2 window, unrolled and branch-free so the loop over j vectorizes (~4x the
        # general kernel); same comparisons in the same order, so the same results
        W = x.shape[2]
        OH, OW = y.shape[1], y.shape[2]
        for p in range(lo, hi):
            for i in range(OH):
                r0 = x[p, 2 * i]
                r1 = x[p, 2 * i + 1]
                yr = y[p, i]
                ir = idx[p, i]
                base = 2 * i * W
                for j in range(OW):
                    best = r0[2 * j]
                    bi = base + 2 * j
                    v = r0[2 * j + 1]
                    t = (v > best) | (v != v)
                    best = v if t else best
                    bi = base + 2 * j + 1 if t else bi
                    v = r1[2 * j]
                    t = (v > best) | (v != v)
                    best = v if t else best
                    bi = base + W + 2 * j if t else bi
                    v = r1[2 * j + 1]
                    t = (v > best) | (v != v)
                    best = v if t else best
                    bi = base + W + 2 * j + 1 if t else bi
                    yr[j] = best
                    ir[j] = bi

    @numba.njit(cache=True, nogil=True)
    def _max_pool3x3s2_numba(x, ph, pw, y, idx, lo, hi):  # pragma: no cover - compiled
        # the 3x3/2 window of ResNet's stem (padding 0 or 1): rows outside the image are skipped per
        # output row, and the columns whose three taps are all inside run branch-free over j, so that
        # loop vectorizes; the taps are compared in the general kernel's order (row by row, left to
        # right, first maximum wins, NaN propagates), so the results are the same
        P, H, W = x.shape
        OH, OW = y.shape[1], y.shape[2]
        j0 = (pw + 1) // 2  # first output column whose window starts inside the image
        j1 = max(j0, min(OW, (W - 3 + pw) // 2 + 1))  # past the last one whose window ends inside
        for p in range(lo, hi):
            for i in range(OH):
                yr = y[p, i]
                ir = idx[p, i]
                for j in range(OW):
                    yr[j] = -np.inf
                    ir[j] = -1
                for u in range(3):
                    h = 2 * i - ph + u
                    if h < 0 or h >= H:
                        continue
                    r = x[p, h]
                    base = h * W
                    for j in range(j0, j1):
                        w = 2 * j - pw
                        best = yr[j]
                        bi = ir[j]
                        for v in range(3):
                            val = r[w + v]
                            t = (val > best) | (val != val)
                            best = val if t else best
                            bi = base + w + v if t else bi
                        yr[j] = best
                        ir[j] = bi
                    for e in range(j0 + OW - j1):  # the edge windows (j < j0, j >= j1): bounds-checked
                        j = e if e < j0 else j1 + e - j0
                        w0 = 2 * j - pw
                        for v in range(3):
                            w = w0 + v
                            if w < 0 or w >= W:
                                continue
                            val = r[w]
                            if val > yr[j] or val != val:
                                yr[j] = val
                                ir[j] = base + w

    @numba.njit(cache=True, nogil=True)
    def _max_pool3x3s2_values(x, ph, pw, y, lo, hi):  # pragma: no cover - compiled
        # values only (inference), separably: the three taps of each window's columns, row by row of
        # the input, then the three rows of each output row (contiguous, so that loop vectorizes);
        # 3 + 3 comparisons an output instead of 9 with arg-max bookkeeping. NaN propagates.
        P, H, W = x.shape
        OH, OW = y.shape[1], y.shape[2]
        j0 = (pw + 1) // 2
        j1 = max(j0, min(OW, (W - 3 + pw) // 2 + 1))
        cm = np.empty((H, OW), x.dtype)  # cm[h, j]: the max of window j's columns in input row h
        for p in range(lo, hi):
            for h in range(H):
                r = x[p, h]
                o = cm[h]
                for j in range(j0, j1):
                    w = 2 * j - pw
                    m = r[w]
                    for v in range(1, 3):
                        val = r[w + v]
                        m = val if (val > m) | (val != val) else m
                    o[j] = m
                for e in range(j0 + OW - j1):
                    j = e if e < j0 else j1 + e - j0
                    m = -np.inf
                    for v in range(3):
                        w = 2 * j - pw + v
                        if 0 <= w < W:
                            val = r[w]
                            m = val if (val > m) | (val != val) else m
                    o[j] = m
            for i in range(OH):
                yr = y[p, i]
                first = True
                for u in range(3):
                    h = 2 * i - ph + u
                    if h < 0 or h >= H:
                        continue
                    src = cm[h]
                    if first:
                        for j in range(OW):
                            yr[j] = src[j]
                        first = False
                    else:
                        for j in range(OW):
                            val = src[j]
                            m = yr[j]
                            yr[j] = val if (val > m) | (val != val) else m

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _max_pool3x3s2_values_team(x, ph, pw, y, threads):  # pragma: no cover - compiled
        P = x.shape[0]
        for t in numba.prange(threads):
            _max_pool3x3s2_values(x, ph, pw, y, P * t // threads, P * (t + 1) // threads)

    @numba.njit(cache=True, nogil=True)
    def _max_pool2x2_values(x, y, lo, hi):  # pragma: no cover - compiled
        # values only (inference): measured on 32 x 28 x 28 float32, 4.6 us against the arg-max kernel's 26
        OH, OW = y.shape[1], y.shape[2]
        for p in range(lo, hi):
            for i in range(OH):
                r0 = x[p, 2 * i]
                r1 = x[p, 2 * i + 1]
                yr = y[p, i]
                for j in range(OW):
                    m = r0[2 * j]
                    v = r0[2 * j + 1]
                    m = v if (v > m) | (v != v) else m
                    v = r1[2 * j]
                    m = v if (v > m) | (v != v) else m
                    v = r1[2 * j + 1]
                    m = v if (v > m) | (v != v) else m
                    yr[j] = m

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _max_pool2x2_values_team(x, y, threads):  # pragma: no cover - compiled
        P = x.shape[0]
        for t in numba.prange(threads):
            _max_pool2x2_values(x, y, P * t // threads, P * (t + 1) // threads)

    @numba.njit(cache=True, nogil=True)
    def _unpool2x2_numba(g, idx, zero, out, lo, hi):  # pragma: no cover - compiled
        # backward of the 2x2/2 window: every input pixel is written once (its window's gradient or
        # 0), so no zero-filled buffer and no scatter
        P, H, W = out.shape
        OH, OW = g.shape[1], g.shape[2]
        for p in range(lo, hi):
            for i in range(OH):
                o0 = out[p, 2 * i]
                o1 = out[p, 2 * i + 1]
                gr = g[p, i]
                ir = idx[p, i]
                base = 2 * i * W
                for j in range(OW):
                    r = ir[j] - base - 2 * j
                    gv = gr[j]
                    o0[2 * j] = gv if r == 0 else zero
                    o0[2 * j + 1] = gv if r == 1 else zero
                    o1[2 * j] = gv if r == W else zero
                    o1[2 * j + 1] = gv if r == W + 1 else zero
                for w in range(2 * OW, W):  # an odd last column no window reads
                    o0[w] = zero
                    o1[w] = zero
            for h in range(2 * OH, H):
                for w in range(W):
                    out[p, h, w] = zero

    @numba.njit(cache=True, nogil=True)
    def _scatter_numba(g, idx, out, lo, hi):  # pragma: no cover - compiled
        for p in range(lo, hi):
            for q in range(g.shape[1]):
                out[p, idx[p, q]] += g[p, q]


def _is_2x2(k, s, p, d, out, H, W) -> bool:
    """The 2x2/2 window without padding, every window inside the input (the fast kernels' case)."""
    return (tuple(k) == (2, 2) and tuple(s) == (2, 2) and tuple(p) == (0, 0) and tuple(d) == (1, 1)
            and 2 * out[0] <= H and 2 * out[1] <= W)


def max_pool2d_forward(x, k, s, p, d, out):
    """Max pooling of planes ``x`` (P, H, W) to ``out`` = (OH, OW): ``(y, idx)``, idx flat per plane."""
    if USE_NUMBA and x.dtype in (np.float32, np.float64):
        x = np.ascontiguousarray(x)
        y = np.empty((x.shape[0],) + tuple(out), x.dtype)
        idx = np.empty(y.shape, np.int64)
        if _is_2x2(k, s, p, d, out, *x.shape[1:]):
            split_rows(lambda lo, hi: _max_pool2x2_numba(x, y, idx, lo, hi), x.shape[0], x.size)
        elif tuple(k) == (3, 3) and tuple(s) == (2, 2) and tuple(d) == (1, 1) and max(p) <= 1:
            split_rows(lambda lo, hi: _max_pool3x3s2_numba(x, *p, y, idx, lo, hi), x.shape[0], x.size)
        else:
            split_rows(lambda lo, hi: _max_pool2d_numba(x, *k, *s, *p, *d, y, idx, lo, hi), x.shape[0], x.size)
        return y, idx
    return max_pool2d_numpy(x, k, s, p, d, out)


# An inference max pool shares its planes over numba's OpenMP team from this many input elements: the
# team's threads are awake after the convolution before it, the pool's would have to be woken.
TEAM_MIN_SIZE = 1 << 16


def max_pool2d_values(x, k, s, p, d, out, team: bool = False):
    """:func:`max_pool2d_forward`'s values alone (no arg-max: an inference forward that returns no
    indices). The 2x2/2 window and the 3x3/2 one (ResNet's stem, computed separably) have their own
    kernels, run on numba's OpenMP team when ``team`` (:mod:`shendu.ops.kernels.team`) and the input is
    large; other windows use the full kernel."""
    numba_ok = USE_NUMBA and x.dtype in (np.float32, np.float64)
    if numba_ok and _is_2x2(k, s, p, d, out, *x.shape[1:]):
        kernel, team_kernel, geometry = _max_pool2x2_values, _max_pool2x2_values_team, ()
    elif numba_ok and tuple(k) == (3, 3) and tuple(s) == (2, 2) and tuple(d) == (1, 1) and max(p) <= 1:
        kernel, team_kernel, geometry = _max_pool3x3s2_values, _max_pool3x3s2_values_team, tuple(p)
    else:
        return max_pool2d_forward(x, k, s, p, d, out)[0]
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0],) + tuple(out), x.dtype)
    if team and x.size >= TEAM_MIN_SIZE and _team.available():
        team_kernel(x, *geometry, y, parallel.num_threads())
        parallel.note_team_region()
    else:
        split_rows(lambda lo, hi: kernel(x, *geometry, y, lo, hi), x.shape[0], x.size)
    return y


def scatter_planes(g, idx, plane_size: int):
    """``out[p, idx[p, q]] += g[p, q]`` for planes of ``plane_size`` elements: ``(P, plane_size)``."""
    P = g.shape[0]
    g = g.reshape(P, -1)
    idx = idx.reshape(P, -1)
    if USE_NUMBA and g.dtype in (np.float32, np.float64):
        out = np.zeros((P, plane_size), g.dtype)
        g, idx = np.ascontiguousarray(g), np.ascontiguousarray(idx)
        split_rows(lambda lo, hi: _scatter_numba(g, idx, out, lo, hi), P, out.size)
        return out
    flat = (idx + (np.arange(P) * plane_size)[:, None]).ravel()
    return np.bincount(flat, weights=g.ravel(), minlength=P * plane_size).reshape(P, plane_size).astype(
        g.dtype, copy=False)


def max_pool2d_backward(gy, idx, H: int, W: int, window=None):
    """Gradient of max pooling: each output gradient goes to its arg-max (accumulating overlaps).
    ``window = (k, s, p, d)`` (optional) lets the 2x2/2 window use its one-pass kernel."""
    P = gy.shape[0]
    OH, OW = idx.shape[1:] if idx.ndim == 3 else (None, None)
    if (USE_NUMBA and window is not None and OH is not None and gy.dtype in (np.float32, np.float64)
            and _is_2x2(*window, (OH, OW), H, W)):
        out = np.empty((P, H, W), gy.dtype)
        g = np.ascontiguousarray(gy).reshape(P, OH, OW)
        idx = np.ascontiguousarray(idx)
        split_rows(lambda lo, hi: _unpool2x2_numba(g, idx, gy.dtype.type(0), out, lo, hi), P, out.size)
        return out
    return scatter_planes(gy, idx, H * W).reshape(P, H, W)


# ------------------------------------------------------------------------------------------- avg pool
def _avg_counts(L, O, k, s, p, count_include_pad):
    start = np.arange(O) * s - p
    end = np.minimum(start + k, L + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, L) - np.maximum(start, 0)


def avg_divisor(H, W, out, k, s, p, count_include_pad, divisor_override, dtype):
    """(OH, OW) divisors as torch: window size clipped to input+padding (or to the input alone)."""
    if divisor_override is not None:
        return np.full(out, divisor_override, dtype)
    ch = _avg_counts(H, out[0], k[0], s[0], p[0], count_include_pad)
    cw = _avg_counts(W, out[1], k[1], s[1], p[1], count_include_pad)
    return np.outer(ch, cw).astype(dtype)


if numba is not None:
    @numba.njit(cache=True, nogil=True)
    def _avg_pool2d_numba(x, kh, kw, sh, sw, ph, pw, div, y, lo, hi):  # pragma: no cover - compiled
        # per output row: add the in-image part of each kernel offset's row into y's row (a
        # vectorizable loop over j), then divide; same additions in the same order as the NumPy
        # reference (offset by offset), so the same rounding
        P, H, W = x.shape
        OH, OW = y.shape[1], y.shape[2]
        for p in range(lo, hi):
            for i in range(OH):
                yr = y[p, i]
                yr[:] = 0
                for u in range(kh):
                    h = i * sh - ph + u
                    if h < 0 or h >= H:
                        continue
                    xr = x[p, h]
                    for v in range(kw):
                        off = v - pw
                        j0 = 0 if off >= 0 else (sw - 1 - off) // sw
                        j1 = min(OW, (W - 1 - off) // sw + 1)
                        for j in range(j0, j1):
                            yr[j] += xr[j * sw + off]
                dr = div[i]
                for j in range(OW):
                    yr[j] /= dr[j]

    @numba.njit(cache=True, nogil=True)
    def _avg_pool2d_backward_numba(g, kh, kw, sh, sw, ph, pw, div, gx, lo, hi):  # pragma: no cover
        # each window adds g / div to its in-image pixels; planes are independent (no races)
        P, H, W = gx.shape
        OH, OW = g.shape[1], g.shape[2]
        q = np.empty(OW, g.dtype)
        for p in range(lo, hi):
            gx[p] = 0
            for i in range(OH):
                gr = g[p, i]
                dr = div[i]
                for j in range(OW):
                    q[j] = gr[j] / dr[j]
                for u in range(kh):
                    h = i * sh - ph + u
                    if h < 0 or h >= H:
                        continue
                    xr = gx[p, h]
                    for v in range(kw):
                        off = v - pw
                        j0 = 0 if off >= 0 else (sw - 1 - off) // sw
                        j1 = min(OW, (W - 1 - off) // sw + 1)
                        for j in range(j0, j1):
                            xr[j * sw + off] += q[j]


def avg_pool2d_forward(x, k, s, p, out, div):
    """Average pooling of planes ``x`` (P, H, W): window sums (padding reads 0) over ``div`` (OH, OW)."""
    if USE_NUMBA and x.dtype in (np.float32, np.float64) and div.dtype == x.dtype:
        x = np.ascontiguousarray(x)
        y = np.empty((x.shape[0],) + tuple(out), x.dtype)
        split_rows(lambda lo, hi: _avg_pool2d_numba(x, *k, *s, *p, np.ascontiguousarray(div), y, lo, hi), x.shape[0],
                   x.size)
        return y
    return avg_pool2d_numpy(x, k, s, p, out, div)


def avg_pool2d_backward(gy, H, W, k, s, p, div):
    """Gradient of :func:`avg_pool2d_forward`: each window spreads ``gy / div`` over its input pixels."""
    if USE_NUMBA and gy.dtype in (np.float32, np.float64) and div.dtype == gy.dtype:
        gy = np.ascontiguousarray(gy)
        gx = np.empty((gy.shape[0], H, W), gy.dtype)
        split_rows(lambda lo, hi: _avg_pool2d_backward_numba(gy, *k, *s, *p, np.ascontiguousarray(div), gx, lo, hi),
                   gy.shape[0], gx.size)
        return gx
    return avg_pool2d_backward_numpy(gy, H, W, k, s, p, div)


def avg_pool2d_numpy(x, k, s, p, out, div):
    """Reference average pooling: a loop over the kernel offsets on strided views."""
    (kh, kw), (sh, sw), (ph, pw), (OH, OW) = k, s, p, out
    xp = _padded(x, ph, pw, (OH - 1) * sh + kh, (OW - 1) * sw + kw, 0)
    acc = None
    for u in range(kh):
        for v in range(kw):
            val = _offset_view(xp, u, v, sh, sw, OH, OW)
            acc = val.copy() if acc is None else np.add(acc, val, out=acc)
    acc /= div
    return acc


def avg_pool2d_backward_numpy(gy, H, W, k, s, p, div):
    """Reference gradient of average pooling: ``gy / div`` added back at every kernel offset."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    P, OH, OW = gy.shape
    g = gy / div
    gxp = np.zeros((P, max((OH - 1) * sh + kh, H + ph), max((OW - 1) * sw + kw, W + pw)), gy.dtype)
    for u in range(kh):
        for v in range(kw):
            _offset_view(gxp, u, v, sh, sw, OH, OW)[...] += g
    return gxp[:, ph:ph + H, pw:pw + W]


# ------------------------------------------------------------------------------- bins (adaptive, FMP)
def adaptive_bins(L: int, O: int):
    """torch's adaptive bins: ``[floor(i L / O), ceil((i + 1) L / O))`` for i < O."""
    i = np.arange(O)
    return (i * L) // O, -((-(i + 1) * L) // O)


def bin_max_forward(x, rs, re, cs, ce):
    """Max over rectangular bins given per-row ``[rs, re)`` and per-column ``[cs, ce)`` ranges.

    ``rs, re`` have shape (P or 1, OH) and ``cs, ce`` (P or 1, OW), so bins may differ per plane
    (fractional pooling). Loops over the offsets of the largest bin; an offset past a bin's end reads
    the bin's last element again, which changes neither the max nor the first-max index."""
    P, H, W = x.shape
    plane = np.arange(P)[:, None, None]
    xf = x.reshape(P, H * W)
    y = idx = None
    for u in range(int((re - rs).max())):
        r = np.minimum(rs + u, re - 1)[:, :, None]
        for v in range(int((ce - cs).max())):
            c = np.minimum(cs + v, ce - 1)[:, None, :]
            flat = r * W + c
            val = xf[plane, flat]
            flat = np.broadcast_to(flat, val.shape)
            if y is None:
                y, idx = val.copy(), flat.copy()
                continue
            better = (val > y) | np.isnan(val)
            np.copyto(y, val, where=better)
            np.copyto(idx, flat, where=better)
    return y, idx


# ------------------------------------------------------------------------------------ resampling
def resample_matrix(L: int, O: int, mode: str, align_corners: bool, scale, dtype):
    """(O, L) matrix ``A`` with ``out = A @ in`` along one axis, for torch's interpolation rules.

    ``scale`` is the source step per output pixel (``1/scale_factor`` when one was given, else L/O).
    nearest: ``src = min(floor(dst * scale), L - 1)``; linear: ``src = (dst + 0.5) scale - 0.5``
    clamped at 0 (``dst (L-1)/(O-1)`` with align_corners); bed_of_nails: ``out[dst * s] = in``."""
    A = np.zeros((O, L), dtype)
    dst = np.arange(O)
    if mode == "nearest":
        A[dst, np.minimum(np.floor(dst * scale).astype(np.int64), L - 1)] = 1
    elif mode == "bed_of_nails":
        s = O // L
        A[dst[:L] * s, np.arange(L)] = 1
    else:
        if align_corners:
            src = dst * ((L - 1) / (O - 1)) if O > 1 else np.zeros(O)
        else:
            src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), L - 1)
        i1 = np.minimum(i0 + 1, L - 1)
        lam = src - i0
        np.add.at(A, (dst, i0), 1 - lam)
        np.add.at(A, (dst, i1), lam)
    return A


def graham_sequence(L: int, O: int, pseudo_random: bool, rng, u: float | None = None):
    """Graham's increasing sequence ``0 = a_0 < ... < a_O = L`` with increments in {1, 2}.

    pseudo-random: ``a_i = ceil(alpha (i + u)) - ceil(alpha u)``, ``alpha = L / O``, u ~ U(0, 1);
    random: a shuffled mix of ``L - O`` twos and ``2 O - L`` ones."""
    if pseudo_random:
        alpha = L / O
        if u is None:
            u = rng.random()
        a = np.ceil(alpha * (np.arange(O) + u)).astype(np.int64) - math.ceil(alpha * u)
        return np.append(a, L)
    steps = np.array([2] * (L - O) + [1] * (2 * O - L), np.int64)
    rng.shuffle(steps)
    return np.concatenate([[0], np.cumsum(steps)])
