"""FashionScenes: canvases composed from real Fashion-MNIST items, with boxes and per-pixel class masks.

The data for semantic segmentation and detection (and, with ``single_object=True``, for classification +
localization). Every scene is made from items of the matching Fashion-MNIST split, so train and test scenes
never share a source item.

How a scene is made (all of it vectorized over a batch of scenes; the only Python loops run over the
``max_objects`` slots):

1. Draw the number of items ``n`` in ``1..max_objects`` and, for each, a source item of the split.
2. Crop the item to its tight box (pixels above ``threshold``), scale it with bilinear interpolation so its
   longer side is ``scale[0]..scale[1]`` px (aspect ratio kept), and place it at a random position fully
   inside the canvas. Scaling and placement are one matrix per axis, ``layer = A_h @ item @ A_w^T``.
3. Overlap rule: an item is placed only where every earlier item keeps at least 60% of its box free of the
   boxes drawn over it (``sum_j inter(box_i, box_j) <= 0.4 * area(box_i)`` over later items ``j``; the sum
   bounds the covered area from above). Up to 8 positions are tried; an item that fits nowhere is left out,
   so a scene may hold fewer than ``n`` items (never zero).
4. Draw in order, later items on top: where the item's pixels exceed ``threshold`` it replaces the canvas
   (and the mask takes its class + 1); its fainter edge pixels only brighten the canvas (``max``).

Targets of a scene: ``"boxes"`` float32 (K, 4) ``x1, y1, x2, y2`` in continuous pixel coordinates (the
box of the item's pixels above ``threshold`` after placement, occluded parts included; a box covering
pixel columns 3..7 has ``x1 = 3, x2 = 8``, no +1 as torchvision), ``"labels"`` int64 (K,) in 1..10
(Fashion-MNIST class + 1; 0 is background), ``"masks"`` int64 (size, size) per-pixel class map.

Determinism: scene ``i`` depends only on ``(seed, split, i)``. Its random numbers come from a counter-based
generator (SplitMix64 of the counter ``i * R + j``), so an item is the same whatever the access order or
batch it is generated in, and a whole batch draws its numbers in one vectorized step.
"""

from __future__ import annotations

import numpy as np

from shendu.autograd import Tensor
from shendu.data.dataset import Dataset
from shendu.data.datasets.mnist import FashionMNIST
from shendu.errors import ArgumentError, IndexOutOfRangeError

__all__ = ["FashionScenes", "collate_scenes"]

TRIES = 8             # candidate positions per item
MAX_COVERED = 0.4     # at most this fraction of an item's box may lie under later items' boxes
_SOURCES: dict = {}   # (root, split) -> (images float32 (N, 28, 28), labels, tight boxes); files read once


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser: a bijective mix of uint64 counters into well-spread uint64 values."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counter_uniforms(key: int, indices: np.ndarray, n: int) -> np.ndarray:
    """``(len(indices), n)`` float64 uniforms in [0, 1); row ``r`` depends only on ``(key, indices[r])``.

    >>> u = counter_uniforms(7, np.array([3, 5]), 4)
    >>> bool(np.array_equal(u[1], counter_uniforms(7, np.array([5]), 4)[0])), u.shape
    (True, (2, 4))
    """
    base = _splitmix64(np.array([key], np.uint64))  # decorrelates neighbouring keys
    counter = indices.astype(np.uint64)[:, None] * np.uint64(n) + np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _splitmix64(base + counter * np.uint64(0x9E3779B97F4A7C15))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _load_source(root, split: str, threshold: float) -> tuple:
    """Item images of one Fashion-MNIST split as float32 in [0, 1], labels, and tight boxes (top, left,
    height, width) of the pixels above ``threshold``. Reads the files through :class:`FashionMNIST`, so a
    missing file raises its DataError (which says how to get the files)."""
    key = (None if root is None else str(root), split, float(threshold))
    if key not in _SOURCES:
        fm = FashionMNIST(root, train=split == "train")
        images = fm.data.astype(np.float32) * np.float32(1 / 255)
        on = images > threshold
        rows, cols = on.any(2), on.any(1)
        top, left = rows.argmax(1), cols.argmax(1)
        bottom = rows.shape[1] - rows[:, ::-1].argmax(1)
        right = cols.shape[1] - cols[:, ::-1].argmax(1)
        empty = ~rows.any(1)  # no pixel above threshold: use the whole image
        top[empty], left[empty], bottom[empty], right[empty] = 0, 0, 28, 28
        boxes = np.stack([top, left, bottom - top, right - left], 1).astype(np.int64)
        _SOURCES[key] = (images, fm.targets.astype(np.int64), boxes)
    return _SOURCES[key]


