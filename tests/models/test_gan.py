"""DCGAN for 28x28: shapes, the DCGAN initialisation, errors, and one full training iteration (a D step,
then a G step) against the same networks and optimizers in PyTorch with the same weights and noise."""

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import shendu
from shendu import nn, optim
from shendu.errors import ArgumentError, ShapeError
from shendu.models.gan import Discriminator, Generator, dcgan_init_
from shendu.train.generative import gan_d_loss, gan_g_loss, gan_step


def torch_generator(latent_dim, width, channels=1):
    g = tnn.Module()
    g.net = tnn.Sequential(
        tnn.ConvTranspose2d(latent_dim, 2 * width, 7, 1, 0, bias=False), tnn.BatchNorm2d(2 * width), tnn.ReLU(),
        tnn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), tnn.BatchNorm2d(width), tnn.ReLU(),
        tnn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), tnn.Tanh())
    g.forward = lambda z: g.net(z.reshape(z.shape[0], -1, 1, 1))
    return g


def torch_discriminator(width, channels=1):
    d = tnn.Module()
    d.net = tnn.Sequential(
        tnn.Conv2d(channels, width, 4, 2, 1, bias=False), tnn.LeakyReLU(0.2),
        tnn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), tnn.BatchNorm2d(2 * width), tnn.LeakyReLU(0.2),
        tnn.Conv2d(2 * width, 1, 7, 1, 0, bias=False))
    d.forward = lambda x: d.net(x).reshape(-1)
    return d


def copy_to_torch(shendu_model, torch_model):
    state = {k: torch.from_numpy(np.array(v.data)) for k, v in shendu_model.state_dict().items()}
    result = torch_model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_shapes_and_parameter_counts():
    shendu.manual_seed(0)
    G, D = Generator(), Discriminator()
    z = shendu.randn(3, 100)
    x = G(z)
    assert x.shape == (3, 1, 28, 28)
    assert float(np.abs(x.data).max()) < 1.0  # tanh output
    assert D(x).shape == (3,)
    # 100*128*49 + 128*64*16 + 64*1*16 weights, BN scales and shifts 2*(128 + 64)
    assert sum(p.numel() for p in G.parameters()) == 627_200 + 131_072 + 1_024 + 384
    assert sum(p.numel() for p in D.parameters()) == 1_024 + 131_072 + 6_272 + 256
    with torch.device("meta"):
        assert sum(p.numel() for p in torch_generator(100, 64).parameters()) == 759_680
        assert sum(p.numel() for p in torch_discriminator(64).parameters()) == 138_624


def test_dcgan_initialisation_statistics():
    shendu.manual_seed(1)
    G, D = Generator(), Discriminator()
    w = G.net[0].weight.data  # 627,200 draws of N(0, 0.02)
    assert abs(w.mean()) < 2e-4 and abs(w.std() - 0.02) < 2e-4
    w = D.net[2].weight.data  # 131,072 draws
    assert abs(w.mean()) < 3e-4 and abs(w.std() - 0.02) < 3e-4
    bn = np.concatenate([G.net[1].weight.data, G.net[4].weight.data, D.net[3].weight.data])
    assert abs(bn.mean() - 1) < 0.01 and 0.01 < bn.std() < 0.03  # N(1, 0.02), 320 draws
    assert not np.any(G.net[1].bias.data) and not np.any(D.net[3].bias.data)
    lin = dcgan_init_(nn.Linear(500, 400))
    assert abs(lin.weight.data.std() - 0.02) < 3e-4 and not np.any(lin.bias.data)


def test_errors():
    G, D = Generator(latent_dim=8, width=4), Discriminator(width=4)
    with pytest.raises(ShapeError, match=r"Generator: expected noise of shape \(N, 8\)"):
        G(shendu.randn(2, 9))
    with pytest.raises(ShapeError, match="Discriminator: expected images"):
        D(shendu.randn(2, 1, 32, 32))
    with pytest.raises(ArgumentError, match="width must be a positive integer"):
        Generator(width=0)
    with pytest.raises(ArgumentError, match="channels"):
        Discriminator(channels=1.5)


