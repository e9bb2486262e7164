"""`shendu train --task gan` through its module (tiny DCGAN on the embedded digits scaled to 28x28): the run
folder, the figures, the metrics, and an exact resume from inside an epoch."""

import argparse
import json

import numpy as np
import pytest

from shendu.cli import task_gan
from shendu.train import generative as gen
from shendu.train.checkpoint import load_checkpoint

TINY = {"dataset": "digits", "batch_size": 128, "latent_dim": 8, "width": 4, "fid_samples": 100,
        "interpolation_pairs": 2, "interpolation_steps": 4}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A barely trained classifier, so the FID-like score is computed without training one per run."""
    x, y, classes = gen.load_images("digits", train=True)
    net, mean, std = gen.train_classifier(x[:256], y[:256], batch_size=64, max_steps=3)
    path = tmp_path_factory.mktemp("clf") / "classifier"
    gen.save_classifier(path, net, "cnn_fmnist", mean, std, classes)
    return str(path)


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run, which="last"):
    return load_checkpoint(run / "checkpoints" / which, restore_rng=False)["model"]


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, classifier):
    run = tmp_path_factory.mktemp("runs") / "gan"
    assert task_gan.train({**TINY, "epochs": 2, "fid_classifier": classifier}, str(run), False) == 0
    return run


def test_run_folder_figures_and_metrics(gan_run):
    run = gan_run
    for name in ("samples/epoch_001.png", "samples/epoch_002.png", "losses.png", "interpolation.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG", name
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [11, 22]  # 1438 // 128 = 11
    for r in rows:
        assert {"loss_d", "loss_g", "d_real", "d_fake", "fid_like", "confidence", "is_like", "fid_like_real"} <= set(r)
        assert r["fid_like"] > 0 and 0.1 <= r["confidence"] <= 1
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"] == "gan" and cfg["lr"] == 2e-4 and cfg["beta1"] == 0.5 and cfg["real_label"] == 0.9
    state = load_checkpoint(run / "checkpoints" / "last", restore_rng=False)
    assert state["epoch"] == 2 and state["step"] == 22
    prefixes = {k.split(".")[0] for k in state["model"]}
    assert prefixes == {"generator", "discriminator"}
    assert state["optimizer"]["state"] and state["extra"]["optimizer_d"]["state"]  # both Adams' moments
    assert (run / "checkpoints" / "best" / "state.json").exists()


def test_resume_from_inside_an_epoch_is_exact(tmp_path, classifier, capsys):
    cfg = {**TINY, "epochs": 2, "fid_classifier": classifier}
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert task_gan.train(cfg, str(straight), False) == 0
    assert task_gan.train({**cfg, "max_steps": 15}, str(split), False) == 0  # stops 4 steps into epoch 2
    assert "stopped at step 15" in capsys.readouterr().out
    assert len(_rows(split)) == 1
    assert task_gan.train({**cfg, "lr": 0.5, "width": 6}, str(split), True) == 0  # frozen keys come from the run
    assert "resuming" in capsys.readouterr().out
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    assert _rows(split)[1]["fid_like"] == _rows(straight)[1]["fid_like"]
    assert json.loads((split / "config.json").read_text())["lr"] == 2e-4


def test_sample_command(gan_run, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    task_gan.add_commands(parser.add_subparsers(dest="command"))
    out = tmp_path / "grid.png"
    args = parser.parse_args(["sample", str(gan_run), "--n", "10", "--seed", "3", "--out", str(out)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit, match="no config.json"):
        args.func(parser.parse_args(["sample", str(tmp_path)]))


def test_errors(tmp_path):
    with pytest.raises(SystemExit, match="nothing to resume"):
        task_gan.train(dict(TINY), str(tmp_path / "none"), True)
    with pytest.raises(SystemExit, match="unknown model"):
        task_gan.train({**TINY, "model": "wgan", "fid_samples": 0}, str(tmp_path / "bad"), False)
    assert set(TINY) <= set(task_gan.DEFAULTS)
