"""numba's OpenMP team (shendu.ops.kernels.team): its GEMMs equal a float64 NumPy product on every
layout and split, batch-1 convolutions that use it equal torch, and the chunk pool stays off the cores
while the team's threads spin."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import shendu
from shendu.ops.kernels import col2im_numba, im2col, parallel, team, winograd

RNG = np.random.default_rng(0)


def _views(m, dtype):
    """The same matrix stored as it is, as a transposed view, and as a column slice of a wider one."""
    a = m.astype(dtype)
    wide = np.zeros((m.shape[0], m.shape[1] + 5), dtype)
    wide[:, 2:2 + m.shape[1]] = a
    return {"C": a, "T": np.ascontiguousarray(a.T).T, "slice": wide[:, 2:2 + m.shape[1]]}


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("M,K,N", [(64, 288, 196), (3, 4, 300), (130, 37, 9), (1, 5, 7), (7, 1, 1)])
def test_gemm_matches_numpy_on_every_layout(two_threads, dtype, tol, M, K, N):
    a64, b64 = RNG.standard_normal((M, K)), RNG.standard_normal((K, N))
    want = a64 @ b64
    scale = np.abs(a64).sum(1, keepdims=True) @ np.abs(b64).max(0, keepdims=True) + 1e-30
    for na, a in _views(a64, dtype).items():
        for nb, b in _views(b64, dtype).items():
            out = np.full((M, N + 3), np.nan, dtype)[:, 1:N + 1]  # a strided out: the padding stays NaN
            team.gemm(a, b, out)
            assert np.all(np.abs(out - want) <= tol * scale), (na, nb)
            assert out.dtype == dtype
            assert np.isnan(out.base[:, 0]).all() and np.isnan(out.base[:, N + 1:]).all()


def test_gemm_splits_by_rows_and_by_columns(two_threads, monkeypatch):
    a, b = RNG.standard_normal((40, 30)), RNG.standard_normal((30, 200))
    for min_columns in (1, 10 ** 6):  # by columns (100 per thread), then by rows (20 per thread)
        monkeypatch.setattr(team, "MIN_SPLIT_COLUMNS", min_columns)
        np.testing.assert_allclose(team.gemm(a, b, np.empty((40, 200))), a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_batched_matches_numpy(two_threads, dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 6, 8)).astype(dtype)
    b = rng.standard_normal((5, 7, 8)).astype(dtype).transpose(0, 2, 1)  # transposed views, as Winograd's U
    out = np.empty((5, 6, 7), dtype)
    team.gemm_batched(a, b, out)
    # relative to the size of the terms summed, not of the sum (which can cancel to near 0)
    scale = np.abs(a.astype(np.float64)) @ np.abs(b)
    assert np.all(np.abs(out - a.astype(np.float64) @ b) <= (1e-6 if dtype == np.float32 else 1e-14) * scale)


def test_gemm_edge_sizes_and_misuse(two_threads):
    out = np.full((3, 4), 7.0)
    team.gemm(np.empty((3, 0)), np.empty((0, 4)), out)  # an empty sum is zero
    assert not out.any()
    with pytest.raises(TypeError, match="float32 or float64"):
        team.gemm(np.ones((2, 2), np.float32), np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="do not match"):
        team.gemm(np.ones((2, 3)), np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="unit stride"):
        team.gemm(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)).T)


@pytest.mark.parametrize("alg,w_shape,kw", [
    ("im2col", (6, 4, 3, 3), dict(padding=1)),
    ("im2col", (6, 4, 3, 3), dict(padding=1, stride=2)),
    ("im2col", (6, 4, 1, 1), {}),
    ("winograd", (6, 4, 3, 3), dict(padding=1)),
    ("winograd2x2", (6, 4, 3, 3), dict(padding=(2, 1))),
])
@pytest.mark.parametrize("bias", [False, True])
def test_batch1_convolutions_on_the_team_match_torch(two_threads, monkeypatch, alg, w_shape, kw, bias):
    monkeypatch.setattr(team, "MIN_WORK", 0)  # these small layers use the team too
    x = RNG.standard_normal((1, 4, 11, 9)).astype(np.float32)
    w = RNG.standard_normal(w_shape).astype(np.float32)
    b = RNG.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    regions = []
    monkeypatch.setattr(parallel, "note_team_region", lambda: regions.append(1))
    want = TF.conv2d(torch.tensor(x), torch.tensor(w), None if b is None else torch.tensor(b), **kw).numpy()
    with shendu.no_grad():
        got = shendu.conv2d(x, w, b, algorithm=alg, **kw).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)
    assert regions, "the team was not used"


@pytest.mark.parametrize("alg,w_shape,kw,hw", [
    ("im2col", (6, 4, 3, 3), dict(padding=1), (11, 9)),              # small maps: one GEMM a chunk, copied
    ("im2col", (6, 4, 3, 3), dict(padding=1, stride=2), (11, 9)),
    ("im2col", (6, 4, 3, 3), dict(padding=1), (26, 24)),             # >= 256 pixels: a GEMM per image
    ("im2col", (6, 4, 1, 1), {}, (11, 9)),                           # the input is the column matrix
    ("im2col", (5, 4, 3, 2), dict(padding=(2, 0), dilation=2), (11, 9)),
    ("winograd", (6, 4, 3, 3), dict(padding=1), (11, 9)),
    ("winograd2x2", (6, 4, 3, 3), dict(padding=(0, 2)), (11, 9)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_batches_on_the_team_match_torch(two_threads, monkeypatch, alg, w_shape, kw, hw, dtype):
    """Without autograd a batch runs on the team too; with it (a training forward) on the pool, and
    both equal torch. Chunks of 2 images (5 in the batch: a short last chunk)."""
    monkeypatch.setattr(team, "MIN_WORK", 0)
    monkeypatch.setattr(winograd, "_chunk", lambda N, *a: 2)
    x = RNG.standard_normal((5, 4) + hw).astype(dtype)
    w = RNG.standard_normal(w_shape).astype(dtype)
    b = RNG.standard_normal(w_shape[0]).astype(dtype)
    want = TF.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kw).numpy()
    columns_per_image = w[0].size * want[0, 0].size * x.itemsize
    monkeypatch.setattr(col2im_numba, "_TEAM_CHUNK_BYTES", 2 * columns_per_image)  # im2col's chunks: 2 images
    regions = []
    monkeypatch.setattr(parallel, "note_team_region", lambda: regions.append(1))
    with shendu.no_grad():
        got = shendu.conv2d(x, w, b, algorithm=alg, **kw).numpy()
    assert regions, "the team was not used"
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert got.dtype == dtype
    regions.clear()
    trained = shendu.conv2d(shendu.tensor(x), shendu.tensor(w, requires_grad=True), shendu.tensor(b),
                            algorithm=alg, **kw)
    assert not regions, "a forward that needs gradients ran on the team"
    np.testing.assert_allclose(trained.detach().numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("m,hw,pads", [(4, (4, 4), (1, 1, 1, 1)),   # one tile row: the second thread idles
                                        (4, (11, 9), (1, 1, 1, 1)),  # three tile rows: bands of 1 and 2
                                        (2, (13, 6), (2, 0, 1, 1)),  # seven rows, asymmetric padding
                                        (4, (2, 12), (1, 1, 0, 0))])
def test_single_image_winograd_bands_match_the_reference(two_threads, m, hw, pads):
    """A single image's Winograd forward on the team (winograd_numba.forward_image_team) shares the filter
    transform, bands of tile rows and the alpha^2 channel GEMMs among the threads: equal to the NumPy
    reference in float64."""
    x = RNG.standard_normal((1, 5) + hw)
    w = RNG.standard_normal((7, 5, 3, 3))
    np.testing.assert_allclose(winograd._conv2d_team(x, w, pads, m), winograd.conv2d_numpy(x, w, pads, 1, m),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K,C,lo,hi", [(7, 5, 0, 35), (16, 9, 3, 140), (1, 1, 0, 1), (70, 9, 61, 600)])
def test_compiled_filter_rows_equal_the_gemm(m, dtype, K, C, lo, hi):
    """winograd_numba.filter_rows (separable, blocks of 256 filters) computes U = G g G^T for the
    filters lo:hi, as the GEMM with kron(G, G), and writes nothing else."""
    from shendu.ops.kernels import winograd_numba

    w = RNG.standard_normal((K, C, 3, 3)).astype(dtype)
    want = _kron_filters(w, m, 1)[0]
    U = np.full(want.shape, np.nan, dtype)
    winograd_numba.filter_rows(w.reshape(K * C, 9), winograd.matrices(m, 3, dtype)[1], U, lo, hi)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(U[:, lo:hi], want[:, lo:hi], rtol=tol, atol=tol)
    assert np.isnan(U[:, :lo]).all() and np.isnan(U[:, hi:]).all()


def _kron_filters(w, m, groups):
    """The reference: ``kron(G, G) @ w^T`` per group in float64, (groups, alpha^2, K C/groups)."""
    KG = np.kron(*(2 * [winograd.matrices(m, 3, np.float64)[1]]))
    return KG @ w.astype(np.float64).reshape(groups, -1, 9).transpose(0, 2, 1)


@pytest.mark.parametrize("numba_kernels", [True, False])
@pytest.mark.parametrize("team_path", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_filter_transform_equals_the_kron_reference(two_threads, monkeypatch, numba_kernels, team_path, groups):
    """filter_transform on the team, on the pool, and NumPy's GEMM (no numba) all equal kron(G, G) w^T."""
    monkeypatch.setattr(winograd, "USE_NUMBA", numba_kernels)
    w = RNG.standard_normal((8, 6, 3, 3)).astype(np.float32)
    for m in (2, 4):
        got = winograd.filter_transform(w, m, groups, team=team_path)
        assert got.shape == (groups, (m + 2) ** 2, 8 // groups, 6)
        want = _kron_filters(w, m, groups).reshape(got.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_pool_waits_while_the_team_spins(two_threads, monkeypatch):
    """Right after a team region, split_rows and parallel_chunks run on the calling thread (a pool thread
    would share a core with a spinning OpenMP thread); once the spin is over they use the pool again."""
    seen = set()

    def record(*_):
        seen.add(threading.get_ident())

    team.gemm(np.ones((2, 2)), np.ones((2, 2)), np.empty((2, 2)))
    parallel.split_rows(record, 4)
    parallel.parallel_chunks(record, 4, 1)
    assert seen == {threading.get_ident()}
    monkeypatch.setitem(parallel._state, "team_until", 0.0)  # the spin is over
    parallel.split_rows(record, 4)
    assert len(seen) == 2


def test_batch1_split_gemm_without_the_team_still_matches(monkeypatch):
    """With the team unavailable (numba's workqueue layer, one thread) the pool path is the one that runs."""
    monkeypatch.setattr(team, "available", lambda: False)
    x = RNG.standard_normal((1, 8, 20, 20)).astype(np.float32)
    w = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32)
    want = TF.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    np.testing.assert_allclose(im2col.conv2d(x, w, pads=(1, 1, 1, 1)), want, rtol=1e-4, atol=2e-4)
