"""The R-CNN family: matcher and sampler against plain loops, the RPN's anchor layout, targets, losses and
proposal filtering, the Fast R-CNN head's labelling, loss (against PyTorch) and post-processing, R-CNN's
warping and SVM stage, and short training runs of the three detectors on tiny inputs."""

import math

import numpy as np
import pytest
import torch

import shendu
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.detection import fast_rcnn, rcnn, rpn
from shendu.vision.ops import AnchorGenerator

# ------------------------------------------------------------------------------------------ references


def iou_loop(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h
            out[i, j] = w * h / union if union > 0 else 0.0
    return out


def match_loop(iou, high, low, low_quality):
    g, n = iou.shape
    out = []
    for j in range(n):
        if g == 0:
            out.append(-1)
            continue
        best = max(range(g), key=lambda i: (iou[i, j], -i))  # first index among ties, like argmax
        v = iou[best, j]
        out.append(best if v >= high else (-1 if v < low else -2))
    if low_quality:
        for i in range(g):
            top = max(iou[i])
            if top <= 0:
                continue
            for j in range(n):
                if iou[i, j] == top:
                    out[j] = max(range(g), key=lambda r: (iou[r, j], -r))
    return np.array(out)


def encode_loop(gt, ref, weights):
    wx, wy, ww, wh = weights
    out = []
    for g, r in zip(gt, ref):
        rw, rh = r[2] - r[0], r[3] - r[1]
        rx, ry = r[0] + rw / 2, r[1] + rh / 2
        gw, gh = g[2] - g[0], g[3] - g[1]
        gx, gy = g[0] + gw / 2, g[1] + gh / 2
        out.append([wx * (gx - rx) / rw, wy * (gy - ry) / rh, ww * math.log(gw / rw), wh * math.log(gh / rh)])
    return np.array(out).reshape(-1, 4)


def smooth_l1_loop(d, beta):
    d = abs(d)
    return 0.5 * d * d / beta if d < beta else d - 0.5 * beta


def nms_loop(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(iou_loop(boxes[i:i + 1], boxes[k:k + 1])[0, 0] <= thr for k in keep):
            keep.append(i)
    return keep


def random_boxes(rng, n, size=64.0, min_side=4.0):
    xy = rng.uniform(0, size - min_side, (n, 2))
    wh = rng.uniform(min_side, size / 2, (n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, size)], 1).astype(np.float32)


# ------------------------------------------------------------------------------------------ matcher, sampler


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("low_quality", [False, True])
def test_match_boxes_matches_loop(seed, low_quality):
    rng = np.random.default_rng(seed)
    gt, cand = random_boxes(rng, 1 + seed), random_boxes(rng, 40)
    cand[:3] = gt[0]  # exact ties for the best candidate of GT 0
    iou = iou_loop(gt, cand)
    assert np.allclose(rpn.pairwise_iou(gt, cand), iou, atol=1e-6)
    got = rpn.match_boxes(iou, 0.7, 0.3, low_quality)
    assert np.array_equal(got, match_loop(iou, 0.7, 0.3, low_quality))


def test_match_boxes_hand_cases():
    iou = np.array([[0.7, 0.69, 0.3, 0.29, 0.0]])
    assert rpn.match_boxes(iou, 0.7, 0.3).tolist() == [0, -2, -2, -1, -1]  # >= high fg, < low bg
    assert rpn.match_boxes(np.zeros((0, 3)), 0.7, 0.3).tolist() == [-1, -1, -1]
    # a GT overlapping nothing does not turn every zero-IoU anchor positive
    iou = np.array([[0.8, 0.1], [0.0, 0.0]])
    assert rpn.match_boxes(iou, 0.7, 0.3, True).tolist() == [0, -1]
    # low-quality: GT 1's best anchor (0.4) becomes positive although 0.4 < 0.7
    iou = np.array([[0.9, 0.2, 0.0], [0.1, 0.4, 0.35]])
    assert rpn.match_boxes(iou, 0.7, 0.3, True).tolist() == [0, 1, -2]


@pytest.mark.parametrize("n_pos,n_neg", [(100, 500), (10, 500), (10, 20), (0, 5)])
def test_sample_balanced_counts_and_membership(n_pos, n_neg):
    rng = np.random.default_rng(0)
    labels = np.r_[rng.integers(1, 4, n_pos), np.zeros(n_neg, np.int64), -np.ones(7, np.int64)]
    rng.shuffle(labels)
    shendu.manual_seed(3)
    pos, neg = rpn.sample_balanced(labels, 256, 0.5)
    assert len(pos) == min(128, n_pos) and len(neg) == min(256 - len(pos), n_neg)
    assert (labels[pos] >= 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == len(pos) and len(set(neg.tolist())) == len(neg)
    shendu.manual_seed(3)
    again = rpn.sample_balanced(labels, 256, 0.5)
    assert np.array_equal(pos, again[0]) and np.array_equal(neg, again[1])  # seeded by shendu.manual_seed


# ------------------------------------------------------------------------------------------ RPN


def test_head_output_order_matches_anchor_order():
    # anchors of a 3x4 map with A = 6; the head's channel a of position (y, x) must land on row (y*4 + x)*6 + a
    gen = AnchorGenerator(((8, 16),), ((0.5, 1.0, 2.0),))
    anchors = gen(shendu.zeros(1, 1, 24, 32), [shendu.zeros(1, 2, 3, 4)])[0].numpy()
    A, H, W = 6, 3, 4
    obj = np.zeros((1, A, H, W), np.float32)
    deltas = np.zeros((1, 4 * A, H, W), np.float32)
    for a in range(A):
        for y in range(H):
            for x in range(W):
                obj[0, a, y, x] = 100 * y + 10 * x + a
                for c in range(4):
                    deltas[0, 4 * a + c, y, x] = 1000 * c + 100 * y + 10 * x + a
    o, d = rpn.flatten_head_outputs(shendu.tensor(obj), shendu.tensor(deltas))
    o, d = o.numpy()[0], d.numpy()[0]
    base = AnchorGenerator.generate_anchors((8, 16), (0.5, 1.0, 2.0)).numpy()
    for r in range(H * W * A):
        y, x, a = r // (W * A), (r // A) % W, r % A
        assert o[r] == 100 * y + 10 * x + a
        assert d[r].tolist() == [1000 * c + 100 * y + 10 * x + a for c in range(4)]
        assert np.allclose(anchors[r], base[a] + [8 * x, 8 * y, 8 * x, 8 * y])


def _rpn(**kw):
    gen = AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),))
    return rpn.RegionProposalNetwork(gen, rpn.RPNHead(4, 6), **kw)


