"""Gradient clipping: by the global norm of all gradients, or elementwise by value (in place, like PyTorch).

These are PyTorch's ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` (also reachable as
``shendu.nn.utils``). They are the only optimizer-side code that writes into ``p.grad`` in place.
"""

from __future__ import annotations

import math
from typing import Iterable

from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, AutogradError

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _grads(parameters) -> list:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _vector_norm(xp, a, norm_type: float):
    """The ``norm_type``-norm of ``a`` flattened (inf: max |a|, -inf: min |a|, 0: count of nonzeros)."""
    return xp.linalg.norm(a.reshape(-1), ord=norm_type)


def get_total_norm(tensors: Iterable[Tensor] | Tensor, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> Tensor:
    """The norm of all ``tensors`` seen as one concatenated vector (the norm of the per-tensor norms).

    >>> import shendu
    >>> get_total_norm([shendu.tensor([3.0]), shendu.tensor([4.0])])
    tensor(5.)
    """
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    arrays = [t.data for t in tensors]
    norm_type = float(norm_type)
    if not arrays:
        return Tensor(0.0)
    xp = get_array_module(*arrays)
    norms = xp.stack([_vector_norm(xp, a, norm_type) for a in arrays])
    total = _vector_norm(xp, norms, norm_type).astype(arrays[0].dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise AutogradError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is non-finite "
                            f"({float(total)}), so it cannot be clipped; set error_if_nonfinite=False to clip anyway")
    return Tensor._wrap(xp.asarray(total))


def clip_grads_with_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, total_norm) -> None:
    """Scale every gradient in place by ``min(1, max_norm / (total_norm + 1e-6))``."""
    grads = _grads(parameters)
    if not grads:
        return
    total = float(total_norm.data if isinstance(total_norm, Tensor) else total_norm)
    coef = min(float(max_norm) / (total + 1e-6), 1.0)
    for g in grads:
        g.data *= g.data.dtype.type(coef)


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    r"""Rescale all gradients together so that their global norm is at most ``max_norm``.

    ``total = || (||g_1||, ..., ||g_k||) ||_p`` (the p-norm of all gradients concatenated), then every
    gradient is multiplied in place by ``min(1, max_norm / (total + 1e-6))``. Returns ``total`` (before
    clipping) as a 0-d Tensor. ``foreach`` is accepted for PyTorch compatibility and ignored.

    >>> import shendu
    >>> a = shendu.tensor([3.0], requires_grad=True); a.grad = shendu.tensor([3.0])
    >>> b = shendu.tensor([4.0], requires_grad=True); b.grad = shendu.tensor([4.0])
    >>> clip_grad_norm_([a, b], max_norm=1.0)
    tensor(5.)
    >>> a.grad, b.grad
    (tensor([0.6]), tensor([0.8]))
    """
    if not max_norm >= 0 or math.isnan(float(norm_type)):
        raise ArgumentError(f"clip_grad_norm_: max_norm must be >= 0 and norm_type a number, got max_norm={max_norm}, "
                            f"norm_type={norm_type}")
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    total = get_total_norm(_grads(parameters), norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total)
    return total


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float, foreach=None) -> None:
    """Clamp every gradient elementwise, in place, to ``[-clip_value, clip_value]``.

    >>> import shendu
    >>> a = shendu.tensor([0.0, 0.0], requires_grad=True); a.grad = shendu.tensor([-3.0, 0.5])
    >>> clip_grad_value_(a, 1.0); a.grad
    tensor([-1. ,  0.5])
    """
    if not clip_value >= 0:
        raise ArgumentError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for g in _grads(parameters):
        xp = get_array_module(g.data)
        xp.clip(g.data, -clip_value, clip_value, out=g.data)
