"""AnchorGenerator against anchors computed by hand (torchvision's rounding, ratio = h/w, layout), and the
BoxCoder: hand values, encode/decode round trips, the exp clamp, several boxes per row. Gradients of the
coder against torch: tests/opspecs/vision.py."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

import shendu
from shendu.errors import ArgumentError, ShapeError
from shendu.vision.ops import AnchorGenerator, BoxCoder

rng = np.random.default_rng(3)


def _t(a, grad=False):
    return shendu.from_numpy(np.asarray(a)).requires_grad_(grad)


# -------------------------------------------------------------------------------------------- anchors
def test_faster_rcnn_base_anchors_by_hand():
    """sizes 128/256/512, ratios 0.5/1/2: w = s / sqrt(r), h = s * sqrt(r), halves rounded.
    128 at ratio 0.5: w = 181.02, h = 90.51 -> (-91, -45, 91, 45)."""
    base = AnchorGenerator.generate_anchors((128, 256, 512), (0.5, 1.0, 2.0)).tolist()
    assert base == [[-91, -45, 91, 45], [-181, -91, 181, 91], [-362, -181, 362, 181],
                    [-64, -64, 64, 64], [-128, -128, 128, 128], [-256, -256, 256, 256],
                    [-45, -91, 45, 91], [-91, -181, 91, 181], [-181, -362, 181, 362]]


def test_rounding_is_half_to_even_like_torch_round():
    # size 5, ratio 1: half-width 2.5 -> 2 (torch.round rounds half to even); size 7 -> 3.5 -> 4
    assert AnchorGenerator.generate_anchors((5, 7), (1.0,)).tolist() == [[-2, -2, 2, 2], [-4, -4, 4, 4]]


def test_grid_layout_is_position_major_then_anchor():
    gen = AnchorGenerator(sizes=((16, 32),), aspect_ratios=((1.0,),))
    images = shendu.zeros(1, 3, 32, 48)
    feats = [shendu.zeros(1, 4, 2, 3)]  # stride (16, 16)
    anchors = gen(images, feats)[0].data
    assert anchors.shape == (2 * 3 * 2, 4) and anchors.dtype == np.float32
    base = np.array([[-8, -8, 8, 8], [-16, -16, 16, 16]])
    for y in range(2):
        for x in range(3):
            for a in range(2):
                shift = np.array([x * 16, y * 16, x * 16, y * 16])
                np.testing.assert_array_equal(anchors[(y * 3 + x) * 2 + a], base[a] + shift)


def test_several_feature_maps_strides_per_axis_and_dtype():
    gen = AnchorGenerator(sizes=(32, 64), aspect_ratios=(0.5, 1.0, 2.0))  # the FPN form: one size per level
    assert gen.sizes == ((32,), (64,)) and gen.num_anchors_per_location() == [3, 3]
    images = SimpleNamespace(tensors=shendu.zeros(2, 3, 64, 96), image_sizes=[(60, 90), (64, 96)])
    feats = [shendu.zeros(2, 8, 8, 12, dtype=shendu.float64), shendu.zeros(2, 8, 4, 4, dtype=shendu.float64)]
    out = gen(images, feats)
    assert len(out) == 2 and out[0].shape == (8 * 12 * 3 + 4 * 4 * 3, 4) and out[0].dtype == np.float64
    level2 = out[0].data[8 * 12 * 3:]
    # level 2: stride (64 / 4, 96 / 4) = (16, 24); position (y=1, x=2), ratio 1 (index 1): 64 -> +-32
    np.testing.assert_array_equal(level2[(1 * 4 + 2) * 3 + 1], [2 * 24 - 32, 16 - 32, 2 * 24 + 32, 16 + 32])
    np.testing.assert_array_equal(out[1].data, out[0].data)


def test_anchor_generator_errors():
    with pytest.raises(ArgumentError, match="positive"):
        AnchorGenerator(sizes=((32, -4),))
    with pytest.raises(ArgumentError, match="2 levels of sizes but 1"):
        AnchorGenerator(sizes=((32,), (64,)), aspect_ratios=((0.5, 1.0),))
    gen = AnchorGenerator(sizes=((32,), (64,)), aspect_ratios=((1.0,), (1.0,)))
    with pytest.raises(ArgumentError, match="got 1 feature maps but anchors for 2"):
        gen(shendu.zeros(1, 3, 32, 32), [shendu.zeros(1, 4, 4, 4)])
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        gen(shendu.zeros(1, 3, 32, 32), [shendu.zeros(4, 4, 4), shendu.zeros(4, 2, 2)])


# ------------------------------------------------------------------------------------------ box coder
def _boxes(n):
    xy = rng.uniform(0, 100, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(4, 60, (n, 2))], axis=1)


def test_encode_by_hand():
    anchor = _t([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    gt = _t([[2.0, 4.0, 14.0, 20.0]])  # centre (8, 12), size 12 x 16
    t = BoxCoder().encode_single(gt, anchor).data[0]
    np.testing.assert_allclose(t, [3 / 10, 2 / 20, math.log(12 / 10), math.log(16 / 20)], rtol=1e-12)
    t = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(gt, anchor).data[0]
    np.testing.assert_allclose(t, [3.0, 1.0, 5 * math.log(1.2), 5 * math.log(0.8)], rtol=1e-12)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_round_trip(weights):
    coder = BoxCoder(weights)
    anchors, gt = _boxes(50), _boxes(50)
    codes = coder.encode_single(_t(gt), _t(anchors))
    np.testing.assert_allclose(coder.decode_single(codes, _t(anchors)).data, gt, rtol=1e-10, atol=1e-9)


def test_decode_clamps_dw_dh():
    coder = BoxCoder()
    anchor = _t([[0.0, 0.0, 10.0, 10.0]])
    big = coder.decode_single(_t([[0.0, 0.0, 100.0, -1.0]]), anchor).data[0]
    width = 10 * 1000 / 16  # exp(log(1000/16)) * 10
    half_h = 10 * math.exp(-1) / 2
    np.testing.assert_allclose(big, [5 - width / 2, 5 - half_h, 5 + width / 2, 5 + half_h])
    assert coder.bbox_xform_clip == pytest.approx(math.log(1000 / 16))


def test_decode_several_boxes_per_row_and_lists():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    anchors = _boxes(6)
    codes = rng.standard_normal((6, 3 * 4))  # 3 classes
    out = coder.decode_single(_t(codes), _t(anchors)).data
    assert out.shape == (6, 12)
    for c in range(3):
        one = coder.decode_single(_t(codes[:, 4 * c:4 * c + 4]), _t(anchors)).data
        np.testing.assert_allclose(out[:, 4 * c:4 * c + 4], one, rtol=1e-12)
    listed = coder.decode(_t(codes), [_t(anchors[:2]), _t(anchors[2:])])
    assert listed.shape == (6, 3, 4)
    np.testing.assert_allclose(listed.data.reshape(6, 12), out, rtol=1e-12)
    gt = _boxes(6)
    parts = coder.encode([_t(gt[:4]), _t(gt[4:])], [_t(anchors[:4]), _t(anchors[4:])])
    assert [p.shape for p in parts] == [(4, 4), (2, 4)]
    np.testing.assert_allclose(np.concatenate([p.data for p in parts]),
                               coder.encode_single(_t(gt), _t(anchors)).data, rtol=1e-12)


def test_box_coder_is_differentiable():
    codes = _t(rng.standard_normal((4, 4)), grad=True)
    BoxCoder().decode_single(codes, _t(_boxes(4))).sum().backward()
    assert codes.grad is not None and np.all(np.isfinite(codes.grad.data))


def test_box_coder_errors():
    with pytest.raises(ArgumentError, match="4 positive numbers"):
        BoxCoder((1.0, 1.0, 1.0))
    coder = BoxCoder()
    with pytest.raises(ShapeError, match=r"rel_codes must have shape \(N, 4 \* k\)"):
        coder.decode_single(_t(np.zeros((3, 6))), _t(np.zeros((3, 4))))
    with pytest.raises(ShapeError, match="3 rows of rel_codes but 2 boxes"):
        coder.decode_single(_t(np.zeros((3, 4))), _t(np.zeros((2, 4))))
    with pytest.raises(ShapeError, match="2 reference_boxes but 3 proposals"):
        coder.encode_single(_t(np.zeros((2, 4))), _t(np.zeros((3, 4))))
    with pytest.raises(ArgumentError, match="list of"):
        coder.decode(_t(np.zeros((3, 4))), _t(np.zeros((3, 4))))
