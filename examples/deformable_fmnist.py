"""Deformable convolution on geometrically transformed Fashion-MNIST: plain vs DCN v1 vs DCN v2.

The notes (可变形卷积, DCN v1/v2) motivate deformable convolution with objects under unknown rotation and
scale. Here every Fashion-MNIST item is randomly rotated (+-45 deg), scaled (0.6-1.1) and shifted
(``shendu.data.transforms.RandomAffine``, new draws every epoch; the test set is transformed once with
a fixed seed). Three small CNNs differ only in their last stage, two 3x3 layers at 7x7:

    stem: conv3x3(1->16)-BN-ReLU-maxpool2, conv3x3(16->32)-BN-ReLU-maxpool2      (28 -> 14 -> 7)
    last stage: 2 x [conv3x3 | DeformConv2d v1 | DeformConv2d v2](->64)-BN-ReLU
    head: global average pool, Linear(64, 10)

The deformable layers own zero-initialised offset (and mask) branches, so they start as the plain
network; the offset branch trains at ``offset_lr_mult`` x the learning rate (1 for v1, 0.1 for v2;
``offset_param_groups``). Adam, lr 2e-3, batch 128, same seed and data order for every model.

Output: a table of test accuracy on the transformed test set (and on the untransformed one) per
model, and ``deformable_sampling.png``: for a unit on the object in the top layer, the 9 x 9 = 81
sampling locations of the two deformable layers mapped back to the image (as in the DCN paper's
figure), next to the regular grid a plain network would use.

Run: ``nice -n 10 python examples/deformable_fmnist.py --train 8000 --test 2000 --epochs 4 --threads 1``
(``--quick`` for a smoke run); ``--out DIR`` chooses where the PNG goes. ``--threads 1`` runs every
thread pool (BLAS, numba, shendu's chunk threads) single-threaded: on a machine shared with other jobs
that was 5-10x faster in wall time than the default two threads, which wait at barriers behind the
other processes.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import shendu
from shendu import functional as F
from shendu import nn, optim
from shendu.data import DataLoader, TensorDataset
from shendu.data.datasets import FashionMNIST
from shendu.data.transforms import RandomAffine
from shendu.train import evaluate
from shendu.vision.ops.deform_conv import DeformConv2d, offset_param_groups

MEAN, STD = 0.2860, 0.3530
STRIDE = 4  # the last stage runs at 1/4 of the image resolution (two 2x2 max pools)


def conv_bn_relu(layer: nn.Module, channels: int) -> list:
    return [layer, nn.BatchNorm2d(channels), nn.ReLU()]


class Net(nn.Module):
    def __init__(self, last: str):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(nn.Conv2d(1, 16, 3, padding=1), 16), nn.MaxPool2d(2),
                                  *conv_bn_relu(nn.Conv2d(16, 32, 3, padding=1), 32), nn.MaxPool2d(2))

        def layer(cin):
            if last == "plain":
                return nn.Conv2d(cin, 64, 3, padding=1)
            return DeformConv2d(cin, 64, 3, padding=1, modulated=(last == "dcn-v2"))

        self.stage = nn.Sequential(*conv_bn_relu(layer(32), 64), *conv_bn_relu(layer(64), 64))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.stage(self.stem(x)))


def load(train: bool, limit: int):
    ds = FashionMNIST(train=train)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.permutation(len(ds))[:limit])  # a class-balanced-in-expectation subset
    return ds.images[idx], ds.targets[idx]


def augment(images: np.ndarray, seed: int) -> np.ndarray:
    t = RandomAffine(degrees=45, translate=(0.1, 0.1), scale=(0.6, 1.1), interpolation="bilinear",
                     generator=shendu.Generator(seed))
    return t.batch(images)


def normalise(x: np.ndarray) -> np.ndarray:
    return ((x - MEAN) / STD).astype(np.float32)


def accuracy(model, x, y) -> float:
    return evaluate(model, DataLoader(TensorDataset(x, y), batch_size=500))["accuracy"]


def train(name, x_train, y_train, tests, args) -> dict:
    shendu.manual_seed(args.seed)
    model = Net(name)
    opt = optim.Adam(offset_param_groups(model, args.lr), lr=args.lr)
    n_params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        x_epoch = normalise(augment(x_train, seed=1000 + epoch))  # the same draws for every model
        order = rng.permutation(len(x_epoch))
        losses = []
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = F.cross_entropy(model(shendu.tensor(x_epoch[idx])), shendu.tensor(y_train[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        acc = accuracy(model, *tests["transformed"])
        print(f"  {name:7s} epoch {epoch}  loss {np.mean(losses):.4f}  transformed-test acc {acc:.2%}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    result = {"model": model, "params": n_params, "seconds": time.perf_counter() - start}
    for key, (x, y) in tests.items():
        result[key] = accuracy(model, x, y)
    return result


# ------------------------------------------------------------------------------ sampling locations
def _bilinear(field: np.ndarray, y: float, x: float) -> np.ndarray:
    """``field (C, H, W)`` read at a fractional ``(y, x)`` (clamped into the map)."""
    _, H, W = field.shape
    y, x = min(max(y, 0.0), H - 1.0), min(max(x, 0.0), W - 1.0)
    y0, x0 = min(int(y), H - 2), min(int(x), W - 2)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * field[:, y0, x0] + (1 - ly) * lx * field[:, y0, x0 + 1]
            + ly * (1 - lx) * field[:, y0 + 1, x0] + ly * lx * field[:, y0 + 1, x0 + 1])


def sampling_points(model: Net, image: np.ndarray, unit: tuple) -> np.ndarray:
    """Image coordinates (81, 2) that the top deformable layer's unit ``unit`` reads through both layers:
    its 9 taps in the first layer's output, then each tap's own 9 taps (offsets read bilinearly there)."""
    first, second = model.stage[0], model.stage[3]
    model.eval()
    with shendu.no_grad():
        a = model.stem(shendu.tensor(image[None]))
        off_a = first.offsets(a)[0].data[0]
        off_b = second.offsets(model.stage[2](model.stage[1](first(a))))[0].data[0]

    def taps(off_field, y, x):
        o = _bilinear(off_field, y, x).reshape(9, 2)
        return [(y + i - 1 + o[3 * i + j, 0], x + j - 1 + o[3 * i + j, 1]) for i in range(3) for j in range(3)]

    pts = [p for (y, x) in taps(off_b, *unit) for p in taps(off_a, y, x)]
    return np.array(pts) * STRIDE + (STRIDE - 1) / 2  # feature cell centre -> image pixel


def plot_sampling(model: Net, images: np.ndarray, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = (3, 3)
    regular = np.array([(unit[0] + a + b, unit[1] + c + d) for a in (-1, 0, 1) for c in (-1, 0, 1)
                        for b in (-1, 0, 1) for d in (-1, 0, 1)]) * STRIDE + (STRIDE - 1) / 2
    fig, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 2.9))
    for ax, img in zip(np.atleast_1d(axes), images):
        pts = sampling_points(model, normalise(img), unit)
        ax.imshow(img[0], cmap="gray", extent=(-0.5, 27.5, 27.5, -0.5))
        ax.scatter(regular[:, 1], regular[:, 0], s=6, c="tab:blue", alpha=0.5, label="regular 3x3 o 3x3")
        ax.scatter(pts[:, 1], pts[:, 0], s=6, c="tab:red", label="deformable (81 points)")
        cy, cx = np.array(unit) * STRIDE + (STRIDE - 1) / 2
        ax.scatter([cx], [cy], s=40, c="lime", marker="x", label="unit")
        ax.set_xlim(-4, 31)
        ax.set_ylim(31, -4)
        ax.axis("off")
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=6, bbox_to_anchor=(0, -0.02), ncol=1)
    fig.suptitle("Sampling locations of the centre unit through two deformable 3x3 layers", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=8000, help="training images (a fixed random subset)")
    ap.add_argument("--test", type=int, default=2000, help="test images")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--models", default="plain,dcn-v1,dcn-v2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=".", help="folder for deformable_sampling.png")
    ap.add_argument("--quick", action="store_true", help="1,000 train / 500 test images, 1 epoch")
    ap.add_argument("--threads", type=int, default=0, help="threads for BLAS, numba and shendu (0: defaults)")
    args = ap.parse_args(argv)
    if args.threads:
        shendu.set_num_threads(args.threads)
    if args.quick:
        args.train, args.test, args.epochs = 1000, 500, 1
    x_train, y_train = load(True, args.train)
    x_test, y_test = load(False, args.test)
    tests = {"transformed": (normalise(augment(x_test, seed=7)), y_test), "clean": (normalise(x_test), y_test)}
    print(f"Fashion-MNIST, {len(x_train)} train / {len(x_test)} test images, RandomAffine(+-45 deg, scale "
          f"0.6-1.1, shift 10%), {args.epochs} epochs")
    results = {}
    for name in args.models.split(","):
        results[name] = train(name, x_train, y_train, tests, args)
    print("\n| last stage | params | transformed test acc | clean test acc | train time |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['params']:,} | {r['transformed']:.2%} | {r['clean']:.2%} | {r['seconds']:.0f} s |")
    deformable = [n for n in results if n != "plain"]
    if deformable:
        os.makedirs(args.out, exist_ok=True)
        sample = augment(x_test[:5], seed=7)
        path = plot_sampling(results[deformable[-1]]["model"], sample,
                             os.path.join(args.out, "deformable_sampling.png"))
        print(f"\nwrote {path} (model {deformable[-1]})")


if __name__ == "__main__":
    main()
