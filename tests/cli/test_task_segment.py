"""``shendu train --task segment`` and ``shendu segment``, called directly with tiny settings."""

import argparse
import json
import os

import numpy as np
import pytest

from shendu.cli import task_segment
from shendu.data.datasets import mnist
from shendu.errors import DataError


def _fmnist_present() -> bool:
    try:
        mnist.find_files("fashion-mnist", "train")
        return True
    except DataError:
        return False


pytestmark = pytest.mark.skipif(not _fmnist_present(), reason="needs the Fashion-MNIST files")

TINY = dict(image_size=32, scale_min=8, scale_max=16, max_objects=2, train_scenes=16, batch_size=8, test_scenes=8,
            epochs=1)


def _rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _predict_from_pixels(model, images, flip=False, scales=(1.0,)):
    """Stands in for ``task_segment.predict``, as a tiny run predicts only background: classes from the pixels,
    with item/background and class errors, so that which scenes are scored shows in the figures."""
    x = images[:, 0]
    return np.where(x > 0.35, (x * 37).astype(np.int64) % 10 + 1, 0)


@pytest.fixture(scope="module")
def fcn_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("seg") / "run")
    cfg = {**task_segment.DEFAULTS, **TINY, "model": "fcn8s"}
    assert task_segment.train(cfg, run_dir, resume=False) == 0
    return run_dir, cfg


def test_train_writes_metrics_checkpoints_and_figures(fcn_run):
    run_dir, _ = fcn_run
    for name in ("metrics.jsonl", "config.json", "segmentation.png", "curves.png", "checkpoints/last/state.json",
                 "checkpoints/best/state.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    (row,) = _rows(run_dir)
    assert row["epoch"] == 1 and row["step"] == 2 and row["test_scenes"] == 8
    for key in ("test_pixel_accuracy", "test_mean_accuracy", "test_mean_iou", "test_frequency_weighted_iou"):
        assert 0.0 <= row[key] <= 1.0
    assert len(row["test_iou"]) == 11 and np.isfinite(row["loss"]) and row["test_seconds_per_image"] > 0
    from PIL import Image

    assert Image.open(os.path.join(run_dir, "segmentation.png")).size[0] == 3 * 32 * 3  # image | truth | pred


def test_resume_continues_after_the_last_epoch(fcn_run, capsys):
    run_dir, cfg = fcn_run
    assert task_segment.train({**cfg, "epochs": 2}, run_dir, resume=True) == 0
    assert "resuming" in capsys.readouterr().out
    rows = _rows(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["step"] == 4


def test_eval_rescores_the_last_epoch_and_flip_averages_mirrored_probabilities(fcn_run, capsys, tmp_path):
    import shendu
    import shendu.functional as F
    from shendu.cli import main

    run_dir, _ = fcn_run
    assert main(["eval", run_dir]) == 0
    plain = json.loads(capsys.readouterr().out)
    last = _rows(run_dir)[-1]
    assert plain["mean_iou"] == pytest.approx(last["test_mean_iou"], abs=1e-12) and plain["flip"] is False
    assert list(plain["iou"])[:2] == ["background", "T-shirt/top"] and len(plain["accuracy"]) == 11
    assert main(["eval", run_dir, "--flip"]) == 0
    assert json.loads(capsys.readouterr().out)["flip"] is True

    model, cfg = task_segment.load_segmenter(run_dir)
    images = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    mirrored = np.ascontiguousarray(images[..., ::-1])
    with shendu.no_grad():
        probs = [F.softmax(model(shendu.tensor(x)), 1).numpy() for x in (images, mirrored)]
    want = (probs[0] + probs[1][..., ::-1]).argmax(1)
    np.testing.assert_array_equal(task_segment.predict(model, images, flip=True), want)
    np.testing.assert_array_equal(task_segment.predict(model, mirrored, flip=True), want[..., ::-1])
    (tmp_path / "config.json").write_text(json.dumps({"task": "classify"}))
    for flag in (["--flip"], ["--split", "train"], ["--scenes", "5"]):
        with pytest.raises(SystemExit, match="--flip, --scales, --split and --scenes are for segmentation runs"):
            main(["eval", str(tmp_path), *flag])


def test_eval_scores_the_scenes_and_split_asked_for(fcn_run, capsys, monkeypatch):
    from shendu.cli import main
    from shendu.data.datasets.scenes import FashionScenes
    from shendu.vision.metrics.segmentation import mean_iou, segmentation_confusion_matrix

    run_dir, cfg = fcn_run

    monkeypatch.setattr(task_segment, "predict", _predict_from_pixels)
    got = {}
    for split in ("train", "test"):
        assert main(["eval", run_dir, "--split", split, "--scenes", "5"]) == 0
        got[split] = json.loads(capsys.readouterr().out)
        assert got[split]["split"] == split and got[split]["scenes"] == 5
        # reference: the split's first 5 scenes drawn directly, scored with one confusion matrix
        scenes = FashionScenes(split, size=cfg["image_size"], max_objects=cfg["max_objects"], seed=cfg["seed"],
                               scale=(cfg["scale_min"], cfg["scale_max"]), length=5).generate(np.arange(5))
        want = mean_iou(segmentation_confusion_matrix(_predict_from_pixels(None, scenes["images"]),
                                                      scenes["masks"], 11))
        assert got[split]["mean_iou"] == pytest.approx(want, abs=1e-12)
    assert got["train"]["mean_iou"] != got["test"]["mean_iou"]
    for bad in ({"scenes": 0}, {"scenes": 2.5}, {"split": "val"}):
        with pytest.raises(SystemExit, match="scenes is a whole number|split is 'train' or 'test'"):
            task_segment.evaluate_run(run_dir, **bad)


def test_multiscale_tta_averages_probabilities_of_resized_views(fcn_run, capsys):
    import torch
    import torch.nn.functional as TF

    import shendu
    from shendu.cli import main

    run_dir, _ = fcn_run
    model, _ = task_segment.load_segmenter(run_dir)
    images = np.random.default_rng(1).random((2, 1, 32, 32), dtype=np.float32)

    def view(side, mirror):  # the reference resizes with torch
        x = torch.from_numpy(np.ascontiguousarray(images[..., ::-1]) if mirror else images)
        x = TF.interpolate(x, size=(side, side), mode="bilinear", align_corners=False) if side != 32 else x
        with shendu.no_grad():
            logits = torch.from_numpy(model(shendu.tensor(x.numpy())).numpy())
        logits = TF.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False) if side != 32 else logits
        p = torch.softmax(logits, 1).numpy()
        return p[..., ::-1] if mirror else p

    # 1.7 * 32 = 54.4 rounds to the multiple of 32 nearest, 64; 0.4 * 32 rounds up to the minimum, 32
    want = np.mean([view(s, m) for s in (32, 64, 32) for m in (False, True)], 0)
    got = task_segment.predict_proba(model, images, flip=True, scales=(1.0, 1.7, 0.4))
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(task_segment.predict_proba(model, images, scales=(1.7,)), view(64, False), atol=1e-5)
    np.testing.assert_array_equal(task_segment.predict(model, images, flip=True, scales=(1.0, 1.7, 0.4)),
                                  got.argmax(1))
    assert main(["eval", run_dir, "--scales", "1,2"]) == 0
    assert json.loads(capsys.readouterr().out)["scales"] == [1.0, 2.0]
    for bad in ("0,1", "1,x", ""):
        with pytest.raises(SystemExit):
            main(["eval", run_dir, "--scales", bad])
        assert "--scales: expected positive factors" in capsys.readouterr().err


def test_segment_command_writes_a_coloured_mask(fcn_run, tmp_path, capsys):
    from PIL import Image

    run_dir, _ = fcn_run
    parser = argparse.ArgumentParser()
    task_segment.add_commands(parser.add_subparsers())
    canvas = np.zeros((32, 32), np.float32)
    canvas[8:24, 10:20] = 0.9
    np.save(tmp_path / "canvas.npy", canvas)
    Image.fromarray((canvas * 255).astype(np.uint8)).resize((50, 40)).save(tmp_path / "scene.png")
    for name in ("canvas.npy", "scene.png"):
        out = str(tmp_path / f"{name}.mask.png")
        args = parser.parse_args(["segment", run_dir, str(tmp_path / name), "--out", out])
        assert args.func(args) == 0
        mask = np.asarray(Image.open(out))
        assert mask.shape == (32, 32, 3) and mask.dtype == np.uint8
        assert set(map(tuple, mask.reshape(-1, 3))) <= set(map(tuple, task_segment.PALETTE.tolist()))
    assert " px" in capsys.readouterr().out
    model, _ = task_segment.load_segmenter(run_dir)
    args = parser.parse_args(["segment", run_dir, str(tmp_path / "canvas.npy"), "--out", out, "--flip",
                              "--scales", "1,2"])
    assert args.scales == (1.0, 2.0) and args.func(args) == 0
    want = task_segment.predict(model, canvas[None, None], flip=True, scales=(1.0, 2.0))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(out)), task_segment.colorize(want))


def test_sliding_window_model_trains_and_scores(tmp_path):
    cfg = {**task_segment.DEFAULTS, **TINY, "model": "sliding", "patch": 9, "patches_per_scene": 4,
           "sliding_test_scenes": 2}
    assert task_segment.train(cfg, str(tmp_path / "sliding"), resume=False) == 0
    (row,) = _rows(tmp_path / "sliding")
    assert row["test_scenes"] == 2 and 0 <= row["test_mean_iou"] <= 1


