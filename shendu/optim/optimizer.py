"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad``, ``step`` and state dicts.

An optimizer holds ``param_groups``, a list of dicts: each has ``'params'`` (a list of Tensors) and
one value for every option of the algorithm (``lr``, ``momentum``, ...), taken from the group when
given there and from the optimizer's ``defaults`` otherwise, exactly like ``torch.optim``. Per
parameter state (momentum buffers, moment estimates, step counts) lives in ``self.state[param]``.

Updates work on the raw arrays ``p.data`` and ``p.grad.data``, so they record no graph. Parameters
are changed in place (other references to ``p.data`` see the new values, as in PyTorch); gradients
are never written to (except by ``zero_grad(set_to_none=False)`` and the clipping functions, as in
PyTorch), and state buffers are private arrays kept in the parameter's dtype.

``state_dict()`` is a plain structure of dicts, lists, numbers and arrays, with parameters replaced
by their position across all groups, like PyTorch's::

    {'state': {0: {'step': 3.0, 'exp_avg': array(...), ...}, ...},
     'param_groups': [{'lr': 0.001, 'betas': (0.9, 0.999), ..., 'params': [0, 1]}, ...]}
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any, Callable, Iterable

from shendu.autograd.engine import enable_grad
from shendu.autograd.tensor import Tensor
from shendu.backend import get_array_module
from shendu.errors import ArgumentError, DTypeError, StateDictError

__all__ = ["Optimizer", "required", "OptimizerStateError"]


