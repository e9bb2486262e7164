"""Classification + localization: the two-head loss against a plain NumPy reference, the metrics by hand,
and a short training run on single-object FashionScenes."""

import numpy as np
import pytest

import shendu
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.detection import localization as loc


def _reference(scores, box, labels, boxes_xyxy, size, weight):
    H, W = size
    total_ce = total_l2 = 0.0
    for s, b, y, g in zip(scores, box, labels, boxes_xyxy):
        m = max(s)
        total_ce += m + np.log(sum(np.exp(v - m) for v in s)) - s[y - 1]
        t = [(g[0] + g[2]) / 2 / W, (g[1] + g[3]) / 2 / H, (g[2] - g[0]) / W, (g[3] - g[1]) / H]
        total_l2 += sum((b[i] - t[i]) ** 2 for i in range(4))
    n = len(labels)
    return total_ce / n + weight * total_l2 / n, total_ce / n, total_l2 / n


@pytest.mark.parametrize("weight", [1.0, 5.0])
def test_loss_matches_reference(weight):
    rng = np.random.default_rng(0)
    scores, box = rng.normal(size=(5, 4)), rng.uniform(0.1, 0.9, (5, 4))
    labels = rng.integers(1, 5, 5)
    xy = rng.uniform(0, 20, (5, 2))
    gt = np.concatenate([xy, xy + rng.uniform(4, 12, (5, 2))], 1)
    targets = [{"boxes": g[None], "labels": [y]} for g, y in zip(gt, labels)]
    loss, parts = loc.localization_loss((shendu.tensor(scores), shendu.tensor(box)), targets, (32, 40), weight)
    ref, ce, l2 = _reference(scores, box, labels, gt, (32, 40), weight)
    assert loss.item() == pytest.approx(ref, rel=1e-12)
    assert parts["cls"] == pytest.approx(ce, rel=1e-12) and parts["box"] == pytest.approx(l2, rel=1e-12)


def test_loss_needs_exactly_one_object_per_image():
    out = (shendu.zeros(2, 3), shendu.zeros(2, 4))
    two = [{"boxes": [[0, 0, 4, 4], [5, 5, 9, 9]], "labels": [1, 2]}, {"boxes": [[0, 0, 4, 4]], "labels": [1]}]
    with pytest.raises(ArgumentError, match="exactly one object"):
        loc.localization_loss(out, two, (16, 16))
    with pytest.raises(ShapeError, match="localization_loss"):
        loc.localization_loss((shendu.zeros(2, 3), shendu.zeros(2, 3)), two[1:] * 2, (16, 16))


def test_metrics_by_hand():
    targets = [{"boxes": [[0, 0, 10, 10]], "labels": [1]}, {"boxes": [[0, 0, 10, 10]], "labels": [2]},
               {"boxes": [[0, 0, 10, 10]], "labels": [3]}]
    preds = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [1]},   # right, IoU 1
             {"boxes": [[0, 0, 10, 5]], "scores": [0.8], "labels": [2]},    # right, IoU 0.5
             {"boxes": [[5, 0, 15, 10]], "scores": [0.7], "labels": [1]}]   # wrong class, IoU 1/3
    m = loc.localization_metrics(preds, targets)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["mean_iou"] == pytest.approx((1 + 0.5 + 1 / 3) / 3)
    assert m["correct_localization"] == pytest.approx(2 / 3)


def test_predict_one_box_per_image_inside_the_image():
    model = loc.Localizer(num_classes=10, width=8)
    dets = loc.predict(model, shendu.rand(3, 1, 32, 32))
    assert len(dets) == 3
    for d in dets:
        assert d["boxes"].shape == (1, 4) and 1 <= d["labels"][0] <= 10 and 0 < d["scores"][0] <= 1
        assert d["boxes"].min() >= 0 and d["boxes"].max() <= 32
    # above every probability: no detection, which the metrics count as a miss with IoU 0
    none = loc.predict(model, shendu.rand(2, 1, 32, 32), score_thresh=1.01)
    assert [len(d["boxes"]) for d in none] == [0, 0]
    targets = [{"boxes": [[0, 0, 10, 10]], "labels": [1]}] * 2
    assert loc.localization_metrics(none, targets) == {"accuracy": 0.0, "mean_iou": 0.0, "correct_localization": 0.0}


def test_training_on_single_object_scenes_improves_loss_and_iou():
    from shendu import optim
    from shendu.data.datasets.scenes import FashionScenes

    shendu.manual_seed(0)
    scenes = FashionScenes("train", size=32, single_object=True, length=64)
    images, targets = scenes.get_batch(np.arange(64))
    x = shendu.tensor(images)
    model = loc.Localizer(num_classes=10, width=16)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    before = loc.localization_metrics(loc.predict(model, x), targets)["mean_iou"]
    losses = [loc.train_step(model, x, targets, opt)["loss"] for _ in range(25)]
    after = loc.localization_metrics(loc.predict(model, x), targets)["mean_iou"]
    assert losses[-1] < 0.6 * losses[0]
    assert after > before + 0.1
