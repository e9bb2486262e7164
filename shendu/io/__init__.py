"""Files on disk: safetensors weights (no pickle anywhere) and atomic writes.

>>> import os, tempfile, numpy as np
>>> from shendu import io
>>> p = os.path.join(tempfile.mkdtemp(), "t.safetensors")
>>> io.save_file({"a": np.ones(2, np.float32)}, p)
>>> io.load_file(p)["a"]
array([1., 1.], dtype=float32)
"""

from shendu.io.atomic import atomic_append, atomic_write, fsync_dir  # noqa: F401
from shendu.io.safetensors import (  # noqa: F401
                                   DTYPES,
                                   SafetensorsError,
                                   load,
                                   load_file,
                                   load_state_dict,
                                   read_metadata,
                                   save,
                                   save_file,
                                   save_state_dict,
)

__all__ = ["atomic_write", "atomic_append", "fsync_dir", "save_file", "load_file", "save", "load",
           "read_metadata", "save_state_dict", "load_state_dict", "SafetensorsError", "DTYPES"]
