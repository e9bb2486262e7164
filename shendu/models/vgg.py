"""VGG (Simonyan & Zisserman, ICLR 2015), torchvision's layout and keys.

Only 3x3/1 pad-1 convolutions and 2x2/2 max pools, then ``AdaptiveAvgPool2d((7, 7))`` (torchvision's
addition, an identity at 224x224) and FC 4096 -> FC 4096 -> FC classes with dropout 0.5. Configs A, B, D,
E are VGG-11, 13, 16, 19; ``batch_norm=True`` puts a BatchNorm2d after every conv. VGG-16 has
138,357,544 parameters. Smallest input: 32x32.
"""

from __future__ import annotations

from shendu import nn
from shendu.models._base import ZooModel
from shendu.models.registry import register_model

__all__ = ["VGG", "make_vgg_layers", "CFGS", "vgg11", "vgg13", "vgg16", "vgg19",
           "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]

# Output channels of each conv; "M" is a 2x2/2 max pool.
CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_vgg_layers(cfg: list, batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    """The ``features`` Sequential of a VGG config (same indices, hence keys, as torchvision)."""
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(ZooModel):
    """VGG from a ``features`` Sequential: ``(N, C, H, W)``, H, W >= 32 -> ``(N, num_classes)``.

    Initialised as torchvision does: convs Kaiming-normal (fan_out, ReLU), biases 0, BN 1/0, linears N(0, 0.01).

    >>> import shendu
    >>> features = make_vgg_layers(CFGS["A"], batch_norm=True, in_channels=1)
    >>> features(shendu.randn(1, 1, 32, 32)).shape  # five 2x2 pools: 32 -> 1
    (1, 512, 1, 1)
    """

    def __init__(self, features: nn.Module, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def _vgg(cfg: str, batch_norm: bool, num_classes: int, in_channels: int, **kw) -> VGG:
    return VGG(make_vgg_layers(CFGS[cfg], batch_norm, in_channels), num_classes, **kw)


@register_model("vgg11", "VGG-11 (config A), torchvision layout: 132,863,336 params")
def vgg11(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    return _vgg("A", False, num_classes, in_channels, **kw)


@register_model("vgg13", "VGG-13 (config B), torchvision layout: 133,047,848 params")
def vgg13(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    return _vgg("B", False, num_classes, in_channels, **kw)


@register_model("vgg16", "VGG-16 (config D), torchvision layout: 138,357,544 params")
def vgg16(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    return _vgg("D", False, num_classes, in_channels, **kw)


@register_model("vgg19", "VGG-19 (config E), torchvision layout: 143,667,240 params")
def vgg19(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    return _vgg("E", False, num_classes, in_channels, **kw)


@register_model("vgg11_bn", "VGG-11 with BatchNorm after every conv (torchvision vgg11_bn)")
def vgg11_bn(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    return _vgg("A", True, num_classes, in_channels, **kw)


@register_model("vgg13_bn", "VGG-13 with BatchNorm after every conv (torchvision vgg13_bn)")
def vgg13_bn(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    return _vgg("B", True, num_classes, in_channels, **kw)


@register_model("vgg16_bn", "VGG-16 with BatchNorm after every conv (torchvision vgg16_bn): 138,365,992 params")
def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    return _vgg("D", True, num_classes, in_channels, **kw)


@register_model("vgg19_bn", "VGG-19 with BatchNorm after every conv (torchvision vgg19_bn)")
def vgg19_bn(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    return _vgg("E", True, num_classes, in_channels, **kw)
