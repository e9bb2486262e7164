"""Module, Parameter and the containers, checked against torch.nn where torch has the same thing."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch

import shendu
from shendu import nn
from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, StateDictError


class Tanh(nn.Module):
    """A local activation module, so these tests depend only on the Module system and Linear."""

    def forward(self, x):
        return shendu.tanh(x)


class ReLU(nn.Module):
    def forward(self, x):
        return shendu.relu(x)


def mlp_pair(dtype=torch.float32):
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                            torch.nn.Linear(16, 3)).to(dtype)
    s = nn.Sequential(nn.Linear(10, 32), Tanh(), nn.Linear(32, 16), ReLU(), nn.Linear(16, 3))
    if dtype == torch.float64:
        s.double()
    s.load_state_dict(t.state_dict())  # torch tensors straight in
    return s, t


class Block(nn.Module):
    """Parameters, a persistent and a non-persistent buffer, nested children, a shared child."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(shendu.ones(3))
        self.register_buffer("running", shendu.zeros(3))
        self.register_buffer("scratch", shendu.zeros(2), persistent=False)
        self.register_buffer("count", shendu.tensor(0))
        self.inner = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 3))
        self.alias = self.inner[0]  # the same module under a second name

    def forward(self, x):
        return self.inner(x) * self.scale


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(3))
        self.register_buffer("running", torch.zeros(3))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.register_buffer("count", torch.tensor(0))
        self.inner = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 3))
        self.alias = self.inner[0]


# ------------------------------------------------------------------------------------- vs torch
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_mlp_matches_torch_outputs_and_gradients(dtype):
    s, t = mlp_pair(dtype)
    rng = np.random.default_rng(0)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    x = rng.standard_normal((7, 10)).astype(np_dtype)
    cot = rng.standard_normal((7, 3)).astype(np_dtype)
    ys = s(shendu.tensor(x))
    yt = t(torch.tensor(x))
    assert ys.dtype == np_dtype
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ys.data, yt.detach().numpy(), **tol)
    ys.backward(shendu.tensor(cot))
    yt.backward(torch.tensor(cot))
    tparams = dict(t.named_parameters())
    for name, p in s.named_parameters():
        assert p.grad.dtype == np_dtype, name
        np.testing.assert_allclose(p.grad.data, tparams[name].grad.numpy(), **tol, err_msg=name)


def test_state_dict_keys_and_order_equal_torch():
    s, t = Block(), TorchBlock()
    assert list(s.state_dict()) == list(t.state_dict())
    assert "scratch" not in s.state_dict()
    mlp_s, mlp_t = mlp_pair()
    assert list(mlp_s.state_dict()) == list(mlp_t.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias",
                                                                      "4.weight", "4.bias"]


def test_named_parameters_deduplicate_shared_like_torch():
    s, t = Block(), TorchBlock()
    assert [n for n, _ in s.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in s.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in s.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in s.named_children()] == [n for n, _ in t.named_children()]
    assert len(list(s.parameters())) == 5
    assert len(list(s.parameters(recurse=False))) == 1
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, shared)
    assert len(list(seq.parameters())) == 2


def test_repr_matches_torch():
    s = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.2), nn.Flatten(), nn.Identity(), nn.Embedding(10, 3, padding_idx=0),
                      nn.Unflatten(1, (3, 1)), nn.Bilinear(3, 4, 5, bias=False), nn.Dropout2d(0.1),
                      nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2), nn.Identity()]),
                      nn.ModuleDict({"a": nn.Linear(1, 2)}), nn.Sequential())
    t = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.2), torch.nn.Flatten(), torch.nn.Identity(),
                            torch.nn.Embedding(10, 3, padding_idx=0), torch.nn.Unflatten(1, (3, 1)),
                            torch.nn.Bilinear(3, 4, 5, bias=False), torch.nn.Dropout2d(0.1),
                            torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Identity()]),
                            torch.nn.ModuleDict({"a": torch.nn.Linear(1, 2)}), torch.nn.Sequential())
    assert repr(s) == repr(t)


