"""Transfer learning helpers: freeze and unfreeze parts of a model, replace its classification head,
and give parameter groups their own learning rates (feature spec 7.9).

Freezing sets ``requires_grad=False`` and puts the frozen batch-norm layers in eval mode (else their
running statistics drift although their weights are frozen); leave frozen parameters out of the
optimizer (:func:`trainable_parameters`).

>>> from shendu import nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> freeze(model, ["0"])
>>> [n for n, p in model.named_parameters() if p.requires_grad]
['2.weight', '2.bias']
"""

from __future__ import annotations

import types

from shendu.errors import ArgumentError
from shendu.nn import Linear, Module

__all__ = ["freeze", "unfreeze", "trainable_parameters", "replace_head", "param_groups_with_lrs"]

_NORM_TYPES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm")


def _targets(model: Module, what) -> list[tuple[str, Module]]:
    """Submodules selected by ``what``: None (the whole model), a Module, a name/prefix or a list of them."""
    if what is None:
        return [("", model)]
    if isinstance(what, Module):
        return [(n, m) for n, m in model.named_modules() if m is what] or [("", what)]
    names = [what] if isinstance(what, str) else list(what)
    modules = dict(model.named_modules())
    out = []
    for name in names:
        if isinstance(name, Module):
            out += _targets(model, name)
        elif name in modules:
            out.append((name, modules[name]))
        else:
            raise ArgumentError(f"freeze: {type(model).__name__} has no submodule {name!r}; "
                                f"top-level children are {[n for n, _ in model.named_children()]}")
    return out


def _set(model: Module, what, trainable: bool) -> None:
    for _, module in _targets(model, what):
        for p in module.parameters():
            p.requires_grad_(trainable)
        for m in module.modules():
            if type(m).__name__ in _NORM_TYPES:
                m.__dict__["_frozen"] = not trainable
                m.train(model.training if trainable else False)
    if not getattr(model, "_freeze_hooked", False):
        _keep_frozen_norms_in_eval(model)


def _train_keeping_frozen(self, mode: bool = True):
    Module.train(self, mode)
    for m in self.modules():
        if m.__dict__.get("_frozen"):
            m.__dict__["training"] = False
    return self


def _keep_frozen_norms_in_eval(model: Module) -> None:
    """Bind a ``train`` to ``model`` that leaves frozen norm layers in eval mode (a bound method, so
    ``copy.deepcopy(model)`` rebinds it to the copy)."""
    model.__dict__["train"] = types.MethodType(_train_keeping_frozen, model)
    model.__dict__["_freeze_hooked"] = True


def freeze(model: Module, what=None) -> None:
    """Stop training ``what`` (a submodule, its dotted name, a list of names; None = everything)."""
    _set(model, what, False)


def unfreeze(model: Module, what=None) -> None:
    """Train ``what`` again (undoes :func:`freeze`)."""
    _set(model, what, True)


def trainable_parameters(model: Module) -> list:
    """The parameters with ``requires_grad`` (hand these to the optimizer)."""
    return [p for p in model.parameters() if p.requires_grad]


def replace_head(model: Module, new_head=None, num_classes: int | None = None) -> Module:
    """Swap the final classifier (attribute ``fc``, ``classifier``, ``head``, or the last Linear of a
    Sequential ``classifier``) for ``new_head`` or a fresh ``Linear(in_features, num_classes)``."""
    if (new_head is None) == (num_classes is None):
        raise ArgumentError("replace_head: give exactly one of new_head and num_classes")
    for attr in ("fc", "classifier", "head"):
        old = model._modules.get(attr)
        if old is None:
            continue
        owner, key = model, attr
        if not isinstance(old, Linear) and hasattr(old, "_modules"):  # a Sequential ending in a Linear
            last = [k for k, m in old._modules.items() if isinstance(m, Linear)]
            if not last:
                continue
            owner, key, old = old, last[-1], old._modules[last[-1]]
        if new_head is None:
            new_head = Linear(old.in_features, int(num_classes), bias=old.bias is not None)
        setattr(owner, key, new_head)
        return new_head
    raise ArgumentError(f"replace_head: {type(model).__name__} has no final Linear named 'fc', 'classifier' or "
                        "'head'; assign the new head yourself, e.g. model.fc = nn.Linear(512, 10)")


def param_groups_with_lrs(model: Module, lrs: dict, default_lr: float | None = None) -> list[dict]:
    """Optimizer parameter groups: ``{prefix: lr}`` (longest matching prefix wins), the rest at
    ``default_lr`` (left out when None). Frozen parameters are skipped.

    >>> from shendu import nn
    >>> m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    >>> [(g["lr"], len(g["params"])) for g in param_groups_with_lrs(m, {"0": 1e-4}, default_lr=1e-3)]
    [(0.0001, 2), (0.001, 2)]
    """
    groups = {prefix: [] for prefix in lrs}
    rest = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        matches = [pre for pre in lrs if name == pre or name.startswith(pre + ".") or pre == ""]
        if matches:
            groups[max(matches, key=len)].append(p)
        else:
            rest.append(p)
    out = [{"params": ps, "lr": lrs[pre]} for pre, ps in groups.items() if ps]
    if rest and default_lr is not None:
        out.append({"params": rest, "lr": default_lr})
    return out
