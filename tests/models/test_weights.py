"""load_weights / save_weights: safetensors files and dicts of arrays, strictness and clear errors."""

import numpy as np
import pytest

import shendu
from shendu import models
from shendu.errors import ArgumentError, StateDictError


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)


def test_save_then_load_roundtrip(tmp_path):
    shendu.manual_seed(0)
    a = models.cnn_fmnist()
    shendu.manual_seed(1)
    b = models.cnn_fmnist()
    assert not _same(a, b)
    path = tmp_path / "cnn.safetensors"
    models.save_weights(a, path)
    models.load_weights(b, path)
    assert _same(a, b)
    models.load_weights(b, str(path))  # str paths too
    models.save_weights(a, tmp_path / "meta.safetensors", metadata={"arch": "cnn_fmnist"})
    from shendu.io import read_metadata
    assert read_metadata(tmp_path / "meta.safetensors")["arch"] == "cnn_fmnist"


def test_file_written_by_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    shendu.manual_seed(0)
    a = models.resnet_fmnist()
    path = tmp_path / "r.safetensors"
    st.save_file({k: np.array(v.numpy()) for k, v in a.state_dict().items()}, str(path))
    b = models.resnet_fmnist()
    models.load_weights(b, path)
    assert _same(a, b)
    # and ours can be read by the package
    models.save_weights(b, tmp_path / "r2.safetensors")
    back = st.load_file(str(tmp_path / "r2.safetensors"))
    assert set(back) == set(a.state_dict())


def test_dict_of_torch_tensors_and_num_batches_tracked_are_accepted():
    torch = pytest.importorskip("torch")
    a = models.lenet5(10, 1)
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in a.state_dict().items()}
    state["extra_bn.num_batches_tracked"] = torch.tensor(3)  # torch buffers the model may not have
    b = models.lenet5(10, 1)
    models.load_weights(b, state)
    assert _same(a, b)


def test_strict_errors_list_the_keys_and_change_nothing():
    a, b = models.lenet5(10, 1), models.lenet5(10, 1)
    before = b.conv1.weight.detach().numpy().copy()
    state = {k: v.numpy() for k, v in a.state_dict().items()}
    del state["fc3.bias"]
    state["fc4.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(StateDictError) as e:
        models.load_weights(b, state)
    assert "fc3.bias" in str(e.value) and "fc4.weight" in str(e.value)
    np.testing.assert_array_equal(b.conv1.weight.detach().numpy(), before)
    missing, unexpected = models.load_weights(b, state, strict=False)
    assert missing == ["fc3.bias"] and unexpected == ["fc4.weight"]
    np.testing.assert_array_equal(b.conv1.weight.detach().numpy(), a.conv1.weight.detach().numpy())


def test_shape_mismatch_is_reported():
    a, b = models.lenet5(10, 1), models.lenet5(7, 1)
    with pytest.raises(StateDictError, match="size mismatch for fc3.weight"):
        models.load_weights(b, a.state_dict())


def test_bad_sources(tmp_path):
    net = models.lenet5(10, 1)
    with pytest.raises(ArgumentError, match="no such file"):
        models.load_weights(net, tmp_path / "missing.safetensors")
    with pytest.raises(ArgumentError, match="expected a path"):
        models.load_weights(net, [1, 2, 3])
