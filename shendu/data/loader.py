"""DataLoader: batches of a dataset as shendu Tensors, shuffled by its own generator, prefetched, resumable.

* **Fast path.** When the dataset has ``get_batch(indices)`` (TensorDataset, Subset of one, the image
  datasets) and no ``collate_fn`` is given, a batch is one fancy index per array, not a loop over samples.
* **Prefetch.** A background thread prepares the next ``num_prefetch`` batches into a bounded queue while
  the caller computes; NumPy releases the GIL in copies, so loading overlaps training.
* **Exact resume.** ``state_dict()`` records the epoch, how many batches of it the caller has received, and
  the generator state at the start of the epoch (all JSON-serialisable). ``load_state_dict()`` in a new
  process re-draws the same permutation and yields exactly the remaining batches. Random transforms that
  were given no generator draw from a per-batch generator seeded by (loader seed, epoch, batch index), so
  augmentation is replayed exactly too, prefetch or not.
"""

from __future__ import annotations

import collections.abc as cabc
import queue
import threading

import numpy as np

from shendu import backend
from shendu.autograd import Tensor
from shendu.data._rng import batch_generator
from shendu.data.dataset import IterableDataset
from shendu.data.sampler import BatchSampler, RandomSampler, SequentialSampler
from shendu.errors import ArgumentError, DTypeError, ShapeError, StateDictError, fmt_shape

__all__ = ["DataLoader", "default_collate", "default_convert"]


