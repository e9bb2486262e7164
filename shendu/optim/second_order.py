r"""Second-order methods for small problems: Newton, Gauss-Newton and Levenberg-Marquardt.

All work on the parameters seen as one flat vector ``x`` of length ``n``; they cost O(n^2) memory
and O(n^3) time per step, so they are for tiny models, curve fits and test oracles.

**Newton** minimises a scalar loss ``f``: solve ``H dx = -g`` and set ``x = x + lr * dx``. ``H`` is the
exact Hessian when a ``hessian`` callable is given, else central differences of the autograd
gradient, column by column: ``H[:, k] = (g(x + h e_k) - g(x - h e_k)) / 2h`` (2n gradient
evaluations), symmetrised. ``H`` is never inverted: it is factored by Cholesky, and where it is not
positive definite a multiple of the identity is added until it is (Nocedal & Wright, Algorithm 3.3),
so that ``dx`` is a descent direction.

**Gauss-Newton** minimises ``f = 1/2 ||r(x)||^2`` for a residual vector ``r`` (length ``m``): with the
Jacobian ``J = dr/dx`` (m x n), ``H ~ J^T J`` and ``g = J^T r``, so ``J^T J dx = -J^T r``, the normal
equations of the linear least-squares problem ``min ||J dx + r||``.

**Levenberg-Marquardt** damps Gauss-Newton: ``(J^T J + lambda D) dx = -J^T r`` with ``D = I``
(Levenberg) or ``D = diag(J^T J)`` (Marquardt). A step that lowers ``f`` is taken and ``lambda``
shrinks (towards Gauss-Newton); a step that does not is refused and ``lambda`` grows (towards short
gradient-descent steps).

``J`` comes from autograd, one backward pass per residual (row of ``J``), or from central
differences of ``r`` (``jacobian='fd'``, 2n evaluations).
"""

from __future__ import annotations

import numpy as np

from shendu.autograd.engine import enable_grad, no_grad
from shendu.autograd.gradcheck import grad as autograd_grad
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, ShapeError
from shendu.optim._flat import add_flat, flat_grad, flat_params, set_flat
from shendu.optim.optimizer import Optimizer, _check_nonneg

__all__ = ["Newton", "GaussNewton", "LevenbergMarquardt", "hessian_fd", "jacobian"]


def _fd_steps(x):
    """Central-difference steps ``eps^(1/3) * max(1, |x_k|)``: balances truncation O(h^2) and rounding O(eps/h)."""
    xp = get_array_module(x)
    return np.finfo(x.dtype).eps ** (1 / 3) * xp.maximum(1.0, abs(x))


def _loss_and_grad(closure, params):
    with enable_grad():
        loss = closure()
    return float(loss), flat_grad(params)


def hessian_fd(closure, params, fd_step=None):
    """Loss, flat gradient and Hessian of ``closure`` at the current parameters.

    ``closure`` zeroes the gradients, computes the loss, calls ``backward()`` and returns the loss (as
    for LBFGS). Column ``k`` of ``H`` is ``(g(x + h_k e_k) - g(x - h_k e_k)) / (2 h_k)``, then ``H`` is
    symmetrised; ``h_k`` defaults to ``eps^(1/3) max(1, |x_k|)``. The parameters are restored.

    >>> import shendu
    >>> a = shendu.tensor([1.0], dtype=shendu.float64, requires_grad=True)
    >>> b = shendu.tensor([2.0], dtype=shendu.float64, requires_grad=True)
    >>> def closure():                         # f = a^3 + a b: H = [[6a, 1], [1, 0]]
    ...     a.grad = b.grad = None
    ...     loss = a ** 3 + a * b
    ...     loss.backward()
    ...     return loss
    >>> f, g, H = hessian_fd(closure, [a, b])
    >>> f, g.round(6).tolist(), H.round(6).tolist()
    (3.0, [5.0, 1.0], [[6.0, 1.0], [1.0, 0.0]])
    """
    x = flat_params(params)
    xp = get_array_module(x)
    h = _fd_steps(x) if fd_step is None else xp.full(x.shape, float(fd_step), dtype=x.dtype)
    loss, g = _loss_and_grad(closure, params)
    n = x.size
    H = xp.empty((n, n), dtype=x.dtype)
    try:
        for k in range(n):  # one column per coordinate: 2n gradient evaluations are inherent
            e = xp.zeros_like(x)
            e[k] = h[k]
            set_flat(params, x + e)
            _, g_plus = _loss_and_grad(closure, params)
            set_flat(params, x - e)
            _, g_minus = _loss_and_grad(closure, params)
            H[:, k] = (g_plus - g_minus) / (2 * h[k])
    finally:
        set_flat(params, x)
    _loss_and_grad(closure, params)  # leave .grad as it was at x
    return loss, g, (H + H.T) / 2


