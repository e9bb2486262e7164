"""First-order optimizers against torch.optim: same problem, same init, 50 steps, parameters compared."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import shendu
from shendu import optim
from shendu.errors import ArgumentError, DTypeError, ShenduError
from tests.optim.problems import as_groups, shendu_problem, torch_problem

STEPS = 50

# (name, optimizer class name, options, per-group options or None)
CONFIGS = [
    ("sgd", "SGD", dict(lr=0.1), None),
    ("sgd-momentum", "SGD", dict(lr=0.05, momentum=0.9), None),
    ("sgd-dampening-wd", "SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01), None),
    ("sgd-nesterov", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), None),
    ("sgd-maximize", "SGD", dict(lr=0.01, momentum=0.5, maximize=True), None),
    ("sgd-groups", "SGD", dict(lr=0.05, momentum=0.9),
     [dict(lr=0.1), dict(lr=0.01, momentum=0.5, nesterov=True)]),
    ("adagrad", "Adagrad", dict(), None),
    ("adagrad-decay-wd-init", "Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.01,
                                               initial_accumulator_value=0.1), None),
    ("adagrad-groups", "Adagrad", dict(lr=0.05), [dict(), dict(lr=0.2, eps=1e-6)]),
    ("rmsprop", "RMSprop", dict(lr=0.001), None),
    ("rmsprop-centered", "RMSprop", dict(lr=0.001, centered=True), None),
    ("rmsprop-momentum-wd", "RMSprop", dict(lr=0.001, momentum=0.9, weight_decay=0.01), None),
    ("rmsprop-centered-momentum-alpha", "RMSprop", dict(lr=0.002, alpha=0.9, momentum=0.5, centered=True), None),
    ("rmsprop-groups", "RMSprop", dict(lr=0.001), [dict(centered=True), dict(lr=0.003, momentum=0.3)]),
    ("adam", "Adam", dict(lr=0.01), None),
    ("adam-amsgrad-wd", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05), None),
    ("adam-betas-eps", "Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6), None),
    ("adam-maximize", "Adam", dict(lr=0.001, maximize=True), None),
    ("adam-groups", "Adam", dict(lr=0.01), [dict(lr=0.03), dict(amsgrad=True, weight_decay=0.1)]),
    ("adamw", "AdamW", dict(lr=0.01), None),
    ("adamw-amsgrad", "AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True), None),
    ("adamw-groups", "AdamW", dict(lr=0.01), [dict(weight_decay=0.5), dict(lr=0.02, weight_decay=0.0)]),
]


def _run(lib, cls_name, options, groups, dtype, steps=STEPS):
    problem = shendu_problem if lib is optim else torch_problem
    params, closure = problem(dtype)
    opt = getattr(lib, cls_name)(as_groups(params, copy.deepcopy(groups)), **options)
    trajectory = []
    for _ in range(steps):
        closure()
        opt.step()
        trajectory.append([np.array(p.detach().numpy() if lib is torch.optim else p.data, dtype=np.float64)
                           for p in params])
    return trajectory, opt, params


@pytest.mark.parametrize("name,cls_name,options,groups", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch_over_50_steps(name, cls_name, options, groups, dtype):
    ours, opt, params = _run(optim, cls_name, options, groups, dtype)
    ref, _, _ = _run(torch.optim, cls_name, options, groups, dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-11
    for step, (a, b) in enumerate(zip(ours, ref)):
        for pa, pb in zip(a, b):
            np.testing.assert_allclose(pa, pb, rtol=tol, atol=tol, err_msg=f"{name}: step {step + 1}")
    # parameters moved for real, and dtypes are kept in parameters and state
    assert not np.allclose(ours[-1][0], ours[0][0])
    for p in params:
        assert p.dtype == dtype
        for v in opt.state[p].values():
            if isinstance(v, np.ndarray):
                assert v.dtype == dtype, (name, v.dtype)


def test_problem_gradients_match_torch():
    ps, cs = shendu_problem(np.float64)
    pt, ct = torch_problem(np.float64)
    assert abs(cs().item() - ct().item()) < 1e-12
    for a, b in zip(ps, pt):
        np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------ values from the spec
def test_sgd_momentum_dampening_first_step_uses_the_gradient():
    """torch: p 1 -> 0.9 -> 0.71 for g = 1, 2, lr 0.1, momentum 0.9, dampening 0.5 (spec section 6.1)."""
    p = shendu.tensor([1.0], dtype=shendu.float64, requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    seen = []
    for g in (1.0, 2.0):
        p.grad = shendu.tensor([g], dtype=shendu.float64)
        opt.step()
        seen.append(p.item())
    np.testing.assert_allclose(seen, [0.9, 0.71], rtol=1e-14)


def test_sgd_nesterov_values():
    """torch Nesterov: b = mu b + g; p -= lr (g + mu b): 0.81 then 0.349 (g = 1, 2; lr 0.1, mu 0.9)."""
    p = shendu.tensor([1.0], dtype=shendu.float64, requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    seen = []
    for g in (1.0, 2.0):
        p.grad = shendu.tensor([g], dtype=shendu.float64)
        opt.step()
        seen.append(p.item())
    np.testing.assert_allclose(seen, [0.81, 0.349], rtol=1e-14)


def test_adam_eps_after_bias_correction():
    """With eps = 1 one step from p = 1, g = 1, lr 0.1 gives 1 - 0.1 * 1 / (1 + 1) = 0.95 (torch's placement)."""
    p = shendu.tensor([1.0], dtype=shendu.float64, requires_grad=True)
    opt = optim.Adam([p], lr=0.1, eps=1.0)
    p.grad = shendu.tensor([1.0], dtype=shendu.float64)
    opt.step()
    assert abs(p.item() - 0.95) < 1e-15


def test_adamw_decay_uses_lr_times_lambda():
    """AdamW: 1 -> 0.85 at lr 0.1, weight_decay 0.5 (0.05 decay + the 0.1 Adam step), spec section 6.1."""
    p = shendu.tensor([1.0], dtype=shendu.float64, requires_grad=True)
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = shendu.tensor([3.0], dtype=shendu.float64)
    opt.step()
    assert abs(p.item() - 0.85) < 1e-7
    assert optim.AdamW([p]).defaults["weight_decay"] == 1e-2
    assert optim.Adam([p]).defaults["weight_decay"] == 0


def test_defaults_are_torchs():
    import inspect

    for name in ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "LBFGS"):
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        for key, param in ours.items():
            assert key in theirs, (name, key)
            assert param.default == theirs[key].default, (name, key, param.default, theirs[key].default)


