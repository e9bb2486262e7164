"""Moving weights in and out of the zoo's models: safetensors files or dicts with torchvision's keys.

Loading never runs code (safetensors only, no pickle). Values may be NumPy arrays, shendu Tensors or
PyTorch tensors; the keys are the dotted names of ``state_dict`` (torchvision's for the shared
architectures), so ``torchvision.models.resnet50().state_dict()`` loads into ``shendu.models.resnet50()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from shendu.errors import ArgumentError
from shendu.io import load_file, save_file

__all__ = ["load_weights", "save_weights"]

# torch's BatchNorm counts its updates in a buffer that carries no weight; a model without that buffer
# can still take the checkpoint.
_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def load_weights(model, path_or_dict, strict: bool = True):
    """Load weights into ``model`` in place from a safetensors file or a mapping of name -> array.

    ``path_or_dict`` is a path (``str`` / ``os.PathLike``) to a ``.safetensors`` file, or a mapping whose
    values are NumPy arrays, shendu Tensors or torch tensors, keyed as ``model.state_dict()``.
    ``num_batches_tracked`` entries the model does not have are ignored. With ``strict`` (default)
    missing or unexpected keys raise :class:`~shendu.errors.StateDictError` listing them all, and the
    model is left unchanged; shapes must always match. Returns ``(missing_keys, unexpected_keys)``.

    >>> import numpy as np, shendu.models as models
    >>> a, b = models.get_model("lenet5", 10, 1), models.get_model("lenet5", 10, 1)
    >>> _ = models.load_weights(b, {k: v.numpy() for k, v in a.state_dict().items()})
    >>> bool(np.array_equal(a.conv1.weight.detach().numpy(), b.conv1.weight.detach().numpy()))
    True
    """
    if isinstance(path_or_dict, (str, os.PathLike)):
        if not os.path.isfile(path_or_dict):
            raise ArgumentError(f"load_weights: no such file {os.fspath(path_or_dict)!r}; expected a "
                                f".safetensors file or a dict of arrays")
        state = load_file(os.fspath(path_or_dict))
    elif isinstance(path_or_dict, Mapping):
        state = path_or_dict
    else:
        raise ArgumentError(f"load_weights: expected a path to a .safetensors file or a dict of name -> "
                            f"array, got {type(path_or_dict).__name__}")
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith(_OPTIONAL_SUFFIXES)}
    return model.load_state_dict(state, strict=strict)


def save_weights(model, path, metadata: dict | None = None) -> None:
    """Write ``model.state_dict()`` to the safetensors file ``path`` (NumPy arrays, torchvision keys);
    ``metadata`` is an optional ``{str: str}`` stored in the header."""
    arrays = dict(model.state_dict())  # shendu Tensors; shendu.io writes their arrays
    save_file(arrays, os.fspath(path), metadata=metadata)
