"""LBFGS against torch.optim.LBFGS; Newton, Gauss-Newton and Levenberg-Marquardt against plain references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

import shendu
from shendu import optim
from shendu.autograd.function import Function
from shendu.errors import ArgumentError
from shendu.optim.second_order import hessian_fd, jacobian
from tests.optim.problems import Rosenbrock, rosenbrock_hessian, shendu_problem, torch_problem, torch_rosenbrock


# ------------------------------------------------------------------------------------------- LBFGS
def _rosenbrock_pair(x0, dtype=np.float64):
    xs = shendu.tensor(np.array(x0, dtype=dtype), requires_grad=True)
    xt = torch.tensor(np.array(x0, dtype=dtype), requires_grad=True)

    def closure_s():
        xs.grad = None
        loss = Rosenbrock.apply(xs)
        loss.backward()
        return loss

    def closure_t():
        xt.grad = None
        loss = torch_rosenbrock(xt)
        loss.backward()
        return loss

    return [xs], closure_s, [xt], closure_t


def _mlp_pair(dtype=np.float64):
    ps, cs = shendu_problem(dtype)
    pt, ct = torch_problem(dtype)
    return ps, cs, pt, ct


PROBLEMS = {
    "rosenbrock-2": lambda dt: _rosenbrock_pair([-1.2, 1.0], dt),
    "rosenbrock-6": lambda dt: _rosenbrock_pair([-1.0, 1.2, -0.5, 0.8, 1.5, -0.3], dt),
    "least-squares-mlp": _mlp_pair,
}

LBFGS_OPTIONS = [
    dict(line_search_fn="strong_wolfe"),
    dict(line_search_fn="strong_wolfe", history_size=3, max_iter=15),
    dict(lr=0.1),
    dict(lr=0.5, history_size=4, max_iter=10, max_eval=12),
]


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("options", LBFGS_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_lbfgs_iterates_match_torch(problem, options):
    ps, cs, pt, ct = PROBLEMS[problem](np.float64)
    ours, theirs = optim.LBFGS(ps, **options), torch.optim.LBFGS(pt, **options)
    for outer in range(4):
        la, lb = ours.step(cs), theirs.step(ct)
        # only rounding differs (dot products, loss); it is amplified along Rosenbrock's curved valley
        assert la.item() == pytest.approx(lb.item(), rel=1e-7, abs=1e-12)
        for a, b in zip(ps, pt):
            np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-7, atol=1e-9,
                                       err_msg=f"{problem} after step {outer + 1}")
        sa, sb = ours.state[ps[0]], theirs.state[pt[0]]
        assert (sa["n_iter"], sa["func_evals"]) == (sb["n_iter"], sb["func_evals"])


def test_lbfgs_float32_follows_torch_and_converges():
    ps, cs, pt, ct = _rosenbrock_pair([-1.2, 1.0], np.float32)
    ours = optim.LBFGS(ps, line_search_fn="strong_wolfe")
    theirs = torch.optim.LBFGS(pt, line_search_fn="strong_wolfe")
    ours.step(cs)
    theirs.step(ct)
    assert ps[0].dtype == np.float32
    np.testing.assert_allclose(ps[0].data, pt[0].detach().numpy(), rtol=1e-3, atol=1e-3)
    for _ in range(5):
        ours.step(cs)
    np.testing.assert_allclose(ps[0].data, [1.0, 1.0], atol=1e-3)


def test_lbfgs_solves_rosenbrock_like_scipy():
    ps, cs, _, _ = _rosenbrock_pair([-1.0, 1.2, -0.5, 0.8, 1.5, -0.3])
    opt = optim.LBFGS(ps, line_search_fn="strong_wolfe", max_iter=200, tolerance_grad=1e-10, tolerance_change=0)
    opt.step(cs)

    def fun(x):
        r = Rosenbrock()
        val = r.forward(x)
        return float(val), r.backward(np.float64(1.0))

    ref = scipy.optimize.minimize(fun, np.array([-1.0, 1.2, -0.5, 0.8, 1.5, -0.3]), jac=True, method="L-BFGS-B",
                                  options={"maxcor": 10, "gtol": 1e-10, "ftol": 0})
    np.testing.assert_allclose(ps[0].data, ref.x, atol=1e-6)
    np.testing.assert_allclose(ps[0].data, np.ones(6), atol=1e-6)


def test_lbfgs_state_dict_round_trip():
    ps, cs, _, _ = _rosenbrock_pair([-1.2, 1.0])
    opt = optim.LBFGS(ps, line_search_fn="strong_wolfe", max_iter=5)
    opt.step(cs)
    sd = opt.state_dict()
    x_saved = ps[0].data.copy()
    opt.step(cs)
    straight = ps[0].data.copy()
    ps[0].data[...] = x_saved
    opt2 = optim.LBFGS(ps, line_search_fn="strong_wolfe", max_iter=5)
    opt2.load_state_dict(sd)
    opt2.step(cs)
    np.testing.assert_array_equal(ps[0].data, straight)


def test_lbfgs_errors():
    ps, cs, _, _ = _rosenbrock_pair([0.0, 0.0])
    with pytest.raises(ArgumentError, match="closure"):
        optim.LBFGS(ps).step(None)
    with pytest.raises(ArgumentError, match="strong_wolfe"):
        optim.LBFGS(ps, line_search_fn="armijo")
    with pytest.raises(ArgumentError, match="parameter group"):
        optim.LBFGS([{"params": ps}, {"params": [shendu.zeros(1, requires_grad=True)]}])


# ------------------------------------------------------------------------------------------ Newton
class Quadratic(Function):
    """``1/2 x^T A x - b^T x`` with gradient ``A x - b``."""

    def forward(ctx, x, A, b):
        ctx.save_for_backward(x, A, b)
        return np.asarray(0.5 * x @ A @ x - b @ x)

    def backward(ctx, gy):
        x, A, b = ctx.saved
        return gy * (A @ x - b), None, None


def _quadratic(n=5, seed=0):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    A = M @ M.T + n * np.eye(n)
    b = rng.standard_normal(n)
    x = shendu.tensor(rng.standard_normal(n), dtype=shendu.float64, requires_grad=True)

    def closure():
        x.grad = None
        loss = Quadratic.apply(x, A, b)
        loss.backward()
        return loss

    return x, closure, A, b


def _rosenbrock_closure(x0):
    x = shendu.tensor(np.array(x0, dtype=np.float64), requires_grad=True)

    def closure():
        x.grad = None
        loss = Rosenbrock.apply(x)
        loss.backward()
        return loss

    return x, closure


def test_newton_solves_a_quadratic_in_one_step():
    x, closure, A, b = _quadratic()
    optim.Newton([x]).step(closure)
    np.testing.assert_allclose(x.data, np.linalg.solve(A, b), rtol=1e-8, atol=1e-10)


def test_newton_damping_and_lr():
    x, closure, A, b = _quadratic()
    x0 = x.data.copy()
    optim.Newton([x], lr=0.5, damping=3.0).step(closure)
    expected = x0 + 0.5 * np.linalg.solve(A + 3.0 * np.eye(5), -(A @ x0 - b))
    np.testing.assert_allclose(x.data, expected, rtol=1e-8, atol=1e-10)


def test_fd_hessian_matches_exact_hessian():
    rng = np.random.default_rng(1)
    for _ in range(3):
        x0 = rng.uniform(-2, 2, size=4)
        x, closure = _rosenbrock_closure(x0)
        loss, g, H = hessian_fd(closure, [x])
        np.testing.assert_allclose(H, rosenbrock_hessian(x0), rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(x.data, x0)  # parameters restored
        np.testing.assert_allclose(x.grad.data, g)  # and .grad left at x


def _reference_newton(x0, steps):
    """Pure Newton with the exact Hessian, written out: x <- x - H(x)^-1 g(x)."""
    xs, x = [], np.array(x0, dtype=np.float64)
    for _ in range(steps):
        r = Rosenbrock()
        r.forward(x)
        g = r.backward(np.float64(1.0))
        x = x - np.linalg.solve(rosenbrock_hessian(x), g)
        xs.append(x.copy())
    return xs


@pytest.mark.parametrize("exact", [False, True])
def test_newton_iterates_match_reference_on_rosenbrock(exact):
    x, closure = _rosenbrock_closure([-1.2, 1.0])
    opt = optim.Newton([x], hessian=rosenbrock_hessian if exact else None)
    ref = _reference_newton([-1.2, 1.0], 7)
    for k, xr in enumerate(ref):
        opt.step(closure)
        np.testing.assert_allclose(x.data, xr, rtol=1e-12 if exact else 1e-5, atol=1e-12 if exact else 1e-6,
                                   err_msg=f"iteration {k + 1}")
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-8)
    assert opt.state[x]["n_iter"] == 7


def test_newton_indefinite_hessian_still_descends():
    """f = x^2 - y^2 + y^4 at (0.5, 0.1): H = diag(2, -2 + 12 y^2) is indefinite; the step must still descend."""

    class Saddle(Function):
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return np.asarray(v[0] ** 2 - v[1] ** 2 + v[1] ** 4)

        def backward(ctx, gy):
            v, = ctx.saved
            return gy * np.array([2 * v[0], -2 * v[1] + 4 * v[1] ** 3])

    v = shendu.tensor([0.5, 0.1], dtype=shendu.float64, requires_grad=True)

    def closure():
        v.grad = None
        loss = Saddle.apply(v)
        loss.backward()
        return loss

    opt = optim.Newton([v], line_search_fn="backtracking")
    losses = [opt.step(closure) for _ in range(30)]
    assert all(b < a for a, b in zip(losses, losses[1:]) if a > -0.25 + 1e-12)
    np.testing.assert_allclose(np.abs(v.data), [0.0, np.sqrt(0.5)], atol=1e-6)  # a minimum, not the saddle


def test_newton_backtracking_on_rosenbrock_is_monotone():
    x, closure = _rosenbrock_closure([-1.2, 1.0])
    opt = optim.Newton([x], line_search_fn="backtracking", hessian=rosenbrock_hessian)
    losses = [opt.step(closure) for _ in range(25)]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-8)


def test_newton_errors():
    x, closure = _rosenbrock_closure([0.0, 0.0])
    with pytest.raises(ArgumentError, match="closure"):
        optim.Newton([x]).step(None)
    with pytest.raises(ArgumentError, match="backtracking"):
        optim.Newton([x], line_search_fn="wolfe")
    with pytest.raises(ArgumentError, match="callable"):
        optim.Newton([x], hessian=np.eye(2))
    with pytest.raises(shendu.errors.ShapeError, match=r"expected \(2, 2\)"):
        optim.Newton([x], hessian=lambda v: np.eye(3)).step(closure)


# ------------------------------------------------------------------------- Gauss-Newton and LM
T = np.linspace(0, 2, 40)
RNG = np.random.default_rng(0)
Y = 1.5 * np.exp(-1.3 * T) + 0.4 + 0.01 * RNG.standard_normal(T.size)


def _curve(a0, b0, c0):
    """Residuals of y = a exp(b t) + c, with three 1-element parameters."""
    a, b, c = (shendu.tensor(np.array([v], dtype=np.float64), requires_grad=True) for v in (a0, b0, c0))
    t, y = shendu.tensor(T, dtype=shendu.float64), shendu.tensor(Y, dtype=shendu.float64)
    return [a, b, c], lambda: a * (b * t).exp() + c - y


def _scipy_fit(x0):
    return scipy.optimize.least_squares(lambda p: p[0] * np.exp(p[1] * T) + p[2] - Y, x0, method="lm",
                                        xtol=1e-15, ftol=1e-15, gtol=1e-15).x


def test_jacobian_autograd_fd_and_analytic_agree():
    params, residuals = _curve(1.2, -0.7, 0.1)
    r, J_auto = jacobian(residuals, params)
    _, J_fd = jacobian(residuals, params, method="fd")
    e = np.exp(-0.7 * T)
    J = np.stack([e, 1.2 * T * e, np.ones_like(T)], axis=1)
    np.testing.assert_allclose(r, 1.2 * e + 0.1 - Y, rtol=1e-14)
    np.testing.assert_allclose(J_auto, J, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(J_fd, J, rtol=1e-8, atol=1e-9)
    assert all(p.grad is None for p in params)  # the Jacobian does not touch .grad


def test_gauss_newton_solves_linear_least_squares_in_one_step():
    rng = np.random.default_rng(3)
    A, y = rng.standard_normal((20, 4)), rng.standard_normal(20)
    w = shendu.tensor(np.zeros(4), dtype=shendu.float64, requires_grad=True)

    class Linear(Function):
        def forward(ctx, w):
            return A @ w - y

        def backward(ctx, g):
            return A.T @ g

    cost = optim.GaussNewton([w]).step(lambda: Linear.apply(w))
    assert cost == pytest.approx(0.5 * y @ y)
    np.testing.assert_allclose(w.data, np.linalg.lstsq(A, y, rcond=None)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["GaussNewton", "LevenbergMarquardt", "LevenbergMarquardt-marquardt",
                                    "LevenbergMarquardt-fd"])
def test_curve_fit_converges_to_scipy(method):
    params, residuals = _curve(1.0, -1.0, 0.0)
    if method == "GaussNewton":
        opt = optim.GaussNewton(params)
    elif method == "LevenbergMarquardt-marquardt":
        opt = optim.LevenbergMarquardt(params, scaling="marquardt")
    elif method == "LevenbergMarquardt-fd":
        opt = optim.LevenbergMarquardt(params, jacobian="fd")
    else:
        opt = optim.LevenbergMarquardt(params)
    costs = [opt.step(residuals) for _ in range(30)]
    x = np.array([p.item() for p in params])
    np.testing.assert_allclose(x, _scipy_fit([1.0, -1.0, 0.0]), rtol=1e-6, atol=1e-8)
    if method.startswith("Levenberg"):
        assert all(b <= a for a, b in zip(costs, costs[1:]))  # LM never accepts an uphill step


def test_levenberg_marquardt_converges_where_gauss_newton_does_not():
    start = (1.0, -8.0, 0.0)  # a much too fast decay: J's b column is nearly zero, Gauss-Newton jumps away
    params, residuals = _curve(*start)
    gn = optim.GaussNewton(params)
    for _ in range(30):
        gn.step(residuals)
    gn_x = np.array([p.item() for p in params])
    params, residuals = _curve(*start)
    lm = optim.LevenbergMarquardt(params, damping=1.0)
    for _ in range(100):
        lm.step(residuals)
    lm_x = np.array([p.item() for p in params])
    ref = _scipy_fit(list(start))
    np.testing.assert_allclose(ref, _scipy_fit([1.0, -1.0, 0.0]), rtol=1e-8)  # the same minimum
    np.testing.assert_allclose(lm_x, ref, rtol=1e-6)
    assert not np.allclose(gn_x, ref, rtol=1e-3)


def test_levenberg_marquardt_refuses_uphill_steps():
    params, residuals = _curve(1.0, -1.0, 0.0)
    lm = optim.LevenbergMarquardt(params, damping=0.0, damping_up=10.0)
    lm.step(residuals)
    assert lm.state[params[0]]["damping"] == 0.0  # accepted at lambda = 0: it stays 0 (x 0.1)


def test_gauss_newton_and_lm_errors():
    params, residuals = _curve(1.0, -1.0, 0.0)
    with pytest.raises(ArgumentError, match="residual"):
        optim.GaussNewton(params).step(None)
    with pytest.raises(ArgumentError, match="scaling"):
        optim.LevenbergMarquardt(params, scaling="diag")
    with pytest.raises(ArgumentError, match="damping_up"):
        optim.LevenbergMarquardt(params, damping_up=0.5)
    with pytest.raises(ArgumentError, match="jacobian"):
        optim.GaussNewton(params, jacobian="forward")
    with pytest.raises(ArgumentError, match="do not depend"):
        optim.GaussNewton(params).step(lambda: shendu.tensor(Y))
