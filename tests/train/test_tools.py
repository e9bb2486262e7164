"""Ensembles, transfer learning helpers, hyperparameter search, k-fold cross-validation, plots."""

import copy

import numpy as np
import pytest

import shendu
from shendu import nn, optim
from shendu.train import Ensemble, freeze, hparam, param_groups_with_lrs, plots, replace_head, unfreeze
from tests.train import helpers


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_ensemble_prob_and_logit_against_numpy():
    shendu.manual_seed(0)
    models = [nn.Linear(4, 3) for _ in range(3)]
    x = shendu.randn(5, 4)
    logits = [m(x).data.astype(np.float64) for m in models]
    prob = Ensemble(models, "prob")(x).data
    np.testing.assert_allclose(np.exp(prob), np.mean([_softmax(z) for z in logits], 0), rtol=1e-5)
    np.testing.assert_allclose(Ensemble(models, "logit")(x).data, np.mean(logits, 0), rtol=1e-5, atol=1e-6)
    with pytest.raises(shendu.errors.ArgumentError, match="'prob' or 'logit'"):
        Ensemble(models, "vote")


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.features(x))


def test_freeze_unfreeze_keeps_frozen_bn_in_eval():
    net = _Net()
    freeze(net, "features")
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    net.train()
    assert not net.features[1].training and net.fc.training
    before = net.features[1].running_mean.data.copy()
    net(shendu.randn(6, 4) * 5 + 3)
    np.testing.assert_array_equal(net.features[1].running_mean.data, before)  # no drift
    clone = copy.deepcopy(net)
    clone.train()
    assert not clone.features[1].training and net.features[1] is not clone.features[1]
    unfreeze(net)
    net.train()
    assert all(p.requires_grad for p in net.parameters()) and net.features[1].training
    with pytest.raises(shendu.errors.ArgumentError, match="no submodule 'backbone'"):
        freeze(net, "backbone")


def test_replace_head_and_param_groups():
    net = _Net()
    head = replace_head(net, num_classes=7)
    assert net.fc is head and net(shendu.randn(2, 4)).shape == (2, 7)
    seq = nn.Module()
    seq.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 10))
    replace_head(seq, nn.Linear(8, 2))
    assert seq.classifier[1].out_features == 2
    groups = param_groups_with_lrs(net, {"features": 1e-4, "features.0": 1e-5}, default_lr=1e-3)
    assert [(g["lr"], len(g["params"])) for g in groups] == [(1e-4, 2), (1e-5, 2), (1e-3, 2)]
    opt = optim.SGD(groups, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-5, 1e-3]


@pytest.mark.parametrize("n, k, shuffle, seed", [(10, 3, False, None), (11, 5, True, 0), (7, 7, True, 42)])
def test_kfold_matches_sklearn(n, k, shuffle, seed):
    ms = pytest.importorskip("sklearn.model_selection")
    ours = hparam.kfold_indices(n, k, shuffle, seed)
    ref = list(ms.KFold(k, shuffle=shuffle, random_state=seed).split(np.zeros(n)))
    assert len(ours) == len(ref)
    for (a_tr, a_va), (b_tr, b_va) in zip(ours, ref):
        np.testing.assert_array_equal(a_tr, b_tr)
        np.testing.assert_array_equal(a_va, b_va)


def test_cross_validate_fits_preprocessing_per_fold():
    x, y = helpers.data(n=60)
    seen = []

    def standardize(xtr):
        mean, std = xtr.mean(0), xtr.std(0) + 1e-6
        seen.append(len(xtr))
        return lambda a: ((a - mean) / std).astype(np.float32)

    res = hparam.cross_validate(lambda: helpers.mlp(), (x, y), k=3, epochs=2, lr=1e-2, preprocess=standardize)
    assert seen == [40, 40, 40]
    assert [r["val_size"] for r in res["rows"]] == [20, 20, 20]
    assert 0 <= res["mean_val_accuracy"] <= 1 and "val_accuracy" in res["table"]


def test_recipe_steps():
    x, y = helpers.data(n=80)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    nn.init.normal_(model[2].weight, std=1e-3)
    nn.init.zeros_(model[2].bias)
    init = hparam.check_initial_loss(model, x, y)
    assert init["expected"] == pytest.approx(np.log(3)) and init["ok"]
    small = hparam.overfit_small(lambda: nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3)), x, y,
                                 n=20, epochs=150, lr=1e-2)
    assert small["ok"] and small["accuracy"] == 1.0
    lr = hparam.find_lr(lambda: helpers.mlp(), x, y, lrs=[1e-6, 1e-2, 1e3], iterations=30)
    rows = {r["lr"]: r for r in lr["rows"]}
    assert lr["best_lr"] == 1e-2 and abs(rows[1e-6]["drop"]) < rows[1e-2]["drop"] / 5  # too small: no progress
    assert rows[1e3]["final_loss"] > rows[1e-2]["final_loss"]  # too large: diverges
    search = hparam.random_search(lambda: helpers.mlp(), (x[:60], y[:60]), (x[60:], y[60:]), trials=3, epochs=1)
    assert len(search.rows) == 3 and search.best in search.rows
    assert all(1e-4 <= r["lr"] <= 1e-1 and 1e-6 <= r["weight_decay"] <= 1e-2 for r in search.rows)
    lines = search.table.splitlines()
    assert lines[0].split()[:3] == ["trial", "lr", "weight_decay"] and len(lines) == 4
    accs = [r["val_accuracy"] for r in search.rows]
    assert lines[1].split()[0] == str(search.rows[int(np.argmax(accs))]["trial"])
    space = {"lr": (1e-4, 1e-1, "log"), "wd": (1e-6, 1e-2, "log")}
    narrow = hparam.refine(space, {"lr": 1e-2 * 0.5, "wd": 1.1e-6})
    assert narrow["lr"][0] == pytest.approx(0.5e-2 / 10 ** 0.5) and narrow["lr"][1] == pytest.approx(0.5e-2 * 10 ** 0.5)
    assert narrow["wd"][0] < 1e-6  # best at the lower edge: the range widens below


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_write_valid_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = helpers.data(n=64)
    model = helpers.mlp()
    hist = shendu.train.fit(model, helpers.loader(x, y, batch_size=16), helpers.loader(x, y, 32),
                            epochs=2, progress=False, out_dir=tmp_path / "run")
    paths = [plots.plot_curves(hist, tmp_path / "curves.png"), plots.plot_lr(hist, tmp_path / "lr.png"),
             plots.plot_confusion_matrix(np.array([[5, 1], [2, 7]]), tmp_path / "cm.png", ["a", "b"]),
             plots.plot_image_grid(np.random.default_rng(0).random((6, 1, 8, 8)), tmp_path / "grid.png",
                                   pred=[0, 1, 2, 0, 1, 2], true=[0, 1, 1, 0, 2, 2], ncols=3)]
    stats = plots.layer_statistics(model, x[:16], y[:16])
    assert [r["type"] for r in stats] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert stats[0]["grad_std"] > 0 and stats[1]["grad_std"] is None
    assert all(p.grad is None for p in model.parameters())
    paths.append(plots.plot_layer_statistics(stats, tmp_path / "stats.png"))
    paths += plots.plot_run(tmp_path / "run")
    assert len(paths) == 7
    for p in paths:
        assert _is_png(p), p
    assert plots.load_history(tmp_path / "run")["epoch"] == [1, 2]
