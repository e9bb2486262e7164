"""Transforms: preprocessing and augmentation of image arrays, composable and seeded.

Every transform here is a :class:`BatchTransform`: ``t.batch(x)`` works on a whole batch ``(N, C, H, W)``
at once (one random draw per sample, vectorized: flips with ``np.where``, crops with one fancy index into
a strided window view, rotations/affine/resized crops by computing all source coordinates of the batch and
gathering them with bilinear or nearest weights), and ``t(x)`` on one sample ``(C, H, W)`` is a batch of
one. Datasets apply ``transform.batch`` on the loader's fast path and ``transform(x)`` per sample otherwise;
any plain callable works as a per-sample transform too.

Randomness: a transform given a ``generator`` draws from it; otherwise from the generator the DataLoader
sets for each batch (seeded by loader seed, epoch and batch index, so prefetching and resuming replay the
same augmentation), and outside a loader from shendu's global generator (:func:`shendu.manual_seed`).

Names and defaults follow torchvision (``RandomCrop(size, padding)``, ``RandomResizedCrop(size, scale,
ratio)``, ``RandomRotation(degrees)``, ...). Cutout is DeVries & Taylor 2017, Mixup is Zhang et al. 2018.
"""

from __future__ import annotations

import math

import numpy as np

from shendu import backend
from shendu.autograd import Tensor
from shendu.data._rng import transform_rng
from shendu.errors import ArgumentError, ShapeError, fmt_shape

__all__ = [
    "Transform", "BatchTransform", "Compose", "Lambda", "apply_batch",
    "ToTensor", "Normalize", "Standardize", "Whiten",
    "RandomHorizontalFlip", "RandomVerticalFlip", "RandomAffine", "RandomRotation",
    "RandomCrop", "RandomResizedCrop", "GaussianNoise", "Cutout",
    "Mixup", "mixup_criterion", "affine_sample",
]


class Transform:
    """A callable on one sample. Subclasses that can do a whole batch at once derive from BatchTransform."""

    def __call__(self, x):
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "generator")
        return f"{type(self).__name__}({args})"


class BatchTransform(Transform):
    """A transform with ``batch(x)`` for ``(N, ...)`` arrays; one sample goes through as a batch of one."""

    def batch(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x):
        return self.batch(np.asarray(x)[None])[0]


def apply_batch(transform, x: np.ndarray) -> np.ndarray:
    """Apply ``transform`` to a batch: its ``batch`` method if it has one, else sample by sample."""
    if transform is None:
        return x
    if hasattr(transform, "batch"):
        return transform.batch(x)
    return np.stack([np.asarray(transform(s)) for s in x])


