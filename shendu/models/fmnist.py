"""The reference CNN for Fashion-MNIST (issue 5): two conv-BN-ReLU pairs and a max pool, twice, then
FC 128 -> ReLU -> dropout -> FC classes.

Widths 32, 32 (28x28 -> pool -> 14x14) then 64, 64 (-> pool -> 7x7); every conv is 3x3 pad 1 without bias
(the BN that follows has one); the classifier sees 64 * 7 * 7 = 3136 features; dropout 0.5. At 10 classes
and 1 input channel: 468,010 parameters, 86% of them in the first FC.
"""

from __future__ import annotations

from shendu import nn
from shendu.models._base import ZooModel
from shendu.models.registry import register_model

__all__ = ["FashionCNN", "cnn_fmnist", "cnn_digits"]


def _conv_bn_relu(cin: int, cout: int) -> list:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class FashionCNN(ZooModel):
    """``(N, in_channels, 28, 28)`` -> ``(N, num_classes)``; ``input_size`` must be a multiple of 4.

    >>> import shendu
    >>> FashionCNN()(shendu.randn(2, 1, 28, 28)).shape
    (2, 10)
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple = (32, 64),
                 hidden: int = 128, dropout: float = 0.5, input_size: int = 28):
        super().__init__()
        w1, w2 = widths
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, w1), *_conv_bn_relu(w1, w1), nn.MaxPool2d(2),
            *_conv_bn_relu(w1, w2), *_conv_bn_relu(w2, w2), nn.MaxPool2d(2),
        )
        side = input_size // 4
        self.classifier = nn.Sequential(
            nn.Linear(w2 * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@register_model("cnn_fmnist", "Reference Fashion-MNIST CNN: (conv-BN-ReLU x2, max pool) x2 at widths 32/64, "
                              "FC 128, dropout 0.5, FC; 28x28 input")
def cnn_fmnist(num_classes: int = 10, in_channels: int = 1, **kw) -> FashionCNN:
    return FashionCNN(num_classes, in_channels, **kw)


@register_model("cnn_digits", "The reference CNN sized for the embedded 8x8 digits: widths 16/32, FC 64, dropout 0.25")
def cnn_digits(num_classes: int = 10, in_channels: int = 1, **kw) -> FashionCNN:
    kw = {"widths": (16, 32), "hidden": 64, "dropout": 0.25, "input_size": 8, **kw}
    return FashionCNN(num_classes, in_channels, **kw)
