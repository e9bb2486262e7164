"""k-NN (shendu/classic/knn.py) against scipy's cdist, scikit-learn's KNeighborsClassifier and a plain loop."""

import collections

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from shendu.classic import KNearestNeighbor, choose_k_by_cross_validation, pairwise_distances
from shendu.errors import ArgumentError, ShapeError

SCIPY_METRIC = {"l2": "euclidean", "l1": "cityblock"}


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    # a small jitter makes the integer pixels continuous, so exact distance ties (common for L1) vanish
    x = d.data + 1e-3 * np.random.default_rng(0).standard_normal(d.data.shape)
    y = d.target
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _loop_reference(d, y_train, k):
    """Plain-Python k-NN from a distance matrix: stable sort, Counter vote, ties to the nearest class."""
    preds = []
    for row in d:
        labels = y_train[np.argsort(row, kind="stable")[:k]].tolist()
        counts = collections.Counter(labels)
        best = max(counts.values())
        preds.append(next(lab for lab in labels if counts[lab] == best))  # nearest among the tied
    return np.array(preds)


def _boundary_tie(d, k):
    """Rows where the k-th and (k+1)-th smallest distances are equal (which neighbours count is ambiguous)."""
    part = np.sort(d, axis=1)[:, k - 1:k + 1]
    return part[:, 0] == part[:, 1]