class Compose(BatchTransform):
    """Apply ``transforms`` in order (on batches when each can; per sample for those that cannot).

    >>> t = Compose([Normalize([0.5], [0.5]), RandomHorizontalFlip(p=1.0)])
    >>> t(np.array([[[0.0, 1.0]]], np.float32)).tolist()
    [[[1.0, -1.0]]]
    """

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def batch(self, x):
        for t in self.transforms:
            x = apply_batch(t, x)
        return x

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Lambda(Transform):
    """Wrap a function of one sample as a transform."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


def _images(name: str, x: np.ndarray) -> np.ndarray:
    """Check for a batch of images (N, C, H, W)."""
    if x.ndim != 4:
        raise ShapeError(f"{name}: expected a batch of images (N, C, H, W) or one image (C, H, W), got shape "
                         f"{fmt_shape(x.shape[1:])} per sample; add a channel axis for grey images "
                         "(ToTensor does it)")
    return x


def _per_sample(mask: np.ndarray, ndim: int) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (ndim - 1))


def _pair(name: str, value, what: str) -> tuple:
    if isinstance(value, (int, float)):
        return value, value
    value = tuple(value)
    if len(value) != 2:
        raise ArgumentError(f"{name}: {what} must be a number or a pair, got {value!r}")
    return value


# ---- conversion and normalisation ----------------------------------------------------------------------------


class ToTensor(BatchTransform):
    """Image arrays to float32 ``(C, H, W)`` (batch ``(N, C, H, W)``); uint8 is scaled to [0, 1].

    uint8 input is read as ``H x W`` / ``H x W x C`` (batch ``N x H x W`` / ``N x H x W x C``), the layout of
    Pillow and of IDX files. Float input without a channel axis (``N x H x W``) gains one; float ``N x C x H x W``
    is kept. Returns an array: the loader's collate turns batches into Tensors.

    >>> ToTensor()(np.full((2, 3), 255, np.uint8)).shape
    (1, 2, 3)
    """

    def batch(self, x):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.dtype == np.uint8:
            x = x.transpose(0, 3, 1, 2)
        elif x.ndim != 4:
            raise ShapeError(f"ToTensor: expected an image H x W or H x W x C, got shape {fmt_shape(x.shape[1:])}")
        if x.dtype == np.uint8:
            return x.astype(np.float32) * np.float32(1 / 255)
        return np.ascontiguousarray(x, dtype=np.float32 if x.dtype.kind != "f" else x.dtype)


class Normalize(BatchTransform):
    """``(x - mean[c]) / std[c]`` per channel ``c``.

    >>> Normalize([0.5], [0.25])(np.ones((1, 1, 2), np.float32)).tolist()
    [[[2.0, 2.0]]]
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ArgumentError(f"Normalize: mean has {self.mean.size} values but std has {self.std.size}")
        if np.any(self.std == 0):
            raise ArgumentError(f"Normalize: std has a zero entry {self.std.tolist()}; division by zero")

    def batch(self, x):
        x = _images("Normalize", x)
        c = x.shape[1]
        if self.mean.size not in (1, c):
            raise ShapeError(f"Normalize: images have {c} channels but mean/std have {self.mean.size} values")
        dt = x.dtype if x.dtype.kind == "f" else np.float32
        mean = self.mean.astype(dt).reshape(1, -1, 1, 1)
        return ((x - mean) * (1 / self.std).astype(dt).reshape(1, -1, 1, 1)).astype(dt, copy=False)


class Standardize(BatchTransform):
    """``(x - mu) / sigma`` with mu, sigma fitted on training data by :meth:`fit`, then applied unchanged.

    ``per='channel'`` keeps one mu/sigma per channel of (N, C, H, W) images (statistics over N, H, W);
    ``per='feature'`` one per feature (statistics over N only). sigma is the population standard deviation
    (ddof=0, as sklearn's StandardScaler and ``np.std``; ``torch.std`` defaults to ddof=1); a zero sigma is
    replaced by 1 so constant features stay finite. Fit on the training split only.

    >>> s = Standardize(per="feature").fit(np.array([[0.0], [2.0]]))
    >>> s.mean_.tolist(), s.std_.tolist()
    ([1.0], [1.0])
    """

    def __init__(self, per: str = "channel"):
        if per not in ("channel", "feature"):
            raise ArgumentError(f"Standardize: per must be 'channel' or 'feature', got {per!r}")
        self.per = per
        self.mean_ = self.std_ = None

    def _axes(self, x):
        return (0,) + tuple(range(2, x.ndim)) if self.per == "channel" else (0,)

    def fit(self, x) -> "Standardize":
        x = np.asarray(x.data if isinstance(x, Tensor) else x, dtype=np.float64)
        if self.per == "channel" and x.ndim < 2:
            raise ShapeError(f"Standardize.fit: per='channel' needs (N, C, ...) data, got {fmt_shape(x.shape)}")
        axes = self._axes(x)
        self.mean_ = x.mean(axis=axes, keepdims=True)[0]
        std = x.std(axis=axes, keepdims=True)[0]
        self.std_ = np.where(std == 0, 1.0, std)
        return self

    def batch(self, x):
        if self.mean_ is None:
            raise ArgumentError("Standardize: call fit(training_data) before transforming")
        if x.shape[1:2] != self.mean_.shape[:1]:
            raise ShapeError(f"Standardize: fitted on samples {fmt_shape(self.mean_.shape)}, got samples "
                             f"{fmt_shape(x.shape[1:])}")
        dt = x.dtype if x.dtype.kind == "f" else np.float32
        return ((x - self.mean_.astype(dt)) / self.std_.astype(dt)).astype(dt, copy=False)