def test_rpn_assign_targets_matches_loop():
    rng = np.random.default_rng(1)
    anchors = random_boxes(rng, 60)
    targets = [{"boxes": random_boxes(rng, 3), "labels": np.array([1, 2, 3])},
               {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}]
    labels, matched = _rpn().assign_targets(anchors, targets)
    m = match_loop(iou_loop(targets[0]["boxes"], anchors), 0.7, 0.3, True)
    assert labels[0].tolist() == [1 if v >= 0 else (0 if v == -1 else -1) for v in m]
    fg = m >= 0
    assert np.array_equal(matched[0][fg], targets[0]["boxes"][m[fg]])
    assert (labels[1] == 0).all()  # no ground truth: every anchor is background


def test_rpn_loss_matches_loop_and_torch(monkeypatch):
    rng = np.random.default_rng(2)
    n, m = 2, 30
    anchors = random_boxes(rng, m)
    labels = rng.choice([-1, 0, 1], size=(n, m), p=[0.2, 0.5, 0.3])
    matched = np.stack([random_boxes(rng, m) for _ in range(n)])
    obj = rng.normal(size=(n, m)).astype(np.float32)
    deltas = rng.normal(scale=0.3, size=(n, m, 4)).astype(np.float32)
    net = _rpn(batch_size_per_image=12, positive_fraction=0.5)
    # a deterministic sampler: the first positives and negatives in index order
    monkeypatch.setattr(rpn, "sample_balanced", lambda lab, b, f, generator=None: (
        np.flatnonzero(lab >= 1)[:int(b * f)], np.flatnonzero(lab == 0)[:b - min(int(b * f), (lab >= 1).sum())]))
    o, d = shendu.tensor(obj, requires_grad=True), shendu.tensor(deltas, requires_grad=True)
    losses = net.compute_loss(o, d, anchors, labels, matched)
    # plain loop over the sampled anchors
    bce, box, count = 0.0, 0.0, 0
    pos_all, neg_all = [], []
    for i in range(n):
        pos = [j for j in range(m) if labels[i, j] >= 1][:6]
        neg = [j for j in range(m) if labels[i, j] == 0][:12 - len(pos)]
        pos_all += [(i, j) for j in pos]
        neg_all += [(i, j) for j in neg]
        for j in pos + neg:
            y = 1.0 if j in pos else 0.0
            x = float(obj[i, j])
            bce += max(x, 0) - x * y + math.log1p(math.exp(-abs(x)))
            count += 1
        t = encode_loop(matched[i][pos], anchors[pos], (1, 1, 1, 1))
        for k, j in enumerate(pos):
            box += sum(smooth_l1_loop(float(deltas[i, j, c]) - t[k, c], 1 / 9) for c in range(4))
    assert losses["loss_objectness"].item() == pytest.approx(bce / count, rel=1e-5)
    assert losses["loss_rpn_box_reg"].item() == pytest.approx(box / count, rel=1e-4)
    # gradients against torch on the same sample
    (losses["loss_objectness"] + losses["loss_rpn_box_reg"]).backward()
    to, td = torch.tensor(obj, requires_grad=True), torch.tensor(deltas, requires_grad=True)
    idx = pos_all + neg_all
    logits = torch.stack([to[i, j] for i, j in idx])
    target = torch.tensor([1.0] * len(pos_all) + [0.0] * len(neg_all))
    t_targets = torch.tensor(np.concatenate([encode_loop(matched[i][[j]], anchors[[j]], (1, 1, 1, 1))
                                             for i, j in pos_all]), dtype=torch.float32)
    pred = torch.stack([td[i, j] for i, j in pos_all])
    ref = (torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
           + torch.nn.functional.smooth_l1_loss(pred, t_targets, beta=1 / 9, reduction="sum") / len(idx))
    ref.backward()
    assert np.allclose(o.grad.numpy(), to.grad.numpy(), atol=1e-6)
    assert np.allclose(d.grad.numpy(), td.grad.numpy(), atol=1e-5)


