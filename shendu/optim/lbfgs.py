"""L-BFGS (Liu & Nocedal, 1989) with an optional strong-Wolfe line search, as ``torch.optim.LBFGS``.

L-BFGS approximates Newton's step ``-H^-1 g`` from the last ``m`` pairs ``s_k = x_{k+1} - x_k``,
``y_k = g_{k+1} - g_k`` with the two-loop recursion (``rho_i = 1 / (y_i . s_i)``)::

    q = -g
    for i = k-1 ... k-m:   a_i = rho_i s_i . q ;   q = q - a_i y_i
    r = (s_{k-1} . y_{k-1} / y_{k-1} . y_{k-1}) q               (initial Hessian H0 = gamma I)
    for i = k-m ... k-1:   b = rho_i y_i . r ;     r = r + (a_i - b) s_i
    direction d = r

A pair is stored only when the curvature condition ``y . s > 1e-10`` holds, which keeps the implicit
inverse Hessian positive definite. It is a full-batch, deterministic method: mini-batch noise in ``g``
breaks the curvature pairs.

This module follows PyTorch's implementation (itself a port of minFunc) step for step, so that the
iterates agree with ``torch.optim.LBFGS`` to rounding; the scalars of the line search are Python floats.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from shendu.errors import ArgumentError
from shendu.optim._flat import add_flat, flat_grad, flat_params, set_flat
from shendu.optim.optimizer import Optimizer, _check_nonneg

__all__ = ["LBFGS"]


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """Minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, lo), hi)
    return (lo + hi) / 2.0


def _dot(a, b) -> float:
    return float(a.dot(b))


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Find ``t`` with ``f(x + t d) <= f + c1 t gtd`` and ``|g(x + t d) . d| <= -c2 gtd`` (bracket, then zoom).

    Returns ``(f_new, g_new, t, evaluations)``.
    """
    d_norm = float(abs(d).max())
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = _dot(g_new, d)

    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        # extrapolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1

    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point satisfies the conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # too close to an end of the bracket: move to 10% of its length away from it
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo fails, or not lower than the lowest point: the new point is the high end
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


class LBFGS(Optimizer):
    r"""L-BFGS, with PyTorch's arguments and iterates (``torch.optim.LBFGS``).

    ``step(closure)`` runs up to ``max_iter`` iterations (``max_eval`` closure calls, default
    ``max_iter * 5 // 4``); the closure must zero the gradients, recompute the loss, call
    ``backward()`` and return the loss. Stops early when ``max |g| <= tolerance_grad``, or when the
    step or the change of loss falls below ``tolerance_change``. Without a line search the step is
    ``lr`` (the first one ``lr * min(1, 1 / |g|_1)``); with ``line_search_fn='strong_wolfe'`` it satisfies
    the strong Wolfe conditions (c1 = 1e-4, c2 = 0.9). Only one parameter group is supported.

    >>> import shendu
    >>> x = shendu.tensor([3.0], dtype=shendu.float64, requires_grad=True)
    >>> opt = LBFGS([x], line_search_fn='strong_wolfe')
    >>> def closure():                      # solve x^2 = 2 as min (x^2 - 2)^2
    ...     opt.zero_grad()
    ...     loss = (x * x - 2.0) ** 2
    ...     loss.backward()
    ...     return loss
    >>> _ = opt.step(closure)
    >>> round(x.item(), 6)
    1.414214
    """

    _state_shaped_like_params = False  # the state is flat vectors stored under the first parameter

    def __init__(self, params, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None):
        _check_nonneg("LBFGS", lr=lr)
        if line_search_fn not in (None, "strong_wolfe"):
            raise ArgumentError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ArgumentError("LBFGS: doesn't support per-parameter options (parameter groups); pass one "
                                "list of parameters")
        self._params = self.param_groups[0]["params"]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self.param_groups:
            raise ArgumentError("LBFGS: doesn't support more than one parameter group")
        super().add_param_group(param_group)

    def _directional_evaluate(self, closure, x, t, d):
        """Loss and flat gradient at ``x + t d``; the parameters are put back to ``x`` afterwards."""
        add_flat(self._params, t, d)
        loss = float(closure())
        g = flat_grad(self._params)
        set_flat(self._params, x)
        return loss, g

    def step(self, closure: Callable[[], Any]):  # type: ignore[override]
        if closure is None:
            raise ArgumentError("LBFGS.step: needs a closure that zeroes the gradients, recomputes the loss, "
                                "calls backward() and returns the loss")
        group = self.param_groups[0]
        lr = float(group["lr"])
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = self._begin_step(closure)
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        g = flat_grad(self._params)
        if float(abs(g).max()) <= tolerance_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # ---- direction
            if state["n_iter"] == 1:
                d = -g
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0
            else:
                y = g - prev_flat_grad
                s = d * t
                ys = _dot(y, s)
                if ys > 1e-10:  # curvature condition: keep the pair
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / _dot(y, y)
                al = [0.0] * len(old_dirs)
                q = -g
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = _dot(old_stps[i], q) * ro[i]
                    q += (-al[i]) * old_dirs[i]
                d = r = q * H_diag
                for i in range(len(old_dirs)):
                    be_i = _dot(old_dirs[i], r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]

            prev_flat_grad = g.copy()
            prev_loss = loss

            # ---- step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(abs(g).sum())) * lr
            else:
                t = lr
            gtd = _dot(g, d)
            if gtd > -tolerance_change:  # not a descent direction any more
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = flat_params(self._params)

                def obj_func(x, step, direction):
                    return self._directional_evaluate(closure, x, step, direction)

                loss, g, t, ls_func_evals = _strong_wolfe(obj_func, x_init, t, d, loss, g, gtd,
                                                          max_ls=max_eval - current_evals)
                add_flat(self._params, t, d)
                opt_cond = float(abs(g).max()) <= tolerance_grad
            else:
                add_flat(self._params, t, d)
                opt_cond = False
                if n_iter != max_iter:  # no point re-evaluating after the last iteration
                    loss = float(self._begin_step(closure))
                    g = flat_grad(self._params)
                    opt_cond = float(abs(g).max()) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # ---- stopping tests
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if float(abs(d * t).max()) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss
