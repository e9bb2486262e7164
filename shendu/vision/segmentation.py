"""Semantic segmentation models: FCN-32s/16s/8s, encoder-decoders, and the sliding-window baseline.

The lecture's story (CS231n lecture 11, "Semantic Segmentation"): classifying the patch around every pixel
(:class:`SlidingWindowClassifier`) recomputes the features of overlapping patches again and again; a
fully convolutional network computes them once and outputs all pixels' scores in one pass. Keeping full
resolution throughout is too costly, so the network *downsamples* (pooling) and then *upsamples*:

- :class:`FCN` (Long, Shelhamer, Darrell, CVPR 2015): a VGG-like backbone, its "fully connected" layers
  as convolutions, a 1x1 score layer, and transposed convolutions initialised to bilinear interpolation
  (:func:`bilinear_kernel`). FCN-32s upsamples the stride-32 scores at once; FCN-16s first adds the 1x1
  scores of pool4 (stride 16), FCN-8s also those of pool3 (stride 8): the skips bring back detail.
- :class:`EncoderDecoder`: the same backbone followed by a mirror decoder that upsamples x2 per stage by
  max unpooling with the encoder's saved arg-max positions (SegNet), by nearest-neighbour copies, or by
  "bed of nails" (value at the top-left of each 2x2 block, zeros elsewhere), each followed by a 3x3 conv.

All models map ``(N, 1, H, W)`` images to ``(N, num_classes, H, W)`` logits; H and W must be multiples of
32 (five 2x2 poolings). Train them with ``F.cross_entropy(logits, masks, ignore_index=...)``. The
backbone uses batch normalization (the original FCN fine-tuned an ImageNet VGG16 without it; trained
from scratch on small scenes, BN makes training fast and stable).
"""

from __future__ import annotations

import math
import time

import numpy as np

import shendu
import shendu.functional as F
from shendu import nn
from shendu.autograd.engine import no_grad
from shendu.errors import ArgumentError, ShapeError, fmt_shape

__all__ = ["bilinear_kernel", "BilinearUpsample", "SceneBackbone", "SceneClassifier", "FCN", "EncoderDecoder",
           "SlidingWindowClassifier", "fcn32s", "fcn16s", "fcn8s", "unpool_segnet", "nearest_segnet", "nails_segnet",
           "sliding_window", "SEGMENTATION_MODELS", "segmentation_model", "extract_patches", "stride_limited_masks"]

WIDTHS = (16, 32, 64, 96, 128)  # channels of the five backbone stages (VGG16: 64, 128, 256, 512, 512)
CONVS = (1, 1, 2, 2, 1)          # 3x3 convs per stage (VGG16: 2, 2, 3, 3, 3)
BLOCKS = (0, 0, 0, 0, 0)         # residual blocks per stage after its convs (none: the plain VGG-like default)


def _bilinear_taps(kernel_size: int) -> np.ndarray:
    """The 1-D bilinear filter ``1 - |i - c| / f`` of length k, ``f = ceil(k / 2)``, c its centre."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    return (1 - np.abs(np.arange(kernel_size) - center) / factor).astype(np.float32)


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> shendu.Tensor:
    """Weights ``(in_channels, out_channels, k, k)`` that make a ConvTranspose2d upsample bilinearly.

    The FCN initialisation: for factor ``f`` use ``k = 2f - f % 2``, ``stride = f``, ``padding = f // 2``
    (the output is then exactly ``f`` times the input); the filter is ``(1 - |i - c| / f') (1 - |j - c| / f')``
    with ``f' = ceil(k / 2)`` and ``c = f' - 1`` for odd k, ``f' - 0.5`` for even k, placed on the channel
    pairs ``(c, c)`` only (each channel is upsampled on its own), zeros elsewhere. Away from the border it reproduces
    ``F.interpolate(x, scale_factor=f, mode='bilinear', align_corners=False)``; within ``f/2`` pixels of the
    border the transposed conv reads zeros where interpolation repeats the edge.

    >>> w = bilinear_kernel(1, 1, 4)
    >>> w.shape, w[0, 0, 0].tolist()
    ((1, 1, 4, 4), [0.0625, 0.1875, 0.1875, 0.0625])
    """
    if min(in_channels, out_channels, kernel_size) < 1:
        raise ArgumentError(f"bilinear_kernel: channels and kernel_size must be >= 1, got in_channels="
                            f"{in_channels}, out_channels={out_channels}, kernel_size={kernel_size}")
    taps = _bilinear_taps(kernel_size)
    weight = np.zeros((in_channels, out_channels, kernel_size, kernel_size), np.float32)
    diagonal = np.arange(min(in_channels, out_channels))
    weight[diagonal, diagonal] = np.outer(taps, taps)
    return shendu.tensor(weight)


def _learnable_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A x``factor`` ConvTranspose2d initialised to bilinear interpolation (output exactly ``factor`` x input)."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with no_grad():
        up.weight.copy_(bilinear_kernel(channels, channels, 2 * factor))
    return up


def _transposed_conv_matrix(n_in: int, factor: int) -> np.ndarray:
    """(n_in * factor, n_in): the 1-D transposed convolution with the bilinear taps, kernel 2f, stride f,
    padding f // 2, as a matrix: ``A[o, i] = taps[o - i f + f // 2]`` where that tap exists."""
    k = 2 * factor
    taps = _bilinear_taps(k)
    tap = np.arange(n_in * factor)[:, None] - np.arange(n_in)[None, :] * factor + factor // 2
    return np.where((tap >= 0) & (tap < k), taps[np.clip(tap, 0, k - 1)], 0).astype(np.float32)


