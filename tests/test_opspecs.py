"""Generic tests run over every entry of the op registry (tests/opspecs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shendu
from tests.opspecs import all_specs

SPECS = all_specs()
CASES = [(s, i) for s in SPECS for i in range(len(s.samples))]
DIFF_CASES = [(s, i) for s, i in CASES if s.differentiable]
ERROR_CASES = [(s, i) for s in SPECS for i in range(len(s.errors))]


def _id(case):
    s, i = case
    d = s.samples[i].desc if i < len(s.samples) and s.samples[i].desc else str(i)
    return f"{s.name}-{d}"


def _noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values in a non-C-contiguous layout."""
    if a.ndim == 0:
        return a
    if a.ndim == 1:
        big = np.repeat(a, 2)
        return big[::2]
    return np.asfortranarray(a)


def _convert(lib, x, dtype, requires_grad, noncontig=False):
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "f":
            a = x.astype(dtype)
            if noncontig:
                a = _noncontiguous(a)
            if lib is torch:
                return torch.tensor(a, requires_grad=requires_grad)
            t = shendu.from_numpy(a)
            return t.requires_grad_(requires_grad)
        if lib is torch:
            return torch.from_numpy(x.copy())
        return shendu.from_numpy(x.copy())
    if isinstance(x, list) and x and all(isinstance(e, np.ndarray) for e in x):
        return [_convert(lib, e, dtype, requires_grad, noncontig) for e in x]
    return x


def _grad_positions(sample):
    if sample.grad is not None:
        return set(sample.grad)
    pos = set()
    for i, a in enumerate(sample.args):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            pos.add(i)
        if isinstance(a, list) and a and all(isinstance(e, np.ndarray) and e.dtype.kind == "f" for e in a):
            pos.add(i)
    return pos


def _build(lib, sample, dtype, noncontig=False):
    gp = _grad_positions(sample)
    args = [_convert(lib, a, dtype, i in gp, noncontig) for i, a in enumerate(sample.args)]
    kwargs = {k: _convert(lib, v, dtype, False) for k, v in sample.kwargs.items()}
    leaves = []
    for i in sorted(gp):
        a = args[i]
        leaves.extend(a if isinstance(a, list) else [a])
    return args, kwargs, leaves


def _flat(out):
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            res.extend(_flat(o))
        return res
    return [out]


def _np(t):
    if isinstance(t, torch.Tensor):
        return t.detach().numpy()
    if isinstance(t, shendu.Tensor):
        return t.data
    return np.asarray(t)


def _call(spec, lib, args, kwargs):
    fn = spec.torch_op if (lib is torch and spec.torch_op is not None) else spec.op
    return fn(lib, *args, **kwargs)


def _tols(spec, dtype, grad=False):
    if dtype == np.float64:
        return dict(rtol=1e-9, atol=1e-11)
    if grad:
        return dict(rtol=spec.grad_rtol32, atol=spec.grad_atol32)
    return dict(rtol=spec.rtol32, atol=spec.atol32)


def _reference(spec, sample, dtype):
    """Expected outputs: torch's, or the spec's float64 reference cast to dtype."""
    if spec.has_torch:
        args, kwargs, _ = _build(torch, sample, dtype)
        return [_np(o) for o in _flat(_call(spec, torch, args, kwargs))]
    args = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in sample.args]
    return [np.asarray(o) for o in _flat(spec.ref(*args, **sample.kwargs))]


def _float_outputs(outs):
    return [o for o in outs if isinstance(o, shendu.Tensor) and o.dtype.kind == "f" and o.requires_grad]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_forward(case, dtype):
    spec, i = case
    sample = spec.samples[i]
    args, kwargs, _ = _build(shendu, sample, dtype)
    got = _flat(_call(spec, shendu, args, kwargs))
    want = _reference(spec, sample, dtype)
    assert len(got) == len(want), f"{spec.name}: {len(got)} outputs, reference has {len(want)}"
    for g, w in zip(got, want):
        g = _np(g)
        assert g.shape == w.shape, f"{spec.name}: shape {g.shape}, expected {w.shape}"
        if spec.has_torch:
            assert g.dtype == w.dtype, f"{spec.name}: dtype {g.dtype}, torch gives {w.dtype}"
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, **_tols(spec, dtype), err_msg=spec.name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=spec.name)


def _cotangents(outs, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(o.shape) for o in outs]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", [c for c in DIFF_CASES if c[0].has_torch],
                         ids=[_id(c) for c in DIFF_CASES if c[0].has_torch])
