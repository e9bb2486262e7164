"""The op registry: one :class:`OpSpec` per op, which the generic tests in ``tests/test_opspecs.py`` run.

A spec says how to call the op — ``op(lib, *args, **kwargs)`` with ``lib`` either ``shendu`` or
``torch``, since shendu keeps PyTorch's names — and gives sample inputs as float64 NumPy arrays.
The generic tests compare each sample's forward (float32 and float64) and backward (with a random
cotangent) against PyTorch, run the float64 numerical gradient check, feed non-contiguous inputs,
check dtypes are kept, run backward twice, and check that the error inputs raise.

Ops PyTorch lacks give ``ref``: a plain float64 NumPy reference written in the spec file.

Each op family has its own file here; this module gathers them. ``python -m tests.opspecs`` prints
the number of ops and of generated tests.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import numpy as np

FAMILIES = ["elementwise", "reduce", "shape", "indexing", "linalg", "linear", "activation", "loss", "dropout", "conv",
            "pooling", "normalization", "vision", "rnn"]


@dataclasses.dataclass
class Sample:
    """One call of the op. Float arrays become tensors that require grad (unless ``grad`` says which);
    integer/bool arrays become index/mask tensors; lists of arrays become lists of tensors; anything
    else is passed as it is."""

    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)
    grad: tuple | None = None  # indices of args to differentiate; None = every float array
    desc: str = ""


@dataclasses.dataclass
class ErrorCase:
    """Inputs that must raise ``exc`` with a message containing ``match``."""

    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)
    exc: type = Exception
    match: str = ""


@dataclasses.dataclass
class OpSpec:
    name: str
    op: Callable  # op(lib, *args, **kwargs)
    samples: list
    torch_op: Callable | None = None  # when torch spells the call differently
    ref: Callable | None = None  # float64 NumPy reference for ops torch lacks
    errors: list = dataclasses.field(default_factory=list)
    differentiable: bool = True
    gradcheck: bool = True
    rtol32: float = 1e-5
    atol32: float = 1e-6
    grad_rtol32: float = 1e-4
    grad_atol32: float = 1e-5

    @property
    def has_torch(self) -> bool:
        return self.ref is None


# ----------------------------------------------------------------------------------- sample helpers
_rng = np.random.default_rng(1234)


def r(*shape, low=-2.0, high=2.0):
    """Uniform float64 values in [low, high)."""
    return _rng.uniform(low, high, shape)


def pos(*shape, low=0.5, high=2.0):
    """Positive values (for log, sqrt, ...)."""
    return _rng.uniform(low, high, shape)


def distinct(*shape, spacing=0.1):
    """Values that are pairwise at least ``spacing`` apart (no ties for max/sort)."""
    n = int(np.prod(shape)) if shape else 1
    return (_rng.permutation(n) * spacing - n * spacing / 2 + _rng.uniform(0, spacing / 4)).reshape(shape)


def idx(high, *shape):
    return _rng.integers(0, high, shape).astype(np.int64)


def mask(*shape, p=0.5):
    return _rng.random(shape) < p


def all_specs() -> list:
    specs = []
    for fam in FAMILIES:
        specs.extend(importlib.import_module(f"tests.opspecs.{fam}").SPECS)
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate op specs: {dup}"
    return specs


def count_tests(specs) -> dict:
    """How many generic test cases the registry generates (mirrors tests/test_opspecs.py)."""
    n_samples = sum(len(s.samples) for s in specs)
    diff = [s for s in specs if s.differentiable]
    n_diff = sum(len(s.samples) for s in diff)
    torch_specs = [s for s in specs if s.has_torch]
    return {
        "ops": len(specs),
        "ops_checked_against_torch": len(torch_specs),
        "ops_with_loop_reference": len(specs) - len(torch_specs),
        "samples": n_samples,
        "forward": 2 * n_samples,
        "backward": 2 * n_diff,
        "gradcheck": sum(len(s.samples) for s in diff if s.gradcheck),
        "noncontiguous": n_samples,
        "dtype_kept": n_samples,
        "backward_twice": n_diff,
        "errors": sum(len(s.errors) for s in specs),
    }

