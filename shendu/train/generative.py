"""Training generative models: the GAN and VAE losses and steps, their epoch loops, image grids, latent
interpolation and the 2-D latent map, the VAE's test-set ELBO, and an FID-like score.

GAN (Goodfellow et al. 2014, DCGAN recipe of Radford et al. 2016, one-sided label smoothing of Salimans
et al. 2016), with D returning logits:

- D loss ``BCEWithLogits(D(x), 0.9) + BCEWithLogits(D(G(z).detach()), 0)``: real targets smoothed to 0.9,
  fake targets kept at 0, and the fake batch **detached** so the D loss sends no gradient into G;
- G loss, non-saturating: ``BCEWithLogits(D(G(z)), 1)`` (the saturating ``log(1 - D(G(z)))`` has vanishing
  gradients while D wins easily, early in training);
- two optimizers, one D step then one G step per batch (Adam, lr 2e-4, betas (0.5, 0.999)).

VAE (Kingma & Welling 2014): loss ``BCEWithLogits(logits, x)`` **summed over pixels** plus
``beta * KL(q(z|x) || N(0, I))``, ``KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - log sigma_j^2 - 1)``, both
**averaged over the batch**. (A mean over pixels with a summed KL would weigh the KL ~784 times more,
which blurs the samples and pushes towards posterior collapse.) The ELBO is ``-(reconstruction + KL)``
per image, in nats; it is a lower bound on ``log p(x)`` only for binary data (``binarize='bernoulli'`` or
``'threshold'``), since Bernoulli probabilities of grey levels are not a normalised density.

FID-like score: the squared Frechet distance between Gaussians fitted to the **penultimate-layer
features of a Fashion-MNIST classifier trained with shendu** (the input of its last Linear layer) on
real test images and on generated images, plus the classifier's mean max-softmax confidence on the
generated images and an "IS-like" ``exp(E_x KL(p(y|x) || p(y)))``. This is *not* the Inception FID of
Heusel et al. (2017): the network, its feature size (128 for ``cnn_fmnist``) and the sample counts
differ, so the numbers are comparable only with each other (same classifier, same sample count).
"""

from __future__ import annotations

import json
import os

import numpy as np

import shendu
import shendu.functional as F
from shendu import nn
from shendu.autograd.engine import no_grad
from shendu.errors import ArgumentError, DataError, ShapeError
from shendu.train.divergence import frechet_distance, gaussian_stats, kl_divergence

__all__ = [
    "gan_d_loss", "gan_g_loss", "gan_step", "gan_train_epoch",
    "vae_loss", "vae_step", "vae_train_epoch", "binarize", "vae_elbo",
    "make_grid", "save_image_grid", "interpolate_latents", "latent_grid", "plot_latent_scatter", "plot_metrics",
    "ClassifierScore", "train_classifier", "save_classifier", "load_classifier", "classifier_score_for",
    "load_images", "write_metrics",
]


# ------------------------------------------------------------------------------------------------ GAN
def gan_d_loss(d_real, d_fake, real_label: float = 0.9):
    """``BCEWithLogits(d_real, real_label) + BCEWithLogits(d_fake, 0)``, each a mean over the batch.

    ``real_label=0.9`` is one-sided label smoothing; the fake target stays 0 (smoothing it hurts).

    >>> import shendu
    >>> round(gan_d_loss(shendu.tensor([0.0]), shendu.tensor([0.0]), 1.0).item(), 4)  # 2 log 2
    1.3863
    """
    return (F.binary_cross_entropy_with_logits(d_real, shendu.full_like(d_real, real_label))
            + F.binary_cross_entropy_with_logits(d_fake, shendu.zeros_like(d_fake)))


def gan_g_loss(d_fake):
    """The non-saturating generator loss ``BCEWithLogits(D(G(z)), 1) = -mean log sigmoid(D(G(z)))``."""
    return F.binary_cross_entropy_with_logits(d_fake, shendu.ones_like(d_fake))


