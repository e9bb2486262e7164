"""The 8x8 handwritten digits bundled with scikit-learn: shendu's embedded default dataset.

1,797 grey-level images of the digits 0-9 (UCI "Optical Recognition of Handwritten Digits"), values
0..16. They ship inside scikit-learn, so they need no download.
"""

from __future__ import annotations

import numpy as np

from shendu.data.datasets._base import ImageArrayDataset
from shendu.errors import ArgumentError, DataError

CLASSES = tuple(str(i) for i in range(10))


def load_digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0):
    """Images ``(N, 1, 8, 8)`` float32 scaled to [0, 1] and labels ``(N,)`` int64 for one split.

    The split is a fixed, stratified shuffle of the 1,797 images decided by ``seed`` (the same seed always
    gives the same split; train and test never share an image).

    >>> x, y = load_digits("test")
    >>> x.shape[1:], x.dtype, int(y.max())
    ((1, 8, 8), dtype('float32'), 9)
    """
    if split not in ("train", "test", "all"):
        raise ArgumentError(f"load_digits: split must be 'train', 'test' or 'all', got {split!r}")
    if not 0 < test_fraction < 1:
        raise ArgumentError(f"load_digits: test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits as _sk_load
    except ImportError:
        raise DataError("load_digits: the embedded 8x8 digits come with scikit-learn; install it with "
                        "`pip install scikit-learn` (or `pip install shendu[train]`)") from None
    bunch = _sk_load()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    if split == "all":
        return x, y
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in range(10):  # stratified: the same fraction of every class goes to test
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: int(round(len(members) * test_fraction))]] = True
    keep = test if split == "test" else ~test
    return x[keep], y[keep]


class Digits(ImageArrayDataset):
    """The embedded 8x8 digits as a dataset: ``Digits(train=True)`` is :func:`load_digits`'s train split.

    Items are ``(float32 (1, 8, 8) in [0, 1], int)``; ``.data`` float32 (N, 1, 8, 8), ``.targets``,
    ``.classes``; ``get_batch`` gives the loader's fast path.

    >>> ds = Digits(train=False)
    >>> ds[0][0].shape, len(ds.classes)
    ((1, 8, 8), 10)
    """

    classes = CLASSES

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None,
                 test_fraction: float = 0.2, seed: int = 0):
        x, y = load_digits("train" if train else "test", test_fraction=test_fraction, seed=seed)
        super().__init__(x, y, transform, target_transform)
        self.train = train
