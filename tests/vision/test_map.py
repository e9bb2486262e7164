"""Detection mAP: hand-worked precision/recall tables, a plain-loop port of py-faster-rcnn's ``voc_eval`` and,
when installed, pycocotools' COCOeval as references."""

import numpy as np
import pytest

from shendu.errors import ArgumentError
from shendu.vision.metrics.detection import average_precision, evaluate_detections, match_detections, precision_recall

# One class, 4 ground-truth boxes; six detections by descending score:
#
#   k  score  TP/FP  cumTP cumFP  precision  recall  envelope
#   1   0.9    TP      1     0      1          0.25     1
#   2   0.8    FP      1     1      1/2        0.25     3/4
#   3   0.7    TP      2     1      2/3        0.50     3/4
#   4   0.6    TP      3     1      3/4        0.75     3/4
#   5   0.5    FP      3     2      3/5        0.75     3/5
#   6   0.4    FP      3     3      1/2        0.75     1/2
#
# all-point: 0.25*1 + 0.25*3/4 + 0.25*3/4 + 0.25*0                    = 0.625
# 11-point:  t = 0, .1, .2 -> 1; t = .3 ... .7 -> 3/4; t = .8, .9, 1 -> 0  = (3 + 5*0.75)/11
# 101-point: t = 0 .. .25 (26 values) -> 1; .26 .. .75 (50) -> 3/4; .76 .. 1 (25) -> 0 = (26 + 37.5)/101
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
TP = [True, False, True, True, False, False]
PRECISION = [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5, 1 / 2]
RECALL = [0.25, 0.25, 0.5, 0.75, 0.75, 0.75]


def test_precision_recall_table():
    order = [3, 0, 5, 2, 1, 4]  # given shuffled: the function sorts by score
    p, r = precision_recall(np.array(SCORES)[order], np.array(TP)[order], num_gt=4)
    np.testing.assert_allclose(p, PRECISION)
    np.testing.assert_allclose(r, RECALL)


def test_average_precision_hand_values():
    assert average_precision(RECALL, PRECISION, "voc") == pytest.approx(0.625)
    assert average_precision(RECALL, PRECISION, "voc07") == pytest.approx((3 + 5 * 0.75) / 11)
    assert average_precision(RECALL, PRECISION, "coco") == pytest.approx((26 + 37.5) / 101)


def test_average_precision_edges():
    # nothing detected: AP 0 everywhere
    for m in ("voc", "voc07", "coco"):
        assert average_precision([], [], m) == 0.0
    # perfect ranking that finds everything: AP 1
    for m in ("voc", "voc07", "coco"):
        assert average_precision([0.5, 1.0], [1.0, 1.0], m) == pytest.approx(1.0)
    # recall stops at 0.5 with precision 1: the 11-point rule counts t = 0 .. 0.5 (6 of 11); COCO 51 of 101
    assert average_precision([0.5], [1.0], "voc07") == pytest.approx(6 / 11)
    assert average_precision([0.5], [1.0], "coco") == pytest.approx(51 / 101)
    assert average_precision([0.5], [1.0], "voc") == pytest.approx(0.5)
    # a recall of exactly 0.3 reaches the 0.3 threshold (exact tenths)
    assert average_precision([0.3], [1.0], "voc07") == pytest.approx(4 / 11)
    with pytest.raises(ArgumentError, match="unknown method"):
        average_precision([0.5], [1.0], "voc12")


def test_matching_rules():
    # detections already in score order; the second one overlaps box 0 (taken) more than box 1
    ious = np.array([[0.9, 0.0], [0.8, 0.6], [0.5, 0.1]])
    coco = match_detections(ious, [0.5, 0.7], "coco")
    voc = match_detections(ious, [0.5, 0.7], "voc")
    # COCO: det 1 falls back to the free box 1 at t = 0.5; det 2 finds nothing free; at 0.7 only det 0 matches
    assert coco.tolist() == [[True, True, False], [True, False, False]]
    # VOC: det 1's best box is taken -> FP (even though box 1 is free above 0.5); det 2 likewise
    assert voc.tolist() == [[True, False, False], [True, False, False]]
    # IoU exactly at the threshold is a match (>=)
    assert match_detections(np.array([[0.5]]), [0.5], "voc").tolist() == [[True]]
    assert match_detections(np.zeros((2, 0)), [0.5]).tolist() == [[False, False]]


