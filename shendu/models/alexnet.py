"""AlexNet (Krizhevsky, Sutskever, Hinton, NeurIPS 2012) in two variants, and ZFNet (Zeiler & Fergus 2014).

- ``AlexNet``: torchvision's layout and keys ("one weird trick" widths 64/192/384/256/256, no LRN,
  ``AdaptiveAvgPool2d((6, 6))``): 61,100,840 parameters at 1000 classes. Smallest input: 63x63.
- ``AlexNetLRN``: the paper's network on 227x227 inputs (the "224" of the paper needs 227 to give 55x55):
  96@11x11/4 -> ReLU -> LRN -> overlapping max pool 3x3/2 -> 256@5x5 (groups=2, the two-GPU split) ->
  ReLU -> LRN -> pool -> 384@3x3 -> 384@3x3 (groups=2) -> 256@3x3 (groups=2) -> pool -> FC 4096 ->
  FC 4096 -> FC classes, dropout 0.5 before the first two FCs: 60,965,224 parameters.
  LRN uses the paper's k=2, n=5, beta=0.75 and alpha=1e-4 *per neighbour*: torch's LocalResponseNorm
  divides alpha by n, so it is given ``alpha = 5 * 1e-4``.
- ``ZFNet``: AlexNet with conv1 96@7x7 stride 2 and conv2 at stride 2 (the notes' "strides of the
  2nd and 3rd layer set to 2" counting the input as the first), 3x3/2 max pools padded by 1 so 224 gives
  110 -> 55 -> 26 -> 13 -> 6 as in the paper's Fig. 3, and wider conv3/conv4/conv5 as the notes say
  (CS231n: 512, 1024, 512; pass ``widths=(96, 256, 384, 384, 256)`` for the paper's Fig. 3 widths).

All three end in ``AdaptiveAvgPool2d((6, 6))`` (an identity at their native input size), so smaller
inputs still run.
"""

from __future__ import annotations

from shendu import nn
from shendu.models._base import ZooModel
from shendu.models.registry import register_model

__all__ = ["AlexNet", "AlexNetLRN", "ZFNet", "alexnet", "alexnet_lrn", "zfnet"]


def _classifier(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(p=dropout), nn.Linear(in_features, 4096), nn.ReLU(inplace=True),
        nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


class _AlexNetBase(ZooModel):
    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


class AlexNet(_AlexNetBase):
    """torchvision's AlexNet: ``(N, C, H, W)`` with H, W >= 63 -> ``(N, num_classes)``.

    >>> import shendu
    >>> AlexNet(10)(shendu.randn(1, 3, 63, 63)).shape
    (1, 10)
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _classifier(256 * 6 * 6, num_classes, dropout)


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)


class AlexNetLRN(_AlexNetBase):
    """The paper's AlexNet with LRN and grouped convolutions, for ``(N, C, 227, 227)`` inputs.

    >>> import shendu
    >>> AlexNetLRN(10)(shendu.randn(1, 3, 67, 67)).shape
    (1, 10)
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4), nn.ReLU(inplace=True), _lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2), nn.ReLU(inplace=True), _lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _classifier(256 * 6 * 6, num_classes, dropout)


class ZFNet(_AlexNetBase):
    """ZFNet for ``(N, C, 224, 224)`` inputs; ``widths`` are the five conv widths.

    >>> import shendu
    >>> ZFNet(10)(shendu.randn(1, 3, 64, 64)).shape
    (1, 10)
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5,
                 widths: tuple = (96, 256, 512, 1024, 512)):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=7, stride=2, padding=1), nn.ReLU(inplace=True), _lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            nn.Conv2d(c1, c2, kernel_size=5, stride=2), nn.ReLU(inplace=True), _lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _classifier(c5 * 6 * 6, num_classes, dropout)


@register_model("alexnet", "AlexNet, torchvision variant (64/192/384/256/256, no LRN): 61,100,840 params")
def alexnet(num_classes: int = 1000, in_channels: int = 3, **kw) -> AlexNet:
    return AlexNet(num_classes, in_channels, **kw)


@register_model("alexnet_lrn", "AlexNet of the 2012 paper: 96@11x11/4, LRN, grouped convs, 227x227 input")
def alexnet_lrn(num_classes: int = 1000, in_channels: int = 3, **kw) -> AlexNetLRN:
    return AlexNetLRN(num_classes, in_channels, **kw)


@register_model("zfnet", "ZFNet: AlexNet with 7x7/2 conv1, stride-2 conv2, conv3-5 widened to 512/1024/512")
def zfnet(num_classes: int = 1000, in_channels: int = 3, **kw) -> ZFNet:
    return ZFNet(num_classes, in_channels, **kw)