def default_collate(batch: list):
    """Stack a list of samples into one batch of Tensors, keeping the samples' structure.

    Arrays and Tensors are stacked along a new first dim; Python ints become int64, floats float64 and
    bools bool (as PyTorch); NumPy scalars keep their dtype; strings stay a list; tuples, lists, namedtuples
    and dicts are collated field by field.

    >>> b = default_collate([(np.zeros(2, np.float32), 1), (np.ones(2, np.float32), 0)])
    >>> b[0].shape, b[1].tolist()
    ((2, 2), [1, 0])
    """
    if not len(batch):
        raise ArgumentError("default_collate: got an empty batch")
    elem = batch[0]
    if isinstance(elem, (Tensor, np.ndarray)):
        arrays = [b.data if isinstance(b, Tensor) else np.asarray(b) for b in batch]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ShapeError(f"default_collate: samples have different shapes {sorted(map(fmt_shape, shapes))}; "
                             "stacking needs equal shapes (resize or crop them, or pass a collate_fn)")
        return Tensor(np.stack(arrays))
    if isinstance(elem, np.generic):
        return Tensor(np.array(batch))
    if isinstance(elem, bool):
        return Tensor(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return Tensor(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return Tensor(np.array(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, cabc.Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, cabc.Sequence):
        if len({len(b) for b in batch}) > 1:
            raise ShapeError("default_collate: samples are sequences of different lengths "
                             f"{sorted({len(b) for b in batch})}; every sample needs the same structure")
        fields = [default_collate(list(s)) for s in zip(*batch)]
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise DTypeError(f"default_collate: cannot batch samples of type {type(elem).__name__}; expected arrays, "
                     "Tensors, numbers, strings, or tuples/lists/dicts of them (or pass a collate_fn)")


def default_convert(data):
    """Wrap the arrays in an already-batched structure (from ``get_batch``) as Tensors, keeping its shape."""
    if isinstance(data, np.ndarray):
        return Tensor(data)
    if isinstance(data, cabc.Mapping):
        return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(v) for v in data))
    if isinstance(data, (tuple, list)):
        return type(data)(default_convert(v) for v in data)
    return data


class DataLoader:
    """Iterate over ``dataset`` in batches of shendu Tensors.

    Arguments follow ``torch.utils.data.DataLoader``. ``generator`` drives the shuffle (default: a new
    :class:`shendu.Generator` seeded from shendu's global one, so :func:`shendu.manual_seed` makes runs
    repeatable). ``prefetch`` runs loading in one background thread, ``num_prefetch`` batches ahead.
    Only one iteration over a loader may be active at a time (its state describes that iteration).

    >>> import shendu
    >>> from shendu.data import TensorDataset
    >>> ds = TensorDataset(np.arange(10, dtype=np.float32), np.arange(10))
    >>> loader = DataLoader(ds, batch_size=4, shuffle=True, generator=shendu.Generator(0))
    >>> [len(y) for x, y in loader], len(loader)
    ([4, 4, 2], 3)
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool = False, sampler=None, batch_sampler=None,
                 drop_last: bool = False, collate_fn=None, generator: backend.Generator | None = None,
                 prefetch: bool = True, num_prefetch: int = 2):
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ArgumentError("DataLoader: batch_sampler is mutually exclusive with batch_size, shuffle, sampler "
                                "and drop_last")
        if sampler is not None and shuffle:
            raise ArgumentError("DataLoader: sampler is mutually exclusive with shuffle (the sampler decides the "
                                "order)")
        if int(num_prefetch) < 1:
            raise ArgumentError(f"DataLoader: num_prefetch must be >= 1, got {num_prefetch}")
        self.dataset = dataset
        self.generator = generator if generator is not None else backend.Generator(
            int(backend.rng().integers(2**63)))
        self.iterable = isinstance(dataset, IterableDataset)
        if self.iterable and (shuffle or sampler is not None or batch_sampler is not None):
            raise ArgumentError("DataLoader: an IterableDataset has no indices to shuffle or sample")
        if batch_sampler is None and not self.iterable:
            if sampler is None:
                sampler = RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.fast = collate_fn is None and hasattr(dataset, "get_batch")
        self.prefetch, self.num_prefetch = bool(prefetch), int(num_prefetch)
        self.epoch = 0          # epochs completed
        self._position = 0      # batches of the current epoch handed to the caller
        self._epoch_start = None  # generator states when the current epoch's order was drawn
        self._resume = None
        self._active = None     # the iteration whose progress the state describes

    # -- the generators whose state decides an epoch's order ------------------------------------------------
    def _generators(self) -> dict:
        gens = {"generator": self.generator}
        own = getattr(self.sampler, "generator", None)
        if isinstance(own, backend.Generator) and own is not self.generator:
            gens["sampler_generator"] = own
        return gens

    def _batch_generator(self, batch_index: int) -> backend.Generator:
        """The generator for batch ``batch_index`` of the current epoch's random transforms."""
        seed = self.generator.initial_seed() | (self.epoch << 64) | (batch_index << 96)
        return backend.Generator(seed)

    def __len__(self) -> int:
        if self.iterable:
            raise TypeError("DataLoader: an IterableDataset has no length")  # TypeError: what list() expects
        return len(self.batch_sampler)

    def __iter__(self):
        if self.iterable:
            return self._iter_stream()
        if self._resume is not None:
            state, self._resume = self._resume, None
            for key, gen in self._generators().items():
                gen.set_state(state[key])
            skip = self._position
        else:
            if self._epoch_start is not None:  # the previous pass was abandoned: it counts as an epoch
                self.epoch += 1
            skip = self._position = 0
        self._epoch_start = {k: g.get_state() for k, g in self._generators().items()}
        batches = list(self.batch_sampler)  # draws this epoch's order now, from the generator
        self._active = _LoaderIter(self, batches, skip)
        return self._active

    def _iter_stream(self):
        chunk = []
        for sample in self.dataset:
            chunk.append(sample)
            if len(chunk) == self.batch_size:
                yield self.collate_fn(chunk)
                chunk = []
        if chunk and not self.drop_last:
            yield self.collate_fn(chunk)

    def _fetch(self, indices: list, batch_index: int):
        with batch_generator(self._batch_generator(batch_index)):
            if self.fast:
                return default_convert(self.dataset.get_batch(np.asarray(indices, dtype=np.int64)))
            return self.collate_fn([self.dataset[i] for i in indices])

    def _finish_epoch(self) -> None:
        self.epoch += 1
        self._position = 0
        self._epoch_start = None

    # -- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{'epoch', 'position', 'generator', ...}``: where iteration stands, JSON-serialisable."""
        if self._resume is not None:
            return dict(self._resume)
        gens = self._epoch_start or {k: g.get_state() for k, g in self._generators().items()}
        return {"epoch": self.epoch, "position": self._position, **gens}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; the next ``iter()`` yields exactly the batches that remained."""
        missing = {"epoch", "position", *self._generators()} - set(state)
        if missing:
            raise StateDictError(f"DataLoader.load_state_dict: missing keys {sorted(missing)}; expected the dict "
                                 "from DataLoader.state_dict()")
        if not 0 <= int(state["position"]) <= len(self):
            raise StateDictError(f"DataLoader.load_state_dict: position {state['position']} is outside "
                                 f"0..{len(self)} batches of this loader; was it saved from a different loader?")
        self.epoch, self._position = int(state["epoch"]), int(state["position"])
        self._epoch_start = None
        self._resume = dict(state)


_DONE = object()


class _LoaderIter:
    """One pass over a loader's batches, from ``skip`` on; counts what the caller has received."""

    def __init__(self, loader: DataLoader, batches: list, skip: int):
        self.loader, self.batches, self.next_index = loader, batches, skip
        self.queue = self.thread = None
        if loader.prefetch and skip < len(batches):
            self.stop = threading.Event()
            self.queue = queue.Queue(maxsize=loader.num_prefetch)
            self.thread = threading.Thread(target=self._produce, args=(skip,), daemon=True, name="shendu-prefetch")
            self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, start: int) -> None:
        try:
            for b in range(start, len(self.batches)):
                if self.stop.is_set() or not self._put((True, self.loader._fetch(self.batches[b], b))):
                    return
        except BaseException as exc:  # handed to the caller's thread and raised there
            self._put((False, exc))
            return
        self._put((True, _DONE))

    def __iter__(self):
        return self

    def __next__(self):
        if self.next_index >= len(self.batches):
            if self.loader._active is self:
                self.loader._active = None
                self.loader._finish_epoch()
            self.close()
            raise StopIteration
        if self.queue is None:
            batch = self.loader._fetch(self.batches[self.next_index], self.next_index)
        else:
            ok, batch = self.queue.get()
            if not ok:
                self.close()
                raise batch
        self.next_index += 1
        if self.loader._active is self:
            self.loader._position = self.next_index
        return batch

    def __len__(self) -> int:
        return len(self.batches) - self.next_index

    def close(self) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread = None

    def __del__(self):
        self.close()