def jacobian(residuals, params, method: str = "autograd", fd_step=None):
    """Residuals ``r`` (flat, length m) and Jacobian ``J = dr/dx`` (m x n) at the current parameters.

    ``residuals()`` returns a Tensor of residuals computed from ``params``. ``method='autograd'`` runs
    one backward pass per residual (row ``i`` is ``e_i^T J``); ``'fd'`` uses central differences
    ``J[:, k] = (r(x + h e_k) - r(x - h e_k)) / 2h`` (2n evaluations without a graph).

    >>> import shendu
    >>> a = shendu.tensor([2.0], dtype=shendu.float64, requires_grad=True)
    >>> t = shendu.tensor([0.0, 1.0, 2.0], dtype=shendu.float64)
    >>> r, J = jacobian(lambda: a * t * t, [a])          # r = a t^2, dr/da = t^2
    >>> r.tolist(), J.ravel().tolist()
    ([0.0, 2.0, 8.0], [0.0, 1.0, 4.0])
    """
    if method not in ("autograd", "fd"):
        raise ArgumentError(f"jacobian: method must be 'autograd' or 'fd', got {method!r}")
    if method == "fd":
        x = flat_params(params)
        xp = get_array_module(x)
        h = _fd_steps(x) if fd_step is None else xp.full(x.shape, float(fd_step), dtype=x.dtype)
        with no_grad():
            r = _as_residual_array(residuals())
            cols = []
            try:
                for k in range(x.size):
                    e = xp.zeros_like(x)
                    e[k] = h[k]
                    set_flat(params, x + e)
                    r_plus = _as_residual_array(residuals())
                    set_flat(params, x - e)
                    r_minus = _as_residual_array(residuals())
                    cols.append((r_plus - r_minus) / (2 * h[k]))
            finally:
                set_flat(params, x)
        return r, xp.stack(cols, axis=1)
    with enable_grad():
        out = residuals()
    if not isinstance(out, Tensor):
        raise ArgumentError(f"jacobian: the residual function must return a Tensor, got {type(out).__name__}")
    xp = get_array_module(out.data)
    r = out.data.reshape(-1)
    if not out.requires_grad:
        raise ArgumentError("jacobian: the residuals do not depend on the parameters (no graph); compute "
                            "them from the parameter tensors, outside no_grad()")
    rows = []
    for i in range(r.size):  # reverse mode gives one row of J per backward pass
        e = xp.zeros(r.size, dtype=r.dtype)
        e[i] = 1
        grads = autograd_grad(out, params, grad_outputs=e.reshape(out.shape), retain_graph=True, allow_unused=True)
        rows.append(xp.concatenate([(gr.data if gr is not None else xp.zeros_like(p.data)).reshape(-1)
                                    for gr, p in zip(grads, params)]))
    return r.copy(), xp.stack(rows)


def _as_residual_array(out):
    return (out.data if isinstance(out, Tensor) else out).reshape(-1)


