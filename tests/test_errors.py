"""Misuse gets a clear error: the right type, and a message that names the op, what it got and a hint.

Each row: a call that must fail, the exception type, and fragments the message must contain.
"""

import numpy as np
import pytest

import shendu
import shendu.functional as F
from shendu import errors

t23 = lambda: shendu.ones(2, 3)  # noqa: E731
CASES = [
    ("add broadcast", lambda: t23() + shendu.ones(4), errors.ShapeError, ["add", "(2, 3)", "(4,)", "broadcast"]),
    ("mul broadcast", lambda: t23() * shendu.ones(3, 2), errors.ShapeError, ["mul", "(2, 3)", "(3, 2)"]),
    ("matmul inner", lambda: t23() @ shendu.ones(4, 5), errors.ShapeError, ["matmul", "(2, 3)", "(4, 5)", "3", "4"]),
    ("reshape count", lambda: t23().reshape(4, 2), errors.ShapeError, ["reshape", "(2, 3)", "(4, 2)"]),
    ("sum dim", lambda: t23().sum(dim=2), errors.ArgumentError, ["sum", "dim 2", "2 dimension"]),
    ("cat shapes", lambda: shendu.cat([t23(), shendu.ones(2, 4)], dim=0), errors.ShapeError, ["cat", "(2, 4)"]),
    ("permute dims", lambda: t23().permute(0), errors.ArgumentError, ["permute"]),
    ("item many", lambda: t23().item(), errors.ShapeError, ["item", "(2, 3)"]),
    ("bool ambiguous", lambda: bool(t23()), errors.ShapeError, ["ambiguous", "any()"]),
    ("int requires grad", lambda: shendu.tensor([1, 2], requires_grad=True), errors.DTypeError,
     ["floating-point", "int64"]),
    ("leaf in-place", lambda: shendu.ones(2, requires_grad=True).add_(1), errors.AutogradError,
     ["leaf", "in-place", "no_grad"]),
    ("backward non-scalar", lambda: (shendu.ones(2, requires_grad=True) * 2).backward(), errors.AutogradError,
     ["one element", "gradient="]),
    ("backward no grad", lambda: shendu.ones(2).sum().backward(), errors.AutogradError,
     ["does not require grad", "requires_grad=True"]),
    ("where condition", lambda: shendu.where(shendu.ones(2), shendu.ones(2), 0.0), errors.DTypeError,
     ["where", "bool"]),
    ("gather index dtype", lambda: shendu.gather(t23(), 1, shendu.ones(2, 1)), errors.DTypeError, ["gather", "int"]),
    ("index out of range", lambda: t23()[5], errors.IndexOutOfRangeError, ["5", "size 2"]),
    ("topk too large", lambda: shendu.topk(shendu.ones(3), 5), errors.ArgumentError, ["topk", "5", "3"]),
    ("clamp no bounds", lambda: shendu.clamp(shendu.ones(2)), errors.ArgumentError, ["clamp", "min", "max"]),
    ("zeros negative", lambda: shendu.zeros(2, -1), errors.ShapeError, ["zeros", "negative"]),
    ("mean of int", lambda: shendu.tensor([1, 2]).mean(), errors.DTypeError, ["mean", "int64"]),
    ("one_hot range", lambda: F.one_hot(shendu.tensor([0, 3]), 3), errors.ShenduError, ["one_hot", "3"]),
    ("gradcheck float32", lambda: shendu.autograd.gradcheck(lambda x: x, (shendu.ones(1, requires_grad=True),)),
     errors.DTypeError, ["gradcheck", "float64"]),
    ("unknown dtype", lambda: shendu.zeros(2, dtype="nonsense"), errors.DTypeError, ["dtype", "nonsense"]),
    ("einsum operands", lambda: shendu.einsum("ij,jk->ik", t23()), errors.ShenduError, ["einsum"]),
    ("expand bad", lambda: t23().expand(4, 3), errors.ShapeError, ["expand", "(2, 3)", "(4, 3)"]),
]


@pytest.mark.parametrize("name,call,exc,fragments", CASES, ids=[c[0] for c in CASES])
def test_misuse_raises_clear_error(name, call, exc, fragments):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{name}: {frag!r} not in message {msg!r}"
    assert isinstance(info.value, errors.ShenduError)


def test_errors_are_also_builtin_types():
    assert issubclass(errors.ShapeError, ValueError)
    assert issubclass(errors.DTypeError, TypeError)
    assert issubclass(errors.IndexOutOfRangeError, IndexError)
    assert issubclass(errors.AutogradError, RuntimeError)
    assert len(CASES) >= 20
    np.testing.assert_equal(len({c[0] for c in CASES}), len(CASES))
