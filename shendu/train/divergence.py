"""Entropy, cross-entropy, KL divergence and the Frechet distance: plain NumPy, in float64, in nats.

These are measuring tools (for evaluating models and checking the notes' formulas), not losses: they
take arrays (or Tensors) and return NumPy values without a graph. The differentiable losses are
:func:`shendu.functional.kl_div`, :func:`shendu.functional.gaussian_kl` and the cross-entropies.

The identities they obey, for discrete distributions P and Q over the same outcomes:

- entropy ``H(P) = -sum p log p`` (with ``0 log 0 = 0``);
- cross-entropy ``H(P, Q) = -sum p log q``;
- KL divergence ``D(P || Q) = sum p log(p / q) = H(P, Q) - H(P)``, so **cross-entropy = entropy + KL**.
  (One of the study notes writes "KL = entropy - cross-entropy"; that has the sign backwards, since it
  would make KL <= 0. The other note has it right: 相对熵 = 交叉熵 - 信息熵.) KL >= 0, it is 0 only when
  P = Q, and it is not symmetric.

For two 1-D Gaussians (the notes' worked example)
``D(N(mu1, s1^2) || N(mu2, s2^2)) = log(s2 / s1) + (s1^2 + (mu1 - mu2)^2) / (2 s2^2) - 1/2``;
against N(0, 1) it is ``-log s1 + (s1^2 + mu1^2) / 2 - 1/2``, smallest (0) at mu1 = 0, s1 = 1.

>>> p, q = [0.5, 0.5], [0.9, 0.1]
>>> round(float(kl_divergence(p, q)), 4), round(float(cross_entropy(p, q) - entropy(p)), 4)
(0.5108, 0.5108)
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg, special

from shendu.errors import ArgumentError, ShapeError

__all__ = ["entropy", "cross_entropy", "kl_divergence", "gaussian_kl_1d", "gaussian_kl_mvn",
           "gaussian_stats", "frechet_distance"]


def _probs(op: str, name: str, p, axis: int) -> np.ndarray:
    a = np.asarray(getattr(p, "data", p), dtype=np.float64)
    if a.ndim == 0:
        raise ShapeError(f"{op}: {name} must be a probability vector (or a batch of them), got a scalar")
    if (a < 0).any() or not np.isfinite(a).all():
        raise ArgumentError(f"{op}: {name} must hold finite non-negative probabilities, found min {a.min():.4g}")
    total = a.sum(axis=axis)
    if not np.allclose(total, 1.0, atol=1e-6):
        raise ArgumentError(f"{op}: {name} must sum to 1 along axis {axis}, got sums from {total.min():.6g} to "
                            f"{total.max():.6g}; normalise it first (p / p.sum())")
    return a


def _base(values, base):
    return values if base is None else values / np.log(base)


def entropy(p, axis: int = -1, base: float | None = None):
    """``H(P) = -sum p log p`` along ``axis`` (nats; bits with ``base=2``), ``0 log 0 = 0``.

    >>> float(entropy([0.5, 0.5], base=2))
    1.0
    """
    a = _probs("entropy", "p", p, axis)
    return _base(-special.xlogy(a, a).sum(axis=axis), base)


def cross_entropy(p, q, axis: int = -1, base: float | None = None):
    """``H(P, Q) = -sum p log q`` along ``axis``; infinite when some ``q = 0`` where ``p > 0``.

    >>> round(float(cross_entropy([1.0, 0.0], [0.8, 0.2])), 4)  # the notes' -log(0.8) example
    0.2231
    """
    a, b = _probs("cross_entropy", "p", p, axis), _probs("cross_entropy", "q", q, axis)
    with np.errstate(divide="ignore"):
        return _base(-special.xlogy(a, b).sum(axis=axis), base)


def kl_divergence(p, q, axis: int = -1, base: float | None = None):
    """``D(P || Q) = sum p log(p / q)`` along ``axis`` (``0 log 0/q = 0``; infinite where q = 0 < p).

    >>> float(kl_divergence([0.2, 0.8], [0.2, 0.8]))
    0.0
    """
    a, b = _probs("kl_divergence", "p", p, axis), _probs("kl_divergence", "q", q, axis)
    if a.shape != b.shape:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ShapeError(f"kl_divergence: p {a.shape} and q {b.shape} do not broadcast") from None
    return _base(special.rel_entr(a, b).sum(axis=axis), base)


def gaussian_kl_1d(mu1, sigma1, mu2=0.0, sigma2=1.0):
    """``D(N(mu1, sigma1^2) || N(mu2, sigma2^2)) = log(sigma2/sigma1) + (sigma1^2 + (mu1-mu2)^2)/(2 sigma2^2) - 1/2``.

    Arguments are standard deviations (not variances) and broadcast.

    >>> float(gaussian_kl_1d(0.0, 1.0))
    0.0
    >>> round(float(gaussian_kl_1d(1.0, 1.0)), 4)  # a unit shift costs mu^2 / 2
    0.5
    """
    m1, s1, m2, s2 = (np.asarray(v, dtype=np.float64) for v in (mu1, sigma1, mu2, sigma2))
    if (s1 <= 0).any() or (s2 <= 0).any():
        raise ArgumentError("gaussian_kl_1d: sigma1 and sigma2 are standard deviations and must be > 0")
    return np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5


def gaussian_kl_mvn(mu1, cov1, mu2, cov2) -> float:
    """KL divergence of two k-dimensional Gaussians with full covariances:
    ``1/2 [tr(S2^-1 S1) + (mu2 - mu1)^T S2^-1 (mu2 - mu1) - k + log det S2 - log det S1]``.

    >>> round(gaussian_kl_mvn([1.0, 0.0], np.eye(2), [0.0, 0.0], np.eye(2)), 4)
    0.5
    """
    m1, m2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    k = m1.shape[0]
    if m1.shape != (k,) or m2.shape != (k,) or s1.shape != (k, k) or s2.shape != (k, k):
        raise ShapeError(f"gaussian_kl_mvn: expected means (k,) and covariances (k, k), got {m1.shape}, "
                         f"{s1.shape}, {m2.shape}, {s2.shape}")
    c2 = linalg.cho_factor(s2)  # raises LinAlgError if cov2 is not positive definite
    d = m2 - m1
    logdet1 = np.linalg.slogdet(s1)[1]
    logdet2 = 2 * np.log(np.diag(c2[0])).sum()
    return float(0.5 * (np.trace(linalg.cho_solve(c2, s1)) + d @ linalg.cho_solve(c2, d) - k + logdet2 - logdet1))


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and covariance ``(F, F)`` (unbiased, like ``np.cov``) of features ``(N, F)``, in float64."""
    f = np.asarray(getattr(features, "data", features), dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ShapeError(f"gaussian_stats: expected features (N, F) with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``, squared:
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))`` (Dowson & Landau 1982; the formula of
    FID, Heusel et al. 2017).

    The matrix square root is ``scipy.linalg.sqrtm``. When the product is singular (fewer samples than
    features, or features that are always 0) ``eps * I`` is added to both covariances, as pytorch-fid
    does; a tiny imaginary part from round-off is dropped.

    >>> round(frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]), 6)  # 1-D: (mu1-mu2)^2 + (s1-s2)^2
    10.0
    """
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    k = m1.shape[0]
    if m1.shape != (k,) or m2.shape != (k,) or s1.shape != (k, k) or s2.shape != (k, k):
        raise ShapeError(f"frechet_distance: expected means (k,) and covariances (k, k), got {m1.shape}, "
                         f"{s1.shape}, {m2.shape}, {s2.shape}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if caught or not np.isfinite(covmean).all():  # singular product (e.g. dead ReLU features)
        offset = np.eye(k) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
