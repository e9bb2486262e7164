"""Selective search: the Felzenszwalb-Huttenlocher union-find (numba kernel vs the plain Python reference
and hand cases), the pixel graph, region adjacency, hierarchical grouping and the proposals on synthetic
images whose regions are known."""

import numpy as np
import pytest

from shendu.errors import ArgumentError, ShapeError
from shendu.vision import selective_search as ss


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two labelings describe the same partition iff the label pairs map one-to-one."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


# ------------------------------------------------------------------------------------------ the graph


@pytest.mark.parametrize("connectivity", [4, 8])
def test_grid_edges_match_a_loop_over_pixels(connectivity):
    rng = np.random.default_rng(0)
    img = rng.random((2, 4, 5))
    a, b, w = ss.grid_edges(img, connectivity)
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (-1, 1)] if connectivity == 8 else [])
    expected = {}
    for y in range(4):
        for x in range(5):
            for dy, dx in offsets:
                yy, xx = y + dy, x + dx
                if 0 <= yy < 4 and 0 <= xx < 5:
                    expected[(y * 5 + x, yy * 5 + xx)] = np.sqrt(((img[:, y, x] - img[:, yy, xx]) ** 2).sum())
    got = {(int(i), int(j)): float(v) for i, j, v in zip(a, b, w)}
    assert got.keys() == expected.keys()
    assert np.allclose([got[k] for k in expected], list(expected.values()), rtol=0, atol=1e-12)


def test_segment_graph_hand_case_threshold_k_over_size():
    # chain 0-1-2-3-4; k = 10. Edge weights sorted: 0-1 (1), 1-2 (4), 3-4 (5), 2-3 (8).
    # 0-1: 1 <= min(0+10, 0+10) -> merge, tau = 1 + 10/2 = 6.
    # 1-2: 4 <= min(6, 10) -> merge, tau = 4 + 10/3 = 7.33.
    # 3-4: 5 <= 10 -> merge, tau = 5 + 10/2 = 10.
    # 2-3: 8 > 7.33 -> no merge: two components {0,1,2}, {3,4}.
    a = np.array([0, 1, 3, 2])
    b = np.array([1, 2, 4, 3])
    w = np.array([1.0, 4.0, 5.0, 8.0])
    for run in (ss.segment_graph, ss.segment_graph_reference):
        roots = run(5, a, b, w, 10.0, 1)
        assert roots[0] == roots[1] == roots[2] and roots[3] == roots[4] and roots[2] != roots[3]
        # raising k past 8 - 4 = 4 ... the {0,1,2} threshold becomes 4 + k/3 >= 8 when k >= 12
        roots = run(5, a, b, w, 12.0, 1)
        assert len(set(roots.tolist())) == 1


def test_segment_graph_min_size_absorbs_small_components():
    # 0-1 heavy edge never merges by the k rule, but {1} has size 1 < min_size 2 -> absorbed in pass two
    a, b, w = np.array([0]), np.array([1]), np.array([100.0])
    for run in (ss.segment_graph, ss.segment_graph_reference):
        assert len(set(run(2, a, b, w, 1.0, 1).tolist())) == 2
        assert len(set(run(2, a, b, w, 1.0, 2).tolist())) == 1


@pytest.mark.parametrize("seed", range(6))
def test_numba_kernel_matches_python_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (1 + seed % 3, 7 + seed, 9)
    # quantised values make ties in the edge weights, which the stable sort must order the same way
    img = np.round(rng.random(shape) * 6) / 6
    for connectivity in (4, 8):
        for k, min_size in ((30.0, 1), (150.0, 4), (500.0, 9)):
            fast = ss.felzenszwalb(img, k, sigma=0.5, min_size=min_size, connectivity=connectivity)
            ref = ss.felzenszwalb(img, k, sigma=0.5, min_size=min_size, connectivity=connectivity,
                                  reference=True)
            assert np.array_equal(fast, ref)


def test_felzenszwalb_recovers_flat_regions():
    img = np.zeros((20, 24))
    img[2:9, 3:12] = 0.5
    img[12:18, 14:22] = 1.0
    truth = np.zeros(img.shape, int)
    truth[2:9, 3:12] = 1
    truth[12:18, 14:22] = 2
    for connectivity in (4, 8):
        labels = ss.felzenszwalb(img, scale=100, sigma=0, min_size=5, connectivity=connectivity)
        assert _same_partition(labels, truth)
        assert labels[0, 0] == 0 and labels.max() == 2  # canonical: first appearance order


def test_felzenszwalb_larger_k_gives_fewer_regions():
    rng = np.random.default_rng(3)
    img = rng.random((24, 24))
    counts = [ss.felzenszwalb(img, k, min_size=1).max() + 1 for k in (10, 100, 1000)]
    assert counts[0] > counts[1] > counts[2]


def test_felzenszwalb_min_size_is_respected():
    rng = np.random.default_rng(4)
    img = rng.random((30, 30))
    labels = ss.felzenszwalb(img, 50, min_size=15)
    assert np.bincount(labels.ravel()).min() >= 15


# ------------------------------------------------------------------------------------------ grouping


