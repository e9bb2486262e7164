"""Stochastic gradient descent with momentum, in PyTorch's form and in the notes' (CS231n) form.

PyTorch's form (``SGD``) keeps a buffer of gradients; the notes' form (``SGDMomentumCS231n``) keeps
a velocity that already contains the learning rate. At a constant learning rate they produce the same
parameters step for step; after the learning rate changes they differ, because the velocity still
carries the old rate (see :class:`SGDMomentumCS231n`).
"""

from __future__ import annotations

from typing import Any, Callable

from shendu.backend import get_array_module
from shendu.errors import ArgumentError
from shendu.optim.optimizer import Optimizer, _check_nonneg, params_with_grad

__all__ = ["SGD", "SGDMomentumCS231n"]


def scratch_buffers(optimizer: Optimizer, p, count: int) -> list:
    """``count`` private arrays shaped like ``p`` that a step may overwrite freely, kept between steps.

    Steps write their temporaries into these (``out=``) instead of allocating new arrays every step.
    They live in ``optimizer._scratch``, not in ``optimizer.state``, so ``state_dict`` never saves them;
    they are made again when the parameter's shape or dtype changes.
    """
    store = optimizer.__dict__.setdefault("_scratch", {})
    data = p.data
    bufs = store.get(p)
    if bufs is not None and len(bufs) >= count and bufs[0].shape == data.shape and bufs[0].dtype == data.dtype:
        return bufs
    if bufs is None or bufs[0].shape != data.shape or bufs[0].dtype != data.dtype:
        bufs = store[p] = []
    xp = get_array_module(data)
    while len(bufs) < count:
        bufs.append(xp.empty_like(data))
    return bufs


def weight_decayed(g, p, weight_decay: float, out):
    """``g + weight_decay * p`` written into ``out`` (never into ``g``, which may be ``p.grad.data``)."""
    get_array_module(p.data).multiply(p.data, weight_decay, out=out)
    out += g  # same value as g + wd * p: the sum is commutative
    return out


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum, exactly as ``torch.optim.SGD``.

    With ``g`` the gradient (negated when ``maximize``), per step::

        g = g + weight_decay * p                       (coupled L2 penalty, before momentum)
        b = g                        on the first step  (no dampening then)
        b = momentum * b + (1 - dampening) * g          afterwards
        g = g + momentum * b  if nesterov  else  b
        p = p - lr * g

    Args:
        params: Tensors or parameter groups (see :class:`~shendu.optim.Optimizer`).
        lr: learning rate (default 1e-3, PyTorch's default since 2.x).
        momentum: momentum factor ``mu`` (0 disables the buffer).
        dampening: dampening ``d`` of the gradient added to the buffer.
        weight_decay: L2 penalty coefficient.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        maximize: ascend the objective instead of descending.

    State per parameter: ``'momentum_buffer'`` (only when ``momentum != 0``).

    >>> import shendu
    >>> p = shendu.tensor([1.0], requires_grad=True)
    >>> opt = SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    >>> for g in (1.0, 2.0):
    ...     p.grad = shendu.tensor([g]); opt.step()
    ...     print(round(p.item(), 4))
    0.9
    0.71
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        _check_nonneg("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ArgumentError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, got "
                                f"momentum={momentum}, dampening={dampening}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        loss = self._begin_step(closure)
        for group in self.param_groups:
            lr, mu = float(group["lr"]), float(group["momentum"])
            damp, wd = float(group["dampening"]), float(group["weight_decay"])
            for p, g in params_with_grad(group):
                xp = get_array_module(p.data)
                tmp, *rest = scratch_buffers(self, p, 2 if wd != 0 else 1)
                if wd != 0:
                    g = weight_decayed(g, p, wd, out=rest[0])
                if mu != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.copy()  # private: g may be p.grad.data
                    else:
                        buf *= mu
                        buf += xp.multiply(g, 1 - damp, out=tmp) if damp != 0 else g  # 1 * g is g exactly
                    if group["nesterov"]:
                        xp.multiply(buf, mu, out=tmp)
                        g = xp.add(g, tmp, out=tmp)
                    else:
                        g = buf
                p.data -= xp.multiply(g, lr, out=tmp)
        return loss


class SGDMomentumCS231n(Optimizer):
    r"""SGD with momentum in the notes' (CS231n, Sutskever et al. 2013) form: a velocity holding the lr.

    Per step, with ``g`` the gradient (plus ``weight_decay * p``) and ``v`` starting at 0::

        v = momentum * v - lr * g
        p = p + v                                             (classic momentum)
        p = p - momentum * v_prev + (1 + momentum) * v        (nesterov=True; v_prev is v before the update)

    At a constant ``lr`` this gives exactly the parameters of ``SGD(lr, momentum, nesterov=...)``:
    ``v = -lr * b`` for PyTorch's buffer ``b``. When the lr changes (a schedule), the two differ: ``v``
    still carries the old lr inside it, while PyTorch's buffer holds raw gradients and the new lr
    scales the whole buffer at once.

    State per parameter: ``'velocity'``.

    >>> import shendu
    >>> p = shendu.tensor([1.0], requires_grad=True)
    >>> opt = SGDMomentumCS231n([p], lr=0.1, momentum=0.9)
    >>> for g in (1.0, 2.0):
    ...     p.grad = shendu.tensor([g]); opt.step()
    >>> round(p.item(), 4)   # 1 - 0.1 - (0.9 * 0.1 + 0.2)
    0.61
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = False, *, maximize: bool = False):
        _check_nonneg("SGDMomentumCS231n", lr=lr, momentum=momentum, weight_decay=weight_decay)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None):
        loss = self._begin_step(closure)
        for group in self.param_groups:
            lr, mu, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
            for p, g in params_with_grad(group):
                xp = get_array_module(p.data)
                tmp, *rest = scratch_buffers(self, p, 2 if group["nesterov"] else 1)
                if wd != 0:
                    g = weight_decayed(g, p, wd, out=tmp)
                state = self.state[p]
                v = state.get("velocity")
                if v is None:
                    v = state["velocity"] = xp.zeros_like(p.data)
                if group["nesterov"]:
                    v_prev = rest[0]
                    v_prev[...] = v
                v *= mu
                v -= xp.multiply(g, lr, out=tmp)  # g may be tmp itself: it is not needed afterwards
                if group["nesterov"]:
                    xp.multiply(v, 1 + mu, out=tmp)
                    v_prev *= mu
                    tmp -= v_prev
                    p.data += tmp
                else:
                    p.data += v
        return loss
