"""k-nearest neighbours, the notes' first classifier (CS231n lecture 2).

Training memorises the data. Prediction measures the distance from a test image to every training
image, takes the k nearest and a majority vote of their labels:

    L1 (Manhattan)  d1(a, b) = sum_p |a_p - b_p|
    L2 (Euclidean)  d2(a, b) = sqrt(sum_p (a_p - b_p)^2)

L2 uses the matrix trick ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b``: one matrix product (GEMM) per
chunk of test rows, clamped at 0 before the square root because rounding leaves tiny negatives.
L1 has no such trick; it broadcasts ``|a - b|`` over tiles of test x train rows whose size is bounded by
``max_elements``, so memory stays flat whatever the data size.

Voting: the class with the most votes among the k nearest wins; a tie between classes is broken in
favour of the tied class whose member is nearest (so k=2 behaves like k=1 on a split vote). This
differs from CS231n's ``argmax(bincount(...))`` and scikit-learn, which both pick the smallest label.
Equal distances keep training order (the earlier training row counts as nearer), except exactly at
the k-th place, where which of the equally distant rows is taken is unspecified.

k is chosen by k-fold cross-validation (the notes' "idea #4"): :func:`choose_k_by_cross_validation`.
"""

from __future__ import annotations

import numpy as np

from shendu.errors import ArgumentError, ShapeError, fmt_shape

__all__ = ["KNearestNeighbor", "pairwise_distances", "choose_k_by_cross_validation"]

_METRICS = ("l2", "l1")


def _as_features(op: str, name: str, x) -> np.ndarray:
    """A 2-D float array (N, D); images (N, ...) are flattened, integer data becomes float64."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ShapeError(f"{op}: {name} must have shape (N, D) or (N, ...) (one row per example), "
                         f"got shape {fmt_shape(x.shape)}; for one example use x[None]")
    if x.dtype.kind not in "fiub":
        raise ArgumentError(f"{op}: {name} must be numeric, got dtype {x.dtype}")
    x = x.reshape(len(x), -1)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _check_metric(op: str, metric: str) -> str:
    if metric not in _METRICS:
        raise ArgumentError(f"{op}: metric must be 'l2' or 'l1', got {metric!r}")
    return metric


def _l2_squared(x: np.ndarray, x_sq: np.ndarray, train: np.ndarray, train_sq: np.ndarray) -> np.ndarray:
    """Squared L2 distances (n_test, n_train) by one GEMM; clamped at 0 (rounding gives tiny negatives)."""
    d2 = x @ train.T
    d2 *= -2
    d2 += x_sq[:, None]
    d2 += train_sq[None, :]
    return np.maximum(d2, 0, out=d2)


def _l1(x: np.ndarray, train: np.ndarray, max_elements: int) -> np.ndarray:
    """L1 distances (n_test, n_train) by broadcasting over tiles of at most ``max_elements`` differences."""
    n, m, d = len(x), len(train), x.shape[1]
    out = np.empty((n, m), np.result_type(x, train))
    rows = max(1, min(n, max_elements // max(1, m * d)))          # test rows per tile
    cols = m if rows > 1 else max(1, min(m, max_elements // max(1, d)))  # train rows per tile
    for i in range(0, n, rows):
        for j in range(0, m, cols):
            diff = np.abs(x[i:i + rows, None, :] - train[None, j:j + cols, :])
            out[i:i + rows, j:j + cols] = diff.sum(axis=2)
    return out


def pairwise_distances(x, train, metric: str = "l2", max_elements: int = 1 << 22) -> np.ndarray:
    """Distances ``(N, M)`` between the rows of ``x`` (N, D) and ``train`` (M, D), as ``scipy``'s ``cdist``.

    ``metric='l2'``: Euclidean, by the matrix trick; ``'l1'``: Manhattan, by tiled broadcasting with at
    most ``max_elements`` differences in memory at once. Float32 input stays float32.

    >>> pairwise_distances([[0.0, 0.0]], [[3.0, 4.0], [1.0, 1.0]])
    array([[5.        , 1.41421356]])
    >>> pairwise_distances([[0.0, 0.0]], [[3.0, 4.0], [1.0, 1.0]], metric="l1")
    array([[7., 2.]])
    """
    op = "pairwise_distances"
    _check_metric(op, metric)
    x, train = _as_features(op, "x", x), _as_features(op, "train", train)
    if x.shape[1] != train.shape[1]:
        raise ShapeError(f"{op}: x has {x.shape[1]} features but train has {train.shape[1]}")
    if metric == "l1":
        return _l1(x, train, max_elements)
    d2 = _l2_squared(x, np.einsum("ij,ij->i", x, x), train, np.einsum("ij,ij->i", train, train))
    return np.sqrt(d2, out=d2)


def _vote(neighbour_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Majority vote per row of ``neighbour_labels`` (n, k), sorted nearest first; ties -> nearest class.

    Each class gets the key ``votes * (k + 1) + (k - first_rank)``, where ``first_rank`` is the position
    of its nearest member (k when absent), so more votes always win and equal votes go to the nearer.
    """
    n, k = neighbour_labels.shape
    flat = (np.arange(n)[:, None] * num_classes + neighbour_labels).ravel()
    votes = np.bincount(flat, minlength=n * num_classes).reshape(n, num_classes)
    first_rank = np.full(n * num_classes, k, np.int64)
    np.minimum.at(first_rank, flat, np.tile(np.arange(k), n))
    first_rank = first_rank.reshape(n, num_classes)
    return np.argmax(votes * (k + 1) + (k - first_rank), axis=1)


