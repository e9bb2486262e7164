"""Optimizer steps work in place: no per-step arrays, scratch kept out of the state dict, exact values kept."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import shendu
from shendu import optim

# the smallest is large enough that interpreter bookkeeping (a few hundred bytes) cannot pass for a temporary
SHAPES = [(300, 200), (2000,), (7, 300)]

# every update path (weight decay, momentum, dampening, nesterov, centered, amsgrad, both lerp branches)
CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGDMomentumCS231n", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adagrad", dict(lr_decay=0.01, weight_decay=0.01)),
    ("RMSprop", dict(centered=True, momentum=0.5, weight_decay=0.01)),
    ("RMSprop", dict(alpha=0.3, centered=True)),
    ("Adam", dict(weight_decay=0.01, amsgrad=True)),
    ("Adam", dict(betas=(0.3, 0.9))),
    ("AdamW", dict(amsgrad=True)),
]

# the keys torch.optim saves for these algorithms, plus the notes' velocity
STATE_KEYS = {"step", "momentum_buffer", "velocity", "sum", "square_avg", "grad_avg", "exp_avg", "exp_avg_sq",
              "max_exp_avg_sq"}


def _params(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    ps = [shendu.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in SHAPES]
    for p in ps:
        p.grad = shendu.tensor(rng.standard_normal(p.shape).astype(dtype))
    return ps


@pytest.mark.parametrize("cls_name,options", CONFIGS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CONFIGS)])
def test_step_allocates_no_arrays_after_the_first(cls_name, options):
    ps = _params()
    opt = getattr(optim, cls_name)(ps, **options)
    opt.step()  # creates state and scratch
    opt.step()  # SGD's momentum buffer is made on the first step, the in-place path starts here
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        opt.step()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    smallest = min(p.data.nbytes for p in ps)  # one temporary of the smallest parameter would exceed this
    assert peak < smallest, f"{cls_name}{options}: a step allocated {peak} bytes"


@pytest.mark.parametrize("cls_name,options", CONFIGS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CONFIGS)])
def test_scratch_is_float32_and_not_saved(cls_name, options):
    ps = _params()
    opt = getattr(optim, cls_name)(ps, **options)
    opt.step()
    opt.step()
    for p in ps:
        assert opt._scratch[p] and all(b.dtype == np.float32 and b.shape == p.shape for b in opt._scratch[p])
        assert not any(v is b for v in opt.state[p].values() for b in opt._scratch[p])
    for entry in opt.state_dict()["state"].values():
        assert set(entry) <= STATE_KEYS, set(entry) - STATE_KEYS


def test_scratch_follows_a_dtype_change_of_the_parameter():
    p = _params()[0]
    opt = optim.Adam([p], lr=0.1)
    opt.step()
    p.data = p.data.astype(np.float64)
    opt.state[p] = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in opt.state[p].items()}
    p.grad = shendu.tensor(np.ones(p.shape))
    opt.step()
    assert p.dtype == np.float64 and all(b.dtype == np.float64 for b in opt._scratch[p])


def _adam_out_of_place(p, grads, lr, beta1, beta2, eps, wd):
    """Adam written with fresh arrays in PyTorch's order of operations (the previous implementation)."""
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g + wd * p
        m += (1 - beta1) * (g - m)
        v *= beta2
        v += (1 - beta2) * g * g
        denom = np.sqrt(v) / (1 - beta2 ** t) ** 0.5 + eps
        p = p + (-(lr / (1 - beta1 ** t)) * m) / denom
    return p


def test_adam_in_place_equals_the_out_of_place_formula_bit_for_bit():
    rng = np.random.default_rng(1)
    start = rng.standard_normal((31, 17)).astype(np.float32)
    grads = [rng.standard_normal(start.shape).astype(np.float32) for _ in range(50)]
    p = shendu.tensor(start.copy(), requires_grad=True)
    opt = optim.Adam([p], lr=0.01, weight_decay=0.05)
    for g in grads:
        p.grad = shendu.tensor(g)
        opt.step()
    ref = _adam_out_of_place(start, grads, 0.01, 0.9, 0.999, 1e-8, 0.05)
    assert ref.dtype == np.float32
    np.testing.assert_array_equal(p.data, ref)
