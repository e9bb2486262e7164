"""FashionScenes: composition, targets, determinism, overlap rule, splits, collate, and the missing-files error."""

import numpy as np
import pytest
import torch

from shendu.data import DataLoader
from shendu.data.datasets import mnist
from shendu.data.datasets.scenes import FashionScenes, _axis_matrices, collate_scenes, counter_uniforms
from shendu.errors import ArgumentError, DataError, IndexOutOfRangeError


def _fmnist_present() -> bool:
    try:
        mnist.find_files("fashion-mnist", "train")
        return True
    except DataError:
        return False


needs_data = pytest.mark.skipif(not _fmnist_present(), reason="needs the Fashion-MNIST files")


@pytest.fixture(scope="module")
def scenes():
    return FashionScenes("train", size=96, seed=3, length=400)


def _solid(ds: FashionScenes) -> FashionScenes:
    """The same scene generator with every source item replaced by a solid 28x28 square: each placed item is
    then exactly its box, so masks and boxes can be checked against a plain painter's loop."""
    ds.images = np.ones((len(ds.images), 28, 28), np.float32)
    ds.item_boxes = np.tile(np.array([0, 0, 28, 28]), (len(ds.images), 1))
    return ds


@needs_data
def test_item_shapes_dtypes_and_ranges(scenes):
    for i in range(20):
        image, t = scenes[i]
        assert image.shape == (1, 96, 96) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        K = len(t["labels"])
        assert 1 <= K <= 4 and t["boxes"].shape == (K, 4) and t["boxes"].dtype == np.float32
        assert t["labels"].dtype == np.int64 and t["labels"].min() >= 1 and t["labels"].max() <= 10
        assert t["masks"].shape == (96, 96) and t["masks"].dtype == np.int64
        b = t["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 96).all() and (b[:, 3] <= 96).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        # The mask holds only background and the scene's labels, and every labelled pixel lies in a box of
        # an item with that label; items are drawn where the image is bright.
        assert set(np.unique(t["masks"])) <= {0, *t["labels"].tolist()}
        for c in np.unique(t["masks"])[1:]:
            inside = np.zeros((96, 96), bool)
            for (x1, y1, x2, y2), lab in zip(b.astype(int), t["labels"]):
                if lab == c:
                    inside[y1:y2, x1:x2] = True
            assert inside[t["masks"] == c].all()
        assert (image[0][t["masks"] > 0] > scenes.threshold).all()


@needs_data
def test_scale_range_of_boxes(scenes):
    g = scenes.generate(np.arange(200))
    b = g["boxes"][g["valid"]]
    longest = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    assert longest.min() >= 20 - 2 and longest.max() <= 48  # bilinear edges may lose a pixel per side
    assert longest.max() >= 44 and longest.min() <= 24  # the whole range is used


@needs_data
def test_deterministic_whatever_the_order(scenes):
    a_img, a_t = scenes[7]
    images, targets = scenes.get_batch([100, 7, 3])
    np.testing.assert_array_equal(images[1], a_img)
    np.testing.assert_array_equal(targets[1]["masks"], a_t["masks"])
    np.testing.assert_array_equal(targets[1]["boxes"], a_t["boxes"])
    again = FashionScenes("train", size=96, seed=3, length=400)
    np.testing.assert_array_equal(again[7][0], a_img)
    other = FashionScenes("train", size=96, seed=4, length=400)
    assert not np.array_equal(other[7][0], a_img)


def test_counter_uniforms_depend_on_key_and_index_only():
    u = counter_uniforms(5, np.arange(1000), 8)
    assert u.shape == (1000, 8) and 0 <= u.min() and u.max() < 1
    np.testing.assert_array_equal(u[[500, 3]], counter_uniforms(5, np.array([500, 3]), 8))
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert not np.array_equal(counter_uniforms(6, np.arange(4), 8), u[:4])
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.1  # neighbouring scenes are not correlated


def test_axis_matrices_equal_torch_bilinear_resize():
    rng = np.random.default_rng(0)
    item = rng.random((28, 28)).astype(np.float32)
    for top, height, new in [(3, 20, 37), (0, 28, 20), (5, 11, 48), (2, 17, 17)]:
        left, width, new_w = 4, 19, 30
        a_h = _axis_matrices(np.array([new]), np.array([top]), np.array([height]), 48, 28)[0]
        a_w = _axis_matrices(np.array([new_w]), np.array([left]), np.array([width]), 48, 28)[0]
        got = a_h @ item @ a_w.T
        crop = torch.tensor(item[top:top + height, left:left + width])[None, None]
        want = torch.nn.functional.interpolate(crop, size=(new, new_w), mode="bilinear", align_corners=False)[0, 0]
        np.testing.assert_allclose(got[:new, :new_w], want.numpy(), atol=1e-6)
        assert not got[new:].any() and not got[:, new_w:].any()


@needs_data
def test_later_items_on_top_and_overlap_rule():
    ds = _solid(FashionScenes("train", size=64, seed=1, length=300))
    g = ds.generate(np.arange(300))
    assert (g["valid"].sum(1) >= 2).mean() > 0.5  # enough overlapping scenes to test
    for i in range(300):
        boxes, labels = g["boxes"][i][g["valid"][i]].astype(int), g["labels"][i][g["valid"][i]]
        painted = np.zeros((64, 64), np.int64)
        for (x1, y1, x2, y2), lab in zip(boxes, labels):  # painter's algorithm: slot order, later on top
            painted[y1:y2, x1:x2] = lab
        np.testing.assert_array_equal(g["masks"][i], painted)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for j in range(len(boxes)):
            later = boxes[j + 1:]
            iw = np.clip(np.minimum(later[:, 2], boxes[j, 2]) - np.maximum(later[:, 0], boxes[j, 0]), 0, None)
            ih = np.clip(np.minimum(later[:, 3], boxes[j, 3]) - np.maximum(later[:, 1], boxes[j, 1]), 0, None)
            assert (iw * ih).sum() <= 0.4 * area[j] + 1e-9
    # Overlaps do happen (the rule limits them, it does not forbid them).
    assert (g["masks"] > 0).any()


@needs_data
def test_splits_read_the_matching_fashion_mnist_split():
    test = FashionScenes("test", size=64, length=10)
    train = FashionScenes("train", size=64, length=10)
    fm_test = mnist.FashionMNIST(train=False)
    assert len(test.images) == 10000 and len(train.images) == 60000
    np.testing.assert_allclose(test.images[:5], fm_test.data[:5] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(test.item_labels[:50], fm_test.targets[:50])
    assert not np.array_equal(test[0][0], train[0][0])


@needs_data
def test_single_object_variant():
    ds = FashionScenes("test", single_object=True, length=50)
    assert ds.size == 64 and ds.max_objects == 1
    g = ds.generate(np.arange(50))
    assert g["valid"].all() and g["labels"].shape == (50, 1)
    image, t = ds[0]
    assert image.shape == (1, 64, 64) and t["boxes"].shape == (1, 4)
    np.testing.assert_array_equal(np.unique(t["masks"]), [0, t["labels"][0]])


@needs_data
def test_collate_and_loader_fast_path_agree(scenes):
    by_collate = next(iter(DataLoader(scenes, batch_size=4, collate_fn=collate_scenes)))
    fast = next(iter(DataLoader(scenes, batch_size=4)))
    assert by_collate[0].shape == (4, 1, 96, 96) and len(by_collate[1]) == 4
    np.testing.assert_array_equal(by_collate[0].numpy(), fast[0].numpy())
    for a, b in zip(by_collate[1], fast[1]):
        assert a.keys() == b.keys() == {"boxes", "labels", "masks"}
        for k in a:
            np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
    assert FashionScenes.collate is collate_scenes


@needs_data
def test_bad_arguments_raise():
    with pytest.raises(ArgumentError, match="split"):
        FashionScenes("val")
    with pytest.raises(ArgumentError, match="max_objects"):
        FashionScenes("train", max_objects=0)
    with pytest.raises(ArgumentError, match="scale"):
        FashionScenes("train", size=64, scale=(10, 80))
    ds = FashionScenes("train", length=5)
    with pytest.raises(IndexOutOfRangeError, match="out of range"):
        ds[5]
    with pytest.raises(IndexOutOfRangeError):
        ds.get_batch([0, 9])
    with pytest.raises(ArgumentError, match="empty batch"):
        collate_scenes([])


def test_missing_files_raise_the_fashion_mnist_error(tmp_path, monkeypatch):
    monkeypatch.setitem(mnist.SOURCES["fashion-mnist"], "system", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SHENDU_DATA", raising=False)
    with pytest.raises(DataError, match="cannot find the train files") as err:
        FashionScenes("train", root=tmp_path / "empty")
    assert "dataset-fashion-mnist" in str(err.value)  # the underlying message says how to get them
