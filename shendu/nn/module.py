"""``Module`` and ``Parameter``: the stateful side of shendu, shaped like ``torch.nn.Module``.

A Module owns parameters, buffers and submodules. They are registered by attribute assignment::

    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.fc1 = Linear(784, 100)    # a submodule
            self.scale = Parameter(ones(1))  # a parameter
            self.register_buffer("steps", zeros(1))  # state that is saved but not trained

and found again by :meth:`Module.parameters`, :meth:`Module.state_dict` (keys ``"fc1.weight"``, the
same dotted names as PyTorch, so weights move between the two) and friends. ``module(x)`` runs
:meth:`forward` plus any hooks.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple
from typing import Callable, Iterator

import numpy as np

from shendu import backend
from shendu.autograd.engine import no_grad
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, DTypeError, StateDictError, fmt_shape

__all__ = ["Parameter", "Module", "RemovableHandle"]


class Parameter(Tensor):
    """A Tensor that is a trainable parameter of a Module: assigning one to a Module attribute
    registers it. ``requires_grad`` is True by default. The array is shared with ``data``, not copied.

    >>> import shendu
    >>> p = Parameter(shendu.zeros(2))
    >>> p
    Parameter containing:
    tensor([0., 0.], requires_grad=True)
    """

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty((0,), dtype=backend.get_default_dtype())
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        out = Parameter(self.data.copy(), requires_grad=self.requires_grad)
        if self.grad is not None:
            out.grad = Tensor._wrap(self.grad.data.copy())
        memo[id(self)] = out
        return out

    def __reduce_ex__(self, protocol):  # copy.copy / pickling: rebuild as a Parameter
        return (Parameter, (self.data, self.requires_grad))


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` (or leaving a ``with`` block) unhooks."""

    _next_id = itertools.count()

    def __init__(self, hooks: dict):
        self.hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _as_array(value):
    """The NumPy array behind a state-dict value: a shendu Tensor, an ndarray, a torch tensor, a number."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach"):  # torch tensors (possibly requiring grad)
        value = value.detach()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value)


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _check_name(kind: str, name) -> None:
    if not isinstance(name, str):
        raise ArgumentError(f"{kind}: name must be a string, got {type(name).__name__}")
    if not name or "." in name:
        raise ArgumentError(f"{kind}: name {name!r} must be a non-empty string without '.'")


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, assign parameters and submodules as attributes, and
    define ``forward``. ``training`` is True until :meth:`eval` is called.

    >>> import shendu
    >>> from shendu import nn
    >>> class Affine(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = nn.Parameter(shendu.ones(3))
    ...         self.register_buffer("calls", shendu.zeros(1))
    ...     def forward(self, x):
    ...         return x * self.w
    >>> m = Affine()
    >>> list(m.state_dict())
    ['w', 'calls']
    >>> m(shendu.tensor([1.0, 2.0, 3.0])).tolist()
    [1.0, 2.0, 3.0]
    """

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers_set"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    # -------------------------------------------------------------------------------------- calling
    def __call__(self, *args, **kwargs):
        # Hot path: one dict truth test each when there are no hooks.
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args, kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(module, args)`` before ``forward``; a non-None result replaces ``args``."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after ``forward``; a non-None result replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------------------- registration
    def __setattr__(self, name: str, value) -> None:
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._remove_from(name, d, params)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise ArgumentError(f"{type(self).__name__}: cannot assign {type(value).__name__} as parameter "
                                    f"{name!r} (Parameter or None expected); wrap it: nn.Parameter(value)")
            params[name] = None
        elif isinstance(value, Module):
            modules = d.get("_modules")
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._remove_from(name, d, params, keep_module_slot=True)  # a replaced child keeps its place
            modules[name] = value
        elif d.get("_modules") is not None and name in d["_modules"]:
            if value is not None:
                raise ArgumentError(f"{type(self).__name__}: cannot assign {type(value).__name__} as child "
                                    f"module {name!r} (Module or None expected)")
            d["_modules"][name] = None
        elif d.get("_buffers") is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise ArgumentError(f"{type(self).__name__}: cannot assign {type(value).__name__} as buffer "
                                    f"{name!r} (Tensor or None expected)")
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def _remove_from(self, name, d, params, keep_module_slot: bool = False) -> None:
        d.pop(name, None)
        params.pop(name, None)
        d["_buffers"].pop(name, None)
        d["_non_persistent_buffers_set"].discard(name)
        if not keep_module_slot:
            d["_modules"].pop(name, None)

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: parameters, buffers and submodules live in dicts.
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            s = d.get(store)
            if s is not None and name in s:
                return s[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if name in d[store]:
                del d[store][name]
                d["_non_persistent_buffers_set"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` (a :class:`Parameter` or None) under ``name``; same as ``self.name = param``."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name("register_parameter", name)
        if hasattr(self, name) and name not in self._parameters:
            raise ArgumentError(f"register_parameter: attribute {name!r} already exists on {type(self).__name__}")
        if param is not None and not isinstance(param, Parameter):
            raise ArgumentError(f"register_parameter: cannot assign {type(param).__name__} object to parameter "
                                f"{name!r} (Parameter or None required); wrap it: nn.Parameter(tensor)")
        if param is not None and param.grad_fn is not None:
            raise ArgumentError(f"register_parameter: parameter {name!r} is not a leaf (it was computed by "
                                f"{param.grad_fn.name}); use nn.Parameter(tensor.detach())")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a buffer: state that is not trained (running means, counters). Persistent buffers are part
        of :meth:`state_dict`; ``to(dtype)`` casts floating buffers."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name("register_buffer", name)
        if hasattr(self, name) and name not in self._buffers:
            raise ArgumentError(f"register_buffer: attribute {name!r} already exists on {type(self).__name__}")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise ArgumentError(f"register_buffer: cannot assign {type(tensor).__name__} object to buffer "
                                f"{name!r} (Tensor or None required); wrap it: shendu.tensor(value)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        """Add a child module under ``name``; same as ``self.name = module``."""
        if module is not None and not isinstance(module, Module):
            raise ArgumentError(f"add_module: {type(module).__name__} is not a Module subclass")
        _check_name("add_module", name)
        if hasattr(self, name) and name not in self._modules:
            raise ArgumentError(f"add_module: attribute {name!r} already exists on {type(self).__name__}")
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> "Module":
        """The submodule at dotted path ``target`` (``""`` is the module itself)."""
        mod = self
        for item in target.split(".") if target else []:
            child = mod._modules.get(item)
            if child is None:
                raise ArgumentError(f"get_submodule: {type(mod).__name__} has no submodule {item!r} "
                                    f"(path {target!r}); children are {list(mod._modules)}")
            mod = child
        return mod

    # -------------------------------------------------------------------------------------- iteration
    def _named_members(self, get_members, prefix="", recurse=True, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for mod_prefix, mod in modules:
            for k, v in get_members(mod):
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                if remove_duplicate:
                    seen.add(id(v))
                yield (mod_prefix + "." + k if mod_prefix else k), v

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter, once each (shared parameters are not repeated)."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(dotted_name, parameter)`` pairs, e.g. ``("0.weight", ...)`` for a Sequential."""
        return self._named_members(lambda m: m._parameters.items(), prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, "Module"]]:
        """The module itself (name ``prefix``) and every submodule, depth first, in registration order."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + "." + name if prefix else name, remove_duplicate)

    # ------------------------------------------------------------------------------------ state dict
    def _state_entries(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(key, tensor)`` for every parameter and persistent buffer, in torch's order: a module's own
        parameters, then its buffers, then each child's entries. Shared modules appear under every name."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                yield prefix + name, b
        for name, m in self._modules.items():
            if m is not None:
                yield from m._state_entries(prefix + name + ".")

    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """An ``OrderedDict`` of dotted names to tensors (detached, sharing memory with the module) for
        every parameter and persistent buffer. Keys equal PyTorch's for the same architecture."""
        out = OrderedDict() if destination is None else destination
        for key, t in self._state_entries(prefix):
            out[key] = t if keep_vars else t.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy values from ``state_dict`` into the parameters and buffers, in place (dtypes are kept).

        Values may be shendu Tensors, NumPy arrays, or anything with ``.numpy()`` / ``__array__``
        (torch tensors). Every key is checked first; missing (``strict``), unexpected (``strict``) and
        shape-mismatched keys are reported together in one :class:`~shendu.errors.StateDictError`, and
        then nothing has been changed. Returns ``(missing_keys, unexpected_keys)``. ``assign=True`` gives
        each tensor a new array (a converted copy) instead of writing into the existing one.
        """
        if not hasattr(state_dict, "keys"):
            raise ArgumentError(f"load_state_dict: expected a mapping of names to tensors, got "
                                f"{type(state_dict).__name__}")
        own = OrderedDict(self._state_entries())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in own]
        problems, updates = [], []
        for key, target in own.items():
            if key not in state_dict:
                continue
            try:
                arr = _as_array(state_dict[key])
            except Exception as e:  # noqa: BLE001 - reported with the other problems
                problems.append(f"cannot read the value of {key} ({type(state_dict[key]).__name__}): {e}")
                continue
            if arr.shape != target.shape:
                problems.append(f"size mismatch for {key}: copying a param with shape {fmt_shape(arr.shape)} "
                                f"from checkpoint, the shape in current model is {fmt_shape(target.shape)}.")
            elif arr.dtype.kind not in "biuf" and arr.dtype != target.dtype:
                problems.append(f"cannot load {key}: dtype {arr.dtype} can't be converted to {target.dtype}")
            else:
                updates.append((target, arr))
        if problems or (strict and (missing or unexpected)):
            lines = [f"Error(s) in loading state_dict for {type(self).__name__}:"]
            if strict and missing:
                lines.append("  Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
            if strict and unexpected:
                lines.append("  Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
            lines.extend("  " + p for p in problems)
            hint = _prefix_hint(missing, unexpected)
            lines.append("Nothing was loaded; the module is unchanged." + (f" Hint: {hint}" if hint else ""))
            raise StateDictError("\n".join(lines))
        with no_grad():
            for target, arr in updates:
                if assign or not target.data.flags.writeable:
                    target.data = arr.astype(target.dtype, copy=True)
                else:
                    np.copyto(target.data, arr, casting="unsafe")
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (dropout active, batch norm uses batch statistics) here and in every submodule."""
        if not isinstance(mode, bool):
            raise ArgumentError(f"train: mode is expected to be a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self) -> "Module":
        """Set evaluation mode; same as ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Turn gradient tracking on or off for every parameter (freeze a backbone with False)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter: to None (default, like torch) or to zeros in place."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            elif p.grad.data.flags.writeable:
                p.grad.data.fill(0)
            else:
                p.grad.data = np.zeros_like(p.grad.data)

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Call ``fn`` on every submodule (children first) and then on this module; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------------------------------ dtype
    def _cast_floats(self, dtype) -> "Module":
        dtype = np.dtype(dtype)
        if dtype.kind not in "fc":
            raise DTypeError(f"{type(self).__name__}.to: only floating point dtypes are accepted, got {dtype}")
        seen = set()
        for m in self.modules():
            for t in itertools.chain(m._parameters.values(), m._buffers.values()):
                if t is None or id(t) in seen or t.dtype.kind not in "fc":
                    continue
                seen.add(id(t))
                # Rebind .data so the Parameter objects (held by optimizers) stay the same objects.
                t.data = t.data.astype(dtype, copy=False)
                if t.grad is not None:
                    t.grad.data = t.grad.data.astype(dtype, copy=False)
        return self

    def to(self, *args, **kwargs) -> "Module":
        """``to(dtype)`` casts floating parameters and buffers in place; ``"cpu"`` is accepted and ignored."""
        dtype = kwargs.pop("dtype", None)
        if kwargs.get("device") is not None:
            args = args + (str(kwargs["device"]),)
        kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise ArgumentError(f"to: unexpected keyword argument(s) {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif isinstance(a, str) and a.split(":")[0] in ("cpu",):
                continue
            elif isinstance(a, str) and a.split(":")[0] == "cuda":
                raise ArgumentError("to: shendu runs on the CPU (NumPy); device 'cuda' is not available")
            else:
                dtype = a
        return self if dtype is None else self._cast_floats(dtype)

    def float(self) -> "Module":
        return self._cast_floats(np.float32)

    def double(self) -> "Module":
        return self._cast_floats(np.float64)

    def half(self) -> "Module":
        return self._cast_floats(np.float16)

    def cpu(self) -> "Module":
        return self

    # ------------------------------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in ``repr``; layers override it."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, m in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(m), 2))
        if not lines:
            return self._get_name() + "()"
        if len(lines) == 1 and not self._modules:
            return f"{self._get_name()}({lines[0]})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"

    # ----------------------------------------------------------------------------------------- summary
    def summary(self, input_shape, dtype=np.float32, depth: int = 10) -> str:
        """A table like torchinfo's: each layer run by ``forward`` (in call order), its output shape,
        its own parameter count and whether they are trainable, then the totals.

        ``input_shape`` is a shape tuple (including the batch dimension), a list of shapes for several
        inputs, or the input tensor(s) themselves. The forward runs under ``no_grad`` in eval mode (so
        running statistics are untouched and dropout draws no random numbers); modes are restored.

        >>> from shendu import nn
        >>> print(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).summary((1, 4)))  # doctest: +NORMALIZE_WHITESPACE
        ===========================================================================
        Layer (type)                      Output Shape         Param #    Trainable
        ===========================================================================
        Sequential                        [1, 2]               --         True
        ├─0 (Linear)                      [1, 3]               15         True
        ├─1 (Linear)                      [1, 2]               8          True
        ===========================================================================
        Total params: 23
        Trainable params: 23
        Non-trainable params: 0
        Params size (MB): 0.00
        Forward activations (MB): 0.00
        ===========================================================================
        """
        inputs = _summary_inputs(input_shape, dtype)
        names = {id(m): name for name, m in self.named_modules()}
        rows, open_rows, handles = [], [], []

        # A pre-hook opens the row on entry (so a parent is listed before its children, in call order);
        # the forward hook fills in the output of the innermost open row.
        def enter(module, args):
            open_rows.append(len(rows))
            rows.append([module, None])

        def leave(module, args, out):
            rows[open_rows.pop()][1] = out

        for m in self.modules():
            handles.append(m.register_forward_pre_hook(enter))
            handles.append(m.register_forward_hook(leave))
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            with no_grad():
                self(*inputs)
        finally:
            for h in handles:
                h.remove()
            for m, mode in modes:
                m.__dict__["training"] = mode
        rows = [(m, o) for m, o in rows if names[id(m)].count(".") + (names[id(m)] != "") <= depth]

        line = "=" * 75
        table = [line, f"{'Layer (type)':<34}{'Output Shape':<21}{'Param #':<11}Trainable", line]
        for m, o in rows:
            name = names[id(m)]
            level = 0 if not name else name.count(".") + 1
            label = type(m).__name__ if not name else f"{name.rsplit('.', 1)[-1]} ({type(m).__name__})"
            label = ("│ " * (level - 1) + "├─" if level else "") + label
            own = [p for p in m._parameters.values() if p is not None]
            allp = list(m.parameters())
            n_own = sum(p.numel() for p in own)
            count = f"{n_own:,}" if own else "--"
            trainable = _trainable_label(allp)
            table.append(f"{label:<34}{_shape_str(o):<21}{count:<11}{trainable}")
        params = list(self.parameters())
        total = sum(p.numel() for p in params)
        train_n = sum(p.numel() for p in params if p.requires_grad)
        param_bytes = sum(p.data.nbytes for p in params) + sum(b.data.nbytes for b in self.buffers())
        act_bytes = sum(_nbytes(o) for _, o in rows)
        table += [line, f"Total params: {total:,}", f"Trainable params: {train_n:,}",
                  f"Non-trainable params: {total - train_n:,}", f"Params size (MB): {param_bytes / 1e6:.2f}",
                  f"Forward activations (MB): {act_bytes / 1e6:.2f}", line]
        return "\n".join(table)


def _prefix_hint(missing, unexpected) -> str:
    """Explain the common case of checkpoint keys that carry an extra or missing leading prefix."""
    if not missing or not unexpected:
        return ""
    stripped = {k.split(".", 1)[1] for k in unexpected if "." in k}
    if stripped and set(missing) <= stripped:
        prefix = unexpected[0].split(".", 1)[0] + "."
        return f"the checkpoint keys carry an extra prefix {prefix!r}; strip it before loading."
    return ""


def _summary_inputs(input_shape, dtype):
    def one(spec):
        if isinstance(spec, Tensor):
            return spec
        if isinstance(spec, np.ndarray) or hasattr(spec, "__array__"):
            return Tensor(np.asarray(spec))
        shape = tuple(int(s) for s in spec)
        # A private generator: asking for a summary must not move the global random stream.
        return Tensor._wrap(np.random.default_rng(0).standard_normal(shape).astype(dtype))

    if isinstance(input_shape, (Tensor, np.ndarray)):
        return (one(input_shape),)
    if isinstance(input_shape, (list, tuple)) and input_shape and all(isinstance(s, int) for s in input_shape):
        return (one(input_shape),)
    if isinstance(input_shape, (list, tuple)) and input_shape:
        return tuple(one(s) for s in input_shape)
    raise ArgumentError(f"summary: input_shape must be a shape tuple such as (1, 3, 32, 32), a list of "
                        f"shapes, or an input tensor; got {input_shape!r}")


def _trainable_label(params) -> str:
    if not params:
        return "--"
    flags = {p.requires_grad for p in params}
    return "Partial" if len(flags) == 2 else str(flags.pop())


def _shape_str(out) -> str:
    if isinstance(out, Tensor) or hasattr(out, "shape"):
        return str(list(out.shape))
    if isinstance(out, (tuple, list)):
        return "[" + ", ".join(_shape_str(o) for o in out) + "]"
    if isinstance(out, dict):
        return "{" + ", ".join(f"{k}: {_shape_str(v)}" for k, v in out.items()) + "}"
    return "--"


def _nbytes(out) -> int:
    if isinstance(out, Tensor):
        return out.data.nbytes
    if isinstance(out, (tuple, list)):
        return sum(_nbytes(o) for o in out)
    if isinstance(out, dict):
        return sum(_nbytes(o) for o in out.values())
    return 0
