"""``Function``: the base of every differentiable op.

An op subclasses :class:`Function` and writes ``forward`` and ``backward`` on raw arrays, never on
Tensors, so backward builds no graph and costs no autograd overhead::

    class Exp(Function):
        def forward(ctx, x):
            y = xp.exp(x); ctx.save_for_backward(y); return y
        def backward(ctx, gy):
            y, = ctx.saved; return gy * y

``Exp.apply(t)`` unwraps the Tensor arguments, runs ``forward``, wraps the result and, when any input
requires grad and grad mode is on, records the call as a node of the graph. Non-Tensor positional
arguments (Python scalars, tuples) pass through unchanged; ``backward`` returns one gradient per
positional argument (``None`` where there is none). An op with several outputs returns a tuple from
``forward`` and receives one gradient per output in ``backward`` (zeros for outputs that were unused;
integer outputs such as indices never carry a gradient).
"""

from __future__ import annotations

from shendu.autograd import engine
from shendu.autograd.tensor import Tensor

__all__ = ["Function"]


class Function:
    """Base class of differentiable ops; the instance is both the context and the graph node.

    Attributes set by :meth:`apply` for use in ``forward``/``backward``:

    - ``needs_input_grad``: one bool per positional argument (False for non-Tensors).
    - ``saved``: the tuple given to :meth:`save_for_backward`.
    """

    # Engine bookkeeping lives in slots; anything an op stores on ``ctx`` goes in its __dict__,
    # which the engine clears once backward has run (unless retain_graph=True).
    __slots__ = ("needs_input_grad", "saved", "next_edges", "out_meta", "freed", "hooks", "__dict__")

    def forward(ctx, *args, **kwargs):
        raise NotImplementedError(f"{type(ctx).__name__}.forward is not implemented")

    def backward(ctx, *grad_outputs):
        raise NotImplementedError(f"{type(ctx).__name__}.backward is not implemented")

    def save_for_backward(ctx, *arrays) -> None:
        """Keep ``arrays`` for backward; they are released after backward unless the graph is retained."""
        ctx.saved = arrays

    @property
    def name(self) -> str:
        return type(self).__name__ + "Backward"

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = object.__new__(cls)
        arrays = []
        track = False
        for a in args:
            if isinstance(a, Tensor):
                arrays.append(a.data)
                if a.requires_grad:
                    track = True
            else:
                arrays.append(a)
        if track and engine.grad_mode.enabled:
            edges = []
            needs = []
            for a in args:
                if isinstance(a, Tensor) and a.requires_grad:
                    edges.append((a._ctx, a._out_idx) if a._ctx is not None else (a, -1))
                    needs.append(True)
                else:
                    edges.append(None)
                    needs.append(False)
            ctx.needs_input_grad = tuple(needs)
        else:
            track = False
            ctx.needs_input_grad = _NO_GRAD[len(args)] if len(args) < 8 else (False,) * len(args)
        ctx.saved = ()
        out = ctx.forward(*arrays, **kwargs)
        if not track:
            if type(out) is tuple:
                return tuple(Tensor._wrap(o) for o in out)
            return Tensor._wrap(out)
        ctx.next_edges = tuple(edges)
        ctx.freed = False
        ctx.hooks = None
        if type(out) is tuple:
            ctx.out_meta = tuple((o.shape, o.dtype) for o in out)
            return tuple(Tensor._wrap_output(o, ctx, i) for i, o in enumerate(out))
        ctx.out_meta = ((out.shape, out.dtype),)
        return Tensor._wrap_output(out, ctx, 0)


_NO_GRAD = [(False,) * n for n in range(8)]
