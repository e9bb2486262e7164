"""The device seam: which array module an op should use, the default dtype, and the library's RNG.

Every op asks ``xp = get_array_module(x)`` instead of naming NumPy, so CuPy arrays can flow through
the same op code later. Only this module decides what a "float tensor by default" is and owns the
random generator that :func:`shendu.manual_seed` reseeds.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "get_array_module",
    "get_default_dtype",
    "set_default_dtype",
    "default_generator",
    "manual_seed",
    "initial_seed",
    "Generator",
]


def get_array_module(*arrays):
    """Return the array module (``numpy``, or ``cupy`` when given CuPy arrays) for ``arrays``.

    >>> import numpy as np
    >>> get_array_module(np.zeros(3)) is np
    True
    """
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy  # only reached when the caller already holds CuPy arrays

            return cupy
    return np


_default_dtype = np.dtype(np.float32)


def get_default_dtype() -> np.dtype:
    """The dtype given to tensors built from Python floats (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the floating dtype used for new tensors built from Python floats (float32 or float64)."""
    global _default_dtype
    d = np.dtype(dtype)
    if d not in (np.float32, np.float64):
        from shendu.errors import DTypeError

        raise DTypeError(f"set_default_dtype: got {d}, expected float32 or float64")
    _default_dtype = d


class Generator:
    """A seeded random source, like ``torch.Generator``: ``Generator().manual_seed(0)``.

    Wraps a NumPy ``Generator`` (PCG64); its state can be saved and restored exactly.
    """

    def __init__(self, seed: int | None = None):
        self._seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        self.rng = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        self.rng = np.random.Generator(np.random.PCG64(self._seed))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        """A JSON-serialisable snapshot of the generator."""
        return {"seed": self._seed, "bit_generator": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self._seed = int(state["seed"])
        self.rng.bit_generator.state = state["bit_generator"]


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Seed all randomness shendu owns (tensor factories, dropout, init, augmentation, shuffles)."""
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    return default_generator.initial_seed()


def rng(generator: Generator | None = None) -> np.random.Generator:
    """The NumPy generator to draw from: ``generator``'s if given, else the default one."""
    return (generator or default_generator).rng
