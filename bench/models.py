"""Whole models, shendu vs PyTorch: inference (batch 1 and 32) and one SGD training step (batch 32).

Models: ResNet-18 and ResNet-50 at 3x224x224 (1000 classes), and the Fashion-MNIST models at 1x28x28 (10
classes): ``cnn_fmnist``, ``resnet_fmnist`` and ``resnet18_small`` from ``shendu.models``. The torch twin
of each is defined here in torch.nn with torchvision's layout and keys (torchvision is not installed), and
shendu's weights are loaded into it, so both run the same network with the same weights on the same data;
the bench checks that outputs (and the first training loss) agree before timing.

- inference: ``model.eval()``, no graph (``no_grad``), BN with running statistics, BN not fused.
- training step: ``model.train()``, zero_grad, forward, cross-entropy, backward, SGD step (lr 0.01,
  momentum 0.9).

Timing as bench/conv.py: torch and shendu alternate in rounds, each keeps its best wall time, with a 0.3 s
pause and then back-to-back calls (at least 3 and 0.25 s) per round (``bench._util.interleaved_best``), and
rounds go on until a case has had ``--min-seconds`` (default 10): this VM has slow stretches of 5-30 s, and the
three rounds of a fast case (about 3 s) could all fall in one (README, "Measured results"). torch keeps its
default thread count; shendu uses its chunk threads. ratio = shendu / torch; goal <= 1.25 for inference,
<= 1.5 for the training step. Both run in one process, so both get the allocator setting of
:mod:`shendu.memory` (freed memory kept for reuse; ``SHENDU_KEEP_FREED_MEMORY=0`` leaves glibc's default).

``--profile`` (default ResNet-50, inference, batch 32 or ``--profile-batch``) times shendu by op (every
``Function.apply``; convs split by kernel size and the algorithm chosen), and torch by aten op, to show where
the gap is.

Run: python bench/models.py [--quick] [--rounds 3] [--min-seconds 10] [--models resnet18,resnet50,...] [--threads N]
     [--profile [MODEL] [--profile-batch N]]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
from torch import nn as tnn  # noqa: E402

import shendu  # noqa: E402
from bench._util import interleaved_best, print_table  # noqa: E402
from shendu import functional as F  # noqa: E402
from shendu import models, optim  # noqa: E402
from shendu.ops.kernels import parallel  # noqa: E402

GOALS = {"infer": 1.25, "train": 1.5}


# ------------------------------------------------------------------------ torch twins (torchvision keys)
def _conv3x3(i, o, stride=1):
    return tnn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)


def _conv1x1(i, o, stride=1):
    return tnn.Conv2d(i, o, 1, stride=stride, bias=False)


class TorchBasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(inplanes, planes, stride), tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv3x3(planes, planes), tnn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class TorchBottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv1x1(inplanes, planes), tnn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes, stride), tnn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv1x1(planes, planes * 4), tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class TorchResNet(tnn.Module):
    """torchvision's ResNet, plus shendu's ``small_input`` (3x3/1 stem, no max pool) and stage ``widths``."""

    def __init__(self, block, layers, num_classes=1000, in_channels=3, small_input=False,
                 widths=(64, 128, 256, 512)):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = (tnn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False) if small_input
                      else tnn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False))
        self.bn1 = tnn.BatchNorm2d(widths[0])
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.Identity() if small_input else tnn.MaxPool2d(3, 2, 1)
        for i, (w, n) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, 1 if i == 0 else 2))
        self.n_stages = len(layers)
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(widths[-1] * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = tnn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                        tnn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return tnn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TorchFashionCNN(tnn.Module):
    """shendu.models.FashionCNN's layers and keys (``features.0`` ... ``classifier.3``)."""

    def __init__(self, num_classes=10, in_channels=1, widths=(32, 64), hidden=128, dropout=0.5):
        super().__init__()
        w1, w2 = widths

        def cbr(i, o):
            return [tnn.Conv2d(i, o, 3, padding=1, bias=False), tnn.BatchNorm2d(o), tnn.ReLU(inplace=True)]
        self.features = tnn.Sequential(*cbr(in_channels, w1), *cbr(w1, w1), tnn.MaxPool2d(2),
                                       *cbr(w1, w2), *cbr(w2, w2), tnn.MaxPool2d(2))
        self.classifier = tnn.Sequential(tnn.Linear(w2 * 49, hidden), tnn.ReLU(inplace=True), tnn.Dropout(dropout),
                                         tnn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# name: (input shape (C, H, W), classes, shendu kwargs, torch builder)
MODELS = {
    "resnet18": ((3, 224, 224), 1000, {}, lambda: TorchResNet(TorchBasicBlock, [2, 2, 2, 2])),
    "resnet50": ((3, 224, 224), 1000, {}, lambda: TorchResNet(TorchBottleneck, [3, 4, 6, 3])),
    "cnn_fmnist": ((1, 28, 28), 10, {}, lambda: TorchFashionCNN()),
    "resnet_fmnist": ((1, 28, 28), 10, {}, lambda: TorchResNet(TorchBasicBlock, [2, 2, 2], 10, 1, True, (32, 64, 128))),
    "resnet18_small": ((1, 28, 28), 10, {}, lambda: TorchResNet(TorchBasicBlock, [2, 2, 2, 2], 10, 1, True)),
}


def make_pair(name):
    """shendu's model (seeded random weights, BN statistics made non-trivial) and its torch twin."""
    shape, classes, kw, torch_builder = MODELS[name]
    shendu.manual_seed(0)
    s_model = models.get_model(name, num_classes=classes, in_channels=shape[0], **kw)
    rng = np.random.default_rng(0)
    for key, v in s_model.state_dict().items():  # running statistics that are not 0/1, so eval BN is real work
        if key.endswith("running_mean"):
            v.data[...] = 0.1 * rng.standard_normal(v.shape)
        elif key.endswith("running_var"):
            v.data[...] = 0.5 + rng.random(v.shape)
    t_model = torch_builder()
    t_model.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in s_model.state_dict().items()})
    return s_model, t_model


