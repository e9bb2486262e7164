"""Ctrl-C during fit: the first saves a checkpoint and returns cleanly, the second exits at once."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from shendu.io.tree import load_tree

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")


def _start(out_dir, pause):
    return subprocess.Popen([sys.executable, "-u", "-m", "tests.train.helpers", "sigint", str(out_dir), str(pause)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc, word, timeout=30):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if word in line:
            return seen
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"never saw {word!r}; output: {''.join(seen)} {proc.stderr.read()}")


def test_first_ctrl_c_saves_and_stops_cleanly(tmp_path):
    proc = _start(tmp_path, pause=0)
    _wait_for(proc, "READY")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Interrupted: finishing this step" in out
    assert "RETURNED interrupted True reason interrupted by Ctrl-C" in out
    assert "HANDLER RESTORED True" in out
    tree = load_tree(tmp_path / "checkpoints" / "last")
    assert tree["step"] >= 1


def test_second_ctrl_c_exits_at_once(tmp_path):
    proc = _start(tmp_path, pause=60)
    _wait_for(proc, "READY")
    proc.send_signal(signal.SIGINT)
    _wait_for(proc, "SAVING")  # the first Ctrl-C is being handled: the (slow) save has started
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10  # not the 60 s the save would take
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert "RETURNED" not in out
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers
