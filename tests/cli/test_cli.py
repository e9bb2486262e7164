"""The `shendu` command end to end on the embedded digits (tiny runs)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from shendu.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--batch-size", "64", "--seed", "1",
                 "--out", str(out)]) == 0
    return out


def test_train_writes_run_folder(run_dir, capsys):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["dataset"] == "digits" and cfg["model"] == "cnn_digits" and cfg["epochs"] == 2
    assert (run_dir / "metrics.csv").exists()
    assert (run_dir / "checkpoints" / "last" / "state.json").exists()


def test_train_learns_digits(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_accuracy"] > 0.8  # two epochs of the small CNN on 8x8 digits; chance is 0.1


def test_eval(run_dir, capsys, tmp_path):
    assert main(["eval", str(run_dir), "--plots", str(tmp_path / "plots")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] > 0.8
    per_class = result["per_class_accuracy"]
    assert len(per_class) == 10
    # the mean of per-class recalls is near the accuracy (the digits test split is nearly balanced)
    assert abs(np.mean(list(per_class.values())) - result["accuracy"]) < 0.05
    for name in ("confusion.png", "predictions.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000


def test_predict_prints_topk_with_class_names(run_dir, tmp_path, capsys):
    from PIL import Image

    from shendu.data.datasets import load_digits

    x, y = load_digits("test")
    path = tmp_path / "digit.png"
    Image.fromarray((x[0, 0] * 255).astype(np.uint8)).save(path)
    assert main(["predict", str(run_dir), str(path), "--topk", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(path)) and line.count(",") == 1


def test_resume_continues(run_dir, capsys):
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert "resuming" in capsys.readouterr().out


def test_models_and_datasets_list(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "cnn_fmnist" in out
    assert main(["datasets"]) == 0
    assert "digits" in capsys.readouterr().out


def test_plot(run_dir, capsys):
    assert main(["plot", str(run_dir)]) == 0
    files = capsys.readouterr().out.split()
    assert files and all(os.path.exists(f) and open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for f in files)


def test_unknown_config_key_is_refused(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(SystemExit, match="unknown option"):
        main(["train", "--config", str(cfg)])


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "shendu", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout


def test_eval_of_several_runs_scores_their_ensemble(run_dir, tmp_path, capsys):
    import shendu
    from shendu.cli import _augmentation, _load_model, load_split

    second = tmp_path / "digits2"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--batch-size", "64", "--seed", "2",
                 "--out", str(second)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run_dir), str(second)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ensemble"] == [str(run_dir), str(second)]
    # reference: the two models' softmax probabilities on the test split, averaged by hand
    (m1, cfg), (m2, _) = _load_model(str(run_dir)), _load_model(str(second))
    norm = cfg["normalization"]
    test = load_split("digits", False, None, _augmentation("none", norm["size"], norm["mean"], norm["std"]))
    x = np.stack([np.asarray(test[i][0], np.float32) for i in range(len(test))])
    y = np.array([int(test[i][1]) for i in range(len(test))])
    with shendu.no_grad():
        p = [shendu.functional.softmax(m(shendu.tensor(x)), 1).numpy() for m in (m1, m2)]
    mean = (p[0] + p[1]) / 2
    assert result["accuracy"] == pytest.approx(float((mean.argmax(1) == y).mean()), abs=1e-6)  # printed to 6
    # the loss tells the ensemble from either model even where their arg-maxes agree
    nll = [-np.log(q[np.arange(len(y)), y]).mean() for q in (mean, p[0], p[1])]
    assert result["loss"] == pytest.approx(nll[0], abs=2e-6) and min(abs(nll[0] - nll[1]), abs(nll[0] - nll[2])) > 1e-4

    cfg2 = json.loads((second / "config.json").read_text())  # other data cannot join
    cfg2["normalization"]["mean"] = [0.0]
    (second / "config.json").write_text(json.dumps(cfg2))
    with pytest.raises(SystemExit, match="trained on other data .* normalization differ"):
        main(["eval", str(run_dir), str(second)])


def test_eval_refuses_runs_of_other_tasks_by_name(tmp_path):
    run = tmp_path / "gan"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "gan"}))
    with pytest.raises(SystemExit, match="classification and segmentation runs; .* is a gan run"):
        main(["eval", str(run)])
