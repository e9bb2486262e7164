"""atomic_write: an interrupted write leaves the old file intact and no temporary files behind."""

import os

import numpy as np
import pytest

from shendu import io


def test_write_bytes_and_text(tmp_path):
    p = tmp_path / "a.txt"
    io.atomic_write(p, "old")
    io.atomic_write(p, b"new")
    assert p.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]
    assert (os.stat(p).st_mode & 0o777) == (0o666 & ~_umask())


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_exception_mid_write_keeps_old_file(tmp_path):
    p = tmp_path / "w.safetensors"
    io.save_file({"w": np.ones(3, np.float32)}, p)
    before = p.read_bytes()

    def writer(f):
        f.write(b"partial garbage" * 1000)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        io.atomic_write(p, writer)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_keyboard_interrupt_mid_save_file_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "w.safetensors"
    io.save_file({"w": np.ones(3, np.float32)}, p)
    before = p.read_bytes()
    import shendu.io.safetensors as st

    def boom(f, head, arrays):
        f.write(head)
        raise KeyboardInterrupt

    monkeypatch.setattr(st, "_write", boom)
    with pytest.raises(KeyboardInterrupt):
        io.save_file({"w": np.zeros(1000, np.float32)}, p)
    assert p.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]
    np.testing.assert_array_equal(io.load_file(p)["w"], np.ones(3, np.float32))


def test_atomic_append_whole_lines(tmp_path):
    p = tmp_path / "log.jsonl"
    for i in range(3):
        io.atomic_append(p, f'{{"i": {i}}}\n')
    assert p.read_text().splitlines() == ['{"i": 0}', '{"i": 1}', '{"i": 2}']
