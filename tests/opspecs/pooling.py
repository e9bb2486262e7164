"""Registry entries for shendu/ops/pooling.py.

Ops torch has are checked against ``torch.nn.functional``; min pooling, bed-of-nails upsampling,
stochastic pooling (test mode), K-max, sort pooling and Graham's fractional max pooling against the
plain float64 loops below. Max-type samples use pairwise-distinct values (no ties, no kinks).
"""

import math

import numpy as np

from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, distinct, idx, pos, r

_rng = np.random.default_rng(4321)


def _fn(name):
    return lambda m, *args, **kw: getattr(m.nn.functional, name)(*args, **kw)


def _pool_indices(N, C, h, w, k, W, kh=None):
    """Flat per-plane indices of one random position in each kh x k window (a non-overlapping pool)."""
    kh = k if kh is None else kh
    du = _rng.integers(0, kh, (N, C, h, w))
    dv = _rng.integers(0, k, (N, C, h, w))
    rows = np.arange(h)[:, None] * kh + du
    cols = np.arange(w)[None, :] * k + dv
    return (rows * W + cols).astype(np.int64)


# ------------------------------------------------------------------------------ loop references
def _min_pool2d_ref(x, kernel_size, stride=None, padding=0):
    k, s, p = kernel_size, stride or kernel_size, padding
    N, C, H, W = x.shape
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    y = np.zeros((N, C, OH, OW), x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best = np.inf
                    for u in range(k):
                        for v in range(k):
                            h, w = i * s - p + u, j * s - p + v
                            if 0 <= h < H and 0 <= w < W:
                                best = min(best, x[n, c, h, w])
                    y[n, c, i, j] = best
    return y


def _bed_of_nails_ref(x, scale_factor):
    s = scale_factor
    N, C, H, W = x.shape
    y = np.zeros((N, C, H * s, W * s), x.dtype)
    for i in range(H):
        for j in range(W):
            y[:, :, i * s, j * s] = x[:, :, i, j]
    return y


def _stochastic_eval_ref(x, kernel_size, stride=None, training=False):
    k, s = kernel_size, stride or kernel_size
    N, C, H, W = x.shape
    OH, OW = (H - k) // s + 1, (W - k) // s + 1
    y = np.zeros((N, C, OH, OW), x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    a = [x[n, c, i * s + u, j * s + v] for u in range(k) for v in range(k)]
                    tot = sum(a)
                    y[n, c, i, j] = sum(v * v for v in a) / tot if tot > 0 else 0.0
    return y


def _kmax_ref(x, k, dim=-1):
    xm = np.moveaxis(x, dim, -1)
    out = np.zeros(xm.shape[:-1] + (k,), x.dtype)
    for pos_ in np.ndindex(xm.shape[:-1]):
        row = list(xm[pos_])
        keep = sorted(sorted(range(len(row)), key=lambda t: (-row[t], t))[:k])
        out[pos_] = [row[t] for t in keep]
    return np.moveaxis(out, -1, dim)


def _sort_pool_ref(x, w):
    N, C, H, W = x.shape
    OH, OW = math.ceil(H / 2), math.ceil(W / 2)
    e = [math.exp(v) for v in w]
    sw = [v / sum(e) for v in e]
    y = np.zeros((N, C, OH, OW), x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    vals = [x[n, c, h, v] if h < H and v < W else 0.0
                            for h in (2 * i, 2 * i + 1) for v in (2 * j, 2 * j + 1)]
                    vals.sort(reverse=True)
                    y[n, c, i, j] = sum(sw[t] * vals[t] for t in range(len(w)))
    return y


def _graham_seq_ref(L, O, pseudo_random, rng):
    if pseudo_random:
        alpha, u = L / O, rng.random()
        return [math.ceil(alpha * (i + u)) - math.ceil(alpha * u) for i in range(O)] + [L]
    steps = np.array([2] * (L - O) + [1] * (2 * O - L))
    rng.shuffle(steps)
    seq = [0]
    for st in steps:
        seq.append(seq[-1] + int(st))
    return seq


def _graham_fmp_ref(x, output_size, method, overlapping, seed):
    import shendu

    rng = shendu.Generator(seed).rng  # the same draws as the op
    N, C, H, W = x.shape
    a = _graham_seq_ref(H, output_size, method == "pseudo_random", rng)
    b = _graham_seq_ref(W, output_size, method == "pseudo_random", rng)
    y = np.zeros((N, C, output_size, output_size), x.dtype)
    for i in range(output_size):
        for j in range(output_size):
            r1 = min(a[i + 1] + 1, H) if overlapping else a[i + 1]
            c1 = min(b[j + 1] + 1, W) if overlapping else b[j + 1]
            y[:, :, i, j] = x[:, :, a[i]:r1, b[j]:c1].max(axis=(2, 3))
    return y


def _graham_fmp(m, x, output_size, method, overlapping, seed):
    return m.fractional_max_pool2d(x, 2, output_size=output_size, method=method, overlapping=overlapping,
                                   generator=m.Generator(seed))


# ---------------------------------------------------------------------------------------- samples
_MAX2D = [
    Sample((distinct(2, 3, 7, 6),), dict(kernel_size=3, stride=2, padding=1), desc="k3s2p1"),
    Sample((distinct(1, 2, 8, 8),), dict(kernel_size=2), desc="k2_fastpath_batch1"),
    Sample((distinct(1, 2, 9, 7),), dict(kernel_size=2), desc="k2_odd_crop"),
    Sample((distinct(2, 2, 9, 7),), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1)),
           desc="dilation_nonsquare"),
    Sample((distinct(1, 1, 6, 6),), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), desc="ceil_k3s2p1"),
    Sample((distinct(1, 2, 5, 5),), dict(kernel_size=2, ceil_mode=True), desc="ceil_overhang"),
    Sample((distinct(2, 3, 5, 5),), dict(kernel_size=3, stride=1), desc="overlap_s1"),
    Sample((distinct(3, 5, 6),), dict(kernel_size=2, stride=1, padding=1), desc="unbatched"),
    Sample((distinct(2, 2, 7, 7),), dict(kernel_size=3, stride=2, return_indices=True), desc="indices"),
    Sample((distinct(1, 2, 6, 5),), dict(kernel_size=2, stride=1, dilation=2, padding=1, return_indices=True),
           desc="indices_dilated"),
]
_MAX1D = [
    Sample((distinct(2, 3, 9),), dict(kernel_size=3, stride=2, padding=1), desc="k3s2p1"),
    Sample((distinct(1, 2, 7),), dict(kernel_size=2, ceil_mode=True), desc="ceil"),
    Sample((distinct(2, 2, 10),), dict(kernel_size=3, dilation=2, return_indices=True), desc="dilated_indices"),
    Sample((distinct(3, 8),), dict(kernel_size=2), desc="unbatched"),
]
_AVG2D = [
    Sample((r(2, 3, 7, 6),), dict(kernel_size=3, stride=2, padding=1), desc="k3s2p1"),
    Sample((r(2, 3, 7, 6),), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), desc="no_pad_count"),
    Sample((r(1, 2, 5, 5),), dict(kernel_size=2, ceil_mode=True), desc="ceil_overhang"),
    Sample((r(1, 1, 6, 6),), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
           desc="ceil_pad_nocount"),
    Sample((r(2, 2, 6, 5),), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1)), desc="nonsquare"),
    Sample((r(1, 2, 6, 6),), dict(kernel_size=3, padding=1, divisor_override=3), desc="divisor_override"),
    Sample((r(1, 2, 8, 8),), dict(kernel_size=2), desc="k2_batch1"),
    Sample((r(3, 5, 5),), dict(kernel_size=3, stride=1), desc="unbatched"),
]
_AVG1D = [
    Sample((r(2, 3, 9),), dict(kernel_size=3, stride=2, padding=1), desc="k3s2p1"),
    Sample((r(1, 2, 7),), dict(kernel_size=2, ceil_mode=True, count_include_pad=False), desc="ceil"),
    Sample((r(3, 8),), dict(kernel_size=4, stride=3, padding=2), desc="unbatched"),
]

