"""Save a nested structure of dicts, lists, numbers, strings and arrays as a folder: arrays go to one
safetensors file (under their path in the structure, e.g. ``optimizer/state/0/exp_avg``), everything else
to JSON. No pickle: loading reads data, never code.

A folder is written atomically as a whole: it is built under a temporary name next to the target and
renamed into place. POSIX cannot rename a folder over a non-empty one, so an existing folder is first
moved aside to ``<name>.old`` and deleted after; if a crash hits between the two renames, :func:`load_tree`
reads ``<name>.old``, the previous complete version.

JSON keeps Python floats exactly (shortest round-trip repr, ``Infinity``/``NaN`` allowed); the few values
JSON would change are tagged: tuples, dicts with non-string keys, NumPy scalars.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from shendu.errors import ArgumentError, DataError
from shendu.io.atomic import atomic_write, fsync_dir
from shendu.io.safetensors import load_file, save_file

__all__ = ["save_tree", "load_tree", "to_jsonable", "from_jsonable"]

TENSORS, STATE = "tensors.safetensors", "state.json"


def to_jsonable(obj, arrays: dict, path: str = ""):
    """Replace the arrays inside ``obj`` by ``{"__tensor__": key}`` (filling ``arrays``) and tag the rest."""
    data = getattr(obj, "data", None)
    if isinstance(data, np.ndarray) and not isinstance(obj, np.ndarray):  # a shendu Tensor
        obj = data
    if isinstance(obj, np.ndarray):
        key = path or "value"
        arrays[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, np.generic):
        return {"__scalar__": obj.dtype.str, "value": obj.item()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [to_jsonable(v, arrays, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [to_jsonable(v, arrays, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: to_jsonable(v, arrays, f"{path}/{k}" if path else k) for k, v in obj.items()}
        if not all(isinstance(k, (str, int, float, bool)) or k is None for k in obj):
            bad = next(k for k in obj if not isinstance(k, (str, int, float, bool)))
            raise ArgumentError(f"save_tree: {path or 'the state'} has a key of type {type(bad).__name__}; "
                                "only str, int, float and bool keys can be saved")
        return {"__items__": [[k, to_jsonable(v, arrays, f"{path}/{k}")] for k, v in obj.items()]}
    raise ArgumentError(f"save_tree: cannot save {path or 'the state'}, a {type(obj).__name__}, without pickle; "
                        "only dicts, lists, tuples, numbers, strings, None and arrays are stored (exclude "
                        "functions such as LambdaLR's lambdas from state dicts)")


def from_jsonable(obj, arrays: dict):
    """Undo :func:`to_jsonable`."""
    if isinstance(obj, list):
        return [from_jsonable(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in arrays:
            raise DataError(f"load_tree: the state refers to array {key!r}, which the tensors file lacks")
        return arrays[key]
    if "__scalar__" in obj:
        return np.dtype(obj["__scalar__"]).type(obj["value"])
    if "__tuple__" in obj:
        return tuple(from_jsonable(v, arrays) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: from_jsonable(v, arrays) for k, v in obj["__items__"]}
    return {k: from_jsonable(v, arrays) for k, v in obj.items()}


def save_tree(tree: dict, folder: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write ``tree`` to ``folder`` (``tensors.safetensors`` + ``state.json``), replacing it atomically."""
    folder = os.path.abspath(os.fspath(folder))
    arrays: dict = {}
    state = to_jsonable(tree, arrays)
    text = json.dumps(state, indent=1, allow_nan=True)
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(folder) + ".", suffix=".tmp")
    try:
        save_file(arrays, os.path.join(tmp, TENSORS), metadata=metadata)
        atomic_write(os.path.join(tmp, STATE), text)
        old = folder + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        if os.path.exists(folder):
            os.rename(folder, old)
        os.rename(tmp, folder)
        fsync_dir(parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_tree(folder: str | os.PathLike, mmap: bool = False) -> dict:
    """Read a folder written by :func:`save_tree` (falls back to ``<folder>.old`` after a crash mid-replace)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder) and os.path.isdir(folder + ".old"):
        folder = folder + ".old"
    state_path = os.path.join(folder, STATE)
    if not os.path.isfile(state_path):
        raise DataError(f"load_tree: {folder!r} is not a checkpoint folder (no {STATE} inside)")
    with open(state_path, encoding="utf-8") as f:
        try:
            state = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"load_tree: {state_path!r} is not valid JSON ({e})") from None
    arrays = load_file(os.path.join(folder, TENSORS), mmap=mmap)
    return from_jsonable(state, arrays)
