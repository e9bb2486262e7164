"""SSD: default boxes, matching and hard negative mining on hand cases, box coding, and the multibox loss
against a plain-loop float64 reference (value and numerical gradient)."""

import math

import numpy as np
import pytest

import shendu
from shendu.autograd.gradcheck import gradcheck
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.detection import ssd


def test_ssd300_has_8732_default_boxes_and_the_paper_scales():
    ratios = [(2,), (2, 3), (2, 3), (2, 3), (2,), (2,)]
    d = ssd.default_boxes([38, 19, 10, 5, 3, 1], ratios, 0.2, 0.9, clip=False)
    assert d.shape == (8732, 4)
    # first box of each map: scale s_k = 0.2 + 0.7 (k - 1) / 5, centred in the top-left cell
    starts = np.cumsum([0] + [f * f * (2 + 2 * len(r)) for f, r in zip([38, 19, 10, 5, 3, 1], ratios)])[:-1]
    for k, (s, f) in enumerate(zip(starts, [38, 19, 10, 5, 3, 1])):
        np.testing.assert_allclose(d[s], [0.5 / f, 0.5 / f, 0.2 + 0.14 * k, 0.2 + 0.14 * k])
    # second box: sqrt(s_k s_{k+1}); then a = 2 and 1/2: w = s sqrt(2), h = s / sqrt(2) and swapped
    np.testing.assert_allclose(d[1, 2:], [math.sqrt(0.2 * 0.34)] * 2)
    np.testing.assert_allclose(d[2, 2:], [0.2 * math.sqrt(2), 0.2 / math.sqrt(2)])
    np.testing.assert_allclose(d[3, 2:], [0.2 / math.sqrt(2), 0.2 * math.sqrt(2)])
    # the last map (one cell) uses the extrapolated s_7 = 1.04 for its extra box
    np.testing.assert_allclose(d[-3, 2:], [math.sqrt(0.9 * 1.04)] * 2)
    # position-major order: the 5th cell of map 1 (row 0, column 4) starts at box 4 * 4
    np.testing.assert_allclose(d[16, :2], [4.5 / 38, 0.5 / 38])
    np.testing.assert_allclose(d[38 * 4, :2], [0.5 / 38, 1.5 / 38])   # row 1, column 0
    assert ssd.default_boxes([38], [(2,)]).max() <= 1.0   # clipped by default


def _xyxy(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_match_hand_cases():
    priors = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5], [0.25, 0.75, 0.5, 0.5],
                       [0.75, 0.75, 0.5, 0.5], [0.3, 0.25, 0.5, 0.5]])
    # truth 0 = prior 0 exactly; prior 4 overlaps it with IoU 0.45/0.55 = 0.818 -> matched too;
    # truth 1: a small box in the bottom-right quadrant, best IoU 0.04 with prior 3 -> forced match only
    gt = np.array([_xyxy(0.25, 0.25, 0.5, 0.5), _xyxy(0.75, 0.75, 0.1, 0.1)])
    assert ssd.match(gt, priors).tolist() == [0, -1, -1, 1, 0]
    # the threshold is inclusive: a default box at IoU exactly 0.5 with truth 0 is a positive
    half = np.array([[0.25, 0.25, 0.5, 0.5], [0.25, 0.125, 0.5, 0.25]])  # the top half of truth 0: IoU 0.5
    assert ssd.match(gt[:1], half).tolist() == [0, 0]
    assert ssd.match(gt[:1], half, threshold=0.51).tolist() == [0, -1]


def test_forced_match_beats_a_higher_iou_and_the_later_truth_keeps_a_shared_box():
    priors = np.array([[0.5, 0.5, 0.4, 0.4], [0.9, 0.9, 0.2, 0.2]])
    # truth 0 overlaps prior 0 with IoU 0.64; truth 1 overlaps prior 0 with IoU 0.16 and prior 1 not at all:
    # both take prior 0 as their best; the later one (truth 1) keeps it, as the reference loop does
    gt = np.array([_xyxy(0.5, 0.5, 0.4, 0.256), _xyxy(0.5, 0.5, 0.16, 0.16)])   # IoU 0.64 and 0.16 with prior 0
    assert ssd.match(gt, priors).tolist() == [1, -1]
    assert ssd.match(gt[:1], priors).tolist() == [0, -1]
    assert ssd.match(np.zeros((0, 4)), priors).tolist() == [-1, -1]