def gan_step(G, D, opt_g, opt_d, real, z, real_label: float = 0.9) -> dict:
    """One D step then one G step on a batch of real images (scaled to [-1, 1]) and noise ``z``.

    The same fake batch ``G(z)`` serves both steps: detached for D, attached for G (which then sees the
    D just updated). During the G step D's parameters are frozen, so its backward computes only the
    gradient G needs; D's BN layers still run in training mode (batch statistics), as in the DCGAN code.
    Returns the two losses and the mean probabilities D gave real and fake images (before its update).
    """
    fake = G(z)
    d_real, d_fake = D(real), D(fake.detach())  # detached: the D loss must not reach G
    loss_d = gan_d_loss(d_real, d_fake, real_label)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()

    trainable = [p for p in D.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        loss_g = gan_g_loss(D(fake))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    finally:
        for p in trainable:  # only those we froze: a layer the caller froze stays frozen
            p.requires_grad_(True)
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
            "d_real": float(F.sigmoid(d_real.detach()).mean().item()),
            "d_fake": float(F.sigmoid(d_fake.detach()).mean().item())}


def _images(batch):
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return x if isinstance(x, shendu.Tensor) else shendu.tensor(np.asarray(x, dtype=np.float32))


def _run_epoch(loader, step_fn, max_steps, step, log_every, log) -> tuple[dict, int]:
    """Drive ``step_fn(x) -> dict of floats`` over the loader; mean of each figure, and the step counter."""
    sums, count = {}, 0
    if max_steps is not None and step >= max_steps:
        return sums, step
    for batch in loader:
        figures = step_fn(_images(batch))
        step += 1
        count += 1
        for k, v in figures.items():
            sums[k] = sums.get(k, 0.0) + v
        if log is not None and log_every and count % log_every == 0:
            log(f"  step {step}: " + ", ".join(f"{k} {v / count:.4f}" for k, v in sums.items()))
        if max_steps is not None and step >= max_steps:
            break  # before the loader hands out a batch that would not be used
    return {k: v / max(count, 1) for k, v in sums.items()}, step


def gan_train_epoch(G, D, opt_g, opt_d, loader, real_label: float = 0.9, max_steps: int | None = None,
                    step: int = 0, log_every: int = 0, log=print) -> tuple[dict, int]:
    """One pass over ``loader`` (images in [0, 1], rescaled here to [-1, 1]); noise from shendu's RNG.

    Returns ``(mean figures of the epoch, step)``; stops early once ``step`` reaches ``max_steps``.
    """
    G.train(), D.train()

    def one(x):
        z = shendu.randn(x.shape[0], G.latent_dim, dtype=x.dtype)
        return gan_step(G, D, opt_g, opt_d, x * 2 - 1, z, real_label)
    return _run_epoch(loader, one, max_steps, step, log_every, log)


# ------------------------------------------------------------------------------------------------ VAE
def vae_loss(logits, x, mu, logvar, beta: float = 1.0):
    """``(loss, reconstruction, kl)``: BCE-with-logits summed over pixels and averaged over the batch, the
    closed-form Gaussian KL summed over latent dims and averaged over the batch, ``loss = rec + beta kl``.

    >>> import shendu
    >>> x = shendu.full((2, 1, 2, 2), 0.5)
    >>> loss, rec, kl = vae_loss(shendu.zeros(2, 1, 2, 2), x, shendu.zeros(2, 3), shendu.zeros(2, 3))
    >>> round(rec.item(), 4), kl.item()  # 4 pixels of log 2; q(z|x) = N(0, I) costs nothing
    (2.7726, 0.0)
    """
    if logits.shape != x.shape:
        raise ShapeError(f"vae_loss: logits {tuple(logits.shape)} and images {tuple(x.shape)} must have one shape")
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kl = F.gaussian_kl(mu, logvar, reduction="mean")
    return rec + beta * kl, rec, kl


def binarize(x, mode: str = "none", generator=None):
    """``'none'``: x as it is; ``'threshold'``: ``x > 0.5``; ``'bernoulli'``: one Bernoulli(x) draw per pixel
    (from ``generator``, or shendu's RNG). Works on Tensors and arrays; the result keeps the dtype."""
    if mode == "none":
        return x
    data = np.asarray(getattr(x, "data", x))
    if mode == "threshold":
        out = (data > 0.5).astype(data.dtype)
    elif mode == "bernoulli":
        out = (shendu.backend.rng(generator).random(data.shape, dtype=np.float64) < data).astype(data.dtype)
    else:
        raise ArgumentError(f"binarize: mode must be 'none', 'threshold' or 'bernoulli', got {mode!r}")
    return shendu.tensor(out) if isinstance(x, shendu.Tensor) else out