def test_model_options_reach_the_model_and_the_checkpoint(tmp_path):
    run = str(tmp_path / "wide")
    widths = [4, 8, 8, 8, 8]
    assert task_segment.train({**TINY, "model": "fcn16s", "model_options": {"widths": widths}}, run,
                              resume=False) == 0
    model, cfg = task_segment.load_segmenter(run)  # rebuilt from the saved config, then the weights loaded
    assert cfg["model_options"] == {"widths": widths}
    assert model.backbone.widths == tuple(widths)
    with pytest.raises(SystemExit, match=r"model_options \{'depth': 3\} do not fit fcn8s"):
        task_segment.train({**TINY, "model_options": {"depth": 3}}, str(tmp_path / "x"), resume=False)
    assert not (tmp_path / "x").exists()  # refused before the run folder is made


def test_refused_command_line_run_leaves_no_folder(tmp_path):
    from shendu.cli import main

    config = tmp_path / "bad.json"
    config.write_text(json.dumps({**TINY, "model_options": {"depth": 3}}))
    with pytest.raises(SystemExit, match="do not fit"):
        main(["train", "--task", "segment", "--config", str(config), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_bad_settings_stop_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="unknown model"):
        task_segment.train({**TINY, "model": "unet"}, str(tmp_path / "a"), resume=False)
    with pytest.raises(SystemExit, match="multiple of 32"):
        task_segment.train({**TINY, "image_size": 48}, str(tmp_path / "b"), resume=False)
    with pytest.raises(SystemExit, match="nothing to resume"):
        task_segment.train(dict(TINY), str(tmp_path / "c"), resume=True)
    assert not any((tmp_path / d).exists() for d in "abc")


def test_pretraining_trains_the_models_own_backbone_and_saves_it(tmp_path):
    from shendu.train import load_checkpoint

    cfg = {**task_segment.DEFAULTS, **TINY, "pretrain_epochs": 2, "pretrain_steps_per_epoch": 2}
    model = task_segment._build(cfg, 11)
    before = {k: v.numpy().copy() for k, v in model.backbone.state_dict().items()}
    task_segment._pretrain(model, cfg, str(tmp_path), str(tmp_path / "pretrained"))
    saved = load_checkpoint(str(tmp_path / "pretrained"), restore_rng=False)["model"]
    after = model.backbone.state_dict()
    assert set(saved) == {"backbone." + k for k in after} | {"fc.weight", "fc.bias"}
    assert saved["fc.weight"].shape == (10, model.backbone.widths[-1])  # items only: no background class
    for k, v in after.items():  # the FCN's own backbone was trained (shared, not copied) and saved
        np.testing.assert_array_equal(np.asarray(saved["backbone." + k]), v.numpy())
    assert any(not np.array_equal(before[k], after[k].numpy()) for k in after if k.endswith("weight"))
    rows = [json.loads(line) for line in open(tmp_path / "pretrain.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [2, 4]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and np.isfinite(r["loss"]) for r in rows)


def test_pretrain_head_fc_trains_the_fcns_own_fc6_and_fc7_with_the_backbone(tmp_path, capsys):
    from shendu.train import load_checkpoint

    cfg = {**task_segment.DEFAULTS, **TINY, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 2, "pretrain_head": "fc"}
    model = task_segment._build(cfg, 11)
    heads = {"fc6": model.fc6, "fc7": model.fc7}
    before = {name: {k: v.numpy().copy() for k, v in m.state_dict().items()} for name, m in heads.items()}
    task_segment._pretrain(model, cfg, str(tmp_path), str(tmp_path / "pretrained"))
    assert "pretraining the backbone with fc6 and fc7" in capsys.readouterr().out
    saved = load_checkpoint(str(tmp_path / "pretrained"), restore_rng=False)["model"]
    assert saved["fc.weight"].shape == (10, model.fc_width)  # the classifier reads fc7, not pool5
    for i, (name, module) in enumerate(heads.items()):  # shared, trained and saved under head.<i>
        after = module.state_dict()
        for k, v in after.items():
            np.testing.assert_array_equal(np.asarray(saved[f"head.{i}.{k}"]), v.numpy())
        assert any(not np.array_equal(before[name][k], after[k].numpy()) for k in after if k.endswith("weight"))
    assert not any(k.startswith("score") for k in saved)  # the score layers start fresh, as in the FCN paper


def test_erase_in_boxes_zeroes_one_rectangle_within_each_box():
    rng = np.random.default_rng(0)
    n = 4000
    images = np.ones((n, 1, 32, 32), np.float32)
    x0, y0 = rng.integers(0, 12, n), rng.integers(0, 12, n)
    boxes = np.stack([x0, y0, x0 + 20, y0 + 20], 1)
    out = task_segment.erase_in_boxes(rng, images, boxes, p=0.5)
    ys, xs, top, left = np.arange(32)[None, :, None], np.arange(32)[None, None, :], y0[:, None, None], x0[:, None, None]
    inside = (ys >= top) & (ys < top + 20) & (xs >= left) & (xs < left + 20)
    cut = out[:, 0] == 0
    assert not (cut & ~inside).any() and out.dtype == np.float32  # nothing outside the box changes
    hit = cut.any((1, 2))
    assert 0.47 < hit.mean() < 0.53  # p = 0.5
    share = cut[hit].sum((1, 2)) / 400.0  # of the 20 x 20 box: at most 40% (+ the pixel grid), clipped ones less
    assert share.max() <= 0.45 and 0.12 < share.mean() < 0.3
    rows, cols = np.nonzero(cut[np.flatnonzero(hit)[0]])
    assert rows.size == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # one solid rectangle
    assert np.array_equal(task_segment.erase_in_boxes(rng, images[:8], boxes[:8], p=0.0), images[:8])


def test_pretrain_erase_occludes_the_training_items_only(tmp_path, monkeypatch):
    calls = []
    erase = task_segment.erase_in_boxes

    def recording(rng, images, boxes, p):
        calls.append((images.shape, boxes.shape, p))
        return erase(rng, images, boxes, p)

    monkeypatch.setattr(task_segment, "erase_in_boxes", recording)
    cfg = {**task_segment.DEFAULTS, **TINY, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 2}
    task_segment._pretrain(task_segment._build(cfg, 11), cfg, str(tmp_path / "a"), str(tmp_path / "a" / "ck"))
    assert calls == []  # off by default: the runs made before the option draw the same numbers
    cfg["pretrain_erase"] = 0.5
    task_segment._pretrain(task_segment._build(cfg, 11), cfg, str(tmp_path / "b"), str(tmp_path / "b" / "ck"))
    assert calls == [((8, 1, 32, 32), (8, 4), 0.5)] * 2  # each training batch, with the items' boxes
    for bad in (1.5, -0.1, True, "half"):
        with pytest.raises(SystemExit, match="pretrain_erase is a probability in"):
            task_segment.train({**TINY, "pretrain_epochs": 1, "pretrain_erase": bad}, str(tmp_path / "c"), resume=False)
    assert not (tmp_path / "c").exists()


def test_epochs_longer_than_the_scenes_wrap_around_with_full_batches(tmp_path):
    order = np.arange(10)[::-1]
    assert task_segment._batch_indices(order, 2, 4).tolist() == [1, 0, 9, 8]
    run_dir = str(tmp_path / "run")
    assert task_segment.train({**TINY, "steps_per_epoch": 3}, run_dir, resume=False) == 0  # 3 x 8 of 16 scenes
    assert _rows(run_dir)[0]["step"] == 3


def test_item_loss_is_the_cross_entropy_for_one_item_and_a_per_class_bce_for_several():
    import torch

    import shendu

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 10)).astype(np.float32)
    one = np.array([[3], [1], [10], [7]])
    got = task_segment.item_loss(shendu.tensor(logits), one).item()
    assert got == pytest.approx(torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(one[:, 0] - 1))
                                .item(), rel=1e-6)
    several = np.array([[3, 5, 0], [2, 0, 0], [4, 4, 9], [10, 1, 6]])  # 0: empty slot; a class twice counts once
    present = np.zeros((4, 10), np.float32)
    for i, row in enumerate(several):
        present[i, row[row > 0] - 1] = 1
    want = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(present),
                                                                 reduction="sum").item() / 4
    x = shendu.tensor(logits, requires_grad=True)
    loss = task_segment.item_loss(x, several)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()  # d/dx = (sigmoid(x) - present) / B
    np.testing.assert_allclose(x.grad.numpy(), (1 / (1 + np.exp(-logits)) - present) / 4, rtol=1e-5, atol=1e-7)


