"""Fixtures shared by the op tests."""

import pytest

from shendu.ops.kernels import parallel, team


@pytest.fixture
def two_threads():
    """Two kernel threads with numba's OpenMP team available (the team's kernels are what is tested)."""
    before = parallel.num_threads()
    parallel.set_num_threads(2)
    if not team.available():
        parallel.set_num_threads(before)
        pytest.skip("numba's threading layer is not thread-safe here (no OpenMP or TBB): the pool runs instead")
    yield
    parallel.set_num_threads(before)
