"""shendu.classic.PCA against sklearn's PCA; PCA/ZCA whitening gives identity covariance on training data."""

import numpy as np
import pytest

from shendu.classic import PCA, Whitening
from shendu.data import transforms as T
from shendu.errors import ArgumentError, ShapeError

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")


def _data(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * np.linspace(3, 0.3, d)[:, None]
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d)


@pytest.mark.parametrize("k", [2, 6])
@pytest.mark.parametrize("whiten", [False, True])
def test_pca_matches_sklearn_up_to_sign(k, whiten):
    X, Xtest = _data(), _data(50, seed=1)
    ours = PCA(k, whiten=whiten).fit(X)
    ref = sklearn_decomposition.PCA(k, whiten=whiten, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-10)
    signs = np.sign((ours.components_ * ref.components_).sum(axis=1))
    np.testing.assert_allclose(ours.components_ * signs[:, None], ref.components_, atol=1e-10)
    np.testing.assert_allclose(ours.transform(Xtest) * signs, ref.transform(Xtest), atol=1e-9)
    Z = ours.transform(Xtest)
    np.testing.assert_allclose(ours.inverse_transform(Z), ref.inverse_transform(Z * signs), atol=1e-9)
    if k == 6:
        np.testing.assert_allclose(ours.inverse_transform(Z), Xtest, atol=1e-9)


def test_pca_fractional_components_and_errors():
    X = _data()
    p = PCA(0.9).fit(X)
    ref = sklearn_decomposition.PCA(0.9, svd_solver="full").fit(X)
    assert p.n_components_ == ref.n_components_
    assert PCA(2).fit(X.astype(np.float32)).transform(X.astype(np.float32)).dtype == np.float32
    with pytest.raises(ArgumentError):
        PCA(0)
    with pytest.raises(ArgumentError, match="call fit"):
        PCA(2).transform(X)
    with pytest.raises(ShapeError, match="fitted on 6 features"):
        PCA(2).fit(X).transform(X[:, :3])


@pytest.mark.parametrize("method", ["pca", "zca"])
def test_whitening_gives_identity_covariance_on_training_data(method):
    X = _data(2000, 8)
    w = Whitening(method, eps=1e-9).fit(X)
    Z = w.transform(X)
    assert Z.shape == X.shape
    cov = np.cov(Z.T, bias=True)  # ddof=0, as the whitening is fitted
    np.testing.assert_allclose(cov, np.eye(8), atol=1e-6)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-9)
    # statistics come from the training split only: held-out data is transformed with them, not refitted
    held = _data(500, 8, seed=3)
    np.testing.assert_allclose(w.transform(held), (held - X.mean(0)) @ w.matrix_, atol=1e-9)


def test_zca_is_the_symmetric_whitening_and_pca_whitening_matches_sklearn():
    X = _data(400, 5)
    zca = Whitening("zca", eps=0.0).fit(X)
    np.testing.assert_allclose(zca.matrix_, zca.matrix_.T, atol=1e-10)  # W = U S^-1/2 U^T is symmetric
    cov = np.cov(X.T, bias=True)
    np.testing.assert_allclose(zca.matrix_ @ zca.matrix_, np.linalg.inv(cov), rtol=1e-7, atol=1e-9)
    pca = Whitening("pca", eps=0.0).fit(X)
    ref = sklearn_decomposition.PCA(whiten=True, svd_solver="full").fit(X).transform(X)
    ours = pca.transform(X) * np.sqrt((len(X) - 1) / len(X))  # sklearn whitens with ddof=1
    signs = np.sign((ours * ref).sum(axis=0))
    np.testing.assert_allclose(ours * signs, ref, atol=1e-8)


def test_whiten_transform_wrapper_on_image_batches():
    rng = np.random.default_rng(0)
    x = rng.random((300, 1, 3, 3)).astype(np.float32) * np.linspace(1, 2, 9, dtype=np.float32).reshape(1, 1, 3, 3)
    w = Whitening("zca", eps=1e-8).fit(x)
    out = T.Whiten(w).batch(x)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_allclose(np.cov(out.reshape(300, -1).T, bias=True), np.eye(9), atol=1e-4)
    reduced = T.Whiten(PCA(4).fit(x)).batch(x)
    assert reduced.shape == (300, 4)