def _cholesky_solve(xp, A, b):
    """Solve ``A x = b`` for symmetric positive definite ``A`` (raises LinAlgError otherwise)."""
    L = xp.linalg.cholesky(A)
    z = xp.linalg.solve(L, b)
    return xp.linalg.solve(L.T, z)


class _FlatOptimizer(Optimizer):
    """Shared set-up of the methods below: one parameter group, state under the first parameter."""

    _state_shaped_like_params = False

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ArgumentError(f"{type(self).__name__}: doesn't support parameter groups; pass one list of parameters")
        self._params = self.param_groups[0]["params"]

    def add_param_group(self, param_group) -> None:
        if self.param_groups:
            raise ArgumentError(f"{type(self).__name__}: doesn't support more than one parameter group")
        super().add_param_group(param_group)

    def _state(self) -> dict:
        state = self.state[self._params[0]]
        state.setdefault("n_iter", 0)
        state.setdefault("func_evals", 0)
        return state


class Newton(_FlatOptimizer):
    r"""Newton's method: ``x = x + lr * dx`` with ``(H + damping I) dx = -g``.

    Args:
        params: the parameters (one group).
        lr: step scale (1 is the pure Newton step).
        damping: a constant added to the Hessian's diagonal (regularises, shortens the step).
        hessian: optional callable ``hessian(x) -> (n, n) array`` giving the exact Hessian at the flat
            parameter vector ``x``; by default central differences of the gradient (2n closure calls).
        fd_step: finite-difference step (default ``eps^(1/3) max(1, |x_k|)``).
        line_search_fn: ``None`` or ``'backtracking'`` (halve the step until the Armijo condition
            ``f(x + t dx) <= f(x) + 1e-4 t g.dx`` holds, at most 30 times).

    When ``H + damping I`` is not positive definite, the smallest multiple of ``I`` (doubling from
    1e-3) that makes it so is added, so ``dx`` always descends. ``step(closure)`` does one iteration;
    the closure is LBFGS's (zero grads, loss, ``backward()``, return loss). Returns the loss before the step.

    >>> import shendu
    >>> x = shendu.tensor([3.0], dtype=shendu.float64, requires_grad=True)
    >>> opt = Newton([x])
    >>> def closure():
    ...     opt.zero_grad(); loss = (x - 1.0) ** 2 * 5.0; loss.backward(); return loss
    >>> _ = opt.step(closure)     # a quadratic is solved in one step
    >>> round(x.item(), 6)
    1.0
    """

    def __init__(self, params, lr: float = 1.0, damping: float = 0.0, hessian=None, fd_step: float | None = None,
                 line_search_fn: str | None = None):
        _check_nonneg("Newton", lr=lr, damping=damping)
        if line_search_fn not in (None, "backtracking"):
            raise ArgumentError(f"Newton: line_search_fn must be None or 'backtracking', got {line_search_fn!r}")
        if hessian is not None and not callable(hessian):
            raise ArgumentError(f"Newton: hessian must be a callable x -> (n, n) array, got {type(hessian).__name__}")
        super().__init__(params, dict(lr=lr, damping=damping, fd_step=fd_step, line_search_fn=line_search_fn))
        self.hessian = hessian

    def step(self, closure):  # type: ignore[override]
        if closure is None:
            raise ArgumentError("Newton.step: needs a closure that zeroes the gradients, computes the loss, "
                                "calls backward() and returns the loss")
        self._step_called = True
        group, state = self.param_groups[0], self._state()
        params = self._params
        x = flat_params(params)
        xp = get_array_module(x)
        n = x.size
        if self.hessian is None:
            loss, g, H = hessian_fd(closure, params, group["fd_step"])
            state["func_evals"] += 2 * n + 2
        else:
            loss, g = _loss_and_grad(closure, params)
            H = xp.asarray(self.hessian(x.copy()), dtype=x.dtype)
            if H.shape != (n, n):
                raise ShapeError(f"Newton: hessian(x) returned shape {tuple(H.shape)}, expected ({n}, {n}) for "
                                 f"{n} parameter values")
            state["func_evals"] += 1
        dx = self._newton_direction(xp, H + float(group["damping"]) * xp.eye(n, dtype=x.dtype), g)
        t = float(group["lr"])
        if group["line_search_fn"] == "backtracking":
            slope = float(g.dot(dx))
            for _ in range(30):
                set_flat(params, x + t * dx)
                f_new, _ = _loss_and_grad(closure, params)
                state["func_evals"] += 1
                if f_new <= loss + 1e-4 * t * slope:
                    break
                t *= 0.5
            set_flat(params, x)
        add_flat(params, t, dx)
        state["n_iter"] += 1
        return loss

    @staticmethod
    def _newton_direction(xp, A, g):
        """``-A^-1 g`` by Cholesky, shifting ``A`` by ``tau I`` until it is positive definite."""
        diag_min = float(xp.diag(A).min())
        tau = 0.0 if diag_min > 0 else 1e-3 - diag_min
        eye = xp.eye(A.shape[0], dtype=A.dtype)
        while True:
            try:
                return _cholesky_solve(xp, A + tau * eye, -g)
            except xp.linalg.LinAlgError:
                tau = max(2 * tau, 1e-3)


