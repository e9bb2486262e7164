"""shendu.io safetensors reader/writer: round trips, interoperability with the `safetensors` package, errors."""

import json
import struct

import numpy as np
import pytest

import shendu
from shendu import io, nn
from shendu.errors import DataError

st_numpy = pytest.importorskip("safetensors.numpy")

ALL_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
              np.uint64, np.uint32, np.uint16, np.uint8, np.bool_]


def _sample():
    rng = np.random.default_rng(0)
    out = {f"t_{np.dtype(d).name}": (rng.standard_normal((3, 5)) * 50).astype(d) for d in ALL_DTYPES}
    out["scalar"] = np.array(3.5, np.float32)
    out["empty"] = np.zeros((0, 4), np.float32)
    out["strided"] = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2]  # non-contiguous input
    return out


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def test_round_trip_all_dtypes(tmp_path):
    tensors = _sample()
    p = tmp_path / "x.safetensors"
    io.save_file(tensors, p, metadata={"format": "np", "epoch": "3"})
    back = io.load_file(p)
    assert list(back) == list(tensors)
    for k in tensors:
        _same(back[k], tensors[k])
    assert io.read_metadata(p) == {"format": "np", "epoch": "3"}
    back_m = io.load_file(p, mmap=True)
    for k in tensors:
        _same(back_m[k], tensors[k])
    assert back["t_float32"].flags.writeable


def test_header_is_aligned_and_offsets_tile(tmp_path):
    p = tmp_path / "x.safetensors"
    io.save_file({"a": np.ones(3, np.float32), "b": np.ones(2, np.int64)}, p)
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header["a"] == {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}
    assert header["b"] == {"dtype": "I64", "shape": [2], "data_offsets": [12, 28]}
    assert len(raw) == 8 + n + 28


def test_written_by_shendu_read_by_safetensors(tmp_path):
    tensors = _sample()
    p = tmp_path / "shendu.safetensors"
    io.save_file(tensors, p, metadata={"who": "shendu"})
    back = st_numpy.load_file(str(p))
    for k in tensors:
        _same(back[k], tensors[k])
    from safetensors import safe_open
    with safe_open(str(p), framework="np") as f:
        assert f.metadata() == {"who": "shendu"}


def test_written_by_safetensors_read_by_shendu(tmp_path):
    tensors = {k: np.ascontiguousarray(v) for k, v in _sample().items()}
    p = tmp_path / "ref.safetensors"
    st_numpy.save_file(tensors, str(p), metadata={"who": "hf"})
    back = io.load_file(p)
    for k in tensors:
        _same(back[k], tensors[k])
    assert io.read_metadata(p) == {"who": "hf"}
    assert set(io.load(st_numpy.save(tensors))) == set(tensors)


def test_state_dict_round_trip_with_tensors(tmp_path):
    shendu.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    p = tmp_path / "m.safetensors"
    io.save_state_dict(m, p)
    shendu.manual_seed(1)
    m2 = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert not np.array_equal(m2[0].weight.data, m[0].weight.data)
    io.load_state_dict(p, m2)
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        _same(a.data, b.data)
    assert list(io.load_state_dict(p)) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def _file(header: dict, buffer: bytes, pad=True) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + buffer


@pytest.mark.parametrize("blob, fragment", [
    (b"\x01\x02", "too short"),
    (struct.pack("<Q", 10_000) + b"{}", "beyond the end"),
    (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)), "overlap"),
    (_file({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, bytes(8)), "unknown or unsupported dtype"),
    (_file({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)), "need 12 bytes"),
    (_file({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)), "truncated"),
    (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)), "tile the buffer"),
    (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8)), "trailing bytes"),
    (struct.pack("<Q", 4) + b"nope", "not valid UTF-8 JSON"),
    (_file({"a": {"dtype": "F32"}}, b""), "needs dtype, shape and data_offsets"),
])
def test_corrupt_files_raise_data_error(tmp_path, blob, fragment):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(blob)
    with pytest.raises(DataError, match=fragment):
        io.load_file(p)


def test_unsupported_dtype_and_bad_input_on_save(tmp_path):
    with pytest.raises(shendu.errors.ArgumentError, match="complex128"):
        io.save_file({"c": np.zeros(2, np.complex128)}, tmp_path / "c.safetensors")
    with pytest.raises(shendu.errors.ArgumentError, match="str -> str"):
        io.save_file({"a": np.zeros(2)}, tmp_path / "c.safetensors", metadata={"epoch": 3})
    assert not list(tmp_path.iterdir())  # nothing was written


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no file"):
        io.load_file(tmp_path / "nope.safetensors")


def test_no_pickle_in_io_or_train():
    import pathlib
    root = pathlib.Path(shendu.__file__).parent
    for sub in ("io", "train"):
        for f in (root / sub).rglob("*.py"):
            text = f.read_text()
            assert "import pickle" not in text and "np.load(" not in text, f
