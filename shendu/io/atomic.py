"""Atomic file writes: a file on disk is always either the complete old version or the complete new one.

Every write shendu makes (weights, checkpoints, logs, configs) goes through :func:`atomic_write`: the
bytes go to a temporary file in the same folder, are flushed and fsync'ed, and the temporary file is
renamed over the target with ``os.replace`` (atomic on POSIX and Windows); then the folder is fsync'ed
so the rename itself survives a power cut. An exception half-way leaves the old file untouched and
removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Union

__all__ = ["atomic_write", "atomic_append", "fsync_dir"]


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entry table to disk (makes a rename durable). A no-op where folders can't be opened."""
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:  # Windows cannot open folders; the rename is already durable there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: Union[bytes, str, Callable]) -> None:
    """Write ``data`` to ``path`` atomically.

    ``data`` is ``bytes``, ``str`` (written as UTF-8), or a callable ``writer(f)`` that writes into the
    binary file object ``f`` (so large files are streamed, not built in memory first).

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "hello.txt")
    >>> atomic_write(p, "hi")
    >>> open(p).read()
    'hi'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave a half-written temporary behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(folder)


def atomic_append(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` (whole lines) to ``path`` in one ``write`` on an ``O_APPEND`` descriptor, then fsync.

    A reader never sees half a line written by another process's append, and a crash loses at most the
    line being written (a log is then still readable up to its last complete line).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        payload = text.encode("utf-8")
        written = os.write(fd, payload)
        while written < len(payload):  # very long lines may need more than one write
            written += os.write(fd, payload[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
