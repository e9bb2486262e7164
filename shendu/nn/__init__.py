"""Neural-network building blocks: Module, Parameter, containers, layers, and ``nn.init``.

``shendu.nn.functional`` is :mod:`shendu.functional`.
"""

from shendu.nn import functional  # noqa: F401
from shendu.nn import init, utils  # noqa: F401
from shendu.nn.activation import *  # noqa: F401,F403
from shendu.nn.containers import *  # noqa: F401,F403
from shendu.nn.conv import *  # noqa: F401,F403
from shendu.nn.layers import *  # noqa: F401,F403
from shendu.nn.loss import *  # noqa: F401,F403
from shendu.nn.module import *  # noqa: F401,F403
from shendu.nn.normalization import *  # noqa: F401,F403
from shendu.nn.pooling import *  # noqa: F401,F403
from shendu.nn.rnn import *  # noqa: F401,F403
from shendu.nn.regularization import *  # noqa: F401,F403