def _axis_matrices(length, crop_start, crop_len, out: int, src: int) -> np.ndarray:
    """(N, out, src) matrices mapping source rows ``crop_start .. crop_start+crop_len`` to patch rows
    ``0 .. length`` by linear interpolation (torch's ``align_corners=False`` rule); rows past ``length`` are 0."""
    n = len(length)
    i = np.arange(out, dtype=np.float32)[None, :]
    pos = crop_start[:, None] + (i + 0.5) * (crop_len / length).astype(np.float32)[:, None] - 0.5
    last = (crop_start + crop_len - 1)[:, None]
    pos = np.clip(pos, crop_start[:, None], last)
    lo = pos.astype(np.int64)  # pos >= 0, so truncation is floor
    frac = np.where(i < length[:, None], pos - lo, 0).astype(np.float32)
    keep = np.where(i < length[:, None], 1 - frac, 0).astype(np.float32)
    mat = np.zeros((n, out, src), np.float32)
    flat = mat.reshape(-1)  # one flat index per write: NumPy's fast path for scatter
    row = (np.arange(n)[:, None] * out + np.arange(out)) * src
    flat[row + np.minimum(lo + 1, last)] = frac  # first the upper neighbour: where lo is the last row,
    flat[row + lo] = keep                         # frac is 0 and this write leaves the weight 1
    return mat


def _windows(a: np.ndarray, p: int) -> np.ndarray:
    """A writeable view (B, H-p+1, W-p+1, p, p) of the p x p windows of ``a`` (B, H, W)."""
    B, H, W = a.shape
    s0, s1, s2 = a.strides
    return np.lib.stride_tricks.as_strided(a, (B, H - p + 1, W - p + 1, p, p), (s0, s1, s2, s1, s2))