class BilinearUpsample(nn.Module):
    """The fixed x``factor`` upsampling of FCN: ``ConvTranspose2d(C, C, 2f, stride=f, padding=f // 2)`` with
    :func:`bilinear_kernel` weights, computed as ``A_h @ x @ A_w^T`` per channel.

    The bilinear kernel is separable and acts on each channel alone, so the transposed convolution is one
    (H f, H) matrix per axis; two small matrix products cost far less than a 2f x 2f transposed convolution
    (whose kernel loop has 4 f^2 offsets). It has no parameters; the result equals ``F.conv_transpose2d``
    with the bilinear weights exactly, border included.

    >>> up = BilinearUpsample(2)
    >>> up(shendu.tensor([[[[0.0, 4.0], [0.0, 4.0]]]]))[0, 0, 1].tolist()  # the border reads zeros: 3, not 4
    [0.0, 1.0, 3.0, 3.0]
    """

    def __init__(self, factor: int):
        super().__init__()
        if factor < 1:
            raise ArgumentError(f"BilinearUpsample: factor must be >= 1, got {factor}")
        self.factor = int(factor)
        self._matrices: dict = {}

    def _matrix(self, n: int, dtype) -> shendu.Tensor:
        if (n, dtype) not in self._matrices:
            self._matrices[n, dtype] = shendu.tensor(_transposed_conv_matrix(n, self.factor).astype(dtype))
        return self._matrices[n, dtype]

    def forward(self, x):
        a_h, a_w = self._matrix(x.shape[-2], x.dtype), self._matrix(x.shape[-1], x.dtype)
        return a_h @ x @ a_w.t()

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def _conv_bn_relu(c_in: int, c_out: int) -> list:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _check_size(name: str, x, multiple: int = 32) -> None:
    if x.ndim != 4 or x.shape[-1] % multiple or x.shape[-2] % multiple:
        raise ShapeError(f"{name}: expected images (N, C, H, W) with H and W multiples of {multiple} (five 2x2 "
                         f"poolings), got {fmt_shape(x.shape)}; pad or resize the input")