def vae_step(model, optimizer, x, beta: float = 1.0, eps=None) -> dict:
    """One optimizer step on the VAE loss of batch ``x`` (targets in [0, 1]); returns the figures as floats."""
    logits, mu, logvar = model(x, eps)
    loss, rec, kl = vae_loss(logits, x, mu, logvar, beta)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "recon": rec.item(), "kl": kl.item()}


def vae_train_epoch(model, optimizer, loader, beta: float = 1.0, binarize_mode: str = "none",
                    max_steps: int | None = None, step: int = 0, log_every: int = 0, log=print) -> tuple[dict, int]:
    """One pass over ``loader`` (images in [0, 1]); ``'bernoulli'`` draws a fresh binarisation per batch."""
    model.train()
    return _run_epoch(loader, lambda x: vae_step(model, optimizer, binarize(x, binarize_mode), beta),
                      max_steps, step, log_every, log)


def vae_elbo(model, images, binarize_mode: str = "none", n_samples: int = 1, batch_size: int = 500,
             seed: int = 0) -> dict:
    """The mean ELBO per image over ``images`` (float (N, C, H, W) in [0, 1]), in nats:
    ``ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))``, the expectation estimated with ``n_samples`` draws
    of z per image. The binarisation and the draws come from a generator seeded with ``seed``, so the
    figure is the same at every call for the same weights. Returns ``elbo``, ``recon``, ``kl``.
    """
    gen = shendu.Generator(seed)
    was_training = model.training
    model.eval()
    rec_sum = kl_sum = 0.0
    try:
        with no_grad():
            for i in range(0, len(images), batch_size):
                x = shendu.tensor(binarize(np.asarray(images[i:i + batch_size], np.float32), binarize_mode, gen))
                mu, logvar = model.encode(x)
                kl = 0.5 * (mu.data ** 2 + np.exp(logvar.data) - logvar.data - 1)
                kl_sum += float(kl.sum(dtype=np.float64))
                for _ in range(n_samples):
                    eps = shendu.randn(*mu.shape, generator=gen, dtype=mu.dtype)
                    logits = model.decode(model.reparameterize(mu, logvar, eps))
                    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
                    rec_sum += float(rec.item()) / n_samples
    finally:
        model.train(was_training)
    n = len(images)
    return {"elbo": -(rec_sum + kl_sum) / n, "recon": rec_sum / n, "kl": kl_sum / n}


# --------------------------------------------------------------------------------------------- images
def make_grid(images, nrow: int = 8, padding: int = 2, value_range: tuple = (0.0, 1.0), pad_value: float = 1.0):
    """Tile ``images`` (N, C, H, W) (C = 1 or 3) into one float image in [0, 1]: ``(rows, cols)`` for grey,
    ``(rows, cols, 3)`` for colour; ``nrow`` images per row, like ``torchvision.utils.make_grid``.
    ``value_range`` is mapped to [0, 1] for all images at once (no per-image stretching).

    >>> make_grid(np.zeros((5, 1, 4, 4)), nrow=3, padding=1).shape
    (11, 16)
    """
    x = np.asarray(getattr(images, "data", images), dtype=np.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ShapeError(f"make_grid: expected images (N, 1 or 3, H, W), got shape {x.shape}")
    lo, hi = value_range
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    n, c, h, w = x.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value, np.float32)
    r, q = np.divmod(np.arange(n), cols)
    for i in range(n):  # one copy per image: N is the size of a figure, not of the data
        top, left = padding + r[i] * (h + padding), padding + q[i] * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_image_grid(images, path, nrow: int = 8, value_range: tuple = (0.0, 1.0), title: str | None = None) -> str:
    """:func:`make_grid` saved as a PNG (grey images in greyscale); returns the path."""
    from shendu.train.plots import _plt, _save
    grid = make_grid(images, nrow, value_range=value_range)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(2.0, grid.shape[1] / 40), max(2.0, grid.shape[0] / 40)))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def interpolate_latents(z0, z1, steps: int = 8, mode: str = "slerp") -> np.ndarray:
    """Points from ``z0`` to ``z1`` (both ``(d,)``, or ``(P, d)`` pairs): ``(steps, d)`` or ``(P * steps, d)``,
    pair after pair. ``'linear'``: ``(1 - t) z0 + t z1``; ``'slerp'`` (default; White 2016): along the great
    circle, which keeps the norm typical of a Gaussian sample where the straight line passes near 0.

    >>> interpolate_latents(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 3).round(4).tolist()
    [[1.0, 0.0], [0.7071, 0.7071], [0.0, 1.0]]
    """
    a, b = np.atleast_2d(np.asarray(z0, np.float64)), np.atleast_2d(np.asarray(z1, np.float64))
    if a.shape != b.shape or a.ndim != 2:
        raise ShapeError(f"interpolate_latents: z0 {np.shape(z0)} and z1 {np.shape(z1)} must both be (d,) or (P, d)")
    if steps < 2:
        raise ArgumentError(f"interpolate_latents: steps must be >= 2, got {steps}")
    t = np.linspace(0.0, 1.0, steps)[None, :, None]  # (1, steps, 1)
    a3, b3 = a[:, None], b[:, None]
    if mode == "linear":
        out = (1 - t) * a3 + t * b3
    elif mode == "slerp":
        cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        omega = np.arccos(np.clip(cos, -1.0, 1.0))[:, None, None]
        so = np.sin(omega)
        near = so < 1e-6  # (anti)parallel: the great circle is not defined, the straight line is
        so = np.where(near, 1.0, so)
        out = np.where(near, (1 - t) * a3 + t * b3,
                       np.sin((1 - t) * omega) / so * a3 + np.sin(t * omega) / so * b3)
    else:
        raise ArgumentError(f"interpolate_latents: mode must be 'linear' or 'slerp', got {mode!r}")
    out = out.reshape(-1, a.shape[1])
    return out if np.ndim(z0) == 2 else out.reshape(steps, -1)