class GaussNewton(_FlatOptimizer):
    r"""Gauss-Newton for ``min 1/2 ||r(x)||^2``: ``x = x + lr * dx`` with ``J^T J dx = -J^T r``.

    ``step(residuals)`` takes a callable returning the residual Tensor ``r(x)`` (any shape; no
    ``backward()`` inside) and returns the cost ``1/2 ||r||^2`` before the step. ``dx`` is computed as
    the least-squares solution of ``J dx = -r``, which satisfies the normal equations and avoids forming
    ``J^T J`` (whose condition number is the square of J's); it is the minimum-norm step when J is
    rank deficient. Plain Gauss-Newton can overshoot far from the solution: use ``lr < 1`` or
    :class:`LevenbergMarquardt` there.

    >>> import shendu
    >>> a = shendu.tensor([1.0], dtype=shendu.float64, requires_grad=True)
    >>> t = shendu.tensor([1.0, 2.0, 3.0], dtype=shendu.float64)
    >>> y = shendu.tensor([2.0, 4.0, 6.0], dtype=shendu.float64)
    >>> opt = GaussNewton([a])
    >>> _ = opt.step(lambda: a * t - y)       # linear residuals: one step solves it
    >>> round(a.item(), 6)
    2.0
    """

    def __init__(self, params, lr: float = 1.0, jacobian: str = "autograd", fd_step: float | None = None):
        _check_nonneg("GaussNewton", lr=lr)
        if jacobian not in ("autograd", "fd"):
            raise ArgumentError(f"GaussNewton: jacobian must be 'autograd' or 'fd', got {jacobian!r}")
        super().__init__(params, dict(lr=lr, jacobian=jacobian, fd_step=fd_step))

    def step(self, residuals):  # type: ignore[override]
        if residuals is None:
            raise ArgumentError("GaussNewton.step: needs a callable that returns the residual Tensor r(x)")
        self._step_called = True
        group, state = self.param_groups[0], self._state()
        r, J = jacobian(residuals, self._params, group["jacobian"], group["fd_step"])
        xp = get_array_module(r)
        dx = xp.linalg.lstsq(J, -r, rcond=None)[0]
        add_flat(self._params, float(group["lr"]), dx)
        state["n_iter"] += 1
        state["func_evals"] += 1
        return 0.5 * float(r.dot(r))


