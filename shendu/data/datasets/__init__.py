"""Datasets: Fashion-MNIST and MNIST (IDX files), the embedded 8x8 digits (no download), CIFAR-10 (python
batches, read with a restricted unpickler) and image folders (Pillow)."""

from shendu.data.datasets._base import ImageArrayDataset, cache_dir  # noqa: F401
from shendu.data.datasets.cifar import CIFAR10  # noqa: F401
from shendu.data.datasets.digits import Digits, load_digits  # noqa: F401
from shendu.data.datasets.folder import ImageFolder  # noqa: F401
from shendu.data.datasets.idx import read_idx  # noqa: F401
from shendu.data.datasets.mnist import MNIST, FashionMNIST, fetch, find_files  # noqa: F401
from shendu.data.datasets.scenes import FashionScenes, collate_scenes  # noqa: F401