def latent_grid(n: int = 15, quantile: float = 0.95) -> np.ndarray:
    """``(n * n, 2)`` points of a 2-D latent space at the Gaussian quantiles ``linspace(1-q, q, n)`` on each
    axis (so they cover the prior evenly in probability), row by row from the top (largest z2) down: decode
    them and tile with ``make_grid(..., nrow=n)`` for the map of the learned manifold."""
    from scipy.stats import norm
    if n < 2 or not 0.5 < quantile < 1:
        raise ArgumentError(f"latent_grid: need n >= 2 and 0.5 < quantile < 1, got n={n}, quantile={quantile}")
    v = norm.ppf(np.linspace(1 - quantile, quantile, n))
    z1, z2 = np.meshgrid(v, v[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1)


def plot_latent_scatter(mu, labels, path, class_names=None) -> str:
    """The posterior means ``mu (N, 2)`` of a 2-D VAE, coloured by class."""
    from shendu.train.plots import _plt, _save
    m, y = np.asarray(mu), np.asarray(labels)
    if m.ndim != 2 or m.shape[1] != 2:
        raise ShapeError(f"plot_latent_scatter: expected 2-D latents (N, 2), got shape {m.shape}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sc = ax.scatter(m[:, 0], m[:, 1], c=y, cmap="tab10", s=3, alpha=0.6)
    cb = fig.colorbar(sc, ax=ax, ticks=range(int(y.max()) + 1))
    if class_names is not None:
        cb.ax.set_yticklabels(list(class_names)[:int(y.max()) + 1], fontsize=7)
    ax.set_xlabel("z1 (posterior mean)"), ax.set_ylabel("z2"), ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_metrics(history: dict, panels: list, path) -> str:
    """Side-by-side panels of per-epoch curves: ``panels`` is a list of ``(title, [keys])``; keys absent from
    ``history`` (a dict of lists, with ``'epoch'``) are skipped."""
    from shendu.train.plots import _plt, _save
    epochs = history.get("epoch") or list(range(1, 1 + max(len(v) for v in history.values())))
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            values = history.get(key)
            if values and any(v is not None for v in values):
                ax.plot(epochs[:len(values)], [np.nan if v is None else v for v in values], marker="o", ms=3, label=key)
        ax.set_title(title), ax.set_xlabel("epoch"), ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(fig, path)


# ------------------------------------------------------------------------------------ the FID-like score
def _last_linear(model) -> nn.Linear:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ArgumentError(f"ClassifierScore: {type(model).__name__} has no Linear layer to take features before")
    return last


class ClassifierScore:
    """The FID-like score and the confidence of generated images, judged by a trained classifier.

    ``classifier`` maps normalised images ``(x - mean) / std`` (x in [0, 1]) to logits; its features are
    the input of its last Linear layer. Call :meth:`set_reference` once with real images, then the object
    on generated images (in [0, 1]): ``{'fid_like', 'confidence', 'is_like'}``.
    """

    def __init__(self, classifier, mean=0.0, std=1.0, batch_size: int = 500):
        self.classifier = classifier
        self.mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        self.batch_size = batch_size
        self.reference = None

    def features(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features ``(N, F)`` (float64) and class probabilities ``(N, classes)`` of images in [0, 1]."""
        x = np.asarray(getattr(images, "data", images), dtype=np.float32)
        grabbed = []
        handle = _last_linear(self.classifier).register_forward_pre_hook(lambda m, args: grabbed.append(args[0].data))
        was_training = self.classifier.training
        self.classifier.eval()
        feats, probs = [], []
        try:
            with no_grad():
                for i in range(0, len(x), self.batch_size):
                    logits = self.classifier(shendu.tensor((x[i:i + self.batch_size] - self.mean) / self.std))
                    probs.append(F.softmax(logits, dim=1).numpy().astype(np.float64))
                    feats.append(grabbed.pop().reshape(logits.shape[0], -1).astype(np.float64))
        finally:
            handle.remove()
            self.classifier.train(was_training)
        return np.concatenate(feats), np.concatenate(probs)

    def set_reference(self, images) -> "ClassifierScore":
        """Fit the Gaussian of the real images' features (e.g. the whole test split)."""
        self.reference = gaussian_stats(self.features(images)[0])
        return self

    def __call__(self, images) -> dict:
        if self.reference is None:
            raise DataError("ClassifierScore: call set_reference(real_images) first")
        feats, probs = self.features(images)
        mu, sigma = gaussian_stats(feats)
        marginal = probs.mean(axis=0, keepdims=True)
        marginal = marginal / marginal.sum()
        rows = probs / probs.sum(axis=1, keepdims=True)
        return {"fid_like": frechet_distance(mu, sigma, *self.reference),
                "confidence": float(probs.max(axis=1).mean()),
                "is_like": float(np.exp(kl_divergence(rows, np.broadcast_to(marginal, rows.shape)).mean()))}


def train_classifier(images, labels, model: str = "cnn_fmnist", epochs: int = 1, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, max_steps: int | None = None, progress=False):
    """Train a zoo classifier on ``images`` (N, C, H, W) in [0, 1] normalised with their own mean and std.

    Returns ``(model, mean, std)`` (per-channel lists), ready for :class:`ClassifierScore`.
    """
    from shendu import models, optim
    from shendu.data import DataLoader, TensorDataset
    from shendu.train.loop import fit

    x = np.asarray(images, np.float32)
    mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    xn = (x - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
    y = np.asarray(labels, np.int64)
    shendu.manual_seed(seed)
    net = models.get_model(model, num_classes=int(y.max()) + 1, in_channels=x.shape[1])
    loader = DataLoader(TensorDataset(xn, y), batch_size=batch_size, shuffle=True, generator=shendu.Generator(seed))
    fit(net, loader, epochs=epochs, optimizer=optim.Adam(net.parameters(), lr=lr), progress=progress,
        max_steps=max_steps)
    net.eval()
    return net, mean.tolist(), std.tolist()


def save_classifier(path, classifier, model_name: str, mean, std, classes=None) -> None:
    """A checkpoint folder that :func:`load_classifier` (and ``shendu eval``'s loader) can read back."""
    from shendu.train.checkpoint import save_checkpoint
    norm = {"mean": list(mean), "std": list(std), "classes": list(classes or []),
            "channels": len(list(mean))}
    save_checkpoint(path, classifier, config={"model": model_name, "normalization": norm})


def load_classifier(path) -> tuple:
    """``(model, mean, std)`` from a checkpoint folder written by :func:`save_classifier`, or from a run
    folder of ``shendu train`` (classification; its ``checkpoints/best`` or ``checkpoints/last``)."""
    from shendu import models
    from shendu.train.checkpoint import load_checkpoint
    path = os.fspath(path)
    folder = path
    if not os.path.exists(os.path.join(path, "state.json")):
        for name in ("best", "last"):
            cand = os.path.join(path, "checkpoints", name)
            if os.path.exists(os.path.join(cand, "state.json")):
                folder = cand
                break
        else:
            raise DataError(f"load_classifier: no checkpoint in {path!r} (expected state.json, or a run folder "
                            "with checkpoints/best or checkpoints/last)")
    with open(os.path.join(folder, "state.json"), encoding="utf-8") as f:
        cfg = json.load(f).get("config") or {}
    if not cfg.get("model") and os.path.exists(os.path.join(path, "config.json")):
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    norm = cfg.get("normalization")
    if not cfg.get("model") or not norm:
        raise DataError(f"load_classifier: {folder!r} does not record the model name and input normalization")
    net = models.get_model(cfg["model"], num_classes=max(len(norm.get("classes") or []), 10),
                           in_channels=int(norm.get("channels") or len(norm["mean"])))
    load_checkpoint(folder, net, restore_rng=False)
    net.eval()
    return net, norm["mean"], norm["std"]


def classifier_score_for(run_dir, classifier_path, train_images, train_labels, test_images, test_labels,
                         n_samples: int, epochs: int = 2, seed: int = 0, log=print) -> tuple:
    """The :class:`ClassifierScore` of a run, ready to score ``n_samples`` generated images at a time.

    The classifier comes from ``classifier_path`` (see :func:`load_classifier`); without one, from
    ``run_dir/fid_classifier`` if an earlier run trained it, else a ``cnn_fmnist`` is trained for ``epochs``
    epochs on the training images and saved there. The reference Gaussian is fitted to the features of
    all test images. Returns ``(score, info)``; ``info`` holds the classifier's test accuracy and
    ``fid_like_real``, the score of ``n_samples`` real *training* images: the floor that sampling noise
    alone gives at this sample count.
    """
    own = os.path.join(os.fspath(run_dir), "fid_classifier")
    if classifier_path is None and os.path.exists(os.path.join(own, "state.json")):
        classifier_path = own
    if classifier_path is not None:
        net, mean, std = load_classifier(classifier_path)
        log(f"FID-like score: classifier from {os.fspath(classifier_path)}")
    else:
        log(f"FID-like score: training a cnn_fmnist classifier for {epochs} epoch(s) on {len(train_images)} images")
        net, mean, std = train_classifier(train_images, train_labels, epochs=epochs, seed=seed)
        save_classifier(own, net, "cnn_fmnist", mean, std)
    score = ClassifierScore(net, mean, std)
    feats, probs = score.features(test_images)
    score.reference = gaussian_stats(feats)
    pick = np.random.default_rng(seed).choice(len(train_images), min(n_samples, len(train_images)), replace=False)
    info = {"classifier_accuracy": float((probs.argmax(1) == np.asarray(test_labels)).mean()),
            "fid_like_real": score(train_images[np.sort(pick)])["fid_like"]}
    log(f"FID-like score: classifier test accuracy {info['classifier_accuracy']:.4f}; {len(pick)} real training "
        f"images score {info['fid_like_real']:.3f} against the test set (the floor at this sample count)")
    return score, info


def write_metrics(run_dir, history: dict) -> str:
    """Rewrite ``run_dir/metrics.jsonl`` (one JSON object per epoch) from a dict of lists, atomically, so that
    it always agrees with the history stored in the last checkpoint."""
    from shendu.io.atomic import atomic_write
    keys = list(history)
    n = max((len(v) for v in history.values()), default=0)
    lines = [json.dumps({k: history[k][i] for k in keys if i < len(history[k])}) for i in range(n)]
    path = os.path.join(os.fspath(run_dir), "metrics.jsonl")
    atomic_write(path, ("\n".join(lines) + "\n" if lines else "").encode())
    return path


# ----------------------------------------------------------------------------------------------- data
def load_images(name: str, train: bool, root=None) -> tuple:
    """``(images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,), class names)`` of a 28x28 dataset:
    ``fashion-mnist``, ``mnist``, or ``digits`` (scikit-learn's embedded 8x8 digits, each pixel repeated
    3x3 and padded by 2 to 28x28, for tests and demos without downloads)."""
    from shendu.data import datasets
    if name == "fashion-mnist":
        ds = datasets.FashionMNIST(root, train=train)
    elif name == "mnist":
        ds = datasets.MNIST(root, train=train)
    elif name == "digits":
        ds = datasets.Digits(train=train)
    else:
        raise ArgumentError(f"load_images: unknown dataset {name!r}; choose fashion-mnist, mnist or digits")
    x = ds.images
    if name == "digits":
        x = np.pad(x.repeat(3, axis=2).repeat(3, axis=3), ((0, 0), (0, 0), (2, 2), (2, 2)))
    classes = tuple(getattr(ds, "classes", ())) or tuple(str(i) for i in range(10))
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(ds.targets, np.int64), classes

