"""shendu.set_num_threads bounds every compute pool; SHENDU_NUM_THREADS does it at import."""

import os
import subprocess
import sys

import pytest

import shendu
from shendu.errors import ArgumentError

PROBE = ("import shendu, numba; from threadpoolctl import threadpool_info; "
         "print(shendu.get_num_threads(), numba.get_num_threads(), max(i['num_threads'] for i in threadpool_info()))")


def _probe(env_value):
    env = {**os.environ, "SHENDU_NUM_THREADS": env_value}
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)


def test_environment_variable_makes_every_pool_single_threaded():
    done = _probe("1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "1"]


def test_bad_environment_value_names_the_variable():
    done = _probe("two")
    assert done.returncode != 0 and "SHENDU_NUM_THREADS must be a positive integer, got 'two'" in done.stderr


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad):
    before = shendu.get_num_threads()
    with pytest.raises(ArgumentError, match="n must be a positive integer"):
        shendu.set_num_threads(bad)
    assert shendu.get_num_threads() == before
