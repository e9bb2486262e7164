"""Datasets: the map-style protocol (``len`` and ``[i]``), array-backed datasets, subsets and concatenation.

A dataset may also offer ``get_batch(indices)``: the samples at ``indices`` already stacked, fetched with one
fancy index instead of a Python loop over samples. :class:`~shendu.data.DataLoader` uses it when present (the
"fast path"); :class:`TensorDataset`, :class:`Subset` of such a dataset, and the image datasets in
:mod:`shendu.data.datasets` all provide it.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from shendu import backend
from shendu.autograd import Tensor
from shendu.errors import ArgumentError, IndexOutOfRangeError, ShapeError, fmt_shape

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]


class Dataset:
    """A map-style dataset: subclasses define ``__len__`` and ``__getitem__(i)`` returning one sample."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other: "Dataset") -> "ConcatDataset":
        return ConcatDataset([self, other])


class IterableDataset:
    """A stream of samples (``__iter__``); the loader batches it in order and cannot shuffle or resume it."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


def _check_index(name: str, index, n: int) -> int:
    index = int(index)
    if not -n <= index < n:
        raise IndexOutOfRangeError(f"{name}: index {index} is out of range for a dataset of {n} samples")
    return index % n


class TensorDataset(Dataset):
    """Samples are the rows of equally long arrays or Tensors: ``TensorDataset(x, y)[i] == (x[i], y[i])``.

    Items are Tensors (views, no copy). ``get_batch`` indexes every array once for a whole batch.

    >>> import numpy as np
    >>> ds = TensorDataset(np.arange(6.0).reshape(3, 2), np.array([0, 1, 0]))
    >>> len(ds), ds[1][0].tolist(), int(ds[1][1].item())
    (3, [2.0, 3.0], 1)
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ArgumentError("TensorDataset: needs at least one array or Tensor")
        arrays = tuple(t.data if isinstance(t, Tensor) else np.asarray(t) for t in tensors)
        n = arrays[0].shape[0] if arrays[0].ndim else None
        if n is None or any(a.ndim == 0 or a.shape[0] != n for a in arrays):
            shapes = ", ".join(fmt_shape(a.shape) for a in arrays)
            raise ShapeError(f"TensorDataset: all arrays must have the same first dimension, got shapes {shapes}")
        self.arrays = arrays

    @property
    def tensors(self) -> tuple:
        return tuple(Tensor(a) for a in self.arrays)

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        i = _check_index("TensorDataset", index, len(self))
        return tuple(Tensor(a[i]) for a in self.arrays)

    def get_batch(self, indices) -> tuple:
        """The rows at ``indices`` of every array, as arrays (one fancy index each)."""
        indices = np.asarray(indices, dtype=np.int64)
        return tuple(a[indices] for a in self.arrays)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[_check_index("Subset", index, len(self))])]

    def __getattr__(self, name):
        # Offer the fast path only when the wrapped dataset has it (hasattr() on a Subset must say no otherwise).
        inner = self.__dict__.get("dataset")
        if name == "get_batch" and hasattr(inner, "get_batch"):
            return lambda idx: inner.get_batch(self.indices[np.asarray(idx, dtype=np.int64)])
        raise AttributeError(name)


class ConcatDataset(Dataset):
    """Several datasets one after another: index ``i`` runs through the first, then the second, ..."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ArgumentError("ConcatDataset: needs at least one dataset")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise ArgumentError("ConcatDataset: cannot concatenate an IterableDataset (it has no length)")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        i = _check_index("ConcatDataset", index, len(self))
        k = bisect.bisect_right(self.cumulative_sizes, i)
        return self.datasets[k][i - (self.cumulative_sizes[k - 1] if k else 0)]


def random_split(dataset, lengths, generator: backend.Generator | None = None) -> list:
    """Split ``dataset`` into non-overlapping random :class:`Subset` s of the given lengths.

    ``lengths`` are sample counts summing to ``len(dataset)``, or fractions summing to 1 (then each part gets
    ``floor(f * n)`` and the remainder is handed out one by one from the first part, as PyTorch does).
    The permutation comes from ``generator`` (default: shendu's global generator).

    >>> a, b = random_split(TensorDataset(np.arange(10)), [0.7, 0.3], generator=backend.Generator(0))
    >>> len(a), len(b), sorted(a.indices.tolist() + b.indices.tolist()) == list(range(10))
    (7, 3, True)
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, float) for x in lengths):
        if any(f < 0 for f in lengths) or not math.isclose(sum(lengths), 1.0):
            raise ArgumentError(f"random_split: fractions must be >= 0 and sum to 1, got {lengths}")
        counts = [int(math.floor(f * n)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if any(int(x) != x or x < 0 for x in lengths) or sum(lengths) != n:
        raise ArgumentError(f"random_split: lengths {lengths} must be non-negative counts summing to the dataset "
                            f"size {n}, or fractions summing to 1")
    perm = backend.rng(generator).permutation(n)
    bounds = np.cumsum([0] + [int(x) for x in lengths])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
