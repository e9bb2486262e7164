"""LeNet-5 (LeCun, Bottou, Bengio, Haffner, Proc. IEEE 1998): the course version and the paper's.

``LeNet5`` is the "modern LeNet" of the courses: conv 6@5x5 -> ReLU -> max pool 2 -> conv 16@5x5 -> ReLU
-> max pool 2 -> FC 120 -> FC 84 -> FC classes, full connections. It takes 32x32 inputs, or 28x28 with
``input_size=28`` (the first conv is then padded by 2, as MNIST-sized images usually are).

``LeNet5Classic`` is the paper's network, for 32x32 inputs: every layer squashed by
``1.7159 tanh(2a/3)``; S2/S4 are trainable subsampling (2x2 sum times a per-map coefficient plus a bias);
C3 is the sparse 6 -> 16 connection table of the paper's Table I; F6 has 84 units; the output is the
Euclidean RBF layer with fixed +-1 centres. Trainable parameters: exactly 60,000.
"""

from __future__ import annotations

import numpy as np

import shendu
from shendu import functional as F
from shendu import nn
from shendu.errors import ArgumentError
from shendu.models._base import ZooModel
from shendu.models.registry import register_model

__all__ = ["LeNet5", "LeNet5Classic", "lenet5", "lenet5_28", "lenet5_classic"]


class LeNet5(ZooModel):
    """The course LeNet-5: ``(N, C, 32, 32)`` (or 28x28 with ``input_size=28``) -> ``(N, num_classes)``.

    >>> import shendu
    >>> LeNet5(10, in_channels=1)(shendu.randn(2, 1, 32, 32)).shape
    (2, 10)
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32):
        super().__init__()
        if input_size not in (28, 32):
            raise ArgumentError(f"LeNet5: input_size must be 32 (the paper) or 28 (MNIST-sized, padded "
                                f"conv1), got {input_size!r}")
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2 if input_size == 28 else 0)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


def _squash(a):
    """LeCun's scaled tanh ``1.7159 tanh(2a/3)`` (Appendix A of the paper)."""
    return F.tanh(a * (2.0 / 3.0)) * 1.7159


class _Subsampling(nn.Module):
    """S2/S4: the sum of each 2x2 block times a trainable per-map coefficient, plus a per-map bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(shendu.ones(channels))
        self.bias = nn.Parameter(shendu.zeros(channels))

    def forward(self, x):
        summed = F.avg_pool2d(x, 2) * 4.0
        return summed * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


# Table I of the paper: which S2 maps (rows 0-5) feed each C3 map (columns 0-15); 60 connections.
_C3_TABLE = [
    [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 0], [5, 0, 1],
    [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 0], [4, 5, 0, 1], [5, 0, 1, 2],
    [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5],
    [0, 1, 2, 3, 4, 5],
]


class _SparseC3(nn.Module):
    """C3: 16 maps of 5x5 kernels, each seeing only the S2 maps of Table I.

    The 60 kernels are stored compactly (``weight (60, 5, 5)``, 1,516 parameters with the bias) and
    scattered into a dense ``(16, 6, 5, 5)`` kernel by a fixed 0/1 matrix, so the gradient flows back to
    the 60 kernels only.
    """

    def __init__(self):
        super().__init__()
        pairs = [(out, inp) for out, ins in enumerate(_C3_TABLE) for inp in ins]
        place = np.zeros((16 * 6, len(pairs)), dtype=np.float32)
        for k, (out, inp) in enumerate(pairs):
            place[out * 6 + inp, k] = 1.0
        self.register_buffer("placement", shendu.tensor(place), persistent=False)
        bound = 1.0 / np.sqrt(3 * 25)  # fan-in of the smallest group, as the paper's U(-2.4/F, 2.4/F) scale
        self.weight = nn.Parameter(shendu.rand(len(pairs), 5, 5) * (2 * bound) - bound)
        self.bias = nn.Parameter(shendu.zeros(16))

    def forward(self, x):
        kernel = (self.placement.to(self.weight.dtype) @ self.weight.reshape(len(self.weight), 25))
        return F.conv2d(x, kernel.reshape(16, 6, 5, 5), self.bias)


class LeNet5Classic(ZooModel):
    """The paper's LeNet-5 for ``(N, C, 32, 32)`` inputs; returns ``-||f6 - centre_k||^2`` per class, so
    the largest value is the nearest RBF centre and the output can feed a cross-entropy loss.

    >>> import shendu
    >>> net = LeNet5Classic()
    >>> net(shendu.randn(2, 1, 32, 32)).shape
    (2, 10)
    >>> sum(p.numel() for p in net.parameters())
    60000
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 6, 5)
        self.s2 = _Subsampling(6)
        self.c3 = _SparseC3()
        self.s4 = _Subsampling(16)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        # The paper draws the centres as 7x12 bitmaps of the characters; random +-1 codes play that role.
        centres = np.where(np.random.default_rng(0).random((num_classes, 84)) < 0.5, -1.0, 1.0)
        self.register_buffer("rbf_centres", shendu.tensor(centres.astype(np.float32)))

    def forward(self, x):
        x = _squash(self.s2(_squash(self.c1(x))))
        x = _squash(self.s4(_squash(self.c3(x))))
        x = _squash(self.f6(_squash(self.c5(x)).flatten(1)))
        diff = x.unsqueeze(1) - self.rbf_centres.to(x.dtype).unsqueeze(0)
        return -(diff * diff).sum(-1)


@register_model("lenet5", "LeNet-5 as taught in courses (ReLU, max pool, full C3), 32x32 input")
def lenet5(num_classes: int = 10, in_channels: int = 1, **kw) -> LeNet5:
    return LeNet5(num_classes, in_channels, **kw)


@register_model("lenet5_28", "LeNet-5 (course version) for 28x28 input: conv1 padded by 2")
def lenet5_28(num_classes: int = 10, in_channels: int = 1, **kw) -> LeNet5:
    return LeNet5(num_classes, in_channels, input_size=28, **kw)


@register_model("lenet5_classic", "LeNet-5 of the 1998 paper: scaled tanh, trainable subsampling, sparse C3, "
                                  "RBF output; 60,000 params")
def lenet5_classic(num_classes: int = 10, in_channels: int = 1, **kw) -> LeNet5Classic:
    return LeNet5Classic(num_classes, in_channels, **kw)
