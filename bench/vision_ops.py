"""Detection ops: RoI Align forward/backward and NMS, shendu vs a plain Python loop in the same run.

Rows:
- RoI Align, N=2, C=256, 50x50 feature map, 512 boxes (stride 16, sizes 32-300 px), 7x7 output,
  sampling_ratio=2, float32: forward, and backward for a fixed random cotangent. The loop version walks
  RoIs, bins, samples and the 4 bilinear taps in Python as torchvision's CPU kernel does, with the
  channels as one NumPy vector (a scalar loop over 256 channels would take minutes).
- NMS on 5000 random boxes (IoU threshold 0.5): the loop version is torchvision's C++ kernel line by
  line in Python, scalar.
Each shendu row is timed with the numba kernels (default) and with the NumPy reference paths
(``USE_NUMBA = False``). Times are the best of ``--repeat`` runs (the Python loops run once), as wall
time and as CPU time of the process (all threads; on a busy machine the CPU time is the steadier
measure of cost); ratio = loop time / shendu time (higher is better). No PyTorch op is involved: torchvision is not
installed here. Run: python bench/vision_ops.py [--repeat 5] [--boxes 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import shendu  # noqa: E402
from bench._util import print_table  # noqa: E402
from shendu.vision.ops import boxes as box_ops  # noqa: E402
from shendu.vision.ops import nms, roi_align  # noqa: E402
from shendu.vision.ops import roi as roi_ops  # noqa: E402


# ------------------------------------------------------------------------------------ Python loops
def _taps(y, x, H, W):
    """The kernel's bilinear_interpolate: [(h, w, weight)] of one sample, [] when it reads zero."""
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return []
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_high = y_low = H - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_high = x_low = W - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return [(y_low, x_low, hy * hx), (y_low, x_high, hy * lx), (y_high, x_low, ly * hx), (y_high, x_high, ly * lx)]


def _roi_samples(roi, scale, PH, PW, sr):
    """Per bin, the list of sample points and the count (aligned=False, fixed sampling ratio)."""
    x1, y1 = roi[1] * scale, roi[2] * scale
    rw, rh = max(roi[3] * scale - x1, 1.0), max(roi[4] * scale - y1, 1.0)
    bh, bw = rh / PH, rw / PW
    for ph in range(PH):
        for pw in range(PW):
            yield ph, pw, [(y1 + ph * bh + (iy + 0.5) * bh / sr, x1 + pw * bw + (ix + 0.5) * bw / sr)
                           for iy in range(sr) for ix in range(sr)], max(sr * sr, 1)


def roi_align_loop(x, rois, PH, PW, scale, sr):
    N, C, H, W = x.shape
    xt = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    out = np.zeros((len(rois), PH, PW, C), x.dtype)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        for ph, pw, points, count in _roi_samples(roi, scale, PH, PW, sr):
            acc = np.zeros(C, x.dtype)
            for y, xx in points:
                for h, w, wt in _taps(y, xx, H, W):
                    acc += wt * xt[b, h, w]
            out[k, ph, pw] = acc / count
    return out.transpose(0, 3, 1, 2)


def roi_align_backward_loop(g, shape, rois, PH, PW, scale, sr):
    N, C, H, W = shape
    gt = np.ascontiguousarray(g.transpose(0, 2, 3, 1))
    grad = np.zeros((N, H, W, C), g.dtype)
    for k, roi in enumerate(rois):
        b = int(roi[0])
        for ph, pw, points, count in _roi_samples(roi, scale, PH, PW, sr):
            for y, xx in points:
                for h, w, wt in _taps(y, xx, H, W):
                    grad[b, h, w] += (wt / count) * gt[k, ph, pw]
    return grad.transpose(0, 3, 1, 2)


def nms_loop(boxes, scores, thr):
    """torchvision's nms_kernel_impl, scalar Python."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    x1, y1, x2, y2 = ([float(b[i]) for b in boxes] for i in range(4))
    areas = [(x2[i] - x1[i]) * (y2[i] - y1[i]) for i in range(len(x1))]
    suppressed = [False] * len(x1)
    keep = []
    for _i, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[_i + 1:]:
            if suppressed[j]:
                continue
            w = max(0.0, min(x2[i], x2[j]) - max(x1[i], x1[j]))
            h = max(0.0, min(y2[i], y2[j]) - max(y1[i], y1[j]))
            inter = w * h
            if inter / (areas[i] + areas[j] - inter) > thr:
                suppressed[j] = True
    return keep


# -------------------------------------------------------------------------------------------- main
def best_times(fn, repeat: int, warmup: int = 1) -> tuple:
    """Best wall time and best CPU time (all threads of the process) of one call, in seconds. On a
    shared, loaded machine the CPU time says what the code costs; the wall time what a user waits."""
    for _ in range(warmup):
        fn()
    wall = cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--boxes", type=int, default=5000, help="NMS input size")
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    N, C, S, K, P, scale, sr = 2, 256, 50, 512, 7, 1 / 16, 2
    x_np = rng.standard_normal((N, C, S, S), dtype=np.float32)
    xy = rng.uniform(0, S / scale - 300, (K, 2))
    wh = rng.uniform(32, 300, (K, 2))
    rois = np.concatenate([rng.integers(0, N, (K, 1)), xy, xy + wh], axis=1).astype(np.float32)
    g_np = rng.standard_normal((K, C, P, P), dtype=np.float32)
    x = shendu.from_numpy(x_np).requires_grad_(True)
    r = shendu.from_numpy(rois)
    g = shendu.from_numpy(g_np)

    def fwd():
        return roi_align(x, r, P, scale, sr)

    def fwd_bwd():
        x.grad = None
        fwd().backward(g)

    out_ref = roi_align_loop(x_np, rois.astype(np.float64), P, P, scale, sr)
    np.testing.assert_allclose(fwd().data, out_ref, rtol=1e-4, atol=1e-4)  # float32 coordinates
    fwd_bwd()
    grad_ref = roi_align_backward_loop(g_np, x_np.shape, rois.astype(np.float64), P, P, scale, sr)
    np.testing.assert_allclose(x.grad.data, grad_ref, rtol=1e-4, atol=1e-4)

    n = args.boxes
    bxy = rng.uniform(0, 1000, (n, 2))
    bwh = rng.uniform(10, 100, (n, 2))
    boxes_np = np.concatenate([bxy, bxy + bwh], axis=1).astype(np.float32)
    scores_np = rng.random(n).astype(np.float32)
    boxes, scores = shendu.from_numpy(boxes_np), shendu.from_numpy(scores_np)
    keep = nms(boxes, scores, 0.5)

    loop_f = best_times(lambda: roi_align_loop(x_np, rois, P, P, scale, sr), repeat=1, warmup=0)
    loop_b = best_times(lambda: roi_align_backward_loop(g_np, x_np.shape, rois, P, P, scale, sr), 1, 0)
    loop_n = best_times(lambda: nms_loop(boxes_np, scores_np, 0.5), repeat=1, warmup=0)
    assert nms_loop(boxes_np, scores_np, 0.5) == keep.tolist()
    rows = []

    def row(name, ours, loop):
        rows.append([name, ours[0] * 1e3, ours[1] * 1e3, loop[0] * 1e3, loop[1] * 1e3, loop[0] / ours[0],
                     loop[1] / ours[1]])

    for use_numba in (True, False):
        roi_ops.USE_NUMBA = box_ops.USE_NUMBA = use_numba and roi_ops.numba is not None
        path = "numba" if use_numba else "numpy"
        f = best_times(fwd, args.repeat)
        fb = best_times(fwd_bwd, args.repeat)
        n_t = best_times(lambda: nms(boxes, scores, 0.5), args.repeat if use_numba else 1)
        row(f"roi_align forward ({path})", f, loop_f)
        row(f"roi_align backward ({path})", (fb[0] - f[0], fb[1] - f[1]), loop_b)
        row(f"nms {n} boxes, {len(keep)} kept ({path})", n_t, loop_n)
    print(f"RoI Align: N={N}, C={C}, {S}x{S}, {K} boxes, {P}x{P}, sampling_ratio={sr}, float32; "
          f"NMS: {n} boxes, IoU > 0.5. Backward = (forward + backward) - forward.")
    print_table(rows, ["op", "shendu ms", "shendu cpu ms", "loop ms", "loop cpu ms", "ratio", "cpu ratio"])
    print(f"(roi_align samples: {K * P * P * sr * sr} bins x samples; numba threads: "
          f"{roi_ops.numba.get_num_threads() if roi_ops.numba else 0}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
