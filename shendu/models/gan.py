"""DCGAN (Radford, Metz, Chintala, ICLR 2016) sized for 28x28 images such as Fashion-MNIST.

The generator is all transposed convolutions: ``z (N, latent_dim)`` is read as a 1x1 image and grown
1x1 -> 7x7 -> 14x14 -> 28x28, with batch norm and ReLU between the layers and tanh at the end (so the
data must be scaled to [-1, 1]). The discriminator mirrors it with stride-2 convolutions 28 -> 14 -> 7,
LeakyReLU(0.2), batch norm on every layer but the first (the DCGAN recipe), and a 7x7 convolution to one
logit per image; it returns logits, so the losses are ``binary_cross_entropy_with_logits`` (see
:mod:`shendu.train.generative`). :func:`dcgan_init_` draws the weights of the paper: conv weights
N(0, 0.02), batch-norm scales N(1, 0.02), biases 0.

At ``width=64``, ``latent_dim=100``: generator 759,680 parameters (83% in the first layer), discriminator
138,624.

>>> import shendu
>>> G, D = Generator(latent_dim=16, width=8), Discriminator(width=8)
>>> x = G(shendu.randn(4, 16))
>>> x.shape, D(x).shape
((4, 1, 28, 28), (4,))
"""

from __future__ import annotations

from shendu import nn
from shendu.errors import ArgumentError, ShapeError, fmt_shape

__all__ = ["Generator", "Discriminator", "dcgan_init_"]


def _positive(layer: str, **sizes) -> None:
    for name, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ArgumentError(f"{layer}: {name} must be a positive integer, got {v!r}")


def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN initialisation, in place: every (transposed) convolution and linear weight N(0, 0.02), batch-norm
    weight N(1, 0.02), all biases 0. Use as ``model.apply(dcgan_init_)``; returns ``module``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    return module


class Generator(nn.Module):
    """``z (N, latent_dim)`` -> images ``(N, channels, 28, 28)`` in (-1, 1).

    ConvT(latent, 2w, 7) 1->7, BN, ReLU; ConvT(2w, w, 4, s2, p1) 7->14, BN, ReLU;
    ConvT(w, channels, 4, s2, p1) 14->28, tanh. No biases (the BN that follows has one; tanh's input
    does not need one in the DCGAN recipe).
    """

    def __init__(self, latent_dim: int = 100, width: int = 64, channels: int = 1):
        super().__init__()
        _positive("Generator", latent_dim=latent_dim, width=width, channels=channels)
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 2 * width, 7, 1, 0, bias=False),  # 1x1 -> 7x7
            nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),      # 7x7 -> 14x14
            nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False),       # 14x14 -> 28x28
            nn.Tanh(),
        )
        self.apply(dcgan_init_)

    def forward(self, z):
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ShapeError(f"Generator: expected noise of shape (N, {self.latent_dim}), got {fmt_shape(z.shape)}")
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class Discriminator(nn.Module):
    """Images ``(N, channels, 28, 28)`` -> one logit per image ``(N,)`` (positive means "real").

    Conv(channels, w, 4, s2, p1) 28->14, LeakyReLU 0.2; Conv(w, 2w, 4, s2, p1) 14->7, BN, LeakyReLU 0.2;
    Conv(2w, 1, 7) 7->1.
    """

    def __init__(self, width: int = 64, channels: int = 1):
        super().__init__()
        _positive("Discriminator", width=width, channels=channels)
        self.channels = channels
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1, bias=False),  # 28 -> 14; no BN on the input layer (DCGAN)
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),  # 14 -> 7
            nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 7, 1, 0, bias=False),  # 7 -> 1: the logit
        )
        self.apply(dcgan_init_)

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, 28, 28):
            raise ShapeError(f"Discriminator: expected images (N, {self.channels}, 28, 28), got {fmt_shape(x.shape)}; "
                             "scale 28x28 data to [-1, 1] like the generator's output")
        return self.net(x).reshape(-1)
