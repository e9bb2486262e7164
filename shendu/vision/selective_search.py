"""Selective search (Uijlings, van de Sande, Gevers, Smeulders, IJCV 2013): class-agnostic object proposals
by grouping a graph-based over-segmentation bottom-up, the proposal stage of R-CNN and Fast R-CNN.

1. **Over-segmentation** by Felzenszwalb & Huttenlocher (IJCV 2004). Pixels are the nodes of a graph whose
   edges join 8- (or 4-) neighbours, weighted by the Euclidean distance of the Gaussian-smoothed pixel
   values (0..255 scale). Edges are visited by increasing weight; the components ``C1, C2`` joined by an
   edge of weight ``w`` merge when ``w <= min(Int(C1) + k/|C1|, Int(C2) + k/|C2|)``, where ``Int(C)`` is the
   largest weight of C's minimum spanning tree (the weight of the edge that last grew C, since edges come
   sorted). A second pass over the same sorted edges absorbs components smaller than ``min_size``. This
   pass over sorted edges is sequential by nature (each decision depends on all earlier ones), so it
   runs as a numba kernel; :func:`segment_graph_reference` is the plain Python version the tests compare
   it with.
2. **Hierarchical grouping**: repeatedly merge the two adjacent regions with the highest similarity
   ``s = a_c s_colour + a_t s_texture + a_s s_size + a_f s_fill`` (each in [0, 1]):
   ``s_colour = sum_k min(c_i^k, c_j^k)`` over L1-normalised 25-bin histograms per channel (intensity for
   a one-channel image); ``s_texture`` the same over 10-bin histograms of Gaussian derivatives (sigma 1)
   in 8 orientations per channel; ``s_size = 1 - (|r_i| + |r_j|) / |im|`` (merge small regions first);
   ``s_fill = 1 - (|BB_ij| - |r_i| - |r_j|) / |im|`` (prefer regions that fill each other's gaps). Merged
   histograms are size-weighted averages, so no pixel is revisited. Every region of the hierarchy (the
   initial ones and every merge) is a proposal.
3. **Diversification**: several strategies (thresholds ``k`` x similarity mixes); within a strategy the
   region created last (the whole image) has position 1, the one before position 2, ...; each position is
   multiplied by a uniform random number, the proposals of all strategies are sorted by that value and
   duplicate boxes are dropped, so large stable regions come first while small ones are interleaved.

Boxes are ``xyxy`` float32 in continuous pixel coordinates (torchvision's convention, no +1): a region
covering columns ``x0..x1`` gives ``x1 + 1`` as its right edge.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import ndimage

from shendu.errors import ArgumentError, ShapeError, fmt_shape

__all__ = ["felzenszwalb", "segment_graph", "segment_graph_reference", "grid_edges", "region_adjacency",
           "hierarchical_grouping", "selective_search"]

_COLOUR_BINS = 25
_TEXTURE_BINS = 10
_ORIENTATIONS = 8


def _as_chw(op: str, image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3 or min(img.shape) == 0:
        raise ShapeError(f"{op}: expected an image (H, W) or (C, H, W), got shape {fmt_shape(np.shape(image))}; "
                         "pass one image, not a batch")
    if img.shape[0] > 4:
        raise ShapeError(f"{op}: expected at most 4 channels first (C, H, W), got shape {fmt_shape(img.shape)}; "
                         "is the image HWC? use image.transpose(2, 0, 1)")
    return img.astype(np.float64)


# ------------------------------------------------------------------------------------------ segmentation


def grid_edges(image: np.ndarray, connectivity: int = 8) -> tuple:
    """The pixel graph of a (C, H, W) image: ``(a, b, w)`` with node ids ``y * W + x`` and weights the
    Euclidean distance between the two pixels' channel vectors.

    4-connectivity joins right and down neighbours, 8-connectivity adds down-right and up-right, so every
    undirected edge appears once.
    """
    _, h, w = image.shape
    ids = np.arange(h * w).reshape(h, w)
    # (dy, dx) neighbour offsets; the slices pick the pixels that have such a neighbour
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (-1, 1)] if connectivity == 8 else [])
    a, b, wt = [], [], []
    for dy, dx in offsets:
        ys = slice(max(-dy, 0), h - max(dy, 0))
        xs = slice(0, w - dx)
        ys2 = slice(max(dy, 0), h + min(dy, 0))
        xs2 = slice(dx, w)
        a.append(ids[ys, xs].ravel())
        b.append(ids[ys2, xs2].ravel())
        diff = image[:, ys, xs] - image[:, ys2, xs2]
        wt.append(np.sqrt((diff * diff).sum(axis=0)).ravel())
    return np.concatenate(a), np.concatenate(b), np.concatenate(wt)


def segment_graph_reference(num_nodes: int, a, b, w, k: float, min_size: int) -> np.ndarray:
    """Plain Python Felzenszwalb-Huttenlocher over edges already sorted by weight: the root of every node.

    The reference for :func:`segment_graph` (same union-by-rank rule, so the same roots).
    """
    parent = list(range(num_nodes))
    rank = [0] * num_nodes
    size = [1] * num_nodes
    threshold = [float(k)] * num_nodes  # Int(C) + k/|C|, with Int = 0 for a single pixel

    def find(x):
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(x, y):
        if rank[x] < rank[y]:
            x, y = y, x
        parent[y] = x
        size[x] += size[y]
        if rank[x] == rank[y]:
            rank[x] += 1
        return x

    for e in range(len(a)):
        ra, rb = find(int(a[e])), find(int(b[e]))
        if ra != rb and w[e] <= threshold[ra] and w[e] <= threshold[rb]:
            r = union(ra, rb)
            threshold[r] = float(w[e]) + k / size[r]
    for e in range(len(a)):
        ra, rb = find(int(a[e])), find(int(b[e]))
        if ra != rb and (size[ra] < min_size or size[rb] < min_size):
            union(ra, rb)
    return np.array([find(x) for x in range(num_nodes)], dtype=np.int64)


@njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit(cache=True)
def _union(parent, rank, size, x, y):
    if rank[x] < rank[y]:
        x, y = y, x
    parent[y] = x
    size[x] += size[y]
    if rank[x] == rank[y]:
        rank[x] += 1
    return x


@njit(cache=True)
def _segment_graph_kernel(num_nodes, a, b, w, k, min_size):
    parent = np.arange(num_nodes)
    rank = np.zeros(num_nodes, np.int64)
    size = np.ones(num_nodes, np.int64)
    threshold = np.full(num_nodes, k)
    for e in range(a.shape[0]):
        ra = _find(parent, a[e])
        rb = _find(parent, b[e])
        if ra != rb and w[e] <= threshold[ra] and w[e] <= threshold[rb]:
            r = _union(parent, rank, size, ra, rb)
            threshold[r] = w[e] + k / size[r]
    for e in range(a.shape[0]):
        ra = _find(parent, a[e])
        rb = _find(parent, b[e])
        if ra != rb and (size[ra] < min_size or size[rb] < min_size):
            _union(parent, rank, size, ra, rb)
    roots = np.empty(num_nodes, np.int64)
    for x in range(num_nodes):
        roots[x] = _find(parent, x)
    return roots


def segment_graph(num_nodes: int, a, b, w, k: float, min_size: int) -> np.ndarray:
    """Felzenszwalb-Huttenlocher over edges ``(a[e], b[e], w[e])`` already sorted by increasing weight:
    the root node of every node's component (numba kernel; :func:`segment_graph_reference` is the same in
    plain Python).

    >>> a, b, w = np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([0.0, 1.0, 50.0])
    >>> segment_graph(4, a, b, w, k=10.0, min_size=1).tolist()   # the 50 edge exceeds Int + k/|C|
    [0, 0, 0, 3]
    """
    return _segment_graph_kernel(int(num_nodes), np.ascontiguousarray(a, np.int64),
                                 np.ascontiguousarray(b, np.int64), np.ascontiguousarray(w, np.float64),
                                 float(k), int(min_size))


def _canonical_labels(roots: np.ndarray) -> np.ndarray:
    """Relabel component roots as 0..R-1 in order of first appearance (row-major), so labelings compare."""
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse]


def felzenszwalb(image, scale: float = 100.0, sigma: float = 0.8, min_size: int = 20, connectivity: int = 8,
                 reference: bool = False) -> np.ndarray:
    """Graph-based segmentation (Felzenszwalb & Huttenlocher 2004): an int64 label map (H, W), labels
    0..R-1 in order of first appearance.

    ``image`` (H, W) or (C, H, W) with values in [0, 1]; ``scale`` is k for pixel values on the 0..255
    scale (larger gives larger regions); ``sigma`` the Gaussian pre-smoothing; ``min_size`` the smallest
    region kept; ``reference=True`` runs the plain Python union-find instead of the numba kernel.

    >>> img = np.zeros((6, 6)); img[:, 3:] = 1.0          # two flat halves
    >>> felzenszwalb(img, scale=50, sigma=0, min_size=2)[0].tolist()
    [0, 0, 0, 1, 1, 1]
    """
    op = "felzenszwalb"
    img = _as_chw(op, image)
    if connectivity not in (4, 8):
        raise ArgumentError(f"{op}: connectivity must be 4 or 8, got {connectivity}")
    if scale <= 0 or sigma < 0 or min_size < 1:
        raise ArgumentError(f"{op}: need scale > 0, sigma >= 0 and min_size >= 1, got scale={scale}, "
                            f"sigma={sigma}, min_size={min_size}")
    _, h, w = img.shape
    smooth = np.stack([ndimage.gaussian_filter(c, sigma, mode="nearest") for c in img]) if sigma > 0 else img
    a, b, wt = grid_edges(smooth * 255.0, connectivity)
    order = np.argsort(wt, kind="stable")
    run = segment_graph_reference if reference else segment_graph
    roots = run(h * w, a[order], b[order], wt[order], float(scale), int(min_size))
    return _canonical_labels(roots).reshape(h, w)


# ------------------------------------------------------------------------------------------ grouping


def region_adjacency(labels: np.ndarray) -> np.ndarray:
    """Pairs ``(i, j)``, i < j, of labels that touch (8-neighbourhood), one row per pair, sorted."""
    pairs = [(labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :]),
             (labels[:-1, :-1], labels[1:, 1:]), (labels[1:, :-1], labels[:-1, 1:])]
    u = np.concatenate([p.ravel() for p, _ in pairs])
    v = np.concatenate([q.ravel() for _, q in pairs])
    keep = u != v
    lo, hi = np.minimum(u[keep], v[keep]), np.maximum(u[keep], v[keep])
    n = int(labels.max()) + 1
    code = np.unique(lo * n + hi)  # one integer per pair: a 1-D unique is much faster than axis=0
    return np.stack([code // n, code % n], axis=1)


def _histograms(labels: np.ndarray, values: np.ndarray, bins: int, num: int, lo: float, hi: float) -> np.ndarray:
    """Per-region histogram of ``values`` (one map) over ``bins`` equal bins of [lo, hi]: (num, bins)."""
    idx = np.clip(((values - lo) / max(hi - lo, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    return np.bincount((labels * bins + idx).ravel(), minlength=num * bins).reshape(num, bins).astype(np.float64)


def _region_features(image: np.ndarray, labels: np.ndarray) -> dict:
    """Sizes, boxes and L1-normalised colour and texture histograms of the regions of ``labels``."""
    num = int(labels.max()) + 1
    h, w = labels.shape
    flat = labels.ravel()
    size = np.bincount(flat, minlength=num).astype(np.float64)
    # which columns and rows each region touches; the first and last give its box
    in_col = np.zeros((num, w), bool)
    in_row = np.zeros((num, h), bool)
    in_col[labels, np.arange(w)] = True
    in_row[labels, np.arange(h)[:, None]] = True
    box = np.stack([in_col.argmax(1), in_row.argmax(1), w - in_col[:, ::-1].argmax(1),
                    h - in_row[:, ::-1].argmax(1)], axis=1).astype(np.float64)
    colour = np.concatenate([_histograms(labels, c, _COLOUR_BINS, num, 0.0, 1.0) for c in image], axis=1)
    texture = []
    angles = np.arange(_ORIENTATIONS) * (2 * np.pi / _ORIENTATIONS)
    for c in image:
        gy = ndimage.gaussian_filter(c, 1.0, order=(1, 0), mode="nearest")
        gx = ndimage.gaussian_filter(c, 1.0, order=(0, 1), mode="nearest")
        # the derivative along each orientation; theta and theta+pi are the two signs of one edge
        resp = np.maximum(np.cos(angles)[:, None, None] * gx + np.sin(angles)[:, None, None] * gy, 0)
        top = float(resp.max())
        texture += [_histograms(labels, r, _TEXTURE_BINS, num, 0.0, top) for r in resp]
    texture = np.concatenate(texture, axis=1)
    return {"size": size, "box": box,
            "colour": colour / colour.sum(axis=1, keepdims=True),
            "texture": texture / texture.sum(axis=1, keepdims=True)}


def _pair_similarity(f: dict, i: np.ndarray, j: np.ndarray, weights: tuple, image_size: float) -> np.ndarray:
    """``s(r_i, r_j)`` for arrays of region pairs."""
    wc, wt, ws, wf = weights
    s = np.zeros(len(i))
    if wc:
        s += wc * np.minimum(f["colour"][i], f["colour"][j]).sum(axis=1)
    if wt:
        s += wt * np.minimum(f["texture"][i], f["texture"][j]).sum(axis=1)
    both = f["size"][i] + f["size"][j]
    if ws:
        s += ws * (1.0 - both / image_size)
    if wf:
        bi, bj = f["box"][i], f["box"][j]
        bw = np.maximum(bi[:, 2], bj[:, 2]) - np.minimum(bi[:, 0], bj[:, 0])
        bh = np.maximum(bi[:, 3], bj[:, 3]) - np.minimum(bi[:, 1], bj[:, 1])
        s += wf * (1.0 - (bw * bh - both) / image_size)
    return s


_SIMILARITY_WEIGHTS = {"C": 0, "T": 1, "S": 2, "F": 3}


def _parse_similarity(op: str, name: str) -> tuple:
    if not name or any(ch not in _SIMILARITY_WEIGHTS for ch in name):
        raise ArgumentError(f"{op}: similarity {name!r} must combine the letters C (colour), T (texture), "
                            "S (size) and F (fill), e.g. 'CTSF' or 'TSF'")
    return tuple(float(ch in name) for ch in "CTSF")


def hierarchical_grouping(image, labels: np.ndarray, similarity: str = "CTSF") -> np.ndarray:
    """Greedy bottom-up grouping of the regions of ``labels``: the boxes of every region of the hierarchy,
    (2R - 1, 4) float64 xyxy, in creation order (the R initial regions, then one box per merge; the last
    is the union of all).

    ``similarity`` names the terms summed: C colour, T texture, S size, F fill (``"CTSF"``, ``"TSF"``...).

    >>> img = np.zeros((4, 6)); labels = np.repeat([[0, 0, 1, 1, 2, 2]], 4, axis=0)
    >>> hierarchical_grouping(img, labels, "S")[3:].tolist()   # equal sizes: the first pair, then all
    [[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 6.0, 4.0]]
    """
    op = "hierarchical_grouping"
    img = _as_chw(op, image)
    weights = _parse_similarity(op, similarity)
    labels = np.asarray(labels, np.int64)
    if labels.shape != img.shape[1:]:
        raise ShapeError(f"{op}: labels shape {fmt_shape(labels.shape)} differs from the image's "
                         f"{fmt_shape(img.shape[1:])}")
    return _group(_region_features(img, labels), region_adjacency(labels), weights, float(labels.size))


def _group(f0: dict, pairs: np.ndarray, weights: tuple, image_size: float) -> np.ndarray:
    """The grouping loop. Similarities live in a dense (2R-1, 2R-1) matrix, upper triangle only; each merge
    is one argmax, retires the rows and columns of the two merged regions and fills the new region's column."""
    r = len(f0["size"])
    total = 2 * r - 1
    f = {}
    for name, arr in f0.items():
        f[name] = np.zeros((total,) + arr.shape[1:])
        f[name][:r] = arr
    sim = np.full((total, total), -np.inf)
    adj = np.zeros((total, total), bool)
    adj[pairs[:, 0], pairs[:, 1]] = adj[pairs[:, 1], pairs[:, 0]] = True
    if len(pairs):
        sim[pairs[:, 0], pairs[:, 1]] = _pair_similarity(f, pairs[:, 0], pairs[:, 1], weights, image_size)
    n = r
    while n < total:
        best = int(np.argmax(sim))
        i, j = divmod(best, total)
        if sim[i, j] == -np.inf:  # no adjacent pair left (cannot happen for a label map of one grid)
            break
        si, sj = f["size"][i], f["size"][j]
        f["size"][n] = si + sj
        for name in ("colour", "texture"):
            f[name][n] = (si * f[name][i] + sj * f[name][j]) / (si + sj)
        f["box"][n, :2] = np.minimum(f["box"][i, :2], f["box"][j, :2])
        f["box"][n, 2:] = np.maximum(f["box"][i, 2:], f["box"][j, 2:])
        nb = adj[i] | adj[j]
        nb[[i, j]] = False
        adj[[i, j], :] = False
        adj[:, [i, j]] = False
        sim[[i, j], :] = -np.inf
        sim[:, [i, j]] = -np.inf
        adj[n, nb] = adj[nb, n] = True
        js = np.flatnonzero(nb)
        if len(js):
            sim[js, n] = _pair_similarity(f, np.full(len(js), n), js, weights, image_size)
        n += 1
    return f["box"][:n]


