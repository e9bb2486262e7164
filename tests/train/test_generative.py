"""KL / entropy utilities against SciPy and numerical integration, the Frechet distance against its closed
forms, and the generative-training helpers: grids, interpolation, latent maps, ELBO, the FID-like score."""

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats

import shendu
from shendu import nn, optim
from shendu.data import DataLoader, TensorDataset
from shendu.errors import ArgumentError, DataError, ShapeError
from shendu.models.gan import Discriminator, Generator
from shendu.models.vae import VAE
from shendu.train import divergence as dv
from shendu.train import generative as gen


def _dirichlet(rng, k, n=None):
    return rng.dirichlet(np.ones(k), size=n)


# --------------------------------------------------------------------------------------- divergences
def test_entropy_and_kl_match_scipy_and_a_loop():
    rng = np.random.default_rng(0)
    for k in (2, 3, 10):
        p, q = _dirichlet(rng, k), _dirichlet(rng, k)
        assert dv.entropy(p) == pytest.approx(stats.entropy(p), rel=1e-12)
        assert dv.kl_divergence(p, q) == pytest.approx(stats.entropy(p, q), rel=1e-12)
        assert dv.kl_divergence(p, q) == pytest.approx(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)), rel=1e-12)
        assert dv.cross_entropy(p, q) == pytest.approx(-sum(pi * math.log(qi) for pi, qi in zip(p, q)), rel=1e-12)
        assert dv.entropy(p, base=2) == pytest.approx(stats.entropy(p, base=2), rel=1e-12)


def test_cross_entropy_is_entropy_plus_kl():
    rng = np.random.default_rng(1)
    p, q = _dirichlet(rng, 7, 50), _dirichlet(rng, 7, 50)  # a batch of 50 pairs, along the last axis
    h, ce, kl = dv.entropy(p), dv.cross_entropy(p, q), dv.kl_divergence(p, q)
    assert h.shape == ce.shape == kl.shape == (50,)
    np.testing.assert_allclose(ce, h + kl, rtol=1e-12)
    assert (kl > 0).all()                                      # Gibbs' inequality
    assert not np.allclose(kl, dv.kl_divergence(q, p))          # not symmetric
    np.testing.assert_allclose(dv.kl_divergence(p, p), 0.0, atol=1e-15)
    np.testing.assert_allclose(dv.cross_entropy(p, p), h, rtol=1e-12)