def make_batch(name, n, seed=1):
    shape, classes = MODELS[name][:2]
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape, dtype=np.float32), rng.integers(0, classes, n).astype(np.int64)


# --------------------------------------------------------------------------------------------- steps
def infer_fn(lib, model, x):
    model.eval()
    if lib is shendu:
        xs = shendu.from_numpy(x)

        def run():
            with shendu.no_grad():
                return model(xs).data
    else:
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return model(xt).numpy()
    return run


def train_fn(lib, model, x, y):
    model.train()
    if lib is shendu:
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xs, ys, ce = shendu.from_numpy(x), shendu.from_numpy(y), F.cross_entropy
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xs, ys, ce = torch.from_numpy(x), torch.from_numpy(y), TF.cross_entropy

    def step():
        opt.zero_grad()
        loss = ce(model(xs), ys)
        loss.backward()
        opt.step()
        return float(loss.item())
    return step


def check_same(name, s_model, t_model):
    """Outputs of both libraries on one batch (eval) and the first training loss agree: the same network."""
    x, y = make_batch(name, 2, seed=9)
    s_out, t_out = infer_fn(shendu, s_model, x)(), infer_fn(torch, t_model, x)()
    err = float(np.abs(s_out - t_out).max() / (np.abs(t_out).max() + 1e-12))
    if err > 1e-3:
        raise AssertionError(f"{name}: shendu and torch outputs differ (relative max error {err:.2e})")
    return err


def bench_model(name, rounds, cases, min_seconds=0.0):
    s_model, t_model = make_pair(name)
    err = check_same(name, s_model, t_model)
    rows = []
    for case in cases:
        kind, n = case.split("@")
        n = int(n)
        x, y = make_batch(name, n)
        if kind == "infer":
            fns = {"torch": infer_fn(torch, t_model, x), "shendu": infer_fn(shendu, s_model, x)}
            note = f"out err {err:.0e}"
        else:
            s_model, t_model = make_pair(name)  # same starting weights for both optimizers
            fns = {"torch": train_fn(torch, t_model, x, y), "shendu": train_fn(shendu, s_model, x, y)}
            loss_s, loss_t = fns["shendu"](), fns["torch"]()  # the first step is the warm-up: same loss
            note = f"loss {loss_s:.4f} vs {loss_t:.4f}"
            if any(type(m).__name__ == "Dropout" for m in s_model.modules()):
                note += " (dropout masks differ)"
        best = interleaved_best(fns, rounds, warmup=kind == "infer", min_seconds=min_seconds)
        ratio = best["shendu"] / best["torch"]
        goal = GOALS[kind]
        shape = "x".join(map(str, MODELS[name][0]))
        rows.append([name, shape, f"{kind} b{n}", f"{best['torch'] * 1e3:.1f}", f"{best['shendu'] * 1e3:.1f}",
                     f"{ratio:.2f}", f"<= {goal}", "yes" if ratio <= goal else "no", note])
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------------------------------ profiling
def _op_label(cls, args, kwargs):
    if cls.__name__ == "ConvNd":
        w = kwargs.get("w4_shape") or args[1].shape
        return f"conv {w[2]}x{w[3]} ({kwargs.get('algorithm', '?')})"
    return cls.__name__


