"""Network In Network (Lin, Chen, Yan, ICLR 2014), the CIFAR-10 model of the paper's Caffe release.

An "mlpconv" block is a convolution followed by two 1x1 convolutions (a small MLP shared by every
position), each with ReLU. Three blocks (192, 160, 96) -> max pool 3x3/2 -> dropout 0.5 -> (192, 192, 192)
-> avg pool 3x3/2 -> dropout 0.5 -> (192, 192, num_classes); the last block has one map per class and
global average pooling gives the logits directly: no fully connected layer. The pools are padded by 1 so
32x32 gives 16x16 and then 8x8 (Caffe's ceil-mode pools give the same sizes).
"""

from __future__ import annotations

from shendu import nn
from shendu.models._base import ZooModel
from shendu.models.registry import register_model

__all__ = ["NIN", "mlpconv", "nin"]


def mlpconv(in_channels: int, widths: tuple, kernel_size: int, padding: int) -> nn.Sequential:
    """conv(kernel_size) -> ReLU -> 1x1 conv -> ReLU -> 1x1 conv -> ReLU."""
    c1, c2, c3 = widths
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, kernel_size, padding=padding), nn.ReLU(inplace=True),
        nn.Conv2d(c1, c2, 1), nn.ReLU(inplace=True),
        nn.Conv2d(c2, c3, 1), nn.ReLU(inplace=True),
    )


class NIN(ZooModel):
    """NIN for ``(N, C, 32, 32)`` inputs (any size >= 8 works) -> ``(N, num_classes)``.

    >>> import shendu
    >>> NIN(10)(shendu.randn(2, 3, 32, 32)).shape
    (2, 10)
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            mlpconv(in_channels, (192, 160, 96), 5, 2),
            nn.MaxPool2d(3, stride=2, padding=1), nn.Dropout(dropout),
            mlpconv(96, (192, 192, 192), 5, 2),
            nn.AvgPool2d(3, stride=2, padding=1), nn.Dropout(dropout),
            mlpconv(192, (192, 192, num_classes), 3, 1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.avgpool(self.features(x)).flatten(1)


@register_model("nin", "Network In Network (CIFAR-10 model): mlpconv blocks, global average pooling, no FC; "
                        "966,986 params at 10 classes")
def nin(num_classes: int = 1000, in_channels: int = 3, **kw) -> NIN:
    return NIN(num_classes, in_channels, **kw)