def _box_inter(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of xyxy boxes, broadcasting over leading dims."""
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def collate_scenes(batch: list) -> tuple:
    """Collate for detection: the images stacked into a Tensor ``(B, 1, S, S)``, the targets kept as a list
    of dicts of Tensors (each scene has its own number of boxes). The same structure the DataLoader's fast
    path (``get_batch``) gives; pass it as ``DataLoader(..., collate_fn=collate_scenes)``.

    >>> img = np.zeros((1, 8, 8), np.float32)
    >>> t = {"boxes": np.zeros((2, 4), np.float32), "labels": np.array([1, 3]), "masks": np.zeros((8, 8), np.int64)}
    >>> images, targets = collate_scenes([(img, t), (img, t)])
    >>> images.shape, len(targets), targets[1]["labels"].tolist()
    ((2, 1, 8, 8), 2, [1, 3])
    """
    if not batch:
        raise ArgumentError("collate_scenes: got an empty batch")
    images = np.stack([np.asarray(img, dtype=np.float32) for img, _ in batch])
    return Tensor(images), [{k: Tensor(np.asarray(v)) for k, v in t.items()} for _, t in batch]


class FashionScenes(Dataset):
    """Scenes of 1..``max_objects`` Fashion-MNIST items on a ``size`` x ``size`` canvas (see the module doc).

    ``FashionScenes(split, size, max_objects, seed, root, length, single_object)``:

    - ``split``: 'train' or 'test' (the Fashion-MNIST split the items come from);
    - ``size``: canvas side; default 96, or 64 with ``single_object``;
    - ``length``: number of scenes (default: the number of items in the split, 60,000 or 10,000);
    - ``single_object``: exactly one item per canvas (classification + localization);
    - ``scale``: range of the item's longer side in px (default ``(20, 48)`` scaled by ``size / 96``);
    - ``threshold``: intensity above which an item pixel belongs to the item (mask, box, occlusion).

    An item is ``(image float32 (1, size, size) in [0, 1], {"boxes", "labels", "masks"})``.
    ``get_batch(indices)`` makes many scenes at once; ``generate(indices)`` returns padded batch arrays
    (the fast path for segmentation: ``generate(idx)["masks"]``). ``classes`` lists the 11 mask classes.

    >>> scenes = FashionScenes("test", size=64, length=100)   # doctest: +SKIP
    >>> image, target = scenes[0]                             # doctest: +SKIP
    >>> image.shape, target["masks"].shape, target["boxes"].shape[1]  # doctest: +SKIP
    ((1, 64, 64), (64, 64), 4)
    """

    classes = ("background",) + FashionMNIST.classes

    def __init__(self, split: str = "train", size: int | None = None, max_objects: int = 4, seed: int = 0,
                 root=None, length: int | None = None, single_object: bool = False, scale: tuple | None = None,
                 threshold: float = 0.1):
        if split not in ("train", "test"):
            raise ArgumentError(f"FashionScenes: split must be 'train' or 'test', got {split!r}")
        size = (64 if single_object else 96) if size is None else int(size)
        if size < 16:
            raise ArgumentError(f"FashionScenes: size must be at least 16, got {size}")
        if single_object:
            max_objects = 1
        if int(max_objects) < 1:
            raise ArgumentError(f"FashionScenes: max_objects must be >= 1, got {max_objects}")
        if scale is None:
            scale = (max(8, round(20 * size / 96)), max(8, round(48 * size / 96)))
        lo, hi = (int(s) for s in scale)
        if not 1 <= lo <= hi <= size:
            raise ArgumentError(f"FashionScenes: scale must satisfy 1 <= min <= max <= size ({size}), got {scale}")
        if not 0.0 <= threshold < 1.0:
            raise ArgumentError(f"FashionScenes: threshold must be in [0, 1), got {threshold}")
        self.images, self.item_labels, self.item_boxes = _load_source(root, split, threshold)
        self.split, self.size, self.max_objects, self.seed = split, size, int(max_objects), int(seed)
        self.single_object, self.scale, self.threshold, self.root = bool(single_object), (lo, hi), threshold, root
        self.length = len(self.images) if length is None else int(length)
        if self.length < 0:
            raise ArgumentError(f"FashionScenes: length must be >= 0, got {length}")
        # One key per (seed, split): train and test scenes with the same seed do not share layouts.
        self._key = self.seed * 2 + (split == "test")

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        kind = "single-object" if self.single_object else f"1..{self.max_objects} objects"
        return f"FashionScenes({self.split}, {self.length} scenes {self.size}x{self.size}, {kind}, seed {self.seed})"

    # -- generation ------------------------------------------------------------------------------------------
    def _check_indices(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self.length or idx.max() >= self.length):
            raise IndexOutOfRangeError(f"FashionScenes: index out of range for {self.length} scenes "
                                       f"(got values in [{idx.min()}, {idx.max()}])")
        return idx % max(self.length, 1)

    def generate(self, indices) -> dict:
        """Scenes ``indices`` as batch arrays: ``images`` float32 (B, 1, S, S), ``masks`` int64 (B, S, S),
        ``boxes`` float32 (B, K, 4) and ``labels`` int64 (B, K) with K = ``max_objects`` (unused slots hold
        label 0 and a zero box), and ``valid`` bool (B, K)."""
        idx = self._check_indices(indices)
        B, K, S = len(idx), self.max_objects, self.size
        u = counter_uniforms(self._key, idx, 1 + K * (2 + 2 * TRIES))
        count = 1 + np.minimum((u[:, 0] * K).astype(np.int64), K - 1)
        per = u[:, 1:].reshape(B, K, 2 + 2 * TRIES)
        src = np.minimum((per[..., 0] * len(self.images)).astype(np.int64), len(self.images) - 1)  # (B, K)
        top, left, ch, cw = np.moveaxis(self.item_boxes[src], -1, 0)
        lo, hi = self.scale
        longest = lo + np.minimum((per[..., 1] * (hi - lo + 1)).astype(np.int64), hi - lo)
        factor = longest / np.maximum(ch, cw)
        h = np.clip(np.rint(ch * factor).astype(np.int64), 1, S)
        w = np.clip(np.rint(cw * factor).astype(np.int64), 1, S)
        # Candidate top-left corners (B, K, TRIES), uniform over the positions that keep the item inside.
        cy = (per[..., 2::2] * (S - h + 1)[..., None]).astype(np.int64)
        cx = (per[..., 3::2] * (S - w + 1)[..., None]).astype(np.int64)
        cand = np.stack([cx, cy, cx + w[..., None], cy + h[..., None]], -1).astype(np.float64)  # (B, K, T, 4)

        placed = np.zeros((B, K, 4))
        valid = np.zeros((B, K), bool)
        covered = np.zeros((B, K))  # area of each placed box under later boxes (sum over them)
        area = (h * w).astype(np.float64)
        for k in range(K):
            inter = _box_inter(cand[:, k, :, None, :], placed[:, None, :k, :])  # (B, T, k)
            fits = ((covered[:, None, :k] + inter <= MAX_COVERED * area[:, None, :k]) | ~valid[:, None, :k]).all(2)
            t = fits.argmax(1)
            valid[:, k] = fits.any(1) & (k < count)
            placed[:, k] = cand[np.arange(B), k, t]
            covered[:, :k] += np.where(valid[:, k, None], inter[np.arange(B), t], 0.0)

        # Scale every used item into a (P, P) patch, P the largest item size, with one matrix per axis:
        # patch = A_h @ item @ A_w^T. Rows and columns past the item's own height and width stay 0.
        sel = np.nonzero(valid)
        P = hi
        A_h = _axis_matrices(h[sel], top[sel], ch[sel], P, 28)
        A_w = _axis_matrices(w[sel], left[sel], cw[sel], P, 28)
        patches = np.matmul(np.matmul(A_h, self.images[src[sel]]), A_w.transpose(0, 2, 1))
        on = patches > self.threshold
        y0, x0 = placed[sel][:, 1].astype(np.int64), placed[sel][:, 0].astype(np.int64)

        # Paste in slot order, later items on top, into canvases padded by P so every patch fits. A window
        # view (B, L-P+1, L-P+1, P, P) of the canvas picks each item's (P, P) region with one index per
        # item; the windows written for one slot lie in different scenes, so they never overlap.
        L = S + P
        images = np.zeros((B, L, L), np.float32)
        masks = np.zeros((B, L, L), np.uint8)
        image_win, mask_win = (_windows(a, P) for a in (images, masks))
        labels = np.where(valid, self.item_labels[src] + 1, 0)
        item_labels = labels[sel].astype(np.uint8)[:, None, None]
        for k in range(K):
            j = np.flatnonzero(sel[1] == k)  # the items of slot k
            at = (sel[0][j], y0[j], x0[j])
            image_win[at] = np.where(on[j], patches[j], np.maximum(image_win[at], patches[j]))
            mask_win[at] = np.where(on[j], item_labels[j], mask_win[at])
        images = images[:, None, :S, :S].copy()
        masks = masks[:, :S, :S].astype(np.int64)

        # Boxes from each item's own pixels (occluded parts included), in canvas coordinates.
        rows, cols = on.any(2), on.any(1)  # (N, P)
        box = np.stack([x0 + cols.argmax(1), y0 + rows.argmax(1),
                        x0 + P - cols[:, ::-1].argmax(1), y0 + P - rows[:, ::-1].argmax(1)], 1)
        valid[sel] &= rows.any(1)
        boxes = np.zeros((B, K, 4), np.float32)
        boxes[sel] = box
        boxes[~valid] = 0
        return {"images": images, "masks": masks, "boxes": boxes,
                "labels": np.where(valid, labels, 0), "valid": valid}

    def get_batch(self, indices) -> tuple:
        """``(images float32 (B, 1, S, S), [target dict per scene])``, made in one vectorized pass."""
        g = self.generate(indices)
        targets = [{"boxes": g["boxes"][i][v], "labels": g["labels"][i][v], "masks": g["masks"][i]}
                   for i, v in enumerate(g["valid"])]
        return g["images"], targets

    def __getitem__(self, index):
        if not -self.length <= int(index) < self.length:
            raise IndexOutOfRangeError(f"FashionScenes: index {index} is out of range for {self.length} scenes")
        images, targets = self.get_batch([int(index)])
        return images[0], targets[0]

    collate = staticmethod(collate_scenes)
