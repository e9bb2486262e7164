"""Samplers: the order in which a loader visits a dataset's indices, and how it groups them into batches.

Random samplers draw from the :class:`shendu.Generator` they are given (the loader passes its own), never
from hidden global state, so a loader can save the generator and replay an epoch's permutation exactly.
"""

from __future__ import annotations

import numpy as np

from shendu import backend
from shendu.errors import ArgumentError

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler"]


class Sampler:
    """Yields dataset indices. Subclasses define ``order()`` (the indices of one pass, as an array)."""

    def order(self) -> np.ndarray:
        raise NotImplementedError

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self) -> int:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def order(self) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh random permutation of the indices on every pass (or ``num_samples`` draws with replacement).

    >>> s = RandomSampler(range(5), generator=backend.Generator(0))
    >>> sorted(s) == [0, 1, 2, 3, 4]
    True
    """

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None,
                 generator: backend.Generator | None = None):
        if num_samples is not None and (int(num_samples) != num_samples or num_samples <= 0):
            raise ArgumentError(f"RandomSampler: num_samples must be a positive integer, got {num_samples}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def order(self) -> np.ndarray:
        rng, n = backend.rng(self.generator), len(self.data_source)
        if self.replacement:
            return rng.integers(0, n, size=self.num_samples, dtype=np.int64)
        reps = -(-self.num_samples // n)  # more samples than data: concatenated permutations, as PyTorch
        return np.concatenate([rng.permutation(n) for _ in range(reps)])[: self.num_samples].astype(np.int64)

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a fresh random order on every pass."""

    def __init__(self, indices, generator: backend.Generator | None = None):
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.generator = generator

    def order(self) -> np.ndarray:
        return self.indices[backend.rng(self.generator).permutation(len(self.indices))]

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler:
    """Groups a sampler's indices into lists of ``batch_size`` (the last one shorter unless ``drop_last``).

    >>> list(BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False))
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool = False):
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size <= 0:
            raise ArgumentError(f"BatchSampler: batch_size must be a positive integer, got {batch_size!r}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)

    def __iter__(self):
        order = self.sampler.order() if hasattr(self.sampler, "order") else np.fromiter(self.sampler, np.int64)
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size].tolist()

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