def test_pretrain_objects_trains_on_canvases_of_several_items(tmp_path, monkeypatch, capsys):
    seen, erased = [], []
    loss, erase = task_segment.item_loss, task_segment.erase_in_boxes

    def recording_loss(logits, labels):
        seen.append(labels.copy())
        return loss(logits, labels)

    def recording_erase(rng, images, boxes, p):
        erased.append(boxes.copy())
        return erase(rng, images, boxes, p)

    monkeypatch.setattr(task_segment, "item_loss", recording_loss)
    monkeypatch.setattr(task_segment, "erase_in_boxes", recording_erase)
    cfg = {**task_segment.DEFAULTS, **TINY, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 3,  # 24 of 16: wraps
           "pretrain_objects": 2, "pretrain_erase": 0.5}
    task_segment._pretrain(task_segment._build(cfg, 11), cfg, str(tmp_path), str(tmp_path / "ck"))
    assert "to name the 1-2 items on 32px canvases" in capsys.readouterr().out
    assert len(seen) == 3 and all(labels.shape == (8, 2) for labels in seen)
    counts = np.concatenate([(labels > 0).sum(1) for labels in seen])
    assert counts.min() == 1 and counts.max() == 2  # some canvases hold one item, some two
    assert len(erased) == 6 and all(b.shape == (8, 4) for b in erased)  # each slot's boxes, every step
    row = json.loads(open(tmp_path / "pretrain.jsonl").readline())
    assert 0 <= row["test_accuracy"] <= 1  # still scored on single items
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(SystemExit, match="pretrain_objects is a whole number of items >= 1"):
            task_segment.train({**TINY, "pretrain_epochs": 1, "pretrain_objects": bad}, str(tmp_path / "c"),
                               resume=False)
    assert not (tmp_path / "c").exists()


