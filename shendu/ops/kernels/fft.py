"""FFT convolution by the convolution theorem (no autograd).

Cross-correlation ``y[p] = sum_u w[u] x[p + u]`` is, for signals zero-padded to a length L, the
circular correlation whose spectrum is ``Y = X * conj(W)`` — conjugating the kernel's spectrum is the
kernel flip that turns the theorem's convolution into the correlation CNNs compute. Circular wrap
never reaches the outputs we keep as long as ``L >= padded input length`` (the largest index read,
``p + u``, is below it), so L is the next fast FFT length (``scipy.fft.next_fast_len``) at or above
the padded input size; real transforms (``rfft2``/``irfft2``) halve the work. Channels are summed in
the frequency domain: for every frequency one small complex GEMM ``(N, C) @ (C, K)``.
Dilation inserts zeros into the kernel; stride computes the stride-1 result and subsamples it
(wasted work, which is why FFT is for large kernels at stride 1).

Backward, also in the frequency domain (``gy`` zero-upsampled to stride 1):
``gx = irfft(GY * W)`` (a true convolution: the adjoint of correlation) and
``gw = irfft(conj(GY) * X)`` summed over the batch, both cropped to their supports.

Cost: three transforms of size ``L^2 log L`` per channel plane plus ``8 N C K L^2 / 2`` flops of
complex GEMMs, independent of the kernel size — cheaper than im2col's ``2 N C K k^2 P Q`` once
``k`` is large (roughly k >= 9 on a CPU; see examples/conv_algorithms.py).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from shendu.ops.kernels.direct import pad_hw

__all__ = ["fft_sizes", "conv2d", "conv2d_grads"]

_WORKERS = -1  # scipy.fft may use every core


def fft_sizes(Hp: int, Wp: int) -> tuple:
    """Transform sizes for a padded input of ``Hp x Wp``: the next fast lengths, large enough to
    keep circular wrap out of the valid outputs."""
    return scipy.fft.next_fast_len(Hp, real=True), scipy.fft.next_fast_len(Wp, real=True)


def _dilate(w, dilation):
    dh, dw = dilation
    if (dh, dw) == (1, 1):
        return w
    K, Cg, kh, kw = w.shape
    out = np.zeros((K, Cg, (kh - 1) * dh + 1, (kw - 1) * dw + 1), w.dtype)
    out[:, :, ::dh, ::dw] = w
    return out


def _spectrum(a, L):
    return scipy.fft.rfft2(a, s=L, axes=(-2, -1), workers=_WORKERS)


def _freq_gemm(A, B, G, conj_b=False):
    """Per-frequency channel contraction ``out[n, g, k, f] = sum_c A[n, g, c, f] * B[g, k, c, f]``
    (B conjugated if asked), done as one batched matmul with the frequencies as batch."""
    N, C = A.shape[:2]
    K = B.shape[0]
    F = A.shape[2] * A.shape[3]
    # contiguous per-frequency matrices, so every product is one BLAS call
    a = np.ascontiguousarray(A.reshape(N, G, C // G, F).transpose(1, 3, 0, 2))        # (G, F, N, Cg)
    b = B.reshape(G, K // G, C // G, F).transpose(0, 3, 2, 1)                          # (G, F, Cg, Kg)
    b = np.conj(b) if conj_b else np.ascontiguousarray(b)
    out = np.matmul(a, b)                                                              # (G, F, N, Kg)
    return out.transpose(2, 0, 3, 1).reshape(N, K, *A.shape[2:])


def conv2d(x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1) -> np.ndarray:
    """Cross-correlation through ``rfft2``/``irfft2`` (no bias); output dtype = input dtype."""
    xp = pad_hw(x, pads)
    wd = _dilate(w, dilation)
    Hp, Wp = xp.shape[2:]
    kdh, kdw = wd.shape[2:]
    L = fft_sizes(Hp, Wp)
    Yf = _freq_gemm(_spectrum(xp, L), _spectrum(wd, L), groups, conj_b=True)
    y = scipy.fft.irfft2(Yf, s=L, axes=(-2, -1), workers=_WORKERS)
    y = y[:, :, :Hp - kdh + 1:stride[0], :Wp - kdw + 1:stride[1]]
    return np.ascontiguousarray(y, dtype=x.dtype)


def conv2d_grads(gy, x, w, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                 need_input=True, need_weight=True, x_shape=None):
    """``(gx, gw)`` of :func:`conv2d` computed in the frequency domain."""
    x_shape = x.shape if x is not None else tuple(x_shape)
    N, C, H, W = x_shape
    t, b, l, r = pads
    Hp, Wp = H + t + b, W + l + r
    wd = _dilate(w, dilation)
    kdh, kdw = wd.shape[2:]
    L = fft_sizes(Hp, Wp)
    # gy at stride 1: zeros between the sampled positions (and past the last one the stride reached)
    P1, Q1 = Hp - kdh + 1, Wp - kdw + 1
    if stride == (1, 1) and gy.shape[2:] == (P1, Q1):
        gy1 = gy
    else:
        gy1 = np.zeros(gy.shape[:2] + (P1, Q1), gy.dtype)
        P, Q = gy.shape[2:]
        gy1[:, :, :(P - 1) * stride[0] + 1:stride[0], :(Q - 1) * stride[1] + 1:stride[1]] = gy
    GY = _spectrum(gy1, L)
    gx = gw = None
    if need_input:
        # out[n, c] = sum_k GY[n, k] * W[k, c]: the same contraction with the roles of C and K swapped
        Wf = _spectrum(wd, L)
        K, Cg = w.shape[:2]
        Wt = Wf.reshape(groups, K // groups, Cg, *Wf.shape[2:]).transpose(0, 2, 1, 3, 4)
        Wt = Wt.reshape(groups * Cg, K // groups, *Wf.shape[2:])
        GX = _freq_gemm(GY, Wt, groups)
        gxp = scipy.fft.irfft2(GX, s=L, axes=(-2, -1), workers=_WORKERS)
        gx = np.ascontiguousarray(gxp[:, :, t:t + H, l:l + W], dtype=gy.dtype)
    if need_weight:
        X = _spectrum(pad_hw(x, pads), L)
        # gw[k, c] = sum_n conj(GY[n, k]) * X[n, c]: contract over the batch axis
        G = groups
        K = gy.shape[1]
        F = X.shape[2] * X.shape[3]
        a = np.conj(GY.reshape(N, G, K // G, F).transpose(1, 3, 2, 0))                 # (G, F, Kg, N)
        bb = np.ascontiguousarray(X.reshape(N, G, C // G, F).transpose(1, 3, 0, 2))     # (G, F, N, Cg)
        GW = np.matmul(a, bb).transpose(0, 2, 3, 1).reshape(K, C // G, *X.shape[2:])
        gwd = scipy.fft.irfft2(GW, s=L, axes=(-2, -1), workers=_WORKERS)
        gw = np.ascontiguousarray(gwd[:, :, :kdh:dilation[0], :kdw:dilation[1]], dtype=gy.dtype)
    return gx, gw
