"""shendu (深度, "depth"): deep learning from scratch on NumPy, with a PyTorch-shaped API.

>>> import shendu
>>> x = shendu.randn(4, 3, requires_grad=True)
>>> loss = (x ** 2).mean()
>>> loss.backward()
>>> x.grad.shape
(4, 3)
"""

import numpy as _np

from shendu import backend, errors  # noqa: F401
from shendu.autograd import (Function, Tensor, enable_grad, is_grad_enabled, no_grad,  # noqa: F401
                             set_grad_enabled)
from shendu import autograd  # noqa: F401
from shendu.backend import Generator, get_default_dtype, initial_seed, manual_seed, set_default_dtype  # noqa: F401
from shendu import functional  # noqa: F401
from shendu.functional import *  # noqa: F401,F403
from shendu import nn, optim  # noqa: F401,E402
from shendu.threads import get_num_threads, set_num_threads  # noqa: F401
from shendu import memory as _memory
from shendu import threads as _threads

_memory._from_environment()
_threads._from_environment()

__version__ = "0.1.0"

float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
float16 = _np.dtype(_np.float16)
int64 = _np.dtype(_np.int64)
int32 = _np.dtype(_np.int32)
int16 = _np.dtype(_np.int16)
int8 = _np.dtype(_np.int8)
uint8 = _np.dtype(_np.uint8)
bool = _np.dtype(_np.bool_)  # noqa: A001 - torch.bool
float = float32  # noqa: A001 - torch.float
double = float64
long = int64