# ---------------------------------------------------------------------------- the notes' momentum form
@pytest.mark.parametrize("nesterov", [False, True])
def test_cs231n_momentum_equals_torch_at_constant_lr(nesterov):
    ps, cs = shendu_problem(np.float64)
    pt, ct = torch_problem(np.float64)
    ours = optim.SGDMomentumCS231n(ps, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
    theirs = torch.optim.SGD(pt, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
    for step in range(STEPS):
        cs()
        ours.step()
        ct()
        theirs.step()
        for a, b in zip(ps, pt):
            np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {step}")


def test_cs231n_momentum_differs_after_an_lr_change():
    """v = mu v - lr g keeps the old lr inside v; torch's buffer of raw gradients is rescaled at once."""
    lrs = [0.1] * 3 + [0.01] * 3
    grads = [1.0, 2.0, -1.0, 0.5, 1.5, -2.0]
    a = shendu.tensor([1.0], dtype=shendu.float64, requires_grad=True)
    b = shendu.tensor([1.0], dtype=shendu.float64, requires_grad=True)
    cs231n, torch_form = optim.SGDMomentumCS231n([a], lr=0.1, momentum=0.9), optim.SGD([b], lr=0.1, momentum=0.9)
    x_a = x_b = 1.0
    v = buf = 0.0
    for step, (lr, g) in enumerate(zip(lrs, grads)):
        for opt, p in ((cs231n, a), (torch_form, b)):
            opt.param_groups[0]["lr"] = lr
            p.grad = shendu.tensor([g], dtype=shendu.float64)
            opt.step()
        v = 0.9 * v - lr * g                       # the notes' formula, by hand
        x_a += v
        buf = g if step == 0 else 0.9 * buf + g    # torch's formula, by hand
        x_b -= lr * buf
        assert abs(a.item() - x_a) < 1e-14 and abs(b.item() - x_b) < 1e-14
        if step < 3:
            assert abs(a.item() - b.item()) < 1e-14
    assert abs(a.item() - b.item()) > 1e-3


# ------------------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("name,cls_name,options,groups",
                         [c for c in CONFIGS if c[0] in ("sgd-groups", "adagrad-decay-wd-init", "rmsprop-groups",
                                                         "adam-groups", "adamw-amsgrad")],
                         ids=lambda c: c if isinstance(c, str) else "")
def test_state_dict_round_trip_resumes_exactly(name, cls_name, options, groups):
    ps, cs = shendu_problem(np.float64)
    opt = getattr(optim, cls_name)(as_groups(ps, copy.deepcopy(groups)), **options)
    for _ in range(10):
        cs()
        opt.step()
    sd = opt.state_dict()
    snapshot = [p.data.copy() for p in ps]
    for _ in range(10):
        cs()
        opt.step()
    straight = [p.data.copy() for p in ps]

    # the state dict is a snapshot (later steps did not change it), JSON-friendly apart from arrays
    text = json.dumps(sd, default=lambda a: a.tolist())
    assert '"params"' in text
    for p, s in zip(ps, snapshot):
        p.data[...] = s
    opt2 = getattr(optim, cls_name)(as_groups(ps, copy.deepcopy(groups)), **options)
    sd_str_keys = dict(sd, state={str(k): v for k, v in sd["state"].items()})  # as JSON would give them
    opt2.load_state_dict(sd_str_keys)
    for _ in range(10):
        cs()
        opt2.step()
    for a, b in zip(ps, straight):
        np.testing.assert_array_equal(a.data, b)


def test_state_dict_layout_matches_torch():
    ps, cs = shendu_problem(np.float32)
    pt, ct = torch_problem(np.float32)
    groups = [dict(lr=0.1), dict(lr=0.01, amsgrad=True)]
    ours = optim.Adam(as_groups(ps, groups), lr=0.01)
    theirs = torch.optim.Adam(as_groups(pt, groups), lr=0.01)
    cs()
    ours.step()
    ct()
    theirs.step()
    a, b = ours.state_dict(), theirs.state_dict()
    assert set(a["state"]) == set(b["state"]) == {0, 1, 2, 3}
    for k in a["state"]:
        assert set(a["state"][k]) == set(b["state"][k])
        assert a["state"][k]["step"] == float(b["state"][k]["step"])
    for ga, gb in zip(a["param_groups"], b["param_groups"]):
        assert ga["params"] == gb["params"]
        for key in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"):
            assert ga[key] == gb[key]


def test_load_torch_state_dict_then_continue_like_torch():
    """A torch optimizer's state (tensors turned into arrays) resumes in shendu on torch's trajectory."""
    ps, cs = shendu_problem(np.float64)
    pt, ct = torch_problem(np.float64)
    theirs = torch.optim.Adam(pt, lr=0.01, amsgrad=True)
    for _ in range(5):
        ct()
        theirs.step()
    sd = theirs.state_dict()
    sd = {"state": {k: {n: (v.numpy() if torch.is_tensor(v) else v) for n, v in s.items()}
                    for k, s in sd["state"].items()},
          "param_groups": sd["param_groups"]}
    for p, q in zip(ps, pt):
        p.data[...] = q.detach().numpy()
    ours = optim.Adam(ps, lr=0.5)  # lr and state come from the state dict
    ours.load_state_dict(sd)
    assert ours.param_groups[0]["lr"] == 0.01 and ours.state[ps[0]]["step"] == 5.0
    for _ in range(5):
        cs()
        ours.step()
        ct()
        theirs.step()
    for a, b in zip(ps, pt):
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_load_state_dict_errors_change_nothing():
    ps, cs = shendu_problem(np.float64)
    opt = optim.SGD(as_groups(ps, [dict(), dict(lr=0.5)]), lr=0.1, momentum=0.9)
    cs()
    opt.step()
    sd = opt.state_dict()
    one_group = optim.SGD(ps, lr=0.1, momentum=0.9)
    with pytest.raises(optim.OptimizerStateError, match="2 parameter group"):
        one_group.load_state_dict(sd)
    other = optim.SGD([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.1, momentum=0.9)
    before = other.state_dict()
    with pytest.raises(optim.OptimizerStateError, match="parameter group 0 has 2"):
        other.load_state_dict(sd)
    assert other.state_dict()["param_groups"] == before["param_groups"]
    bad = copy.deepcopy(sd)
    bad["state"][0]["momentum_buffer"] = np.zeros(7)
    fresh = optim.SGD(as_groups(ps, [dict(), dict(lr=0.5)]), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state_dict(bad)
    assert not fresh.state
    assert issubclass(optim.OptimizerStateError, ShenduError)


# -------------------------------------------------------------------------------- the Optimizer base
def test_param_groups_defaults_and_add_param_group():
    ps, _ = shendu_problem(np.float32)
    opt = optim.SGD([{"params": ps[:2]}, {"params": ps[2:3], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert all(g["momentum"] == 0.9 and g["nesterov"] is False for g in opt.param_groups)
    opt.add_param_group({"params": ps[3], "momentum": 0.0})
    assert opt.param_groups[-1]["params"][0] is ps[3] and opt.param_groups[-1]["lr"] == 0.1
    with pytest.raises(ArgumentError, match="more than one parameter group"):
        opt.add_param_group({"params": [ps[0]]})


def test_named_parameters_are_accepted():
    ps, _ = shendu_problem(np.float32)
    opt = optim.Adam([("w1", ps[0]), ("b1", ps[1])])
    assert opt.param_groups[0]["param_names"] == ["w1", "b1"]
    assert opt.param_groups[0]["params"][1] is ps[1]


@pytest.mark.parametrize("make,exc,fragment", [
    (lambda p: optim.SGD(p[0], lr=0.1), DTypeError, "iterable of Tensors"),
    (lambda p: optim.SGD([], lr=0.1), ArgumentError, "empty parameter list"),
    (lambda p: optim.SGD(set(p), lr=0.1), DTypeError, "ordered collection"),
    (lambda p: optim.SGD([p[0], p[0]], lr=0.1), ArgumentError, "twice"),
    (lambda p: optim.SGD([p[0] * 2], lr=0.1), ArgumentError, "non-leaf"),
    (lambda p: optim.SGD([np.zeros(3)], lr=0.1), DTypeError, "ndarray"),
    (lambda p: optim.SGD(p, lr=-0.1), ArgumentError, "lr"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ArgumentError, "Nesterov"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ArgumentError, "dampening"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ArgumentError, "betas"),
    (lambda p: optim.Adam(p, eps=-1.0), ArgumentError, "eps"),
    (lambda p: optim.RMSprop(p, alpha=-0.5), ArgumentError, "alpha"),
    (lambda p: optim.Adagrad(p, lr_decay=-1.0), ArgumentError, "lr_decay"),
    (lambda p: optim.AdamW(p, weight_decay=-1.0), ArgumentError, "weight_decay"),
])
def test_bad_arguments_raise_clear_errors(make, exc, fragment):
    ps, _ = shendu_problem(np.float32)
    with pytest.raises(exc, match=fragment):
        make(ps)


def test_zero_grad_and_closure():
    ps, cs = shendu_problem(np.float32)
    opt = optim.SGD(ps, lr=0.1)
    loss = opt.step(cs)
    assert isinstance(loss, shendu.Tensor) and loss.shape == ()
    grad_array = ps[0].grad.data
    opt.zero_grad(set_to_none=False)
    assert ps[0].grad.data is grad_array and not grad_array.any()
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    before = [p.data.copy() for p in ps]
    opt.step()  # no gradients: nothing moves
    for a, b in zip(ps, before):
        np.testing.assert_array_equal(a.data, b)


def test_step_never_writes_into_grad():
    ps, cs = shendu_problem(np.float64)
    for cls, kw in ((optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)),
                    (optim.Adam, dict(weight_decay=0.1)), (optim.RMSprop, dict(centered=True, momentum=0.5)),
                    (optim.Adagrad, dict(weight_decay=0.1)), (optim.SGDMomentumCS231n, dict(lr=0.1))):
        opt = cls(ps, **kw)
        cs()
        grads = [p.grad.data.copy() for p in ps]
        opt.step()
        opt.step()
        for p, g in zip(ps, grads):
            np.testing.assert_array_equal(p.grad.data, g)


def test_step_under_no_grad_and_param_identity_kept():
    ps, cs = shendu_problem(np.float32)
    arrays = [p.data for p in ps]
    opt = optim.Adam(ps, lr=0.1)
    cs()
    with shendu.no_grad():
        opt.step()
    assert all(p.data is a for p, a in zip(ps, arrays))  # updated in place, like torch
    assert all(p.is_leaf and p.requires_grad for p in ps)


@pytest.mark.skipif(not hasattr(shendu.nn, "Linear"), reason="shendu.nn.Linear not available yet")
def test_with_nn_module_parameters():
    """Optimizers take Module.parameters() (nn.Parameter); 20 AdamW steps on a Linear layer match torch."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 5)), rng.standard_normal((8, 3))
    ours, theirs = shendu.nn.Linear(5, 3).to(shendu.float64), torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
        theirs.bias.copy_(torch.tensor(ours.bias.data))
    opt_s, opt_t = optim.AdamW(ours.parameters(), lr=0.05), torch.optim.AdamW(theirs.parameters(), lr=0.05)
    xs, ys, xt, yt = shendu.tensor(x), shendu.tensor(y), torch.tensor(x), torch.tensor(y)
    for _ in range(20):
        opt_s.zero_grad()
        ((ours(xs) - ys) ** 2).mean().backward()
        opt_s.step()
        opt_t.zero_grad()
        ((theirs(xt) - yt) ** 2).mean().backward()
        opt_t.step()
    np.testing.assert_allclose(ours.weight.data, theirs.weight.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.bias.data, theirs.bias.detach().numpy(), rtol=1e-10, atol=1e-12)
