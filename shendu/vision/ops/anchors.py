"""Anchors and box coding for the R-CNN family, as torchvision's ``AnchorGenerator`` and ``BoxCoder``.

Anchors (Faster R-CNN, Ren et al. 2015): at every position of a feature map, ``len(sizes) *
len(aspect_ratios)`` boxes centred on the position's top-left corner in image pixels
``(x * stride_w, y * stride_h)``. With ``aspect_ratio = height / width``:
``h = size * sqrt(ar)``, ``w = size / sqrt(ar)``, and the zero-centred base anchor
``(-w/2, -h/2, w/2, h/2)`` is **rounded** (half to even, like ``torch.round``).

Layout of the ``(H * W * A, 4)`` anchors of one level: position-major — row ``y``, then column ``x``,
then the A anchors of that position, ratio-major (all sizes of the first ratio, then the next ratio).
This matches a head whose ``(A * 4, H, W)`` output is permuted to ``(H, W, A, 4)`` and flattened.

Box coding (R-CNN): a box ``(x, y, w, h)`` in centre-size form relative to a reference
``(x_a, y_a, w_a, h_a)`` is ``t = (wx (x - x_a)/w_a, wy (y - y_a)/h_a, ww log(w/w_a), wh log(h/h_a))``.
Decoding divides by the weights, clamps ``t_w, t_h <= log(1000/16)`` before ``exp`` and returns xyxy.
Weights: (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for the Fast R-CNN head. Both directions are Tensor
compositions, so they are differentiable.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from shendu import backend
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, DTypeError, ShapeError, fmt_shape
from shendu.nn.module import Module
from shendu.ops._util import as_tensor_arg
from shendu.ops.elementwise import clamp, exp, log
from shendu.ops.shape import cat, stack

__all__ = ["AnchorGenerator", "BoxCoder"]


# ------------------------------------------------------------------------------------------- anchors
def _nested(name: str, value) -> tuple:
    """``((a, b), (c,))`` from nested sequences of positive numbers; raise on anything else."""
    try:
        out = tuple(tuple(v) for v in value)
    except TypeError:
        raise ArgumentError(f"AnchorGenerator: {name} must be a tuple of tuples (one per feature map), "
                            f"got {value!r}") from None
    for level in out:
        if not level or any(not isinstance(v, numbers.Real) or not v > 0 for v in level):
            raise ArgumentError(f"AnchorGenerator: {name} must hold positive numbers, got {value!r}")
    return out


class AnchorGenerator(Module):
    """Anchors for a list of feature maps; ``sizes[i]`` and ``aspect_ratios[i]`` (ratio = h/w) belong to
    feature map ``i``. A flat tuple of sizes means one size per feature map (the FPN form), and a flat
    tuple of ratios is shared by every map — torchvision's conventions.

    ``forward(image_list, feature_maps)`` returns one ``(sum_i H_i W_i A_i, 4)`` xyxy tensor per image, in
    the dtype of the feature maps. ``image_list`` is a batch tensor ``(N, C, H, W)`` or an object with
    ``.tensors`` (the padded batch) and ``.image_sizes`` (torchvision's ``ImageList``). The stride of
    level i is ``image_size // feature_size`` per axis.

    >>> import shendu
    >>> gen = AnchorGenerator(sizes=((32,),), aspect_ratios=((1.0,),))
    >>> anchors = gen(shendu.zeros(1, 3, 64, 64), [shendu.zeros(1, 8, 2, 2)])
    >>> anchors[0].tolist()
    [[-16.0, -16.0, 16.0, 16.0], [16.0, -16.0, 48.0, 16.0], [-16.0, 16.0, 16.0, 48.0], [16.0, 16.0, 48.0, 48.0]]
    """

    def __init__(self, sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)):
        super().__init__()
        if isinstance(sizes, numbers.Real) or (len(sizes) and isinstance(sizes[0], numbers.Real)):
            sizes = tuple((s,) for s in (sizes if not isinstance(sizes, numbers.Real) else (sizes,)))
        if len(aspect_ratios) and isinstance(aspect_ratios[0], numbers.Real):
            aspect_ratios = (tuple(aspect_ratios),) * len(sizes)
        self.sizes = _nested("sizes", sizes)
        self.aspect_ratios = _nested("aspect_ratios", aspect_ratios)
        if len(self.sizes) != len(self.aspect_ratios):
            raise ArgumentError(f"AnchorGenerator: {len(self.sizes)} levels of sizes but {len(self.aspect_ratios)} "
                                "of aspect_ratios; give one tuple of each per feature map")

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, aspect_ratios={self.aspect_ratios}"

    @staticmethod
    def generate_anchors(scales, aspect_ratios, dtype=np.float32) -> Tensor:
        """Zero-centred base anchors ``(len(aspect_ratios) * len(scales), 4)``, ratio-major, rounded.

        >>> AnchorGenerator.generate_anchors((16,), (0.5, 1.0, 2.0)).tolist()
        [[-11.0, -6.0, 11.0, 6.0], [-8.0, -8.0, 8.0, 8.0], [-6.0, -11.0, 6.0, 11.0]]
        """
        scales = np.asarray(scales, dtype=dtype)
        h_ratios = np.sqrt(np.asarray(aspect_ratios, dtype=dtype))
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        return Tensor(np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2))

    def num_anchors_per_location(self) -> list:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(self, grid_sizes, strides, dtype=np.float32) -> list:
        """Anchors of every level: ``grid_sizes[i] = (H_i, W_i)``, ``strides[i] = (stride_h, stride_w)``;
        returns one ``(H_i * W_i * A_i, 4)`` tensor per level."""
        if not len(grid_sizes) == len(strides) == len(self.sizes):
            raise ArgumentError(f"AnchorGenerator: got {len(grid_sizes)} feature maps but anchors for "
                                f"{len(self.sizes)}; give one tuple of sizes and of aspect_ratios per feature map")
        out = []
        for (gh, gw), (sh, sw), scales, ratios in zip(grid_sizes, strides, self.sizes, self.aspect_ratios):
            base = self.generate_anchors(scales, ratios, dtype).data
            shift_x = (np.arange(gw) * sw).astype(dtype)
            shift_y = (np.arange(gh) * sh).astype(dtype)
            sy, sx = np.meshgrid(shift_y, shift_x, indexing="ij")
            shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], axis=1)
            out.append(Tensor((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)))
        return out

    def forward(self, image_list, feature_maps) -> list:
        batch = getattr(image_list, "tensors", image_list)
        batch_shape = tuple(batch.shape)
        n_images = len(image_list.image_sizes) if hasattr(image_list, "image_sizes") else batch_shape[0]
        if len(batch_shape) != 4:
            raise ShapeError(f"AnchorGenerator: the image batch must be (N, C, H, W), got {fmt_shape(batch_shape)}")
        if any(len(f.shape) != 4 for f in feature_maps):
            raise ShapeError("AnchorGenerator: feature maps must be (N, C, H, W), got shapes "
                             + ", ".join(fmt_shape(f.shape) for f in feature_maps))
        image_h, image_w = batch_shape[-2:]
        grid_sizes = [tuple(f.shape[-2:]) for f in feature_maps]
        strides = [(image_h // gh, image_w // gw) for gh, gw in grid_sizes]
        dtype = feature_maps[0].dtype if feature_maps[0].dtype.kind == "f" else backend.get_default_dtype()
        levels = self.grid_anchors(grid_sizes, strides, dtype)
        all_levels = cat(levels, dim=0) if len(levels) > 1 else levels[0]
        return [all_levels for _ in range(n_images)]


# ----------------------------------------------------------------------------------------- box coder
def _coder_boxes(op: str, boxes, name: str, width: int = 4) -> Tensor:
    t = as_tensor_arg(boxes)
    if t.ndim != 2 or t.shape[1] % width or t.shape[1] == 0:
        want = "(N, 4)" if width == 4 and name != "rel_codes" else "(N, 4 * k)"
        raise ShapeError(f"BoxCoder.{op}: {name} must have shape {want}, got {fmt_shape(t.shape)}")
    if t.dtype.kind != "f":
        raise DTypeError(f"BoxCoder.{op}: {name} must be a float tensor, got dtype {t.dtype}")
    return t


class BoxCoder:
    """Encode boxes as regression targets relative to reference boxes (anchors or proposals), and
    decode predicted targets back into boxes — torchvision's ``BoxCoder`` with a default for weights.

    >>> import shendu
    >>> coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    >>> anchors = shendu.tensor([[0.0, 0.0, 10.0, 20.0]])
    >>> gt = shendu.tensor([[1.0, 2.0, 12.0, 22.0]])
    >>> t = coder.encode_single(gt, anchors)
    >>> [round(v, 4) for v in t[0].tolist()]
    [1.5, 1.0, 0.4766, 0.0]
    >>> [round(v, 4) for v in coder.decode_single(t, anchors)[0].tolist()]
    [1.0, 2.0, 12.0, 22.0]
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0), bbox_xform_clip: float = math.log(1000.0 / 16)):
        if len(weights) != 4 or any(not isinstance(w, numbers.Real) or not w > 0 for w in weights):
            raise ArgumentError(f"BoxCoder: weights must be 4 positive numbers (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = float(bbox_xform_clip)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip:.4f})"

    def encode(self, reference_boxes, proposals) -> tuple:
        """Per-image lists: encode ``reference_boxes[i]`` (the matched ground truth) relative to
        ``proposals[i]``; returns one ``(N_i, 4)`` tensor per image."""
        counts = [len(b) for b in reference_boxes]
        targets = self.encode_single(cat(list(reference_boxes), dim=0), cat(list(proposals), dim=0))
        out, start = [], 0
        for n in counts:
            out.append(targets[start:start + n])
            start += n
        return tuple(out)

    def encode_single(self, reference_boxes, proposals) -> Tensor:
        """Targets ``(N, 4)`` = ``(wx dx/w_a, wy dy/h_a, ww log(w/w_a), wh log(h/h_a))`` of the xyxy
        ``reference_boxes`` (ground truth) relative to the xyxy ``proposals`` (anchors), both ``(N, 4)``."""
        gt = _coder_boxes("encode_single", reference_boxes, "reference_boxes")
        ref = _coder_boxes("encode_single", proposals, "proposals")
        if gt.shape[0] != ref.shape[0]:
            raise ShapeError(f"BoxCoder.encode_single: {gt.shape[0]} reference_boxes but {ref.shape[0]} proposals; "
                             "encode one matched box per proposal")
        wx, wy, ww, wh = self.weights
        ex_w = ref[:, 2] - ref[:, 0]
        ex_h = ref[:, 3] - ref[:, 1]
        ex_x = ref[:, 0] + 0.5 * ex_w
        ex_y = ref[:, 1] + 0.5 * ex_h
        gt_w = gt[:, 2] - gt[:, 0]
        gt_h = gt[:, 3] - gt[:, 1]
        gt_x = gt[:, 0] + 0.5 * gt_w
        gt_y = gt[:, 1] + 0.5 * gt_h
        return stack([wx * (gt_x - ex_x) / ex_w, wy * (gt_y - ex_y) / ex_h,
                      ww * log(gt_w / ex_w), wh * log(gt_h / ex_h)], dim=1)

    def decode(self, rel_codes, boxes) -> Tensor:
        """Decode ``rel_codes`` ``(sum N_i, 4 k)`` against the per-image list ``boxes`` of ``(N_i, 4)``;
        returns ``(sum N_i, k, 4)``."""
        if not isinstance(boxes, (list, tuple)):
            raise ArgumentError("BoxCoder.decode: boxes must be a list of (N_i, 4) tensors, one per image; use "
                                "decode_single for one tensor")
        concat = cat(list(boxes), dim=0)
        codes = as_tensor_arg(rel_codes)
        return self.decode_single(codes.reshape(concat.shape[0], -1), concat).reshape(concat.shape[0], -1, 4)

    def decode_single(self, rel_codes, boxes) -> Tensor:
        """Boxes ``(N, 4 k)`` (xyxy, k boxes per reference, e.g. one per class) from targets
        ``rel_codes`` ``(N, 4 k)`` and reference boxes ``(N, 4)``; ``t_w, t_h`` are clamped at
        ``bbox_xform_clip`` before ``exp``."""
        codes = _coder_boxes("decode_single", rel_codes, "rel_codes")
        ref = _coder_boxes("decode_single", boxes, "boxes")
        if codes.shape[0] != ref.shape[0]:
            raise ShapeError(f"BoxCoder.decode_single: {codes.shape[0]} rows of rel_codes but {ref.shape[0]} "
                             "boxes; give one reference box per row")
        ref = ref.to(codes.dtype)
        wx, wy, ww, wh = self.weights
        widths = (ref[:, 2] - ref[:, 0])[:, None]
        heights = (ref[:, 3] - ref[:, 1])[:, None]
        ctr_x = ref[:, 0][:, None] + 0.5 * widths
        ctr_y = ref[:, 1][:, None] + 0.5 * heights
        dx = codes[:, 0::4] / wx
        dy = codes[:, 1::4] / wy
        dw = clamp(codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        dh = clamp(codes[:, 3::4] / wh, max=self.bbox_xform_clip)
        pred_x = dx * widths + ctr_x
        pred_y = dy * heights + ctr_y
        pred_w = exp(dw) * widths
        pred_h = exp(dh) * heights
        out = stack([pred_x - 0.5 * pred_w, pred_y - 0.5 * pred_h, pred_x + 0.5 * pred_w, pred_y + 0.5 * pred_h],
                    dim=2)
        return out.reshape(codes.shape[0], -1)