class LevenbergMarquardt(_FlatOptimizer):
    r"""Levenberg-Marquardt for ``min 1/2 ||r(x)||^2``: ``(J^T J + lambda D) dx = -J^T r``.

    Args:
        params: the parameters (one group).
        damping: the initial ``lambda``.
        damping_up, damping_down: ``lambda`` is multiplied by ``damping_up`` after a refused step and by
            ``damping_down`` after an accepted one.
        scaling: ``'identity'`` (``D = I``, Levenberg) or ``'marquardt'`` (``D = diag(J^T J)``, invariant
            to the scale of each parameter).
        max_tries: refused steps allowed within one ``step()`` before giving up (parameters unchanged).
        jacobian, fd_step: as for :class:`GaussNewton`.

    ``step(residuals)`` takes a callable returning ``r(x)`` and returns the cost ``1/2 ||r||^2`` before the
    step; the current ``lambda`` is in ``state['damping']`` (under the first parameter).

    >>> import shendu
    >>> a = shendu.tensor([0.1], dtype=shendu.float64, requires_grad=True)
    >>> t = shendu.tensor([0.0, 0.5, 1.0], dtype=shendu.float64)
    >>> y = (t * 2.0).exp()
    >>> opt = LevenbergMarquardt([a])
    >>> for _ in range(20):
    ...     _ = opt.step(lambda: (a * t).exp() - y)
    >>> round(a.item(), 6)
    2.0
    """

    def __init__(self, params, damping: float = 1e-3, damping_up: float = 10.0, damping_down: float = 0.1,
                 scaling: str = "identity", max_tries: int = 20, jacobian: str = "autograd",
                 fd_step: float | None = None):
        _check_nonneg("LevenbergMarquardt", damping=damping)
        if not (damping_up > 1 and 0 < damping_down < 1):
            raise ArgumentError(f"LevenbergMarquardt: need damping_up > 1 and 0 < damping_down < 1, got "
                                f"{damping_up} and {damping_down}")
        if scaling not in ("identity", "marquardt"):
            raise ArgumentError(f"LevenbergMarquardt: scaling must be 'identity' or 'marquardt', got {scaling!r}")
        if jacobian not in ("autograd", "fd"):
            raise ArgumentError(f"LevenbergMarquardt: jacobian must be 'autograd' or 'fd', got {jacobian!r}")
        super().__init__(params, dict(damping=damping, damping_up=damping_up, damping_down=damping_down,
                                      scaling=scaling, max_tries=max_tries, jacobian=jacobian, fd_step=fd_step))

    def step(self, residuals):  # type: ignore[override]
        if residuals is None:
            raise ArgumentError("LevenbergMarquardt.step: needs a callable that returns the residual Tensor r(x)")
        self._step_called = True
        group, state = self.param_groups[0], self._state()
        lam = state.setdefault("damping", float(group["damping"]))
        params = self._params
        r, J = jacobian(residuals, params, group["jacobian"], group["fd_step"])
        state["func_evals"] += 1
        xp = get_array_module(r)
        cost = 0.5 * float(r.dot(r))
        JTJ, JTr = J.T @ J, J.T @ r
        D = xp.diag(xp.diag(JTJ)) if group["scaling"] == "marquardt" else xp.eye(JTJ.shape[0], dtype=JTJ.dtype)
        x = flat_params(params)
        for _ in range(int(group["max_tries"])):
            try:
                dx = xp.linalg.solve(JTJ + lam * D, -JTr)
            except xp.linalg.LinAlgError:  # singular (lambda = 0 with rank-deficient J): damp more
                lam = max(lam, 1e-12) * group["damping_up"]
                continue
            if float(abs(dx).max()) <= 1e-15 * (1 + float(abs(x).max())):
                break  # the step no longer changes x: at a minimum (or lambda is huge), nothing to try
            set_flat(params, x + dx)
            with no_grad():
                r_new = _as_residual_array(residuals())
            state["func_evals"] += 1
            if 0.5 * float(r_new.dot(r_new)) < cost:
                lam *= group["damping_down"]
                break
            set_flat(params, x)
            lam = max(lam, 1e-12) * group["damping_up"]
        state["damping"] = lam
        state["n_iter"] += 1
        return cost
