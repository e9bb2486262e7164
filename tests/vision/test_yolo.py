"""YOLO v1: grid targets by hand, the loss against a plain-loop float64 reference (value and numerical
gradient), decoding and NMS."""

import math

import numpy as np
import pytest

import shendu
from shendu.autograd.gradcheck import gradcheck
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.detection import yolo


def test_targets_by_hand():
    # 64 x 64 image, S = 4 (16 px cells). Box (4, 4)-(20, 24): centre (12, 14) -> cell row 0, column 0;
    # x = 12/16, y = 14/16 in the cell; w = 16/64, h = 20/64 of the image; label 3 -> class index 2.
    # Second box: centre (50, 40) -> row 2, column 3. Third box: centre (10, 10) shares cell (0, 0): dropped.
    targets = [{"boxes": [[4, 4, 20, 24], [40, 30, 60, 50], [5, 5, 15, 15]], "labels": [3, 1, 7]}]
    obj, box, cls = yolo.yolo_targets(targets, 4, 10, (64, 64))
    assert obj.sum() == 2 and obj[0, 0, 0] and obj[0, 2, 3]
    np.testing.assert_allclose(box[0, 0, 0], [0.75, 0.875, 0.25, 0.3125])
    np.testing.assert_allclose(box[0, 2, 3], [50 / 16 - 3, 40 / 16 - 2, 20 / 64, 20 / 64])
    assert cls[0, 0, 0].argmax() == 2 and cls[0, 2, 3].argmax() == 0 and cls.sum() == 2


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_loss(pred, targets, image_size, B, lc=5.0, ln=0.5, conf_target="iou"):
    """The paper's loss with plain loops over images, cells and predictors (float64)."""
    N, S = pred.shape[0], pred.shape[1]
    C = pred.shape[3] - 5 * B
    H, W = image_size
    parts = {"coord": 0.0, "obj": 0.0, "noobj": 0.0, "cls": 0.0}
    for n in range(N):
        cells = {}
        for box, label in zip(targets[n]["boxes"], targets[n]["labels"]):
            cx, cy = (box[0] + box[2]) / 2 / W, (box[1] + box[3]) / 2 / H
            key = (min(int(cy * S), S - 1), min(int(cx * S), S - 1))
            if key not in cells:  # the first truth of a cell wins
                cells[key] = (cx, cy, (box[2] - box[0]) / W, (box[3] - box[1]) / H, label)
        for i in range(S):
            for j in range(S):
                p = pred[n, i, j]
                if (i, j) not in cells:
                    for b in range(B):
                        parts["noobj"] += ln * p[5 * b + 4] ** 2
                    continue
                cx, cy, w, h, label = cells[(i, j)]
                truth = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                ious = []
                for b in range(B):
                    x, y, pw, ph = p[5 * b:5 * b + 4]
                    pcx, pcy = (j + x) / S, (i + y) / S
                    ious.append(_iou([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2], truth))
                r = int(np.argmax(ious))
                for b in range(B):
                    x, y, pw, ph, conf = p[5 * b:5 * b + 5]
                    if b != r:
                        parts["noobj"] += ln * conf ** 2
                        continue
                    tx, ty = cx * S - j, cy * S - i
                    parts["coord"] += lc * ((x - tx) ** 2 + (y - ty) ** 2
                                            + (math.sqrt(max(pw, 1e-9)) - math.sqrt(w)) ** 2
                                            + (math.sqrt(max(ph, 1e-9)) - math.sqrt(h)) ** 2)
                    goal = ious[b] if conf_target == "iou" else 1.0
                    parts["obj"] += (conf - goal) ** 2
                for c in range(C):
                    parts["cls"] += (p[5 * B + c] - (1.0 if c == label - 1 else 0.0)) ** 2
    return {k: v / N for k, v in parts.items()}


def _random_case(seed, N=3, S=4, B=2, C=3, size=(48, 64)):
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0.02, 0.98, (N, S, S, 5 * B + C))
    targets = []
    for n in range(N):
        k = int(rng.integers(0, 5))
        xy = rng.uniform(0, 0.7, (k, 2)) * [size[1], size[0]]
        wh = rng.uniform(0.1, 0.3, (k, 2)) * [size[1], size[0]]
        targets.append({"boxes": np.concatenate([xy, xy + wh], 1), "labels": rng.integers(1, C + 1, k)})
    return pred, targets, size


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("conf_target", ["iou", "one"])
def test_loss_matches_loop_reference(seed, conf_target):
    pred, targets, size = _random_case(seed)
    loss, parts = yolo.yolo_loss(shendu.tensor(pred), targets, size, conf_target=conf_target)
    ref = _reference_loss(pred, targets, size, 2, conf_target=conf_target)
    for k in ref:
        assert parts[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-12), k
    assert loss.item() == pytest.approx(sum(ref.values()), rel=1e-12)


