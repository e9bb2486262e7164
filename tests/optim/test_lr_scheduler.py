"""Learning-rate schedules against torch.optim.lr_scheduler: 100-step sequences, momentum cycling, resuming."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import shendu
from shendu import optim
from shendu.errors import ArgumentError
from shendu.optim import lr_scheduler as ours_sched

STEPS = 100


def _make_opt(lib, kind="sgd"):
    """Two parameter groups with different lrs, in shendu (lib=shendu.optim) or torch (lib=torch.optim)."""
    make = shendu.zeros if lib is optim else torch.zeros
    a, b = make(3, requires_grad=True), make(2, requires_grad=True)
    groups = [{"params": [a]}, {"params": [b], "lr": 0.02}]
    if kind == "adam":
        return lib.Adam(groups, lr=0.1)
    return lib.SGD(groups, lr=0.1, momentum=0.9)


def _grads(opt, lib):
    for g in opt.param_groups:
        for p in g["params"]:
            p.grad = shendu.ones(*p.shape) if lib is optim else torch.ones(p.shape)


# Each case builds a scheduler from (scheduler module, optimizer); the same lambda serves both libraries.
CASES = {
    "LambdaLR": lambda m, o: m.LambdaLR(o, lambda e: 0.95 ** e),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, [lambda e: 1 / (1 + e), lambda e: 0.5 ** (e // 10)]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lambda e: 0.97 if e % 2 else 0.99),
    "StepLR": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[10, 30, 30, 80], gamma=0.3),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=10),
    "LinearLR-warmup": lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=20),
    "LinearLR-decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=60),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.97),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=60, power=2.0),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=1e-3),
    "CosineAnnealingLR-zero-min": lambda m, o: m.CosineAnnealingLR(o, T_max=100),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=10, eta_min=1e-4),
    "CosineAnnealingWarmRestarts-Tmult": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.2, total_iters=5), m.ExponentialLR(o, gamma=0.95)], milestones=[5]),
    "SequentialLR-three": lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, factor=0.5, total_iters=4), m.StepLR(o, step_size=5),
            m.CosineAnnealingLR(o, T_max=20)], milestones=[8, 40]),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler(
        [m.ConstantLR(o, factor=0.3, total_iters=8), m.ExponentialLR(o, gamma=0.96)]),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.3], total_steps=STEPS),
    "OneCycleLR-linear": lambda m, o: m.OneCycleLR(o, max_lr=0.5, epochs=10, steps_per_epoch=10,
                                                   anneal_strategy="linear", pct_start=0.25),
    "OneCycleLR-three-phase": lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS, three_phase=True,
                                                        div_factor=10.0, final_div_factor=100.0),
    "OneCycleLR-no-momentum": lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS, cycle_momentum=False),
}


def _sequence(lib, sched_mod, build, kind="sgd", steps=STEPS):
    opt = _make_opt(lib, kind)
    sched = build(sched_mod, opt)
    lrs, moms = [], []
    for _ in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups] + list(sched.get_last_lr()))
        moms.append([g["betas"][0] if kind == "adam" else g["momentum"] for g in opt.param_groups])
        _grads(opt, lib)
        opt.step()
        sched.step()
    lrs.append([g["lr"] for g in opt.param_groups] + list(sched.get_last_lr()))
    return np.array(lrs, dtype=np.float64), np.array(moms, dtype=np.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_sequence_matches_torch(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # we call optimizer.step() first: no warning may appear
        ours, ours_m = _sequence(optim, ours_sched, CASES[name])
    theirs, theirs_m = _sequence(torch.optim, torch.optim.lr_scheduler, CASES[name])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours_m, theirs_m, rtol=1e-12, atol=1e-15)
    assert len(np.unique(ours[:, 0])) > 1  # the schedule really changes the lr


@pytest.mark.parametrize("name", ["OneCycleLR", "OneCycleLR-three-phase"])
def test_one_cycle_cycles_adam_beta1(name):
    ours, ours_m = _sequence(optim, ours_sched, CASES[name], kind="adam")
    theirs, theirs_m = _sequence(torch.optim, torch.optim.lr_scheduler, CASES[name], kind="adam")
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours_m, theirs_m, rtol=1e-12, atol=1e-15)
    assert ours_m.min() == pytest.approx(0.85) and ours_m.max() == pytest.approx(0.95)


def test_one_cycle_stepping_past_total_steps_raises():
    opt = _make_opt(optim)
    sched = ours_sched.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        opt.step()
        sched.step()
    with pytest.raises(ArgumentError, match="total_steps is 3"):
        sched.step()


METRICS = [1.0, 0.9, 0.95, 0.95, 0.94, 0.96, 0.97, 0.5, 0.5, 0.5, 0.5, 0.49995, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6,
           0.3, 0.3, 0.31, 0.32, 0.33, 0.34, 0.35, 0.36, 0.37, 0.38, 0.39, 0.4] * 3


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(patience=2),
    dict(mode="max", patience=1, factor=0.5),
    dict(patience=1, threshold=0.1, threshold_mode="abs", cooldown=2),
    dict(patience=0, factor=0.5, min_lr=[0.01, 0.015]),
    dict(patience=0, factor=0.5, min_lr=0.004, eps=1e-3),
])
def test_reduce_on_plateau_matches_torch(kwargs):
    seqs = []
    for lib, mod in ((optim, ours_sched), (torch.optim, torch.optim.lr_scheduler)):
        opt = _make_opt(lib)
        sched = mod.ReduceLROnPlateau(opt, **kwargs)
        lrs = []
        for m in METRICS:
            opt.step()
            sched.step(m)
            lrs.append([g["lr"] for g in opt.param_groups] + list(sched.get_last_lr()))
        seqs.append(np.array(lrs))
    np.testing.assert_allclose(seqs[0], seqs[1], rtol=1e-12, atol=0)
    assert seqs[0][-1, 0] < 0.1


def test_linear_warmup_is_torchs_linear_lr_then_schedule():
    def ours_build(m, o):
        return m.LinearWarmup(o, warmup_steps=10, after=m.CosineAnnealingLR(o, T_max=50, eta_min=0.001))

    def torch_build(m, o):
        after = m.CosineAnnealingLR(o, T_max=50, eta_min=0.001)
        return m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=10), after], milestones=[10])

    ours, _ = _sequence(optim, ours_sched, ours_build)
    theirs, _ = _sequence(torch.optim, torch.optim.lr_scheduler, torch_build)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours[:11, 0], 0.1 * (0.1 + 0.09 * np.arange(11)), rtol=1e-12)


def test_linear_warmup_without_after_holds_the_lr():
    ours, _ = _sequence(optim, ours_sched, lambda m, o: m.LinearWarmup(o, warmup_steps=4, start_factor=0.5), steps=8)
    np.testing.assert_allclose(ours[:, 0], [0.05, 0.0625, 0.075, 0.0875, 0.1, 0.1, 0.1, 0.1, 0.1], rtol=1e-12)


@pytest.mark.parametrize("warmup", [0, 1, 8])
def test_inverse_sqrt_matches_a_lambda_lr_in_torch(warmup):
    def factor(e):  # t = e + 1 starts at 1
        t = e + 1
        if warmup == 0:
            return 1 / math.sqrt(t)
        return t / warmup if t <= warmup else math.sqrt(warmup / t)

    ours, _ = _sequence(optim, ours_sched, lambda m, o: m.InverseSqrtLR(o, warmup_steps=warmup))
    theirs, _ = _sequence(torch.optim, torch.optim.lr_scheduler, lambda m, o: m.LambdaLR(o, factor))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    peak = max(warmup, 1) - 1
    assert ours[:, 0].argmax() == peak and ours[peak, 0] == pytest.approx(0.1)


def test_inverse_sqrt_equals_the_transformer_formula():
    d_model, w = 512, 4000
    opt = _make_opt(optim)
    for g in opt.param_groups:
        g["lr"] = (d_model * w) ** -0.5
    sched = ours_sched.InverseSqrtLR(opt, warmup_steps=w)
    for t in range(1, 10001):
        if t in (1, 100, 3999, 4000, 4001, 10000):
            expected = d_model ** -0.5 * min(t ** -0.5, t * w ** -1.5)
            assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)
        opt.step()
        sched.step()


@pytest.mark.parametrize("name", list(CASES) + ["LinearWarmup", "InverseSqrtLR"])
def test_state_dict_round_trip_resumes_the_schedule(name):
    build = CASES.get(name) or {
        "LinearWarmup": lambda m, o: m.LinearWarmup(o, 10, after=m.ExponentialLR(o, 0.9)),
        "InverseSqrtLR": lambda m, o: m.InverseSqrtLR(o, warmup_steps=5),
    }[name]
    straight, _ = _sequence(optim, ours_sched, build, steps=60)

    opt = _make_opt(optim)
    sched = build(ours_sched, opt)
    for _ in range(30):
        opt.step()
        sched.step()
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    assert "optimizer" not in sched_state

    opt2 = _make_opt(optim)
    sched2 = build(ours_sched, opt2)  # build the scheduler first, then load (as in torch)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    resumed = []
    for _ in range(30):
        resumed.append([g["lr"] for g in opt2.param_groups] + list(sched2.get_last_lr()))
        opt2.step()
        sched2.step()
    resumed.append([g["lr"] for g in opt2.param_groups] + list(sched2.get_last_lr()))
    np.testing.assert_allclose(np.array(resumed), straight[30:], rtol=1e-15, atol=0)


def test_lambda_state_dict_saves_callable_objects_only():
    class Decay:
        def __init__(self):
            self.rate = 0.5

        def __call__(self, e):
            return self.rate ** e

    opt = _make_opt(optim)
    sched = ours_sched.LambdaLR(opt, [Decay(), lambda e: 1.0])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"rate": 0.5}, None]
    sd["lr_lambdas"][0]["rate"] = 0.25
    sched.load_state_dict(sd)
    assert sched.lr_lambdas[0].rate == 0.25
    assert "lr_lambdas" in sd  # the caller's dict is left whole


@pytest.mark.parametrize("name,epochs", [
    ("StepLR", [0, 3, 7, 8, 20, 5]),
    ("CosineAnnealingLR", [0, 4, 15, 30, 2]),
    ("MultiStepLR", [0, 10, 31, 80, 12]),
    ("CosineAnnealingWarmRestarts-Tmult", [0, 0.5, 3.2, 5, 7.5, 16, 40.25, 2]),
])
def test_step_with_epoch_uses_the_closed_form_like_torch(name, epochs):
    seqs = []
    for lib, mod in ((optim, ours_sched), (torch.optim, torch.optim.lr_scheduler)):
        opt = _make_opt(lib)
        sched = CASES[name](mod, opt)
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates step(epoch)
            for e in epochs:
                opt.step()
                sched.step(e)
                out.append([g["lr"] for g in opt.param_groups])
        seqs.append(np.array(out))
    np.testing.assert_allclose(seqs[0], seqs[1], rtol=1e-12, atol=1e-15)


def test_scheduler_step_before_optimizer_step_warns():
    opt = _make_opt(optim)
    sched = ours_sched.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        sched.step()


def test_cosine_annealing_spec_values():
    """Spec 6.3: 1.0, 0.9755, 0.9045, ..., 0 at t = T_max = 10; StepLR(3): 1, 1, 1, 0.1, ... 0.01."""
    opt = optim.SGD([shendu.zeros(1, requires_grad=True)], lr=1.0)
    sched = ours_sched.CosineAnnealingLR(opt, T_max=10)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs[:3], [1.0, 0.9755282581, 0.9045084972], rtol=1e-9)
    assert abs(lrs[10]) < 1e-15
    np.testing.assert_allclose(lrs, 0.5 * (1 + np.cos(np.pi * np.arange(11) / 10)), atol=1e-15)
    opt = optim.SGD([shendu.zeros(1, requires_grad=True)], lr=1.0)
    sched = ours_sched.StepLR(opt, step_size=3)
    lrs = []
    for _ in range(7):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, [1, 1, 1, 0.1, 0.1, 0.1, 0.01], rtol=1e-12)


def test_reduce_on_plateau_state_dict_round_trip():
    def make():
        opt = _make_opt(optim)
        return opt, ours_sched.ReduceLROnPlateau(opt, patience=1, cooldown=1, factor=0.5)

    opt, sched = make()
    straight = []
    for m in METRICS:
        sched.step(m)
        straight.append(opt.param_groups[0]["lr"])
    opt, sched = make()
    for m in METRICS[:20]:
        sched.step(m)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    opt2, sched2 = make()
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    resumed = []
    for m in METRICS[20:]:
        sched2.step(m)
        resumed.append(opt2.param_groups[0]["lr"])
    assert resumed == straight[20:] and len(set(straight)) > 2


@pytest.mark.parametrize("make,fragment", [
    (lambda o: ours_sched.StepLR(o, step_size=0), "step_size"),
    (lambda o: ours_sched.LinearLR(o, start_factor=0.0), "start_factor"),
    (lambda o: ours_sched.ConstantLR(o, factor=2.0), "factor"),
    (lambda o: ours_sched.CosineAnnealingWarmRestarts(o, T_0=0), "T_0"),
    (lambda o: ours_sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=0), "T_mult"),
    (lambda o: ours_sched.LambdaLR(o, [lambda e: 1.0]), "lr_lambdas"),
    (lambda o: ours_sched.OneCycleLR(o, max_lr=0.1), "total_steps"),
    (lambda o: ours_sched.OneCycleLR(o, max_lr=[0.1, 0.2, 0.3], total_steps=5), "max_lr has 3 values"),
    (lambda o: ours_sched.OneCycleLR(o, max_lr=0.1, total_steps=5, anneal_strategy="exp"), "anneal_strategy"),
    (lambda o: ours_sched.ReduceLROnPlateau(o, factor=1.0), "factor"),
    (lambda o: ours_sched.ReduceLROnPlateau(o, mode="down"), "mode"),
    (lambda o: ours_sched.SequentialLR(o, [ours_sched.StepLR(o, 2)], milestones=[3]), "milestone"),
    (lambda o: ours_sched.SequentialLR(o, [ours_sched.ReduceLROnPlateau(o)], milestones=[]), "ReduceLROnPlateau"),
    (lambda o: ours_sched.StepLR(o, step_size=2, last_epoch=5), "initial_lr"),
    (lambda o: ours_sched.InverseSqrtLR(o, warmup_steps=-1), "warmup_steps"),
    (lambda o: ours_sched.LinearWarmup(o, warmup_steps=0), "warmup_steps"),
])
def test_bad_arguments_raise(make, fragment):
    with pytest.raises(ArgumentError, match=fragment):
        make(_make_opt(optim))


def test_one_cycle_needs_momentum_when_cycling():
    opt = optim.Adagrad([shendu.zeros(1, requires_grad=True)])
    with pytest.raises(ArgumentError, match="cycle_momentum"):
        ours_sched.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    ours_sched.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)
