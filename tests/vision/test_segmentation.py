"""Segmentation models (FCN, encoder-decoders, sliding window), the bilinear upsampling kernel, the
per-pixel loss, and the FCN metrics on hand-worked confusion matrices."""

import math

import numpy as np
import pytest
import torch

import shendu
import shendu.functional as F
from shendu import optim
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.metrics.segmentation import (
    SegmentationMetrics,
    frequency_weighted_iou,
    mean_accuracy,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
    segmentation_confusion_matrix,
    segmentation_scores,
)
from shendu.vision.segmentation import (
    FCN,
    BilinearUpsample,
    EncoderDecoder,
    SceneClassifier,
    SlidingWindowClassifier,
    bilinear_kernel,
    extract_patches,
    segmentation_model,
    stride_limited_masks,
)

TINY = dict(widths=(4, 4, 6, 6, 8), convs=(1, 1, 1, 1, 1))


# ------------------------------------------------------------------------------------ bilinear upsampling
@pytest.mark.parametrize("factor", [2, 3, 4, 8, 16])
def test_bilinear_kernel_reproduces_bilinear_interpolation_on_the_interior(factor):
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    k = 2 * factor - factor % 2  # FCN's kernel size for factor f
    w = torch.tensor(bilinear_kernel(3, 3, k).numpy(), dtype=torch.float64)
    up = torch.nn.functional.conv_transpose2d(x, w, stride=factor, padding=factor // 2)
    ref = torch.nn.functional.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert up.shape == ref.shape == (2, 3, 5 * factor, 7 * factor)
    m = factor // 2  # the border band where interpolation repeats the edge and the transposed conv reads 0
    # tolerance: the kernel is float32 (1/3 is not exact), the data float64
    torch.testing.assert_close(up[..., m:-m, m:-m], ref[..., m:-m, m:-m], rtol=0, atol=1e-6)
    assert (up - ref).abs().max() > 1e-3  # ... while the border differs
    # shendu's own transposed convolution with the kernel gives the same interior
    ours = F.conv_transpose2d(shendu.tensor(x.numpy()), shendu.tensor(w.numpy()), stride=factor,
                              padding=factor // 2).numpy()
    np.testing.assert_allclose(ours[..., m:-m, m:-m], ref.numpy()[..., m:-m, m:-m], atol=1e-6)


def test_bilinear_kernel_layout_and_odd_size():
    w = bilinear_kernel(3, 2, 4).numpy()
    assert w.shape == (3, 2, 4, 4) and w.dtype == np.float32
    assert w[0, 0].sum() == pytest.approx(4.0) and w[1, 1].sum() == pytest.approx(4.0)  # f^2 = 4
    assert not w[0, 1].any() and not w[1, 0].any() and not w[2].any()  # diagonal channel pairs only
    odd = bilinear_kernel(1, 1, 3).numpy()[0, 0]  # f = 2, centre 1: taps 0.5, 1, 0.5
    np.testing.assert_allclose(odd, np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    with pytest.raises(ArgumentError):
        bilinear_kernel(0, 1, 4)


@pytest.mark.parametrize("factor,h,w", [(2, 3, 5), (8, 2, 3), (32, 2, 2)])
def test_bilinear_upsample_equals_the_transposed_convolution_border_included(factor, h, w):
    x = np.random.default_rng(factor).standard_normal((2, 4, h, w))
    gy = np.random.default_rng(1).standard_normal((2, 4, h * factor, w * factor))
    xs = shendu.tensor(x, requires_grad=True)
    y = BilinearUpsample(factor)(xs)
    y.backward(shendu.tensor(gy))
    xt = torch.tensor(x, requires_grad=True)
    kernel = torch.tensor(bilinear_kernel(4, 4, 2 * factor).numpy(), dtype=torch.float64)
    yt = torch.nn.functional.conv_transpose2d(xt, kernel, stride=factor, padding=factor // 2)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), atol=1e-12)
    assert BilinearUpsample(2)(shendu.randn(1, 2, 3, 3)).dtype == np.float32


# ------------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("name,stride", [("fcn32s", 32), ("fcn16s", 16), ("fcn8s", 8)])
def test_fcn_shapes_skips_and_initialisation(name, stride):
    net = segmentation_model(name, num_classes=5)
    assert net.stride == stride
    assert net(shendu.randn(2, 1, 64, 64)).shape == (2, 5, 64, 64)
    assert net(shendu.randn(1, 1, 96, 32)).shape == (1, 5, 96, 32)
    assert hasattr(net, "score_pool4") == (stride <= 16) and hasattr(net, "score_pool3") == (stride == 8)
    for layer in ("score_pool4", "score_pool3"):  # zero-initialised: training starts from the coarser net
        if hasattr(net, layer):
            assert not getattr(net, layer).weight.detach().numpy().any()
    if stride <= 16:
        np.testing.assert_array_equal(net.upscore2.weight.detach().numpy(), bilinear_kernel(5, 5, 4).numpy())
    # the final upsampling is fixed: no parameter of it reaches the optimizer
    assert not any("upscore." in k for k, _ in net.named_parameters())


def test_fcn_rejects_sizes_that_are_not_multiples_of_32():
    with pytest.raises(ShapeError, match="multiples of 32"):
        FCN(stride=8, **TINY)(shendu.randn(1, 1, 48, 64))
    with pytest.raises(ArgumentError, match="stride"):
        FCN(stride=4)
    with pytest.raises(ArgumentError, match="unknown model"):
        segmentation_model("unet")


def test_backbone_residual_blocks_follow_each_stages_convs():
    from shendu.models.resnet import BasicBlock
    from shendu.vision.segmentation import SceneBackbone

    plain = SceneBackbone(1, (4, 4, 6, 6, 8), (1, 1, 1, 1, 1))
    deep = SceneBackbone(1, (4, 4, 6, 6, 8), (1, 1, 1, 1, 1), blocks=(0, 1, 0, 2, 0))
    assert [sum(isinstance(m, BasicBlock) for m in stage) for stage in deep.stages] == [0, 1, 0, 2, 0]
    assert isinstance(deep.stages[3][-1], BasicBlock) and isinstance(deep.stages[3][0], shendu.nn.Conv2d)
    # each block adds two 3x3 convs of width w (9 w^2 weights each, no bias) and two BNs (2 w each)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(deep) - n(plain) == 1 * (2 * 9 * 4 * 4 + 4 * 4) + 2 * (2 * 9 * 6 * 6 + 4 * 6)
    x = shendu.randn(2, 1, 64, 64)
    assert [p.shape for p in deep(x)] == [p.shape for p in plain(x)]
    # the default keeps the plain backbone's parameter names (older checkpoints load unchanged)
    assert dict(FCN(**TINY).named_parameters()).keys() == dict(FCN(**TINY, blocks=(0,) * 5).named_parameters()).keys()
    assert FCN(**TINY, blocks=(0, 0, 1, 0, 0))(x).shape == (2, 11, 64, 64)
    with pytest.raises(ArgumentError, match="5 block counts"):
        SceneBackbone(blocks=(1, 1))
    with pytest.raises(ArgumentError, match="at least 1 conv"):
        SceneBackbone(convs=(1, 0, 1, 1, 1))


def test_scene_classifier_on_an_fcns_fc6_and_fc7_is_the_convolutionalised_classifier():
    fcn = FCN(num_classes=11, **TINY, fc_width=12)
    clf = SceneClassifier.from_fcn(fcn, 10)
    assert clf.backbone is fcn.backbone and clf.head[0] is fcn.fc6 and clf.head[1] is fcn.fc7
    clf.eval()
    x = shendu.randn(2, 1, 64, 64)
    with shendu.no_grad():  # GAP of fc7 over pool5's 2x2 map, then the linear layer
        pool5 = fcn.backbone(x)[-1]
        expected = clf.fc(fcn.fc7(fcn.fc6(pool5)).mean((2, 3))).numpy()
        np.testing.assert_allclose(clf(x).numpy(), expected, rtol=1e-6)
    assert clf.fc.weight.shape == (10, 12)
    with pytest.raises(ArgumentError, match="head and head_channels"):
        SceneClassifier(10, **TINY, head=fcn.fc6)


@pytest.mark.parametrize("mode", ["unpool", "nearest", "nails"])
def test_encoder_decoder_shapes_and_upsampling(mode):
    net = EncoderDecoder(num_classes=3, upsampling=mode, **TINY)
    assert net(shendu.randn(2, 1, 64, 32)).shape == (2, 3, 64, 32)
    x = shendu.tensor(np.random.default_rng(0).random((1, 2, 4, 4)).astype(np.float32))
    pooled, idx = F.max_pool2d(x, 2, return_indices=True)
    up = net._up(pooled, idx, (4, 4)).numpy()
    if mode == "unpool":  # values back at their arg-max, zeros elsewhere
        expected = np.zeros((1, 2, 16), np.float32)
        np.put_along_axis(expected, idx.numpy().reshape(1, 2, 4), pooled.numpy().reshape(1, 2, 4), axis=2)
        np.testing.assert_array_equal(up, expected.reshape(1, 2, 4, 4))
    elif mode == "nearest":
        np.testing.assert_array_equal(up, pooled.numpy().repeat(2, 2).repeat(2, 3))
    else:  # bed of nails: top-left of each 2x2 block
        np.testing.assert_array_equal(up[..., ::2, ::2], pooled.numpy())
        assert not up[..., 1::2, :].any() and not up[..., :, 1::2].any()
    with pytest.raises(ArgumentError, match="upsampling"):
        EncoderDecoder(upsampling="bilinear")


def test_extract_patches_matches_manual_padding():
    rng = np.random.default_rng(0)
    images = rng.random((3, 2, 7, 6)).astype(np.float32)
    index, ys, xs = np.array([0, 2, 1, 2]), np.array([0, 6, 3, 2]), np.array([5, 0, 3, 4])
    for patch in (5, 4):
        got = extract_patches(images, index, ys, xs, patch)
        half = patch // 2
        padded = np.pad(images, ((0, 0), (0, 0), (half, half), (half, half)))
        for m, (n, y, x) in enumerate(zip(index, ys, xs)):
            np.testing.assert_array_equal(got[m], padded[n, :, y:y + patch, x:x + patch])


def test_sliding_window_classifies_the_window_of_every_pixel():
    shendu.manual_seed(0)
    net = SlidingWindowClassifier(num_classes=4, patch=9, widths=(4, 8), chunk=37).eval()
    images = np.random.default_rng(1).random((2, 1, 12, 10)).astype(np.float32)
    logits = net.segment(shendu.tensor(images)).numpy()
    assert logits.shape == (2, 4, 12, 10)
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    for n, y, x in [(0, 0, 0), (1, 11, 9), (1, 5, 3)]:
        with shendu.no_grad():
            one = net(shendu.tensor(padded[n:n + 1, :, y:y + 9, x:x + 9])).numpy()[0]
        np.testing.assert_allclose(logits[n, :, y, x], one, rtol=1e-5, atol=1e-6)
    assert net.last_seconds_per_image > 0


def test_fcn8s_learns_a_batch():
    shendu.manual_seed(0)
    net = FCN(num_classes=3, stride=8, fc_width=16, dropout=0.0, **TINY)
    x = np.zeros((4, 1, 32, 32), np.float32)
    y = np.zeros((4, 32, 32), np.int64)
    x[:, :, 4:14, 4:20], y[:, 4:14, 4:20] = 1.0, 1  # a bright box is class 1
    x[:, :, 18:30, 10:28], y[:, 18:30, 10:28] = 0.5, 2  # a dim box is class 2
    opt = optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(net(shendu.tensor(x)), shendu.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_cross_entropy_takes_dense_logits_and_ignore_index():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 5, 3, 4))
    t = rng.integers(0, 5, (2, 3, 4))
    t[0, 0, :3] = 255
    g = rng.standard_normal(())
    zs = shendu.tensor(z, requires_grad=True)
    loss = F.cross_entropy(zs, shendu.tensor(t), ignore_index=255)
    (loss * float(g)).backward()
    zt = torch.tensor(z, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(t), ignore_index=255)
    (lt * float(g)).backward()
    assert loss.item() == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(zs.grad.numpy(), zt.grad.numpy(), atol=1e-12)
    assert not zs.grad.numpy()[0, :, 0, :3].any()  # ignored pixels get no gradient


# ------------------------------------------------------------------------------------------------ metrics
# Hand-worked example (3 classes). Truth / prediction pairs: (0,0)x3, (0,1)x1, (1,1)x2, (1,2)x2, (2,2)x1, (2,0)x1.
#   n = [[3, 1, 0],     t = (4, 4, 2), predicted = (4, 3, 3), diag = (3, 2, 1)
#        [0, 2, 2],     IoU_0 = 3/(4+4-3) = 3/5, IoU_1 = 2/(4+3-2) = 2/5, IoU_2 = 1/(2+3-1) = 1/4
#        [1, 0, 1]]     pixel acc = 6/10, mean acc = (3/4 + 2/4 + 1/2)/3 = 7/12
#   mIoU = (3/5 + 2/5 + 1/4)/3 = 5/12, fwIoU = (4*3/5 + 4*2/5 + 2*1/4)/10 = 9/20
HAND_TRUTH = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
HAND_PRED = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])


def test_metrics_on_a_hand_worked_confusion_matrix():
    hist = segmentation_confusion_matrix(HAND_PRED.reshape(2, 5), HAND_TRUTH.reshape(2, 5), 3)
    np.testing.assert_array_equal(hist, [[3, 1, 0], [0, 2, 2], [1, 0, 1]])
    assert pixel_accuracy(hist) == pytest.approx(6 / 10)
    assert mean_accuracy(hist) == pytest.approx(7 / 12)
    np.testing.assert_allclose(per_class_iou(hist), [3 / 5, 2 / 5, 1 / 4])
    assert mean_iou(hist) == pytest.approx(5 / 12)
    assert frequency_weighted_iou(hist) == pytest.approx(9 / 20)


def test_absent_classes_are_left_out_of_the_means():
    # 4 classes. Class 3 appears nowhere; class 2 is predicted once but absent from the truth.
    #   n = [[2, 0, 1, 0], [0, 3, 0, 0], [0]*4, [0]*4]
    #   IoU = (2/3, 3/3, 0/1, nan): mIoU = (2/3 + 1 + 0)/3 = 5/9 (class 3 excluded, class 2 counts as 0)
    #   accuracy = (2/3, 1, nan, nan): mean accuracy = 5/6; fwIoU = (3 * 2/3 + 3 * 1)/6 = 5/6
    hist = segmentation_confusion_matrix(np.array([0, 0, 2, 1, 1, 1]), np.array([0, 0, 0, 1, 1, 1]), 4)
    iou = per_class_iou(hist)
    assert math.isnan(iou[3]) and iou[2] == 0.0
    assert mean_iou(hist) == pytest.approx(5 / 9)
    assert mean_accuracy(hist) == pytest.approx(5 / 6)
    assert frequency_weighted_iou(hist) == pytest.approx(5 / 6)
    scores = segmentation_scores(hist)
    assert math.isnan(scores["accuracy"][2]) and math.isnan(scores["iou"][3])
    empty = np.zeros((3, 3), np.int64)
    assert all(math.isnan(f(empty)) for f in (pixel_accuracy, mean_accuracy, mean_iou, frequency_weighted_iou))


def test_ignore_index_drops_pixels_whatever_the_prediction():
    truth = np.array([[0, 255, 1], [255, 1, 1]])
    pred = np.array([[0, 1, 1], [0, 0, 1]])
    hist = segmentation_confusion_matrix(pred, truth, 2, ignore_index=255)
    np.testing.assert_array_equal(hist, [[1, 0], [1, 2]])
    with pytest.raises(ArgumentError, match="ignore_index"):
        segmentation_confusion_matrix(pred, truth, 2)


def test_accumulate_over_the_set_not_the_mean_of_images():
    metric = SegmentationMetrics(3)
    per_image = []
    for p, t in zip(HAND_PRED.reshape(2, 5), HAND_TRUTH.reshape(2, 5)):
        metric.update(p[None], t[None])
        per_image.append(mean_iou(segmentation_confusion_matrix(p, t, 3)))
    assert metric.compute()["mean_iou"] == pytest.approx(5 / 12)
    assert np.mean(per_image) != pytest.approx(5 / 12)  # the wrong number differs
    state = metric.state_dict()
    again = SegmentationMetrics(3)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.matrix, metric.matrix)
    metric.reset()
    assert not metric.matrix.any()


