"""The registry, the published parameter counts, shapes at small inputs, and the architecture details
the notes insist on (Keras ResNet-50 names/strides/BN defaults, GoogLeNet aux outputs, LeNet-5's C3)."""

import numpy as np
import pytest

import shendu
from shendu import models, nn
from shendu.errors import ArgumentError

EXPECTED_NAMES = {
    "lenet5", "lenet5_28", "lenet5_classic", "alexnet", "alexnet_lrn", "zfnet",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "nin", "googlenet",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50_keras", "se_resnet50",
    "resnet18_small", "resnet_fmnist", "cnn_fmnist",
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_registry_names_and_descriptions():
    assert EXPECTED_NAMES <= set(models.list_models())
    assert models.list_models() == sorted(models.list_models())
    for name, text in models.model_descriptions().items():
        assert text and "\n" not in text, name
        assert models.describe_model(name) == text


def test_unknown_model_lists_the_names():
    with pytest.raises(ArgumentError) as e:
        models.get_model("resnet51")
    msg = str(e.value)
    assert "resnet51" in msg and "Did you mean" in msg and "'resnet50'" in msg
    assert all(name in msg for name in EXPECTED_NAMES)
    with pytest.raises(ValueError):  # ArgumentError is a ValueError too
        models.get_model("nope")


@pytest.mark.parametrize("arg", [{"num_classes": 0}, {"in_channels": -1}, {"num_classes": 2.5}])
def test_bad_sizes_are_rejected(arg):
    with pytest.raises(ArgumentError, match="positive integer"):
        models.get_model("lenet5", **arg)


# Published figures (torchvision docs / papers), at 1000 classes and 3 input channels; each was also
# checked against the torch builds of tests/models/torch_reference.py.
# (VGG-16 and AlexNet are counted in test_torch_parity.py; the other VGGs below, without building
# their 124M-parameter classifier again.)
PUBLISHED = [
    ("alexnet_lrn", {}, 60_965_224),
    ("googlenet", {"aux_logits": False}, 6_624_904), ("googlenet", {}, 13_004_888),
    ("resnet18", {}, 11_689_512), ("resnet34", {}, 21_797_672), ("resnet50", {}, 25_557_032),
    ("resnet101", {}, 44_549_160), ("resnet152", {}, 60_192_808), ("se_resnet50", {}, 28_088_024),
]


@pytest.mark.parametrize("name,kw,count", PUBLISHED, ids=[f"{n}{'-' + str(k) if k else ''}" for n, k, _ in PUBLISHED])
def test_published_parameter_counts(name, kw, count):
    assert n_params(models.get_model(name, **kw)) == count


VGG_PUBLISHED = {("A", False): 132_863_336, ("B", False): 133_047_848, ("D", False): 138_357_544,
                 ("E", False): 143_667_240, ("A", True): 132_868_840, ("B", True): 133_053_736,
                 ("D", True): 138_365_992, ("E", True): 143_678_248}
VGG_CLASSIFIER = (512 * 7 * 7 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000  # the same in every VGG


@pytest.mark.parametrize("cfg,bn", list(VGG_PUBLISHED), ids=[f"{c}{'-bn' if b else ''}" for c, b in VGG_PUBLISHED])
def test_vgg_parameter_counts(cfg, bn):
    features = models.make_vgg_layers(models.CFGS[cfg], batch_norm=bn)
    assert n_params(features) + VGG_CLASSIFIER == VGG_PUBLISHED[(cfg, bn)]


def test_small_model_parameter_counts():
    assert n_params(models.lenet5_classic()) == 60_000  # the paper's figure, RBF centres are fixed
    assert n_params(models.lenet5(10, 1)) == 61_706  # 156 + 2,416 + 48,120 + 10,164 + 850
    # convs 288 + 9,216 + 18,432 + 36,864, BN 2 * (32 + 32 + 64 + 64), FC 3,136 * 128 + 128, FC 1,290
    assert n_params(models.cnn_fmnist()) == 468_010
    assert n_params(models.nin(num_classes=10)) == 966_986  # the Caffe CIFAR-10 NIN's ~0.97M
    assert n_params(models.resnet18_small(num_classes=10)) == 11_173_962  # the CIFAR ResNet-18's figure
    assert n_params(models.resnet_fmnist(num_classes=10)) == 696_042


# (name, kwargs, input shape): the registered models run at small inputs (VGG runs in test_torch_parity.py,
# ZFNet in test_zfnet_native_shape_trace).
SHAPES = [
    ("lenet5", {"num_classes": 10, "in_channels": 1}, (2, 1, 32, 32)),
    ("lenet5_28", {"num_classes": 10, "in_channels": 1}, (2, 1, 28, 28)),
    ("lenet5_classic", {"num_classes": 10, "in_channels": 1}, (2, 1, 32, 32)),
    ("alexnet", {"num_classes": 10, "in_channels": 1}, (1, 1, 63, 63)),
    ("alexnet_lrn", {"num_classes": 10}, (1, 3, 67, 67)),
    ("nin", {"num_classes": 10}, (2, 3, 32, 32)),
    ("googlenet", {"num_classes": 10, "in_channels": 1}, (1, 1, 32, 32)),
    ("resnet18", {"num_classes": 10, "in_channels": 1}, (1, 1, 32, 32)),
    ("resnet50_keras", {"num_classes": 6}, (1, 3, 64, 64)),
    ("se_resnet50", {"num_classes": 10}, (1, 3, 32, 32)),
    ("resnet18_small", {"num_classes": 10, "in_channels": 1}, (2, 1, 28, 28)),
    ("resnet_fmnist", {"num_classes": 10, "in_channels": 1}, (2, 1, 28, 28)),
    ("cnn_fmnist", {"num_classes": 10, "in_channels": 1}, (2, 1, 28, 28)),
    ("cnn_fmnist", {"num_classes": 10, "in_channels": 3, "input_size": 32}, (2, 3, 32, 32)),
]


@pytest.mark.parametrize("name,kw,shape", SHAPES, ids=[f"{s[0]}-{s[2][1]}x{s[2][2]}" for s in SHAPES])
def test_forward_shapes_at_small_inputs(name, kw, shape):
    net = models.get_model(name, **kw).eval()
    with shendu.no_grad():
        out = net(shendu.randn(*shape))
    assert out.shape == (shape[0], kw["num_classes"])
    assert np.isfinite(out.numpy()).all()


def test_zfnet_native_shape_trace():
    """224 -> 110 -> 55 -> 26 -> 13 -> 6, as the paper's Fig. 3 (checked on the conv/pool outputs)."""
    net = models.zfnet(num_classes=10, widths=(8, 8, 8, 8, 8)).eval()
    sizes = []
    hooks = [m.register_forward_hook(lambda m, a, o: sizes.append(o.shape[-1]))
             for m in net.features if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    with shendu.no_grad():
        out = net(shendu.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6] and out.shape == (1, 10)
    assert net.features[0].kernel_size == (7, 7) and net.features[0].stride == (2, 2)
    assert net.features[4].stride == (2, 2)


def test_alexnet_lrn_is_the_papers_network():
    net = models.alexnet_lrn()
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    lrn = [m for m in net.features if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrn) == 2 and lrn[0].size == 5 and lrn[0].k == 2.0
    assert lrn[0].alpha == pytest.approx(5e-4)  # the paper's 1e-4 per neighbour, torch divides by n


# ------------------------------------------------------------------------------ Keras ResNet-50
def test_keras_resnet50_names_strides_and_counts():
    net = models.ResNet50Keras(num_classes=6)
    keys = net.state_dict().keys()
    for k in ("conv1.weight", "conv1.bias", "bn_conv1.running_var", "res2a_branch2a.weight",
              "bn2a_branch2a.weight", "res2a_branch1.weight", "bn2a_branch1.running_mean", "res2c_branch2c.bias",
              "res3d_branch2b.weight", "res4f_branch2c.weight", "res5a_branch1.weight", "bn5c_branch2c.bias",
              "fc.weight", "fc.bias"):
        assert k in keys, k
    assert "res2d_branch2a.weight" not in keys and "res4a_branch2a.weight" in keys
    # stride on the first 1x1 and on the shortcut; stage 2 has s = 1
    assert net.res2a_branch2a.stride == (1, 1) and net.res2a_branch1.stride == (1, 1)
    for stage in (3, 4, 5):
        assert getattr(net, f"res{stage}a_branch2a").stride == (2, 2)
        assert getattr(net, f"res{stage}a_branch1").stride == (2, 2)
        assert getattr(net, f"res{stage}a_branch2b").stride == (1, 1)
    assert [getattr(net, f"res{s}a_branch2c").out_channels for s in (2, 3, 4, 5)] == [256, 512, 1024, 2048]
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(b.eps == 1e-3 and b.momentum == pytest.approx(0.01) for b in bns)
    trainable = n_params(net)
    running = sum(b.running_mean.numel() + b.running_var.numel() for b in bns)
    assert (trainable, running, trainable + running) == (23_546_886, 53_120, 23_600_006)


def test_keras_resnet50_shape_trace_and_softmax():
    net = models.ResNet50Keras(num_classes=6).eval()
    seen = {}
    hooks = [getattr(net, n).register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, o.shape))
             for n in ("zero_pad", "conv1", "max_pool", "res2c_branch2c", "res3a_branch2c", "res4a_branch2c",
                       "res5c_branch2c", "avg_pool")]
    with shendu.no_grad():
        p = net(shendu.randn(2, 3, 64, 64)).numpy()
    for h in hooks:
        h.remove()
    assert {k: v[-1] for k, v in seen.items()} == {"zero_pad": 70, "conv1": 32, "max_pool": 15,
                                                   "res2c_branch2c": 15, "res3a_branch2c": 8,
                                                   "res4a_branch2c": 4, "res5c_branch2c": 2, "avg_pool": 1}
    assert seen["avg_pool"] == (2, 2048, 1, 1)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    assert models.get_model("resnet50_keras", num_classes=6).softmax is False  # the registry gives logits
    with pytest.raises(ArgumentError, match="too small"):
        models.ResNet50Keras(input_size=16)


# ------------------------------------------------------------------------------------ GoogLeNet
def test_googlenet_aux_only_in_training_and_loss_weights():
    shendu.manual_seed(0)
    net = models.googlenet(num_classes=4, in_channels=1)
    x, y = shendu.randn(2, 1, 32, 32), shendu.tensor([1, 3])
    out = net.train()(x)
    assert isinstance(out, models.GoogLeNetOutputs)
    assert [o.shape for o in out] == [(2, 4)] * 3
    import shendu.functional as F
    loss = models.googlenet_loss(out, y)
    want = F.cross_entropy(out.logits, y).item() + 0.3 * (F.cross_entropy(out.aux_logits1, y).item()
                                                          + F.cross_entropy(out.aux_logits2, y).item())
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert not isinstance(net.eval()(x), tuple)
    plain = models.googlenet(num_classes=4, in_channels=1, aux_logits=False).train()
    assert plain.aux1 is None and not isinstance(plain(x), tuple)


def test_googlenet_transform_input():
    net = models.googlenet(num_classes=3, aux_logits=False, transform_input=True).eval()
    assert net(shendu.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ArgumentError, match="in_channels=3"):
        models.googlenet(in_channels=1, transform_input=True)


def test_googlenet_paper_5x5():
    net = models.googlenet(num_classes=4, aux_logits=False, paper_5x5=True)
    assert net.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert models.googlenet().inception3a.branch3[1].conv.kernel_size == (3, 3)


# ------------------------------------------------------------------------------------- SE block
def test_squeeze_excitation_matches_a_numpy_computation():
    shendu.manual_seed(0)
    se = models.SqueezeExcitation(32, 2)
    x = np.random.default_rng(0).standard_normal((2, 32, 3, 4)).astype(np.float32)
    with shendu.no_grad():
        got = se(shendu.tensor(x)).numpy()
    w1, b1 = se.fc1.weight.detach().numpy()[:, :, 0, 0], se.fc1.bias.detach().numpy()
    w2, b2 = se.fc2.weight.detach().numpy()[:, :, 0, 0], se.fc2.bias.detach().numpy()
    z = x.astype(np.float64).mean((2, 3))  # squeeze
    s = 1 / (1 + np.exp(-(np.maximum(z @ w1.T + b1, 0) @ w2.T + b2)))  # excitation
    np.testing.assert_allclose(got, x * s[:, :, None, None], rtol=1e-5, atol=1e-6)


def test_se_resnet50_has_reduction_16_before_the_addition():
    net = models.se_resnet50()
    block = net.layer4[0]
    assert block.se.fc1.out_channels == 2048 // 16 and block.se.fc2.out_channels == 2048


# --------------------------------------------------------------------------------------- LeNet-5
def test_lenet5_classic_c3_follows_the_papers_table():
    from shendu.models.lenet import _C3_TABLE
    net = models.lenet5_classic()
    c3 = net.c3
    dense = (c3.placement.numpy() @ c3.weight.detach().numpy().reshape(60, 25)).reshape(16, 6, 5, 5)
    connected = np.abs(dense).sum((2, 3)) > 0
    want = np.zeros((16, 6), bool)
    for out, ins in enumerate(_C3_TABLE):
        want[out, ins] = True
    np.testing.assert_array_equal(connected, want)
    assert want.sum() == 60
    # gradients reach only the 60 stored kernels
    out = net(shendu.randn(2, 1, 32, 32))
    out.sum().backward()
    assert c3.weight.grad.shape == (60, 5, 5) and np.abs(c3.weight.grad.numpy()).sum() > 0


def test_lenet5_input_size_checked():
    with pytest.raises(ArgumentError, match="input_size"):
        models.LeNet5(input_size=30)


# ------------------------------------------------------------------------------- summary / fuse
def test_summary_lists_layers_and_totals():
    net = models.resnet_fmnist()
    text = net.summary((1, 1, 28, 28))
    assert f"Total params: {n_params(net):,}" in text
    assert "layer3 (Sequential)" in text and "[1, 10]" in text


@pytest.mark.parametrize("name", ["cnn_fmnist", "resnet_fmnist", "resnet50_keras", "googlenet"])
def test_fuse_keeps_outputs(name):
    shendu.manual_seed(0)
    shape = {"resnet50_keras": (2, 3, 64, 64), "googlenet": (2, 1, 32, 32)}.get(name, (2, 1, 28, 28))
    net = models.get_model(name, num_classes=6, in_channels=shape[1])
    # non-trivial running statistics: a few training-mode passes
    for _ in range(2):
        with shendu.no_grad():
            net.train()(shendu.randn(*shape))
    net.eval()
    x = shendu.randn(*shape)
    with shendu.no_grad():
        before = net(x).numpy()
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        assert n_bn > 0
        assert net.fuse() is net
        after = net(x).numpy()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    scale = max(1.0, np.abs(before).max())
    assert np.abs(after - before).max() <= 1e-4 * scale
