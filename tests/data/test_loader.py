"""DataLoader, samplers, collate, dataset wrappers: order, shuffling, drop_last, prefetch, exact resume."""

import collections
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import shendu
from shendu.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    default_collate,
    random_split,
)
from shendu.data import transforms as T
from shendu.errors import ArgumentError, ShapeError, StateDictError


def _ids(loader):
    return [b[1].numpy().tolist() for b in loader]


def _dataset(n=10):
    return TensorDataset(np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n))


class ListDataset(Dataset):
    """A dataset without get_batch: forces the per-sample path."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full(2, i, np.float32), i


@pytest.mark.parametrize("prefetch", [False, True])
def test_sequential_order_len_and_drop_last(prefetch):
    loader = DataLoader(_dataset(10), batch_size=4, prefetch=prefetch)
    assert len(loader) == 3
    assert _ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    loader = DataLoader(_dataset(10), batch_size=4, drop_last=True, prefetch=prefetch)
    assert len(loader) == 2
    assert _ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    x, y = next(iter(loader))
    assert isinstance(x, shendu.Tensor) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x.numpy(), np.arange(8, dtype=np.float32).reshape(4, 2))


def test_shuffle_is_a_permutation_that_changes_per_epoch_and_is_seeded():
    loader = DataLoader(_dataset(50), batch_size=8, shuffle=True, generator=shendu.Generator(3))
    e1, e2 = sum(_ids(loader), []), sum(_ids(loader), [])
    assert sorted(e1) == list(range(50)) and sorted(e2) == list(range(50))
    assert e1 != e2 and e1 != list(range(50))
    again = DataLoader(_dataset(50), batch_size=8, shuffle=True, generator=shendu.Generator(3))
    assert sum(_ids(again), []) == e1
    # the permutation is numpy's PCG64 permutation for the same seed: not an accident of our code
    assert e1 == np.random.Generator(np.random.PCG64(3)).permutation(50).tolist()


def test_shuffle_does_not_touch_the_global_generator():
    shendu.manual_seed(0)
    before = shendu.backend.default_generator.get_state()
    loader = DataLoader(_dataset(20), batch_size=4, shuffle=True, generator=shendu.Generator(1))
    _ids(loader)
    assert shendu.backend.default_generator.get_state() == before


def test_fast_path_and_per_sample_path_agree():
    ds = ListDataset(11)
    arrays = TensorDataset(np.repeat(np.arange(11, dtype=np.float32)[:, None], 2, 1), np.arange(11))
    a = DataLoader(ds, batch_size=3, shuffle=True, generator=shendu.Generator(5))
    b = DataLoader(arrays, batch_size=3, shuffle=True, generator=shendu.Generator(5))
    assert not a.fast and b.fast
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_prefetch_gives_identical_batches_including_augmentation():
    x = np.random.default_rng(0).random((37, 1, 6, 6)).astype(np.float32)
    from shendu.data.datasets import ImageArrayDataset

    ds = ImageArrayDataset(x, np.arange(37), transform=T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(6, 2)]))
    runs = []
    for prefetch in (False, True):
        loader = DataLoader(ds, batch_size=5, shuffle=True, generator=shendu.Generator(9), prefetch=prefetch)
        runs.append([(bx.numpy().copy(), by.numpy().copy()) for _ in range(2) for bx, by in loader])
    assert len(runs[0]) == 16
    for (xa, ya), (xb, yb) in zip(*runs):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_errors_in_the_prefetch_thread_reach_the_caller():
    class Bad(ListDataset):
        def __getitem__(self, i):
            if i == 5:
                raise RuntimeError("broken sample 5")
            return super().__getitem__(i)

    with pytest.raises(RuntimeError, match="broken sample 5"):
        list(DataLoader(Bad(10), batch_size=2, prefetch=True))


def test_break_out_of_a_prefetching_loop_and_start_again():
    loader = DataLoader(_dataset(100), batch_size=2, num_prefetch=2)
    for i, _ in enumerate(loader):
        if i == 3:
            break
    assert _ids(loader)[0] == [0, 1]


_RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import shendu
    from shendu.data import DataLoader
    from shendu.data.datasets import ImageArrayDataset
    from shendu.data import transforms as T
    x = np.random.default_rng(0).random((23, 1, 5, 5)).astype(np.float32)
    ds = ImageArrayDataset(x, np.arange(23), transform=T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(5, 1)]))
    loader = DataLoader(ds, batch_size=4, shuffle=True, drop_last={drop_last}, generator=shendu.Generator(11))
    loader.load_state_dict(json.loads(sys.stdin.read()))
    out = [[b[1].numpy().tolist(), float(b[0].numpy().sum())] for b in loader]
    out += [[b[1].numpy().tolist(), float(b[0].numpy().sum())] for b in loader]  # and the epoch after
    print(json.dumps(out))
""")


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("stop_after", [0, 2, 5])
def test_resume_in_a_new_process_yields_exactly_the_remaining_batches(drop_last, stop_after):
    from shendu.data.datasets import ImageArrayDataset

    x = np.random.default_rng(0).random((23, 1, 5, 5)).astype(np.float32)
    ds = ImageArrayDataset(x, np.arange(23), transform=T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(5, 1)]))

    def make():
        return DataLoader(ds, batch_size=4, shuffle=True, drop_last=drop_last, generator=shendu.Generator(11))

    def summary(b):
        return [b[1].numpy().tolist(), float(b[0].numpy().sum())]

    full = make()
    epoch0 = [summary(b) for b in full]          # an epoch to move past epoch 0
    reference = [summary(b) for b in full] + [summary(b) for b in full]
    assert len(epoch0) == (5 if drop_last else 6)

    stopped = make()
    [None for _ in stopped]
    it = iter(stopped)
    for _ in range(stop_after):
        next(it)
    state = stopped.state_dict()
    assert state["epoch"] == 1 and state["position"] == stop_after
    payload = json.dumps(state)  # must be JSON-serialisable
    script = _RESUME_SCRIPT.format(drop_last=drop_last)
    res = subprocess.run([sys.executable, "-c", script], input=payload, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    resumed = json.loads(res.stdout)
    assert resumed == reference[stop_after:]


def test_resume_in_process_and_state_after_a_full_epoch():
    loader = DataLoader(_dataset(10), batch_size=3, shuffle=True, generator=shendu.Generator(2))
    first = _ids(loader)
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["position"] == 0
    second = _ids(loader)
    other = DataLoader(_dataset(10), batch_size=3, shuffle=True, generator=shendu.Generator(99))
    other.load_state_dict(json.loads(json.dumps(state)))
    assert _ids(other) == second != first


def test_load_state_dict_rejects_bad_state():
    loader = DataLoader(_dataset(10), batch_size=3)
    with pytest.raises(StateDictError, match="missing keys"):
        loader.load_state_dict({"epoch": 0})
    bad = dict(loader.state_dict(), position=9)
    with pytest.raises(StateDictError, match="outside"):
        loader.load_state_dict(bad)


def test_collate_nested_structures():
    Pair = collections.namedtuple("Pair", "a b")
    batch = [{"img": np.full((2, 2), i, np.float32), "meta": (i, float(i), "n%d" % i), "p": Pair(i, [i, -i])}
             for i in range(3)]
    out = default_collate(batch)
    assert out["img"].shape == (3, 2, 2) and out["img"].dtype == np.float32
    n, f, s = out["meta"]
    assert n.dtype == np.int64 and n.tolist() == [0, 1, 2]
    assert f.dtype == np.float64 and f.tolist() == [0.0, 1.0, 2.0]
    assert s == ["n0", "n1", "n2"]
    assert isinstance(out["p"], Pair) and out["p"].a.tolist() == [0, 1, 2]
    assert [t.tolist() for t in out["p"].b] == [[0, 1, 2], [0, -1, -2]]
    t = default_collate([shendu.tensor([1.0, 2.0]), shendu.tensor([3.0, 4.0])])
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert default_collate([np.float32(1), np.float32(2)]).dtype == np.float32
    with pytest.raises(ShapeError, match="different shapes"):
        default_collate([np.zeros(2), np.zeros(3)])


def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    r = RandomSampler(range(6), generator=shendu.Generator(0))
    assert sorted(r) == list(range(6)) and len(r) == 6
    rr = list(RandomSampler(range(3), replacement=True, num_samples=20, generator=shendu.Generator(0)))
    assert len(rr) == 20 and set(rr) <= {0, 1, 2}
    s = SubsetRandomSampler([5, 7, 9], generator=shendu.Generator(0))
    assert sorted(s) == [5, 7, 9]
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=True)
    assert list(bs) == [[0, 1, 2], [3, 4, 5]] and len(bs) == 2
    loader = DataLoader(_dataset(10), batch_sampler=BatchSampler(SubsetRandomSampler([1, 2, 3]), 2))
    assert sorted(sum(_ids(loader), [])) == [1, 2, 3]
    with pytest.raises(ArgumentError):
        BatchSampler(SequentialSampler(range(3)), 0)
    with pytest.raises(ArgumentError, match="mutually exclusive"):
        DataLoader(_dataset(4), shuffle=True, sampler=SequentialSampler(range(4)))


