"""Numerical gradient check: the notes' "numerical gradient vs analytic gradient".

The analytic gradient (backward) is compared with central differences in float64,

    df/dx_k ~ (f(x + eps e_k) - f(x - eps e_k)) / (2 eps),      error O(eps^2),

and passes where ``|analytic - numerical| <= atol + rtol * |numerical|``.

``mode="full"`` builds both Jacobians element by element (tiny inputs); ``mode="directional"``
compares one random directional derivative per input, ``v . J u`` against ``(J^T v) . u`` with random
``u`` and ``v``, which costs two forward passes and one backward per input whatever the size.
"""

from __future__ import annotations

import numpy as np

from shendu.autograd.engine import no_grad
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, AutogradError, DTypeError, GradcheckError

__all__ = ["gradcheck", "grad"]


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _outputs(fn, inputs):
    out = _as_tuple(fn(*inputs))
    return [o for o in out if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _eval(fn, inputs, which, arr):
    """Outputs of ``fn`` with input ``which`` replaced by ``arr`` (no graph), flattened and joined."""
    args = list(inputs)
    args[which] = Tensor._wrap(arr)
    with no_grad():
        outs = _outputs(fn, args)
    return np.concatenate([o.data.ravel().astype(np.float64) for o in outs]) if outs else np.zeros(0)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned instead of accumulated in ``.grad``.

    ``grad_outputs`` are the cotangents (ones for one-element outputs when omitted).

    >>> import shendu
    >>> x = shendu.tensor([1.0, 2.0], requires_grad=True)
    >>> shendu.autograd.grad((x ** 2).sum(), x)
    (tensor([2., 4.]),)
    """
    from shendu.autograd import engine

    if create_graph:
        raise ArgumentError("autograd.grad: create_graph=True (higher-order gradients) is not supported: "
                            "backward passes run on raw arrays. Use finite differences of the gradient.")
    outputs, inputs = _as_tuple(outputs), _as_tuple(inputs)
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    grad_outputs = _as_tuple(grad_outputs)
    gs = []
    for o, g in zip(outputs, grad_outputs):
        if not o.requires_grad:
            raise AutogradError("autograd.grad: an output does not require grad (was it computed under no_grad?)")
        if g is None:
            if o.data.size != 1:
                raise ArgumentError("autograd.grad: grad_outputs is required for outputs with more than one element")
            gs.append(np.ones_like(o.data))
        else:
            gs.append(np.asarray(g.data if isinstance(g, Tensor) else g, dtype=o.dtype))
    capture = {}
    for t in inputs:
        if not t.requires_grad:
            raise ArgumentError("autograd.grad: every input must require grad")
        capture[t._edge()] = None
    engine.run_backward(outputs, gs, retain_graph=bool(retain_graph), capture=capture)
    result = []
    for t in inputs:
        g = capture[t._edge()]
        if g is None:
            if not allow_unused:
                raise ArgumentError("autograd.grad: one of the inputs was not used in the graph; "
                                    "pass allow_unused=True to get None for it")
            result.append(None)
        else:
            result.append(Tensor._wrap(np.array(g, copy=True)))
    return tuple(result)


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              mode: str = "full", raise_exception: bool = True, seed: int = 0) -> bool:
    """Check the backward of ``fn`` at ``inputs`` against central differences in float64.

    Args:
        fn: callable taking the inputs and returning a Tensor or a tuple of Tensors.
        inputs: a Tensor or tuple; float64 tensors with ``requires_grad=True`` are checked, anything
            else is passed through unchanged.
        eps: the finite-difference step.
        atol, rtol: element passes when ``|analytic - numerical| <= atol + rtol * |numerical|``.
        mode: ``"full"`` (every Jacobian entry) or ``"directional"`` (one random direction per input).
        raise_exception: raise :class:`GradcheckError` with the worst element on failure (else return False).
        seed: seeds the random directions and cotangents.

    >>> import shendu
    >>> x = shendu.randn(3, 4, dtype=shendu.float64, requires_grad=True)
    >>> shendu.autograd.gradcheck(lambda t: (t.tanh() * t).sum(1), (x,))
    True
    """
    if mode not in ("full", "directional"):
        raise ArgumentError(f"gradcheck: mode must be 'full' or 'directional', got {mode!r}")
    inputs = _as_tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ArgumentError("gradcheck: no input requires grad; pass tensors with requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise DTypeError(f"gradcheck: input {i} is {inputs[i].dtype}; central differences need float64 "
                             "inputs (call .double() on them)")
    outs = _outputs(fn, inputs)
    if not outs:
        raise ArgumentError("gradcheck: fn returned no floating-point tensor")
    sizes = [o.data.size for o in outs]
    total = sum(sizes)
    rng = np.random.default_rng(seed)

    def analytic(cotangent):
        """J^T v for a flat cotangent v over all outputs, one array per checked input."""
        ys = _outputs(fn, inputs)
        gos, off = [], 0
        for y, n in zip(ys, sizes):
            gos.append(cotangent[off:off + n].reshape(y.shape).astype(y.dtype))
            off += n
        pairs = [(y, g) for y, g in zip(ys, gos) if y.requires_grad]
        if not pairs:
            return [np.zeros(inputs[i].shape) for i in checked]
        gs = grad([p[0] for p in pairs], [inputs[i] for i in checked], [p[1] for p in pairs], allow_unused=True)
        return [np.zeros(inputs[i].shape) if g is None else g.data for i, g in zip(checked, gs)]

    def fail(msg):
        if raise_exception:
            raise GradcheckError(msg)
        return False

    if mode == "full":
        for slot, i in enumerate(checked):
            x = inputs[i].data
            num = np.empty((x.size, total))
            flat = x.astype(np.float64).ravel()
            for k in range(x.size):  # the reference itself: one perturbation per element
                step = np.zeros_like(flat)
                step[k] = eps
                plus = _eval(fn, inputs, i, (flat + step).reshape(x.shape))
                minus = _eval(fn, inputs, i, (flat - step).reshape(x.shape))
                num[k] = (plus - minus) / (2 * eps)
            ana = np.empty_like(num)
            for j, v in enumerate(np.eye(total)):
                ana[:, j] = analytic(v)[slot].ravel()
            err = np.abs(ana - num) - (atol + rtol * np.abs(num))
            if (err > 0).any() or not np.isfinite(ana).all():
                k, j = np.unravel_index(np.nanargmax(np.where(np.isfinite(err), err, np.inf)), err.shape)
                idx = np.unravel_index(k, x.shape)
                return fail(f"gradcheck: Jacobian mismatch for input {i} at element {tuple(map(int, idx))}, "
                            f"output element {j}: analytic {ana[k, j]:.8g}, numerical {num[k, j]:.8g} "
                            f"(atol={atol}, rtol={rtol}); {(err > 0).sum()} of {err.size} entries differ")
        return True

    v = rng.standard_normal(total)
    grads = analytic(v)
    for slot, i in enumerate(checked):
        x = inputs[i].data
        u = rng.standard_normal(x.shape)
        numerical = v @ (_eval(fn, inputs, i, x + eps * u) - _eval(fn, inputs, i, x - eps * u)) / (2 * eps)
        analytical = float(np.sum(grads[slot] * u))
        if not abs(analytical - numerical) <= atol + rtol * abs(numerical):
            return fail(f"gradcheck: directional derivative mismatch for input {i}: analytic {analytical:.8g}, "
                        f"numerical {numerical:.8g} (atol={atol}, rtol={rtol})")
    return True
