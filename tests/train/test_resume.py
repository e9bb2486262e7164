"""Resume is exact: stop after k steps, continue in a NEW process, and end bit-identical to an
uninterrupted run (dropout, a shuffled loader, Adam and a per-step schedule all carry state)."""

import csv
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import shendu
from shendu import io
from shendu.train import LRSchedulerCallback
from tests.train import helpers

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("k", [7, 10])  # 7: mid-epoch (epoch 2, batch 2); 10: exactly at an epoch end
def test_resume_in_new_process_is_bit_identical(tmp_path, k):
    full, full_hist = helpers.run(str(tmp_path / "full"))
    part_dir = tmp_path / "part"
    part, part_hist = helpers.run(str(part_dir), max_steps=k)
    assert part_hist.stop_reason == f"reached max_steps={k}"
    assert (part_dir / "checkpoints" / "last" / "tensors.safetensors").is_file()
    assert not np.array_equal(part[0].weight.data, full[0].weight.data)

    weights = tmp_path / "resumed.safetensors"
    proc = subprocess.run([sys.executable, "-m", "tests.train.helpers", "resume", str(part_dir), str(weights)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    resumed = io.load_file(weights)
    for key, value in full.state_dict().items():
        assert resumed[key].dtype == value.data.dtype
        np.testing.assert_array_equal(resumed[key], value.data, err_msg=key)  # bit-for-bit
    assert f"EPOCHS {full_hist.epochs} LOSS {full_hist['loss'][-1]!r}" in proc.stdout
    # the metrics log has each epoch once, with the same figures as the uninterrupted run
    assert _csv(part_dir / "metrics.csv") == _csv(tmp_path / "full" / "metrics.csv")


def _csv(path):
    """The metrics log without the timing columns."""
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in ("time", "images_per_s")} for row in csv.DictReader(f)]

def test_resume_in_process_matches_history(tmp_path):
    _, full_hist = helpers.run(str(tmp_path / "full"))
    helpers.run(str(tmp_path / "part"), max_steps=3)
    _, hist = helpers.run(str(tmp_path / "part"), resume_from=str(tmp_path / "part"), init_seed=5)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert hist[key] == full_hist[key], key
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == full_hist.epochs


def test_checkpoint_holds_everything(tmp_path):
    helpers.run(str(tmp_path), max_steps=3)
    tree = shendu.io.tree.load_tree(tmp_path / "checkpoints" / "last")
    assert tree["epoch"] == 0 and tree["step"] == 3 and tree["extra"]["batch"] == 3
    assert set(tree["model"]) == {"0.weight", "0.bias", "3.weight", "3.bias"}
    assert set(tree["optimizer"]["state"][0]) >= {"exp_avg", "exp_avg_sq", "step"}
    assert tree["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert tree["loader"]["epoch"] == 0 and tree["loader"]["position"] == 3
    assert tree["loader"]["generator"]["seed"] == 7  # the shuffle generator as the epoch began
    assert set(tree["rng"]) == {"shendu", "numpy", "python"}
    assert any(k.endswith("LRSchedulerCallback") for k in tree["callbacks"])
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["last"]


def _cosine_callback(T_max, follow_length, lr=0.1):
    from shendu import nn, optim
    from shendu.optim.lr_scheduler import CosineAnnealingLR

    opt = optim.SGD(nn.Linear(2, 1).parameters(), lr=lr)
    return LRSchedulerCallback(CosineAnnealingLR(opt, T_max=T_max), "step", follow_length=follow_length)


def test_a_resumed_cosine_schedule_follows_its_new_length():
    import math

    done = _cosine_callback(10, True)
    for _ in range(10):  # the whole 10-step schedule: lr reaches 0
        done.scheduler.optimizer.step()
        done.on_batch_end(None, {})
    assert done.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    longer = _cosine_callback(20, True)
    longer.load_state_dict(done.state_dict())
    assert longer.scheduler.T_max == 20 and longer.scheduler.last_epoch == 10
    for t in range(10, 21):  # on the 20-step cosine from step 10: lr0 / 2 (a warm restart) down to 0
        lr = longer.scheduler.optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(0.05 * (1 + math.cos(math.pi * t / 20)))
        longer.scheduler.optimizer.step()
        longer.on_batch_end(None, {})
    kept = _cosine_callback(20, False)  # default: the checkpoint's length wins, as torch's load_state_dict
    kept.load_state_dict(done.state_dict())
    assert kept.scheduler.T_max == 10
