"""Direct convolution: the definition, computed as a loop over kernel offsets (no autograd).

``y[n,o,i,j] = sum_{c,u,v} w[o,c,u,v] * x_pad[n, c, i*s + u*d, j*s + v*d]``. For each kernel offset
``(u, v)`` the shifted, strided view of the padded input is one GEMM away from its contribution:
``y += w[:, :, u, v] @ x_shift`` (channels contracted, per group). The loop runs over the ``kh*kw``
offsets only. With one input channel per group (depthwise) the GEMM degenerates to a broadcast
multiply-add, which is how depthwise convolution is computed efficiently here.

This is the reference the other algorithms are checked against, and the path for depthwise
convolution. Geometry arguments as in :mod:`shendu.ops.kernels.im2col`.
"""

from __future__ import annotations

import numpy as np

from shendu.ops.kernels.im2col import gemm_chunk, out_size
from shendu.ops.kernels.parallel import parallel_chunks

__all__ = ["pad_hw", "conv2d", "conv2d_grads"]


def pad_hw(x, pads):
    """Zero-pad (positive) or crop (negative) the last two axes by ``(top, bottom, left, right)``."""
    t, b, l, r = pads
    H, W = x.shape[-2:]
    x = x[..., max(-t, 0):H - max(-b, 0), max(-l, 0):W - max(-r, 0)]
    t, b, l, r = (max(p, 0) for p in pads)
    if not (t or b or l or r):
        return x
    out = np.zeros(x.shape[:-2] + (x.shape[-2] + t + b, x.shape[-1] + l + r), x.dtype)
    out[..., t:t + x.shape[-2], l:l + x.shape[-1]] = x
    return out


def _shift(xp, u, v, P, Q, stride, dilation):
    """The view of the padded input that kernel offset (u, v) multiplies: (N, C, P, Q)."""
    (sh, sw), (dh, dw) = stride, dilation
    return xp[:, :, u * dh:u * dh + (P - 1) * sh + 1:sh, v * dw:v * dw + (Q - 1) * sw + 1:sw]


def conv2d(x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1) -> np.ndarray:
    """Cross-correlation as ``kh*kw`` accumulated GEMMs of shifted input views (no bias)."""
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    G, Kg = groups, K // groups
    P = out_size(H, kh, stride[0], pads[0] + pads[1], dilation[0])
    Q = out_size(W, kw, stride[1], pads[2] + pads[3], dilation[1])
    xp = pad_hw(x, pads)
    y = np.zeros((N, G, Kg, P, Q), x.dtype)

    def run(tmp, lo, hi):
        yc = y[lo:hi]
        for u in range(kh):
            for v in range(kw):
                xs = _shift(xp[lo:hi], u, v, P, Q, stride, dilation)
                if Cg == 1:  # depthwise: one input channel per group, a broadcast multiply-add
                    t = tmp[:hi - lo]
                    np.multiply(w[:, 0, u, v].reshape(G, Kg, 1, 1), xs[:, :, None], out=t)
                    yc += t
                else:
                    wuv = w[:, :, u, v].reshape(G, Kg, Cg)
                    yc += np.matmul(wuv, xs.reshape(hi - lo, G, Cg, P * Q)).reshape(hi - lo, G, Kg, P, Q)

    nb = gemm_chunk(N, K * P * Q * x.itemsize)
    parallel_chunks(run, N, nb, lambda: np.empty((nb, G, Kg, P, Q), x.dtype) if Cg == 1 else None)
    return y.reshape(N, K, P, Q)


def conv2d_grads(gy, x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                 need_input=True, need_weight=True, x_shape=None):
    """``(gx, gw)`` of :func:`conv2d` for the cotangent ``gy``, offset by offset:
    ``gx_pad[shift(u,v)] += w[:, :, u, v]^T @ gy`` and ``gw[:, :, u, v] = sum_n gy @ x_shift^T``."""
    x_shape = x.shape if x is not None else tuple(x_shape)
    N, C, H, W = x_shape
    K, Cg, kh, kw = w.shape
    G, Kg = groups, K // groups
    P, Q = gy.shape[2:]
    t, b, l, r = pads
    gyg = gy.reshape(N, G, Kg, P, Q)
    gx = gw = None
    if need_input:
        gxp = np.zeros((N, C, H + t + b, W + l + r), gy.dtype)
    if need_weight:
        xp = pad_hw(x, pads)
        gw = np.empty(w.shape, gy.dtype)
    for u in range(kh):
        for v in range(kw):
            if need_input:
                target = _shift(gxp, u, v, P, Q, stride, dilation)
                if Cg == 1:
                    target += (gyg * w[:, 0, u, v].reshape(G, Kg, 1, 1)).sum(axis=2)
                else:
                    wuvT = w[:, :, u, v].reshape(G, Kg, Cg).transpose(0, 2, 1)
                    target += np.matmul(wuvT, gyg.reshape(N, G, Kg, P * Q)).reshape(N, C, P, Q)
            if need_weight:
                xs = _shift(xp, u, v, P, Q, stride, dilation)
                if Cg == 1:
                    gw[:, 0, u, v] = np.einsum("ngkpq,ngpq->gk", gyg, xs).reshape(K)
                else:  # x_shift @ gy^T (NumPy's stacked matmul is slow with the right operand transposed)
                    xs2 = xs.reshape(N, G, Cg, P * Q)
                    part = np.matmul(xs2, gyg.reshape(N, G, Kg, P * Q).transpose(0, 1, 3, 2)).sum(axis=0)
                    gw[:, :, u, v] = part.transpose(0, 2, 1).reshape(K, Cg)
    if need_input:
        gx = gxp[:, :, t:t + H, l:l + W]
        gx = np.ascontiguousarray(gx)
    return gx, gw
