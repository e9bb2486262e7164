"""The public stateless API, ``import shendu.functional as F``: every op as a function.

Each function is defined, with its formula, shapes and example, in the file of its op family under
:mod:`shendu.ops`; this module only gathers them. ``shendu.nn.functional`` is the same module.
"""

from shendu.ops.activation import *  # noqa: F401,F403
from shendu.ops.conv import *  # noqa: F401,F403
from shendu.ops.creation import *  # noqa: F401,F403
from shendu.ops.dropout import *  # noqa: F401,F403
from shendu.ops.elementwise import *  # noqa: F401,F403
from shendu.ops.indexing import *  # noqa: F401,F403
from shendu.ops.linalg import *  # noqa: F401,F403
from shendu.ops.linear import *  # noqa: F401,F403
from shendu.ops.loss import *  # noqa: F401,F403
from shendu.ops.normalization import *  # noqa: F401,F403
from shendu.ops.pooling import *  # noqa: F401,F403
from shendu.ops.reduce import *  # noqa: F401,F403
from shendu.ops.rnn import *  # noqa: F401,F403
from shendu.ops.shape import *  # noqa: F401,F403
