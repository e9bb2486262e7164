"""The row-by-row recurrent classifiers of the zoo, against torch with the same weights."""

import numpy as np
import pytest
import torch

import shendu
from shendu import models
from shendu.errors import ShapeError


@pytest.mark.parametrize("name, cell", [("gru_fmnist", torch.nn.GRU), ("lstm_fmnist", torch.nn.LSTM),
                                        ("rnn_fmnist", torch.nn.RNN)])
def test_row_classifier_matches_torch(name, cell):
    shendu.manual_seed(0)
    net = models.get_model(name, num_classes=10, in_channels=1, hidden_size=16)
    rnn_t, fc_t = cell(28, 16, batch_first=True), torch.nn.Linear(16, 10)
    state = {k: torch.from_numpy(v.data.copy()) for k, v in net.state_dict().items()}
    rnn_t.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")})
    fc_t.load_state_dict({k[3:]: v for k, v in state.items() if k.startswith("fc.")})
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    xs = shendu.tensor(x, requires_grad=True)
    out = net(xs)
    xt = torch.from_numpy(x).requires_grad_()
    _, h = rnn_t(xt[:, 0])
    ref = fc_t((h[0] if isinstance(h, tuple) else h)[-1])
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    cot = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    out.backward(shendu.tensor(cot))
    ref.backward(torch.from_numpy(cot))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_row_classifier_rejects_wrong_shapes():
    net = models.get_model("gru_fmnist", num_classes=10, in_channels=1, hidden_size=8)
    with pytest.raises(ShapeError, match=r"\(N, 1, H, W\)"):
        net(shendu.randn(2, 3, 28, 28))
    with pytest.raises(ShapeError, match="rows of 28 features"):
        net(shendu.randn(2, 1, 28, 20))
    with pytest.raises(ShapeError, match="in_channels"):
        models.get_model("gru_fmnist", num_classes=10, in_channels=3)
