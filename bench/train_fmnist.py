"""Training the reference Fashion-MNIST CNN, shendu vs PyTorch: images/s, time waiting for data, peak memory.

The model is ``shendu.models.get_model("cnn_fmnist")`` ((conv3x3-BN-ReLU x2, max pool) x2 at widths 32/64,
FC 3136->128, ReLU, dropout 0.5, FC 128->10) and the same network in torch, both starting from the same
weights; batch 128, Adam lr 1e-3, cross-entropy, on the Fashion-MNIST training set.

Each library trains in its own subprocess, so their memory does not mix: the peak memory is the process's
resident-set high-water mark (``ru_maxrss``), reported together with the resident size just before training
(after imports, data and model), so their difference is what training itself added. Both read batches from
the same ``shendu.data.DataLoader`` (shuffled, normalized, prefetched in a background thread); "data wait" is
the time the training loop spent blocked in ``next(loader)``, as a fraction of the whole step time.

Run: python bench/train_fmnist.py [--steps N | --epoch] [--warmup 2] [--lib both|shendu|torch]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

BATCH = 128
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics


def rss_mb() -> float:
    """The current resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------------------------------- the models
def shendu_model():
    """The zoo's cnn_fmnist; the same architecture inline while nn.Conv2d is not yet available."""
    import shendu
    from shendu import models
    shendu.manual_seed(0)
    try:
        return models.get_model("cnn_fmnist", num_classes=10, in_channels=1), "shendu.models cnn_fmnist"
    except AttributeError as exc:  # the zoo model needs a layer that is still being written
        return _inline_cnn(), f"inline copy ({exc})"


def _inline_cnn():
    from shendu import functional as F
    from shendu import nn

    class Conv2d(nn.Module):  # only what this model needs: 3x3, padding 1, no bias, kaiming-uniform init
        def __init__(self, cin, cout):
            super().__init__()
            self.weight = nn.Parameter(np.empty((cout, cin, 3, 3), np.float32))
            nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

        def forward(self, x):
            return F.conv2d(x, self.weight, None, 1, 1)

    class FashionCNN(nn.Module):
        def __init__(self):
            super().__init__()
            block = lambda i, o: [Conv2d(i, o), nn.BatchNorm2d(o), nn.ReLU()]  # noqa: E731
            self.features = nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                                          *block(32, 64), *block(64, 64), nn.MaxPool2d(2))
            self.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))

        def forward(self, x):
            return self.classifier(self.features(x).flatten(1))

    return FashionCNN()


def torch_model():
    """The same network in torch, with the same state_dict names (features.N, classifier.N)."""
    import torch
    from torch import nn

    class FashionCNN(nn.Module):
        def __init__(self):
            super().__init__()

            def block(i, o):
                return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

            self.features = nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                                          *block(32, 64), *block(64, 64), nn.MaxPool2d(2))
            self.classifier = nn.Sequential(nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
                                            nn.Linear(128, 10))

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    return FashionCNN()


# --------------------------------------------------------------------------------------- one library
def train(lib: str, steps: int, warmup: int, weights: str) -> dict:
    """Train ``steps`` timed steps (after ``warmup`` untimed ones) with ``lib``; return the figures."""
    import shendu
    from shendu.data import DataLoader
    from shendu.data import transforms as T
    from shendu.data.datasets import FashionMNIST
    from shendu.io import load_file

    data = FashionMNIST(train=True, transform=T.Normalize((MEAN,), (STD,)))
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True, generator=shendu.Generator(0))
    if warmup + steps > len(loader):
        raise SystemExit(f"--steps {steps} + --warmup {warmup} is more than one epoch ({len(loader)} batches)")
    init = load_file(weights)
    if lib == "shendu":
        from shendu import functional as F
        from shendu import optim
        model, _ = shendu_model()
        model.load_state_dict(init)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        convert = lambda t: t  # noqa: E731
    else:
        import torch
        F = torch.nn.functional
        model = torch_model()
        missing = model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in init.items()}, strict=False)
        assert not missing.unexpected_keys and all("num_batches" in k for k in missing.missing_keys), missing
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        convert = lambda t: torch.from_numpy(t.data)  # noqa: E731
    model.train()
    batches = iter(loader)
    rss_before = rss_mb()
    wait, losses = 0.0, []
    for i in range(warmup + steps):
        if i == warmup:
            wait, start = 0.0, time.perf_counter()
        t0 = time.perf_counter()
        x, y = next(batches)
        wait += time.perf_counter() - t0
        x, y = convert(x), convert(y)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    total = time.perf_counter() - start
    threads = __import__("torch").get_num_threads() if lib == "torch" else None
    return {"lib": lib, "images_per_s": steps * BATCH / total, "ms_per_step": total / steps * 1e3,
            "data_wait": wait / total, "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(),
            "first_loss": losses[0], "last_loss": losses[-1], "torch_threads": threads}


def run_child(lib: str, args, weights: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, "--weights", weights,
           "--steps", str(args.steps), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{lib} run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed training steps (default 60, ~1/8 epoch)")
    parser.add_argument("--epoch", action="store_true", help="time one whole epoch (minus the warm-up steps)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocations, caches)")
    parser.add_argument("--lib", choices=("both", "shendu", "torch"), default="both")
    parser.add_argument("--child", choices=("shendu", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epoch:
        args.steps = 60000 // BATCH - args.warmup
    if args.child:
        print(json.dumps(train(args.child, args.steps, args.warmup, args.weights)))
        return

    from bench._util import print_table
    from shendu.io import save_state_dict
    model, source = shendu_model()
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "init.safetensors")
        save_state_dict(model, weights)  # both libraries start from these weights
        libs = ("shendu", "torch") if args.lib == "both" else (args.lib,)
        res = {lib: run_child(lib, args, weights) for lib in libs}
    print(f"Fashion-MNIST CNN ({source}), batch {BATCH}, Adam 1e-3, {args.steps} timed steps after {args.warmup} "
          f"warm-up; torch threads: {res.get('torch', {}).get('torch_threads')}")
    rows = [[r["lib"], r["images_per_s"], r["ms_per_step"], 100 * r["data_wait"], r["rss_before_mb"],
             r["peak_rss_mb"], r["peak_rss_mb"] - r["rss_before_mb"], r["first_loss"], r["last_loss"]]
            for r in res.values()]
    print_table(rows, ["lib", "images/s", "ms/step", "data wait %", "RSS before MB", "peak RSS MB",
                       "training adds MB", "first loss", "last loss"])
    if len(res) == 2:
        print(f"speed ratio shendu/torch: {res['shendu']['images_per_s'] / res['torch']['images_per_s']:.3f} "
              "(goal >= 0.8); data-wait goal < 5% of step time")


if __name__ == "__main__":
    main()