def test_subset_random_split_concat():
    ds = _dataset(10)
    sub = Subset(ds, [7, 3])
    assert int(sub[0][1].item()) == 7 and len(sub) == 2
    assert hasattr(sub, "get_batch") and not hasattr(Subset(ListDataset(3), [0]), "get_batch")
    assert _ids(DataLoader(sub, batch_size=2)) == [[7, 3]]
    parts = random_split(ds, [3, 7], generator=shendu.Generator(0))
    assert [len(p) for p in parts] == [3, 7]
    assert sorted(np.concatenate([p.indices for p in parts]).tolist()) == list(range(10))
    # fractions: floor each part, hand the remainder out from the first part (as torch)
    assert [len(p) for p in random_split(ds, [0.5, 0.25, 0.25], generator=shendu.Generator(0))] == [6, 2, 2]
    with pytest.raises(ArgumentError):
        random_split(ds, [3, 3])
    cat = ConcatDataset([ListDataset(3), ListDataset(2)])
    assert len(cat) == 5 and cat[3][1] == 0 and cat[-1][1] == 1
    assert _ids(DataLoader(cat, batch_size=5)) == [[0, 1, 2, 0, 1]]


def test_iterable_dataset():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(list(DataLoader(Stream(), batch_size=3, drop_last=True))) == 2
