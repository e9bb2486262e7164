"""The model registry: a name -> builder table that the CLI and ``get_model`` read.

Every builder is a function ``builder(num_classes=1000, in_channels=3, **kw) -> Module`` registered with
a one-line description::

    @register_model("resnet18", "ResNet-18 (torchvision layout), 11.7M params at 1000 classes")
    def resnet18(num_classes=1000, in_channels=3, **kw): ...
"""

from __future__ import annotations

import difflib
from typing import Callable

from shendu.errors import ArgumentError

__all__ = ["register_model", "list_models", "get_model", "describe_model", "model_descriptions"]

_REGISTRY: dict[str, tuple[Callable, str]] = {}


def register_model(name: str, description: str) -> Callable:
    """Decorator: register ``builder`` under ``name`` with a one-line ``description``."""
    def wrap(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ArgumentError(f"register_model: the name {name!r} is already registered")
        _REGISTRY[name] = (builder, description)
        return builder
    return wrap


def list_models() -> list[str]:
    """The registered model names, sorted.

    >>> import shendu.models as models
    >>> "resnet50" in models.list_models()
    True
    """
    return sorted(_REGISTRY)


def model_descriptions() -> dict[str, str]:
    """``{name: one-line description}`` for every registered model, sorted by name."""
    return {name: _REGISTRY[name][1] for name in list_models()}


def _lookup(name: str) -> tuple[Callable, str]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ArgumentError(f"get_model: unknown model {name!r}.{hint} Available models: "
                            f"{', '.join(list_models())}")
    return _REGISTRY[name]


def describe_model(name: str) -> str:
    """The one-line description of model ``name``."""
    return _lookup(name)[1]


def get_model(name: str, num_classes: int = 1000, in_channels: int = 3, **kw):
    """Build the registered model ``name`` (fresh random weights).

    >>> import shendu.models as models
    >>> net = models.get_model("cnn_fmnist", num_classes=10, in_channels=1)
    >>> type(net).__name__
    'FashionCNN'
    """
    builder, _ = _lookup(name)
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ArgumentError(f"get_model({name!r}): {arg} must be a positive integer, got {value!r}")
    return builder(num_classes=num_classes, in_channels=in_channels, **kw)