class SceneBackbone(nn.Module):
    """A small VGG: five stages of 3x3 conv + BN + ReLU, each ending with 2x2/2 max pooling.

    ``forward(x)`` returns the list of the five pooled maps (strides 2, 4, 8, 16, 32); with
    ``return_indices=True`` also the pooling arg-max indices and the pre-pool sizes (for unpooling).
    Sized for 64x64 or 96x96 single-channel scenes: widths ``(16, 32, 64, 96, 128)`` with ``(1, 1, 2, 2, 1)``
    convs per stage (about 0.3M parameters). ``blocks`` appends that many residual blocks to each stage after
    its convs (ResNet's :class:`~shendu.models.resnet.BasicBlock`: two 3x3 conv + BN with an identity
    shortcut, ``relu(x + bn(conv(relu(bn(conv(x))))))``), for a deeper backbone that still trains well.

    >>> net = SceneBackbone()
    >>> [tuple(p.shape) for p in net(shendu.randn(1, 1, 64, 64))][2:]
    [(1, 64, 8, 8), (1, 96, 4, 4), (1, 128, 2, 2)]
    """

    def __init__(self, in_channels: int = 1, widths: tuple = WIDTHS, convs: tuple = CONVS, blocks: tuple = BLOCKS):
        super().__init__()
        from shendu.models.resnet import BasicBlock

        if len(widths) != 5 or len(convs) != 5 or len(blocks) != 5:
            raise ArgumentError(f"SceneBackbone: expected 5 widths, 5 conv counts and 5 block counts, got {widths}, "
                                f"{convs} and {blocks}")
        if min(convs) < 1 or min(blocks) < 0:
            raise ArgumentError(f"SceneBackbone: every stage needs at least 1 conv (it sets the stage's width) and "
                                f"no negative block count, got convs {convs} and blocks {blocks}")
        self.widths = tuple(int(w) for w in widths)
        stages, c = [], in_channels
        for width, n, n_blocks in zip(self.widths, convs, blocks):
            layers = []
            for _ in range(n):
                layers += _conv_bn_relu(c, width)
                c = width
            layers += [BasicBlock(width, width) for _ in range(n_blocks)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x, return_indices: bool = False):
        pools, indices, sizes = [], [], []
        for stage in self.stages:
            x = stage(x)
            sizes.append(tuple(x.shape[-2:]))
            if return_indices:
                x, idx = F.max_pool2d(x, 2, return_indices=True)
                indices.append(idx)
            else:
                x = F.max_pool2d(x, 2)
            pools.append(x)
        return (pools, indices, sizes) if return_indices else pools


