"""fit / evaluate / train_one_epoch, metrics, callbacks."""

import csv
import json
import math

import numpy as np
import pytest

import shendu
from shendu import nn, optim
from shendu.train import (
    EarlyStopping,
    LRSchedulerCallback,
    ModelCheckpoint,
    NaNGuard,
    TensorBoard,
    evaluate,
    fit,
    train_one_epoch,
)
from shendu.train import metrics as M
from tests.train import helpers


def _loaders(n=96, seed=0):
    x, y = helpers.data(n=n, seed=seed)
    val = helpers.loader(*helpers.data(n=40, seed=9), batch_size=16)
    return helpers.loader(x, y, batch_size=16, shuffle=True, seed=0), val


def test_fit_learns_and_history_has_columns(capsys):
    train, val = _loaders()
    model = helpers.mlp()
    hist = fit(model, train, val, optimizer=optim.Adam(model.parameters(), lr=1e-2), epochs=15, seed=0,
               metrics=("accuracy", "top2"), progress=True)
    assert hist.epochs == 15 and not hist.interrupted and hist.stop_reason is None
    assert hist["loss"][-1] < hist["loss"][0] * 0.6
    assert hist["accuracy"][-1] > 0.7 and hist["val_accuracy"][-1] > 0.6  # chance is 1/3
    assert all(t >= a for t, a in zip(hist["top2"], hist["accuracy"]))
    assert hist["epoch"] == list(range(1, 16)) and hist["lr"] == [0.01] * 15
    out = capsys.readouterr().out.splitlines()  # not a terminal: one plain line per epoch
    assert len(out) == 15 and out[0].startswith("epoch 1/15  loss ") and "val_accuracy" in out[0] and "img/s" in out[0]


def test_evaluate_matches_manual_computation_and_keeps_mode():
    x, y = helpers.data(n=50)
    model = helpers.mlp()
    model.train()
    res = evaluate(model, helpers.loader(x, y, batch_size=7), nn.CrossEntropyLoss(),
                   metrics=("accuracy", "top2", M.ConfusionMatrix(3), M.PerClassAccuracy(3)))
    assert model.training
    model.eval()
    logits = model(shendu.tensor(x)).data.astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert res["loss"] == pytest.approx(-logp[np.arange(50), y].mean(), rel=1e-5)
    pred = logits.argmax(1)
    assert res["accuracy"] == pytest.approx((pred == y).mean())
    cm = np.zeros((3, 3), int)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    np.testing.assert_array_equal(res["confusion_matrix"], cm)
    np.testing.assert_allclose(res["per_class_accuracy"], np.diag(cm) / cm.sum(1))
    top2 = np.argsort(-logits, 1)[:, :2]
    assert res["top2"] == pytest.approx((top2 == y[:, None]).any(1).mean())


def test_metric_functions_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    scores, y = rng.standard_normal((200, 5)), rng.integers(0, 5, 200)
    np.testing.assert_array_equal(M.confusion_matrix(scores.argmax(1), y, 5),
                                  sk.confusion_matrix(y, scores.argmax(1), labels=range(5)))
    assert M.accuracy(scores, y) == pytest.approx(sk.accuracy_score(y, scores.argmax(1)))
    assert M.top_k_accuracy(scores, y, 3) == pytest.approx(sk.top_k_accuracy_score(y, scores, k=3))
    with pytest.raises(shendu.errors.ArgumentError, match="integer class indices"):
        M.accuracy(scores, y.astype(np.float32))
    with pytest.raises(shendu.errors.ArgumentError, match="unknown metric"):
        M.make_metric("f2")


def test_train_one_epoch_plain_loop():
    train, _ = _loaders()
    model = helpers.mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    before = model[0].weight.data.copy()
    logs = train_one_epoch(model, train, nn.CrossEntropyLoss(), opt)
    assert set(logs) == {"loss", "accuracy"} and math.isfinite(logs["loss"])
    assert not np.array_equal(before, model[0].weight.data)


def test_early_stopping_restores_best_weights():
    train, val = _loaders()
    model = helpers.mlp()
    snapshots = []
    cb = shendu.train.LambdaCallback(on_epoch_end=lambda t, logs: snapshots.append(
        (logs["val_loss"], {k: v.data.copy() for k, v in t.model.state_dict().items()})))
    es = EarlyStopping(monitor="val_loss", patience=1, min_delta=0.0)
    hist = fit(model, train, val, optimizer=optim.SGD(model.parameters(), lr=3.0), epochs=40, seed=0,
               callbacks=[cb, es], progress=False)  # a too-large lr: the validation loss stops improving
    assert hist.epochs < 40 and hist.stop_reason.startswith("early stopping")
    best = int(np.argmin(hist["val_loss"]))
    assert es.best_epoch == best + 1 and hist.epochs == best + 1 + 2  # patience 1: two bad epochs stop it
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.data, snapshots[best][1][k])


