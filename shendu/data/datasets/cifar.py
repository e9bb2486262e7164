"""CIFAR-10 from its official "python version" batches (``cifar-10-batches-py/``), read without trusting pickle.

The official files are Python pickles. shendu never runs ``pickle.load`` on a file a user supplies, because
unpickling can call any importable function (``os.system`` included). Instead :class:`_RestrictedUnpickler`
resolves only the few globals a NumPy array needs to rebuild itself — ``numpy...multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype``, ``numpy...numeric._frombuffer`` and ``_codecs.encode`` (how protocol-2
pickles spell bytes) — and refuses every other global with a DataError. With only these callables a pickle
can build containers, strings, numbers and arrays, nothing else; the loaded dict is then checked (uint8 data
of 3072 values per image, integer labels in 0..9) before use. The remaining risk is memory exhaustion by a
huge array, as with any file format.

Search order for the folder: ``root``, ``root/cifar-10-batches-py``, ``$SHENDU_DATA/cifar-10-batches-py``,
``~/.cache/shendu/cifar-10-batches-py``. Download: https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz
(extract it in one of those folders).
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle

import numpy as np

from shendu.data.datasets._base import ImageArrayDataset, cache_dir
from shendu.errors import DataError

__all__ = ["CIFAR10", "safe_unpickle"]

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"


def _allowed() -> dict:
    from numpy._core import multiarray, numeric

    return {
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("codecs").encode,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        fn = _allowed().get((module, name))
        if fn is None:
            raise DataError(f"safe_unpickle: refusing to load global {module}.{name}; only NumPy arrays and plain "
                            "Python values are allowed (is this really a CIFAR batch file?)")
        return fn


def safe_unpickle(data: bytes):
    """Unpickle ``data`` allowing only NumPy arrays and builtin values (see the module docstring)."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"safe_unpickle: not a readable pickle: {exc}") from None


def _key(d: dict, name: str):
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    raise DataError(f"CIFAR10: batch is missing the {name!r} entry")


class CIFAR10(ImageArrayDataset):
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images of 10 classes.

    ``.data`` uint8 (N, 3, 32, 32), ``.targets`` int64; items ``(float32 (3, 32, 32) in [0, 1], int)``.
    """

    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None):
        folder = self._find(root)
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        xs, ys = [], []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise DataError(f"CIFAR10: {path} is missing; the folder must hold data_batch_1..5 and test_batch "
                                f"(extract {URL})")
            batch = safe_unpickle(path.read_bytes())
            if not isinstance(batch, dict):
                raise DataError(f"CIFAR10: {path} does not hold a dict")
            x, y = np.asarray(_key(batch, "data")), np.asarray(_key(batch, "labels"))
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (x.shape[0],) \
                    or y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > 9)):
                raise DataError(f"CIFAR10: {path} holds data {x.dtype} {x.shape} and labels {y.shape}; expected "
                                "uint8 (N, 3072) and N labels in 0..9")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        super().__init__(np.concatenate(xs), np.concatenate(ys), transform, target_transform)
        self.train = train

    @staticmethod
    def _find(root) -> pathlib.Path:
        dirs = []
        if root is not None:
            dirs += [pathlib.Path(root).expanduser(), pathlib.Path(root).expanduser() / FOLDER]
        if os.environ.get("SHENDU_DATA"):
            dirs.append(pathlib.Path(os.environ["SHENDU_DATA"]).expanduser() / FOLDER)
        dirs.append(cache_dir() / FOLDER)
        for d in dirs:
            if (d / "test_batch").is_file() or (d / "data_batch_1").is_file():
                return d
        searched = "\n".join(f"  {d}" for d in dirs)
        raise DataError(f"CIFAR10: cannot find the python batches (data_batch_1..5, test_batch). Searched:\n"
                        f"{searched}\nDownload {URL} and extract it into one of these folders "
                        "(e.g. tar xzf cifar-10-python.tar.gz -C ~/.cache/shendu)")
