"""Kernel workspaces: reused scratch memory must never leak into results."""

import threading

import numpy as np

from shendu.ops.kernels import im2col, winograd, workspace


def test_workspace_grows_reuses_and_is_per_thread():
    workspace.clear()
    a = workspace.workspace("test.buf", 10, np.float32)
    b = workspace.workspace("test.buf", 4, np.float32)
    assert np.shares_memory(a, b) and b.shape == (4,)
    c = workspace.workspace("test.buf", 100, np.float32)  # grows: a new array
    assert c.shape == (100,) and not np.shares_memory(a, c)
    assert not np.shares_memory(c, workspace.workspace("test.buf", 10, np.float64))  # per dtype
    other = []
    t = threading.Thread(target=lambda: other.append(workspace.workspace("test.buf", 10, np.float32)))
    t.start()
    t.join()
    assert not np.shares_memory(c, other[0])  # per thread
    assert workspace.nbytes() >= 100 * 4 + 10 * 8 + 10 * 4
    workspace.clear()
    assert workspace.nbytes() == 0


def test_results_do_not_alias_the_workspace():
    """A second, smaller call (so it reuses the first call's workspaces rather than growing them) leaves the
    first call's outputs unchanged."""
    rng = np.random.default_rng(0)
    x1, w1 = rng.standard_normal((3, 16, 9, 9), np.float32), rng.standard_normal((16, 16, 3, 3), np.float32)
    x2, w2 = rng.standard_normal((2, 8, 6, 6), np.float32), rng.standard_normal((8, 8, 3, 3), np.float32)
    pads = (1, 1, 1, 1)
    for kernel in (winograd, im2col):
        conv = (lambda x, w: kernel.conv2d(x, w, pads)) if kernel is winograd else \
            (lambda x, w: kernel.conv2d(x, w, (1, 1), pads))
        grads = (lambda gy, x, w: kernel.conv2d_grads(gy, x, w, pads)) if kernel is winograd else \
            (lambda gy, x, w: kernel.conv2d_grads(gy, x, w, (1, 1), pads))
        y1 = conv(x1, w1)
        gx1, gw1 = grads(y1, x1, w1)
        saved = [a.copy() for a in (y1, gx1, gw1)]
        y2 = conv(x2, w2)
        grads(y2, x2, w2)
        for before, after in zip(saved, (y1, gx1, gw1)):
            np.testing.assert_array_equal(before, after)
        np.testing.assert_allclose(conv(x1, w1), saved[0], rtol=1e-5, atol=1e-5)  # and runs again alike
