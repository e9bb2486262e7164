"""Variational auto-encoders (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014).

The encoder maps an image to the mean ``mu`` and the **log-variance** ``logvar`` of a diagonal Gaussian
q(z|x) (log-variance so that the variance stays positive without a constraint); the reparameterisation
``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``, makes the sample a differentiable function of
``mu`` and ``logvar``; the decoder maps z to **logits** of Bernoulli pixel probabilities (so the loss is
``binary_cross_entropy_with_logits``, stable at any logit; see :func:`shendu.train.generative.vae_loss`).

- :class:`VAE`: the MLP of the paper and of PyTorch's example, 784 -> 400 -> (mu, logvar) and
  z -> 400 -> 784 (652,824 parameters at latent_dim=20).
- :class:`ConvVAE`: two stride-2 convolutions 28 -> 14 -> 7, a hidden layer, and the mirror image with
  transposed convolutions.

>>> import shendu
>>> vae = VAE(latent_dim=2)
>>> logits, mu, logvar = vae(shendu.rand(5, 1, 28, 28))
>>> logits.shape, mu.shape, logvar.shape
((5, 1, 28, 28), (5, 2), (5, 2))
"""

from __future__ import annotations

import math

import shendu
from shendu import nn
from shendu.errors import ArgumentError, ShapeError, fmt_shape

__all__ = ["VAE", "ConvVAE"]


def _positive(layer: str, **sizes) -> None:
    for name, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ArgumentError(f"{layer}: {name} must be a positive integer, got {v!r}")


class _VariationalAutoencoder(nn.Module):
    """What every VAE shares: reparameterisation, forward, sampling and reconstruction. Subclasses define
    ``encode(x) -> (mu, logvar)`` and ``decode(z) -> logits`` and set ``latent_dim`` and ``image_shape``."""

    latent_dim: int
    image_shape: tuple

    def _check(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ShapeError(f"{type(self).__name__}: expected images (N, {', '.join(map(str, self.image_shape))}), "
                             f"got {fmt_shape(x.shape)}")

    @staticmethod
    def reparameterize(mu, logvar, eps=None):
        """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` (drawn from shendu's RNG unless given)."""
        if eps is None:
            eps = shendu.randn(*mu.shape, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * eps

    def forward(self, x, eps=None):
        """``(logits, mu, logvar)``: the decoder's logits at one sample ``z`` of q(z|x) (``eps`` fixes the noise)."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar, eps)), mu, logvar

    def reconstruct(self, x):
        """Pixel probabilities decoded from the posterior mean ``mu`` (the deterministic reconstruction)."""
        mu, _ = self.encode(x)
        return self.decode(mu).sigmoid()

    def sample(self, n: int, generator=None):
        """``n`` images (pixel probabilities) decoded from ``z ~ N(0, I)``."""
        p = next(self.parameters())
        return self.decode(shendu.randn(n, self.latent_dim, generator=generator, dtype=p.dtype)).sigmoid()


class VAE(_VariationalAutoencoder):
    """MLP VAE: ``x`` flattened -> Linear(D, hidden) -> ReLU -> two heads Linear(hidden, latent) for mu and
    logvar; decoder Linear(latent, hidden) -> ReLU -> Linear(hidden, D) -> logits reshaped to the image."""

    def __init__(self, latent_dim: int = 20, hidden: int = 400, image_shape: tuple = (1, 28, 28)):
        super().__init__()
        _positive("VAE", latent_dim=latent_dim, hidden=hidden)
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        d = math.prod(self.image_shape)
        self.fc1 = nn.Linear(d, hidden)
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden)
        self.fc4 = nn.Linear(hidden, d)

    def encode(self, x):
        self._check(x)
        h = self.fc1(x.flatten(1)).relu()
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        return self.fc4(self.fc3(z).relu()).reshape(z.shape[0], *self.image_shape)


class ConvVAE(_VariationalAutoencoder):
    """Convolutional VAE for ``(channels, size, size)`` images, ``size`` a multiple of 4.

    Encoder: Conv(c, w, 4, s2, p1) -> ReLU -> Conv(w, 2w, 4, s2, p1) -> ReLU -> Linear(2w (size/4)^2, hidden)
    -> ReLU -> heads for mu and logvar. Decoder: Linear(latent, hidden) -> ReLU -> Linear(hidden, 2w (size/4)^2)
    -> ReLU -> ConvT(2w, w, 4, s2, p1) -> ReLU -> ConvT(w, c, 4, s2, p1) -> logits.
    """

    def __init__(self, latent_dim: int = 20, width: int = 32, hidden: int = 256, channels: int = 1, size: int = 28):
        super().__init__()
        _positive("ConvVAE", latent_dim=latent_dim, width=width, hidden=hidden, channels=channels, size=size)
        if size % 4:
            raise ArgumentError(f"ConvVAE: size must be a multiple of 4 (two stride-2 layers), got {size}")
        self.latent_dim, self.image_shape = latent_dim, (channels, size, size)
        self._inner = (2 * width, size // 4, size // 4)
        flat = math.prod(self._inner)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(inplace=True),
        )
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder_fc = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, flat), nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
        )

    def encode(self, x):
        self._check(x)
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        return self.decoder(self.decoder_fc(z).reshape(z.shape[0], *self._inner))
