"""Regularizers side by side on a small Fashion-MNIST subset: none, dropout, DropConnect, cutout, mixup,
label smoothing and stochastic depth, each training the same small residual CNN from the same weights.

The network: conv 3x3 1->16 + BN + ReLU, max pool (14x14), a residual block of two 3x3 convs at 16
channels, conv 3x3/2 16->32 + BN + ReLU (7x7), a residual block at 32 channels, then FC 1568->64, ReLU,
FC 64->10. The big first FC layer on a few thousand images overfits, which is what the regularizers fight:

- ``dropout``: ``nn.Dropout(0.5)`` after the FC-64 ReLU.
- ``dropconnect``: the convs of both residual blocks are ``DropConnectConv2d(p=0.2)`` (weights dropped).
- ``cutout``: one 12x12 square zeroed per normalised training image (DeVries & Taylor 2017).
- ``mixup``: ``lam ~ Beta(1, 1)`` per batch, loss mixed between the two labels (Zhang et al. 2018).
- ``label_smoothing``: cross-entropy against ``0.9 * onehot + 0.1 / 10``.
- ``stochastic_depth``: the residual branch of block ``l`` is dropped per sample with probability
  ``0.2 * l / 2`` (linear decay, torchvision's inverted ``StochasticDepth(p, "row")``).

Every run: the same seed (so the same initial weights and batch order), Adam lr 2e-3, batch 128, the same
number of epochs (default 3,000 training images, 8 epochs). Test accuracy is measured each epoch on 1,000
test images (for the curves) and at the end on all 10,000; the table also shows the clean training accuracy,
so the generalisation gap is visible. One seed on a small subset is a noisy comparison (differences below
~0.5 points mean little).

Run: ``nice -n 10 python examples/regularizers_fmnist.py [--epochs 8] [--train 3000] [--out regularizers.png]``
(about 12 CPU-minutes in all; longer in wall time on a busy machine). Measured (seed 0, 3,000 images, 8 epochs):
test accuracy none 84.2%, dropout 85.1%, DropConnect 85.3%, cutout 84.6%, mixup 84.8%, label smoothing 84.8%,
stochastic depth 84.0%; the train-test gap falls from 14.8 points (none) to 8.5 (dropout).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import shendu
from shendu import functional as F
from shendu import nn, optim
from shendu.data import DataLoader, TensorDataset
from shendu.data.datasets import FashionMNIST
from shendu.data.transforms import Cutout, Mixup, mixup_criterion
from shendu.nn.regularization import DropConnectConv2d, StochasticDepth
from shendu.train import evaluate

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics
METHODS = ["none", "dropout", "dropconnect", "cutout", "mixup", "label_smoothing", "stochastic_depth"]


class ResidualBlock(nn.Module):
    """``relu(x + sd(bn2(conv2(relu(bn1(conv1(x)))))))``; ``sd`` is stochastic depth (identity at p = 0)."""

    def __init__(self, channels: int, dropconnect: float = 0.0, drop_path: float = 0.0):
        super().__init__()

        def conv():
            if dropconnect > 0:
                return DropConnectConv2d(channels, channels, 3, padding=1, bias=False, p=dropconnect)
            return nn.Conv2d(channels, channels, 3, padding=1, bias=False)

        self.conv1, self.bn1 = conv(), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = conv(), nn.BatchNorm2d(channels)
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(x + self.drop_path(out))


class SmallResNet(nn.Module):
    def __init__(self, dropout: float = 0.0, dropconnect: float = 0.0, stochastic_depth: float = 0.0):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.block1 = ResidualBlock(16, dropconnect, stochastic_depth * 1 / 2)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU())
        self.block2 = ResidualBlock(32, dropconnect, stochastic_depth * 2 / 2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.block2(self.down(self.block1(self.stem(x)))))


def build(method: str) -> SmallResNet:
    return SmallResNet(dropout=0.5 if method == "dropout" else 0.0,
                       dropconnect=0.2 if method == "dropconnect" else 0.0,
                       stochastic_depth=0.2 if method == "stochastic_depth" else 0.0)


def load(train: bool, limit: int | None, seed: int = 0):
    ds = FashionMNIST(train=train)
    idx = np.random.default_rng(seed).permutation(len(ds))[:limit]  # a random, class-balanced-ish subset
    x = ((ds.data[idx].astype(np.float32) / 255.0 - MEAN) / STD)[:, None]
    return x, ds.targets[idx].astype(np.int64)


def accuracy(model, x, y) -> float:
    return evaluate(model, DataLoader(TensorDataset(x, y), batch_size=500))["accuracy"]


def train_one(method: str, data: dict, epochs: int, batch: int, lr: float, seed: int) -> dict:
    shendu.manual_seed(seed)  # same initial weights and same random streams for every method
    model = build(method)
    opt = optim.Adam(model.parameters(), lr=lr)
    cutout, mixup = Cutout(1, 12), Mixup(alpha=1.0)
    smoothing = 0.1 if method == "label_smoothing" else 0.0
    order_rng = np.random.default_rng(seed)
    x_train, y_train = data["train"]
    hist = {"loss": [], "test_acc": []}
    for epoch in range(1, epochs + 1):
        t0, losses = time.perf_counter(), []
        order = order_rng.permutation(len(x_train))
        for start in range(0, len(x_train), batch):
            sel = order[start:start + batch]
            xb, yb = x_train[sel], y_train[sel]
            if method == "cutout":
                xb = cutout.batch(xb)
            if method == "mixup":
                xm, ya, yb2, lam = mixup(xb, yb)
                out = model(shendu.tensor(xm))
                loss = mixup_criterion(F.cross_entropy, out, shendu.tensor(ya), shendu.tensor(yb2), lam)
            else:
                loss = F.cross_entropy(model(shendu.tensor(xb)), shendu.tensor(yb), label_smoothing=smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        hist["loss"].append(float(np.mean(losses)))
        hist["test_acc"].append(accuracy(model, *data["test_curve"]))
        print(f"  {method:16s} epoch {epoch:2d}  loss {hist['loss'][-1]:.4f}  test acc (1k) "
              f"{hist['test_acc'][-1]:.4f}  {time.perf_counter() - t0:.1f}s", flush=True)
    hist["train_acc"] = accuracy(model, x_train, y_train)
    hist["final_test_acc"] = accuracy(model, *data["test"])
    return hist


def plot(results: dict, path: str, n_train: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for method, h in results.items():
        epochs = np.arange(1, len(h["loss"]) + 1)
        ax1.plot(epochs, h["test_acc"], marker="o", ms=3, label=method)
        ax2.plot(epochs, h["loss"], marker="o", ms=3, label=method)
    ax1.set(xlabel="epoch", ylabel="test accuracy (1,000 images)", title="Test accuracy")
    ax2.set(xlabel="epoch", ylabel="training loss (with the regularizer on)", title="Training loss", yscale="log")
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(f"Regularizers on {n_train:,} Fashion-MNIST images (small ResNet, same seed and epochs)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--train", type=int, default=3000, help="training images (a random subset)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default="regularizers_fmnist.png")
    args = ap.parse_args()
    x_test, y_test = load(False, None)
    data = {"train": load(True, args.train, args.seed), "test": (x_test, y_test),
            "test_curve": (x_test[:1000], y_test[:1000])}
    print(f"{args.train} training images, {args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr}, "
          f"seed {args.seed}")
    t0 = time.perf_counter()
    results = {m: train_one(m, data, args.epochs, args.batch_size, args.lr, args.seed)
               for m in args.methods.split(",")}
    print(f"\nall runs: {time.perf_counter() - t0:.0f}s\n")
    print("| method | train acc (clean) | test acc (10k) | gap | best epoch test acc (1k) |")
    print("|---|---|---|---|---|")
    for m, h in results.items():
        print(f"| {m} | {h['train_acc']:.4f} | {h['final_test_acc']:.4f} | "
              f"{h['train_acc'] - h['final_test_acc']:.4f} | {max(h['test_acc']):.4f} |")
    plot(results, args.out, args.train)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
