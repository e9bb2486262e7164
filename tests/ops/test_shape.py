"""Extra tests for shendu/ops/shape.py beyond the generic registry: views, read-only gradients,
dtype promotion, torch's edge cases (empty pieces, zero repeats), pad against torch at realistic sizes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import shendu
import shendu.functional as F
from shendu.errors import ArgumentError, ShapeError

rng = np.random.default_rng(0)


def _leaf(*shape, dtype=np.float64):
    return shendu.from_numpy(rng.standard_normal(shape).astype(dtype)).requires_grad_()


def _grads(outs, leaves, cots):
    return shendu.autograd.grad(outs, leaves, cots, allow_unused=True)


# ------------------------------------------------------------------------------------------- views
@pytest.mark.parametrize("fn", [
    lambda x: F.reshape(x, (4, 6)),
    lambda x: x.view(-1),
    lambda x: F.permute(x, (2, 0, 1)),
    lambda x: F.transpose(x, 0, 2),
    lambda x: F.movedim(x, 0, -1),
    lambda x: F.unsqueeze(x, 1),
    lambda x: F.squeeze(F.unsqueeze(x, 0)),
    lambda x: F.flatten(x, 1),
    lambda x: F.expand(F.unsqueeze(x, 0), (5, 2, 3, 4)),
    lambda x: F.narrow(x, 2, 1, 2),
    lambda x: F.split(x, 2, dim=2)[1],
    lambda x: F.chunk(x, 3, dim=1)[2],
    lambda x: F.flip(x, (0, 2)),
    lambda x: F.diagonal(x, 0, 1, 2),
], ids=["reshape", "view", "permute", "transpose", "movedim", "unsqueeze", "squeeze", "flatten", "expand",
        "narrow", "split", "chunk", "flip", "diagonal"])
def test_forward_returns_a_view(fn):
    x = shendu.from_numpy(np.arange(24.0).reshape(2, 3, 4))
    y = fn(x)
    assert np.shares_memory(y.data, x.data)


def test_expand_view_is_read_only_and_not_copied():
    x = shendu.ones(3, 1)
    y = F.expand(x, (1000, 3, 500))
    assert not y.data.flags.writeable
    assert y.data.strides[0] == 0 and y.data.strides[2] == 0


_GRAD_FNS = {
    "reshape": lambda x: F.reshape(x, (6, 4)),
    "permute": lambda x: F.permute(x, (1, 2, 0)),
    "expand": lambda x: F.expand(x, (3, 2, 3, 4)),
    "repeat": lambda x: F.repeat(x, (2, 1, 3)),
    "split": lambda x: F.split(x, 1, dim=1),
    "flip": lambda x: F.flip(x, (1,)),
    "roll": lambda x: F.roll(x, (1, 2), (0, 2)),
    "narrow": lambda x: F.narrow(x, 2, 1, 2),
    "diagonal": lambda x: F.diagonal(x, 1, 1, 2),
    "triu": lambda x: F.triu(x),
    "pad_constant": lambda x: F.pad(x, (1, 2, -1, 1)),
    "pad_reflect": lambda x: F.pad(x, (2, 3), mode="reflect"),
    "pad_replicate": lambda x: F.pad(x, (2, 1, 3, 0), mode="replicate"),
    "pad_circular": lambda x: F.pad(x, (1, 4, 2, 2), mode="circular"),
    "cat": lambda x: F.cat([x, x * 2], dim=1),
    "stack": lambda x: F.stack([x, x], dim=-1),
}


@pytest.mark.parametrize("name", list(_GRAD_FNS))
def test_backward_never_writes_into_the_incoming_gradient(name):
    x = _leaf(2, 3, 4)
    outs = _GRAD_FNS[name](x)
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    cots = []
    for o in outs:
        c = rng.standard_normal(o.shape)
        c.flags.writeable = False  # any write raises
        cots.append(c)
    before = [c.copy() for c in cots]
    (g,) = _grads(outs, [x], cots)
    assert g.shape == x.shape
    for c, b in zip(cots, before):
        np.testing.assert_array_equal(c, b)


# ------------------------------------------------------------- cat / stack (lists of tensors) gradcheck
@pytest.mark.parametrize("fn", [
    lambda a, b, c: F.cat([a, b, c], dim=1),
    lambda a, b, c: F.cat((a, b, c), dim=-1),
    lambda a, b, c: F.stack([a[:, :2], b, c[:, 1:]], dim=1),
], ids=["cat", "cat_tuple", "stack"])
def test_cat_stack_gradcheck(fn):
    a, b, c = _leaf(2, 2), _leaf(2, 2), _leaf(2, 3)
    assert shendu.autograd.gradcheck(fn, (a, b, c), mode="full")


def test_cat_promotes_dtypes_like_torch():
    i = shendu.tensor([[1, 2]])
    f = shendu.tensor([[0.5, 1.5]])
    out = F.cat([i, f])
    assert out.dtype == np.float32
    assert out.tolist() == torch.cat([torch.tensor([[1, 2]]), torch.tensor([[0.5, 1.5]])]).tolist()
    assert F.cat([i, shendu.tensor([[True, False]])]).dtype == np.int64


def test_cat_skips_legacy_empty_and_gives_it_an_empty_gradient():
    e, x = _leaf(0), _leaf(2, 3)
    y = F.cat([e, x, e])
    assert y.shape == (2, 3)
    ge, gx = _grads([y], [e, x], [np.ones((2, 3))])
    assert ge.shape == (0,) and np.all(gx.data == 1)


def test_split_unused_pieces_get_zero_gradient_like_torch():
    xs = rng.standard_normal((7, 3))
    x, xt = shendu.from_numpy(xs.copy()).requires_grad_(), torch.tensor(xs, requires_grad=True)
    pieces, tpieces = F.split(x, (2, 4, 1)), torch.split(xt, [2, 4, 1])
    assert isinstance(pieces, tuple) and [p.shape for p in pieces] == [tuple(p.shape) for p in tpieces]
    (pieces[1] * 3.0).sum().backward()
    (tpieces[1] * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, xt.grad.numpy())


def test_split_accepts_a_list_of_sizes():
    assert [p.shape for p in F.split(shendu.zeros(2, 5), [1, 4], dim=1)] == [(2, 1), (2, 4)]


@pytest.mark.parametrize("n,chunks", [(0, 3), (5, 4), (6, 4), (7, 3), (1, 5), (10, 10)])
def test_chunk_sizes_match_torch(n, chunks):
    got = [p.shape for p in F.chunk(shendu.zeros(n, 2), chunks)]
    want = [tuple(p.shape) for p in torch.chunk(torch.zeros(n, 2), chunks)]
    assert got == want


def test_repeat_with_zero_copies_has_zero_gradient():
    x = _leaf(2, 3)
    y = F.repeat(x, (2, 0, 1))
    assert y.shape == tuple(torch.zeros(2, 3).repeat(2, 0, 1).shape)
    (g,) = _grads([y], [x], [np.ones(y.shape)])
    assert g.shape == (2, 3) and not np.any(g.data)


def test_repeat_backward_matches_torch_on_large_input():
    xs = rng.standard_normal((4, 5, 6)).astype(np.float32)
    x, xt = shendu.from_numpy(xs.copy()).requires_grad_(), torch.tensor(xs, requires_grad=True)
    y, yt = F.repeat(x, (3, 2, 1, 4)), xt.repeat(3, 2, 1, 4)
    c = rng.standard_normal(y.shape).astype(np.float32)
    (g,) = _grads([y], [x], [c])
    (gt,) = torch.autograd.grad(yt, xt, torch.tensor(c))
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------- pad
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape,pads", [
    ((2, 3, 17, 19), (3, 2, 1, 4)),
    ((4, 33), (5, 7)),
    ((1, 2, 5, 6, 7), (1, 2, 3, 0, 4, 4)),
    ((2, 3, 9, 8), (-2, 3, 4, -1)),
])
def test_pad_matches_torch_forward_and_backward_float32(mode, shape, pads):
    xs = rng.standard_normal(shape).astype(np.float32)
    x, xt = shendu.from_numpy(xs.copy()).requires_grad_(), torch.tensor(xs, requires_grad=True)
    y, yt = F.pad(x, pads, mode=mode), TF.pad(xt, pads, mode=mode)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.data, yt.detach().numpy())
    c = rng.standard_normal(y.shape).astype(np.float32)
    (g,) = _grads([y], [x], [c])
    (gt,) = torch.autograd.grad(yt, xt, torch.tensor(c))
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["constant", "reflect", "replicate", "circular"]), st.integers(1, 6), st.integers(1, 6),
       st.lists(st.integers(-3, 6), min_size=4, max_size=4))
def test_pad_random_against_torch(mode, h, w, pads):
    xs = rng.standard_normal((2, h, w))
    xt = torch.tensor(xs, requires_grad=True)
    try:
        yt = TF.pad(xt, tuple(pads), mode=mode)
        ok = min(yt.shape) > 0 or mode == "constant"
    except RuntimeError:
        ok = False
    if mode == "circular":  # torch reads uninitialised memory when a pad exceeds what its crops leave
        kept = [n + min(a, 0) + min(b, 0) for n, (a, b) in zip((h, w), (pads[2:], pads[:2]))]
        ok = ok and all(max(p) <= k for p, k in zip((pads[2:], pads[:2]), kept))
    if not ok:  # torch refuses: so must we (we may word it earlier, but never return garbage)
        with pytest.raises((ShapeError, ArgumentError)):
            y = F.pad(shendu.from_numpy(xs), tuple(pads), mode=mode)
            if min(y.shape) == 0:
                raise ShapeError("empty")
        return
    x = shendu.from_numpy(xs.copy()).requires_grad_()
    y = F.pad(x, tuple(pads), mode=mode)
    np.testing.assert_array_equal(y.data, yt.detach().numpy())
    c = rng.standard_normal(y.shape)
    (g,) = _grads([y], [x], [c])
    (gt,) = torch.autograd.grad(yt, xt, torch.tensor(c))
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-12, atol=1e-12)


def test_pad_value_keeps_integer_dtype():
    y = F.pad(shendu.tensor([[1, 2]]), (1, 0), value=7)
    assert y.dtype == np.int64 and y.tolist() == [[7, 1, 2]]


# ----------------------------------------------------------------------------------- Tensor methods
@pytest.mark.parametrize("call", [
    lambda t: t.view(4, 6),
    lambda t: t.view((4, -1)),
    lambda t: t.reshape(-1, 2),
    lambda t: t.permute(2, 0, 1),
    lambda t: t.permute((1, 0, 2)),
    lambda t: t.transpose(0, 1),
    lambda t: t.swapaxes(-1, 0),
    lambda t: t.mT,
    lambda t: t.flatten(1),
    lambda t: t.unflatten(2, (2, 2)),
    lambda t: t[:, :1].squeeze(1),
    lambda t: t.unsqueeze(-1),
    lambda t: t[:, :1].expand(2, 3, 4),
    lambda t: t[:, :1].expand(5, -1, -1, -1),
    lambda t: t.repeat(1, 2, 1),
    lambda t: t.tile((2,)),
    lambda t: t.flip((0,)),
    lambda t: t.roll(1, 2),
    lambda t: t.narrow(1, 1, 2),
    lambda t: t.diagonal(0, 1, 2),
    lambda t: t.movedim(0, -1),
    lambda t: t.triu(1),
    lambda t: t.tril(),
    lambda t: t.broadcast_to((3, 2, 3, 4)),
])
def test_tensor_methods_match_torch(call):
    xs = rng.standard_normal((2, 3, 4))
    got = call(shendu.from_numpy(xs))
    want = call(torch.tensor(xs))
    np.testing.assert_array_equal(got.data, want.numpy())


def test_T_on_3d_reverses_dims():
    assert shendu.zeros(2, 3, 4).T.shape == (4, 3, 2)


def test_split_and_chunk_methods_return_tuples():
    x = shendu.arange(10)
    assert [p.tolist() for p in x.split(4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [p.tolist() for p in x.chunk(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


# --------------------------------------------------------------------------------- error wording
def test_reshape_error_names_both_shapes_and_counts():
    with pytest.raises(ShapeError) as e:
        shendu.zeros(2, 3).view(4, 2)
    msg = str(e.value)
    assert "(2, 3)" in msg and "(4, 2)" in msg and "6 elements" in msg and "8 elements" in msg


def test_errors_are_raised_before_any_graph_is_built():
    x = _leaf(2, 3)
    with pytest.raises(ShapeError):
        F.cat([x, _leaf(3, 2)], dim=0)
    with pytest.raises(ArgumentError):
        F.permute(x, (0,))
    assert x.grad is None