def selective_search(image, scales=(50, 150), similarities=("CTSF", "TSF"), sigma: float = 0.8,
                     min_size: int = 20, min_box: float = 4.0, max_boxes: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """Selective search proposals for one image: (P, 4) float32 xyxy boxes, the most promising first.

    ``image`` (H, W) or (C, H, W) in [0, 1] (intensity is the only colour space of a grey image).
    One strategy per (k in ``scales``) x (mix in ``similarities``) (the paper's "fast" mode uses k 50 and
    100 with CTSF and TSF, over two colour spaces); ``min_size`` is the segmentation's smallest region,
    ``min_box`` drops boxes thinner than that many pixels, ``max_boxes`` keeps the first ones. ``seed``
    fixes the random ranking.

    >>> img = np.zeros((32, 32)); img[4:12, 6:20] = 1.0; img[18:28, 20:30] = 0.6
    >>> boxes = selective_search(img)
    >>> [6.0, 4.0, 20.0, 12.0] in boxes.tolist() and [20.0, 18.0, 30.0, 28.0] in boxes.tolist()
    True
    """
    op = "selective_search"
    img = _as_chw(op, image)
    for s in similarities:
        _parse_similarity(op, s)
    if not scales or not similarities:
        raise ArgumentError(f"{op}: need at least one scale and one similarity, got scales={scales}, "
                            f"similarities={similarities}")
    rng = np.random.default_rng(seed)
    boxes, rank = [], []
    for k in scales:
        labels = felzenszwalb(img, scale=k, sigma=sigma, min_size=min_size)
        features, pairs = _region_features(img, labels), region_adjacency(labels)
        for s in similarities:
            b = _group(features, pairs, _parse_similarity(op, s), float(labels.size))
            position = np.arange(len(b), 0, -1, dtype=np.float64)  # the last merge is position 1
            boxes.append(b)
            rank.append(position * rng.random(len(b)))
    boxes, rank = np.concatenate(boxes), np.concatenate(rank)
    boxes = boxes[np.argsort(rank, kind="stable")]
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_box) & ((boxes[:, 3] - boxes[:, 1]) >= min_box)
    boxes = boxes[keep]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]  # duplicates dropped, the best-ranked copy kept
    if max_boxes is not None:
        boxes = boxes[:max_boxes]
    return boxes.astype(np.float32)