def test_pretrain_head_is_checked_before_the_run_folder_is_made(tmp_path):
    with pytest.raises(SystemExit, match="unknown pretrain_head 'mlp'; choose from linear, fc"):
        task_segment.train({**TINY, "pretrain_epochs": 1, "pretrain_head": "mlp"}, str(tmp_path / "a"), resume=False)
    with pytest.raises(SystemExit, match="pretrain_head 'fc' pretrains an FCN's fc6 and fc7; unpool has none"):
        task_segment.train({**TINY, "model": "unpool", "pretrain_epochs": 1, "pretrain_head": "fc"},
                           str(tmp_path / "b"), resume=False)
    assert not any((tmp_path / d).exists() for d in "ab")


def test_a_pretraining_stopped_after_an_epoch_resumes_there_and_ends_as_an_unbroken_one(tmp_path, monkeypatch,
                                                                                        capsys):
    import shendu
    import shendu.train
    from shendu.train import load_checkpoint

    cfg = {**task_segment.DEFAULTS, **TINY, "pretrain_epochs": 2, "pretrain_steps_per_epoch": 2}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for d in (whole, broken):
        d.mkdir()

    def fresh_model():  # as train() builds it: the same initial weights for both runs
        shendu.manual_seed(cfg["seed"])
        return task_segment._build(cfg, 11)

    task_segment._pretrain(fresh_model(), cfg, str(whole), str(whole / "pretrained"))
    save = shendu.train.save_checkpoint

    def save_then_stop(path, *args, epoch, **kw):
        save(path, *args, epoch=epoch, **kw)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(shendu.train, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        task_segment._pretrain(fresh_model(), cfg, str(broken), str(broken / "pretrained"))
    monkeypatch.setattr(shendu.train, "save_checkpoint", save)
    with open(broken / "pretrain.jsonl", "a") as f:  # as if stopped after logging an epoch it did not save
        f.write(json.dumps({"epoch": 2, "step": 3}) + "\n")
    capsys.readouterr()
    model = task_segment._build(cfg, 11)
    task_segment._pretrain(model, cfg, str(broken), str(broken / "pretrained"), resume=True)
    assert "from epoch 2" in capsys.readouterr().out
    a, b = (load_checkpoint(str(d / "pretrained"), restore_rng=False) for d in (whole, broken))
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (2, 4)
    for k, v in a["model"].items():
        np.testing.assert_array_equal(np.asarray(b["model"][k]), np.asarray(v), err_msg=k)
    for k, v in model.backbone.state_dict().items():  # the model's own backbone holds the result
        np.testing.assert_array_equal(v.numpy(), np.asarray(a["model"]["backbone." + k]), err_msg=k)
    rows = [json.loads(line) for line in open(broken / "pretrain.jsonl")]
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 2), (2, 4)]


def test_shendu_train_resume_continues_a_run_stopped_during_its_pretraining(tmp_path, monkeypatch, capsys):
    import shendu.train
    from shendu.cli import main

    run = str(tmp_path / "run")
    save = shendu.train.save_checkpoint

    def save_then_stop(path, *args, epoch, **kw):
        save(path, *args, epoch=epoch, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(shendu.train, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):  # stopped after the first pretraining epoch: no checkpoints/last yet
        task_segment.train({**TINY, "pretrain_epochs": 2, "pretrain_steps_per_epoch": 1}, run, resume=False)
    monkeypatch.setattr(shendu.train, "save_checkpoint", save)
    assert not os.path.exists(os.path.join(run, "checkpoints", "last"))
    capsys.readouterr()
    assert main(["train", "--resume", run]) == 0  # finds the run and its task by config.json
    out = capsys.readouterr().out
    assert "resuming" in out and "from epoch 2" in out
    assert len(open(os.path.join(run, "pretrain.jsonl")).readlines()) == 2 and len(_rows(run)) == 1


def test_pretraining_takes_its_own_optimizer_learning_rate_and_weight_decay(tmp_path):
    from shendu.train import load_checkpoint

    cfg = {**task_segment.DEFAULTS, **TINY, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 10,
           "train_scenes": 80, "pretrain_optimizer": "sgd", "pretrain_lr": 0.05, "pretrain_weight_decay": 5e-4}
    task_segment._pretrain(task_segment._build(cfg, 11), cfg, str(tmp_path), str(tmp_path / "pretrained"))
    (group,) = load_checkpoint(str(tmp_path / "pretrained"), restore_rng=False)["optimizer"]["param_groups"]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)
    # the last step's rate on the warm-up (1 step) + cosine schedule of 10 steps from 0.05
    assert group["lr"] == pytest.approx(0.05 * 0.5 * (1 + np.cos(np.pi * 8 / 9)))
    with pytest.raises(SystemExit, match="unknown pretrain_optimizer 'lbfgs'; choose from adam, sgd"):
        task_segment.train({**TINY, "pretrain_epochs": 1, "pretrain_optimizer": "lbfgs"}, str(tmp_path / "x"),
                           resume=False)
    assert not (tmp_path / "x").exists()


