"""Streaming metrics for classification: each keeps running counts over batches, then ``compute()``.

All are vectorized over the batch (counts via ``np.bincount``), work on raw arrays or Tensors, and have
``state_dict()``/``load_state_dict()`` so a run stopped mid-epoch resumes with the same running figures.

>>> import numpy as np
>>> cm = ConfusionMatrix(3)
>>> cm.update(np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 1, 2]))
>>> cm.compute().tolist()
[[1, 0, 0], [0, 1, 1], [0, 0, 1]]
"""

from __future__ import annotations

import numpy as np

from shendu.errors import ArgumentError, ShapeError

__all__ = ["Metric", "Mean", "Accuracy", "TopKAccuracy", "PerClassAccuracy", "ConfusionMatrix",
           "confusion_matrix", "accuracy", "top_k_accuracy", "make_metric"]


def _np(x) -> np.ndarray:
    data = getattr(x, "data", x)
    return data if isinstance(data, np.ndarray) else np.asarray(data)


def _labels(op: str, output, target) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(N, C)`` (or ``(N, C, ...)`` dense) and integer targets, flattened to ``(M, C)`` and ``(M,)``."""
    out, t = _np(output), _np(target)
    if out.ndim < 2:
        raise ShapeError(f"{op}: expected scores of shape (N, C) or (N, C, ...), got {out.shape}")
    if out.ndim > 2:  # dense prediction: class dim is 1
        out = np.moveaxis(out, 1, -1).reshape(-1, out.shape[1])
    t = t.reshape(-1)
    if t.shape[0] != out.shape[0]:
        raise ShapeError(f"{op}: {out.shape[0]} predictions but {t.shape[0]} targets")
    if t.dtype.kind not in "iu":
        raise ArgumentError(f"{op}: targets must be integer class indices, got dtype {t.dtype} "
                            "(one-hot or soft targets? pass target.argmax(1))")
    return out, t


def accuracy(output, target) -> float:
    """Fraction of rows whose arg-max equals the target."""
    out, t = _labels("accuracy", output, target)
    return float((out.argmax(1) == t).mean()) if len(t) else float("nan")


def top_k_accuracy(output, target, k: int = 5) -> float:
    """Fraction of rows whose target is among the ``k`` highest scores."""
    out, t = _labels("top_k_accuracy", output, target)
    k = min(k, out.shape[1])
    top = np.argpartition(-out, k - 1, axis=1)[:, :k]
    return float((top == t[:, None]).any(1).mean()) if len(t) else float("nan")


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """``n[i, j]`` = number of samples of true class ``i`` predicted as ``j`` (one ``bincount``)."""
    pred, target = _np(pred).reshape(-1).astype(np.int64), _np(target).reshape(-1).astype(np.int64)
    if len(pred) and (min(pred.min(), target.min()) < 0 or max(pred.max(), target.max()) >= num_classes):
        raise ArgumentError(f"confusion_matrix: labels must be in [0, {num_classes}), got values in "
                            f"[{min(pred.min(), target.min())}, {max(pred.max(), target.max())}]")
    return np.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


class Metric:
    """Base class: ``reset()``, ``update(output, target)``, ``compute()``; the state is a dict of numbers/arrays."""

    name = "metric"

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, output, target) -> None:
        raise NotImplementedError

    def compute(self):
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update({k: (np.array(v) if isinstance(v, (list, np.ndarray)) else v) for k, v in state.items()})


class Mean(Metric):
    """A weighted running mean (the epoch's average loss: ``update(batch_loss, batch_size)``)."""

    def __init__(self, name: str = "loss"):
        self.name = name
        super().__init__()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, value, weight=1) -> None:
        self.total += float(value) * int(weight)
        self.count += int(weight)

    def compute(self) -> float:
        return self.total / self.count if self.count else float("nan")


class Accuracy(Metric):
    name = "accuracy"

    def reset(self) -> None:
        self.correct, self.count = 0, 0

    def update(self, output, target) -> None:
        out, t = _labels("accuracy", output, target)
        self.correct += int((out.argmax(1) == t).sum())
        self.count += len(t)

    def compute(self) -> float:
        return self.correct / self.count if self.count else float("nan")


class TopKAccuracy(Accuracy):
    def __init__(self, k: int = 5):
        if int(k) < 1:
            raise ArgumentError(f"TopKAccuracy: k must be >= 1, got {k}")
        self.k, self.name = int(k), f"top{int(k)}"
        super().__init__()

    def update(self, output, target) -> None:
        out, t = _labels(self.name, output, target)
        k = min(self.k, out.shape[1])
        top = np.argpartition(-out, k - 1, axis=1)[:, :k]
        self.correct += int((top == t[:, None]).any(1).sum())
        self.count += len(t)


class ConfusionMatrix(Metric):
    name = "confusion_matrix"

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        super().__init__()

    def reset(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, output, target) -> None:
        out, t = _labels(self.name, output, target)
        if out.shape[1] != self.num_classes:
            raise ShapeError(f"{self.name}: scores have {out.shape[1]} classes, the metric was built for "
                             f"{self.num_classes}")
        self.matrix += confusion_matrix(out.argmax(1), t, self.num_classes)

    def compute(self) -> np.ndarray:
        return self.matrix.copy()


class PerClassAccuracy(ConfusionMatrix):
    """Recall of each class: the diagonal of the confusion matrix over its row sums (nan for absent classes)."""

    name = "per_class_accuracy"

    def compute(self) -> np.ndarray:
        rows = self.matrix.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rows > 0, np.diag(self.matrix) / np.maximum(rows, 1), np.nan)


def make_metric(spec, num_classes: int | None = None) -> Metric:
    """A Metric from a name: ``"accuracy"``, ``"top5"`` (any k), ``"per_class_accuracy"``, ``"confusion_matrix"``
    (the last two need ``num_classes``), or a Metric instance (returned as is)."""
    if isinstance(spec, Metric):
        return spec
    if spec in ("accuracy", "acc"):
        return Accuracy()
    if isinstance(spec, str) and spec.startswith("top") and spec[3:].isdigit():
        return TopKAccuracy(int(spec[3:]))
    if spec in ("per_class_accuracy", "confusion_matrix"):
        if num_classes is None:
            raise ArgumentError(f"metric {spec!r} needs num_classes; pass the Metric object, e.g. "
                                f"ConfusionMatrix(10)")
        return (PerClassAccuracy if spec == "per_class_accuracy" else ConfusionMatrix)(num_classes)
    raise ArgumentError(f"unknown metric {spec!r}; expected 'accuracy', 'topK' (e.g. 'top5'), "
                        "'per_class_accuracy', 'confusion_matrix' or a Metric instance")