def test_zero_probabilities():
    assert dv.entropy([1.0, 0.0]) == 0.0                           # 0 log 0 = 0
    assert dv.kl_divergence([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(math.log(2))
    assert dv.kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf  # P puts mass where Q has none
    assert dv.cross_entropy([0.5, 0.5], [1.0, 0.0]) == math.inf


def test_the_notes_cross_entropy_example():
    # loss -(1 log 0.3) = 1.20 before training, -(1 log 0.8) = 0.22 after
    assert dv.cross_entropy([1, 0, 0], [0.3, 0.4, 0.3]) == pytest.approx(1.204, abs=1e-3)
    assert dv.cross_entropy([1, 0, 0], [0.8, 0.1, 0.1]) == pytest.approx(0.223, abs=1e-3)


def test_divergence_errors():
    with pytest.raises(ArgumentError, match="must sum to 1"):
        dv.kl_divergence([0.5, 0.6], [0.5, 0.5])
    with pytest.raises(ArgumentError, match="non-negative"):
        dv.entropy([1.5, -0.5])
    with pytest.raises(ShapeError, match="scalar"):
        dv.entropy(1.0)
    with pytest.raises(ShapeError, match="do not broadcast"):
        dv.kl_divergence([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ArgumentError, match="standard deviations"):
        dv.gaussian_kl_1d(0.0, -1.0)


@pytest.mark.parametrize("mu1,s1,mu2,s2", [(0, 1, 0, 1), (1.0, 1.0, 0, 1), (0.3, 0.5, 0, 1), (-2.0, 3.0, 1.0, 0.7),
                                           (0.5, 0.1, 0.4, 2.0)])
def test_gaussian_kl_1d_against_numerical_integration(mu1, s1, mu2, s2):
    p, q = stats.norm(mu1, s1), stats.norm(mu2, s2)
    integrand = lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x))  # noqa: E731
    want, err = integrate.quad(integrand, mu1 - 40 * s1, mu1 + 40 * s1, points=[mu1], limit=200)
    assert dv.gaussian_kl_1d(mu1, s1, mu2, s2) == pytest.approx(want, abs=max(1e-9, 10 * err))
    # the notes' special case against N(0, 1): -log s1 + (s1^2 + mu1^2) / 2 - 1/2
    if (mu2, s2) == (0, 1):
        assert dv.gaussian_kl_1d(mu1, s1) == pytest.approx(-math.log(s1) + (s1 ** 2 + mu1 ** 2) / 2 - 0.5)


def test_gaussian_kl_1d_is_smallest_at_the_standard_normal():
    mu, s = np.meshgrid(np.linspace(-1, 1, 41), np.linspace(0.5, 1.5, 41))
    kl = dv.gaussian_kl_1d(mu, s)
    i = np.unravel_index(kl.argmin(), kl.shape)
    assert (mu[i], s[i]) == (0.0, 1.0) and kl[i] == 0.0 and (kl >= 0).all()


def test_gaussian_kl_mvn():
    rng = np.random.default_rng(2)
    m1, m2, s1, s2 = rng.standard_normal(4), rng.standard_normal(4), rng.random(4) + 0.2, rng.random(4) + 0.2
    # diagonal covariances: the sum of the 1-D divergences
    assert dv.gaussian_kl_mvn(m1, np.diag(s1 ** 2), m2, np.diag(s2 ** 2)) == pytest.approx(
        dv.gaussian_kl_1d(m1, s1, m2, s2).sum(), rel=1e-12)
    # against N(0, I): the VAE's closed form (the differentiable op in shendu.functional)
    logvar = np.log(s1 ** 2)
    op = shendu.gaussian_kl(shendu.tensor(m1[None]), shendu.tensor(logvar[None]), reduction="sum").item()
    assert dv.gaussian_kl_mvn(m1, np.diag(s1 ** 2), np.zeros(4), np.eye(4)) == pytest.approx(op, rel=1e-12)
    # full covariances: Monte-Carlo estimate of E_p[log p - log q]
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    c1, c2 = a @ a.T + np.eye(3), b @ b.T + np.eye(3)
    p, q = stats.multivariate_normal(m1[:3], c1), stats.multivariate_normal(m2[:3], c2)
    x = p.rvs(400_000, random_state=3)
    mc = np.mean(p.logpdf(x) - q.logpdf(x))
    assert dv.gaussian_kl_mvn(m1[:3], c1, m2[:3], c2) == pytest.approx(mc, rel=0.02)


def _spd(rng, k, rank=None):
    a = rng.standard_normal((k, rank or k))
    return a @ a.T + (0 if rank else 0.1 * np.eye(k))


def _sym_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_frechet_distance_against_closed_forms():
    rng = np.random.default_rng(4)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert dv.frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0, rel=1e-12)
    # commuting (diagonal) covariances: |m1 - m2|^2 + |sqrt(d1) - sqrt(d2)|^2
    d1, d2 = rng.random(6) + 0.1, rng.random(6) + 0.1
    m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert dv.frechet_distance(m1, np.diag(d1), m2, np.diag(d2)) == pytest.approx(want, rel=1e-10)
    # general: the symmetric form tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), square roots by eigendecomposition
    for k in (2, 5, 20):
        s1, s2 = _spd(rng, k), _spd(rng, k)
        r1 = _sym_sqrt(s1)
        want = np.trace(s1 + s2 - 2 * _sym_sqrt(r1 @ s2 @ r1))
        assert dv.frechet_distance(np.zeros(k), s1, np.zeros(k), s2) == pytest.approx(want, rel=1e-8, abs=1e-9)
        assert dv.frechet_distance(np.ones(k), s1, np.ones(k), s1) == pytest.approx(0.0, abs=1e-8)
    # rank-deficient covariances (fewer samples than features): sqrtm of the singular product warns and is
    # inaccurate, so eps I is added; the result still agrees with the symmetric form, and without a warning
    s1, s2 = _spd(rng, 8, rank=3), _spd(rng, 8, rank=3)
    r1 = _sym_sqrt(s1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fd = dv.frechet_distance(np.zeros(8), s1, np.zeros(8), s2)
    assert fd == pytest.approx(np.trace(s1 + s2 - 2 * _sym_sqrt(r1 @ s2 @ r1)), rel=1e-5)
    with pytest.raises(ShapeError, match="frechet_distance"):
        dv.frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


def test_frechet_distance_of_sample_statistics():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((20000, 3)), rng.standard_normal((20000, 3)) * 2 + 1
    fd = dv.frechet_distance(*dv.gaussian_stats(a), *dv.gaussian_stats(b))
    assert fd == pytest.approx(3 * 1.0 + 3 * 1.0, rel=0.03)  # |1|^2 per dim + (2 - 1)^2 per dim


# ---------------------------------------------------------------------------------------- image tools
def test_make_grid_places_images_and_maps_the_range():
    x = np.stack([np.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])  # three 2x3 images
    g = gen.make_grid(x, nrow=2, padding=1, value_range=(-1, 1), pad_value=0.5)
    assert g.shape == (2 * 3 + 1, 2 * 4 + 1)
    np.testing.assert_array_equal(g[1:3, 1:4], 0.0)   # -1 -> 0
    np.testing.assert_array_equal(g[1:3, 5:8], 0.5)   # 0 -> 0.5
    np.testing.assert_array_equal(g[4:6, 1:4], 1.0)   # 1 -> 1
    np.testing.assert_array_equal(g[4:6, 5:8], 0.5)   # the empty cell keeps the padding value
    assert g[0].tolist() == [0.5] * 9
    rgb = gen.make_grid(np.zeros((2, 3, 4, 4)), nrow=2)
    assert rgb.shape == (8, 14, 3)
    with pytest.raises(ShapeError):
        gen.make_grid(np.zeros((2, 2, 4, 4)))


def test_interpolation():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    lin = gen.interpolate_latents(a, b, 5, mode="linear")
    np.testing.assert_allclose(lin[[0, 2, 4]], [a, (a + b) / 2, b])
    b_scaled = b / np.linalg.norm(b) * np.linalg.norm(a)
    sl = gen.interpolate_latents(a, b_scaled, 7)
    np.testing.assert_allclose(sl[[0, -1]], [a, b_scaled], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(sl, axis=1), np.linalg.norm(a), rtol=1e-12)  # stays on the sphere
    pairs = gen.interpolate_latents(np.stack([a, b]), np.stack([b, a]), 3, mode="linear")
    assert pairs.shape == (6, 16)
    np.testing.assert_allclose(pairs[[0, 2, 3, 5]], [a, b, b, a])
    np.testing.assert_allclose(gen.interpolate_latents(a, 2 * a, 3), gen.interpolate_latents(a, 2 * a, 3, "linear"))
    with pytest.raises(ArgumentError, match="mode"):
        gen.interpolate_latents(a, b, 3, mode="cubic")


def test_latent_grid():
    z = gen.latent_grid(5, quantile=0.9)
    v = stats.norm.ppf(np.linspace(0.1, 0.9, 5))
    assert z.shape == (25, 2)
    np.testing.assert_allclose(z[:5, 0], v)              # first row: z1 left to right
    np.testing.assert_allclose(z[:5, 1], v[-1])          # at the top (largest z2)
    np.testing.assert_allclose(z[::5, 1], v[::-1])


def test_binarize():
    x = np.linspace(0, 1, 10001, dtype=np.float32).reshape(1, 1, 1, -1)
    t = gen.binarize(x, "threshold")
    assert t.dtype == np.float32 and set(np.unique(t)) == {0.0, 1.0} and t[..., 5000] == 0 and t[..., 5001] == 1
    b1 = gen.binarize(x, "bernoulli", shendu.Generator(0))
    np.testing.assert_array_equal(b1, gen.binarize(x, "bernoulli", shendu.Generator(0)))
    big = gen.binarize(np.full((200_000,), 0.3, np.float32), "bernoulli", shendu.Generator(1))
    assert abs(big.mean() - 0.3) < 0.005
    assert isinstance(gen.binarize(shendu.tensor(x), "threshold"), shendu.Tensor)
    with pytest.raises(ArgumentError):
        gen.binarize(x, "dither")


# ---------------------------------------------------------------------------------------- training
def test_vae_elbo_matches_the_loss_and_averages_samples():
    shendu.manual_seed(0)
    model = VAE(latent_dim=3, hidden=10)
    x = np.random.default_rng(7).random((12, 1, 28, 28)).astype(np.float32)
    res = gen.vae_elbo(model, x, batch_size=12, seed=5)
    eps = shendu.randn(12, 3, generator=shendu.Generator(5))  # the draws vae_elbo makes with seed 5
    with shendu.no_grad():
        logits, mu, logvar = model(shendu.tensor(x), eps)
        _, rec, kl = gen.vae_loss(logits, shendu.tensor(x), mu, logvar)
    assert res["recon"] == pytest.approx(rec.item(), rel=1e-5)
    assert res["kl"] == pytest.approx(kl.item(), rel=1e-5)
    assert res["elbo"] == pytest.approx(-(rec.item() + kl.item()), rel=1e-6)
    # batching does not change it (binarize='none' draws nothing but eps, in order)
    assert gen.vae_elbo(model, x, batch_size=12, seed=5)["elbo"] == res["elbo"]
    many = gen.vae_elbo(model, x, n_samples=200, seed=1)
    assert many["kl"] == pytest.approx(res["kl"], rel=1e-6)  # the KL is analytic
    assert abs(many["recon"] - res["recon"]) < 0.05 * res["recon"]
    binar = gen.vae_elbo(model, x, binarize_mode="threshold")
    assert binar["elbo"] != res["elbo"]


def test_vae_training_reduces_the_loss():
    shendu.manual_seed(1)
    rng = np.random.default_rng(8)
    protos = rng.random((3, 1, 28, 28)) > 0.6
    x = protos[rng.integers(0, 3, 96)].astype(np.float32)
    model = VAE(latent_dim=2, hidden=32)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(TensorDataset(x, np.zeros(96, np.int64)), batch_size=32, shuffle=True,
                        generator=shendu.Generator(0))
    before = gen.vae_elbo(model, x)["elbo"]
    figures, step = None, 0
    for _ in range(15):
        figures, step = gen.vae_train_epoch(model, opt, loader, step=step, log=None)
    assert step == 45 and set(figures) == {"loss", "recon", "kl"}
    after = gen.vae_elbo(model, x)["elbo"]
    assert after > before + 300  # 784 Bernoulli pixels start at ~log 2 each (-543 nats)
    _, stopped = gen.vae_train_epoch(model, opt, loader, max_steps=47, step=45, log=None)
    assert stopped == 47


def test_gan_train_epoch_runs_and_counts_steps():
    shendu.manual_seed(2)
    G, D = Generator(8, 4), Discriminator(4)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = np.random.default_rng(9).random((20, 1, 28, 28)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, np.zeros(20, np.int64)), batch_size=8, drop_last=True)
    lines = []
    figures, step = gen.gan_train_epoch(G, D, opt_g, opt_d, loader, step=3, log_every=1, log=lines.append)
    assert step == 5 and len(lines) == 2 and set(figures) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert all(np.isfinite(v) for v in figures.values()) and 0 < figures["d_real"] < 1


