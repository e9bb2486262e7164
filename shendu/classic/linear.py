"""Linear classifiers of the notes (CS231n lecture 2): the multiclass SVM and the softmax classifier.

Scores are ``s = X W + b`` with ``W`` (D, C) and ``b`` (C,). The full loss is the data loss (mean over
the N examples) plus the notes' L2 regulariser **without** a 1/2 factor, as CS231n's ``reg*np.sum(W*W)``:

    L = 1/N sum_i L_i + lambda * sum_{k,l} W_kl^2,        dL/dW = ... + 2 * lambda * W

(the bias is not regularised). The data losses:

    SVM (Weston-Watkins, margin 1, NOT divided by C):  L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + 1)
    softmax cross-entropy:                             L_i = logsumexp(s) - s_{y_i}

``svm_loss_vectorized`` and ``softmax_loss_vectorized`` are CS231n's functions: ``(W, X, y, reg) ->
(loss, dW)`` with no separate bias (append a column of ones to X for the bias trick). The classifiers
train by minibatch SGD on the same score-level gradients, with a separate bias.
"""

from __future__ import annotations

import numpy as np

from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape

__all__ = ["svm_loss_vectorized", "softmax_loss_vectorized", "LinearClassifier", "LinearSVM",
           "SoftmaxClassifier"]


def svm_data_loss(scores: np.ndarray, y: np.ndarray) -> tuple:
    """Mean multiclass hinge loss of ``scores`` (N, C) for labels ``y`` (N,), and its gradient dscores.

    Gradient per row: +1 for each wrong class with a positive margin (strictly > 0), minus their count
    for the true class; all divided by N.
    """
    n = len(scores)
    rows = np.arange(n)
    margins = scores - scores[rows, y][:, None] + 1
    np.maximum(margins, 0, out=margins)
    margins[rows, y] = 0
    active = (margins > 0).astype(scores.dtype)
    active[rows, y] = -active.sum(axis=1)
    return margins.sum() / n, active / n


def softmax_data_loss(scores: np.ndarray, y: np.ndarray) -> tuple:
    """Mean softmax cross-entropy ``logsumexp(s) - s_y`` and its gradient ``(softmax(s) - onehot(y)) / N``."""
    n = len(scores)
    rows = np.arange(n)
    shifted = scores - scores.max(axis=1, keepdims=True)  # exp cannot overflow; the value is unchanged
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = (np.log(total[:, 0]) - shifted[rows, y]).mean()
    dscores = exp / total
    dscores[rows, y] -= 1
    return loss, dscores / n


_DATA_LOSSES = {"svm": svm_data_loss, "softmax": softmax_data_loss}


def _check_loss_args(op: str, W, X, y) -> tuple:
    W, X, y = np.asarray(W), np.asarray(X), np.asarray(y)
    if W.ndim != 2 or X.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ShapeError(f"{op}: needs W (D, C) and X (N, D), got W {fmt_shape(W.shape)} and X "
                         f"{fmt_shape(X.shape)}")
    _check_labels(op, y, len(X), W.shape[1])
    return W, X, y


def _check_labels(op: str, y: np.ndarray, n: int, num_classes: int) -> None:
    if y.shape != (n,):
        raise ShapeError(f"{op}: y must have shape ({n},), one label per row of X, got {fmt_shape(y.shape)}")
    if y.dtype.kind not in "iu":
        raise DTypeError(f"{op}: y must hold integer class indices, got dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ArgumentError(f"{op}: labels must be in 0..{num_classes - 1}, got values from {y.min()} "
                            f"to {y.max()}")


def _full_loss(data_loss, W, X, y, reg) -> tuple:
    loss, dscores = data_loss(X @ W, y)
    return loss + reg * np.sum(W * W), X.T @ dscores + (2 * reg) * W


def svm_loss_vectorized(W, X, y, reg: float) -> tuple:
    """Multiclass SVM loss and gradient, fully vectorized: ``(loss, dW)``.

    ``loss = 1/N sum_i sum_{j != y_i} max(0, s_j - s_{y_i} + 1) + reg * sum(W^2)`` with ``s = X W``;
    ``W`` (D, C), ``X`` (N, D), ``y`` (N,) int in 0..C-1. ``dW = X^T dS + 2 reg W``.

    >>> import numpy as np
    >>> X = np.eye(3)   # one-hot rows, so the scores are the rows of W: the notes' example
    >>> W = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    >>> round(float(svm_loss_vectorized(W, X, np.array([0, 1, 2]), 0.0)[0]), 4)  # (2.9 + 0 + 12.9) / 3
    5.2667
    """
    W, X, y = _check_loss_args("svm_loss_vectorized", W, X, y)
    return _full_loss(svm_data_loss, W, X, y, reg)


def softmax_loss_vectorized(W, X, y, reg: float) -> tuple:
    """Softmax cross-entropy loss and gradient, fully vectorized: ``(loss, dW)``.

    ``loss = 1/N sum_i (logsumexp(s_i) - s_{i, y_i}) + reg * sum(W^2)`` with ``s = X W``;
    ``dW = X^T (P - Y) / N + 2 reg W``. With W = 0 the loss is ln C.

    >>> import numpy as np
    >>> loss, dW = softmax_loss_vectorized(np.zeros((4, 10)), np.ones((2, 4)), np.array([3, 7]), 0.1)
    >>> round(float(loss), 6) == round(float(np.log(10)), 6), dW.shape
    (True, (4, 10))
    """
    W, X, y = _check_loss_args("softmax_loss_vectorized", W, X, y)
    return _full_loss(softmax_data_loss, W, X, y, reg)


