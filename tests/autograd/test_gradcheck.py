"""The public numerical gradient check: passes right gradients, catches wrong ones with a useful report."""

import numpy as np
import pytest

import shendu
from shendu.errors import DTypeError, GradcheckError


class WrongCube(shendu.Function):
    """y = x^3 with a deliberately wrong backward (2x^2 instead of 3x^2)."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    def backward(ctx, gy):
        x, = ctx.saved
        return gy * 2 * x ** 2


def _x():
    return shendu.tensor(np.array([[0.5, -1.0, 1.5], [2.0, -0.3, 0.8]]), requires_grad=True)


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_gradcheck_passes_correct_ops(mode):
    x = _x()
    w = shendu.tensor(np.array([0.3, -0.2, 1.1]), requires_grad=True)
    assert shendu.autograd.gradcheck(lambda a, b: (a * b).exp() / (1 + a * a), (x, w), mode=mode)


def test_gradcheck_full_reports_worst_element():
    with pytest.raises(GradcheckError, match=r"input 0 at element \(1, 0\).*analytic 8.*numerical 12"):
        shendu.autograd.gradcheck(WrongCube.apply, (_x(),))


def test_gradcheck_directional_catches_wrong_gradient():
    with pytest.raises(GradcheckError, match="directional derivative mismatch"):
        shendu.autograd.gradcheck(WrongCube.apply, (_x(),), mode="directional")
    assert shendu.autograd.gradcheck(WrongCube.apply, (_x(),), mode="directional", raise_exception=False) is False


def test_gradcheck_wants_float64():
    x = shendu.ones(3, requires_grad=True)
    with pytest.raises(DTypeError, match="float64"):
        shendu.autograd.gradcheck(lambda t: t * 2, (x,))


def test_gradcheck_needs_an_input_requiring_grad():
    with pytest.raises(shendu.errors.ArgumentError, match="no input requires grad"):
        shendu.autograd.gradcheck(lambda t: t * 2, (shendu.ones(2, dtype=shendu.float64),))
