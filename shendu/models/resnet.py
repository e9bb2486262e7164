"""ResNet (He, Zhang, Ren, Sun, CVPR 2016) in torchvision's layout, SE-ResNet, and small-input ResNets.

- ``ResNet`` with ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (50/101/152): stem conv 7x7/2 64 -> BN ->
  ReLU -> max pool 3x3/2, four stages (``layer1``..``layer4``), global average pool, ``fc``. Keys equal
  torchvision's. This is torchvision's "v1.5": a downsampling bottleneck strides on its 3x3 conv (the
  paper and Keras stride on the first 1x1, see :mod:`shendu.models.resnet_keras`). The shortcut is the
  identity, or a 1x1 conv with stride + BN ("option B") when the shape changes. ResNet-50: 25,557,032
  parameters.
- SE-ResNet (Hu, Shen, Sun, CVPR 2018): ``se_reduction=16`` adds a :class:`SqueezeExcitation` to every
  block, on the residual branch after its last BN and before the addition. SE-ResNet-50: 28,088,024.
- Small inputs (``small_input=True``, for 28x28 / 32x32 images): the stem is a 3x3/1 conv and there is no
  max pool, so a 32x32 image keeps its resolution into ``layer1``; ``widths`` sets the stage widths and
  ``len(layers)`` the number of stages.
"""

from __future__ import annotations

from shendu import functional as F
from shendu import nn
from shendu.errors import ArgumentError
from shendu.models._base import ZooModel
from shendu.models.registry import register_model

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "SqueezeExcitation", "resnet18", "resnet34", "resnet50",
           "resnet101", "resnet152", "se_resnet50", "resnet18_small", "resnet_fmnist"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))`` per channel.

    Squeeze = global average pool to ``z`` (C values); excitation = FC C -> C/r -> ReLU -> FC C/r -> C ->
    sigmoid; the result rescales each channel. The FCs are 1x1 convs with bias on the pooled ``(N, C, 1, 1)``
    map, as ``torchvision.ops.SqueezeExcitation`` (same keys ``fc1``, ``fc2``).

    >>> import shendu
    >>> SqueezeExcitation(32, 2)(shendu.randn(2, 32, 5, 5)).shape
    (2, 32, 5, 5)
    """

    def __init__(self, input_channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)

    def forward(self, x):
        scale = F.sigmoid(self.fc2(F.relu(self.fc1(self.avgpool(x)))))
        return x * scale


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; ``expansion = 1``."""

    expansion = 1
    fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 se_reduction: int | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcitation(planes, max(planes // se_reduction, 1)) if se_reduction else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 (planes) -> 3x3 (planes, stride) -> 1x1 (4 * planes), each with BN; ReLU after the first two
    and after the addition; ``expansion = 4``."""

    expansion = 4
    fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 se_reduction: int | None = None):
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        out = planes * self.expansion
        self.se = SqueezeExcitation(out, max(out // se_reduction, 1)) if se_reduction else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


class ResNet(ZooModel):
    """A ResNet: ``block`` (BasicBlock / Bottleneck), blocks per stage ``layers``.

    ``(N, C, H, W)`` -> ``(N, num_classes)``; H, W >= 32 for the ImageNet stem (224 native), any size
    >= 2 ** (len(layers) - 1) with ``small_input``. Initialised as torchvision: convs Kaiming-normal
    (fan_out, ReLU), BN 1/0; ``zero_init_residual`` zeroes the last BN of each block.

    >>> import shendu
    >>> net = ResNet(BasicBlock, [1, 1], num_classes=10, in_channels=1, small_input=True, widths=(8, 16))
    >>> net(shendu.randn(2, 1, 28, 28)).shape
    (2, 10)
    """

    def __init__(self, block: type, layers: list, num_classes: int = 1000, in_channels: int = 3,
                 zero_init_residual: bool = False, small_input: bool = False,
                 widths: tuple = (64, 128, 256, 512), se_reduction: int | None = None):
        super().__init__()
        if len(widths) != len(layers):
            raise ArgumentError(f"ResNet: widths {tuple(widths)} and layers {list(layers)} must have the same "
                                f"length (one width per stage)")
        self.inplanes = widths[0]
        self.se_reduction = se_reduction
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stages = []
        for i, (width, n) in enumerate(zip(widths, layers)):
            name = f"layer{i + 1}"
            setattr(self, name, self._make_layer(block, width, n, stride=1 if i == 0 else 2))
            self.stages.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last_bn = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else \
                    getattr(m, "bn2", None) if isinstance(m, BasicBlock) else None
                if last_bn is not None:
                    nn.init.zeros_(last_bn.weight)

    fuse_pairs = (("conv1", "bn1"),)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, se_reduction=self.se_reduction)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, se_reduction=self.se_reduction) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.fc(self.avgpool(x).flatten(1))


@register_model("resnet18", "ResNet-18 (BasicBlock [2,2,2,2]), torchvision layout: 11,689,512 params")
def resnet18(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, **kw)


@register_model("resnet34", "ResNet-34 (BasicBlock [3,4,6,3]), torchvision layout: 21,797,672 params")
def resnet34(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, **kw)


@register_model("resnet50", "ResNet-50 (Bottleneck [3,4,6,3], stride on the 3x3), torchvision layout: "
                            "25,557,032 params")
def resnet50(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, **kw)


@register_model("resnet101", "ResNet-101 (Bottleneck [3,4,23,3]), torchvision layout: 44,549,160 params")
def resnet101(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, **kw)


@register_model("resnet152", "ResNet-152 (Bottleneck [3,8,36,3]), torchvision layout: 60,192,808 params")
def resnet152(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, **kw)


@register_model("se_resnet50", "SE-ResNet-50: ResNet-50 with squeeze-and-excitation (r=16) in every block: "
                               "28,088,024 params")
def se_resnet50(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    kw.setdefault("se_reduction", 16)
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, **kw)


@register_model("resnet18_small", "ResNet-18 for 28x28/32x32 images: 3x3/1 stem conv, no max pool "
                                  "(CIFAR-style): 11,173,962 params at 10 classes")
def resnet18_small(num_classes: int = 10, in_channels: int = 3, **kw) -> ResNet:
    kw.setdefault("small_input", True)
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, **kw)


@register_model("resnet_fmnist", "Small ResNet for Fashion-MNIST (28x28): 3x3 stem, BasicBlock [2,2,2] at "
                                 "widths 32/64/128 (28 -> 14 -> 7), GAP, FC: 696,042 params")
def resnet_fmnist(num_classes: int = 10, in_channels: int = 1, **kw) -> ResNet:
    kw.setdefault("small_input", True)
    kw.setdefault("widths", (32, 64, 128))
    return ResNet(BasicBlock, [2, 2, 2], num_classes, in_channels, **kw)