class LinearClassifier:
    """Scores ``X W + b``, trained by minibatch SGD on a data loss plus ``reg * sum(W^2)``.

    Subclasses name their data loss (``LinearSVM``: multiclass hinge; ``SoftmaxClassifier``: softmax
    cross-entropy). ``W`` (D, C) starts as ``weight_scale * N(0, 1)`` and ``b`` at 0, on the first call
    to :meth:`train`; later calls continue from the current weights. Parameters keep the dtype of the
    training data (float32 stays float32).
    """

    data_loss_name = ""

    def __init__(self, weight_scale: float = 1e-3):
        self.weight_scale = float(weight_scale)
        self.W = None
        self.b = None

    def loss(self, X, y, reg: float) -> tuple:
        """``(loss, dW, db)`` on a batch: data loss of ``X W + b`` plus ``reg * sum(W^2)`` (b unregularised)."""
        loss, dscores = _DATA_LOSSES[self.data_loss_name](X @ self.W + self.b, y)
        return loss + reg * np.sum(self.W * self.W), X.T @ dscores + (2 * reg) * self.W, dscores.sum(axis=0)

    def train(self, X, y, learning_rate: float = 1e-3, reg: float = 1e-5, num_iters: int = 100,
              batch_size: int = 200, seed: int = 0, verbose: bool = False, num_classes: int | None = None):
        """Minibatch SGD for ``num_iters`` steps; returns the list of batch losses (one per step).

        Batches are drawn without replacement from a fresh seeded permutation of the data every epoch
        (deterministic for a given ``seed``). ``X`` (N, D) or (N, ...); ``y`` (N,) int in 0..C-1, where
        C is ``num_classes`` or ``y.max() + 1`` (or the existing W's column count).
        """
        op = f"{type(self).__name__}.train"
        X = np.asarray(X)
        if X.ndim < 2:
            raise ShapeError(f"{op}: X must have shape (N, D), got {fmt_shape(X.shape)}")
        X = X.reshape(len(X), -1)
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        y = np.asarray(y)
        if learning_rate <= 0 or reg < 0 or num_iters < 0 or batch_size < 1:
            raise ArgumentError(f"{op}: needs learning_rate > 0, reg >= 0, num_iters >= 0, batch_size >= 1; "
                                f"got {learning_rate}, {reg}, {num_iters}, {batch_size}")
        if self.W is None:
            c = num_classes if num_classes is not None else (int(y.max()) + 1 if y.size else 0)
            _check_labels(op, y, len(X), c)
            rng = np.random.default_rng(seed)
            self.W = (self.weight_scale * rng.standard_normal((X.shape[1], c))).astype(X.dtype)
            self.b = np.zeros(c, X.dtype)
        elif X.shape[1] != self.W.shape[0]:
            raise ShapeError(f"{op}: X has {X.shape[1]} features but W is {fmt_shape(self.W.shape)}")
        _check_labels(op, y, len(X), self.W.shape[1])
        self.W, self.b = self.W.astype(X.dtype, copy=False), self.b.astype(X.dtype, copy=False)

        rng = np.random.default_rng([seed, 1])  # its own stream, independent of the initialisation
        batch_size = min(batch_size, len(X))
        history, order, pos = [], np.empty(0, np.int64), 0
        for it in range(num_iters):
            if pos + batch_size > len(order):
                order, pos = rng.permutation(len(X)), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            loss, dW, db = self.loss(X[idx], y[idx], reg)
            self.W -= learning_rate * dW
            self.b -= learning_rate * db
            history.append(float(loss))
            if verbose and (it % 100 == 0 or it == num_iters - 1):
                print(f"iteration {it} / {num_iters}: loss {loss:.6f}")
        return history

    def _scores(self, op: str, X) -> np.ndarray:
        if self.W is None:
            raise ArgumentError(f"{op}: the classifier is not trained; call train(X, y) first")
        X = np.asarray(X)
        X = X.reshape(len(X), -1) if X.ndim >= 2 else X
        if X.ndim != 2 or X.shape[1] != self.W.shape[0]:
            raise ShapeError(f"{op}: X must have shape (N, {self.W.shape[0]}), got {fmt_shape(X.shape)}")
        return X @ self.W + self.b

    def decision_function(self, X) -> np.ndarray:
        """Class scores ``X W + b`` (N, C)."""
        return self._scores(f"{type(self).__name__}.decision_function", X)

    def predict(self, X) -> np.ndarray:
        """The highest-scoring class (N,) for each row of ``X``."""
        return np.argmax(self._scores(f"{type(self).__name__}.predict", X), axis=1)

    def score(self, X, y) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


class LinearSVM(LinearClassifier):
    """Linear classifier with the multiclass SVM (hinge) loss, margin 1, not divided by C.

    >>> import numpy as np
    >>> X = np.array([[0., 1.], [1., 0.], [0., 2.], [2., 0.]]); y = np.array([0, 1, 0, 1])
    >>> svm = LinearSVM(); _ = svm.train(X, y, learning_rate=0.1, reg=0.0, num_iters=50, batch_size=4)
    >>> svm.predict(X)
    array([0, 1, 0, 1])
    """

    data_loss_name = "svm"


class SoftmaxClassifier(LinearClassifier):
    """Linear classifier with the softmax cross-entropy loss (multinomial logistic regression).

    >>> import numpy as np
    >>> X = np.array([[0., 1.], [1., 0.], [0., 2.], [2., 0.]]); y = np.array([0, 1, 0, 1])
    >>> clf = SoftmaxClassifier(); _ = clf.train(X, y, learning_rate=0.5, reg=0.0, num_iters=50, batch_size=4)
    >>> clf.predict(X)
    array([0, 1, 0, 1])
    """

    data_loss_name = "softmax"

    def predict_proba(self, X) -> np.ndarray:
        """Softmax probabilities (N, C)."""
        s = self._scores("SoftmaxClassifier.predict_proba", X)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
