"""VAEs: shapes, the reparameterisation, errors, and the loss (BCE-with-logits summed over pixels plus the
Gaussian KL, both averaged over the batch) and its gradients against PyTorch with the same weights and eps."""

import math

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import shendu
from shendu.errors import ArgumentError, ShapeError
from shendu.models.vae import VAE, ConvVAE
from shendu.train.generative import vae_loss


class TorchVAE(tnn.Module):
    def __init__(self, latent, hidden, d=784):
        super().__init__()
        self.fc1 = tnn.Linear(d, hidden)
        self.fc_mu, self.fc_logvar = tnn.Linear(hidden, latent), tnn.Linear(hidden, latent)
        self.fc3, self.fc4 = tnn.Linear(latent, hidden), tnn.Linear(hidden, d)

    def forward(self, x, eps):
        h = TF.relu(self.fc1(x.flatten(1)))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.fc4(TF.relu(self.fc3(z))).reshape(x.shape), mu, logvar


class TorchConvVAE(tnn.Module):
    def __init__(self, latent, width, hidden, size=28):
        super().__init__()
        flat = 2 * width * (size // 4) ** 2
        self.inner = (2 * width, size // 4, size // 4)
        self.encoder = tnn.Sequential(tnn.Conv2d(1, width, 4, 2, 1), tnn.ReLU(), tnn.Conv2d(width, 2 * width, 4, 2, 1),
                                      tnn.ReLU(), tnn.Flatten(), tnn.Linear(flat, hidden), tnn.ReLU())
        self.fc_mu, self.fc_logvar = tnn.Linear(hidden, latent), tnn.Linear(hidden, latent)
        self.decoder_fc = tnn.Sequential(tnn.Linear(latent, hidden), tnn.ReLU(), tnn.Linear(hidden, flat), tnn.ReLU())
        self.decoder = tnn.Sequential(tnn.ConvTranspose2d(2 * width, width, 4, 2, 1), tnn.ReLU(),
                                      tnn.ConvTranspose2d(width, 1, 4, 2, 1))

    def forward(self, x, eps):
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decoder(self.decoder_fc(z).reshape(-1, *self.inner)), mu, logvar


def torch_loss(logits, x, mu, logvar, beta):
    # PyTorch's examples/vae: BCE(reduction='sum') + KLD, here divided by the batch size
    rec = TF.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / x.shape[0]
    return rec + beta * kld, rec, kld


def _pair(make_shendu, make_torch, dtype):
    shendu.manual_seed(0)
    model = make_shendu()
    ref = make_torch()
    ref.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in model.state_dict().items()}, strict=True)
    model.to(dtype)
    ref.to(torch.float64 if dtype == np.float64 else torch.float32)
    return model, ref


CASES = {
    "mlp": (lambda: VAE(latent_dim=3, hidden=17), lambda: TorchVAE(3, 17)),
    "conv": (lambda: ConvVAE(latent_dim=3, width=4, hidden=9), lambda: TorchConvVAE(3, 4, 9)),
}


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_loss_and_gradients_match_torch(kind, dtype, beta):
    model, ref = _pair(*CASES[kind], dtype)
    rng = np.random.default_rng(1)
    x = rng.random((5, 1, 28, 28)).astype(dtype)
    x[0] = (x[0] > 0.5)  # a binarized image among grey ones
    eps = rng.standard_normal((5, 3)).astype(dtype)

    logits, mu, logvar = model(shendu.tensor(x), eps=shendu.tensor(eps))
    loss, rec, kl = vae_loss(logits, shendu.tensor(x), mu, logvar, beta=beta)
    loss.backward()
    t_logits, t_mu, t_logvar = ref(torch.from_numpy(x), torch.from_numpy(eps))
    t_loss, t_rec, t_kl = torch_loss(t_logits, torch.from_numpy(x), t_mu, t_logvar, beta)
    t_loss.backward()

    rtol = 1e-10 if dtype == np.float64 else 2e-5
    for got, want in ((loss, t_loss), (rec, t_rec), (kl, t_kl)):
        assert got.item() == pytest.approx(want.item(), rel=rtol)
    np.testing.assert_allclose(logits.data, t_logits.detach().numpy(), rtol=rtol, atol=rtol)
    grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        want = grads[name].grad.numpy()
        np.testing.assert_allclose(p.grad.data, want, rtol=rtol * 10, atol=rtol * 10 * float(np.abs(want).max()),
                                   err_msg=name)


def test_reparameterisation_is_mu_plus_sigma_eps():
    mu = shendu.tensor([[0.5, -1.0]], requires_grad=True)
    logvar = shendu.tensor([[math.log(4.0), 0.0]], requires_grad=True)
    z = VAE.reparameterize(mu, logvar, shendu.tensor([[1.0, 2.0]]))
    np.testing.assert_allclose(z.data, [[2.5, 1.0]], rtol=1e-6)  # mu + sqrt(var) * eps
    z.sum().backward()
    np.testing.assert_allclose(mu.grad.data, [[1.0, 1.0]])
    np.testing.assert_allclose(logvar.grad.data, [[0.5 * 2.0 * 1.0, 0.5 * 1.0 * 2.0]], rtol=1e-6)  # sigma eps / 2
    # drawn eps: the sample mean and std of z follow mu and sigma
    shendu.manual_seed(0)
    zs = VAE.reparameterize(shendu.full((20000, 1), 3.0), shendu.full((20000, 1), math.log(0.25))).data
    assert abs(zs.mean() - 3.0) < 0.02 and abs(zs.std() - 0.5) < 0.02


def test_shapes_sampling_and_reconstruction():
    shendu.manual_seed(0)
    for model in (VAE(latent_dim=2, hidden=8), ConvVAE(latent_dim=2, width=2, hidden=8)):
        x = shendu.rand(3, 1, 28, 28)
        logits, mu, logvar = model(x)
        assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 2)
        s = model.sample(4, generator=shendu.Generator(0)).data
        assert s.shape == (4, 1, 28, 28) and s.min() > 0 and s.max() < 1
        np.testing.assert_array_equal(s, model.sample(4, generator=shendu.Generator(0)).data)
        r = model.reconstruct(x).data
        mu_only = model.decode(model.encode(x)[0]).sigmoid().data
        np.testing.assert_allclose(r, mu_only)
    assert sum(p.numel() for p in VAE().parameters()) == 652_824  # PyTorch examples/vae at latent 20
    assert ConvVAE(size=16)(shendu.rand(2, 1, 16, 16))[0].shape == (2, 1, 16, 16)


def test_errors():
    with pytest.raises(ShapeError, match=r"VAE: expected images \(N, 1, 28, 28\)"):
        VAE()(shendu.rand(2, 784))
    with pytest.raises(ArgumentError, match="multiple of 4"):
        ConvVAE(size=30)
    with pytest.raises(ArgumentError, match="latent_dim must be a positive integer"):
        VAE(latent_dim=0)
    with pytest.raises(ShapeError, match="vae_loss"):
        vae_loss(shendu.zeros(2, 1, 28, 28), shendu.zeros(2, 784), shendu.zeros(2, 2), shendu.zeros(2, 2))
