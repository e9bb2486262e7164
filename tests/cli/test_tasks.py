"""`shendu train --task NAME` hands a resolved config to the task module (segment, detect, gan, vae)."""

import json
import os
import sys
import types

import pytest

from shendu import cli


@pytest.fixture
def fake_task(monkeypatch):
    calls = []
    module = types.ModuleType("fake_task_module")
    module.DEFAULTS = {"model": "tiny", "epochs": 3, "lr": 0.1, "seed": 0, "out": None}

    def train(cfg, run_dir, resume):  # as the real task modules: the folder and config.json are theirs to write
        calls.append((dict(cfg), run_dir, resume))
        if not resume:
            os.makedirs(run_dir, exist_ok=True)
            with open(os.path.join(run_dir, "config.json"), "w") as f:
                json.dump(cfg, f)
        return 0

    module.train = train
    monkeypatch.setitem(sys.modules, "fake_task_module", module)
    monkeypatch.setitem(cli.TASKS, "fake", "fake_task_module")
    return calls


def test_flags_override_the_task_defaults(fake_task, tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--task", "fake", "--epochs", "7", "--out", str(run)]) == 0
    cfg, run_dir, resume = fake_task[0]
    assert (cfg["epochs"], cfg["lr"], cfg["model"], cfg["task"], cfg["out"], run_dir, resume) == (
        7, 0.1, "tiny", "fake", str(run), str(run), False)


def test_model_defaults_sit_between_the_task_defaults_and_the_flags(fake_task, tmp_path, monkeypatch):
    import fake_task_module

    monkeypatch.setattr(fake_task_module, "MODEL_DEFAULTS", {"big": {"epochs": 9, "lr": 0.01}}, raising=False)
    cli.main(["train", "--task", "fake", "--model", "big", "--lr", "0.5", "--out", str(tmp_path / "a")])
    cli.main(["train", "--task", "fake", "--out", str(tmp_path / "b")])  # model "tiny": no model defaults
    (big, _, _), (tiny, _, _) = fake_task
    assert (big["epochs"], big["lr"], tiny["epochs"], tiny["lr"]) == (9, 0.5, 3, 0.1)


def test_resume_reads_the_saved_config(fake_task, tmp_path):
    run = tmp_path / "run"
    cli.main(["train", "--task", "fake", "--lr", "0.5", "--out", str(run)])
    assert cli.main(["train", "--resume", str(run)]) == 0
    cfg, run_dir, resume = fake_task[1]
    assert (cfg["lr"], cfg["task"], resume) == (0.5, "fake", True)


def test_resume_with_epochs_extends_the_run_and_refuses_other_changes(fake_task, tmp_path):
    run = tmp_path / "run"
    cli.main(["train", "--task", "fake", "--lr", "0.5", "--out", str(run)])
    assert cli.main(["train", "--resume", str(run), "--epochs", "9", "--max-steps", "40"]) == 0
    cfg, _, resume = fake_task[1]
    assert (cfg["epochs"], cfg["max_steps"], cfg["lr"], resume) == (9, 40, 0.5, True)
    with pytest.raises(SystemExit, match="--lr cannot change a run being resumed"):
        cli.main(["train", "--resume", str(run), "--lr", "0.1"])
    assert len(fake_task) == 2  # the refused resume never reached the task


def test_resume_refuses_a_new_length_for_a_one_cycle_classifier(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "classify", "epochs": 5, "schedule": "onecycle"}))
    with pytest.raises(SystemExit, match="--epochs cannot change a run with the onecycle schedule"):
        cli.main(["train", "--resume", str(run), "--epochs", "9"])


def test_a_cosine_classifier_resumed_with_more_epochs_anneals_to_its_new_end(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", "digits", "--epochs", "1", "--schedule", "cosine", "--batch-size", "256",
                     "--out", str(run)]) == 0
    assert cli.main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0]["lr"] == pytest.approx(0.0, abs=1e-9)  # the 1-epoch schedule ended at 0
    assert rows[1]["lr"] == pytest.approx(0.001 * 0.25, rel=1e-6)  # 3-epoch cosine at 2/3: (1 + cos(2 pi / 3)) / 2
    assert rows[2]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_an_option_the_task_does_not_take_is_refused_before_anything_is_written(fake_task, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(SystemExit, match="dataset do not apply; its options: epochs, lr, model"):
        cli.main(["train", "--task", "fake", "--dataset", "digits", "--out", str(run)])
    assert not run.exists() and not fake_task