class _TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 6), nn.Tanh())
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_classifier_score():
    shendu.manual_seed(3)
    net = _TinyClassifier()
    rng = np.random.default_rng(10)
    real = rng.random((300, 1, 28, 28)).astype(np.float32)
    score = gen.ClassifierScore(net, mean=0.5, std=0.25, batch_size=64)
    feats, probs = score.features(real)
    with shendu.no_grad():
        x = shendu.tensor((real - 0.5) / 0.25)
        want_f = net.body(x).data
        want_p = shendu.softmax(net(x), dim=1).data
    np.testing.assert_allclose(feats, want_f, atol=5e-6)  # the input of the last Linear (float32, other batching)
    np.testing.assert_allclose(probs, want_p, atol=5e-6)
    with pytest.raises(DataError, match="set_reference"):
        score(real)
    score.set_reference(real)
    same = score(real)
    assert same["fid_like"] == pytest.approx(0.0, abs=1e-6)
    assert same["confidence"] == pytest.approx(probs.max(1).mean(), rel=1e-12)
    marginal = want_p.mean(0)
    is_like = math.exp(np.mean([stats.entropy(p, marginal) for p in want_p.astype(np.float64)]))
    assert same["is_like"] == pytest.approx(is_like, rel=1e-5) and 1 <= is_like <= 3
    shifted = score(np.clip(real + 0.3, 0, 1))
    assert shifted["fid_like"] > 0.01
    with pytest.raises(ArgumentError, match="no Linear"):
        gen.ClassifierScore(nn.Sequential(nn.Flatten())).features(real)


