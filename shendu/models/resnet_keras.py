"""The notes' ResNet-50: the Keras model of deeplearning.ai's Course 4 Week 2 (``resnet50_keras``).

Built exactly as the notes describe it, with the notes' layer names as ``state_dict`` prefixes:

- ``zero_pad`` (ZeroPadding2D 3) -> ``conv1`` 64@7x7/2 -> ``bn_conv1`` -> ReLU -> ``max_pool`` 3x3/2 (valid);
- stages 2-5, each a *convolutional block* ``a`` then *identity blocks* ``b``, ``c``, ...: filters
  [64,64,256] (s=1, 2 identity blocks), [128,128,512] (s=2, 3), [256,256,1024] (s=2, 5),
  [512,512,2048] (s=2, 2). In block ``{stage}{block}`` the main path is ``res{stage}{block}_branch2a``
  (1x1, **stride s** in a convolutional block) -> ``bn..._branch2a`` -> ReLU -> ``..._branch2b`` (3x3 'same')
  -> BN -> ReLU -> ``..._branch2c`` (1x1) -> BN; the shortcut is the identity, or in a convolutional block
  ``res{stage}a_branch1`` (1x1, **stride s**) -> ``bn{stage}a_branch1``; add, then ReLU. E.g.
  ``res2a_branch2a.weight``, ``bn2a_branch2a.running_var``, ``res3a_branch1.weight``.
- ``avg_pool`` (AveragePooling2D 2x2) -> Flatten -> ``fc`` (Dense) -> softmax.

This differs from torchvision's ResNet-50 (:mod:`shendu.models.resnet`): the downsampling stride sits on
the first 1x1 conv (the paper's placement), convs have biases (Keras ``use_bias=True``), the final pool is
a fixed 2x2 average (so ``fc`` depends on ``input_size``), and BN uses Keras's defaults ``eps=1e-3``,
``momentum=0.99`` -- in torch's convention (weight of the new batch) ``momentum=0.01``.
For the notes' 64x64x3 SIGNS input and 6 classes: 64 -> 70 -> 32 -> 15 -> 15 -> 8 -> 4 -> 2 -> 1x1x2048,
23,600,006 numbers = 23,546,886 trainable + 53,120 BN running statistics (Keras counts the moving mean and
variance as non-trainable parameters; here they are buffers). Flatten order is NCHW; it equals Keras's
NHWC order only when the last map is 1x1, as it is at 64x64.

``softmax=True`` (the notes) makes ``forward`` return probabilities; ``get_model("resnet50_keras")``
builds it with ``softmax=False`` so it returns logits, which is what ``cross_entropy`` expects.
"""

from __future__ import annotations

from shendu import functional as F
from shendu import nn
from shendu.errors import ArgumentError
from shendu.models._base import ZooModel
from shendu.models.registry import register_model

__all__ = ["ResNet50Keras", "resnet50_keras", "KERAS_BN_EPS", "KERAS_BN_MOMENTUM"]

KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # Keras momentum=0.99 keeps 99% of the old running value; torch's 0.01 is the same

# (stage, filters [F1, F2, F3], stride s of the convolutional block, number of identity blocks)
STAGES = ((2, (64, 64, 256), 1, 2), (3, (128, 128, 512), 2, 3), (4, (256, 256, 1024), 2, 5),
          (5, (512, 512, 2048), 2, 2))


class _ZeroPad2d(nn.Module):
    """Keras ZeroPadding2D: ``padding`` zeros on each side of H and W."""

    def __init__(self, padding: int):
        super().__init__()
        self.padding = padding

    def forward(self, x):
        p = self.padding
        return F.pad(x, (p, p, p, p))

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)


def _final_size(size: int) -> int:
    """Spatial size after zero pad 3, conv 7/2, max pool 3/2, three stride-2 1x1 convs, avg pool 2."""
    size = (size + 6 - 7) // 2 + 1
    size = (size - 3) // 2 + 1
    for _ in range(3):
        size = (size - 1) // 2 + 1
    return size // 2