def profile_shendu(fn, calls=2):
    """Wall time per op type over ``calls`` runs of ``fn``, by wrapping every ``Function.apply``."""
    from shendu.autograd.function import Function

    totals = collections.defaultdict(float)
    counts = collections.Counter()
    original = Function.__dict__["apply"].__func__

    def timed_apply(cls, *args, **kwargs):
        t0 = time.perf_counter()
        out = original(cls, *args, **kwargs)
        label = _op_label(cls, args, kwargs)
        totals[label] += time.perf_counter() - t0
        counts[label] += 1
        return out

    Function.apply = classmethod(timed_apply)
    try:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        total = time.perf_counter() - t0
    finally:
        Function.apply = classmethod(original)
    return total / calls, {k: v / calls for k, v in totals.items()}, {k: c // calls for k, c in counts.items()}


def profile_torch(fn, calls=2):
    with torch.autograd.profiler.profile() as prof:
        for _ in range(calls):
            fn()
    rows = {e.key: e.self_cpu_time_total / 1e6 / calls for e in prof.key_averages()}
    return rows


def run_profile(name, n):
    s_model, t_model = make_pair(name)
    x, _ = make_batch(name, n)
    s_fn, t_fn = infer_fn(shendu, s_model, x), infer_fn(torch, t_model, x)
    s_fn(), t_fn()  # warm-up
    total, per_op, counts = profile_shendu(s_fn)
    t_total = interleaved_best({"torch": t_fn}, 2)["torch"]
    t_ops = profile_torch(t_fn)
    print(f"\nshendu {name} inference, batch {n}: {total * 1e3:.0f} ms per forward "
          f"(torch {t_total * 1e3:.0f} ms), time inside each op type:")
    rows = [[k, str(counts[k]), f"{v * 1e3:.1f}", f"{100 * v / total:.1f}%"]
            for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])]
    rows.append(["(outside ops: Python, module calls)", "", f"{(total - sum(per_op.values())) * 1e3:.1f}",
                 f"{100 * (1 - sum(per_op.values()) / total):.1f}%"])
    print_table(rows, ["shendu op", "calls", "ms", "share"])
    t_sum = sum(t_ops.values())
    print(f"\ntorch {name} inference, batch {n}: aten ops by self CPU time (profiler overhead included)")
    rows = [[k, f"{v * 1e3:.1f}", f"{100 * v / t_sum:.1f}%"]
            for k, v in sorted(t_ops.items(), key=lambda kv: -kv[1])[:8]]
    print_table(rows, ["torch op", "ms", "share"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=10.0,
                    help="more rounds until each case has run this long (0: just --rounds)")
    ap.add_argument("--quick", action="store_true", help="one timed round after the warm-up")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--cases", default="infer@1,infer@32,train@32")
    ap.add_argument("--threads", type=int,
                    help="threads for both libraries (torch.set_num_threads; shendu's kernel and numba threads)")
    ap.add_argument("--profile", nargs="?", const="resnet50", metavar="MODEL",
                    help="profile inference of MODEL (default resnet50) by op type, then exit")
    ap.add_argument("--profile-batch", type=int, default=32, metavar="N", help="batch size of --profile")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        shendu.set_num_threads(args.threads)  # shendu's kernels, numba and BLAS
    if args.profile:
        return run_profile(args.profile, args.profile_batch)
    rounds = 1 if args.quick else args.rounds
    min_seconds = 0.0 if args.quick else args.min_seconds
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), shendu {shendu.__version__} "
          f"({parallel.num_threads()} kernel threads), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, freed memory kept for both libraries "
          f"(shendu.memory): {os.environ.get('SHENDU_KEEP_FREED_MEMORY', '1') == '1'}; best of {rounds} or more "
          f"interleaved round(s), at least {min_seconds:g} s a case, after a warm-up; times in ms\n", flush=True)
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name, rounds, args.cases.split(","), min_seconds)
    print()
    print_table(rows, ["model", "input", "case", "torch ms", "shendu ms", "ratio", "goal", "met", "check"])
    print("\nratio = shendu / torch (lower is better)")


if __name__ == "__main__":
    main()
