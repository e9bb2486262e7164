"""Linear SVM and softmax classifiers (shendu/classic/linear.py).

References: CS231n-style loop versions written here, central differences, shendu's autograd through
F.multiclass_hinge_loss / F.cross_entropy, PyTorch's multi_margin_loss (which divides by C), the notes'
worked SVM example and scikit-learn's LogisticRegression at its optimum.
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression

import shendu
import shendu.functional as F
from shendu.classic import LinearSVM, SoftmaxClassifier, softmax_loss_vectorized, svm_loss_vectorized
from shendu.errors import ArgumentError, DTypeError, ShapeError


# ------------------------------------------------------------------ loop references (tests only)
def svm_loss_naive(W, X, y, reg):
    """CS231n's svm_loss_naive: loops over examples and classes."""
    dW = np.zeros_like(W)
    loss = 0.0
    for i in range(X.shape[0]):
        scores = X[i].dot(W)
        for j in range(W.shape[1]):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + 1
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    n = X.shape[0]
    return loss / n + reg * np.sum(W * W), dW / n + 2 * reg * W


def softmax_loss_naive(W, X, y, reg):
    """CS231n's softmax_loss_naive: loops over examples and classes."""
    dW = np.zeros_like(W)
    loss = 0.0
    for i in range(X.shape[0]):
        scores = X[i].dot(W)
        scores = scores - scores.max()
        probs = np.exp(scores) / np.sum(np.exp(scores))
        loss -= np.log(probs[y[i]])
        for j in range(W.shape[1]):
            dW[:, j] += (probs[j] - (j == y[i])) * X[i]
    n = X.shape[0]
    return loss / n + reg * np.sum(W * W), dW / n + 2 * reg * W