def test_a_run_stopped_after_pretraining_resumes_from_the_pretrained_backbone(tmp_path, capsys):
    import shutil

    run = str(tmp_path / "run")
    cfg = {**TINY, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 1}
    assert task_segment.train(cfg, run, resume=False) == 0
    assert "pretraining the backbone" in capsys.readouterr().out
    for name in ("last", "best"):  # as if stopped before the first segmentation epoch ended
        shutil.rmtree(os.path.join(run, "checkpoints", name))
    os.remove(os.path.join(run, "metrics.jsonl"))
    assert task_segment.train(dict(TINY), run, resume=True) == 0  # the saved config (with pretraining) is kept
    assert "pretraining" not in capsys.readouterr().out
    assert len(open(os.path.join(run, "pretrain.jsonl")).readlines()) == 1 and len(_rows(run)) == 1
    with pytest.raises(SystemExit, match="pretrain_epochs needs a model built on the scene backbone"):
        task_segment.train({**TINY, "model": "sliding", "pretrain_epochs": 1}, str(tmp_path / "s"), resume=False)
    assert not (tmp_path / "s").exists()


def test_backbone_from_starts_the_model_from_another_checkpoints_backbone(tmp_path):
    from shendu.train import load_checkpoint

    cfg = {**task_segment.DEFAULTS, **TINY, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 2}
    task_segment._pretrain(task_segment._build(cfg, 11), cfg, str(tmp_path), str(tmp_path / "pretrained"))
    pretrained = load_checkpoint(str(tmp_path / "pretrained"), restore_rng=False)["model"]
    run = str(tmp_path / "run")  # lr 0: the weights stay those loaded (batch norm's running statistics move)
    assert task_segment.train({**TINY, "backbone_from": str(tmp_path / "pretrained"), "lr": 0.0}, run,
                              resume=False) == 0
    model = load_checkpoint(os.path.join(run, "checkpoints", "last"), restore_rng=False)["model"]
    weights = [k for k in pretrained if k.startswith("backbone.") and k.endswith("weight")]
    assert weights
    for k in weights:
        np.testing.assert_array_equal(np.asarray(model[k]), np.asarray(pretrained[k]), err_msg=k)
    for cfg, match in [({"backbone_from": str(tmp_path / "none")}, "backbone_from: load_checkpoint: no checkpoint"),
                       ({"backbone_from": str(tmp_path / "pretrained"), "model_options": {"widths": [8] * 5}},
                        "(?s)does not fit fcn8s with model_options .* size mismatch for stages.0.0.weight"),
                       ({"backbone_from": os.path.join(run, "checkpoints", "last"), "model": "sliding"},
                        "backbone_from needs a model built on the scene backbone"),
                       ({"backbone_lr_scale": 2}, r"backbone_lr_scale must be in \[0, 1\], got 2")]:
        with pytest.raises(SystemExit, match=match):
            task_segment.train({**TINY, **cfg}, str(tmp_path / "x"), resume=False)
        assert not (tmp_path / "x").exists()


def test_backbone_lr_scale_gives_the_backbone_its_fraction_of_the_rate(tmp_path):
    from shendu.train import load_checkpoint

    cfg = {**task_segment.DEFAULTS, **TINY, "backbone_lr_scale": 0.1}
    model = task_segment._build(cfg, 11)
    groups, scales = task_segment._param_groups(model, cfg)
    assert scales == [1.0, 0.1]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.backbone.parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    run = str(tmp_path / "run")
    assert task_segment.train({**TINY, "backbone_lr_scale": 0.1, "max_steps": 1}, run, resume=False) == 0
    head, backbone = load_checkpoint(os.path.join(run, "checkpoints", "last"),
                                     restore_rng=False)["optimizer"]["param_groups"]
    assert backbone["lr"] == pytest.approx(0.1 * head["lr"]) and head["lr"] > 0


