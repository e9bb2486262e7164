"""First-order vs second-order optimization: iterations to converge on Rosenbrock and a curve fit.

Two small problems, each minimised by every method from the same start until the gradient norm
``||grad f|| <= TOL``:

- **Rosenbrock** ``f(x, y) = (1 - x)^2 + 100 (y - x^2)^2`` from (-1.2, 1); minimum 0 at (1, 1). As
  least squares its residuals are ``r = (10 (y - x^2), 1 - x)`` with ``f = ||r||^2``.
- **Curve fit** ``y = a exp(b t) + c`` to 50 noisy points (true a, b, c = 2, -1.5, 0.5), least squares
  ``f = 1/2 ||r||^2`` with ``r_i = a exp(b t_i) + c - y_i``, from (a, b, c) = (1, -0.5, 0).

Methods: gradient descent, momentum (torch form), Adam, L-BFGS (strong Wolfe, one iteration per
``step``), Newton (Hessian by central differences of the autograd gradient), Gauss-Newton and
Levenberg-Marquardt (Jacobian by autograd, one backward pass per residual). The first-order learning
rates are near the largest stable ones. Prints, per problem, iterations, closure evaluations (loss +
gradient, or residuals), final loss, distance to the minimiser and time; first-order methods are
stopped after ``--max-iter`` iterations (">" in the table).

Run: ``python examples/second_order.py`` (about 20 s on a laptop core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import shendu
from shendu import optim

TOL = 1e-6


# --------------------------------------------------------------------------------------------- problems
class Rosenbrock:
    name = "Rosenbrock"
    start = (-1.2, 1.0)
    solution = np.array([1.0, 1.0])
    lrs = {"GD": 1e-3, "Momentum": 1e-4, "Adam": 2e-2}

    def residuals(self, x, y):
        return shendu.cat([10.0 * (y - x * x), 1.0 - x])

    def loss(self, x, y):
        return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


class CurveFit:
    name = "curve fit a*exp(b*t)+c"
    start = (1.0, -0.5, 0.0)
    lrs = {"GD": 0.02, "Momentum": 0.01, "Adam": 0.05}

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        t = np.linspace(0.0, 3.0, 50)
        y = 2.0 * np.exp(-1.5 * t) + 0.5 + 0.02 * rng.standard_normal(t.size)
        self.t, self.y = shendu.tensor(t), shendu.tensor(y)  # float64 arrays stay float64
        import scipy.optimize  # the reference minimiser, for the distance column only

        fit = scipy.optimize.least_squares(lambda p: p[0] * np.exp(p[1] * t) + p[2] - y, self.start,
                                           method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
        self.solution = fit.x

    def residuals(self, a, b, c):
        return a * (b * self.t).exp() + c - self.y

    def loss(self, a, b, c):
        r = self.residuals(a, b, c)
        return 0.5 * (r * r).sum()


# ----------------------------------------------------------------------------------------------- runs
def _params(problem):
    return [shendu.tensor(np.array([v], dtype=np.float64), requires_grad=True) for v in problem.start]


def _grad_norm(problem, params) -> float:
    for p in params:
        p.grad = None
    problem.loss(*params).backward()
    return float(np.sqrt(sum((p.grad.data ** 2).sum() for p in params)))


def run(problem, method: str, max_iter: int) -> dict:
    params = _params(problem)
    evals = [0]

    def closure():
        evals[0] += 1
        for p in params:
            p.grad = None
        loss = problem.loss(*params)
        loss.backward()
        return loss

    def residuals():
        evals[0] += 1
        return problem.residuals(*params)

    if method == "GD":
        opt, limit = optim.SGD(params, lr=problem.lrs["GD"]), max_iter
    elif method == "Momentum":
        opt, limit = optim.SGD(params, lr=problem.lrs["Momentum"], momentum=0.9), max_iter
    elif method == "Adam":
        opt, limit = optim.Adam(params, lr=problem.lrs["Adam"]), max_iter
    elif method == "L-BFGS":
        # one iteration per step(); max_eval leaves the line search room (its default is max_iter * 5 // 4)
        # and tolerance_change=0: the default 1e-9 stops it once g.d > -1e-9, before ||g|| reaches TOL
        opt, limit = optim.LBFGS(params, max_iter=1, max_eval=25, line_search_fn="strong_wolfe", tolerance_grad=0,
                                 tolerance_change=0), 200
    elif method == "Newton":
        opt, limit = optim.Newton(params), 100
    elif method == "Newton+backtracking":
        opt, limit = optim.Newton(params, line_search_fn="backtracking"), 100
    elif method == "Gauss-Newton":
        opt, limit = optim.GaussNewton(params), 100
    else:
        opt, limit = optim.LevenbergMarquardt(params), 100

    t0 = time.perf_counter()
    iters = 0
    converged = diverged = False
    while not converged and not diverged and iters < limit:
        if method in ("Gauss-Newton", "Levenberg-Marquardt"):
            opt.step(residuals)
        elif method in ("L-BFGS", "Newton", "Newton+backtracking"):
            opt.step(closure)
        else:
            closure()
            opt.step()
        iters += 1
        with np.errstate(all="ignore"):
            norm = _grad_norm(problem, params)  # the same test for every method (not counted)
        converged, diverged = norm <= TOL, not norm < 1e10
    seconds = time.perf_counter() - t0
    x = np.array([p.item() for p in params])
    with shendu.no_grad(), np.errstate(all="ignore"):
        final = float(problem.loss(*params).item())
    return dict(method=method, iters=iters, converged=converged, diverged=diverged, evals=evals[0], loss=final,
                dist=float(np.linalg.norm(x - problem.solution)), seconds=seconds)


METHODS = ["GD", "Momentum", "Adam", "L-BFGS", "Newton", "Newton+backtracking", "Gauss-Newton",
           "Levenberg-Marquardt"]


def table(problem, rows) -> str:
    lines = [f"\n{problem.name}: start {problem.start}, stop at ||grad|| <= {TOL:g}",
             f"{'method':<22}{'iterations':>11}{'evaluations':>13}{'final loss':>13}{'|x - x*|':>11}{'time':>9}",
             "-" * 79]
    for r in rows:
        its = f"{r['iters']}" if r["converged"] else ("diverged" if r["diverged"] else f">{r['iters']}")
        lines.append(f"{r['method']:<22}{its:>11}{r['evals']:>13}{r['loss']:>13.3e}{r['dist']:>11.2e}"
                     f"{r['seconds'] * 1e3:>7.0f}ms")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-iter", type=int, default=3000, help="iteration cap for the first-order methods")
    args = parser.parse_args(argv)
    print("Second-order methods need a handful of iterations where first-order ones need thousands;")
    print("each of their iterations costs more evaluations (Newton: 2n + 2; GN/LM: one backward per residual).")
    for problem in (Rosenbrock(), CurveFit()):
        rows = [run(problem, m, args.max_iter) for m in METHODS]
        print(table(problem, rows))


if __name__ == "__main__":
    main()