def _vote_tie(d, y_train, k):
    near = y_train[np.argsort(d, axis=1, kind="stable")[:, :k]]
    counts = np.stack([(near == c).sum(1) for c in range(10)], 1)
    return (counts == counts.max(1, keepdims=True)).sum(1) > 1


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_distances_match_cdist(metric, dtype, rtol):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((37, 13)).astype(dtype), rng.standard_normal((53, 13)).astype(dtype)
    d = pairwise_distances(a, b, metric=metric)
    assert d.dtype == dtype and d.shape == (37, 53)
    ref = cdist(a.astype(np.float64), b.astype(np.float64), SCIPY_METRIC[metric])
    np.testing.assert_allclose(d, ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("max_elements", [1, 13 * 5, 13 * 53 * 4])  # tiles of 1 pair, 5 train rows, 4 test rows
def test_l1_tiling_does_not_change_the_result(max_elements):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((9, 13)), rng.standard_normal((53, 13))
    np.testing.assert_allclose(pairwise_distances(a, b, "l1", max_elements=max_elements),
                               cdist(a, b, "cityblock"), rtol=1e-12)


def test_l2_of_identical_rows_is_exactly_zero_not_nan():
    """The matrix trick rounds ||a||^2 + ||a||^2 - 2 a.a to tiny negatives; the clamp must give 0."""
    rng = np.random.default_rng(2)
    a = (rng.standard_normal((50, 30)) * 1e3).astype(np.float32)
    d = pairwise_distances(a, a)
    assert np.all(np.isfinite(d)) and np.all(d >= 0)
    assert np.all(np.diag(d) <= 1e-3 * np.linalg.norm(a, axis=1))


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_compute_distances_in_chunks(digits, metric):
    xtr, ytr, xte, _ = digits
    knn = KNearestNeighbor(metric=metric).fit(xtr, ytr)
    np.testing.assert_allclose(knn.compute_distances(xte[:100], batch_size=7),
                               cdist(xte[:100], xtr, SCIPY_METRIC[metric]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("k", [1, 3, 4, 5, 10])
def test_predictions_match_sklearn_and_a_loop(digits, metric, k):
    xtr, ytr, xte, yte = digits
    pred = KNearestNeighbor(k=k, metric=metric).fit(xtr, ytr).predict(xte, batch_size=64)
    d = cdist(xte, xtr, SCIPY_METRIC[metric])
    clear = ~_boundary_tie(d, k)
    assert clear.mean() > 0.99
    # our tie rule, written as a loop over a scipy distance matrix
    np.testing.assert_array_equal(pred[clear], _loop_reference(d, ytr, k)[clear])
    # scikit-learn agrees wherever neither the vote nor the k-th distance is tied
    sk = KNeighborsClassifier(n_neighbors=k, p=2 if metric == "l2" else 1, algorithm="brute")
    sk_pred = sk.fit(xtr, ytr).predict(xte)
    no_tie = clear & ~_vote_tie(d, ytr, k)
    np.testing.assert_array_equal(pred[no_tie], sk_pred[no_tie])
    assert np.mean(pred == yte) > 0.85  # sanity: digits is easy for k-NN


def test_vote_tie_goes_to_the_nearest_class_not_the_smallest_label():
    x_train = np.array([[1.0], [2.0], [9.0]])
    y_train = np.array([5, 0, 0])
    knn = KNearestNeighbor(k=2).fit(x_train, y_train)
    assert knn.predict(np.array([[0.0]])).tolist() == [5]  # one vote each; label 5 is nearer
    sk = KNeighborsClassifier(n_neighbors=2).fit(x_train, y_train)
    assert sk.predict(np.array([[0.0]])).tolist() == [0]    # sklearn (and CS231n) take the smallest label
    # with k=3 the majority decides, whatever is nearest
    assert KNearestNeighbor(k=3).fit(x_train, y_train).predict(np.array([[0.0]])).tolist() == [0]


def test_equal_distances_keep_training_order():
    # test point 0 is at distance 1 from both the first two rows; the earlier row counts as nearer
    x_train, y_train = np.array([[1.0], [-1.0], [7.0]]), np.array([1, 0, 2])
    knn = KNearestNeighbor(k=2).fit(x_train, y_train)
    assert knn.kneighbors(np.array([[0.0]])).tolist() == [[0, 1]]
    assert knn.predict(np.array([[0.0]])).tolist() == [1]
    knn.fit(x_train[[1, 0, 2]], y_train[[1, 0, 2]])
    assert knn.predict(np.array([[0.0]])).tolist() == [0]


def test_labels_of_any_kind_and_images_are_flattened():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 1, 2, 2))
    y = np.array(["cat", "dog"] * 10)
    knn = KNearestNeighbor(k=1).fit(x, y)
    assert knn.predict(x).tolist() == y.tolist()  # k = 1 is perfect on its own training data
    assert knn.score(x, y) == 1.0


def test_float32_stays_float32_and_agrees_with_float64(digits):
    xtr, ytr, xte, _ = digits
    knn32 = KNearestNeighbor(k=1).fit(xtr.astype(np.float32), ytr)
    assert knn32.compute_distances(xte[:5].astype(np.float32)).dtype == np.float32
    d = cdist(xte, xtr)
    clear = ~_boundary_tie(d, 1)
    p32 = knn32.predict(xte.astype(np.float32))
    p64 = KNearestNeighbor(k=1).fit(xtr, ytr).predict(xte)
    np.testing.assert_array_equal(p32[clear], p64[clear])


def test_batch_size_does_not_change_predictions(digits):
    xtr, ytr, xte, _ = digits
    knn = KNearestNeighbor(k=5, metric="l1").fit(xtr, ytr)
    np.testing.assert_array_equal(knn.predict(xte[:50], batch_size=1), knn.predict(xte[:50], batch_size=1000))


def test_k_equal_to_the_training_size_is_the_overall_majority():
    x, y = np.arange(5.0)[:, None], np.array([0, 1, 1, 2, 1])
    assert KNearestNeighbor(k=5).fit(x, y).predict(np.array([[0.0], [4.0]])).tolist() == [1, 1]


def test_cross_validation_matches_sklearn_kfold(digits):
    xtr, ytr, _, _ = digits
    r = choose_k_by_cross_validation(xtr, ytr, ks=[1, 3, 5, 8], folds=5, shuffle=False)
    assert r["accuracies"].shape == (4, 5)
    np.testing.assert_allclose(r["mean"], r["accuracies"].mean(1))
    np.testing.assert_allclose(r["std"], r["accuracies"].std(1))
    assert r["best_k"] in (1, 3, 5, 8) and r["mean"][list(r["ks"]).index(r["best_k"])] == r["mean"].max()
    # k = 1 has no vote ties: per-fold accuracies equal sklearn's on the same (unshuffled) KFold splits
    sk = cross_val_score(KNeighborsClassifier(n_neighbors=1), xtr, ytr, cv=KFold(5))
    np.testing.assert_allclose(r["accuracies"][0], sk, atol=1e-12)


def test_cross_validation_is_seeded(digits):
    xtr, ytr, _, _ = digits
    a = choose_k_by_cross_validation(xtr[:300], ytr[:300], ks=[1, 3], folds=3, seed=4)
    b = choose_k_by_cross_validation(xtr[:300], ytr[:300], ks=[1, 3], folds=3, seed=4)
    np.testing.assert_array_equal(a["accuracies"], b["accuracies"])


def test_bad_input_raises():
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ArgumentError, match="metric"):
        KNearestNeighbor(metric="cosine")
    with pytest.raises(ArgumentError, match="positive integer"):
        KNearestNeighbor(k=0)
    with pytest.raises(ArgumentError, match="not fitted"):
        KNearestNeighbor().predict(x)
    with pytest.raises(ShapeError, match="features"):
        KNearestNeighbor().fit(x, y).predict(np.zeros((1, 3)))
    with pytest.raises(ShapeError, match="y must have shape"):
        KNearestNeighbor().fit(x, y[:3])
    with pytest.raises(ArgumentError, match="k=5"):
        KNearestNeighbor(k=5).fit(x, y).predict(x)
    with pytest.raises(ShapeError, match=r"\(N, D\)"):
        pairwise_distances(np.zeros(3), x)
    with pytest.raises(ArgumentError, match="every k"):
        choose_k_by_cross_validation(x, y, ks=[4], folds=2)
