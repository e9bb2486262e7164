"""The chunked class-axis kernels of cross-entropy (shendu.ops.kernels.softmax) on arrays large enough to
span several chunks and both kernel threads, against torch in float64; with numba's target loops, and
with the array-expression fallbacks that run without numba or for other array types."""

import numpy as np
import pytest
import torch

import shendu
import shendu.functional as F
from shendu.ops.kernels import softmax

CASES = [
    ((3, 11, 200, 300), {}),  # segmentation-sized: 1 image per chunk
    ((3, 11, 200, 300), {"weight": True, "ignore": True, "label_smoothing": 0.1}),
    ((3, 11, 200, 300), {"reduction": "none", "ignore": True}),
    ((20000, 100), {"reduction": "sum", "weight": True}),  # a classifier: thousands of rows per chunk
    ((20000, 100), {"label_smoothing": 0.2, "ignore": True}),
]


def _inputs(shape, opts, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    if opts.get("ignore"):
        t[rng.random(t.shape) < 0.2] = -100
    w = rng.uniform(0.5, 2.0, shape[1]).astype(np.float32) if opts.get("weight") else None
    kw = {"reduction": opts.get("reduction", "mean"), "label_smoothing": opts.get("label_smoothing", 0.0)}
    return x, t, w, kw


def _check(shape, opts):
    x, t, w, kw = _inputs(shape, opts)
    xs = shendu.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xs, shendu.tensor(t), weight=None if w is None else shendu.tensor(w), **kw)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = None if w is None else torch.tensor(w, dtype=torch.float64)
    ref = torch.nn.functional.cross_entropy(xt, torch.tensor(t), weight=wt, **kw)
    cot = np.random.default_rng(1).standard_normal(np.shape(ref.detach().numpy())).astype(np.float32)
    loss.backward(shendu.tensor(cot))
    ref.backward(torch.tensor(cot, dtype=torch.float64))
    np.testing.assert_allclose(loss.detach().numpy(), ref.detach().numpy(), rtol=2e-5, atol=1e-6)
    # float32 p = exp(x - lse) carries ~|x - lse| ulps of error (logits here reach ~15): 1e-5 of the scale
    ref_grad = xt.grad.numpy()
    np.testing.assert_allclose(xs.grad.numpy(), ref_grad, rtol=1e-4, atol=1e-5 * np.abs(ref_grad).max())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape,opts", CASES)
def test_cross_entropy_kernels_match_torch(shape, opts, threads):
    before = shendu.get_num_threads()
    shendu.set_num_threads(threads)
    try:
        _check(shape, opts)
    finally:
        shendu.set_num_threads(before)


@pytest.mark.parametrize("shape,opts", CASES[1:2] + CASES[4:])
def test_cross_entropy_without_numba_matches_torch(shape, opts, monkeypatch):
    monkeypatch.setattr(softmax, "AVAILABLE", False)  # the target loops fall back to index arrays
    _check(shape, opts)


@pytest.mark.parametrize("shape,opts", CASES[1:2] + CASES[4:])
def test_cross_entropy_array_expressions_match_torch(shape, opts, monkeypatch):
    monkeypatch.setattr(softmax, "accepts", lambda *a: False)  # every step as plain array expressions
    _check(shape, opts)


def test_logsumexp_is_stable_for_large_logits():
    x = np.array([[[1000.0, -5.0], [1000.0, 3.0]]], np.float32)  # N=1, C=2, D=2
    np.testing.assert_allclose(softmax.logsumexp_classes(x), [[1000 + np.log(2), np.log(np.exp(-5) + np.exp(3))]],
                               rtol=1e-6)


@pytest.mark.skipif(not softmax.AVAILABLE, reason="numba is not installed: NumPy's exp runs")
def test_compiled_exp_is_within_two_ulp_and_keeps_underflow_and_nan():
    v = np.concatenate([-np.linspace(0, 87.3, 200001), [-87.4, -100.0, -np.inf, np.nan]]).astype(np.float32)
    out, bits = np.empty_like(v), np.empty(v.size, np.int32)
    softmax._exp_shifted(v, out, bits)
    ref = np.exp(v[:-4].astype(np.float64))
    ulp = np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert (np.abs(out[:-4] - ref) <= 2 * ulp).all()
    assert out[-4:-1].tolist() == [0.0, 0.0, 0.0] and np.isnan(out[-1])


def test_classifier_logsumexp_is_stable_and_propagates_nan():
    # (N, C, 1) float32: the compiled path when numba is there
    x = np.array([[1000.0, 1000.0, -5.0], [3.0, -np.inf, 1.0], [0.0, np.nan, 1.0]], np.float32)[:, :, None]
    lse = softmax.logsumexp_classes(x)
    np.testing.assert_allclose(lse[:2, 0], [1000 + np.log(2), np.log(np.exp(3.0) + np.exp(1.0))], rtol=1e-6)
    assert np.isnan(lse[2, 0])
    p = softmax.softmax_classes(x[:2], lse[:2], np.ones((2, 1), np.float32))[:, :, 0]
    # p = exp(x - lse): lse = 1000.69 is stored to float32's 6e-5 there, so row 0 is good to ~3e-5
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0], [np.exp(3) / (np.exp(3) + np.e), 0.0, np.e / (np.exp(3) + np.e)]],
                               rtol=4e-5, atol=1e-30)