def test_metric_helpers_and_palette():
    mask = np.array([[0, 1], [10, 3]])
    rgb = task_segment.colorize(mask)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[0, 0]) == (0, 0, 0)
    assert len({tuple(c) for c in task_segment.PALETTE[:11].tolist()}) == 11  # 11 distinct class colours


def test_error_analysis_example_splits_the_errors(fcn_run, monkeypatch):
    from shendu.vision.metrics.segmentation import mean_iou, segmentation_confusion_matrix

    example = _example()
    run_dir, _ = fcn_run

    monkeypatch.setattr(task_segment, "predict", _predict_from_pixels)
    got = example.error_analysis(run_dir)
    assert got["mean_iou"] == pytest.approx(task_segment.evaluate_run(run_dir)["mean_iou"], abs=1e-12)
    assert 0 < got["item_vs_background_iou"] < 1 and 0 < got["items_mostly_right"] < 1
    # reference: a loop over scenes and their true classes
    model, cfg = task_segment.load_segmenter(os.path.join(run_dir, "checkpoints", "last"))
    batch = task_segment._scenes(cfg, "test", cfg["test_scenes"]).generate(np.arange(cfg["test_scenes"]))
    truth, pred = batch["masks"], task_segment.predict(model, batch["images"])
    voted, right, items = pred.copy(), 0, 0
    for i in range(len(truth)):
        for c in np.unique(truth[i][truth[i] > 0]):
            hit = (truth[i] == c) & (pred[i] > 0)
            counts = np.bincount(pred[i][hit], minlength=11)
            items += 1
            right += int(hit.any() and counts.argmax() == c)
            voted[i][hit] = counts.argmax()
    k = 11
    assert got["items"] == items
    assert got["items_mostly_right"] == pytest.approx(right / items)
    assert got["mean_iou_with_item_majority_classes"] == pytest.approx(
        mean_iou(segmentation_confusion_matrix(voted, truth, k)))
    fixed = np.where((truth > 0) & (pred > 0), truth, pred)
    assert got["mean_iou_with_true_item_classes"] == pytest.approx(
        mean_iou(segmentation_confusion_matrix(fixed, truth, k)))
    fg, said = truth > 0, pred > 0
    assert got["item_vs_background_iou"] == pytest.approx((fg & said).sum() / (fg | said).sum())
    # by box cover: a loop over scenes and slots
    oks = {name: [] for name in example.COVER_BINS}
    for n in range(len(truth)):
        for slot in np.flatnonzero(batch["valid"][n]):
            x0, y0, x1, y1 = batch["boxes"][n, slot].astype(int)
            covered = sum(max(0, min(x1, b[2]) - max(x0, b[0])) * max(0, min(y1, b[3]) - max(y0, b[1]))
                          for b in batch["boxes"][n, slot + 1:][batch["valid"][n, slot + 1:]].astype(int))
            share = covered / ((x1 - x0) * (y1 - y0))
            lab, t, p = batch["labels"][n, slot], truth[n, y0:y1, x0:x1], pred[n, y0:y1, x0:x1]
            votes = p[(t == lab) & (p > 0)]
            name = ("none" if share == 0 else "under 0.2" if share < 0.2 else "0.2-0.3" if share < 0.3
                    else "0.3 and more")
            oks[name].append(votes.size > 0 and np.bincount(votes, minlength=k).argmax() == lab)
    for name, right in oks.items():
        row = got["items_mostly_right_by_box_cover"][name]
        assert row["items"] == len(right)
        assert row["mostly_right"] == (pytest.approx(np.mean(right)) if right else None)


def test_box_cover_counts_only_the_items_drawn_later():
    boxes = np.array([[[0, 0, 10, 10], [5, 0, 15, 10], [0, 5, 10, 10], [0, 0, 20, 20]]], np.float32)
    valid = np.array([[True, True, True, False]])
    # item 0 lies under items 1 (half) and 2 (half, overlapping 1: the rule sums, as the scenes count it)
    np.testing.assert_allclose(_example().box_cover(boxes, valid), [[1.0, 0.25, 0.0, 0.0]])