class SceneClassifier(nn.Module):
    """Item classifier on a :class:`SceneBackbone`: global average pooling of pool5 (or of ``head(pool5)``),
    then one linear layer.

    It pretrains the backbone of an :class:`FCN` or :class:`EncoderDecoder` (pass theirs as ``backbone``:
    the two models then share it), as the FCN paper starts from a VGG16 trained to classify ImageNet.
    :meth:`from_fcn` also shares the FCN's ``fc6`` and ``fc7`` as the ``head``, so that they start the
    segmentation trained too: the FCN is then the classifier convolutionalised, as in the paper, with only
    its score layers new. Shapes: ``(N, C_in, H, W) -> (N, num_classes)`` logits, H and W multiples of 32.

    >>> fcn = FCN(num_classes=11)
    >>> clf = SceneClassifier(num_classes=10, backbone=fcn.backbone)
    >>> clf(shendu.randn(2, 1, 64, 64)).shape, clf.backbone is fcn.backbone
    ((2, 10), True)
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple = WIDTHS, convs: tuple = CONVS,
                 blocks: tuple = BLOCKS, backbone: SceneBackbone | None = None, head: nn.Module | None = None,
                 head_channels: int | None = None):
        super().__init__()
        if (head is None) != (head_channels is None):
            raise ArgumentError("SceneClassifier: give head and head_channels (its output channels) together")
        self.backbone = backbone if backbone is not None else SceneBackbone(in_channels, widths, convs, blocks)
        self.head = head
        self.fc = nn.Linear(self.backbone.widths[-1] if head is None else head_channels, num_classes)

    @classmethod
    def from_fcn(cls, fcn: "FCN", num_classes: int = 10) -> "SceneClassifier":
        """The classifier ``fc(mean(fc7(fc6(pool5))))`` sharing ``fcn``'s backbone, ``fc6`` and ``fc7``.

        >>> fcn = FCN(num_classes=11)
        >>> clf = SceneClassifier.from_fcn(fcn)
        >>> clf(shendu.randn(2, 1, 64, 64)).shape, clf.head[0] is fcn.fc6
        ((2, 10), True)
        """
        return cls(num_classes, backbone=fcn.backbone, head=nn.Sequential(fcn.fc6, fcn.fc7),
                   head_channels=fcn.fc_width)

    def forward(self, x):
        _check_size("SceneClassifier", x)
        features = self.backbone(x)[-1]
        if self.head is not None:
            features = self.head(features)
        return self.fc(features.mean((2, 3)))


class FCN(nn.Module):
    """Fully convolutional network (FCN-32s, -16s or -8s) on :class:`SceneBackbone`.

    ``fc6`` (3x3 conv) and ``fc7`` (1x1 conv) play VGG's convolutionalised fully connected layers, ``score_fr``
    scores the classes at stride 32. FCN-16s upsamples those scores x2 (``upscore2``, learnable, bilinear
    init) and adds ``score_pool4`` (1x1 conv of pool4, zero-initialised so training starts from FCN-32s's
    prediction); FCN-8s does the same once more with pool3. The final upsampling (x32, x16 or x8) is a
    fixed bilinear ConvTranspose2d (:class:`BilinearUpsample`), as in the paper's FCN-8s.
    Shapes: ``(N, C_in, H, W) -> (N, classes, H, W)``.

    >>> net = FCN(num_classes=11, stride=8)
    >>> net(shendu.randn(2, 1, 64, 64)).shape
    (2, 11, 64, 64)
    """

    def __init__(self, num_classes: int = 11, in_channels: int = 1, stride: int = 8, widths: tuple = WIDTHS,
                 convs: tuple = CONVS, fc_width: int = 256, dropout: float = 0.1, blocks: tuple = BLOCKS):
        super().__init__()
        if stride not in (8, 16, 32):
            raise ArgumentError(f"FCN: stride must be 32, 16 or 8 (FCN-32s/16s/8s), got {stride}")
        self.stride, self.num_classes, self.fc_width = stride, num_classes, fc_width
        self.backbone = SceneBackbone(in_channels, widths, convs, blocks)
        w3, w4, w5 = self.backbone.widths[2:]
        self.fc6 = nn.Sequential(*_conv_bn_relu(w5, fc_width), nn.Dropout2d(dropout))
        self.fc7 = nn.Sequential(nn.Conv2d(fc_width, fc_width, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout))
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(w4, num_classes, 1)
            self.upscore2 = _learnable_upsampler(num_classes, 2)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(w3, num_classes, 1)
            self.upscore_pool4 = _learnable_upsampler(num_classes, 2)
        for name in ("score_pool4", "score_pool3"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)
        self.upscore = BilinearUpsample(stride)

    def forward(self, x):
        _check_size(f"FCN-{self.stride}s", x)
        _, _, pool3, pool4, pool5 = self.backbone(x)
        score = self.score_fr(self.fc7(self.fc6(pool5)))
        if self.stride <= 16:
            score = self.upscore2(score) + self.score_pool4(pool4)
        if self.stride == 8:
            score = self.upscore_pool4(score) + self.score_pool3(pool3)
        return self.upscore(score)


UPSAMPLING = ("unpool", "nearest", "nails")


class EncoderDecoder(nn.Module):
    """Encoder-decoder segmentation: :class:`SceneBackbone`, then five x2 upsampling stages back to full size.

    Each decoder stage upsamples x2 by ``upsampling``: ``'unpool'`` (max unpooling at the encoder's saved
    arg-max positions, SegNet), ``'nearest'`` (copy each value into its 2x2 block) or ``'nails'`` (bed of
    nails: the value at the block's top-left, zeros elsewhere), then a 3x3 conv + BN + ReLU mirrors the
    encoder stage; a 1x1 conv scores the classes at full resolution.

    >>> net = EncoderDecoder(num_classes=11, upsampling="unpool")
    >>> net(shendu.randn(1, 1, 64, 64)).shape
    (1, 11, 64, 64)
    """

    def __init__(self, num_classes: int = 11, in_channels: int = 1, upsampling: str = "unpool",
                 widths: tuple = WIDTHS, convs: tuple = CONVS, blocks: tuple = BLOCKS):
        super().__init__()
        if upsampling not in UPSAMPLING:
            raise ArgumentError(f"EncoderDecoder: upsampling must be one of {UPSAMPLING}, got {upsampling!r}")
        self.upsampling, self.num_classes = upsampling, num_classes
        self.backbone = SceneBackbone(in_channels, widths, convs, blocks)
        w = self.backbone.widths
        outs = (w[0],) + w[:-1]  # stage s maps width w[s] back to w[s-1]; the last keeps w[0]
        self.decoder = nn.ModuleList([nn.Sequential(*_conv_bn_relu(w[s], outs[s])) for s in range(5)])
        self.classifier = nn.Conv2d(w[0], num_classes, 1)

    def _up(self, x, idx, size):
        if self.upsampling == "unpool":
            return F.max_unpool2d(x, idx, 2, output_size=size)
        return F.interpolate(x, scale_factor=2, mode="nearest" if self.upsampling == "nearest" else "bed_of_nails")

    def forward(self, x):
        _check_size(f"EncoderDecoder({self.upsampling})", x)
        if self.upsampling == "unpool":
            pools, indices, sizes = self.backbone(x, return_indices=True)
        else:
            pools, indices, sizes = self.backbone(x), [None] * 5, [None] * 5
        y = pools[-1]
        for s in reversed(range(5)):
            y = self.decoder[s](self._up(y, indices[s], sizes[s]))
        return self.classifier(y)


def extract_patches(images: np.ndarray, index: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                    patch: int) -> np.ndarray:
    """The ``patch`` x ``patch`` windows of ``images[index[i]]`` centred on pixel ``(ys[i], xs[i])``, zero-padded.

    ``images`` (N, C, H, W) -> (M, C, patch, patch) for M-long ``index``, ``ys``, ``xs`` (for even ``patch``
    the centre is the pixel right-below the middle). One strided window view (the ``unfold`` of the
    images) and one fancy index, no loop.

    >>> img = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> extract_patches(img, np.array([0]), np.array([0]), np.array([1]), 3)[0, 0].tolist()
    [[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [4.0, 5.0, 6.0]]
    """
    half = patch // 2
    padded = np.pad(images, ((0, 0), (0, 0), (half, patch - 1 - half), (half, patch - 1 - half)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (patch, patch), axis=(2, 3))  # (N, C, H, W, p, p)
    return windows[index, :, ys, xs]


class SlidingWindowClassifier(nn.Module):
    """The baseline FCN replaced: classify the ``patch`` x ``patch`` window around each pixel with a small CNN.

    ``forward(patches)``: ``(M, C_in, patch, patch) -> (M, num_classes)`` (train it on patches sampled
    from the scenes, each labelled with its centre pixel's class). ``segment(images)`` labels every pixel:
    all H*W windows of each image are cut with a strided view (the ``unfold`` of the image) and classified
    in batches of ``chunk``, so the features of overlapping windows are computed once per window; that
    repeated work is why it is slow (see ``last_seconds_per_image``).

    >>> net = SlidingWindowClassifier(num_classes=11, patch=17)
    >>> net.segment(shendu.randn(1, 1, 32, 32)).shape
    (1, 11, 32, 32)
    """

    def __init__(self, num_classes: int = 11, in_channels: int = 1, patch: int = 33, widths: tuple = (8, 16, 32),
                 chunk: int = 2048):
        super().__init__()
        if patch < 8:
            raise ArgumentError(f"SlidingWindowClassifier: patch must be >= 8, got {patch}")
        self.patch, self.chunk, self.num_classes = int(patch), int(chunk), num_classes
        layers, c = [], in_channels
        for width in widths:
            layers += _conv_bn_relu(c, width) + [nn.MaxPool2d(2)]
            c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)
        self.last_seconds_per_image = math.nan

    def forward(self, patches):
        return self.head(F.global_avg_pool2d(self.features(patches)))

    def segment(self, images):
        """Logits ``(N, num_classes, H, W)`` for images ``(N, C, H, W)``: every pixel's window classified."""
        x = getattr(images, "data", images)
        if x.ndim != 4:
            raise ShapeError(f"SlidingWindowClassifier.segment: expected images (N, C, H, W), got {fmt_shape(x.shape)}")
        N, _, H, W = x.shape
        ys, xs = np.divmod(np.arange(H * W), W)
        start = time.perf_counter()
        out = np.empty((N, H * W, self.num_classes), np.float32)
        with no_grad():
            for n in range(N):  # images one by one, their windows in chunks (memory: chunk * patch^2 floats)
                for a in range(0, H * W, self.chunk):
                    sl = slice(a, a + self.chunk)
                    windows = extract_patches(x, np.full(len(ys[sl]), n), ys[sl], xs[sl], self.patch)
                    out[n, sl] = self(shendu.tensor(windows)).data
        self.last_seconds_per_image = (time.perf_counter() - start) / max(N, 1)
        return shendu.tensor(out.transpose(0, 2, 1).reshape(N, self.num_classes, H, W))


def fcn32s(num_classes: int = 11, in_channels: int = 1, **kw) -> FCN:
    """FCN-32s: scores at stride 32 upsampled x32 in one bilinear step."""
    return FCN(num_classes, in_channels, stride=32, **kw)


def fcn16s(num_classes: int = 11, in_channels: int = 1, **kw) -> FCN:
    """FCN-16s: FCN-32s's scores x2, plus pool4's scores, upsampled x16."""
    return FCN(num_classes, in_channels, stride=16, **kw)


def fcn8s(num_classes: int = 11, in_channels: int = 1, **kw) -> FCN:
    """FCN-8s: FCN-16s's fused scores x2, plus pool3's scores, upsampled x8."""
    return FCN(num_classes, in_channels, stride=8, **kw)


def unpool_segnet(num_classes: int = 11, in_channels: int = 1, **kw) -> EncoderDecoder:
    """Encoder-decoder upsampling by max unpooling with the saved pooling indices (SegNet)."""
    return EncoderDecoder(num_classes, in_channels, upsampling="unpool", **kw)


def nearest_segnet(num_classes: int = 11, in_channels: int = 1, **kw) -> EncoderDecoder:
    """Encoder-decoder upsampling by nearest-neighbour copies."""
    return EncoderDecoder(num_classes, in_channels, upsampling="nearest", **kw)


def nails_segnet(num_classes: int = 11, in_channels: int = 1, **kw) -> EncoderDecoder:
    """Encoder-decoder upsampling by "bed of nails" (value at each 2x2 block's top-left)."""
    return EncoderDecoder(num_classes, in_channels, upsampling="nails", **kw)


def sliding_window(num_classes: int = 11, in_channels: int = 1, **kw) -> SlidingWindowClassifier:
    """The sliding-window patch classifier baseline."""
    return SlidingWindowClassifier(num_classes, in_channels, **kw)


SEGMENTATION_MODELS = {"fcn32s": fcn32s, "fcn16s": fcn16s, "fcn8s": fcn8s, "unpool": unpool_segnet,
                       "nearest": nearest_segnet, "nails": nails_segnet, "sliding": sliding_window}


def segmentation_model(name: str, num_classes: int = 11, in_channels: int = 1, **kw) -> nn.Module:
    """Build a model by name: ``fcn32s``, ``fcn16s``, ``fcn8s``, ``unpool``, ``nearest``, ``nails``, ``sliding``.

    >>> segmentation_model("fcn16s").stride
    16
    """
    if name not in SEGMENTATION_MODELS:
        raise ArgumentError(f"segmentation_model: unknown model {name!r}; choose from {sorted(SEGMENTATION_MODELS)}")
    return SEGMENTATION_MODELS[name](num_classes, in_channels, **kw)


def stride_limited_masks(masks, stride: int, num_classes: int) -> np.ndarray:
    """The masks an FCN with output stride ``stride`` draws when its scores are the truth seen at that
    stride: each class's one-hot mask averaged over ``stride x stride`` cells, upsampled by the same fixed
    bilinear :class:`BilinearUpsample` as FCN's last layer, then the arg-max per pixel. Scored against
    ``masks`` it estimates what the output stride alone costs. Not a strict bound: a trained network's
    scores are not cell averages, and sharper scores move a boundary within its cell (FashionScenes 64 px:
    this gives FCN-32s 12% mIoU, a trained FCN-32s reaches 19%); but between the grid points every class
    score is bilinear, so a part thinner than a cell that does not cross a grid point is lost either way.

    Shapes: ``masks (N, H, W)`` integer classes, H and W multiples of ``stride``; returns ``(N, H, W)``.

    >>> m = np.zeros((1, 8, 8), np.int64); m[0, 2:6, 2:6] = 1
    >>> int(stride_limited_masks(m, 1, 2).sum()), int(stride_limited_masks(m, 4, 2).sum())
    (16, 0)
    """
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1] % stride or masks.shape[2] % stride:
        raise ShapeError(f"stride_limited_masks: expected masks (N, H, W) with H and W multiples of {stride}, "
                         f"got {fmt_shape(masks.shape)}")
    if stride == 1:  # full resolution: nothing lost (and no x1 "upsampling" layer to apply)
        return masks.copy()
    onehot = np.eye(num_classes, dtype=np.float32)[masks].transpose(0, 3, 1, 2)
    cells = F.avg_pool2d(shendu.tensor(onehot), stride)
    with shendu.no_grad():
        return BilinearUpsample(stride)(cells).numpy().argmax(1)
