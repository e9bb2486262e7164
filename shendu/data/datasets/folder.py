"""ImageFolder: ``root/<class>/<image>`` files read with Pillow, classes in sorted order."""

from __future__ import annotations

import pathlib

import numpy as np

from shendu.data.dataset import Dataset
from shendu.errors import DataError, IndexOutOfRangeError

__all__ = ["ImageFolder", "IMG_EXTENSIONS"]

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageFolder(Dataset):
    """Images in ``root/class_x/*.png``: class names are the sorted sub-folder names, indices 0, 1, ...

    A sample is ``(image, class_index)``: the image as float32 ``(C, H, W)`` in [0, 1] (``mode`` 'RGB' gives
    C = 3, 'L' gives C = 1) passed through ``transform``. Files are listed once, sorted, so the order is
    stable. Needs Pillow (``pip install pillow``).
    """

    def __init__(self, root, transform=None, target_transform=None, mode: str = "RGB",
                 extensions: tuple = IMG_EXTENSIONS):
        self.root = pathlib.Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"ImageFolder: {self.root} is not a folder; expected root/<class>/<image files>")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [(str(f), i) for i, c in enumerate(self.classes) for f in sorted((self.root / c).rglob("*"))
                        if f.is_file() and f.suffix.lower() in extensions]
        if not self.samples:
            raise DataError(f"ImageFolder: found no images ({', '.join(extensions)}) in class folders under "
                            f"{self.root}; expected root/<class>/<image files>")
        self.targets = np.array([t for _, t in self.samples], dtype=np.int64)
        self.transform, self.target_transform, self.mode = transform, target_transform, mode

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, path: str) -> np.ndarray:
        """Read one image file as float32 (C, H, W) in [0, 1]."""
        try:
            from PIL import Image
        except ImportError:
            raise DataError("ImageFolder: reading images needs Pillow; install it with `pip install pillow`") from None
        with Image.open(path) as im:
            arr = np.asarray(im.convert(self.mode))
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return arr.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255)

    def __getitem__(self, index):
        n = len(self)
        if not -n <= int(index) < n:
            raise IndexOutOfRangeError(f"ImageFolder: index {index} is out of range for {n} images")
        path, target = self.samples[int(index)]
        x = self.load(path)
        if self.transform is not None:
            x = self.transform(x)
        return x, (self.target_transform(target) if self.target_transform is not None else target)
