"""GoogLeNet / Inception v1 (Szegedy et al., CVPR 2015), torchvision's layout and keys.

Stem: conv 7x7/2 64 -> max pool 3x3/2 -> conv 1x1 64 -> conv 3x3 192 -> max pool 3x3/2; then Inception
modules 3a, 3b, pool, 4a-4e, pool, 5a, 5b; global average pool -> dropout -> FC. Every conv is
torchvision's ``BasicConv2d`` (conv without bias -> BN eps 1e-3 -> ReLU), which stands in for the paper's
LRN layers. Differences from the paper kept for weight compatibility with torchvision: the "5x5" branch
uses a 3x3 kernel (torchvision's known quirk; ``paper_5x5=True`` builds real 5x5 kernels), the last pool
before 5a is 2x2/2, the dropout before the classifier is 0.2 (paper: 0.4).

Auxiliary classifiers (``aux_logits=True``) sit on 4a (512 ch) and 4d (528 ch): adaptive avg pool 4x4 ->
BasicConv2d 1x1 128 -> FC 2048->1024 + ReLU -> dropout 0.7 -> FC classes. They run only in training, where
``forward`` returns ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``; the training loss is
``main + 0.3 * (aux1 + aux2)`` (:func:`googlenet_loss`). In eval mode ``forward`` returns the logits alone.
Without aux classifiers: 6,624,904 parameters (13,004,888 with them) at 1000 classes.
"""

from __future__ import annotations

from collections import namedtuple

import shendu
from shendu import functional as F
from shendu import nn
from shendu.errors import ArgumentError
from shendu.models._base import ZooModel
from shendu.models.registry import register_model

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "Inception", "InceptionAux", "BasicConv2d", "googlenet",
           "googlenet_loss"]

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

AUX_WEIGHT = 0.3  # weight of each auxiliary loss in the paper's training loss


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm2d(eps=1e-3) -> ReLU."""

    fuse_pairs = (("conv", "bn"),)

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> "5x5" | max pool 3x3/1 -> 1x1.
    Output channels ``ch1x1 + ch3x3 + ch5x5 + pool_proj``; the spatial size is kept."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, paper_5x5: bool = False):
        super().__init__()
        k5 = 5 if paper_5x5 else 3
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=k5, padding=k5 // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        return shendu.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: avg pool to 4x4 -> 1x1 conv 128 -> FC 1024 + ReLU -> dropout -> FC."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)


class GoogLeNet(ZooModel):
    """GoogLeNet: ``(N, C, H, W)``, H, W >= 32 (224 native) -> ``(N, num_classes)`` in eval mode.

    ``transform_input`` re-normalises inputs prepared for ImageNet mean/std into the [-1, 1] range
    torchvision's original weights expect (only meaningful with 3 channels).

    >>> import shendu
    >>> net = GoogLeNet(10, aux_logits=False).eval()
    >>> net(shendu.randn(1, 3, 32, 32)).shape
    (1, 10)
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 transform_input: bool = False, init_weights: bool = True, dropout: float = 0.2,
                 dropout_aux: float = 0.7, paper_5x5: bool = False):
        super().__init__()
        if transform_input and in_channels != 3:
            raise ArgumentError(f"GoogLeNet: transform_input re-normalises RGB ImageNet inputs and needs "
                                f"in_channels=3, got in_channels={in_channels}")
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        p5 = {"paper_5x5": paper_5x5}
        self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32, **p5)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64, **p5)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64, **p5)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64, **p5)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64, **p5)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64, **p5)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128, **p5)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128, **p5)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128, **p5)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        if init_weights:  # torchvision: truncated normal std 0.01 for convs and linears, BN 1/0
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def _transform_input(self, x):
        scale = shendu.tensor([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], dtype=x.dtype).reshape(1, 3, 1, 1)
        shift = shendu.tensor([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5],
                              dtype=x.dtype).reshape(1, 3, 1, 1)
        return x * scale + shift

    def forward(self, x):
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        with_aux = self.aux1 is not None and self.training
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        return GoogLeNetOutputs(x, aux2, aux1) if with_aux else x


def googlenet_loss(outputs, target, criterion=None):
    """The paper's training loss: ``criterion(logits) + 0.3 * (criterion(aux1) + criterion(aux2))``.

    ``outputs`` is what :class:`GoogLeNet` returns: a ``GoogLeNetOutputs`` in training (aux terms added
    when present) or plain logits. ``criterion`` defaults to ``F.cross_entropy``.
    """
    criterion = criterion or F.cross_entropy
    if not isinstance(outputs, GoogLeNetOutputs):
        return criterion(outputs, target)
    loss = criterion(outputs.logits, target)
    for aux in (outputs.aux_logits1, outputs.aux_logits2):
        if aux is not None:
            loss = loss + AUX_WEIGHT * criterion(aux, target)
    return loss


@register_model("googlenet", "GoogLeNet / Inception v1, torchvision layout; aux classifiers on by default "
                             "(training only, weight 0.3); 6,624,904 params without aux")
def googlenet(num_classes: int = 1000, in_channels: int = 3, **kw) -> GoogLeNet:
    return GoogLeNet(num_classes, in_channels, **kw)