def test_rpn_filter_proposals_matches_loop():
    rng = np.random.default_rng(3)
    boxes = np.stack([random_boxes(rng, 50, size=70) - 3 for _ in range(2)])  # some cross the border
    boxes[0, 5] = [10, 10, 10.0005, 20]  # too thin: removed
    scores = rng.normal(size=(2, 50)).astype(np.float32)
    net = _rpn(pre_nms_top_n={"training": 30, "testing": 30}, post_nms_top_n={"training": 8, "testing": 8},
               nms_thresh=0.5)
    got = net.filter_proposals(boxes, scores, (64, 64))
    for b, s, g in zip(boxes, scores, got):
        top = sorted(range(50), key=lambda i: -s[i])[:30]
        cb = np.array([[min(max(v, 0), 64) for v in b[i]] for i in top])
        cs = s[top]
        ok = [k for k in range(len(cb)) if cb[k, 2] - cb[k, 0] >= 1e-3 and cb[k, 3] - cb[k, 1] >= 1e-3]
        keep = nms_loop(cb[ok], cs[ok], 0.5)[:8]
        assert np.allclose(g, cb[ok][keep], atol=1e-5)


# ------------------------------------------------------------------------------------------ Fast R-CNN head


def _heads(**kw):
    return fast_rcnn.RoIHeads(None, None, None, **kw)


