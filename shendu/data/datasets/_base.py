"""The shared shape of shendu's image datasets: arrays in memory, a transform, and a batch fast path."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from shendu.data.dataset import Dataset
from shendu.data.transforms import apply_batch
from shendu.errors import IndexOutOfRangeError


def cache_dir() -> pathlib.Path:
    """shendu's user cache for downloaded data: ``$XDG_CACHE_HOME/shendu`` or ``~/.cache/shendu``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "shendu"


class ImageArrayDataset(Dataset):
    """Images ``self.data`` (N, H, W) or (N, C, H, W), uint8 or float, and integer ``self.targets`` (N,).

    A sample is ``(image, target)``: the image as float32 ``(C, H, W)`` (uint8 scaled to [0, 1]) passed
    through ``transform``, the target an ``int`` passed through ``target_transform``. ``get_batch`` returns
    a whole batch ``(float32 (B, C, H, W), int64 (B,))`` with one fancy index and the transform applied to
    the batch at once (see :mod:`shendu.data.transforms`).
    """

    classes: tuple = ()

    def __init__(self, data: np.ndarray, targets: np.ndarray, transform=None, target_transform=None):
        self.data, self.targets = data, np.asarray(targets, dtype=np.int64)
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return len(self.data)

    @property
    def class_to_idx(self) -> dict:
        return {c: i for i, c in enumerate(self.classes)}

    @staticmethod
    def _to_float(images: np.ndarray) -> np.ndarray:
        if images.ndim == 3:
            images = images[:, None]
        if images.dtype == np.uint8:
            return images.astype(np.float32) * np.float32(1 / 255)
        return images.astype(np.float32, copy=False)

    @property
    def images(self) -> np.ndarray:
        """All images as float32 (N, C, H, W) in [0, 1], untransformed (the array path for classic models)."""
        return self._to_float(self.data)

    def get_batch(self, indices) -> tuple:
        indices = np.asarray(indices, dtype=np.int64)
        x = apply_batch(self.transform, self._to_float(self.data[indices]))
        y = self.targets[indices]
        if self.target_transform is not None:
            y = np.asarray([self.target_transform(int(t)) for t in y])
        return x, y

    def __getitem__(self, index):
        n = len(self)
        if not -n <= int(index) < n:
            raise IndexOutOfRangeError(f"{type(self).__name__}: index {index} is out of range for {n} samples")
        x = self._to_float(self.data[int(index)][None])[0]
        if self.transform is not None:
            x = self.transform(x)
        y = int(self.targets[int(index)])
        return x, (self.target_transform(y) if self.target_transform is not None else y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images of shape {tuple(self.data.shape[1:])})"