def test_metrics_against_a_plain_loop_and_from_scores():
    rng = np.random.default_rng(0)
    C = 6
    truth = rng.integers(0, C, (3, 9, 8))
    truth[0, :2] = 255
    logits = rng.standard_normal((3, C, 9, 8)).astype(np.float32)
    pred = logits.argmax(1)
    ref = np.zeros((C, C), np.int64)
    for t, p in zip(truth.reshape(-1), pred.reshape(-1)):  # the reference: one pixel at a time
        if t != 255:
            ref[t, p] += 1
    np.testing.assert_array_equal(segmentation_confusion_matrix(logits, truth, C, ignore_index=255), ref)
    np.testing.assert_array_equal(segmentation_confusion_matrix(shendu.tensor(pred), shendu.tensor(truth), C,
                                                                ignore_index=255), ref)
    iou = [ref[i, i] / (ref[i].sum() + ref[:, i].sum() - ref[i, i]) for i in range(C)]
    assert mean_iou(ref) == pytest.approx(np.mean(iou))
    freq = ref.sum(1) / ref.sum()
    assert frequency_weighted_iou(ref) == pytest.approx(float((freq * iou).sum()))


def test_metric_input_errors():
    with pytest.raises(ShapeError, match="differ"):
        segmentation_confusion_matrix(np.zeros((2, 3), int), np.zeros((3, 2), int), 2)
    with pytest.raises(ArgumentError, match="prediction labels"):
        segmentation_confusion_matrix(np.array([0, 5]), np.array([0, 1]), 2)
    with pytest.raises(ArgumentError, match="integers"):
        segmentation_confusion_matrix(np.array([0.0, 1.0]), np.array([0, 1]), 2)
    with pytest.raises(ShapeError, match="classes"):
        segmentation_confusion_matrix(np.zeros((1, 3, 2, 2), np.float32), np.zeros((1, 2, 2), int), 4)
    with pytest.raises(ShapeError, match="square"):
        mean_iou(np.zeros((2, 3)))


# ----------------------------------------------------------------------------- what the output stride costs
def test_stride_limited_masks_lose_what_is_thinner_than_a_cell():
    m = np.zeros((1, 32, 32), np.int64)
    m[0, 8:24, 8:24] = 2        # a 16 x 16 square on the 8-px grid: 2 x 2 cells
    m[0, :, 30:] = 1            # a 2-px stripe: a quarter of its cells
    np.testing.assert_array_equal(stride_limited_masks(m, 1, 3), m)
    r = stride_limited_masks(m, 8, 3)[0]
    square, truth = r == 2, m[0] == 2
    iou = (square & truth).sum() / (square | truth).sum()
    assert 0.85 <= iou < 1.0                          # its corners round off (bilinear), the rest stays
    assert not (r == 1).any()                         # the stripe is gone
    with pytest.raises(ShapeError, match="multiples of 8"):
        stride_limited_masks(np.zeros((1, 30, 32), np.int64), 8, 3)