class _Required:
    """Marks an option that has no default and must be given (PyTorch's ``required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class OptimizerStateError(StateDictError, ValueError):
    """An optimizer state dict that does not fit the optimizer (group or parameter counts, shapes)."""


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of Tensors, of ``(name, Tensor)`` pairs, or of dicts that define parameter
            groups (``{'params': [...], 'lr': 0.1}``); options missing from a group come from ``defaults``.
        defaults: the algorithm's options and their default values.

    Subclasses implement :meth:`step` and read their options from each group.

    >>> import shendu
    >>> from shendu.optim import SGD
    >>> w = shendu.tensor([1.0, 2.0], requires_grad=True)
    >>> b = shendu.tensor([0.0], requires_grad=True)
    >>> opt = SGD([{'params': [w]}, {'params': [b], 'lr': 0.5}], lr=0.1)
    >>> [g['lr'] for g in opt.param_groups]
    [0.1, 0.5]
    """

    # False for optimizers whose state is not shaped like the parameter it is stored under (LBFGS).
    _state_shaped_like_params = True

    def __init__(self, params, defaults: dict[str, Any]):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise DTypeError(f"{name}: params should be an iterable of Tensors or dicts, but got a Tensor; "
                             "wrap it in a list: [tensor]")
        if isinstance(params, dict):
            raise DTypeError(f"{name}: params should be an iterable of Tensors or dicts, but got a dict; "
                             "wrap the parameter group in a list: [group]")
        if isinstance(params, (set, frozenset)):
            raise DTypeError(f"{name}: parameters must be in an ordered collection, but got a set, whose "
                             "order changes between runs; use a list")
        self.defaults = defaults
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._step_called = False  # read by the schedulers to warn about scheduler.step() first
        groups = list(params)
        if not groups:
            raise ArgumentError(f"{name}: got an empty parameter list; pass model.parameters() or a "
                                "list of tensors with requires_grad=True")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"

    # --------------------------------------------------------------------------------------- groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (a dict with ``'params'`` and optional options) to optimize.

        Useful when fine-tuning: unfreeze layers and hand their parameters to the running optimizer.
        """
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise DTypeError(f"{name}.add_param_group: param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ArgumentError(f"{name}.add_param_group: the group has no 'params' key")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise DTypeError(f"{name}: parameters must be in an ordered collection, but got a set, whose "
                             "order changes between runs; use a list")
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ArgumentError(f"{name}: give either all parameters with names or none")
            group["param_names"] = names
        group["params"] = params
        for p in params:
            if not isinstance(p, Tensor):
                raise DTypeError(f"{name}: can only optimize Tensors, but one of the params is a "
                                 f"{type(p).__name__}")
            if not p.is_leaf:
                raise ArgumentError(f"{name}: can't optimize a non-leaf Tensor (it is the result of "
                                    f"{p.grad_fn.name}); optimize the leaf tensors it was computed from")
            if p.dtype.kind != "f":
                raise DTypeError(f"{name}: can only optimize floating-point tensors, got dtype {p.dtype}")
        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ArgumentError(f"{name}: parameter group didn't specify a value of required "
                                    f"optimization parameter {key}")
            group.setdefault(key, default)
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids):
            raise ArgumentError(f"{name}: a parameter group contains the same parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen & set(ids):
            raise ArgumentError(f"{name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # ----------------------------------------------------------------------------------- gradients
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters: to ``None`` (default) or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                elif p.grad.data.flags.writeable:
                    p.grad.data[...] = 0
                else:
                    p.grad.data = get_array_module(p.grad.data).zeros_like(p.grad.data)

    def step(self, closure: Callable[[], Any] | None = None):
        """Update the parameters once; ``closure`` (optional) recomputes and returns the loss."""
        raise NotImplementedError(f"{type(self).__name__}.step is not implemented")

    def _begin_step(self, closure):
        """Shared start of every ``step``: note the call and evaluate the closure with grad enabled."""
        self._step_called = True
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # ---------------------------------------------------------------------------------- state dicts
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state and options, with parameters replaced by their index (a copy).

        >>> import shendu
        >>> from shendu.optim import SGD
        >>> w = shendu.tensor([1.0, 2.0], requires_grad=True)
        >>> opt = SGD([w], lr=0.1, momentum=0.9)
        >>> w.grad = shendu.tensor([1.0, 1.0])
        >>> opt.step()
        >>> sd = opt.state_dict()
        >>> sd['state'][0]['momentum_buffer'], sd['param_groups'][0]['params']
        (array([1., 1.], dtype=float32), [0])
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = copy.deepcopy(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict made by :meth:`state_dict` (or converted from PyTorch's).

        Groups and parameters are matched by position; their counts (and state array shapes) must
        agree, else :class:`OptimizerStateError` is raised and nothing is changed. State arrays are
        copied and cast to the dtype of their parameter (step counts stay as they are).
        """
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise OptimizerStateError(
                f"{name}.load_state_dict: the state dict has {len(saved_groups)} parameter group(s) but the "
                f"optimizer has {len(self.param_groups)}; was it saved from an optimizer built the same way?")
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise OptimizerStateError(
                    f"{name}.load_state_dict: parameter group {i} has {len(saved['params'])} parameter(s) in the "
                    f"state dict but {len(group['params'])} in the optimizer")
        id_map = {}
        for saved, group in zip(saved_groups, self.param_groups):
            id_map.update(zip(saved["params"], group["params"]))
        new_state = defaultdict(dict)
        for key, value in state_dict["state"].items():
            k = int(key)  # JSON turns integer keys into strings
            if k not in id_map:
                raise OptimizerStateError(f"{name}.load_state_dict: state for parameter {k}, which is in no "
                                          "parameter group of the state dict")
            p = id_map[k]
            new_state[p] = {n: self._cast_state(n, v, p) for n, v in value.items()}
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            g = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            if "param_names" in group and "param_names" not in g:
                g["param_names"] = group["param_names"]
            g["params"] = group["params"]
            new_groups.append(g)
        self.state = new_state
        self.param_groups = new_groups

    def _cast_state(self, key, value, p):
        """Copy a saved state value; arrays of floats take the parameter's dtype (not the step count)."""
        if isinstance(value, Tensor):
            value = value.data
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast_state(key, v, p) for v in value)
        if not hasattr(value, "shape") or value.ndim == 0:
            return value.item() if hasattr(value, "item") else copy.deepcopy(value)
        xp = get_array_module(p.data)
        arr = xp.array(value, dtype=p.dtype if value.dtype.kind == "f" else value.dtype, copy=True)
        if self._state_shaped_like_params and key != "step" and arr.shape != p.shape:
            raise OptimizerStateError(
                f"{type(self).__name__}.load_state_dict: state '{key}' has shape {tuple(arr.shape)} but its "
                f"parameter has shape {tuple(p.shape)}; the state dict belongs to a different model")
        return arr


def _check_nonneg(opt: str, **values) -> None:
    """Raise a clear error when an option that must be >= 0 is negative (lr, eps, weight_decay, ...)."""
    for key, v in values.items():
        if not v >= 0.0:
            raise ArgumentError(f"{opt}: invalid {key} {v}; expected a value >= 0")


def params_with_grad(group: dict[str, Any]) -> Iterable[tuple[Tensor, Any]]:
    """``(param, gradient array)`` for the parameters of ``group`` that have a gradient.

    With ``maximize`` set in the group the gradient is negated (a new array: ``.grad`` is untouched).
    """
    maximize = group.get("maximize", False)
    for p in group["params"]:
        if p.grad is None:
            continue
        g = p.grad.data
        if g.shape != p.shape:
            raise ArgumentError(f"optimizer: a gradient has shape {tuple(g.shape)} but its parameter has shape "
                                f"{tuple(p.shape)}")
        yield p, (-g if maximize else g)