def _box(x, y, w, h):
    return [x, y, x + w, y + h]


def test_evaluate_detections_hand_case():
    # class 1: two truths in image 0, one in image 1; class 2: one truth in image 1
    targets = [
        {"boxes": [_box(0, 0, 10, 10), _box(20, 20, 10, 10)], "labels": [1, 1]},
        {"boxes": [_box(0, 0, 10, 10), _box(40, 40, 10, 10)], "labels": [1, 2]},
    ]
    preds = [
        # 0.9: TP (exact); 0.8: duplicate of the same box -> FP; 0.3: the second truth with IoU 0.81/1.19
        {"boxes": [_box(0, 0, 10, 10), _box(0, 0, 10, 10), _box(21, 21, 9, 9)], "scores": [0.9, 0.8, 0.3],
         "labels": [1, 1, 1]},
        # 0.6: class-1 box far from everything -> FP; 0.7: the class-2 truth but labelled 1 -> FP for class 1;
        # 0.5: class 2, IoU 0.64 with its truth
        {"boxes": [_box(60, 60, 5, 5), _box(40, 40, 10, 10), _box(40, 40, 10, 8)], "scores": [0.6, 0.7, 0.5],
         "labels": [1, 1, 2]},
    ]
    # class 1 by score: 0.9 TP, 0.8 FP, 0.7 FP, 0.6 FP, 0.3 TP (IoU 0.81 >= 0.5); image 1's truth never found
    #   precision 1, 1/2, 1/3, 1/4, 2/5; recall 1/3, 1/3, 1/3, 1/3, 2/3
    #   all-point AP = 1/3 * 1 + 1/3 * 2/5 = 7/15
    #   11-point: t = 0 .. .3 -> 1 (4 values); t = .4 .. .6 -> 2/5 (3 values); rest 0 -> (4 + 1.2)/11
    # class 2: one TP at IoU 0.8 -> AP 1 at 0.5; COCO: TP for t <= 0.8 -> 7 of 10 thresholds
    r = evaluate_detections(preds, targets)
    c1, c2 = r["per_class"][1], r["per_class"][2]
    assert c1["num_gt"] == 3 and c2["num_gt"] == 1
    assert c1["ap_50"] == pytest.approx(7 / 15)
    assert c1["ap_50_voc07"] == pytest.approx((4 + 1.2) / 11)
    assert c2["ap_50"] == pytest.approx(1.0) and c2["ap"] == pytest.approx(0.7)
    assert r["map_50"] == pytest.approx((7 / 15 + 1) / 2)
    # class 1 in COCO at 0.5: same TP/FP list -> 101-point: t <= 1/3 (34 values) -> 1, t <= 2/3 (33) -> 0.4
    assert c1["ap_per_threshold"][0] == pytest.approx((34 + 33 * 0.4) / 101)
    # IoU 0.81 fails from 0.85 on: class 1 is then 1 TP of 3 -> 34/101
    assert c1["ap_per_threshold"][-1] == pytest.approx(34 / 101)
    assert r["map_75"] == pytest.approx(((34 + 33 * 0.4) / 101 + 1) / 2)


def test_classes_without_truth_are_left_out_and_missed_classes_count_zero():
    targets = [{"boxes": [_box(0, 0, 10, 10), _box(30, 30, 10, 10)], "labels": [1, 2]}]
    preds = [{"boxes": [_box(0, 0, 10, 10), _box(50, 50, 5, 5)], "scores": [0.9, 0.8], "labels": [1, 3]}]
    r = evaluate_detections(preds, targets)
    assert sorted(r["per_class"]) == [1, 2]        # class 3 has no truth: excluded
    assert r["per_class"][2]["ap_50"] == 0.0        # class 2 has truth but no detection
    assert r["map_50"] == pytest.approx(0.5)


def test_bad_input():
    with pytest.raises(ArgumentError, match="2 predictions but 1 targets"):
        evaluate_detections([{"boxes": [], "scores": [], "labels": []}] * 2, [{"boxes": [], "labels": []}])
    with pytest.raises(ArgumentError, match="lacks"):
        evaluate_detections([{"boxes": [], "labels": []}], [{"boxes": [], "labels": []}])


