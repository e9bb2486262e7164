"""All parameters seen as one flat vector: the view the second-order methods work in."""

from __future__ import annotations

from shendu.backend import get_array_module


def flat_params(params):
    """A new 1-D array holding every parameter's values, in order."""
    xp = get_array_module(*(p.data for p in params))
    return xp.concatenate([p.data.reshape(-1) for p in params])


def flat_grad(params):
    """A new 1-D array of every parameter's gradient (zeros where ``.grad`` is None)."""
    xp = get_array_module(*(p.data for p in params))
    return xp.concatenate([(p.grad.data if p.grad is not None else xp.zeros_like(p.data)).reshape(-1)
                           for p in params])


def set_flat(params, vec) -> None:
    """Write ``vec`` (a flat array) into the parameters, in place."""
    offset = 0
    for p in params:
        n = p.data.size
        p.data[...] = vec[offset:offset + n].reshape(p.data.shape)
        offset += n


def add_flat(params, step: float, direction) -> None:
    """``p += step * direction`` over all parameters, in place (``direction`` flat)."""
    offset = 0
    for p in params:
        n = p.data.size
        p.data += step * direction[offset:offset + n].reshape(p.data.shape)
        offset += n
