"""`shendu train --task vae` through its module (tiny VAEs on the embedded digits scaled to 28x28): the run
folder, the figures (the 2-D latent map), the test ELBO per epoch, and an exact resume."""

import argparse
import json

import numpy as np
import pytest

from shendu.cli import task_gan, task_vae
from shendu.train import generative as gen
from shendu.train.checkpoint import load_checkpoint

TINY = {"dataset": "digits", "batch_size": 128, "latent_dim": 2, "hidden": 16, "fid_samples": 100}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    x, y, classes = gen.load_images("digits", train=True)
    net, mean, std = gen.train_classifier(x[:256], y[:256], batch_size=64, max_steps=3)
    path = tmp_path_factory.mktemp("clf") / "classifier"
    gen.save_classifier(path, net, "cnn_fmnist", mean, std, classes)
    return str(path)


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_figures_and_elbo(tmp_path, classifier, capsys):
    run = tmp_path / "vae"
    assert task_vae.train({**TINY, "epochs": 3, "fid_classifier": classifier}, str(run), False) == 0
    out = capsys.readouterr().out
    assert "epoch 3/3" in out and "test ELBO" in out
    for name in ("samples/epoch_001.png", "reconstructions/epoch_003.png", "losses.png", "latent_map.png",
                 "latent_scatter.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG", name
    assert json.loads((run / "config.json").read_text())["epochs"] == 3  # what --resume reads
    rows = _rows(run)
    assert [r["step"] for r in rows] == [12, 24, 36]  # ceil(1438 / 128)
    for r in rows:
        assert r["test_elbo"] == pytest.approx(-(r["test_recon"] + r["test_kl"]))
        assert r["test_kl"] >= 0 and "fid_like" in r and "confidence" in r
    assert rows[-1]["test_elbo"] > rows[0]["test_elbo"]  # it learns
    assert -784 * np.log(2) < rows[0]["test_elbo"] < 0    # better than coin flips per binary pixel
    state = load_checkpoint(run / "checkpoints" / "best", restore_rng=False)
    assert state["extra"]["best"] == max(r["test_elbo"] for r in rows)
    # `shendu sample` (added by task_gan.add_commands) also reads VAE runs
    parser = argparse.ArgumentParser()
    task_gan.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sample", str(run), "--n", "5", "--checkpoint", "best"])
    assert args.func(args) == 0
    assert (run / "sample_seed0.png").read_bytes()[:4] == b"\x89PNG"


def test_conv_vae_and_threshold_without_score(tmp_path):
    run = tmp_path / "conv"
    cfg = {**TINY, "model": "vae_conv", "latent_dim": 4, "binarize": "threshold", "fid_samples": 0, "epochs": 1}
    assert task_vae.train(cfg, str(run), False) == 0
    row = _rows(run)[0]
    assert "fid_like" not in row and np.isfinite(row["test_elbo"])
    assert not (run / "latent_map.png").exists()  # only for a 2-D latent space


def test_resume_is_exact(tmp_path, classifier):
    cfg = {**TINY, "epochs": 2, "fid_classifier": classifier}
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert task_vae.train(cfg, str(straight), False) == 0
    assert task_vae.train({**cfg, "max_steps": 17}, str(split), False) == 0
    assert task_vae.train(cfg, str(split), True) == 0
    a = load_checkpoint(straight / "checkpoints" / "last", restore_rng=False)["model"]
    b = load_checkpoint(split / "checkpoints" / "last", restore_rng=False)["model"]
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    assert _rows(split)[1]["test_elbo"] == _rows(straight)[1]["test_elbo"]


def test_errors(tmp_path):
    with pytest.raises(SystemExit, match="nothing to resume"):
        task_vae.train(dict(TINY), str(tmp_path / "none"), True)
    with pytest.raises(SystemExit, match="unknown model"):
        task_vae.train({**TINY, "model": "vqvae", "fid_samples": 0}, str(tmp_path / "bad"), False)
    with pytest.raises(SystemExit, match="binarize"):
        task_vae.train({**TINY, "binarize": "dither", "fid_samples": 0}, str(tmp_path / "bad2"), False)
