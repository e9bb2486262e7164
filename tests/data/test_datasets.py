"""Datasets: IDX parsing (raw and gzip, bad files), file search and the missing-file message, real
Fashion-MNIST when installed, digits, CIFAR-10's restricted unpickler, ImageFolder."""

import gzip
import os
import pathlib
import pickle
import struct
import time

import numpy as np
import pytest

import shendu
from shendu.data import DataLoader
from shendu.data import transforms as T
from shendu.data.datasets import CIFAR10, MNIST, Digits, FashionMNIST, ImageFolder, read_idx
from shendu.data.datasets.cifar import safe_unpickle
from shendu.errors import DataError

SYSTEM = pathlib.Path("/usr/share/datasets/fashion-mnist")


def write_idx(path, array, compress=False):
    """IDX writer written from the format description (independent of the reader under test)."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    code = codes[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = pathlib.Path(path)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def make_split(folder, n, split="train", compress=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    stem = "train" if split == "train" else "t10k"
    ext = ".gz" if compress else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{stem}-images-idx3-ubyte{ext}", images, compress)
    write_idx(folder / f"{stem}-labels-idx1-ubyte{ext}", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trip(tmp_path, compress, dtype):
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype) if dtype != np.uint8 else \
        np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    out = read_idx(write_idx(tmp_path / "a.idx", a, compress))
    assert out.shape == a.shape and out.dtype == a.dtype
    np.testing.assert_array_equal(out, a)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"<html>404</html>")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)
    bad.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="unknown IDX type code 0x07"):
        read_idx(bad)
    bad.write_bytes(bytes([0, 0, 0x08, 2]) + struct.pack(">II", 3, 3) + b"\x00" * 8)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(bad)


def test_fashion_mnist_from_root_gz_and_raw(tmp_path):
    images, labels = make_split(tmp_path / "gz", 20, "train", compress=True)
    ds = FashionMNIST(tmp_path / "gz", train=True)
    assert len(ds) == 20 and ds.data.dtype == np.uint8 and ds.data.shape == (20, 28, 28)
    np.testing.assert_array_equal(ds.data, images)
    np.testing.assert_array_equal(ds.targets, labels)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and y == 3
    np.testing.assert_allclose(x[0], images[3] / 255.0, rtol=1e-6)
    assert ds.images.shape == (20, 1, 28, 28) and 0 <= ds.images.min() and ds.images.max() <= 1
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and len(ds.classes) == 10
    timages, _ = make_split(tmp_path / "raw", 7, "test", compress=False, seed=1)
    test = MNIST(tmp_path / "raw", train=False)
    np.testing.assert_array_equal(test.data, timages)


def test_search_order_env_then_cache(tmp_path, monkeypatch):
    env = tmp_path / "env"
    make_split(env / "mnist", 5)
    monkeypatch.setenv("SHENDU_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert len(MNIST()) == 5
    root = tmp_path / "root"
    make_split(root, 4)
    assert len(MNIST(root)) == 4  # root wins over $SHENDU_DATA
    monkeypatch.delenv("SHENDU_DATA")
    make_split(tmp_path / "cache" / "shendu" / "mnist", 3)
    assert len(MNIST()) == 3


def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SHENDU_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        MNIST(tmp_path / "empty", train=True)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path / "empty") in msg and str(tmp_path / "nothing") in msg
    assert "shendu datasets fetch mnist" in msg and "https://ossci-datasets.s3.amazonaws.com/mnist/" in msg
    import shendu.data.datasets.mnist as m

    monkeypatch.setitem(m.SOURCES["fashion-mnist"], "system", str(tmp_path / "no-system"))
    with pytest.raises(DataError) as err:
        FashionMNIST(tmp_path / "empty", train=False)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "shendu datasets fetch fashion-mnist" in msg
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz" in msg


@pytest.mark.skipif(not (SYSTEM / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist():
    train, test = FashionMNIST(train=True), FashionMNIST(train=False)
    assert train.data.shape == (60000, 28, 28) and test.data.shape == (10000, 28, 28)
    assert train.data.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(train.targets), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(test.targets), [1000] * 10)
    assert train.targets[:5].tolist() == [9, 0, 0, 3, 0]  # the published first labels
    loader = DataLoader(train, batch_size=128, shuffle=True, generator=shendu.Generator(0),
                        )
    x, y = next(iter(loader))
    assert x.shape == (128, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64


@pytest.mark.skipif(not (SYSTEM / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST not installed")
def test_measure_loader_time_per_batch_with_augmentation(capsys):
    """Measured, not asserted: seconds per batch of 128 with flip + random crop (padding 2)."""
    aug = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(28, padding=2)])
    ds = FashionMNIST(train=True, transform=aug)
    for prefetch in (False, True):
        loader = DataLoader(ds, batch_size=128, shuffle=True, generator=shendu.Generator(0), prefetch=prefetch)
        start = time.perf_counter()
        n = sum(1 for _ in loader)
        per = (time.perf_counter() - start) / n
        with capsys.disabled():
            print(f"\n[fashion-mnist loader, batch 128, flip+crop, prefetch={prefetch}] {per * 1e3:.2f} ms/batch")
        assert n == 469


def test_digits_dataset_and_fast_path():
    ds = Digits(train=True)
    assert ds.data.shape[1:] == (1, 8, 8) and len(ds) == len(ds.targets)
    x, y = ds.get_batch([0, 1, 2])
    np.testing.assert_array_equal(x, ds.data[:3])
    test = Digits(train=False)
    assert len(ds) + len(test) == 1797
    loader = DataLoader(test, batch_size=64)
    assert sum(len(b[1]) for b in loader) == len(test)


def _cifar_folder(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"batch_label": b"x", b"labels": rng.integers(0, 10, 4).tolist(),
             b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"filenames": [b"a.png"] * 4}
        (folder / name).write_bytes(pickle.dumps(d, protocol=protocol))
        data[name] = d
    return data


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_python_batches(tmp_path, protocol):
    data = _cifar_folder(tmp_path, protocol)
    train, test = CIFAR10(tmp_path, train=True), CIFAR10(tmp_path, train=False)
    assert train.data.shape == (20, 3, 32, 32) and test.data.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(test.data.reshape(4, -1), data["test_batch"][b"data"])
    assert test.targets.tolist() == data["test_batch"][b"labels"]
    assert test[0][0].shape == (3, 32, 32)


def test_restricted_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with pytest.raises(DataError, match="refusing to load global"):
        safe_unpickle(pickle.dumps({b"data": Evil()}))
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(DataError, match="CIFAR10: cannot find"):
        CIFAR10(tmp_path / "none")


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    expected = []
    for cls in ["dog", "cat"]:
        (tmp_path / cls).mkdir()
        for i in range(3):
            arr = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
            expected.append((cls, i, arr))
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    x, y = ds[0]
    cat0 = next(a for c, i, a in expected if c == "cat" and i == 0)
    assert y == 0 and x.shape == (3, 5, 4)
    np.testing.assert_allclose(x, cat0.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert ImageFolder(tmp_path, mode="L")[5][0].shape == (1, 5, 4)
    xb, yb = next(iter(DataLoader(ds, batch_size=6)))
    assert xb.shape == (6, 3, 5, 4) and yb.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="no images"):
        ImageFolder(tmp_path / "cat")