def _example():
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "segmentation_fcn.py")
    spec = importlib.util.spec_from_file_location("segmentation_fcn", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_scene_item_crops_cut_each_item_out_around_its_box():
    from shendu.data.datasets.scenes import FashionScenes

    batch = FashionScenes("test", size=64, max_objects=3, length=20, scale=(20, 36)).generate(np.arange(20))
    as_seen, alone, labels = _example().scene_item_crops(batch, 32)
    scene, slot = np.nonzero(batch["valid"])
    assert as_seen.shape == alone.shape == (len(scene), 1, 32, 32) and len(scene) > 20  # several items per scene
    padded = np.pad(batch["images"][:, 0], ((0, 0), (16, 16), (16, 16)))
    padded_masks = np.pad(batch["masks"], ((0, 0), (16, 16), (16, 16)))
    for i, (n, k) in enumerate(zip(scene, slot)):  # reference: one item at a time
        x0, y0, x1, y1 = batch["boxes"][n, k]
        cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
        window = padded[n, cy:cy + 32, cx:cx + 32]
        np.testing.assert_array_equal(as_seen[i, 0], window)
        own = padded_masks[n, cy:cy + 32, cx:cx + 32] == batch["labels"][n, k]
        np.testing.assert_array_equal(alone[i, 0], np.where(own, window, 0))
        assert labels[i] == batch["labels"][n, k] - 1
    assert (alone != as_seen).any()  # some items have neighbours in view


def test_occlusion_example_scores_the_pretrained_classifier(tmp_path):
    run_dir = str(tmp_path / "run")
    cfg = {**TINY, "pretrain_epochs": 1, "pretrain_steps_per_epoch": 2}
    assert task_segment.train(cfg, run_dir, resume=False) == 0
    example = _example()
    got = example.occlusion_analysis(run_dir, items=TINY["test_scenes"], bins=1)
    # one size range over the run's scales is the pretraining's own test set: the same accuracy
    last = [json.loads(line) for line in open(os.path.join(run_dir, "pretrain.jsonl"))][-1]
    assert got["whole_items_by_size"] == {"8-16px": pytest.approx(last["test_accuracy"], abs=1e-12)}
    scenes = task_segment._scenes({**task_segment.DEFAULTS, **TINY}, "test", TINY["test_scenes"])
    assert got["scene_items"] == int(scenes.generate(np.arange(TINY["test_scenes"]))["valid"].sum())
    assert 0 <= got["scene_items_as_seen"] <= 1 and 0 <= got["scene_items_alone"] <= 1
    assert len(example.occlusion_analysis(run_dir, items=8, bins=3)["whole_items_by_size"]) == 3
    with pytest.raises(SystemExit, match="no pretrained item classifier"):
        example.occlusion_analysis(str(tmp_path / "nothing"))


def test_an_ensemble_of_runs_averages_their_class_probabilities(fcn_run, tmp_path, capsys):
    import shutil

    from shendu.cli import main
    from shendu.vision.metrics.segmentation import mean_iou, segmentation_confusion_matrix

    first, cfg = fcn_run
    second = str(tmp_path / "second")
    assert task_segment.train({**cfg, "seed": 1, "epochs": 1}, second, resume=False) == 0
    ensemble, ens_cfg = task_segment.load_ensemble([first, second])
    members = [task_segment.load_segmenter(os.path.join(p, "checkpoints", "last")) for p in (first, second)]
    assert ens_cfg == members[0][1]  # scored on the first run's test scenes
    batch = task_segment._scenes(ens_cfg, "test", ens_cfg["test_scenes"]).generate(np.arange(ens_cfg["test_scenes"]))
    # reference: each model's softmax probabilities, averaged by hand
    probs = [task_segment.predict_proba(m, batch["images"]) for m, _ in members]
    assert np.abs(probs[0] - probs[1]).max() > 1e-3  # two different models
    expected = (probs[0] + probs[1]) / 2
    np.testing.assert_allclose(task_segment.predict_proba(ensemble, batch["images"]), expected, atol=1e-6)
    got = task_segment.evaluate_run([first, second])
    assert got["ensemble"] == [first, second]
    assert got["mean_iou"] == pytest.approx(
        mean_iou(segmentation_confusion_matrix(expected.argmax(1), batch["masks"], 11)), abs=1e-12)
    capsys.readouterr()
    assert main(["eval", first, second, "--flip"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ensemble"] == [first, second] and printed["flip"] is True

    other = str(tmp_path / "other")  # a run of other scenes cannot join
    shutil.copytree(second, other)
    state = os.path.join(other, "checkpoints", "last", "state.json")
    with open(state) as f:
        tree = json.load(f)
    tree["config"]["image_size"] = 64
    with open(state, "w") as f:
        json.dump(tree, f)
    with pytest.raises(SystemExit, match="trained on other scenes than .*image_size 64 vs 32"):
        task_segment.evaluate_run([first, other])


def test_the_committed_residual_config_builds_the_documented_model():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "configs", "segment_fcn8s_residual.json")
    with open(path) as f:
        cfg = json.load(f)
    assert set(cfg) <= set(task_segment.DEFAULTS)  # every key is a task setting
    model = task_segment._build({**task_segment.DEFAULTS, **cfg}, 11)
    assert sum(p.numel() for p in model.parameters()) == 1_003_121  # the figure in README and docs