_BILINEAR_TOL = dict(rtol32=1e-5, atol32=2e-6, grad_rtol32=1e-4, grad_atol32=2e-5)

SPECS = [
    OpSpec("max_pool2d", _fn("max_pool2d"), _MAX2D, errors=[
        ErrorCase((r(1, 1, 6, 6),), dict(kernel_size=3, padding=2), exc=ArgumentError, match="at most half"),
        ErrorCase((r(1, 1, 4, 4),), dict(kernel_size=5), exc=ShapeError, match="too small"),
        ErrorCase((r(1, 1, 6, 6),), dict(kernel_size=2, dilation=2, padding=2), exc=ArgumentError,
                  match="effective kernel"),
        ErrorCase((idx(5, 1, 1, 4, 4),), dict(kernel_size=2), exc=DTypeError, match="floating-point"),
        ErrorCase((r(4, 4),), dict(kernel_size=2), exc=ShapeError, match=r"\(N, C, H, W\)"),
        ErrorCase((r(1, 1, 4, 4),), dict(kernel_size=0), exc=ArgumentError, match="positive"),
    ]),
    OpSpec("max_pool1d", _fn("max_pool1d"), _MAX1D, errors=[
        ErrorCase((r(1, 1, 3),), dict(kernel_size=4), exc=ShapeError, match="too small")]),
    OpSpec("avg_pool2d", _fn("avg_pool2d"), _AVG2D, errors=[
        ErrorCase((r(1, 1, 4, 4),), dict(kernel_size=5), exc=ShapeError, match="too small"),
        ErrorCase((r(1, 1, 6, 6),), dict(kernel_size=2, padding=2), exc=ArgumentError, match="at most half"),
        ErrorCase((r(1, 1, 6, 6),), dict(kernel_size=2, divisor_override=0), exc=ArgumentError, match="non-zero"),
    ]),
    OpSpec("avg_pool1d", _fn("avg_pool1d"), _AVG1D),
    OpSpec("lp_pool2d", _fn("lp_pool2d"),
           [Sample((pos(2, 3, 6, 5), 2, 2), desc="p2_k2"),
            Sample((pos(1, 2, 7, 6), 3, (3, 2), (2, 1)), desc="p3_nonsquare"),
            Sample((pos(1, 2, 5, 5), 1.5, 2), dict(ceil_mode=True), desc="p1.5_ceil")],
           grad_rtol32=2e-4, grad_atol32=5e-5),
    OpSpec("lp_pool1d", _fn("lp_pool1d"), [Sample((pos(2, 3, 9), 2, 3, 2), desc="p2_k3s2")]),
    OpSpec("adaptive_avg_pool2d", _fn("adaptive_avg_pool2d"),
           [Sample((r(2, 3, 5, 7), 3), desc="5x7_to_3"), Sample((r(1, 2, 6, 6), (2, 3)), desc="divisible"),
            Sample((r(2, 2, 5, 4), 1), desc="global"), Sample((r(1, 2, 5, 4), (None, 3)), desc="none_keeps"),
            Sample((r(3, 7, 5), (4, 6)), desc="unbatched_upsize")]),
    OpSpec("adaptive_avg_pool1d", _fn("adaptive_avg_pool1d"),
           [Sample((r(2, 3, 7), 3), desc="7_to_3"), Sample((r(1, 2, 5), 1), desc="global")]),
    OpSpec("adaptive_max_pool2d", _fn("adaptive_max_pool2d"),
           [Sample((distinct(2, 3, 5, 7), 3), desc="5x7_to_3"),
            Sample((distinct(1, 2, 6, 6), (2, 3), True), desc="divisible_indices"),
            Sample((distinct(2, 2, 5, 7), (2, 3), True), desc="bins_indices"),
            Sample((distinct(2, 2, 5, 4), 1), desc="global")]),
    OpSpec("adaptive_max_pool1d", _fn("adaptive_max_pool1d"),
           [Sample((distinct(2, 3, 7), 3, True), desc="7_to_3_indices"), Sample((distinct(1, 2, 8), 4), desc="even")]),
    OpSpec("global_avg_pool2d", lambda m, x, keepdim=False: m.global_avg_pool2d(x, keepdim=keepdim),
           [Sample((r(2, 3, 5, 4),), desc="nc"), Sample((r(1, 2, 3, 3),), dict(keepdim=True), desc="keepdim")],
           torch_op=lambda m, x, keepdim=False: x.mean((-2, -1), keepdim=keepdim)),
    OpSpec("max_unpool2d", _fn("max_unpool2d"),
           [Sample((r(2, 3, 3, 2), _pool_indices(2, 3, 3, 2, 2, 4), 2), desc="k2"),
            Sample((r(1, 2, 2, 2), _pool_indices(1, 2, 2, 2, 2, 5), 2), dict(output_size=(5, 5)),
                   desc="odd_output_size"),
            Sample((r(1, 1, 2, 3), _pool_indices(1, 1, 2, 3, 3, 9), 3), dict(stride=3), desc="k3")],
           errors=[ErrorCase((r(1, 1, 2, 2), np.array([[[[0, 1], [2, 16]]]]), 2), exc=IndexOutOfRangeError,
                             match="indices must lie"),
                   ErrorCase((r(1, 1, 2, 2), np.zeros((1, 1, 2, 3), np.int64), 2), exc=ShapeError,
                             match="indices must be")]),
    OpSpec("max_unpool1d", _fn("max_unpool1d"),
           [Sample((r(2, 3, 4), _pool_indices(2, 3, 1, 4, 2, 8, kh=1)[:, :, 0], 2), desc="k2")]),
    OpSpec("interpolate_nearest", _fn("interpolate"),
           [Sample((r(2, 3, 3, 4),), dict(scale_factor=2), desc="x2"),
            Sample((r(1, 2, 3, 4),), dict(size=(5, 7)), desc="3x4_to_5x7"),
            Sample((r(1, 2, 6, 5),), dict(size=(4, 3)), desc="downsample"),
            Sample((r(1, 2, 5),), dict(scale_factor=3), desc="1d_x3"),
            Sample((r(1, 2, 4, 4),), dict(scale_factor=1.5), desc="x1.5")]),
    OpSpec("interpolate_bilinear", _fn("interpolate"),
           [Sample((r(2, 3, 3, 4),), dict(scale_factor=2, mode="bilinear"), desc="x2"),
            Sample((r(1, 2, 3, 4),), dict(size=(5, 7), mode="bilinear", align_corners=True), desc="align"),
            Sample((r(1, 2, 6, 7),), dict(size=(4, 3), mode="bilinear"), desc="down"),
            Sample((r(1, 2, 6, 7),), dict(size=(1, 3), mode="bilinear", align_corners=True), desc="down_align_1"),
            Sample((r(1, 2, 4, 5),), dict(scale_factor=1.5, mode="bilinear"), desc="x1.5"),
            Sample((r(2, 2, 5),), dict(size=8, mode="linear"), desc="linear1d"),
            Sample((r(2, 2, 5),), dict(size=8, mode="linear", align_corners=True), desc="linear1d_align")],
           errors=[ErrorCase((r(1, 1, 2, 2),), dict(scale_factor=2, mode="cubic"), exc=ArgumentError,
                             match="unknown mode"),
                   ErrorCase((r(1, 1, 2, 2),), dict(scale_factor=2, align_corners=True), exc=ArgumentError,
                             match="align_corners"),
                   ErrorCase((r(1, 1, 2, 2),), dict(), exc=ArgumentError, match="exactly one"),
                   ErrorCase((r(1, 1, 2, 2),), dict(size=3, mode="bed_of_nails"), exc=ArgumentError,
                             match="integer")],
           **_BILINEAR_TOL),
    OpSpec("upsample_nearest2d", lambda m, x, **kw: m.upsample_nearest2d(x, **kw),
           [Sample((r(1, 2, 3, 3),), dict(scale_factor=2))],
           torch_op=lambda m, x, **kw: m.nn.functional.interpolate(x, mode="nearest", **kw)),
    OpSpec("upsample_bilinear2d", lambda m, x, **kw: m.upsample_bilinear2d(x, **kw),
           [Sample((r(1, 2, 3, 3),), dict(size=(5, 4)))],
           torch_op=lambda m, x, **kw: m.nn.functional.interpolate(x, mode="bilinear", align_corners=True, **kw),
           **_BILINEAR_TOL),
    # --- ops torch lacks: float64 loop references
    OpSpec("min_pool2d", lambda m, x, *a, **kw: m.min_pool2d(x, *a, **kw),
           [Sample((distinct(2, 3, 6, 7), 3, 2, 1), desc="k3s2p1"), Sample((distinct(1, 2, 4, 4), 2), desc="k2")],
           ref=_min_pool2d_ref),
    OpSpec("interpolate_bed_of_nails",
           lambda m, x, scale_factor: m.interpolate(x, scale_factor=scale_factor, mode="bed_of_nails"),
           [Sample((r(2, 3, 3, 4), 2), desc="x2"), Sample((r(1, 1, 2, 3), 3), desc="x3")],
           ref=_bed_of_nails_ref),
    OpSpec("stochastic_pool2d_eval", lambda m, x, *a, **kw: m.stochastic_pool2d(x, *a, **kw),
           [Sample((pos(2, 3, 6, 6, low=0.1), 2), dict(training=False), desc="k2"),
            Sample((pos(1, 2, 7, 5, low=0.1), 3, 2), dict(training=False), desc="k3s2")],
           ref=_stochastic_eval_ref,
           errors=[ErrorCase((r(1, 1, 4, 4),), dict(kernel_size=2), exc=ArgumentError, match="non-negative")]),
    OpSpec("kmax_pool1d", lambda m, x, k, **kw: m.kmax_pool1d(x, k, **kw),
           [Sample((distinct(2, 3, 9), 4), desc="last"), Sample((distinct(2, 7, 3), 3), dict(dim=1), desc="dim1"),
            Sample((distinct(6), 6), desc="k_eq_len")],
           ref=_kmax_ref,
           errors=[ErrorCase((r(2, 3),), dict(k=4), exc=ArgumentError, match="pad short sequences")]),
    OpSpec("sort_pool2d", lambda m, x, w: m.sort_pool2d(x, w),
           [Sample((distinct(2, 3, 6, 4), r(2)), desc="k2"), Sample((distinct(1, 2, 5, 7), r(4)), desc="k4_odd"),
            Sample((distinct(1, 2, 4, 4), r(3)), desc="k3"), Sample((distinct(2, 2, 3, 4), r(1)), desc="k1")],
           ref=_sort_pool_ref,
           errors=[ErrorCase((r(1, 1, 4, 4), r(5)), exc=ShapeError, match="length k in 1..4")]),
    OpSpec("fractional_max_pool2d", _fn("fractional_max_pool2d"),
           [Sample((distinct(2, 3, 9, 8), 2), dict(output_size=(5, 4), _random_samples=_rng.random((2, 3, 2))),
                   desc="size"),
            Sample((distinct(1, 2, 10, 10), 3), dict(output_ratio=(0.6, 0.5), _random_samples=_rng.random((1, 2, 2))),
                   desc="ratio_k3"),
            Sample((distinct(1, 2, 7, 9), (2, 3)), dict(output_size=(4, 6), return_indices=True,
                                                        _random_samples=_rng.random((1, 2, 2))),
                   desc="indices_nonsquare")],
           errors=[ErrorCase((r(1, 1, 5, 5), 2), dict(output_size=5), exc=ShapeError, match="must fit"),
                   ErrorCase((r(1, 1, 5, 5), 2), dict(output_size=3, output_ratio=0.5), exc=ArgumentError,
                             match="exactly one")]),
    OpSpec("fractional_max_pool2d_graham", _graham_fmp,
           [Sample((distinct(2, 2, 10, 10), 7, "pseudo_random", False, 3), desc="pseudo_disjoint"),
            Sample((distinct(1, 2, 9, 9), 5, "pseudo_random", True, 4), desc="pseudo_overlap"),
            Sample((distinct(1, 2, 11, 11), 7, "random", False, 5), desc="random_disjoint"),
            Sample((distinct(1, 1, 8, 8), 5, "random", True, 6), desc="random_overlap")],
           ref=_graham_fmp_ref),
]
