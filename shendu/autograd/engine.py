"""The backward pass: grad mode, iterative topological traversal, gradient accumulation, unbroadcast.

The graph is made of :class:`~shendu.autograd.function.Function` nodes. Each node's ``next_edges``
holds, per positional input, ``(node, output_index)`` for an input produced by another op, ``(leaf, -1)``
for a leaf tensor that requires grad, or ``None``. Backward counts, for every reachable node, how many
edges point at it, then runs nodes whose count has dropped to zero (Kahn's algorithm) — no recursion,
so a chain of any length works, and each node runs once with the sum of all gradients that reach it.
"""

from __future__ import annotations

import contextlib
import functools

from shendu.errors import AutogradError, ShapeError, fmt_shape

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "run_backward", "unbroadcast"]


class _GradMode:
    enabled = True


grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    """Whether ops record the graph (False inside :class:`no_grad`)."""
    return grad_mode.enabled


class set_grad_enabled(contextlib.ContextDecorator):
    """Turn graph recording on or off, as a context manager, decorator or plain call."""

    def __init__(self, mode: bool):
        self.prev = grad_mode.enabled
        grad_mode.enabled = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        grad_mode.enabled = self.prev
        return False


class no_grad(contextlib.ContextDecorator):
    """Context manager and decorator in which ops record no graph (inference, optimizer updates).

    >>> import shendu
    >>> x = shendu.ones(2, requires_grad=True)
    >>> with shendu.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    def __enter__(self):
        self.prev = grad_mode.enabled
        grad_mode.enabled = False
        return self

    def __exit__(self, *exc):
        grad_mode.enabled = self.prev
        return False


class enable_grad(contextlib.ContextDecorator):
    """Context manager and decorator that turns graph recording back on inside ``no_grad``."""

    def __enter__(self):
        self.prev = grad_mode.enabled
        grad_mode.enabled = True
        return self

    def __exit__(self, *exc):
        grad_mode.enabled = self.prev
        return False


def unbroadcast(g, shape):
    """Sum ``g`` down to ``shape``: the backward of NumPy broadcasting.

    Leading axes that broadcasting added are summed away; axes where ``shape`` has size 1 are summed
    with ``keepdims``.
    """
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, s in enumerate(shape) if s == 1 and g.shape[i + extra] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _tensor_cls():
    from shendu.autograd.tensor import Tensor

    return Tensor


@functools.lru_cache(maxsize=None)
def _zeros_like_meta(shape, dtype):
    import numpy as np

    z = np.zeros(shape, dtype)
    z.flags.writeable = False  # shared across calls: nobody may write into it
    return z


def _check_grad(node_name, g, shape, dtype):
    """Make an op's gradient match the tensor it belongs to, or say which op got it wrong."""
    if g.shape != shape:
        if g.size == 1 and len(shape) == 0:
            return g.reshape(()).astype(dtype, copy=False)
        raise ShapeError(f"{node_name} returned a gradient of shape {fmt_shape(g.shape)} for an input "
                         f"of shape {fmt_shape(shape)}; this is a bug in that op's backward")
    if g.dtype != dtype:
        g = g.astype(dtype)
    return g


