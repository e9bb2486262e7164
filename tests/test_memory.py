"""shendu keeps freed array memory for reuse (glibc): a freed 40 MB array's pages serve the next one."""

import os
import platform
import subprocess
import sys

import pytest

from shendu.memory import keep_freed_memory

# Allocates, fills and frees a 40 MB array ten times (above glibc's largest self-set mmap threshold,
# 32 MB, so by default each one is a fresh mapping), and prints the minor page faults this took.
PROBE = ("import resource, numpy as np, shendu\n"
         "def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
         "a = np.ones(10 << 20, np.float32); del a\n"
         "before = faults()\n"
         "for _ in range(10):\n"
         "    a = np.ones(10 << 20, np.float32); del a\n"
         "print(faults() - before)\n")


def _faults(env_value):
    env = {**os.environ, "SHENDU_KEEP_FREED_MEMORY": env_value}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's malloc (Linux with glibc)")
def test_freed_arrays_are_reused_without_page_faults():
    assert keep_freed_memory()  # glibc takes both settings
    kept, default = _faults("1"), _faults("0")
    assert default >= 100  # 10 fresh mappings of 40 MB: thousands of 4 kB pages, or 200 huge pages
    assert kept <= default // 20


def test_bad_environment_value_names_the_variable():
    env = {**os.environ, "SHENDU_KEEP_FREED_MEMORY": "yes"}
    done = subprocess.run([sys.executable, "-c", "import shendu"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "SHENDU_KEEP_FREED_MEMORY must be 0 or 1, got 'yes'" in done.stderr
