"""Small problems computed the same way in shendu and in PyTorch, for optimizer comparisons.

The shendu losses are test-local Functions written on raw NumPy arrays (forward and analytic
backward), so the optimizer tests depend only on autograd, not on other op families; the PyTorch
versions use torch ops and autograd. ``test_problem_gradients_match_torch`` checks they agree.
"""

from __future__ import annotations

import numpy as np
import torch

import shendu
from shendu.autograd.function import Function


# ------------------------------------------------------------------------------ a 2-layer regression net
class MLPLoss(Function):
    """``mean((tanh(X W1 + b1) W2 + b2 - Y)^2)`` and its gradients with respect to W1, b1, W2, b2."""

    def forward(ctx, X, W1, b1, W2, b2, Y):
        h = np.tanh(X @ W1 + b1)
        e = h @ W2 + b2 - Y
        ctx.save_for_backward(X, W1, W2, h, e)
        return np.asarray((e * e).mean(), dtype=e.dtype)

    def backward(ctx, gy):
        X, W1, W2, h, e = ctx.saved
        de = gy * 2 * e / e.size
        dh = (de @ W2.T) * (1 - h * h)
        return None, X.T @ dh, dh.sum(0), h.T @ de, de.sum(0), None


def make_data(seed=0, n=16, d_in=4, d_hidden=5, d_out=3):
    """Inputs, targets and initial parameters (float64 arrays) of the regression problem."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in))
    Y = rng.standard_normal((n, d_out))
    init = [rng.standard_normal((d_in, d_hidden)) * 0.5, rng.standard_normal(d_hidden) * 0.1,
            rng.standard_normal((d_hidden, d_out)) * 0.5, rng.standard_normal(d_out) * 0.1]
    return X, Y, init


def shendu_problem(dtype, seed=0):
    """(params, closure) in shendu; the closure zeroes grads, computes the loss, backward, returns it."""
    X, Y, init = make_data(seed)
    params = [shendu.tensor(a.astype(dtype), requires_grad=True) for a in init]
    Xs, Ys = X.astype(dtype), Y.astype(dtype)

    def closure():
        for p in params:
            p.grad = None
        loss = MLPLoss.apply(Xs, *params, Ys)
        loss.backward()
        return loss

    return params, closure


def torch_problem(dtype, seed=0):
    X, Y, init = make_data(seed)
    tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    params = [torch.tensor(a, dtype=tdtype, requires_grad=True) for a in init]
    Xt, Yt = torch.tensor(X, dtype=tdtype), torch.tensor(Y, dtype=tdtype)

    def closure():
        for p in params:
            p.grad = None
        W1, b1, W2, b2 = params
        loss = ((torch.tanh(Xt @ W1 + b1) @ W2 + b2 - Yt) ** 2).mean()
        loss.backward()
        return loss

    return params, closure


def as_groups(params, group_options):
    """Split [W1, b1, W2, b2] into groups: None -> plain list; else a list of per-group option dicts."""
    if group_options is None:
        return list(params)
    half = len(params) // 2
    chunks = [params[:half], params[half:]]
    return [dict(opts, params=chunk) for opts, chunk in zip(group_options, chunks)]


# ------------------------------------------------------------------------------------------ Rosenbrock
class Rosenbrock(Function):
    """``sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` for a 1-D x, with its analytic gradient."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        a, b = x[:-1], x[1:]
        return np.asarray((100 * (b - a * a) ** 2 + (1 - a) ** 2).sum(), dtype=x.dtype)

    def backward(ctx, gy):
        x, = ctx.saved
        a, b = x[:-1], x[1:]
        g = np.zeros_like(x)
        g[:-1] += -400 * a * (b - a * a) - 2 * (1 - a)
        g[1:] += 200 * (b - a * a)
        return gy * g


def rosenbrock_hessian(x):
    """The exact Hessian of :class:`Rosenbrock` (a tridiagonal matrix), as a float64 array."""
    n = x.size
    H = np.zeros((n, n))
    a, b = x[:-1], x[1:]
    i = np.arange(n - 1)
    H[i, i] += 1200 * a * a - 400 * b + 2
    H[i + 1, i + 1] += 200
    H[i, i + 1] = H[i + 1, i] = -400 * a
    return H


def torch_rosenbrock(x):
    a, b = x[:-1], x[1:]
    return (100 * (b - a * a) ** 2 + (1 - a) ** 2).sum()