class ResNet50Keras(ZooModel):
    """The notes' Keras ResNet-50: ``(N, C, input_size, input_size)`` -> ``(N, num_classes)``.

    >>> import shendu
    >>> net = ResNet50Keras(num_classes=6, softmax=True).eval()
    >>> probs = net(shendu.randn(1, 3, 64, 64))
    >>> probs.shape, round(float(probs.sum()), 4)
    ((1, 6), 1.0)
    """

    def __init__(self, num_classes: int = 6, in_channels: int = 3, input_size: int = 64, softmax: bool = True):
        super().__init__()
        final = _final_size(input_size) if isinstance(input_size, int) and input_size > 0 else 0
        if final < 1:
            raise ArgumentError(f"ResNet50Keras: input_size {input_size!r} is too small; the 2x2 average pool "
                                f"needs a 2x2 map after stage 5, i.e. input_size >= 33 (the notes use 64)")
        self.softmax = softmax
        self.blocks = []  # (prefix such as "2a", is a convolutional block)
        pairs = [("conv1", "bn_conv1")]
        self.zero_pad = _ZeroPad2d(3)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2)
        self.bn_conv1 = _bn(64)
        self.max_pool = nn.MaxPool2d(kernel_size=3, stride=2)
        channels = 64
        for stage, (f1, f2, f3), stride, n_identity in STAGES:
            for i in range(n_identity + 1):
                tag = f"{stage}{'abcdef'[i]}"
                conv, bn = f"res{tag}_branch", f"bn{tag}_branch"
                setattr(self, conv + "2a", nn.Conv2d(channels, f1, 1, stride=stride if i == 0 else 1))
                setattr(self, bn + "2a", _bn(f1))
                setattr(self, conv + "2b", nn.Conv2d(f1, f2, 3, padding=1))
                setattr(self, bn + "2b", _bn(f2))
                setattr(self, conv + "2c", nn.Conv2d(f2, f3, 1))
                setattr(self, bn + "2c", _bn(f3))
                pairs += [(conv + s, bn + s) for s in ("2a", "2b", "2c")]
                if i == 0:
                    setattr(self, conv + "1", nn.Conv2d(channels, f3, 1, stride=stride))
                    setattr(self, bn + "1", _bn(f3))
                    pairs.append((conv + "1", bn + "1"))
                self.blocks.append((tag, i == 0))
                channels = f3
        self.avg_pool = nn.AvgPool2d(kernel_size=2)
        self.fc = nn.Linear(channels * final * final, num_classes)
        self.fuse_pairs = tuple(pairs)

    def _block(self, x, tag: str, convolutional: bool):
        conv, bn = f"res{tag}_branch", f"bn{tag}_branch"
        shortcut = x
        x = F.relu(getattr(self, bn + "2a")(getattr(self, conv + "2a")(x)))
        x = F.relu(getattr(self, bn + "2b")(getattr(self, conv + "2b")(x)))
        x = getattr(self, bn + "2c")(getattr(self, conv + "2c")(x))
        if convolutional:
            shortcut = getattr(self, bn + "1")(getattr(self, conv + "1")(shortcut))
        return F.relu(x + shortcut)

    def forward(self, x):
        x = self.max_pool(F.relu(self.bn_conv1(self.conv1(self.zero_pad(x)))))
        for tag, convolutional in self.blocks:
            x = self._block(x, tag, convolutional)
        x = self.fc(self.avg_pool(x).flatten(1))
        return F.softmax(x, dim=1) if self.softmax else x


@register_model("resnet50_keras", "The notes' Keras ResNet-50 (Coursera; 64x64 input, stride on the first 1x1, "
                                  "Keras names res2a_branch2a..., BN eps 1e-3); returns logits")
def resnet50_keras(num_classes: int = 6, in_channels: int = 3, **kw) -> ResNet50Keras:
    kw.setdefault("softmax", False)
    return ResNet50Keras(num_classes, in_channels, **kw)