# -------------------------------------------------------------------------------- references on random sets
def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _voc_ap(rec, prec, use_07_metric):
    """py-faster-rcnn's voc_ap, with the 11 thresholds as exact tenths."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(11) / 10:
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def _voc_eval(preds, targets, cls, use_07_metric):
    """py-faster-rcnn's voc_eval loop (no difficult boxes; IoU >= 0.5 and no +1, our stated conventions)."""
    gts = {i: [b for b, lab in zip(t["boxes"], t["labels"]) if lab == cls] for i, t in enumerate(targets)}
    taken = {i: [False] * len(g) for i, g in gts.items()}
    npos = sum(len(g) for g in gts.values())
    dets = [(s, i, b) for i, p in enumerate(preds) for b, s, lab in zip(p["boxes"], p["scores"], p["labels"])
            if lab == cls]
    dets.sort(key=lambda d: -d[0])  # stable, as mergesort
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for d, (_, i, b) in enumerate(dets):
        ovmax, jmax = -np.inf, -1
        for j, g in enumerate(gts[i]):
            o = _iou(b, g)
            if o > ovmax:
                ovmax, jmax = o, j
        if ovmax >= 0.5 and not taken[i][jmax]:
            tp[d], taken[i][jmax] = 1, True
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return _voc_ap(rec, prec, use_07_metric)


def _random_set(seed, images=25, classes=3):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(images):
        g = rng.integers(0, 5)
        xy = rng.uniform(0, 80, (g, 2))
        wh = rng.uniform(5, 30, (g, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        gl = rng.integers(1, classes + 1, g)
        # detections: jittered copies of some truths (some duplicated), plus random boxes
        k = rng.integers(0, 2 * g + 1) if g else 0
        src = rng.integers(0, g, k) if g else np.zeros(0, int)
        jit = gt[src] + rng.normal(0, 3, (k, 4))
        jit[:, 2:] = np.maximum(jit[:, 2:], jit[:, :2] + 1)
        m = rng.integers(0, 4)
        rxy = rng.uniform(0, 80, (m, 2))
        rnd = np.concatenate([rxy, rxy + rng.uniform(5, 30, (m, 2))], 1)
        labels = np.concatenate([np.where(rng.random(k) < 0.85, gl[src], rng.integers(1, classes + 1, k)),
                                 rng.integers(1, classes + 1, m)])
        preds.append({"boxes": np.concatenate([jit, rnd]), "scores": rng.random(k + m), "labels": labels})
        targets.append({"boxes": gt, "labels": gl})
    return preds, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_matches_voc_eval_port(seed):
    preds, targets = _random_set(seed)
    r = evaluate_detections(preds, targets)
    for c, entry in r["per_class"].items():
        assert entry["ap_50"] == pytest.approx(_voc_eval(preds, targets, c, False), abs=1e-12)
        assert entry["ap_50_voc07"] == pytest.approx(_voc_eval(preds, targets, c, True), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_coco_matches_pycocotools(seed):
    pytest.importorskip("pycocotools", reason="pycocotools is not installed (pip install pycocotools)")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    preds, targets = _random_set(seed, images=30)
    xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
    images = [{"id": i + 1} for i in range(len(targets))]
    anns = [{"id": len(images) * 10 + n, "image_id": i + 1, "category_id": int(lab), "bbox": xywh(b),
             "area": float((b[2] - b[0]) * (b[3] - b[1])), "iscrowd": 0}
            for i, t in enumerate(targets) for n, (b, lab) in enumerate(zip(t["boxes"], t["labels"]))]
    for k, a in enumerate(anns):
        a["id"] = k + 1
    dets = [{"image_id": i + 1, "category_id": int(lab), "bbox": xywh(b), "score": float(s)}
            for i, p in enumerate(preds) for b, s, lab in zip(p["boxes"], p["scores"], p["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in (1, 2, 3)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    r = evaluate_detections(preds, targets)
    # pycocotools divides by tp + fp + spacing(1) rather than tp + fp: a 1e-16 relative difference
    assert r["map"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert r["map_50_coco"] == pytest.approx(ev.stats[1], abs=1e-9)
    assert r["map_75"] == pytest.approx(ev.stats[2], abs=1e-9)
