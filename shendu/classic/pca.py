"""PCA and whitening (CS231n "Data preprocessing"), fitted on training data, applied unchanged to the rest.

PCA: centre ``X - mu``; the principal axes are the right singular vectors of the centred data (the
eigenvectors of the covariance, without forming it); ``explained_variance_`` uses ``N - 1`` as sklearn does.
Whitening: ``cov = Xc^T Xc / N`` (CS231n's ddof=0), ``cov = U diag(S) U^T``; PCA whitening is
``Xc U / sqrt(S + eps)``, ZCA whitening rotates back, ``Xc U diag(1/sqrt(S + eps)) U^T``, which keeps the data
looking like the input (whitened images still look like images). ``eps`` keeps tiny-variance directions from
blowing up noise. Eigenvectors are defined up to sign: each axis is flipped so its largest-magnitude entry
is positive, which makes results deterministic.
"""

from __future__ import annotations

import numpy as np

from shendu.errors import ArgumentError, ShapeError, fmt_shape

__all__ = ["PCA", "Whitening"]


def _as_matrix(name: str, x) -> np.ndarray:
    x = np.asarray(getattr(x, "data", x))
    if x.ndim < 2:
        raise ShapeError(f"{name}: expected samples as rows (N, D) (or (N, ...) which is flattened), "
                         f"got shape {fmt_shape(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _fix_signs(axes: np.ndarray) -> np.ndarray:
    """Flip each row of ``axes`` so its largest-magnitude entry is positive."""
    rows = np.arange(axes.shape[0])
    return axes * np.sign(axes[rows, np.abs(axes).argmax(axis=1)])[:, None]


class PCA:
    """Principal component analysis, sklearn's interface: ``PCA(n_components).fit(X).transform(X)``.

    ``n_components``: an int k, ``None`` (all ``min(N, D)``), or a float in (0, 1) (the fewest components
    explaining that fraction of the variance). ``whiten=True`` divides the projections by
    ``sqrt(explained_variance_)``, giving unit variance with ddof=1 (as sklearn). Computed in float64;
    ``transform`` returns the input's float dtype.

    >>> X = np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]])
    >>> p = PCA(1).fit(X)
    >>> p.explained_variance_ratio_.round(6).tolist(), p.transform(X).ravel().round(4).tolist()
    ([1.0], [-2.8284, 0.0, 2.8284])
    """

    def __init__(self, n_components=None, whiten: bool = False):
        if n_components is not None and not (
                (isinstance(n_components, int) and n_components > 0) or
                (isinstance(n_components, float) and 0 < n_components < 1)):
            raise ArgumentError(f"PCA: n_components must be a positive int, a float in (0, 1) or None, "
                                f"got {n_components!r}")
        self.n_components, self.whiten = n_components, whiten
        self.components_ = None

    def fit(self, X) -> "PCA":
        X = _as_matrix("PCA.fit", X).astype(np.float64)
        n, d = X.shape
        if n < 2:
            raise ShapeError(f"PCA.fit: needs at least 2 samples, got {n}")
        self.mean_ = X.mean(axis=0)
        _, s, vt = np.linalg.svd(X - self.mean_, full_matrices=False)
        variance = s**2 / (n - 1)
        ratio = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
        k = self.n_components
        if k is None:
            k = len(s)
        elif isinstance(k, float):
            k = int(np.searchsorted(np.cumsum(ratio), k) + 1)
        elif k > min(n, d):
            raise ArgumentError(f"PCA.fit: n_components={k} exceeds min(n_samples, n_features) = {min(n, d)}")
        self.n_components_ = int(min(k, len(s)))
        self.components_ = _fix_signs(vt[: self.n_components_])
        self.explained_variance_ = variance[: self.n_components_]
        self.explained_variance_ratio_ = ratio[: self.n_components_]
        self.singular_values_ = s[: self.n_components_]
        return self

    def _check(self, X, name):
        if self.components_ is None:
            raise ArgumentError(f"PCA.{name}: call fit(training_data) first")

    def transform(self, X) -> np.ndarray:
        self._check(X, "transform")
        M = _as_matrix("PCA.transform", X)
        if M.shape[1] != self.mean_.size:
            raise ShapeError(f"PCA.transform: fitted on {self.mean_.size} features, got {M.shape[1]}")
        out = (M - self.mean_) @ self.components_.T
        if self.whiten:
            out = out / np.sqrt(self.explained_variance_)
        return out.astype(M.dtype if M.dtype.kind == "f" else np.float64, copy=False)

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, Z) -> np.ndarray:
        """Map projections back to feature space (exact when all components are kept)."""
        self._check(Z, "inverse_transform")
        Z = np.asarray(getattr(Z, "data", Z))
        if Z.ndim != 2 or Z.shape[1] != self.n_components_:
            raise ShapeError(f"PCA.inverse_transform: expected (N, {self.n_components_}), got {fmt_shape(Z.shape)}")
        if self.whiten:
            Z = Z * np.sqrt(self.explained_variance_)
        out = Z @ self.components_ + self.mean_
        return out.astype(Z.dtype if Z.dtype.kind == "f" else np.float64, copy=False)


class Whitening:
    """PCA or ZCA whitening fitted on training data: the whitened training data has covariance ~ I.

    ``method='pca'`` gives rotated coordinates ``(N, D)``; ``'zca'`` rotates back (same shape as the input
    samples). ``eps`` is added to the eigenvalues (covariance with ddof=0). Use
    :class:`shendu.data.transforms.Whiten` to apply a fitted whitening inside a transform pipeline.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3)) @ np.array([[2.0, 0, 0], [1, 1, 0], [0, 0, 0.5]])
    >>> Z = Whitening("zca", eps=1e-8).fit(X).transform(X)
    >>> np.allclose(np.cov(Z.T, bias=True), np.eye(3), atol=1e-6)
    True
    """

    def __init__(self, method: str = "zca", eps: float = 1e-5):
        if method not in ("pca", "zca"):
            raise ArgumentError(f"Whitening: method must be 'pca' or 'zca', got {method!r}")
        if eps < 0:
            raise ArgumentError(f"Whitening: eps must be >= 0, got {eps}")
        self.method, self.eps = method, float(eps)
        self.matrix_ = None

    def fit(self, X) -> "Whitening":
        X = _as_matrix("Whitening.fit", X).astype(np.float64)
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        cov = Xc.T @ Xc / X.shape[0]
        eigvals, eigvecs = np.linalg.eigh(cov)  # ascending; reorder largest first
        order = eigvals.argsort()[::-1]
        self.eigenvalues_ = np.clip(eigvals[order], 0, None)
        self.components_ = _fix_signs(eigvecs[:, order].T)  # rows are the principal axes
        scaled = self.components_.T / np.sqrt(self.eigenvalues_ + self.eps)
        self.matrix_ = scaled @ self.components_ if self.method == "zca" else scaled
        return self

    def transform(self, X) -> np.ndarray:
        if self.matrix_ is None:
            raise ArgumentError("Whitening.transform: call fit(training_data) first")
        M = _as_matrix("Whitening.transform", X)
        if M.shape[1] != self.mean_.size:
            raise ShapeError(f"Whitening.transform: fitted on {self.mean_.size} features, got {M.shape[1]}")
        out = (M - self.mean_) @ self.matrix_
        return out.astype(M.dtype if M.dtype.kind == "f" else np.float64, copy=False)

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)
