"""Loss layers and the losses' documented behaviours: torch's modules give the same values and
gradients, the notes' SVM example, the y - t gradient, stability at extreme logits, regularizers,
and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shendu
from shendu import nn
from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError

F = shendu.functional
rng = np.random.default_rng(3)


def _probs(*shape):
    e = np.exp(rng.normal(size=shape))
    return e / e.sum(1, keepdims=True)


W7 = rng.uniform(0.5, 2, 7)
# (module name, constructor kwargs, input, target); weights are given to both libraries as tensors
CASES = [
    ("CrossEntropyLoss", {}, rng.normal(size=(5, 7)), rng.integers(0, 7, 5)),
    ("CrossEntropyLoss", {"weight": W7, "ignore_index": 1, "label_smoothing": 0.1},
     rng.normal(size=(5, 7)), np.array([1, 3, 1, 6, 0])),
    ("CrossEntropyLoss", {"reduction": "none"}, rng.normal(size=(2, 7, 3, 4)), rng.integers(0, 7, (2, 3, 4))),
    ("CrossEntropyLoss", {"label_smoothing": 0.2}, rng.normal(size=(5, 7)), _probs(5, 7)),
    ("NLLLoss", {"weight": W7, "reduction": "sum"}, rng.normal(size=(5, 7)), rng.integers(0, 7, 5)),
    ("MultiMarginLoss", {"p": 2, "margin": 0.7, "weight": W7}, rng.normal(size=(5, 7)), rng.integers(0, 7, 5)),
    ("BCELoss", {"weight": rng.uniform(0.5, 2, 7)}, rng.uniform(0.05, 0.95, (5, 7)), rng.uniform(0, 1, (5, 7))),
    ("BCEWithLogitsLoss", {"pos_weight": rng.uniform(0.5, 3, 7), "reduction": "sum"},
     rng.normal(size=(5, 7)) * 4, rng.uniform(0, 1, (5, 7))),
    ("MSELoss", {}, rng.normal(size=(4, 3)), rng.normal(size=(4, 3))),
    ("MSELoss", {"size_average": False}, rng.normal(size=(4, 3)), rng.normal(size=(4, 3))),
    ("MSELoss", {"reduce": False}, rng.normal(size=(4, 3)), rng.normal(size=(4, 3))),
    ("L1Loss", {"reduction": "sum"}, rng.normal(size=(4, 3)), rng.normal(size=(4, 3))),
    ("SmoothL1Loss", {"beta": 0.5}, rng.normal(size=(4, 3)), rng.normal(size=(4, 3))),
    ("HuberLoss", {"delta": 0.5, "reduction": "none"}, rng.normal(size=(4, 3)), rng.normal(size=(4, 3))),
    ("KLDivLoss", {"reduction": "batchmean"}, np.log(_probs(4, 5)), _probs(4, 5)),
    ("KLDivLoss", {"reduction": "sum", "log_target": True}, np.log(_probs(4, 5)), np.log(_probs(4, 5))),
]


def _module(lib, name, kwargs):
    kw = {k: (lib.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    if lib is shendu:
        kw = {k: (v.double() if isinstance(v, shendu.Tensor) else v) for k, v in kw.items()}
        return getattr(nn, name)(**kw)
    return getattr(torch.nn, name)(**kw)


@pytest.mark.parametrize("name,kwargs,x,t", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_loss_module_matches_torch(name, kwargs, x, t):
    xs = shendu.tensor(x, dtype=shendu.float64, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    ts, tt = shendu.tensor(t), torch.tensor(t)
    ls, lt = _module(shendu, name, kwargs)(xs, ts), _module(torch, name, kwargs)(xt, tt)
    assert ls.shape == tuple(lt.shape)
    np.testing.assert_allclose(ls.data, lt.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.normal(size=ls.shape)
    ls.backward(shendu.tensor(g, dtype=shendu.float64))
    lt.backward(torch.tensor(g))
    np.testing.assert_allclose(xs.grad.data, xt.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,kwargs,x,t", CASES[:9], ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES[:9])])
def test_loss_module_is_the_functional(name, kwargs, x, t):
    fn = {"CrossEntropyLoss": F.cross_entropy, "NLLLoss": F.nll_loss, "MultiMarginLoss": F.multi_margin_loss,
          "BCELoss": F.binary_cross_entropy, "BCEWithLogitsLoss": F.binary_cross_entropy_with_logits,
          "MSELoss": F.mse_loss}[name]
    kw = {k: (shendu.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    xs, ts = shendu.tensor(x), shendu.tensor(t)
    if name == "MultiMarginLoss":
        want = fn(xs, ts, kw["p"], kw["margin"], kw["weight"])
    else:
        want = fn(xs, ts, **kw)
    np.testing.assert_array_equal(getattr(nn, name)(**kw)(xs, ts).data, want.data)


# ------------------------------------------------------------------------------------ the notes' SVM
# The notes list scores with one column per example: cat/car/frog rows, examples labelled cat, car, frog.
NOTES_SCORES = np.array([[3.2, 1.3, 2.2],
                         [5.1, 4.9, 2.5],
                         [-1.7, 2.0, -3.1]])
NOTES_LABELS = np.array([0, 1, 2])  # cat, car, frog


def test_svm_loss_reproduces_the_notes_example():
    scores = shendu.tensor(NOTES_SCORES.T, dtype=shendu.float64)  # one row per example
    per_example = F.svm_loss(scores, shendu.tensor(NOTES_LABELS), reduction="none")
    np.testing.assert_allclose(per_example.data, [2.9, 0.0, 12.9], atol=1e-12)
    np.testing.assert_allclose(F.multiclass_hinge_loss(scores, shendu.tensor(NOTES_LABELS)).item(),
                               (2.9 + 0.0 + 12.9) / 3, atol=1e-12)
    # torch divides by the number of classes C = 3
    np.testing.assert_allclose(F.multi_margin_loss(scores, shendu.tensor(NOTES_LABELS), reduction="none").data,
                               np.array([2.9, 0.0, 12.9]) / 3, atol=1e-12)
    np.testing.assert_allclose(nn.MultiClassHingeLoss(reduction="sum")(scores, shendu.tensor(NOTES_LABELS)).item(),
                               15.8, atol=1e-12)


def test_svm_gradient_follows_the_counting_rule():
    # +1 for every wrong class with a positive margin, minus their count on the true class (per example)
    scores = shendu.tensor(NOTES_SCORES.T, dtype=shendu.float64, requires_grad=True)
    F.svm_loss(scores, shendu.tensor(NOTES_LABELS), reduction="sum").backward()
    np.testing.assert_array_equal(scores.grad.data, [[-1, 1, 0], [0, 0, 0], [1, 1, -2]])


def test_hinge_margin_exactly_zero_is_inactive():
    s = shendu.tensor([[1.0, 0.0, -5.0]], requires_grad=True)  # 0 - 1 + 1 = 0: not a violation
    F.svm_loss(s, shendu.tensor([0])).backward()
    assert s.grad.tolist() == [[0.0, 0.0, 0.0]]


# ------------------------------------------------------------------------------------- cross-entropy
def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    z = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, 6)
    x = shendu.tensor(z, dtype=shendu.float64, requires_grad=True)
    F.cross_entropy(x, shendu.tensor(y)).backward()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(x.grad.data, (p - np.eye(4)[y]) / 6, rtol=1e-12, atol=1e-15)


def test_cross_entropy_equals_nll_of_log_softmax():
    z, y = shendu.tensor(rng.normal(size=(2, 5, 3))), shendu.tensor(rng.integers(0, 5, (2, 3)))
    np.testing.assert_allclose(F.cross_entropy(z, y).item(), F.nll_loss(F.log_softmax(z, 1), y).item(), rtol=1e-6)


def test_cross_entropy_weighted_mean_divides_by_the_weights_of_counted_targets():
    z = rng.normal(size=(4, 3))
    y = np.array([0, 2, -100, 2])
    w = np.array([0.5, 1.0, 3.0])
    got = F.cross_entropy(shendu.tensor(z), shendu.tensor(y), weight=shendu.tensor(w)).item()
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    keep = y != -100
    want = -(w[y[keep]] * logp[keep, y[keep]]).sum() / w[y[keep]].sum()
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_label_smoothing_spreads_eps_over_all_classes():
    z = rng.normal(size=(3, 4))
    y = np.array([1, 0, 3])
    eps = 0.1
    got = F.cross_entropy(shendu.tensor(z), shendu.tensor(y), label_smoothing=eps).item()
    soft = (1 - eps) * np.eye(4)[y] + eps / 4
    want = F.cross_entropy(shendu.tensor(z), shendu.tensor(soft)).item()
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_cross_entropy_extreme_logits_are_finite():
    x = shendu.tensor([[1000.0, -1000.0, 0.0]], requires_grad=True)
    loss = F.cross_entropy(x, shendu.tensor([1]))
    np.testing.assert_allclose(loss.item(), 2000.0)
    loss.backward()
    np.testing.assert_allclose(x.grad.data, [[1.0, -1.0, 0.0]], atol=1e-6)


def test_cross_entropy_float32_stays_float32():
    x = shendu.randn(4, 5, requires_grad=True)
    for t, kw in [(shendu.tensor([0, 1, 2, 3]), {"weight": shendu.ones(5, dtype=shendu.float64)}),
                  (shendu.tensor(_probs(4, 5), dtype=shendu.float32), {"label_smoothing": 0.1})]:
        loss = F.cross_entropy(x, t, **kw)
        assert loss.dtype == np.float32
        loss.backward()
        assert x.grad.dtype == np.float32


# ----------------------------------------------------------------------------------------------- BCE
def test_bce_with_logits_is_stable_at_extreme_logits():
    x = shendu.tensor([100.0, -100.0, 1000.0, -1000.0], requires_grad=True)
    t = shendu.tensor([0.0, 1.0, 1.0, 0.0])
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(loss.data, [100.0, 100.0, 0.0, 0.0], atol=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.data, [1.0, -1.0, 0.0, 0.0], atol=1e-6)  # sigmoid(x) - t


def test_bce_clamps_the_log_at_minus_100():
    loss = F.binary_cross_entropy(shendu.tensor([0.0, 1.0]), shendu.tensor([1.0, 0.0]), reduction="none")
    np.testing.assert_array_equal(loss.data, [100.0, 100.0])


def test_bce_rejects_values_outside_0_1():
    with pytest.raises(ArgumentError, match=r"probabilities in \[0, 1\].*binary_cross_entropy_with_logits"):
        nn.BCELoss()(shendu.tensor([0.2, -0.1]), shendu.tensor([1.0, 0.0]))


# ------------------------------------------------------------------------------------------------- KL
def test_kl_div_batchmean_is_the_true_kl():
    p, q = _probs(3, 4), _probs(3, 4)
    got = F.kl_div(shendu.tensor(np.log(q)), shendu.tensor(p), reduction="batchmean").item()
    np.testing.assert_allclose(got, (p * np.log(p / q)).sum(1).mean(), rtol=1e-6)
    mean = F.kl_div(shendu.tensor(np.log(q)), shendu.tensor(p)).item()  # 'mean' divides by all 12 elements
    np.testing.assert_allclose(mean, got * 3 / 12, rtol=1e-6)


def test_kl_div_zero_target_contributes_zero():
    loss = F.kl_div(shendu.tensor([[-1.0, -2.0]]), shendu.tensor([[0.0, 1.0]]), reduction="sum")
    np.testing.assert_allclose(loss.item(), 2.0)


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar)))
    prior = torch.distributions.Normal(torch.zeros(5, 3, dtype=torch.float64), torch.ones(5, 3, dtype=torch.float64))
    per_sample = torch.distributions.kl_divergence(q, prior).sum(1).numpy()
    s_mu, s_lv = shendu.tensor(mu, dtype=shendu.float64), shendu.tensor(logvar, dtype=shendu.float64)
    np.testing.assert_allclose(F.gaussian_kl(s_mu, s_lv, reduction="none").data, per_sample, rtol=1e-12)
    np.testing.assert_allclose(F.gaussian_kl(s_mu, s_lv).item(), per_sample.mean(), rtol=1e-12)
    np.testing.assert_allclose(nn.GaussianKLLoss(reduction="sum")(s_mu, s_lv).item(), per_sample.sum(), rtol=1e-12)


# --------------------------------------------------------------------------------------- regularizers
def _mlp():
    shendu.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_regularizers_apply_to_weights_not_biases():
    model = _mlp()
    w1, b1, w2, b2 = (p.data for p in model.parameters())
    np.testing.assert_allclose(F.l2_regularization(model).item(), (w1 ** 2).sum() + (w2 ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(F.l1_regularization(model).item(), np.abs(w1).sum() + np.abs(w2).sum(), rtol=1e-6)
    everything = sum((p ** 2).sum() for p in (w1, b1, w2, b2))
    np.testing.assert_allclose(F.l2_regularization(model, weights_only=False).item(), everything, rtol=1e-6)
    beta = 0.3
    want = sum((beta * w ** 2 + np.abs(w)).sum() for w in (w1, w2))
    np.testing.assert_allclose(F.elastic_net(model, beta).item(), want, rtol=1e-6)


def test_l2_regularization_gradient_is_2w():
    model = _mlp()
    F.l2_regularization(model).backward()
    np.testing.assert_allclose(model[0].weight.grad.data, 2 * model[0].weight.data, rtol=1e-6)
    assert model[0].bias.grad is None  # biases are not regularized


def test_l1_regularization_subgradient_is_sign():
    w = shendu.tensor([[0.5, 0.0, -2.0]], requires_grad=True)
    F.l1_regularization([w]).backward()
    assert w.grad.tolist() == [[1.0, 0.0, -1.0]]


# --------------------------------------------------------------------------------------------- errors
def test_class_target_errors():
    x = shendu.randn(4, 5)
    with pytest.raises(DTypeError, match="int64 class indices, got dtype int32; call target.long"):
        nn.CrossEntropyLoss()(x, shendu.tensor([0, 1, 2, 3], dtype=shendu.int32))
    with pytest.raises(ShapeError, match=r"target shape \(4, 1\) does not fit input shape \(4, 5\)"):
        nn.NLLLoss()(x, shendu.tensor([[0], [1], [2], [3]]))
    with pytest.raises(IndexOutOfRangeError, match="class index 5, out of range for C=5"):
        nn.CrossEntropyLoss()(x, shendu.tensor([0, 5, 1, 2]))
    # the ignored index is allowed even though it is out of range
    nn.CrossEntropyLoss(ignore_index=9)(x, shendu.tensor([0, 9, 1, 2]))


def test_reduction_checked_at_construction():
    with pytest.raises(ArgumentError, match="reduction must be one of"):
        nn.MSELoss(reduction="average")
    with pytest.raises(ArgumentError, match="'batchmean'"):
        nn.KLDivLoss(reduction="batch")
    nn.KLDivLoss(reduction="batchmean")


def test_regression_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(ShapeError, match=r"target shape \(8,\) does not match input shape \(8, 1\)"):
        nn.MSELoss()(shendu.zeros(8, 1), shendu.zeros(8))


def test_weights_are_buffers():
    m = nn.CrossEntropyLoss(weight=shendu.ones(3))
    assert list(m.state_dict()) == ["weight"]
    m.to(shendu.float64)
    assert m.weight.dtype == np.float64
    b = nn.BCEWithLogitsLoss(pos_weight=shendu.ones(2))
    assert list(b.state_dict()) == ["pos_weight"]