def test_label_proposals_with_background_band():
    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32)
    props = np.array([[0, 0, 10, 10], [0, 0, 10, 12],    # IoU 1 and 0.83 with GT 0
                      [20, 20, 40, 60],                  # IoU 0.5 with GT 1: foreground (>=)
                      [0, 0, 10, 30],                    # IoU 0.33: background
                      [0, 5, 10, 100],                   # IoU 0.05: below bg_iou_low 0.1, ignored
                      [60, 60, 70, 70]], np.float32)     # IoU 0: ignored
    labels, matched = _heads(bg_iou_low=0.1).label_proposals(props, gt, np.array([3, 7]))
    assert labels.tolist() == [3, 3, 7, 0, -1, -1]
    assert np.array_equal(matched[2], gt[1])
    labels, _ = _heads(bg_iou_low=0.0).label_proposals(props, gt, np.array([3, 7]))
    assert labels.tolist() == [3, 3, 7, 0, 0, 0]
    labels, _ = _heads().label_proposals(props, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert labels.tolist() == [0] * 6


def test_select_training_samples_adds_ground_truth_and_encodes():
    shendu.manual_seed(0)
    gt = np.array([[5, 5, 25, 30]], np.float32)
    props = np.array([[6, 5, 25, 31], [50, 50, 60, 60]], np.float32)
    heads = _heads(batch_size_per_image=8, positive_fraction=0.5)
    boxes, labels, targets = heads.select_training_samples([props], [{"boxes": gt, "labels": np.array([4])}])
    assert sorted(labels[0].tolist()) == [0, 4, 4]  # the GT itself joined the proposals
    fg = labels[0] == 4
    ref = encode_loop(np.repeat(gt, fg.sum(), 0), boxes[0][fg], (10, 10, 5, 5))
    assert np.allclose(targets[0][fg], ref, atol=1e-5)


@pytest.mark.parametrize("beta", [1.0, 1 / 9])
def test_fastrcnn_loss_matches_torch(beta):
    rng = np.random.default_rng(4)
    r, k1 = 9, 4
    logits = rng.normal(size=(r, k1)).astype(np.float32)
    reg = rng.normal(scale=0.5, size=(r, 4 * k1)).astype(np.float32)
    labels = np.array([0, 1, 3, 0, 2, 2, 0, 0, 1])
    targets = rng.normal(scale=0.5, size=(r, 4)).astype(np.float32)
    x, b = shendu.tensor(logits, requires_grad=True), shendu.tensor(reg, requires_grad=True)
    lc, lb = fast_rcnn.fastrcnn_loss(x, b, labels, targets, beta)
    (lc + lb).backward()
    tx, tb = torch.tensor(logits, requires_grad=True), torch.tensor(reg, requires_grad=True)
    tl = torch.tensor(labels)
    ref_c = torch.nn.functional.cross_entropy(tx, tl)
    pos = torch.where(tl > 0)[0]
    pred = tb.reshape(r, k1, 4)[pos, tl[pos]]
    ref_b = torch.nn.functional.smooth_l1_loss(pred, torch.tensor(targets)[pos], beta=beta, reduction="sum") / r
    (ref_c + ref_b).backward()
    assert lc.item() == pytest.approx(ref_c.item(), rel=1e-6)
    assert lb.item() == pytest.approx(ref_b.item(), rel=1e-5)
    assert np.allclose(x.grad.numpy(), tx.grad.numpy(), atol=1e-6)
    assert np.allclose(b.grad.numpy(), tb.grad.numpy(), atol=1e-6)


def test_postprocess_detections_hand_case():
    heads = _heads(score_thresh=0.05, nms_thresh=0.5, detections_per_img=10)
    props = [np.array([[10, 10, 30, 30], [12, 10, 32, 30], [50, 50, 60, 70]], np.float32)]
    # class 2 wins on the two overlapping proposals (one survives NMS), class 1 on the third
    logits = np.log(np.array([[0.1, 0.0, 0.9], [0.2, 0.0, 0.8], [0.3, 0.7, 0.0]]) + 1e-9).astype(np.float32)
    reg = np.zeros((3, 12), np.float32)
    reg[2, 4:8] = [10.0, 0.0, 0.0, 0.0]  # class 1 box of proposal 2 shifted by one width (weights 10)
    out = heads.postprocess_detections(shendu.tensor(logits), shendu.tensor(reg), props, (64, 64))[0]
    assert out["labels"].tolist() == [2, 1]
    assert np.allclose(out["scores"], [0.9, 0.7], atol=1e-6)
    assert np.allclose(out["boxes"], [[10, 10, 30, 30], [60, 50, 64, 64]])  # clipped to the 64 x 64 image


# ------------------------------------------------------------------------------------------ R-CNN


def test_warp_matches_bilinear_crop_reference():
    rng = np.random.default_rng(5)
    img = rng.random((2, 1, 40, 40)).astype(np.float32)
    model = rcnn.RCNN(3, warp_size=8, context=0.0, widths=(4, 4, 4), feature_dim=8)
    boxes = [np.array([[4.0, 6.0, 20.0, 30.0]], np.float32), np.array([[0.0, 0.0, 40.0, 40.0]], np.float32)]
    out = model.warp(shendu.tensor(img), boxes).numpy()

    def bilinear(im, y, x):
        y, x = min(max(y, 0), 39), min(max(x, 0), 39)
        y0, x0 = int(y), int(x)
        y1, x1 = min(y0 + 1, 39), min(x0 + 1, 39)
        fy, fx = y - y0, x - x0
        return ((1 - fy) * (1 - fx) * im[y0, x0] + (1 - fy) * fx * im[y0, x1] + fy * (1 - fx) * im[y1, x0]
                + fy * fx * im[y1, x1])

    for n, (b,) in enumerate(boxes):
        bw, bh = (b[2] - b[0]) / 8, (b[3] - b[1]) / 8
        for py in range(8):
            for px in range(8):
                ys = [b[1] - 0.5 + (py + (iy + 0.5) / 2) * bh for iy in range(2)]
                xs = [b[0] - 0.5 + (px + (ix + 0.5) / 2) * bw for ix in range(2)]
                vals = [bilinear(img[n, 0], y, x) for y in ys for x in xs]
                assert out[n, 0, py, px] == pytest.approx(np.mean(vals), abs=1e-5)


def test_enlarge_boxes_gives_context_at_the_warped_size():
    b = rcnn.enlarge_boxes(np.array([[10.0, 20.0, 38.0, 48.0]]), 32, 2)
    # the original 28-px box maps to 28/32 of the warped window: 2 px of context on each side
    assert np.allclose(b, [[8.0, 18.0, 40.0, 50.0]])


def _scene_batch(n=2, size=48, seed=0):
    """Grey canvases with bright rectangles of two kinds (class 1 solid, class 2 striped)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), np.float32)
    targets = []
    for i in range(n):
        boxes, labels = [], []
        for c, (x, y) in enumerate([(4, 6), (24, 22)]):
            x, y = x + rng.integers(0, 4), y + rng.integers(0, 4)
            w, h = 14 + rng.integers(0, 4), 16 + rng.integers(0, 4)
            patch = np.ones((h, w)) if c == 0 else np.tile([1.0, 0.3], (h, w))[:, :w]
            images[i, 0, y:y + h, x:x + w] = patch
            boxes.append([x, y, x + w, y + h])
            labels.append(c + 1)
        targets.append({"boxes": np.array(boxes, np.float32), "labels": np.array(labels)})
    return images, targets


SMALL = {"rcnn": {"widths": (8, 8, 16), "feature_dim": 32, "warp_size": 16, "context": 1.0},
         "fast_rcnn": {"widths": (8, 16, 16), "representation_size": 32},
         "faster_rcnn": {"widths": (8, 16, 16), "representation_size": 32, "box_batch_size_per_image": 64}}


@pytest.mark.parametrize("name", ["rcnn", "fast_rcnn", "faster_rcnn"])
def test_training_lowers_the_loss_and_predict_is_well_formed(name):
    shendu.manual_seed(0)
    images, targets = _scene_batch()
    model = rcnn.build_model(name, 2, **SMALL[name])
    opt = shendu.optim.Adam(model.parameters(), lr=3e-3)
    x = shendu.tensor(images)
    first = [rcnn.train_step(model, x, targets, opt)["loss"] for _ in range(3)]
    for _ in range(20):
        last = rcnn.train_step(model, x, targets, opt)["loss"]
    assert last < 0.7 * np.mean(first)
    total, parts = rcnn.loss(model, x, targets)
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-5)
    summary = rcnn.post_train(model, x, targets, svm_iters=200)
    assert (summary != {}) == (name == "rcnn")
    preds = rcnn.predict(model, x, score_thresh=0.0, max_detections=7)
    assert len(preds) == 2 and not model.training
    for p in preds:
        assert p["boxes"].dtype == np.float32 and p["boxes"].shape == (len(p["scores"]), 4)
        assert p["labels"].dtype == np.int64 and set(p["labels"].tolist()) <= {1, 2}
        assert len(p["scores"]) <= 7 and (np.diff(p["scores"]) <= 1e-7).all()
        assert (p["boxes"] >= 0).all() and (p["boxes"] <= 48).all()


def test_rcnn_svm_stage_is_saved_in_the_state_dict():
    shendu.manual_seed(0)
    images, targets = _scene_batch()
    model = rcnn.build_model("rcnn", 2, **SMALL["rcnn"])
    rcnn.fit_svms(model, shendu.tensor(images), targets, svm_iters=100)
    state = model.state_dict()
    assert state["svm_fitted"].item() == 1.0 and state["svm_weight"].shape == (32, 2)
    other = rcnn.build_model("rcnn", 2, **SMALL["rcnn"])
    other.load_state_dict(state)
    other.proposals = model.proposals  # share the cached proposals
    a = rcnn.predict(model, shendu.tensor(images))
    b = rcnn.predict(other, shendu.tensor(images))
    for p, q in zip(a, b):
        assert np.allclose(p["scores"], q["scores"]) and np.array_equal(p["labels"], q["labels"])


def test_rcnn_svm_finds_separable_classes():
    # the two kinds of rectangle are easy: after fine-tuning + SVMs the top detection of each class hits it
    shendu.manual_seed(1)
    images, targets = _scene_batch(n=4, seed=1)
    model = rcnn.build_model("rcnn", 2, **SMALL["rcnn"])
    opt = shendu.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        rcnn.train_step(model, shendu.tensor(images), targets, opt)
    rcnn.fit_svms(model, shendu.tensor(images), targets, svm_iters=1500)
    preds = rcnn.predict(model, shendu.tensor(images))
    hits = 0
    for p, t in zip(preds, targets):
        for c in (1, 2):
            sel = p["labels"] == c
            if sel.any():
                best = p["boxes"][sel][np.argmax(p["scores"][sel])]
                hits += iou_loop(best[None], t["boxes"][t["labels"] == c])[0, 0] >= 0.5
    assert hits >= 6  # of 8 objects


def test_errors():
    with pytest.raises(ArgumentError, match="unknown R-CNN model"):
        rcnn.build_model("mask_rcnn", 10)
    with pytest.raises(ArgumentError, match="background"):
        fast_rcnn.FastRCNN(1)
    model = rcnn.build_model("faster_rcnn", 2, **SMALL["faster_rcnn"])
    with pytest.raises(ShapeError, match="FasterRCNN"):
        model.eval()(shendu.zeros(1, 48, 48))