def test_train_save_and_load_classifier(tmp_path):
    x, y, classes = gen.load_images("digits", train=True)
    assert x.shape[1:] == (1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert len(classes) == 10 and len(y) == len(x)
    net, mean, std = gen.train_classifier(x[:256], y[:256], epochs=1, batch_size=64, max_steps=2)
    assert len(mean) == len(std) == 1 and mean[0] == pytest.approx(x[:256].mean(), rel=1e-5)
    gen.save_classifier(tmp_path / "clf", net, "cnn_fmnist", mean, std, classes)
    loaded, mean2, std2 = gen.load_classifier(tmp_path / "clf")
    assert (mean2, std2) == (mean, std)
    a = gen.ClassifierScore(net, mean, std).features(x[:20])
    b = gen.ClassifierScore(loaded, mean2, std2).features(x[:20])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(DataError, match="no checkpoint"):
        gen.load_classifier(tmp_path)
    with pytest.raises(ArgumentError, match="unknown dataset"):
        gen.load_images("cifar100", train=True)


def test_figures_are_written(tmp_path):
    x = np.random.default_rng(11).random((10, 1, 28, 28))
    assert gen.save_image_grid(x, tmp_path / "g.png", nrow=5, title="t").endswith("g.png")
    gen.plot_latent_scatter(np.random.default_rng(0).standard_normal((50, 2)), np.arange(50) % 10,
                            tmp_path / "s.png", class_names=[str(i) for i in range(10)])
    gen.plot_metrics({"epoch": [1, 2], "a": [1.0, 0.5], "b": [None, 2.0]}, [("A", ["a", "missing"]), ("B", ["b"])],
                     tmp_path / "m.png")
    for name in ("g.png", "s.png", "m.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
