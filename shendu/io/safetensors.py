"""Read and write safetensors files, written from the format description (no pickle: loading never runs code).

Layout (https://github.com/huggingface/safetensors, "Format")::

    8 bytes    N, the header size, unsigned little-endian 64-bit
    N bytes    a UTF-8 JSON object: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
               ..., "__metadata__": {"str": "str"}}, padded with spaces to a multiple of 8 bytes
    rest       the byte buffer: each tensor's C-order little-endian bytes at [begin, end) from its start

Offsets are relative to the buffer; tensors tile it exactly (no holes, no overlaps). Files written here
load in the ``safetensors`` package and the other way round (a test checks both directions).
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict

import numpy as np

from shendu.errors import ArgumentError, DataError
from shendu.io.atomic import atomic_write

__all__ = ["save_file", "load_file", "save", "load", "read_metadata", "save_state_dict", "load_state_dict",
           "SafetensorsError", "DTYPES"]


class SafetensorsError(DataError, ValueError):
    """A safetensors file that is corrupt or uses a feature shendu cannot read."""


# safetensors dtype code <-> NumPy dtype (always little-endian on disk).
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {dt.newbyteorder("=") if dt.byteorder != "|" else dt: code for code, dt in DTYPES.items()}
_MAX_HEADER = 100_000_000  # the reference implementation's limit; a larger value means a corrupt file


def _code_for(name: str, dtype: np.dtype) -> str:
    code = _CODES.get(dtype.newbyteorder("="))
    if code is None:
        raise ArgumentError(f"save_file: tensor {name!r} has dtype {dtype}, which safetensors cannot store here; "
                            f"supported: {', '.join(str(d) for d in _CODES)}")
    return code


def _as_array(name: str, value) -> np.ndarray:
    data = getattr(value, "data", None)
    if isinstance(data, np.ndarray):  # a shendu Tensor or Parameter
        return data
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic, int, float, bool)):
        return np.asarray(value)
    raise ArgumentError(f"save_file: value for {name!r} is a {type(value).__name__}; expected an array or Tensor")


def _header(tensors: dict, metadata) -> tuple[bytes, list[np.ndarray]]:
    if not isinstance(tensors, dict):
        raise ArgumentError(f"save_file: expected a dict of name -> array, got {type(tensors).__name__}")
    header: dict = {}
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in metadata.items()):
            raise ArgumentError("save_file: metadata must be a dict of str -> str; json.dumps other values first")
        header["__metadata__"] = dict(metadata)
    arrays, offset = [], 0
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ArgumentError(f"save_file: tensor names must be strings other than '__metadata__', got {name!r}")
        a = _as_array(name, value)
        code = _code_for(name, a.dtype)
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(np.ascontiguousarray(a, dtype=DTYPES[code]))  # a view unless a swap/copy is needed
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # pad so the buffer starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw, arrays


def _write(f, head: bytes, arrays) -> None:
    f.write(head)
    for a in arrays:
        if a.size:
            f.write(a.reshape(-1).view(np.uint8))  # the array's own memory, no bytes copy


def save_file(tensors: dict, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write a dict of arrays or Tensors to ``path`` as safetensors (atomically).

    >>> import os, tempfile, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, p, metadata={"epoch": "3"})
    >>> load_file(p)["w"].tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    head, arrays = _header(tensors, metadata)
    atomic_write(path, lambda f: _write(f, head, arrays))


def save(tensors: dict, metadata: dict | None = None) -> bytes:
    """The safetensors bytes for ``tensors`` (like ``safetensors.numpy.save``)."""
    head, arrays = _header(tensors, metadata)
    return head + b"".join(a.tobytes() for a in arrays)


def _parse_header(buf: memoryview, where: str) -> tuple[dict, dict, int]:
    """Validate the header of ``buf`` and return (tensor entries, metadata, buffer start)."""
    if len(buf) < 8:
        raise SafetensorsError(f"{where}: file is {len(buf)} bytes, too short for the 8-byte header length; "
                               "it is truncated or not a safetensors file")
    (n,) = struct.unpack("<Q", bytes(buf[:8]))
    if n > _MAX_HEADER or 8 + n > len(buf):
        raise SafetensorsError(f"{where}: header length {n} runs beyond the end of the file ({len(buf)} bytes); "
                               "the file is truncated or not a safetensors file")
    try:
        header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{where}: the header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{where}: the header is a JSON {type(header).__name__}, expected an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{where}: __metadata__ must map strings to strings")
    start, size = 8 + n, len(buf) - 8 - n
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise SafetensorsError(f"{where}: entry {name!r} needs dtype, shape and data_offsets, got {info!r}")
        if info["dtype"] not in DTYPES:
            raise SafetensorsError(f"{where}: tensor {name!r} has unknown or unsupported dtype {info['dtype']!r}; "
                                   f"shendu reads {', '.join(DTYPES)}")
        shape, offsets = info["shape"], info["data_offsets"]
        if (not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)):
            raise SafetensorsError(f"{where}: tensor {name!r} has a malformed shape {shape!r} or data_offsets "
                                   f"{offsets!r}")
        begin, end = offsets
        expected = int(np.prod(shape, dtype=np.int64)) * DTYPES[info["dtype"]].itemsize
        if not 0 <= begin <= end or end - begin != expected:
            raise SafetensorsError(f"{where}: tensor {name!r} spans bytes [{begin}, {end}) but its shape "
                                   f"{tuple(shape)} and dtype {info['dtype']} need {expected} bytes")
        if end > size:
            raise SafetensorsError(f"{where}: tensor {name!r} ends at byte {end} of the data buffer, which has "
                                   f"only {size} bytes; the file is truncated")
        spans.append((begin, end, name))
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin < position:
            raise SafetensorsError(f"{where}: tensor {name!r} at bytes [{begin}, {end}) overlaps the previous "
                                   "tensor; data_offsets must not overlap")
        if begin > position:
            raise SafetensorsError(f"{where}: bytes [{position}, {begin}) of the data buffer belong to no tensor; "
                                   "data_offsets must tile the buffer")
        position = end
    if position != size:
        raise SafetensorsError(f"{where}: the data buffer has {size} bytes but the tensors cover {position}; "
                               "the file has trailing bytes or is corrupt")
    return header, metadata, start


def _tensors(buf, header: dict, start: int) -> "OrderedDict[str, np.ndarray]":
    out = OrderedDict()
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        dt = DTYPES[info["dtype"]]
        a = np.frombuffer(buf, dtype=dt, count=(end - begin) // dt.itemsize, offset=start + begin)
        out[name] = a.reshape(info["shape"]).astype(dt.newbyteorder("="), copy=False)
    return out


def load(data: bytes) -> "OrderedDict[str, np.ndarray]":
    """Parse safetensors ``bytes`` into read-only NumPy arrays (views of ``data``)."""
    header, _, start = _parse_header(memoryview(data), "load")
    return _tensors(data, header, start)


def load_file(path: str | os.PathLike, mmap: bool = False) -> "OrderedDict[str, np.ndarray]":
    """Read ``path`` into a dict of NumPy arrays, in file order; corrupt files raise :class:`SafetensorsError`.

    The arrays are writable copies read in one go; ``mmap=True`` maps the file instead (read-only arrays,
    loaded lazily by the OS, useful for large files).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"load_file: no file at {path!r}")
    if mmap:
        buf = np.memmap(path, dtype=np.uint8, mode="r") if os.path.getsize(path) else np.zeros(0, np.uint8)
    else:
        buf = np.fromfile(path, dtype=np.uint8)  # one writable buffer; tensors are views of it
    header, _, start = _parse_header(memoryview(buf), f"load_file({os.path.basename(path)!r})")
    return _tensors(buf, header, start)


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``__metadata__`` dict of a safetensors file (reads the header only)."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        size = os.fstat(f.fileno()).st_size
        if len(head) < 8 or n > _MAX_HEADER or 8 + n > size:
            raise SafetensorsError(f"read_metadata: {path!r} has a truncated or invalid header")
        header = json.loads(f.read(n).decode("utf-8"))
    return header.get("__metadata__") or {}


def save_state_dict(module, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Save ``module.state_dict()`` (parameters and persistent buffers) as safetensors, keys unchanged."""
    save_file(dict(module.state_dict()), path, metadata=metadata)


def load_state_dict(path: str | os.PathLike, module=None, strict: bool = True):
    """Read a weights file; with ``module`` also load it into the module (returns the incompatible keys)."""
    sd = load_file(path)
    if module is None:
        return sd
    return module.load_state_dict(sd, strict=strict)