def test_batch_matching_equals_per_image_matching():
    rng = np.random.default_rng(0)
    priors = ssd.default_boxes([4, 2], [(2,), (2, 3)], 0.2, 0.7)
    targets, per_image = [], []
    for k in (3, 0, 1, 4):
        xy = rng.uniform(0, 0.6, (k, 2))
        gt = np.concatenate([xy, xy + rng.uniform(0.05, 0.4, (k, 2))], 1)
        targets.append({"boxes": gt * 32, "labels": rng.integers(1, 4, k)})
        per_image.append((gt, targets[-1]["labels"]))
    labels, offsets = ssd.ssd_targets(targets, priors, (32, 32))
    for n, (gt, lab) in enumerate(per_image):
        m = ssd.match(gt, priors)
        np.testing.assert_array_equal(labels[n], np.where(m >= 0, lab[np.maximum(m, 0)] if len(lab) else 0, 0))
        pos = m >= 0
        np.testing.assert_allclose(offsets[n, pos], ssd.encode(gt[m[pos]], priors[pos]))


def test_encode_by_hand_and_round_trip():
    prior = np.array([[0.5, 0.5, 0.2, 0.4]])
    # centre moved by 0.02 in x = 0.1 of the prior width -> 0.02 / (0.1 * 0.2) = 1; width doubled -> ln 2 / 0.2
    gt = np.array([_xyxy(0.52, 0.5, 0.4, 0.4)])
    np.testing.assert_allclose(ssd.encode(gt, prior), [[1.0, 0.0, math.log(2) / 0.2, 0.0]], atol=1e-12)
    np.testing.assert_allclose(ssd.decode_boxes(ssd.encode(gt, prior), prior), gt, atol=1e-12)