def test_loss_float32_and_gradient():
    pred, targets, size = _random_case(5, N=2, S=3, C=2)
    loss32, _ = yolo.yolo_loss(shendu.tensor(pred.astype(np.float32), requires_grad=True), targets, size)
    assert loss32.dtype == shendu.float32
    ref = sum(_reference_loss(pred, targets, size, 2).values())
    assert loss32.item() == pytest.approx(ref, rel=1e-5)
    # float64 central differences. The responsible choice is piecewise constant (inputs stay off ties); the
    # IoU confidence target is a constant by design, so the check uses the target 1.
    x = shendu.tensor(pred, requires_grad=True)
    assert gradcheck(lambda p: yolo.yolo_loss(p, targets, size, conf_target="one")[0], (x,))


def test_gradient_reaches_only_the_terms_of_the_paper():
    # one truth in cell (1, 2) of a 4 x 4 grid; predictor 1 overlaps it best -> responsible
    S, B, C = 4, 2, 3
    pred = np.full((1, S, S, 5 * B + C), 0.5)
    pred[0, 1, 2, 0:4] = [0.1, 0.1, 0.05, 0.05]   # predictor 0: a tiny box far from the truth
    pred[0, 1, 2, 5:9] = [0.5, 0.5, 0.25, 0.25]   # predictor 1: exactly the truth
    x = shendu.tensor(pred, requires_grad=True)
    targets = [{"boxes": [[16, 8, 24, 16]], "labels": [2]}]   # 32 x 32 px image: 8 px cells, centre (20, 12)
    loss, _ = yolo.yolo_loss(x, targets, (32, 32))
    loss.backward()
    g = x.grad.numpy()[0]
    assert np.all(g[1, 2, 0:4] == 0)            # no coordinate loss for the non-responsible predictor
    np.testing.assert_allclose(g[1, 2, 5:9], 0, atol=1e-12)   # the responsible one is exact already
    # confidences: responsible pulled towards IoU 1 -> 2 * (0.5 - 1); the other as noobj: 2 * 0.5 * 0.5
    assert g[1, 2, 9] == pytest.approx(-1.0) and g[1, 2, 4] == pytest.approx(0.5)
    # class probabilities only in the object cell; other cells only get the noobj confidence gradient
    np.testing.assert_allclose(g[1, 2, 10:], [1.0, -1.0, 1.0])
    assert np.all(g[0, 0, 10:] == 0) and np.all(g[0, 0, :4] == 0) and g[0, 0, 4] == pytest.approx(0.5)


def test_loss_errors():
    with pytest.raises(ShapeError, match="yolo_loss"):
        yolo.yolo_loss(shendu.rand(2, 4, 5, 13), [{}, {}], (32, 32))
    with pytest.raises(ArgumentError, match="2 targets for a batch of 1"):
        yolo.yolo_loss(shendu.rand(1, 4, 4, 13), [{"boxes": [], "labels": []}] * 2, (32, 32))
    with pytest.raises(ArgumentError, match="labels must be in 1..3"):
        yolo.yolo_loss(shendu.rand(1, 4, 4, 13), [{"boxes": [[0, 0, 4, 4]], "labels": [0]}], (32, 32))


def test_decode_and_predict():
    S, B, C = 2, 2, 2
    pred = np.zeros((1, S, S, 5 * B + C), np.float32)
    # cell (row 1, column 0) of a 40 x 40 image (20 px cells): centre (0.5, 0.5) of the cell -> (10, 30) px,
    # w = 0.5, h = 0.25 of the image -> 20 x 10 px; confidence 0.8, p = (0.25, 0.75)
    pred[0, 1, 0, 0:5] = [0.5, 0.5, 0.5, 0.25, 0.8]
    pred[0, 1, 0, 5:10] = [0.55, 0.5, 0.5, 0.25, 0.6]   # a near-duplicate, lower confidence
    pred[0, 1, 0, 10:] = [0.25, 0.75]
    boxes, scores = yolo.decode(pred, (40, 40), B)
    k = (1 * S + 0) * B   # candidate order: row, column, predictor
    np.testing.assert_allclose(boxes[0, k], [0, 25, 20, 35])
    np.testing.assert_allclose(scores[0, k], [0.2, 0.6])
    dets = yolo.postprocess(boxes, scores, score_thresh=0.1, nms_thresh=0.45)[0]
    # class 2 keeps the confident box and suppresses its duplicate; class 1 keeps one box (0.2), and the
    # duplicate's 0.15 in class 1 is suppressed too
    assert dets["labels"].tolist() == [2, 1]
    np.testing.assert_allclose(dets["scores"], [0.6, 0.2], rtol=1e-6)
    np.testing.assert_allclose(dets["boxes"][0], [0, 25, 20, 35])


def test_model_trains_on_one_batch():
    from shendu import optim

    shendu.manual_seed(0)
    model = yolo.YOLOv1(num_classes=3, width=8)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    images = shendu.tensor(rng.random((2, 1, 32, 32)).astype(np.float32))
    targets = [{"boxes": [[2, 3, 14, 20]], "labels": [1]}, {"boxes": [[10, 8, 30, 22], [0, 0, 8, 8]], "labels": [3, 2]}]
    losses = [yolo.train_step(model, images, targets, opt)["loss"] for _ in range(8)]
    assert losses[-1] < 0.7 * losses[0]
    dets = yolo.predict(model, images)
    assert len(dets) == 2 and dets[0]["boxes"].shape[1] == 4 and dets[0]["boxes"].dtype == np.float32
