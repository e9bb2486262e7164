"""Fashion-MNIST and MNIST from their four IDX files, and ``fetch`` to download them.

Files are looked for, in order, in: ``root`` (and ``root/<name>``, ``root/<Torchvision name>/raw``),
``$SHENDU_DATA`` (and ``$SHENDU_DATA/<name>``), the user cache ``~/.cache/shendu/<name>``, and for
Fashion-MNIST ``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist`` package). Each
file may be gzipped (``.gz``) or not.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import urllib.request

import numpy as np

from shendu.data.datasets._base import ImageArrayDataset, cache_dir
from shendu.data.datasets.idx import read_idx
from shendu.errors import ArgumentError, DataError

__all__ = ["FashionMNIST", "MNIST", "fetch", "find_files", "SOURCES"]

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Official download addresses and the MD5 of each published .gz file (as listed by torchvision).
SOURCES = {
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "system": "/usr/share/datasets/fashion-mnist",
        "torchvision": "FashionMNIST",
    },
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        "system": "/usr/share/datasets/mnist",
        "torchvision": "MNIST",
    },
}


def _search_dirs(name: str, root) -> list:
    dirs = []
    if root is not None:
        root = pathlib.Path(root).expanduser()
        dirs += [root, root / name, root / SOURCES[name]["torchvision"] / "raw"]
    env = os.environ.get("SHENDU_DATA")
    if env:
        dirs += [pathlib.Path(env).expanduser(), pathlib.Path(env).expanduser() / name]
    dirs += [cache_dir() / name, pathlib.Path(SOURCES[name]["system"])]
    return dirs


def _how_to_get(name: str) -> str:
    lines = []
    if name == "fashion-mnist":
        lines.append("  * Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist  (installs /usr/share/datasets/"
                     "fashion-mnist/)")
    lines.append(f"  * download them with shendu: shendu datasets fetch {name}   (or, in Python, "
                 f"shendu.data.datasets.fetch('{name}'))")
    base = SOURCES[name]["mirrors"][0]
    lines.append("  * or download by hand into one of the folders above (or $SHENDU_DATA):")
    lines += [f"      {base}{f}" for f in SOURCES[name]["md5"]]
    return "\n".join(lines)


def find_files(name: str, split: str, root=None) -> tuple:
    """Paths ``(images, labels)`` of ``split`` ('train' or 'test') of dataset ``name``; DataError if absent."""
    if name not in SOURCES:
        raise ArgumentError(f"find_files: unknown dataset {name!r}; expected one of {sorted(SOURCES)}")
    if split not in FILES:
        raise ArgumentError(f"{name}: split must be 'train' or 'test', got {split!r}")
    dirs = _search_dirs(name, root)
    for d in dirs:
        found = []
        for stem in FILES[split]:
            hit = next((d / (stem + ext) for ext in (".gz", "") if (d / (stem + ext)).is_file()), None)
            found.append(hit)
        if all(found):
            return tuple(found)
    wanted = ", ".join(f"{s}[.gz]" for s in FILES[split])
    searched = "\n".join(f"  {d}" for d in dirs)
    raise DataError(f"{name}: cannot find the {split} files ({wanted}). Searched:\n{searched}\n"
                    f"To get them:\n{_how_to_get(name)}")


class _IdxImages(ImageArrayDataset):
    name = ""

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None):
        split = "train" if train else "test"
        images_path, labels_path = find_files(self.name, split, root)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or images.dtype != np.uint8:
            raise DataError(f"{type(self).__name__}: {images_path} holds {images.dtype} {images.shape} and "
                            f"{labels_path} holds {labels.shape}; expected uint8 (N, H, W) images and N labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DataError(f"{type(self).__name__}: labels in {labels_path} range over "
                            f"{int(labels.min())}..{int(labels.max())}, expected 0..{len(self.classes) - 1}")
        super().__init__(images, labels, transform, target_transform)
        self.train, self.root, self.files = train, root, (images_path, labels_path)


class FashionMNIST(_IdxImages):
    """Zalando's Fashion-MNIST: 60,000 training and 10,000 test 28x28 grey images of 10 clothing classes.

    ``.data`` uint8 (N, 28, 28), ``.targets`` int64 (N,), ``.classes`` the 10 names, ``.images`` float32
    (N, 1, 28, 28) in [0, 1]; items are ``(float32 (1, 28, 28), int)``. See the module docstring for
    where the files are searched; a DataError says how to get them when they are missing.
    """

    name = "fashion-mnist"
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")


class MNIST(_IdxImages):
    """LeCun's MNIST handwritten digits (60,000 train / 10,000 test, 28x28 grey), same interface as
    :class:`FashionMNIST`."""

    name = "mnist"
    classes = ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine")


def _md5(path: pathlib.Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str = "fashion-mnist", dest=None, timeout: float = 60.0) -> pathlib.Path:
    """Download the four ``.gz`` files of ``name`` ('fashion-mnist' or 'mnist') into ``dest``.

    ``dest`` defaults to the user cache (``~/.cache/shendu/<name>``), where the datasets look. Files that
    are already present with the right MD5 are kept. Each download is checked against the published MD5,
    written to a temporary file in ``dest`` and renamed into place, so a failed download never leaves a
    corrupt file. Tries each official mirror in turn; raises DataError if none answers.
    """
    if name not in SOURCES:
        raise ArgumentError(f"fetch: unknown dataset {name!r}; expected one of {sorted(SOURCES)}")
    dest = pathlib.Path(dest).expanduser() if dest is not None else cache_dir() / name
    dest.mkdir(parents=True, exist_ok=True)
    for filename, md5 in SOURCES[name]["md5"].items():
        target = dest / filename
        if target.is_file() and _md5(target) == md5:
            continue
        errors = []
        for base in SOURCES[name]["mirrors"]:
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{filename}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(base + filename, timeout=timeout) as resp:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                got = _md5(pathlib.Path(tmp))
                if got != md5:
                    raise DataError(f"MD5 {got} != expected {md5}")
                os.replace(tmp, target)
                break
            except Exception as exc:  # network errors of every kind: try the next mirror
                errors.append(f"{base}{filename}: {exc}")
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        else:
            raise DataError(f"fetch: could not download {filename} of {name}:\n  " + "\n  ".join(errors)
                            + "\nIs the network reachable? Otherwise copy the files by hand into " + str(dest))
    return dest