def test_hard_negative_mining_hand_cases():
    loss = np.array([[0.1, 0.9, 0.5, 0.7, 0.3, 0.2],
                     [0.4, 0.4, 0.4, 0.4, 0.4, 0.4],
                     [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    pos = np.array([[False, True, False, False, False, False],   # 1 positive -> the 3 worst negatives
                    [True, True, False, False, False, False],    # 2 positives -> 6 wanted, 4 available
                    [False] * 6])                                # no positive -> no negative
    neg = ssd.hard_negative_mining(loss, pos, 3)
    assert neg.astype(int).tolist() == [[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1], [0] * 6]
    # ties go to the lower index; the ratio is a parameter
    assert ssd.hard_negative_mining(loss[1:2], pos[:1], 2).astype(int).tolist() == [[1, 0, 1, 0, 0, 0]]


# ------------------------------------------------------------------------------------------ the loss
def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference_loss(loc, conf, priors, targets, size, ratio=3, alpha=1.0):
    """Matching, mining and the multibox loss with plain loops (float64), following the paper and the
    reference code (forced best default box per truth, later truth wins; IoU >= 0.5; 3:1 mining)."""
    H, W = size
    N, P, C1 = conf.shape
    pboxes = [_xyxy(*p) for p in priors]
    total_conf = total_loc = 0.0
    num_pos = 0
    for n in range(N):
        gts = [[b[0] / W, b[1] / H, b[2] / W, b[3] / H] for b in targets[n]["boxes"]]
        labels = list(targets[n]["labels"])
        best_gt, best_iou = [-1] * P, [-1.0] * P
        for p in range(P):
            for g, gt in enumerate(gts):
                o = _iou(gt, pboxes[p])
                if o > best_iou[p]:
                    best_iou[p], best_gt[p] = o, g
        for g, gt in enumerate(gts):
            ious = [_iou(gt, pb) for pb in pboxes]
            p = int(np.argmax(ious))
            best_gt[p], best_iou[p] = g, 2.0
        matched = [best_gt[p] if best_iou[p] >= 0.5 else -1 for p in range(P)]
        ce = []
        for p in range(P):
            z = conf[n, p]
            lse = max(z) + math.log(sum(math.exp(v - max(z)) for v in z))
            target = labels[matched[p]] if matched[p] >= 0 else 0
            ce.append(lse - z[target])
        positives = [p for p in range(P) if matched[p] >= 0]
        negatives = sorted((p for p in range(P) if matched[p] < 0), key=lambda p: -ce[p])
        chosen = negatives[:min(ratio * len(positives), len(negatives))]
        total_conf += sum(ce[p] for p in positives + chosen)
        for p in positives:
            g = gts[matched[p]]
            cx, cy, w, h = priors[p]
            t = [((g[0] + g[2]) / 2 - cx) / (0.1 * w), ((g[1] + g[3]) / 2 - cy) / (0.1 * h),
                 math.log((g[2] - g[0]) / w) / 0.2, math.log((g[3] - g[1]) / h) / 0.2]
            for d in range(4):
                e = abs(loc[n, p, d] - t[d])
                total_loc += 0.5 * e * e if e < 1 else e - 0.5
        num_pos += len(positives)
    if num_pos == 0:
        return 0.0
    return (total_conf + alpha * total_loc) / num_pos


def _random_case(seed, N=3, C=3, size=(32, 48)):
    rng = np.random.default_rng(seed)
    priors = ssd.default_boxes([4, 2, 1], [(2,), (2, 3), ()], 0.2, 0.8)
    P = len(priors)
    loc = rng.normal(0, 1, (N, P, 4))
    conf = rng.normal(0, 1, (N, P, C + 1))
    targets = []
    for n in range(N):
        k = int(rng.integers(0, 4))
        xy = rng.uniform(0, 0.6, (k, 2))
        wh = rng.uniform(0.1, 0.4, (k, 2))
        targets.append({"boxes": np.concatenate([xy, xy + wh], 1) * np.array([size[1], size[0]] * 2),
                        "labels": rng.integers(1, C + 1, k)})
    return loc, conf, priors, targets, size


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_loss_matches_loop_reference(seed):
    loc, conf, priors, targets, size = _random_case(seed)
    loss, parts = ssd.ssd_loss(shendu.tensor(loc), shendu.tensor(conf), priors, targets, size)
    ref = _reference_loss(loc, conf, priors, targets, size)
    assert loss.item() == pytest.approx(ref, rel=1e-10)
    assert parts["positives"] > 0


def test_loss_gradient_and_float32():
    loc, conf, priors, targets, size = _random_case(7, N=2)
    l32, _ = ssd.ssd_loss(shendu.tensor(loc.astype(np.float32)), shendu.tensor(conf.astype(np.float32)), priors,
                          targets, size)
    assert l32.dtype == shendu.float32
    assert l32.item() == pytest.approx(_reference_loss(loc, conf, priors, targets, size), rel=1e-5)
    # mining is a constant selection; random logits keep the losses apart, so central differences see no switch
    a, b = shendu.tensor(loc, requires_grad=True), shendu.tensor(conf, requires_grad=True)
    assert gradcheck(lambda x, y: ssd.ssd_loss(x, y, priors, targets, size)[0], (a, b))


def test_no_positive_gives_zero_loss_with_a_gradient():
    loc, conf, priors, _, size = _random_case(0, N=2)
    a, b = shendu.tensor(loc, requires_grad=True), shendu.tensor(conf, requires_grad=True)
    empty = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}] * 2
    loss, parts = ssd.ssd_loss(a, b, priors, empty, size)
    assert loss.item() == 0.0 and parts["positives"] == 0
    loss.backward()
    assert np.all(a.grad.numpy() == 0) and np.all(b.grad.numpy() == 0)


def test_loss_errors():
    loc, conf, priors, targets, size = _random_case(0)
    with pytest.raises(ShapeError, match="ssd_loss"):
        ssd.ssd_loss(shendu.tensor(loc[:, :-1]), shendu.tensor(conf), priors, targets, size)
    with pytest.raises(ArgumentError, match="3 targets for a batch of 2"):
        ssd.ssd_loss(shendu.tensor(loc[:2]), shendu.tensor(conf[:2]), priors, targets, size)
    with pytest.raises(ArgumentError, match="aspect-ratio"):
        ssd.default_boxes([4, 2], [(2,)])


def test_model_priors_follow_the_head_layout():
    model = ssd.SSD(num_classes=3, width=8).eval()
    loc, conf, priors = model(shendu.randn(1, 1, 32, 32))
    assert loc.shape == (1, len(priors), 4) and conf.shape == (1, len(priors), 4)
    np.testing.assert_allclose(priors, ssd.default_boxes([4, 2, 1], [(2,), (2, 3), (2,)], 0.15, 0.6))


def test_model_trains_on_one_batch_and_predicts():
    from shendu import optim

    shendu.manual_seed(0)
    model = ssd.SSD(num_classes=3, width=8)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    images = shendu.tensor(rng.random((2, 1, 32, 32)).astype(np.float32))
    targets = [{"boxes": [[2, 3, 14, 20]], "labels": [1]}, {"boxes": [[10, 8, 30, 22], [0, 0, 8, 8]], "labels": [3, 2]}]
    losses = [ssd.train_step(model, images, targets, opt)["loss"] for _ in range(8)]
    assert losses[-1] < 0.7 * losses[0]
    dets = ssd.predict(model, images, score_thresh=0.01)
    assert len(dets) == 2 and set(dets[0]) == {"boxes", "scores", "labels"}
    assert np.all(np.diff(dets[0]["scores"]) <= 0) and dets[0]["labels"].min() >= 1