def run_backward(roots, root_grads, retain_graph=False, capture=None):
    """Propagate ``root_grads`` (arrays) from ``roots`` (tensors) back through the graph.

    Without ``capture``, gradients accumulate into ``.grad`` of the leaves. With ``capture`` (a dict
    mapping ``(node_or_leaf, index)`` keys to ``None``), nothing is accumulated and the total gradient
    reaching each key is stored in the dict instead: that is ``shendu.autograd.grad``.
    """
    Tensor = _tensor_cls()
    buffers = {}
    deps = {}
    stack = []
    given = set()  # ids of arrays handed to a leaf's .grad, so two leaves never share one array

    def accumulate_leaf(leaf, g):
        g = _check_grad("backward", g, leaf.data.shape, leaf.data.dtype)
        if leaf._hooks:
            for hook in leaf._hooks:
                r = hook(Tensor._wrap(g))
                if r is not None:
                    g = r.data if isinstance(r, Tensor) else r
        if capture is not None:
            key = (leaf, -1)
            if key in capture:
                capture[key] = g if capture[key] is None else capture[key] + g
            return
        if leaf.grad is None:
            if not g.flags.owndata or not g.flags.writeable or id(g) in given:
                g = g.copy()
            given.add(id(g))
            leaf.grad = Tensor._wrap(g)
        else:
            leaf.grad.data = leaf.grad.data + g

    given.update(id(g) for g in root_grads)  # the caller's arrays: never stored as a leaf's .grad
    # Seed the roots.
    for t, g in zip(roots, root_grads):
        if t._ctx is None:
            if t.requires_grad:
                accumulate_leaf(t, g)
            continue
        node, idx = t._ctx, t._out_idx
        buf = buffers.get(node)
        if buf is None:
            buf = buffers[node] = [None] * len(node.out_meta)
            stack.append(node)
        buf[idx] = g if buf[idx] is None else buf[idx] + g

    # Count the edges into every reachable node.
    seen = set(stack)
    walk = list(stack)
    while walk:
        node = walk.pop()
        for edge in node.next_edges:
            if edge is None or edge[1] < 0:
                continue
            child = edge[0]
            deps[child] = deps.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                walk.append(child)

    ready = [n for n in stack if deps.get(n, 0) == 0]
    while ready:
        node = ready.pop()
        grads = buffers.pop(node, None)
        if grads is None:
            # No gradient reached this node (every edge into it carried None): release its children.
            gin = (None,) * len(node.next_edges)
        else:
            gin = _run_node(node, grads, capture, retain_graph, Tensor)
        for edge, g in zip(node.next_edges, gin):
            if edge is None:
                continue
            child, idx = edge
            if idx < 0:
                if g is not None:
                    accumulate_leaf(child, g)
                continue
            if g is not None:
                shape, dtype = child.out_meta[idx]
                g = _check_grad(node.name, g, shape, dtype)
                buf = buffers.get(child)
                if buf is None:
                    buf = buffers[child] = [None] * len(child.out_meta)
                buf[idx] = g if buf[idx] is None else buf[idx] + g
            deps[child] -= 1
            if deps[child] == 0:
                ready.append(child)


def _run_node(node, grads, capture, retain_graph, Tensor):
    """Call one node's backward with the summed gradients of its outputs; return its input gradients."""
    if node.freed:
        raise AutogradError(
            f"backward: trying to backward through the graph a second time: the saved arrays of "
            f"{node.name} were freed by the first backward. Pass retain_graph=True to the first "
            f"backward() (or autograd.grad) if you need to go through the graph twice.")
    for i, g in enumerate(grads):
        if g is None:
            grads[i] = _zeros_like_meta(*node.out_meta[i])
    if node.hooks:
        for idx, hooks in node.hooks.items():
            for hook in hooks:
                if isinstance(hook, _Retain):
                    t = hook.ref()
                    if t is not None:
                        g = grads[idx].copy()
                        t.grad = Tensor._wrap(g) if t.grad is None else Tensor._wrap(t.grad.data + g)
                    continue
                r = hook(Tensor._wrap(grads[idx]))
                if r is not None:
                    grads[idx] = r.data if isinstance(r, Tensor) else r
    if capture is not None:
        for i in range(len(grads)):
            key = (node, i)
            if key in capture:
                capture[key] = grads[i]
    gin = node.backward(*grads)
    if type(gin) is not tuple:
        gin = (gin,)
    if len(gin) != len(node.next_edges):
        raise AutogradError(f"{node.name} returned {len(gin)} gradient(s) for "
                            f"{len(node.next_edges)} input(s); this is a bug in that op's backward")
    if not retain_graph:
        node.saved = None
        node.freed = True
        node.__dict__.clear()
    return gin


class _Retain:
    """Marks ``retain_grad()`` in a node's hook list: store the gradient on the tensor (weakly held)."""

    __slots__ = ("ref",)

    def __init__(self, ref):
        self.ref = ref