def test_losses_match_torch_formulas():
    rng = np.random.default_rng(0)
    dr, df = rng.standard_normal(7).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    got_d = gan_d_loss(shendu.tensor(dr), shendu.tensor(df), 0.9).item()
    tr, tf = torch.from_numpy(dr), torch.from_numpy(df)
    want_d = (TF.binary_cross_entropy_with_logits(tr, torch.full_like(tr, 0.9))
              + TF.binary_cross_entropy_with_logits(tf, torch.zeros_like(tf))).item()
    assert got_d == pytest.approx(want_d, rel=1e-6)
    # non-saturating: -mean log sigmoid(d_fake)
    want_g = float(np.mean(np.log1p(np.exp(-df.astype(np.float64)))))
    assert gan_g_loss(shendu.tensor(df)).item() == pytest.approx(want_g, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gan_step_matches_torch(dtype):
    """Two iterations of (D step, G step) with Adam(2e-4, betas (0.5, 0.999)): losses, every parameter and
    every BN running statistic of both networks equal PyTorch's."""
    latent, width, n = 12, 6, 5
    shendu.manual_seed(3)
    G, D = Generator(latent, width), Discriminator(width)
    Gt, Dt = torch_generator(latent, width), torch_discriminator(width)
    copy_to_torch(G, Gt), copy_to_torch(D, Dt)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    G.to(dtype), D.to(dtype), Gt.to(tdtype), Dt.to(tdtype)
    opt_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    topt_g = torch.optim.Adam(Gt.parameters(), lr=2e-4, betas=(0.5, 0.999))
    topt_d = torch.optim.Adam(Dt.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(4)
    for _ in range(2):
        real = (rng.random((n, 1, 28, 28)) * 2 - 1).astype(dtype)
        z = rng.standard_normal((n, latent)).astype(dtype)
        got = gan_step(G, D, opt_g, opt_d, shendu.tensor(real), shendu.tensor(z), real_label=0.9)

        fake = Gt(torch.from_numpy(z))
        d_real, d_fake = Dt(torch.from_numpy(real)), Dt(fake.detach())
        loss_d = (TF.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, 0.9))
                  + TF.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        topt_d.zero_grad(), loss_d.backward(), topt_d.step()
        out = Dt(fake)
        loss_g = TF.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        topt_g.zero_grad(), loss_g.backward(), topt_g.step()

        tol = 1e-10 if dtype == np.float64 else 1e-5
        assert got["loss_d"] == pytest.approx(loss_d.item(), rel=tol)
        assert got["loss_g"] == pytest.approx(loss_g.item(), rel=tol)
        assert got["d_real"] == pytest.approx(torch.sigmoid(d_real).mean().item(), rel=tol)
    # After two Adam steps every weight moved by about 2 lr = 4e-4; float32 round-off can only flip the sign
    # of an update whose gradient is ~eps, so float32 gets one update's worth of slack on rare entries.
    for mine, theirs in ((G, Gt), (D, Dt)):
        want = theirs.state_dict()
        for key, value in mine.state_dict().items():
            a, b = np.asarray(value.data).astype(np.float64), want[key].detach().numpy().astype(np.float64)
            if dtype == np.float64:
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=key)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-6, err_msg=key)


class _Spy(optim.Adam):
    """Adam that runs ``check`` before each step."""

    def __init__(self, params, check, **kw):
        super().__init__(params, **kw)
        self.check = check

    def step(self, closure=None):
        self.check()
        return super().step(closure)


def test_fake_batch_is_detached_in_the_d_step():
    shendu.manual_seed(5)
    G, D = Generator(8, 4), Discriminator(4)
    seen = {}

    def d_check():  # right after the D loss's backward: G must not have a gradient from it
        seen["g_grads"] = [p.grad for p in G.parameters()]
        seen["d_has_grads"] = all(p.grad is not None for p in D.parameters())

    def g_check():  # right after the G loss's backward: G has gradients, D's parameters were frozen
        seen["g_has_grads"] = all(p.grad is not None and np.any(p.grad.data) for p in G.parameters())
        seen["d_trainable_during_g"] = any(p.requires_grad for p in D.parameters())

    opt_d = _Spy(D.parameters(), d_check, lr=2e-4, betas=(0.5, 0.999))
    opt_g = _Spy(G.parameters(), g_check, lr=2e-4, betas=(0.5, 0.999))
    gan_step(G, D, opt_g, opt_d, shendu.rand(4, 1, 28, 28) * 2 - 1, shendu.randn(4, 8))
    assert all(g is None for g in seen["g_grads"])
    assert seen["d_has_grads"] and seen["g_has_grads"]
    assert not seen["d_trainable_during_g"]
    assert all(p.requires_grad for p in D.parameters())  # unfrozen again afterwards


def test_a_layer_the_caller_froze_stays_frozen():
    shendu.manual_seed(6)
    G, D = Generator(8, 4), Discriminator(4)
    D.net[0].weight.requires_grad_(False)
    opt_d = optim.Adam([p for p in D.parameters() if p.requires_grad], lr=2e-4)
    opt_g = optim.Adam(G.parameters(), lr=2e-4)
    before = np.array(D.net[0].weight.data)
    gan_step(G, D, opt_g, opt_d, shendu.rand(4, 1, 28, 28) * 2 - 1, shendu.randn(4, 8))
    assert not D.net[0].weight.requires_grad and D.net[2].weight.requires_grad
    np.testing.assert_array_equal(D.net[0].weight.data, before)
