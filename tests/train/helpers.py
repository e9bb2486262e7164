"""Shared pieces of the training tests; also run as a script in subprocesses (resume, Ctrl-C)."""

import sys

import numpy as np

import shendu
from shendu import nn, optim
from shendu.data import DataLoader, TensorDataset
from shendu.data.transforms import GaussianNoise
from shendu.train import LRSchedulerCallback


def data(n=96, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (np.abs(x[:, :classes]).argmax(1)).astype(np.int64)
    return x, y


class AugmentedDataset(TensorDataset):
    """Rows of ``x`` with fresh Gaussian noise each time they are drawn: a random augmentation that draws from
    the loader's per-batch generator, so resuming must replay it exactly."""

    noise = GaussianNoise(0.1)

    def get_batch(self, indices):
        x, y = super().get_batch(indices)
        return self.noise.batch(x), y


def loader(x, y, batch_size, shuffle=False, seed=0, augment=False):
    dataset = (AugmentedDataset if augment else TensorDataset)(x, y)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=shendu.Generator(seed))


def mlp(d=6, classes=3, hidden=16, seed=0):
    shendu.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, classes))


def setup(init_seed=0):
    """A model with dropout, Adam, a per-step cosine schedule and a shuffled, augmenting loader."""
    x, y = data()
    model = mlp(seed=init_seed)
    opt = optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    train = loader(x, y, batch_size=20, shuffle=True, seed=7, augment=True)  # 5 batches, the last one short
    val = loader(*data(n=30, seed=1), batch_size=16)
    return model, opt, [LRSchedulerCallback(sched, interval="step")], train, val


def run(out_dir, epochs=4, max_steps=None, resume_from=None, init_seed=0, **kw):
    model, opt, callbacks, loader, val = setup(init_seed)
    hist = shendu.train.fit(model, loader, val, optimizer=opt, callbacks=callbacks, epochs=epochs, seed=123,
                            out_dir=out_dir, max_steps=max_steps, resume_from=resume_from, progress=False, **kw)
    return model, hist


if __name__ == "__main__":
    mode, out_dir = sys.argv[1], sys.argv[2]
    if mode == "resume":  # a new process: different init seed, everything must come from the checkpoint
        model, hist = run(out_dir, resume_from=out_dir, init_seed=99)
        shendu.io.save_state_dict(model, sys.argv[3])
        print("EPOCHS", hist.epochs, "LOSS", repr(hist["loss"][-1]))
    elif mode == "sigint":  # train slowly until interrupted; argv[3]: seconds a save after Ctrl-C takes
        import signal
        import time

        from shendu.train import LambdaCallback, Trainer

        pause = float(sys.argv[3])
        original_save = Trainer.save_checkpoint

        def slow_save(trainer, path):
            if trainer.history.interrupted:
                print("SAVING", flush=True)
                time.sleep(pause)
            original_save(trainer, path)

        Trainer.save_checkpoint = slow_save

        def ready(trainer, logs):
            if trainer.step == 1:
                print("READY", flush=True)
            time.sleep(0.01)

        model, opt, callbacks, loader, val = setup()
        before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under a background shell
        hist = shendu.train.fit(model, loader, None, optimizer=opt, epochs=10_000, out_dir=out_dir,
                                callbacks=callbacks + [LambdaCallback(on_batch_end=ready)], progress=True, seed=1)
        print("RETURNED interrupted", hist.interrupted, "reason", hist.stop_reason, flush=True)
        print("HANDLER RESTORED", signal.getsignal(signal.SIGINT) is before, flush=True)