def numerical_gradient(f, w, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of w (changed in place)."""
    g = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        old = w[idx]
        w[idx] = old + eps
        fp = f()
        w[idx] = old - eps
        fm = f()
        w[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


LOSSES = {"svm": (svm_loss_vectorized, svm_loss_naive), "softmax": (softmax_loss_vectorized, softmax_loss_naive)}


def _problem(n=17, d=11, c=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d, c)), rng.standard_normal((n, d)), rng.integers(0, c, n)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_vectorized_matches_naive(name, reg):
    vec, naive = LOSSES[name]
    W, X, y = _problem()
    loss, dW = vec(W, X, y, reg)
    ref_loss, ref_dW = naive(W, X, y, reg)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(dW, ref_dW, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_vectorized_gradient_matches_central_differences(name):
    vec, _ = LOSSES[name]
    W, X, y = _problem(seed=1)
    _, dW = vec(W, X, y, 0.05)
    num = numerical_gradient(lambda: vec(W, X, y, 0.05)[0], W)
    # the hinge has kinks; random float64 scores keep every margin far from 0 compared with eps
    np.testing.assert_allclose(dW, num, rtol=1e-5, atol=1e-7)


def test_regulariser_is_lambda_sum_w_squared_with_gradient_2_lambda_w():
    W, X, y = _problem(seed=2)
    for vec, _ in LOSSES.values():
        l0, g0 = vec(W, X, y, 0.0)
        l1, g1 = vec(W, X, y, 0.25)
        np.testing.assert_allclose(l1 - l0, 0.25 * np.sum(W ** 2), rtol=1e-12)
        np.testing.assert_allclose(g1 - g0, 0.5 * W, rtol=1e-12)


def test_notes_svm_example():
    """Scores of cat / car / frog images (one column per image in the notes): losses 2.9, 0, 12.9."""
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])  # one row per image
    per_image = [svm_loss_vectorized(scores, np.eye(3)[[i]], np.array([i]), 0.0)[0] for i in range(3)]
    np.testing.assert_allclose(per_image, [2.9, 0.0, 12.9], atol=1e-12)
    np.testing.assert_allclose(svm_loss_vectorized(scores, np.eye(3), np.arange(3), 0.0)[0], 15.8 / 3)


@pytest.mark.parametrize("name, f_loss", [("svm", F.multiclass_hinge_loss), ("softmax", F.cross_entropy)])
def test_matches_shendu_autograd_losses(name, f_loss):
    vec, _ = LOSSES[name]
    W, X, y = _problem(seed=3)
    reg = 0.1
    loss, dW = vec(W, X, y, reg)
    w = shendu.tensor(W, requires_grad=True)
    ref = f_loss(shendu.tensor(X) @ w, shendu.tensor(y)) + reg * (w * w).sum()
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(dW, w.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_svm_is_c_times_torch_multi_margin_loss():
    W, X, y = _problem(seed=4)
    c = W.shape[1]
    loss, _ = svm_loss_vectorized(W, X, y, 0.0)
    torch_loss = torch.nn.functional.multi_margin_loss(torch.tensor(X @ W), torch.tensor(y))
    np.testing.assert_allclose(loss, c * torch_loss.item(), rtol=1e-12)
    ce = torch.nn.functional.cross_entropy(torch.tensor(X @ W), torch.tensor(y))
    np.testing.assert_allclose(softmax_loss_vectorized(W, X, y, 0.0)[0], ce.item(), rtol=1e-12)


def test_softmax_is_stable_for_huge_scores():
    W = np.array([[1000.0, 0.0]])
    loss, dW = softmax_loss_vectorized(W, np.ones((1, 1)), np.array([1]), 0.0)
    assert np.isfinite(loss) and np.isfinite(dW).all()
    np.testing.assert_allclose(loss, 1000.0)


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier])
def test_classifier_loss_gradient_with_bias(cls):
    W, X, y = _problem(seed=5)
    clf = cls()
    clf.W, clf.b = W, np.random.default_rng(6).standard_normal(W.shape[1])
    loss, dW, db = clf.loss(X, y, 0.05)
    np.testing.assert_allclose(dW, numerical_gradient(lambda: clf.loss(X, y, 0.05)[0], clf.W), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, numerical_gradient(lambda: clf.loss(X, y, 0.05)[0], clf.b), rtol=1e-5, atol=1e-7)
    # the bias is not regularised: with a ones column appended to X the bias-trick loss is bigger by
    # exactly reg * sum(b^2)
    Wb = np.vstack([W, clf.b])
    trick, _ = LOSSES[cls.data_loss_name][0](Wb, np.hstack([X, np.ones((len(X), 1))]), y, 0.05)
    np.testing.assert_allclose(trick - loss, 0.05 * np.sum(clf.b ** 2), rtol=1e-10)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = d.data.astype(np.float32)
    mu, sd = x[:1400].mean(0), x[:1400].std(0)
    x = (x - mu) / np.where(sd > 0, sd, 1)
    return x[:1400], d.target[:1400], x[1400:], d.target[1400:]


@pytest.mark.parametrize("cls, lr", [(LinearSVM, 1e-2), (SoftmaxClassifier, 1e-1)])
def test_training_learns_digits_and_is_deterministic(digits, cls, lr):
    xtr, ytr, xte, yte = digits
    a, b = cls(), cls()
    ha = a.train(xtr, ytr, learning_rate=lr, reg=1e-3, num_iters=300, batch_size=100, seed=7)
    hb = b.train(xtr, ytr, learning_rate=lr, reg=1e-3, num_iters=300, batch_size=100, seed=7)
    assert ha == hb and np.array_equal(a.W, b.W) and np.array_equal(a.b, b.b)
    assert a.W.dtype == np.float32 and a.b.dtype == np.float32
    assert np.mean(ha[-20:]) < 0.3 * ha[0]
    assert a.score(xte, yte) > 0.87  # sklearn's LogisticRegression scores 0.907 on this split (other writers)
    c = cls()
    assert c.train(xtr, ytr, learning_rate=lr, reg=1e-3, num_iters=5, seed=8) != ha[:5]


def test_initial_softmax_loss_is_about_ln_c(digits):
    xtr, ytr, _, _ = digits
    h = SoftmaxClassifier().train(xtr, ytr, learning_rate=1e-9, reg=0.0, num_iters=1)
    assert abs(h[0] - np.log(10)) < 0.05  # the notes' sanity check before training


def test_softmax_training_reaches_sklearn_logistic_regression_optimum():
    """Full-batch gradient descent on iris reaches sklearn's optimum once lambda is mapped to C.

    sklearn minimises sum_i L_i + ||W||^2 / (2 C); ours is mean_i L_i + lambda ||W||^2, i.e. the same
    objective divided by N when C = 1 / (2 N lambda). Neither regularises the intercept.
    """
    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    reg = 0.01
    clf = SoftmaxClassifier()
    clf.train(x, y, learning_rate=0.5, reg=reg, num_iters=4000, batch_size=len(x), seed=0)
    sk = LogisticRegression(C=1 / (2 * len(x) * reg), tol=1e-12, max_iter=10000).fit(x, y)
    np.testing.assert_allclose(clf.predict_proba(x), sk.predict_proba(x), atol=1e-5)


def test_bad_input_raises():
    W, X, y = _problem()
    with pytest.raises(ShapeError, match="svm_loss_vectorized"):
        svm_loss_vectorized(W, X[:, :3], y, 0.0)
    with pytest.raises(ArgumentError, match="labels must be in 0..6"):
        softmax_loss_vectorized(W, X, y + 7, 0.0)
    with pytest.raises(DTypeError, match="integer"):
        softmax_loss_vectorized(W, X, y.astype(float), 0.0)
    with pytest.raises(ArgumentError, match="not trained"):
        LinearSVM().predict(X)
    with pytest.raises(ArgumentError, match="learning_rate"):
        LinearSVM().train(X, y, learning_rate=-1.0)
    clf = SoftmaxClassifier()
    clf.train(X, y, num_iters=1)
    with pytest.raises(ShapeError, match="features"):
        clf.train(X[:, :2], y, num_iters=1)
    with pytest.raises(ShapeError, match=r"\(N, 11\)"):
        clf.predict(X[:, :2])
