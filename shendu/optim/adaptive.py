"""Adaptive learning-rate methods: Adagrad, RMSprop, Adam and AdamW, exactly as ``torch.optim``.

Each keeps running statistics of the gradient per parameter (in the parameter's dtype) and divides
the step by a root-mean-square of past gradients. Notation: ``g`` is the gradient (negated when
``maximize``), ``t`` the step count starting at 1, ``eps`` is added *outside* the square root.

Steps write every temporary into two scratch arrays per parameter (``out=``), in the same order of
operations as the formulas, so they allocate nothing after the first step.
"""

from __future__ import annotations

from typing import Any, Callable

from shendu.backend import get_array_module
from shendu.errors import ArgumentError
from shendu.optim.optimizer import Optimizer, _check_nonneg, params_with_grad
from shendu.optim.sgd import scratch_buffers, weight_decayed

__all__ = ["Adagrad", "RMSprop", "Adam", "AdamW"]


def _lerp_(a, b, w: float, tmp) -> None:
    """``a <- a + w * (b - a)`` in place, with PyTorch's two-sided formula (exact at w = 0 and w = 1).

    ``tmp`` is a scratch array shaped like ``a`` (overwritten).
    """
    xp = get_array_module(a)
    xp.subtract(b, a, out=tmp)
    if w < 0.5:
        tmp *= w
        a += tmp
    else:
        tmp *= 1 - w
        xp.subtract(b, tmp, out=a)


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011): per-coordinate steps shrinking with the sum of squared gradients.

    Per step::

        g   = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        G   = G + g * g                          (G starts at initial_accumulator_value)
        p   = p - clr * g / (sqrt(G) + eps)

    State per parameter: ``'step'`` and ``'sum'`` (created at construction, like PyTorch).

    >>> import shendu
    >>> p = shendu.tensor([1.0], requires_grad=True)
    >>> opt = Adagrad([p], lr=0.1)
    >>> p.grad = shendu.tensor([3.0]); opt.step()
    >>> round(p.item(), 4)     # 1 - 0.1 * 3 / sqrt(9)
    0.9
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False):
        _check_nonneg("Adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                      initial_accumulator_value=initial_accumulator_value, eps=eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, maximize=maximize)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p, group) -> dict:
        state = self.state[p]
        if not state:
            xp = get_array_module(p.data)
            state["step"] = 0.0
            state["sum"] = xp.full_like(p.data, float(group["initial_accumulator_value"]))
        return state

    def step(self, closure: Callable[[], Any] | None = None):
        loss = self._begin_step(closure)
        for group in self.param_groups:
            lr, lr_decay = float(group["lr"]), float(group["lr_decay"])
            wd, eps = float(group["weight_decay"]), float(group["eps"])
            for p, g in params_with_grad(group):
                xp = get_array_module(p.data)
                state = self._init_state(p, group)
                state["step"] += 1
                tmp, g_buf = scratch_buffers(self, p, 2)
                if wd != 0:
                    g = weight_decayed(g, p, wd, out=g_buf)
                clr = lr / (1 + (state["step"] - 1) * lr_decay)
                state["sum"] += xp.multiply(g, g, out=tmp)
                denom = xp.sqrt(state["sum"], out=tmp)
                denom += eps
                update = xp.multiply(g, -clr, out=g_buf)  # g may be g_buf: not needed afterwards
                update /= denom
                p.data += update
        return loss


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, lecture 6e): divide by a running root-mean-square of the gradient.

    Per step (``alpha`` is the notes' decay rate rho)::

        g = g + weight_decay * p
        E = alpha * E + (1 - alpha) * g * g
        avg = sqrt(E - gbar * gbar) + eps     with  gbar = alpha * gbar + (1 - alpha) * g   (centered)
        avg = sqrt(E) + eps                                                                 (otherwise)
        b = momentum * b + g / avg;  p = p - lr * b                                    (momentum > 0)
        p = p - lr * g / avg                                                           (otherwise)

    State per parameter: ``'step'``, ``'square_avg'``, and ``'momentum_buffer'`` / ``'grad_avg'`` when used.

    >>> import shendu
    >>> p = shendu.tensor([1.0], requires_grad=True)
    >>> opt = RMSprop([p], lr=0.01, alpha=0.99)
    >>> p.grad = shendu.tensor([2.0]); opt.step()
    >>> round(p.item(), 4)     # 1 - 0.01 * 2 / sqrt(0.01 * 4)
    0.9
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False):
        _check_nonneg("RMSprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        loss = self._begin_step(closure)
        for group in self.param_groups:
            lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
            wd, mu = float(group["weight_decay"]), float(group["momentum"])
            for p, g in params_with_grad(group):
                xp = get_array_module(p.data)
                state = self.state[p]
                if not state:
                    state["step"] = 0.0
                    state["square_avg"] = xp.zeros_like(p.data)
                    if mu > 0:
                        state["momentum_buffer"] = xp.zeros_like(p.data)
                    if group["centered"]:
                        state["grad_avg"] = xp.zeros_like(p.data)
                state["step"] += 1
                tmp, g_buf = scratch_buffers(self, p, 2)
                if wd != 0:
                    g = weight_decayed(g, p, wd, out=g_buf)
                square_avg = state["square_avg"]
                square_avg *= alpha
                xp.multiply(g, 1 - alpha, out=tmp)
                tmp *= g
                square_avg += tmp
                if group["centered"]:
                    grad_avg = state["grad_avg"]
                    _lerp_(grad_avg, g, 1 - alpha, tmp)
                    avg = xp.negative(grad_avg, out=tmp)
                    avg *= grad_avg
                    avg += square_avg  # square_avg - grad_avg^2, summed in the same order
                    xp.sqrt(avg, out=avg)
                else:
                    avg = xp.sqrt(square_avg, out=tmp)
                avg += eps
                if mu > 0:
                    buf = state["momentum_buffer"]
                    buf *= mu
                    buf += xp.divide(g, avg, out=avg)
                    p.data -= xp.multiply(buf, lr, out=tmp)
                else:
                    update = xp.multiply(g, -lr, out=g_buf)
                    update /= avg
                    p.data += update
        return loss


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), with bias correction and optional AMSGrad, exactly as ``torch.optim.Adam``.

    Per step (``t`` from 1)::

        g = g + weight_decay * p                   (coupled L2; decoupled_weight_decay: p = p * (1 - lr * wd))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        vmax = max(vmax, v)                        (amsgrad; v below is replaced by vmax)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``eps`` is added after the bias correction of ``v`` (PyTorch); TF/Keras add an "epsilon hat" to the
    uncorrected ``sqrt(v)``, which differs when ``eps`` is not negligible.

    State per parameter: ``'step'``, ``'exp_avg'``, ``'exp_avg_sq'``, and ``'max_exp_avg_sq'`` with amsgrad.

    >>> import shendu
    >>> p = shendu.tensor([1.0], requires_grad=True)
    >>> opt = Adam([p], lr=0.1)
    >>> p.grad = shendu.tensor([5.0]); opt.step()    # the first step moves by lr whatever |g| is
    >>> round(p.item(), 4)
    0.9
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        name = type(self).__name__
        _check_nonneg(name, lr=lr, eps=eps, weight_decay=weight_decay)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ArgumentError(f"{name}: invalid betas {tuple(betas)}; expected two values in [0, 1)")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        loss = self._begin_step(closure)
        for group in self.param_groups:
            lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            for p, g in params_with_grad(group):
                xp = get_array_module(p.data)
                state = self.state[p]
                if not state:
                    state["step"] = 0.0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
                t = state["step"]
                tmp, g_buf = scratch_buffers(self, p, 2)
                if wd != 0:
                    if group["decoupled_weight_decay"]:
                        p.data *= 1 - lr * wd
                    else:
                        g = weight_decayed(g, p, wd, out=g_buf)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                _lerp_(m, g, 1 - beta1, tmp)
                v *= beta2
                xp.multiply(g, 1 - beta2, out=tmp)
                tmp *= g
                v += tmp
                if group["amsgrad"]:
                    xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                    v = state["max_exp_avg_sq"]
                step_size = lr / (1 - beta1 ** t)
                denom = xp.sqrt(v, out=tmp)
                denom /= (1 - beta2 ** t) ** 0.5
                denom += eps
                update = xp.multiply(m, -step_size, out=g_buf)  # g is not needed any more
                update /= denom
                p.data += update
        return loss


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), exactly as ``torch.optim.AdamW``.

    Before the Adam step the weights shrink by ``p = p * (1 - lr * weight_decay)``: the decay is not
    added to the gradient, so it is not rescaled by the adaptive denominator. Default ``weight_decay``
    is 1e-2 (Adam's is 0).

    >>> import shendu
    >>> p = shendu.tensor([1.0], requires_grad=True)
    >>> opt = AdamW([p], lr=0.1, weight_decay=0.5)
    >>> p.grad = shendu.tensor([0.0]); opt.step()     # zero gradient: only the decay acts
    >>> round(p.item(), 4)
    0.95
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)