def test_parameter_repr_and_defaults():
    p = nn.Parameter(shendu.tensor([1.0, 2.0]))
    assert p.requires_grad and p.is_leaf and isinstance(p, shendu.Tensor)
    assert repr(p) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"
    assert not nn.Parameter(shendu.zeros(2), requires_grad=False).requires_grad
    y = p * 2
    assert type(y) is shendu.Tensor  # ops on parameters give plain tensors


# ----------------------------------------------------------------------------------- load_state_dict
def _snapshot(m):
    return {k: v.data.copy() for k, v in m.state_dict().items()}


def test_load_state_dict_reports_everything_and_changes_nothing():
    s, t = mlp_pair()
    before = _snapshot(s)
    bad = OrderedDict((k, v.clone() + 1) for k, v in t.state_dict().items())
    del bad["4.bias"]  # missing
    bad["extra.weight"] = torch.zeros(1)  # unexpected
    bad["2.weight"] = torch.zeros(5, 5)  # wrong shape
    with pytest.raises(StateDictError) as info:
        s.load_state_dict(bad)
    msg = str(info.value)
    assert 'Missing key(s) in state_dict: "4.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert "size mismatch for 2.weight" in msg and "(5, 5)" in msg and "(16, 32)" in msg
    assert "Nothing was loaded" in msg
    assert isinstance(info.value, KeyError)
    after = _snapshot(s)
    for k in before:  # 0.weight etc. were valid but must not have been copied
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_load_state_dict_non_strict_returns_keys_but_still_rejects_shapes():
    s, t = mlp_pair()
    sd = t.state_dict()
    del sd["0.bias"]
    sd["head.weight"] = torch.zeros(2)
    sd["0.weight"] = sd["0.weight"] * 0 + 3
    res = s.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["0.bias"] and res.unexpected_keys == ["head.weight"]
    assert np.all(s[0].weight.data == 3)
    sd["2.bias"] = torch.zeros(7)
    with pytest.raises(StateDictError, match="size mismatch for 2.bias"):
        s.load_state_dict(sd, strict=False)
    assert repr(s.load_state_dict(s.state_dict())) == "<All keys matched successfully>"


def test_load_state_dict_accepts_numpy_and_keeps_dtype_and_identity():
    s, _ = mlp_pair()
    params = {n: p for n, p in s.named_parameters()}
    arrays = {k: np.full(v.shape, 0.5, dtype=np.float64) for k, v in s.state_dict().items()}
    s.load_state_dict(arrays)
    for n, p in s.named_parameters():
        assert p is params[n]
        assert p.dtype == np.float32 and np.all(p.data == 0.5)
    # torch tensors that require grad load too
    s.load_state_dict({k: torch.ones(v.shape, requires_grad=True) for k, v in s.state_dict().items()})
    assert np.all(s[0].weight.data == 1)


def test_load_state_dict_hints_at_a_prefix():
    s, t = mlp_pair()
    wrapped = {"module." + k: v for k, v in t.state_dict().items()}
    with pytest.raises(StateDictError, match="extra prefix 'module.'"):
        s.load_state_dict(wrapped)


def test_state_dict_shares_memory_and_is_detached():
    s, _ = mlp_pair()
    sd = s.state_dict()
    assert not sd["0.weight"].requires_grad
    assert sd["0.weight"].data is s[0].weight.data
    assert s.state_dict(keep_vars=True)["0.weight"] is s[0].weight


def test_buffers_roundtrip_through_state_dict():
    a, b = Block(), Block()
    a.running.data[:] = [1, 2, 3]
    a.count.data[...] = 7
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.running.data, [1, 2, 3])
    assert b.count.item() == 7 and b.count.dtype == np.int64


# ------------------------------------------------------------------------------------- registration
def test_attribute_registration_rules():
    m = nn.Module()
    m.w = nn.Parameter(shendu.zeros(2))
    m.sub = nn.Linear(2, 2)
    m.register_buffer("buf", shendu.zeros(1))
    m.plain = 3
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"] and list(m._buffers) == ["buf"]
    assert m.plain == 3 and "plain" not in m.state_dict()
    with pytest.raises(ArgumentError, match="cannot assign Tensor as parameter 'w'"):
        m.w = shendu.zeros(2)
    m.w = None
    assert m.w is None and "w" not in m.state_dict()
    m.buf = shendu.ones(1)  # buffers can be rebound to a new tensor
    assert m.state_dict()["buf"].item() == 1
    with pytest.raises(ArgumentError, match="buffer 'buf'"):
        m.buf = 5
    with pytest.raises(ArgumentError, match="already exists"):
        m.register_buffer("plain", shendu.zeros(1))
    with pytest.raises(ArgumentError, match="without '.'"):
        m.register_parameter("a.b", None)
    with pytest.raises(ArgumentError, match=r"wrap it: nn.Parameter"):
        m.register_parameter("q", shendu.zeros(1))
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'nope'"):
        m.nope
    del m.sub
    assert "sub" not in m._modules and not hasattr(m, "sub")
    m.sub = nn.Parameter(shendu.zeros(1))  # a name can change kind
    assert "sub" in m._parameters


def test_setattr_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_forward_missing():
    with pytest.raises(NotImplementedError, match=r'\[Module\] is missing the required "forward"'):
        nn.Module()(1)


def test_get_submodule():
    s = Block()
    assert s.get_submodule("inner.1") is s.inner[1]
    with pytest.raises(ArgumentError, match="no submodule 'x'"):
        s.get_submodule("inner.x")


# -------------------------------------------------------------------------------------------- modes
def test_train_eval_recursive():
    s = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5)))
    assert all(m.training for m in s.modules())
    assert s.eval() is s
    assert not any(m.training for m in s.modules())
    s.train()
    assert all(m.training for m in s.modules())
    s[1].train(False)
    assert s.training and not s[1][0].training
    with pytest.raises(ArgumentError, match="bool"):
        s.train("no")


def test_dropout_follows_mode():
    s = nn.Sequential(nn.Dropout(0.5))
    x = shendu.ones(1000)
    assert (s(x).data == 0).any()
    s.eval()
    assert s(x) is x


def test_zero_grad_and_requires_grad_():
    s, _ = mlp_pair()
    s(shendu.randn(4, 10)).sum().backward()
    g = s[0].weight.grad
    s.zero_grad(set_to_none=False)
    assert s[0].weight.grad is g and not g.data.any()
    s.zero_grad()
    assert all(p.grad is None for p in s.parameters())
    s[0].requires_grad_(False)
    s(shendu.randn(4, 10)).sum().backward()
    assert s[0].weight.grad is None and s[2].weight.grad is not None
    assert s.requires_grad_() is s and all(p.requires_grad for p in s.parameters())


def test_apply_visits_children_first():
    s = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)))
    seen = []
    assert s.apply(lambda m: seen.append(type(m).__name__)) is s
    assert seen == ["Linear", "Linear", "Sequential", "Sequential"]

    def init_zero(m):
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)

    s.apply(init_zero)
    assert not s[0].weight.data.any() and not s[1][0].weight.data.any()


def test_to_dtype_keeps_parameter_identity_and_int_buffers():
    b = Block()
    b(shendu.randn(2, 3)).sum().backward()
    params = list(b.parameters())
    assert b.double() is b
    assert [id(p) for p in b.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in b.parameters())
    assert b.running.dtype == np.float64 and b.count.dtype == np.int64
    b.to(shendu.float32)
    assert all(p.dtype == np.float32 for p in b.parameters())
    b.to("cpu")
    b.to(shendu.zeros(1, dtype=shendu.float64))
    assert b.scale.dtype == np.float64
    with pytest.raises(DTypeError, match="only floating point"):
        b.to(shendu.int64)
    out = b.float()(shendu.randn(2, 3))
    assert out.dtype == np.float32


def test_deepcopy_gives_independent_parameters():
    s = Block()
    c = copy.deepcopy(s)
    assert isinstance(c.scale, nn.Parameter) and c.scale is not s.scale
    assert c.alias is c.inner[0]  # sharing is preserved
    c.scale.data[:] = 5
    assert np.all(s.scale.data == 1)