def test_region_adjacency_matches_loop():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=(6, 7))
    expected = set()
    for y in range(6):
        for x in range(7):
            for dy, dx in ((0, 1), (1, 0), (1, 1), (-1, 1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < 6 and 0 <= xx < 7 and labels[y, x] != labels[yy, xx]:
                    u, v = sorted((int(labels[y, x]), int(labels[yy, xx])))
                    expected.add((u, v))
    assert {tuple(p) for p in ss.region_adjacency(labels).tolist()} == expected


def test_merged_histogram_is_the_histogram_of_the_union():
    rng = np.random.default_rng(2)
    img = rng.random((1, 10, 12))
    labels = np.zeros((10, 12), int)
    labels[:, 5:] = 1
    f = ss._region_features(img, labels)
    assert np.allclose(f["colour"].sum(1), 1) and np.allclose(f["texture"].sum(1), 1)
    merged = (f["size"][0] * f["colour"][0] + f["size"][1] * f["colour"][1]) / f["size"].sum()
    whole = ss._region_features(img, np.zeros((10, 12), int))
    assert np.allclose(merged, whole["colour"][0])
    assert np.array_equal(f["box"], [[0, 0, 5, 10], [5, 0, 12, 10]])


def test_grouping_merges_the_most_similar_colours_first():
    # three vertical stripes: 0.10, 0.12 (same colour bin as 0.10) and 0.90
    img = np.zeros((12, 12))
    img[:, :4], img[:, 4:8], img[:, 8:] = 0.10, 0.12, 0.90
    labels = np.repeat(np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])[None], 12, 0)
    boxes = ss.hierarchical_grouping(img, labels, "C")
    assert boxes.shape == (5, 4)  # 2R - 1
    assert boxes[3].tolist() == [0, 0, 8, 12]  # stripes 0 and 1 first
    assert boxes[4].tolist() == [0, 0, 12, 12]  # then everything


def test_grouping_size_similarity_merges_small_regions_first():
    # a large region 0 and two small ones 1, 2, all touching; same colour so only size matters
    img = np.zeros((10, 10))
    labels = np.zeros((10, 10), int)
    labels[0:2, 0:2] = 1
    labels[0:2, 2:4] = 2
    boxes = ss.hierarchical_grouping(img, labels, "S")
    assert boxes[3].tolist() == [0, 0, 4, 2]
    assert boxes[-1].tolist() == [0, 0, 10, 10]


def test_grouping_fill_prefers_regions_that_fill_the_gap():
    # region 1 sits in a notch of region 0; region 2 lies far right touching 0 only by a thin strip
    labels = np.zeros((10, 12), int)
    labels[0:5, 0:5] = 1
    labels[:, 10:] = 2
    img = np.zeros((10, 12))
    boxes = ss.hierarchical_grouping(img, labels, "F")
    # region 0 is an L covering (0,0,10,10) minus region 1: together they fill their box (s_fill = 1),
    # while 0 + 2 leaves region 1's 25 pixels of the (0,0,12,10) box empty (s_fill = 1 - 25/120)
    assert boxes[3].tolist() == [0, 0, 10, 10]


def test_grouping_ends_with_the_whole_image():
    labels = np.zeros((4, 9), int)
    labels[:, 3:6] = 1
    labels[:, 6:] = 2
    img = np.zeros((4, 9))
    boxes = ss.hierarchical_grouping(img, labels, "CTSF")
    assert len(boxes) == 5
    assert boxes[-1].tolist() == [0, 0, 9, 4]


# ------------------------------------------------------------------------------------------ proposals


def _scene():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64))
    img[5:20, 8:30] = 0.4 + 0.1 * rng.random((15, 22))  # a textured object
    img[35:60, 30:55] = 0.9  # a flat one
    return img


def test_selective_search_finds_the_objects():
    boxes = ss.selective_search(_scene(), sigma=0.0).tolist()
    assert [8.0, 5.0, 30.0, 20.0] in boxes
    assert [30.0, 35.0, 55.0, 60.0] in boxes
    assert [0.0, 0.0, 64.0, 64.0] in boxes


def test_selective_search_boxes_are_valid_unique_and_seeded():
    img = np.stack([_scene(), _scene()[::-1], _scene()[:, ::-1]])  # three channels
    b1 = ss.selective_search(img, seed=1)
    b2 = ss.selective_search(img, seed=1)
    assert b1.dtype == np.float32 and b1.ndim == 2 and b1.shape[1] == 4
    assert np.array_equal(b1, b2)
    assert len(np.unique(b1, axis=0)) == len(b1)
    assert (b1[:, 0] >= 0).all() and (b1[:, 2] <= 64).all() and (b1[:, 2] - b1[:, 0] >= 4).all()
    assert len(ss.selective_search(img, max_boxes=5)) == 5


def test_errors():
    with pytest.raises(ShapeError, match="selective_search"):
        ss.selective_search(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ShapeError, match="HWC"):
        ss.selective_search(np.zeros((8, 8, 3)))
    with pytest.raises(ArgumentError, match="similarity"):
        ss.selective_search(np.zeros((8, 8)), similarities=("CX",))
    with pytest.raises(ArgumentError, match="connectivity"):
        ss.felzenszwalb(np.zeros((8, 8)), connectivity=6)
    with pytest.raises(ShapeError, match="labels shape"):
        ss.hierarchical_grouping(np.zeros((8, 8)), np.zeros((8, 9), int))