class KNearestNeighbor:
    """k-NN classifier: ``fit`` memorises, ``predict`` takes a majority vote of the k nearest.

    ``metric`` is ``'l2'`` (Euclidean, default) or ``'l1'`` (Manhattan). Labels may be any sortable
    values; they are stored as ``classes_`` and predicted back in kind. See the module docstring for the
    tie rule (nearest tied class wins; sklearn picks the smallest label instead).

    >>> import numpy as np
    >>> knn = KNearestNeighbor(k=3).fit(np.array([[0.], [1.], [2.], [10.], [11.]]), np.array([0, 0, 0, 1, 1]))
    >>> knn.predict(np.array([[0.5], [10.2]]))
    array([0, 1])
    """

    def __init__(self, k: int = 1, metric: str = "l2"):
        if int(k) != k or k < 1:
            raise ArgumentError(f"KNearestNeighbor: k must be a positive integer, got {k!r}")
        self.k = int(k)
        self.metric = _check_metric("KNearestNeighbor", metric)
        self.X_train = None

    def fit(self, X, y) -> "KNearestNeighbor":
        """Memorise ``X`` (N, D) or (N, ...) and labels ``y`` (N,). Returns self."""
        op = "KNearestNeighbor.fit"
        X = _as_features(op, "X", X)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ShapeError(f"{op}: y must have shape ({len(X)},) to match X {fmt_shape(X.shape)}, "
                             f"got {fmt_shape(y.shape)}")
        self.classes_, self.y_train = np.unique(y, return_inverse=True)
        self.X_train = X
        self._train_sq = np.einsum("ij,ij->i", X, X) if self.metric == "l2" else None
        return self

    def _check_fitted(self, op: str, X) -> np.ndarray:
        if self.X_train is None:
            raise ArgumentError(f"{op}: the classifier is not fitted; call fit(X, y) first")
        X = _as_features(op, "X", X)
        if X.shape[1] != self.X_train.shape[1]:
            raise ShapeError(f"{op}: X has {X.shape[1]} features but the training data had "
                             f"{self.X_train.shape[1]}")
        return X

    def compute_distances(self, X, batch_size: int = 256) -> np.ndarray:
        """Distances (N_test, N_train) to every training row under ``self.metric`` (true L2, with sqrt)."""
        X = self._check_fitted("KNearestNeighbor.compute_distances", X)
        return np.concatenate([self._ranking_distances(X[i:i + batch_size], squared=False)
                               for i in range(0, len(X), max(1, batch_size))])

    def _ranking_distances(self, x: np.ndarray, squared: bool = True) -> np.ndarray:
        # squared L2 ranks the same as L2, so the sqrt is skipped when only the order matters
        if self.metric == "l1":
            return _l1(x, self.X_train, 1 << 22)
        d2 = _l2_squared(x, np.einsum("ij,ij->i", x, x), self.X_train, self._train_sq)
        return d2 if squared else np.sqrt(d2, out=d2)

    def kneighbors(self, X, k: int | None = None, batch_size: int = 256) -> np.ndarray:
        """Indices (N, k) of the k nearest training rows, nearest first, chunk by chunk of ``batch_size``."""
        X = self._check_fitted("KNearestNeighbor.kneighbors", X)
        k = self.k if k is None else int(k)
        if not 1 <= k <= len(self.X_train):
            raise ArgumentError(f"KNearestNeighbor: k={k} needs 1 <= k <= number of training rows "
                                f"({len(self.X_train)})")
        if batch_size < 1:
            raise ArgumentError(f"KNearestNeighbor: batch_size must be >= 1, got {batch_size}")
        out = np.empty((len(X), k), np.int64)
        for i in range(0, len(X), batch_size):
            d = self._ranking_distances(X[i:i + batch_size])
            if k < d.shape[1]:
                near = np.argpartition(d, k - 1, axis=1)[:, :k]
            else:
                near = np.broadcast_to(np.arange(d.shape[1]), d.shape)
            # sort the k by (distance, training index): equal distances keep training order
            dk = np.take_along_axis(d, near, axis=1)
            order = np.lexsort((near, dk), axis=1)
            out[i:i + batch_size] = np.take_along_axis(near, order, axis=1)
        return out

    def predict(self, X, batch_size: int = 256) -> np.ndarray:
        """Predicted labels (N,) for ``X`` (N, D); test rows go ``batch_size`` at a time to bound memory."""
        near = self.kneighbors(X, batch_size=batch_size)
        return self.classes_[_vote(self.y_train[near], len(self.classes_))]

    def score(self, X, y, batch_size: int = 256) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``."""
        return float(np.mean(self.predict(X, batch_size=batch_size) == np.asarray(y)))


def choose_k_by_cross_validation(X, y, ks=(1, 3, 5, 8, 10, 12, 15, 20, 50, 100), folds: int = 5,
                                 metric: str = "l2", shuffle: bool = True, seed: int = 0,
                                 batch_size: int = 256) -> dict:
    """Choose k by ``folds``-fold cross-validation (the notes' idea #4; the default grid is CS231n's).

    The data is split into ``folds`` near-equal folds (after a seeded shuffle unless ``shuffle=False``,
    in which case fold i is the i-th consecutive block, as ``sklearn.model_selection.KFold``); each fold
    in turn is the validation set for a k-NN fitted on the others. The neighbours are found once per
    fold for the largest k and every k reuses them.

    Returns a dict: ``ks`` (array), ``accuracies`` (len(ks), folds), ``mean`` and ``std`` per k, and
    ``best_k`` (highest mean accuracy, the smallest such k on a tie).

    >>> from sklearn.datasets import load_digits
    >>> d = load_digits()
    >>> r = choose_k_by_cross_validation(d.data[:500], d.target[:500], ks=[1, 3, 5])
    >>> r["accuracies"].shape, int(r["best_k"]) in (1, 3, 5)
    ((3, 5), True)
    """
    op = "choose_k_by_cross_validation"
    X = _as_features(op, "X", X)
    y = np.asarray(y)
    if y.shape != (len(X),):
        raise ShapeError(f"{op}: y must have shape ({len(X)},), got {fmt_shape(y.shape)}")
    ks = np.asarray(ks, np.int64).ravel()
    if not 2 <= folds <= len(X):
        raise ArgumentError(f"{op}: folds must be between 2 and the number of examples ({len(X)}), "
                            f"got {folds}")
    order = np.random.default_rng(seed).permutation(len(X)) if shuffle else np.arange(len(X))
    parts = np.array_split(order, folds)
    smallest_train = len(X) - max(len(p) for p in parts)
    if len(ks) == 0 or ks.min() < 1 or ks.max() > smallest_train:
        raise ArgumentError(f"{op}: every k must be in 1..{smallest_train} (the smallest training split), "
                            f"got {ks.tolist()}")
    acc = np.empty((len(ks), folds))
    for f, val in enumerate(parts):
        train = np.concatenate([p for i, p in enumerate(parts) if i != f])
        knn = KNearestNeighbor(k=int(ks.max()), metric=metric).fit(X[train], y[train])
        near_labels = knn.y_train[knn.kneighbors(X[val], batch_size=batch_size)]
        for i, k in enumerate(ks):
            pred = knn.classes_[_vote(near_labels[:, :k], len(knn.classes_))]
            acc[i, f] = np.mean(pred == y[val])
    mean = acc.mean(axis=1)
    return {"ks": ks, "accuracies": acc, "mean": mean, "std": acc.std(axis=1),
            "best_k": int(ks[np.argmax(mean)])}