class Whiten(BatchTransform):
    """Apply a fitted whitening or PCA (anything with ``transform`` on ``(N, D)``, e.g.
    ``shendu.classic.Whitening``) to flattened samples; keeps the sample shape when the size is unchanged
    (ZCA), else returns ``(N, k)``."""

    def __init__(self, fitted):
        if not hasattr(fitted, "transform"):
            raise ArgumentError(f"Whiten: expected a fitted object with .transform, got {type(fitted).__name__}")
        self.fitted = fitted

    def batch(self, x):
        n = x.shape[0]
        out = np.asarray(self.fitted.transform(x.reshape(n, -1)))
        out = out.astype(x.dtype if x.dtype.kind == "f" else np.float32, copy=False)
        return out.reshape(x.shape) if out.size == x.size else out


# ---- flips ----------------------------------------------------------------------------------------------------


class RandomHorizontalFlip(BatchTransform):
    """Mirror left-right (last axis) with probability ``p``, independently per sample."""

    def __init__(self, p: float = 0.5, generator: backend.Generator | None = None):
        if not 0 <= p <= 1:
            raise ArgumentError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p, self.generator = float(p), generator

    axis = -1

    def batch(self, x):
        flip = transform_rng(self.generator).random(x.shape[0]) < self.p
        return np.where(_per_sample(flip, x.ndim), np.flip(x, axis=self.axis), x)


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror top-bottom (second-last axis) with probability ``p``, independently per sample."""

    axis = -2


# ---- geometric resampling ----------------------------------------------------------------------------------


def affine_sample(x: np.ndarray, ys: np.ndarray, xs: np.ndarray, interpolation: str = "bilinear",
                  fill: float = 0.0) -> np.ndarray:
    """Read images ``x`` (N, C, H, W) at source coordinates ``ys``, ``xs`` (N, Ho, Wo) -> (N, C, Ho, Wo).

    Pixel centres sit at integer coordinates. Points outside the image read ``fill``. ``'nearest'`` rounds
    the coordinates; ``'bilinear'`` blends the four neighbours (each neighbour outside the image counts as
    ``fill``). One gather per neighbour for the whole batch: no loop over samples or pixels.

    >>> img = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    >>> affine_sample(img, np.full((1, 1, 1), 0.5), np.full((1, 1, 1), 0.5)).item()
    1.5
    """
    if interpolation not in ("nearest", "bilinear"):
        raise ArgumentError(f"affine_sample: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    dt = x.dtype if x.dtype.kind == "f" else np.float32

    def gather(yi, xi):
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        idx = (np.clip(yi, 0, h - 1) * w + np.clip(xi, 0, w - 1)).reshape(n, 1, -1)
        vals = np.take_along_axis(flat, idx, axis=2).reshape(n, c, *yi.shape[1:])
        return np.where(inside[:, None], vals, np.asarray(fill, dt)).astype(dt, copy=False)

    if interpolation == "nearest":
        return gather(np.rint(ys).astype(np.int64), np.rint(xs).astype(np.int64))
    y0f, x0f = np.floor(ys), np.floor(xs)
    wy, wx = (ys - y0f).astype(dt)[:, None], (xs - x0f).astype(dt)[:, None]
    y0, x0 = y0f.astype(np.int64), x0f.astype(np.int64)
    top = gather(y0, x0) * (1 - wx) + gather(y0, x0 + 1) * wx
    bottom = gather(y0 + 1, x0) * (1 - wx) + gather(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


class RandomAffine(BatchTransform):
    """Random rotation, translation and scale about the image centre, one draw per sample.

    ``degrees``: angle range (a number ``d`` means ``(-d, d)``), positive = counter-clockwise as displayed
    (torchvision's convention). ``translate=(a, b)``: shifts up to ``a * W`` horizontally and ``b * H``
    vertically, rounded to whole pixels. ``scale=(lo, hi)``: zoom factor range. The inverse map
    ``src = c + R(-angle) (dst - c - t) / s`` with centre ``c = ((W-1)/2, (H-1)/2)`` is evaluated on the whole
    batch's coordinate grid at once and sampled with ``interpolation`` ('nearest', torchvision's default, or
    'bilinear'); uncovered pixels get ``fill``.
    """

    def __init__(self, degrees=0.0, translate=None, scale=None, interpolation: str = "nearest", fill: float = 0.0,
                 center=None, generator: backend.Generator | None = None):
        name = type(self).__name__
        lo, hi = (-abs(degrees), abs(degrees)) if isinstance(degrees, (int, float)) else _pair(name, degrees, "degrees")
        self.degrees = (float(lo), float(hi))
        if translate is not None:
            translate = _pair(name, translate, "translate")
            if not all(0 <= t <= 1 for t in translate):
                raise ArgumentError(f"{name}: translate fractions must be in [0, 1], got {translate}")
        if scale is not None:
            scale = _pair(name, scale, "scale")
            if not 0 < scale[0] <= scale[1]:
                raise ArgumentError(f"{name}: scale must be (lo, hi) with 0 < lo <= hi, got {scale}")
        if interpolation not in ("nearest", "bilinear"):
            raise ArgumentError(f"{name}: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
        self.translate, self.scale, self.interpolation, self.fill = translate, scale, interpolation, fill
        self.center, self.generator = center, generator

    def batch(self, x):
        x = _images(type(self).__name__, x)
        n, _, h, w = x.shape
        rng = transform_rng(self.generator)
        angle = np.deg2rad(rng.uniform(*self.degrees, size=n))
        tx = ty = np.zeros(n)
        if self.translate is not None:
            tx = np.round(rng.uniform(-1, 1, size=n) * self.translate[0] * w)
            ty = np.round(rng.uniform(-1, 1, size=n) * self.translate[1] * h)
        s = rng.uniform(*self.scale, size=n) if self.scale is not None else np.ones(n)
        cx, cy = self.center if self.center is not None else ((w - 1) / 2, (h - 1) / 2)
        cos, sin = (np.cos(angle) / s)[:, None, None], (np.sin(angle) / s)[:, None, None]
        dx = np.arange(w)[None, None, :] - cx - tx[:, None, None]
        dy = np.arange(h)[None, :, None] - cy - ty[:, None, None]
        xs = cx + cos * dx - sin * dy
        ys = cy + sin * dx + cos * dy
        return affine_sample(x, ys, xs, self.interpolation, self.fill)


class RandomRotation(RandomAffine):
    """Rotate by an angle drawn from ``degrees`` (``d`` means ``(-d, d)``), counter-clockwise positive.

    ``RandomRotation((90, 90))`` turns a square image exactly as ``np.rot90``. ``expand`` is not supported.
    """

    def __init__(self, degrees, interpolation: str = "nearest", expand: bool = False, center=None,
                 fill: float = 0.0, generator: backend.Generator | None = None):
        if expand:
            raise ArgumentError("RandomRotation: expand=True is not supported (the output keeps the input size)")
        super().__init__(degrees, interpolation=interpolation, fill=fill, center=center, generator=generator)


def _size(name: str, size) -> tuple:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise ArgumentError(f"{name}: size must be positive, got {size!r}")
    return int(h), int(w)


class RandomCrop(BatchTransform):
    """Crop a random ``size`` window, after padding the borders by ``padding`` (CIFAR: 32 with padding 4).

    ``padding``: int (all sides), ``(left/right, top/bottom)`` or ``(left, top, right, bottom)``, as
    torchvision; ``padding_mode`` 'constant' (with ``fill``), 'edge', 'reflect' or 'symmetric'. The crops of
    the whole batch are one fancy index into a strided window view of the padded batch.
    """

    def __init__(self, size, padding=None, pad_if_needed: bool = False, fill: float = 0.0,
                 padding_mode: str = "constant", generator: backend.Generator | None = None):
        self.size = _size("RandomCrop", size)
        if padding is None:
            padding = 0
        p = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        if len(p) == 2:
            p = (p[0], p[1], p[0], p[1])
        if len(p) != 4 or min(p) < 0:
            raise ArgumentError(f"RandomCrop: padding must be an int or 2 or 4 non-negative ints, got {padding!r}")
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ArgumentError(f"RandomCrop: padding_mode must be constant, edge, reflect or symmetric, "
                                f"got {padding_mode!r}")
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = p, pad_if_needed, fill, padding_mode
        self.generator = generator

    def batch(self, x):
        x = _images("RandomCrop", x)
        left, top, right, bottom = self.padding
        th, tw = self.size
        if self.pad_if_needed:
            extra_h = max(0, th - (x.shape[2] + top + bottom))
            extra_w = max(0, tw - (x.shape[3] + left + right))
            top, bottom, left, right = top + extra_h, bottom + extra_h, left + extra_w, right + extra_w
        if top or bottom or left or right:
            pads = ((0, 0), (0, 0), (top, bottom), (left, right))
            kw = {"constant_values": self.fill} if self.padding_mode == "constant" else {}
            x = np.pad(x, pads, mode=self.padding_mode, **kw)
        n, _, h, w = x.shape
        if th > h or tw > w:
            raise ShapeError(f"RandomCrop: crop size {(th, tw)} is larger than the (padded) image {(h, w)}; "
                             "use padding or pad_if_needed=True")
        rng = transform_rng(self.generator)
        oy, ox = rng.integers(0, h - th + 1, size=n), rng.integers(0, w - tw + 1, size=n)
        windows = np.lib.stride_tricks.sliding_window_view(x, (th, tw), axis=(2, 3))
        return windows[np.arange(n), :, oy, ox]  # (N, C, th, tw): advanced indices first, then the slice


class RandomResizedCrop(BatchTransform):
    """Crop a random area fraction ``scale`` and aspect ratio ``ratio`` (log-uniform), resized to ``size``.

    Inception-style "scale augmentation" with torchvision's sampling: up to 10 tries per sample (done for
    the whole batch at once), falling back to a centre crop with the ratio clamped. Resizing samples
    pixel centres (``align_corners=False``) with edge clamping.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation: str = "bilinear",
                 generator: backend.Generator | None = None):
        self.size = _size("RandomResizedCrop", size)
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ArgumentError(f"RandomResizedCrop: need 0 < scale lo <= hi <= 1 and 0 < ratio lo <= hi, got "
                                f"scale={scale}, ratio={ratio}")
        if interpolation not in ("nearest", "bilinear"):
            raise ArgumentError(f"RandomResizedCrop: interpolation must be 'nearest' or 'bilinear', "
                                f"got {interpolation!r}")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation, self.generator = interpolation, generator

    def boxes(self, n: int, h: int, w: int, rng) -> tuple:
        """Crop boxes ``(top, left, height, width)`` for ``n`` images of size ``h x w``, each shape (n,)."""
        area = h * w * rng.uniform(*self.scale, size=(n, 10))
        aspect = np.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), size=(n, 10)))
        cw = np.round(np.sqrt(area * aspect)).astype(np.int64)
        ch = np.round(np.sqrt(area / aspect)).astype(np.int64)
        ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        u, v = rng.random((n, 10)), rng.random((n, 10))
        top, left = (u * (h - ch + 1)).astype(np.int64), (v * (w - cw + 1)).astype(np.int64)
        first = ok.argmax(axis=1)
        rows = np.arange(n)
        # fallback (no try fitted): the whole image, cropped to the nearest allowed aspect ratio, centred
        in_ratio = w / h
        fw, fh = (w, int(round(w / self.ratio[0]))) if in_ratio < self.ratio[0] else \
            (int(round(h * self.ratio[1])), h) if in_ratio > self.ratio[1] else (w, h)
        found = ok[rows, first]
        pick = lambda a, fb: np.where(found, a[rows, first], fb)  # noqa: E731
        return pick(top, (h - fh) // 2), pick(left, (w - fw) // 2), pick(ch, fh), pick(cw, fw)

    def batch(self, x):
        x = _images("RandomResizedCrop", x)
        n, _, h, w = x.shape
        top, left, ch, cw = self.boxes(n, h, w, transform_rng(self.generator))
        oh, ow = self.size
        ys = top[:, None] + (np.arange(oh)[None] + 0.5) * (ch[:, None] / oh) - 0.5
        xs = left[:, None] + (np.arange(ow)[None] + 0.5) * (cw[:, None] / ow) - 0.5
        ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
        return affine_sample(x, np.broadcast_to(ys[:, :, None], (n, oh, ow)),
                             np.broadcast_to(xs[:, None, :], (n, oh, ow)), self.interpolation)


# ---- noise and occlusion --------------------------------------------------------------------------------------


class GaussianNoise(BatchTransform):
    """``x + std * N(0, 1)``, then clipped to ``clip=(lo, hi)`` if given (e.g. ``(0, 1)`` for raw images)."""

    def __init__(self, std: float = 0.1, clip=None, generator: backend.Generator | None = None):
        if std < 0:
            raise ArgumentError(f"GaussianNoise: std must be >= 0, got {std}")
        self.std, self.clip, self.generator = float(std), clip, generator

    def batch(self, x):
        dt = x.dtype if x.dtype.kind == "f" else np.float32
        noise = transform_rng(self.generator).standard_normal(x.shape, dtype=np.float32)
        out = (x + np.float32(self.std) * noise).astype(dt, copy=False)
        return np.clip(out, *self.clip).astype(dt, copy=False) if self.clip is not None else out


class Cutout(BatchTransform):
    """Zero ``n_holes`` squares of side ``length`` per image (DeVries & Taylor 2017).

    Each centre is uniform over the whole image, ``y ~ randint(H)``, and the square
    ``[y - length//2, y + length//2)`` is clipped at the borders (so it can be partly outside), exactly as the
    official code. Apply it after normalisation, so zero means the mean pixel.
    """

    def __init__(self, n_holes: int = 1, length: int = 16, generator: backend.Generator | None = None):
        if n_holes < 0 or length < 0:
            raise ArgumentError(f"Cutout: n_holes and length must be >= 0, got {n_holes}, {length}")
        self.n_holes, self.length, self.generator = int(n_holes), int(length), generator

    def masks(self, n: int, h: int, w: int, rng) -> np.ndarray:
        """Boolean (n, h, w): True where the image is cut out."""
        cy = rng.integers(0, h, size=(n, self.n_holes, 1, 1))
        cx = rng.integers(0, w, size=(n, self.n_holes, 1, 1))
        half = self.length // 2
        rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
        inside = ((rows >= np.clip(cy - half, 0, h)) & (rows < np.clip(cy + half, 0, h))
                  & (cols >= np.clip(cx - half, 0, w)) & (cols < np.clip(cx + half, 0, w)))
        return inside.any(axis=1)

    def batch(self, x):
        x = _images("Cutout", x)
        cut = self.masks(x.shape[0], x.shape[2], x.shape[3], transform_rng(self.generator))
        return np.where(cut[:, None], np.zeros((), x.dtype), x)


# ---- mixup (batch level, on inputs and labels) -----------------------------------------------------------


class Mixup:
    """Mixup (Zhang et al. 2018): ``x~ = lam * x + (1 - lam) * x[perm]`` with one ``lam ~ Beta(alpha, alpha)``
    per batch and a random permutation ``perm`` of the batch; ``alpha <= 0`` gives ``lam = 1``.

    ``Mixup(alpha)(x, y)`` returns ``(mixed_x, y_a, y_b, lam)``; train with
    ``mixup_criterion(loss_fn, model(mixed_x), y_a, y_b, lam)``. Training only, never at evaluation.
    Accepts arrays or Tensors (returns the same kind; the mix keeps x's dtype).
    """

    def __init__(self, alpha: float = 1.0, generator: backend.Generator | None = None):
        self.alpha, self.generator = float(alpha), generator

    def __call__(self, x, y):
        rng = transform_rng(self.generator)
        lam = float(rng.beta(self.alpha, self.alpha)) if self.alpha > 0 else 1.0
        xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        yd = y.data if isinstance(y, Tensor) else np.asarray(y)
        if xd.shape[0] != yd.shape[0]:
            raise ShapeError(f"Mixup: x has {xd.shape[0]} samples but y has {yd.shape[0]}")
        perm = rng.permutation(xd.shape[0])
        dt = xd.dtype if xd.dtype.kind == "f" else np.float32
        mixed = (dt.type(lam) * xd + dt.type(1 - lam) * xd[perm]).astype(dt, copy=False)
        wrap = (lambda a: Tensor(a)) if isinstance(x, Tensor) else (lambda a: a)
        wrap_y = (lambda a: Tensor(a)) if isinstance(y, Tensor) else (lambda a: a)
        return wrap(mixed), wrap_y(yd), wrap_y(yd[perm]), lam


def mixup_criterion(loss_fn, pred, y_a, y_b, lam: float):
    """``lam * loss_fn(pred, y_a) + (1 - lam) * loss_fn(pred, y_b)`` (cross-entropy with the mixed target)."""
    return lam * loss_fn(pred, y_a) + (1 - lam) * loss_fn(pred, y_b)
