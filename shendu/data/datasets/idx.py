"""IDX files (the MNIST / Fashion-MNIST format), gzipped or not.

Layout (LeCun's MNIST page): a 4-byte magic ``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32 sizes,
then the values in C order, big-endian. TYPE: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64. A gzip file is recognised by its own magic bytes, not by its name.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

from shendu.errors import DataError

__all__ = ["read_idx"]

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into an array of its shape, in native byte order.

    Raises :class:`~shendu.errors.DataError` for a bad magic number, an unknown type code, or a file
    whose length disagrees with its header.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"read_idx: cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"read_idx: {path} is not an IDX file (magic bytes {raw[:4].hex()}, expected 0000TTNN); "
                        "is it truncated, or an HTML error page saved by a failed download?")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise DataError(f"read_idx: {path} has unknown IDX type code 0x{code:02x}; expected one of "
                        f"{', '.join(f'0x{c:02x}' for c in IDX_TYPES)}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"read_idx: {path} is truncated inside its header ({len(raw)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"read_idx: {path} has {len(raw)} bytes but its header (shape {shape}, {dtype.name}) "
                        f"implies {expected}; the file is truncated or corrupt, download it again")
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else data
