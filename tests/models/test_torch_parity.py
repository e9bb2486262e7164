"""Weights move both ways between the zoo and the same architectures built in PyTorch (torchvision's
definitions, copied into torch_reference.py): random weights and BN statistics, logits equal in eval mode,
and again after ``model.fuse()``. Inputs are the smallest sizes the architectures allow, to stay fast."""

import numpy as np
import pytest
import torch

import shendu
from shendu import models, nn
from tests.models import torch_reference as ref


@pytest.fixture(autouse=True)
def _seed():
    shendu.manual_seed(0)
    torch.manual_seed(0)


def _logits(out):
    return out.numpy() if hasattr(out, "numpy") else np.asarray(out)


def _assert_close(got, want, what):
    # float32 through ~50 layers: 1e-4 relative to the size of the logits (they are O(1) here).
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= 1e-4 * scale, f"{what}: max |shendu - torch| = {err:.3g} (logit scale {scale:.3g})"


def _pair(make_torch, shendu_model, seed=0):
    """Weights both ways: the torch model is built without initialising (meta device), takes shendu's
    random weights strictly (shendu -> torch), gets random BN statistics, and gives them all back
    (torch -> shendu, as a dict of torch tensors)."""
    with torch.device("meta"):
        torch_model = make_torch()
    torch_model = torch_model.to_empty(device="cpu")
    _back_to_torch(shendu_model, torch_model)
    ref.randomize_bn(torch_model, seed)
    torch_model.eval()
    models.load_weights(shendu_model, torch_model.state_dict())
    shendu_model.eval()
    return torch_model, shendu_model


def _check(torch_model, shendu_model, shape, what, fuse=True):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x)).numpy()
    with shendu.no_grad():
        got = _logits(shendu_model(shendu.tensor(x)))
    _assert_close(got, want, what)
    if fuse:
        shendu_model.fuse()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in shendu_model.modules())
        with shendu.no_grad():
            fused = _logits(shendu_model(shendu.tensor(x)))
        _assert_close(fused, want, what + " after fuse()")


def _back_to_torch(shendu_model, torch_model):
    """shendu -> torch: the state_dict loads strictly into the torch model (buffers torch has and shendu
    may not, ``num_batches_tracked``, are the only keys allowed to be missing)."""
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in shendu_model.state_dict().items()}
    result = torch_model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    for name, buf in torch_model.named_buffers():  # a meta-built model has them uninitialised
        if name.endswith("num_batches_tracked") and name in result.missing_keys:
            buf.zero_()
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys), result.missing_keys


def test_alexnet_matches_torchvision():
    with torch.device("meta"):
        assert ref.n_params(ref.AlexNet()) == 61_100_840
    t, s = _pair(lambda: ref.AlexNet(num_classes=10), models.alexnet(num_classes=10))
    _check(t, s, (2, 3, 64, 64), "alexnet", fuse=False)


def test_vgg16_matches_torchvision_both_ways():
    t, s = _pair(lambda: ref.VGG(ref.vgg_layers(ref.VGG_CFGS["D"])), models.vgg16(init_weights=False))
    assert sum(p.numel() for p in s.parameters()) == ref.n_params(t) == 138_357_544
    _check(t, s, (1, 3, 32, 32), "vgg16", fuse=False)


def test_vgg11_bn_matches_and_fuses():
    t, s = _pair(lambda: ref.VGG(ref.vgg_layers(ref.VGG_CFGS["A"], batch_norm=True), num_classes=10),
                 models.vgg11_bn(num_classes=10, init_weights=False))
    _check(t, s, (2, 3, 32, 32), "vgg11_bn")


def test_googlenet_matches_torchvision_eval_and_fused():
    t, s = _pair(lambda: ref.GoogLeNet(num_classes=10), models.googlenet(num_classes=10))
    with torch.device("meta"):
        assert ref.n_params(ref.GoogLeNet(aux_logits=False)) == 6_624_904
    _check(t, s, (2, 3, 64, 64), "googlenet")


def test_googlenet_training_outputs_match_torchvision_order():
    """In training mode with aux classifiers both return (logits, aux2, aux1), with batch-statistics BN.
    Run in float64: BN over the few values of a 2x2 map at batch 2 magnifies float32 rounding."""
    t = ref.GoogLeNet(num_classes=5, dropout=0.0, dropout_aux=0.0).double()
    s = models.googlenet(num_classes=5, dropout=0.0, dropout_aux=0.0).double()
    models.load_weights(s, t.state_dict())
    t.train()
    s.train()
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64))
    want = t(torch.from_numpy(x))
    got = s(shendu.tensor(x))
    assert isinstance(got, models.GoogLeNetOutputs)
    for g, w, name in zip(got, want, ("logits", "aux_logits2", "aux_logits1")):
        np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), rtol=1e-7, atol=1e-9, err_msg=name)
    for bt, bs in zip([m for m in t.modules() if isinstance(m, torch.nn.BatchNorm2d)],
                      [m for m in s.modules() if isinstance(m, nn.BatchNorm2d)]):
        np.testing.assert_allclose(bs.running_var.numpy(), bt.running_var.numpy(), rtol=1e-7)


def test_resnet50_matches_torchvision_and_fuses():
    t, s = _pair(lambda: ref.ResNet(ref.Bottleneck, [3, 4, 6, 3]), models.resnet50())
    assert sum(p.numel() for p in s.parameters()) == ref.n_params(t) == 25_557_032
    _check(t, s, (2, 3, 64, 64), "resnet50")


def test_resnet18_matches_torchvision():
    t, s = _pair(lambda: ref.ResNet(ref.BasicBlock, [2, 2, 2, 2], num_classes=7), models.resnet18(num_classes=7))
    _check(t, s, (2, 3, 32, 32), "resnet18")


def test_se_resnet50_matches_torch_build():
    t, s = _pair(lambda: ref.ResNet(ref.Bottleneck, [3, 4, 6, 3], num_classes=10, se=16),
                 models.se_resnet50(num_classes=10))
    _check(t, s, (1, 3, 32, 32), "se_resnet50")


def test_keras_resnet50_matches_torch_build_of_the_notes():
    s = models.ResNet50Keras(num_classes=6, softmax=True)
    with torch.device("meta"):
        t = ref.KerasResNet50(classes=6)
    t = t.to_empty(device="cpu")
    t.layers.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in s.state_dict().items()},
                             strict=False)
    ref.randomize_bn(t).eval()
    models.load_weights(s, {k.removeprefix("layers."): v for k, v in t.state_dict().items()})
    s.eval()
    _check(t, s, (2, 3, 64, 64), "resnet50_keras (softmax)")