def test_backward_vs_torch(case, dtype):
    spec, i = case
    sample = spec.samples[i]
    s_args, s_kwargs, s_leaves = _build(shendu, sample, dtype)
    t_args, t_kwargs, t_leaves = _build(torch, sample, dtype)
    s_outs = _float_outputs(_flat(_call(spec, shendu, s_args, s_kwargs)))
    t_outs = [o for o in _flat(_call(spec, torch, t_args, t_kwargs))
              if isinstance(o, torch.Tensor) and o.is_floating_point() and o.requires_grad]
    assert len(s_outs) == len(t_outs) > 0
    cots = _cotangents(s_outs, seed=i)
    s_grads = shendu.autograd.grad(s_outs, s_leaves, [c.astype(dtype) for c in cots], allow_unused=True)
    t_grads = torch.autograd.grad(t_outs, t_leaves, [torch.tensor(c.astype(dtype)) for c in cots],
                                  allow_unused=True)
    for k, (sg, tg) in enumerate(zip(s_grads, t_grads)):
        if tg is None:
            assert sg is None or not np.any(sg.data), f"{spec.name}: grad {k} should be zero/None"
            continue
        assert sg is not None, f"{spec.name}: grad {k} is None, torch has one"
        assert sg.dtype == dtype, f"{spec.name}: grad {k} has dtype {sg.dtype}"
        np.testing.assert_allclose(sg.data, _np(tg), **_tols(spec, dtype, grad=True),
                                   err_msg=f"{spec.name} grad of input {k}")


@pytest.mark.parametrize("case", [c for c in DIFF_CASES if c[0].gradcheck],
                         ids=[_id(c) for c in DIFF_CASES if c[0].gradcheck])
def test_gradcheck(case):
    spec, i = case
    sample = spec.samples[i]
    args, kwargs, leaves = _build(shendu, sample, np.float64)
    n = sum(leaf.numel() for leaf in leaves)
    flat_leaves = list(leaves)

    def fn(*xs):
        # rebuild args with the (possibly perturbed) leaves in place
        it = iter(xs)
        new = []
        for a in args:
            if isinstance(a, list) and a and any(any(e is f for f in flat_leaves) for e in a):
                new.append([next(it) if any(e is f for f in flat_leaves) else e for e in a])
            elif isinstance(a, shendu.Tensor) and any(a is leaf for leaf in flat_leaves):
                new.append(next(it))
            else:
                new.append(a)
        return tuple(_flat(_call(spec, shendu, new, kwargs)))

    mode = "full" if n <= 40 else "directional"
    assert shendu.autograd.gradcheck(fn, tuple(leaves), mode=mode, atol=1e-6, rtol=1e-4)
    if mode == "directional":  # a few more directions for larger inputs
        for seed in (1, 2):
            assert shendu.autograd.gradcheck(fn, tuple(leaves), mode=mode, atol=1e-6, rtol=1e-4, seed=seed)


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_noncontiguous_and_dtype(case):
    spec, i = case
    sample = spec.samples[i]
    a1, k1, l1 = _build(shendu, sample, np.float32)
    a2, k2, l2 = _build(shendu, sample, np.float32, noncontig=True)
    o1 = _flat(_call(spec, shendu, a1, k1))
    o2 = _flat(_call(spec, shendu, a2, k2))
    for x, y in zip(o1, o2):
        np.testing.assert_allclose(_np(y), _np(x), rtol=1e-6, atol=1e-6, err_msg=spec.name)
        if isinstance(x, shendu.Tensor) and x.dtype.kind == "f":
            assert x.dtype == np.float32, f"{spec.name}: float32 input gave {x.dtype} output"
    if spec.differentiable:
        f1, f2 = _float_outputs(o1), _float_outputs(o2)
        if f1:
            cots = [c.astype(np.float32) for c in _cotangents(f1, seed=7)]
            g1 = shendu.autograd.grad(f1, l1, cots, allow_unused=True)
            g2 = shendu.autograd.grad(f2, l2, cots, allow_unused=True)
            for x, y in zip(g1, g2):
                if x is not None:
                    assert x.dtype == np.float32, f"{spec.name}: float32 input got a {x.dtype} gradient"
                    np.testing.assert_allclose(y.data, x.data, rtol=1e-5, atol=1e-6, err_msg=spec.name)


@pytest.mark.parametrize("case", DIFF_CASES, ids=[_id(c) for c in DIFF_CASES])
def test_backward_twice(case):
    """retain_graph=True lets backward run twice; gradients accumulate to exactly twice the first."""
    spec, i = case
    sample = spec.samples[i]
    args, kwargs, leaves = _build(shendu, sample, np.float64)
    outs = _float_outputs(_flat(_call(spec, shendu, args, kwargs)))
    if not outs:
        pytest.fail(f"{spec.name}: differentiable spec without a differentiable output")
    cots = _cotangents(outs, seed=3)
    loss = sum((o * shendu.tensor(c)).sum() for o, c in zip(outs, cots))
    loss.backward(retain_graph=True)
    first = [None if leaf.grad is None else leaf.grad.data.copy() for leaf in leaves]
    loss.backward()
    for leaf, g in zip(leaves, first):
        if g is not None:
            np.testing.assert_allclose(leaf.grad.data, 2 * g, rtol=1e-12, atol=1e-12, err_msg=spec.name)
    with pytest.raises(shendu.errors.AutogradError, match="second time"):
        loss.backward()


@pytest.mark.parametrize("case", ERROR_CASES, ids=[f"{s.name}-err{i}" for s, i in ERROR_CASES])
def test_errors(case):
    spec, i = case
    err = spec.errors[i]
    args = [_convert(shendu, a, np.float32, False) for a in err.args]
    with pytest.raises(err.exc, match=err.match):
        spec.op(shendu, *args, **err.kwargs)
