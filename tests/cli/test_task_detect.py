"""``--task detect``: the train entry (tiny settings), resume, and the ``shendu detect`` command."""

import argparse
import json
import os

import numpy as np
import pytest

from shendu.cli import task_detect

TINY = {"image_size": 32, "batch_size": 4, "steps_per_epoch": 2, "epochs": 1, "train_scenes": 64, "val_scenes": 4,
        "test_scenes": 4, "svm_scenes": 6}


def _rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_registry_modules_have_the_interface():
    for name, module in task_detect.DETECTORS.items():
        for fn in ("build_model", "train_step", "predict"):
            assert callable(getattr(module, fn)), (name, fn)


@pytest.mark.parametrize("model", ["ssd", "localize", "faster_rcnn", "rcnn"])
def test_train_writes_a_run_folder(tmp_path, model, capsys):
    run = str(tmp_path / model)
    assert task_detect.train({**TINY, "model": model}, run, resume=False) == 0
    for name in ("config.json", "metrics.jsonl", "test_metrics.json", "curves.png", "detections.png"):
        assert os.path.exists(os.path.join(run, name)), name
    assert os.path.exists(os.path.join(run, "checkpoints", "best", "state.json"))
    row = _rows(run)[0]
    assert row["epoch"] == 1 and row["step"] == 2 and np.isfinite(row["loss"]) and 0 <= row["val_map_50"] <= 1
    with open(os.path.join(run, "test_metrics.json")) as f:
        test = json.load(f)
    assert {"map_50", "map_50_voc07", "map", "map_75", "seconds_per_image"} <= set(test)
    if model == "localize":
        assert {"accuracy", "mean_iou"} <= set(test)
    out = capsys.readouterr().out
    assert "epoch 1:" in out and "test mAP@0.5" in out
    if model == "rcnn":  # the SVM stage ran after fine-tuning and its fit is in the best checkpoint
        assert "post-training on 6 scenes" in out
        _, reloaded, _ = task_detect.load_detector(run)
        assert reloaded.svm_fitted.numpy().tolist() == [1.0]


def test_resume_and_detect_command(tmp_path, capsys):
    from PIL import Image

    from shendu.data.datasets.scenes import FashionScenes

    run = str(tmp_path / "yolo")
    assert task_detect.train({**TINY, "model": "yolo"}, run, resume=False) == 0
    assert task_detect.train({**TINY, "model": "yolo", "epochs": 2}, run, resume=True) == 0
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["step"] == 4
    assert "resuming" in capsys.readouterr().out

    # the command: an image twice the canvas size comes back with boxes in its own pixel units
    image, _ = FashionScenes("test", size=64, length=1)[0]
    png = str(tmp_path / "scene.png")
    Image.fromarray((image[0] * 255).astype(np.uint8)).save(png)
    parser = argparse.ArgumentParser()
    task_detect.add_commands(parser.add_subparsers(dest="command"))
    out_png = str(tmp_path / "out.png")
    args = parser.parse_args(["detect", run, png, "--out", out_png, "--score-thresh", "0.0"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert out_png in printed and "box" in printed
    assert Image.open(out_png).size == (32 * 4, 32 * 4)


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown model 'retinanet'"):
        task_detect.train({**TINY, "model": "retinanet"}, str(tmp_path / "x"), resume=False)


def test_model_options_reach_the_constructor(tmp_path):
    run = str(tmp_path / "narrow")
    assert task_detect.train({**TINY, "model": "ssd", "model_options": {"width": 8}}, run, resume=False) == 0
    _, model, cfg = task_detect.load_detector(run)  # rebuilt from the saved config, so the weights fit
    assert cfg["model_options"] == {"width": 8}
    assert model.backbone[0].out_channels == 4
    with pytest.raises(SystemExit, match="model_options {'depth': 3} do not fit ssd"):
        task_detect.train({**TINY, "model": "ssd", "model_options": {"depth": 3}}, str(tmp_path / "x"), resume=False)
    assert not (tmp_path / "x").exists()