# -------------------------------------------------------------------------------------------- hooks
def test_forward_hooks():
    lin = nn.Linear(3, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    h2 = lin.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    x = shendu.randn(4, 3)
    y = lin(x)
    np.testing.assert_allclose(y.data, np.broadcast_to(lin.bias.data, (4, 2)))  # input was zeroed
    assert calls == [(4, 2)]
    h1.remove()
    h2.remove()
    lin(x)
    assert calls == [(4, 2)]
    with lin.register_forward_hook(lambda m, args, out: out * 0):
        assert not lin(x).data.any()
    assert lin(x).data.any()


# ------------------------------------------------------------------------------------------- summary
def test_summary_counts_and_shapes():
    s = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), Tanh(), nn.Sequential(nn.Linear(8, 4), nn.Dropout()),
                      nn.Linear(4, 2))
    s[1].requires_grad_(False)
    s[3].eval()
    state = shendu.backend.default_generator.get_state()
    text = s.summary((5, 3, 4))
    assert shendu.backend.default_generator.get_state() == state  # no global random numbers drawn
    assert s.training and not s[3].training  # modes restored
    total = sum(p.numel() for p in s.parameters())
    assert total == 12 * 8 + 8 + 8 * 4 + 4 + 4 * 2 + 2
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total - 104:,}" in text
    assert "Non-trainable params: 104" in text
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("├─1 (Linear)"))
    assert "[5, 8]" in row and "104" in row and "False" in row
    assert any(line.startswith("│ ├─0 (Linear)") and "[5, 4]" in line and " 36 " in line for line in lines)
    assert any(line.startswith("├─0 (Flatten)") and "[5, 12]" in line for line in lines)
    top = next(line for line in lines if line.startswith("Sequential"))
    assert "[5, 2]" in top and "Partial" in top
    # order is call order with parents first
    order = [line.split()[0] for line in lines if line.startswith(("Seq", "├", "│"))]
    assert order == ["Sequential", "├─0", "├─1", "├─2", "├─3", "│", "│", "├─4"]


def test_summary_accepts_a_tensor_and_rejects_nonsense():
    s = nn.Sequential(nn.Linear(3, 2))
    assert "[7, 2]" in s.summary(shendu.randn(7, 3))
    with pytest.raises(ArgumentError, match="summary: input_shape"):
        s.summary("big")


# ---------------------------------------------------------------------------------------- containers
def test_sequential_indexing_and_editing():
    a, b, c = nn.Linear(2, 3), nn.Linear(3, 4), nn.Linear(4, 5)
    s = nn.Sequential(a, b, c)
    assert s[0] is a and s[-1] is c and len(s) == 3 and list(s) == [a, b, c]
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    assert list(sub.state_dict())[:1] == ["1.weight"]  # slices keep their names, as torch
    with pytest.raises(IndexOutOfRangeError, match="index 3 is out of range"):
        s[3]
    s.append(nn.Linear(5, 1))
    assert s(shendu.randn(2, 2)).shape == (2, 1)
    del s[0]
    assert list(s._modules) == ["0", "1", "2"] and s[0] is b
    named = nn.Sequential(OrderedDict([("conv", nn.Linear(2, 2)), ("head", nn.Linear(2, 1))]))
    assert list(named.state_dict()) == ["conv.weight", "conv.bias", "head.weight", "head.bias"]
    assert named.head.out_features == 1
    s[0] = nn.Identity()
    assert isinstance(s[0], nn.Identity)


def test_modulelist_and_moduledict():
    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml.append(nn.Linear(2, 3))
    ml += [nn.Linear(3, 1)]
    ml.insert(0, nn.Identity())
    assert len(ml) == 4 and isinstance(ml[0], nn.Identity) and ml[-1].out_features == 1
    assert [n for n, _ in ml.named_parameters()][:2] == ["1.weight", "1.bias"]
    tl = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Linear(2, 2), torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)])
    assert list(ml.state_dict()) == list(tl.state_dict())
    del ml[0]
    assert len(ml) == 3 and isinstance(ml[0], nn.Linear)
    md = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md["b"] = nn.Linear(1, 2)
    assert list(md) == ["a", "b"] and "b" in md and len(md) == 2
    assert list(md.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    with pytest.raises(KeyError, match="no module named 'z'"):
        md["z"]
    pl = nn.ParameterList([nn.Parameter(shendu.zeros(2)), shendu.ones(3)])
    assert [n for n, _ in pl.named_parameters()] == ["0", "1"] and isinstance(pl[1], nn.Parameter)