def test_lr_scheduler_callback_per_step_and_plateau():
    train, val = _loaders()
    model = helpers.mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.lr_scheduler.StepLR(opt, step_size=6, gamma=0.5)  # 6 steps per epoch
    hist = fit(model, train, val, optimizer=opt, epochs=3, callbacks=[LRSchedulerCallback(sched, "step")],
               progress=False)
    assert hist["lr"] == [0.05, 0.025, 0.0125]
    model = helpers.mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    plateau = optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    # lr 0 via a huge threshold: nothing ever counts as improvement after the first epoch
    plateau.threshold = 10.0
    hist = fit(model, train, val, optimizer=opt, epochs=3, scheduler=plateau, progress=False)
    assert hist["lr"] == [0.1, 0.05, 0.025]
    with pytest.raises(shendu.errors.ArgumentError, match="interval='epoch'"):
        LRSchedulerCallback(plateau, "step")


class _Explode(nn.Module):
    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += 1
        return x * 1e30 * 1e30 if self.calls >= self.at else x  # overflow to inf in float32


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_guard_names_the_layer_and_op(capsys, tmp_path):
    x, y = helpers.data(n=64)
    shendu.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), _Explode(at=5), nn.Linear(8, 3))
    guard = NaNGuard()
    hist = fit(model, helpers.loader(x, y, batch_size=16), epochs=3, callbacks=[guard], progress=False,
               out_dir=tmp_path)
    assert hist.epochs == 1 and "NaNGuard" in hist.stop_reason
    assert "layer '2' (_Explode)" in guard.message and "op MulBackward" in guard.message
    assert "epoch 2, step 5" in guard.message
    assert "NaNGuard" in capsys.readouterr().err
    # the last good checkpoint (end of epoch 1) was not overwritten with the broken weights
    tree = shendu.io.tree.load_tree(tmp_path / "checkpoints" / "last")
    assert tree["step"] == 4 and np.isfinite(tree["model"]["3.weight"]).all()


def test_nan_guard_reports_bad_parameters_and_inputs():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2].weight.data[0, 0] = np.nan
    where = shendu.train.find_nonfinite(model, shendu.ones(2, 3))
    assert where["name"] == "2" and where["type"] == "Linear" and where["bad_params"] == ["weight"]
    assert where["input_finite"]
    assert shendu.train.find_nonfinite(model, shendu.tensor([[np.inf, 0.0, 0.0]]))["name"] == "<input>"


def test_loggers_and_checkpoint_folders(tmp_path):
    train, val = _loaders()
    model = helpers.mlp()
    fit(model, train, val, epochs=3, progress=False, out_dir=tmp_path, config={"lr": 1e-3, "model": "mlp"},
        callbacks=[ModelCheckpoint(tmp_path / "ck", monitor="val_accuracy", save_best_only=False)])
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and "val_loss" in rows[0]
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 1e-3, "model": "mlp"}
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == ["best", "epoch-001", "epoch-002", "epoch-003", "last"]
    info = shendu.train.load_checkpoint(tmp_path / "ck" / "last", helpers.mlp(seed=5), restore_rng=False)
    assert info["epoch"] == 3 and info["config"]["model"] == "mlp"


def test_tensorboard_message_without_tensorboardx():
    try:
        import tensorboardX  # noqa: F401
        pytest.skip("tensorboardX is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="pip install tensorboardX"):
        TensorBoard("runs")


def test_fit_argument_errors():
    train, _ = _loaders()
    with pytest.raises(shendu.errors.ArgumentError, match="Module"):
        fit(lambda x: x, train)
    with pytest.raises(shendu.errors.ArgumentError, match="cuda"):
        fit(helpers.mlp(), train, device="cuda")


def test_stopping_at_the_last_batch_ends_the_loader_epoch():
    # max_steps == batches per epoch: the loop stops at the last batch before the loader's StopIteration;
    # the loader must still count the epoch as done, so a checkpoint resumes at the next epoch.
    x, y = helpers.data(n=64)
    loader = helpers.loader(x, y, batch_size=16, shuffle=True, seed=3)
    model = helpers.mlp()
    hist = fit(model, loader, epochs=3, max_steps=4, progress=False)
    assert hist.epochs == 1 and hist.stop_reason == "reached max_steps=4"
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["position"] == 0
