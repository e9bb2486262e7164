"""``shendu.nn.functional``: the same functions as :mod:`shendu.functional` (PyTorch spelling)."""

from shendu.functional import *  # noqa: F401,F403
