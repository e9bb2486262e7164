"""``shendu train --task vae``: a variational auto-encoder on Fashion-MNIST (or MNIST, or the embedded digits).

Each epoch evaluates the **test-set ELBO** (nats per image; with ``binarize`` 'bernoulli' or 'threshold'
the images are binary and the ELBO is a true lower bound on log p(x)) and writes
``reconstructions/epoch_NNN.png`` (rows of test images, each followed by its reconstruction from the
posterior mean), ``samples/epoch_NNN.png`` (decoded z ~ N(0, I), the same z every epoch), ``losses.png``,
a line of ``metrics.jsonl`` and the checkpoints ``checkpoints/last`` and ``best`` (highest test ELBO);
``--resume`` continues exactly. With ``latent_dim=2`` it also writes ``latent_map.png`` (the decoder over a
grid of Gaussian quantiles) and ``latent_scatter.png`` (test-set posterior means by class).

Models: ``vae_mlp`` (784-400-latent, Kingma & Welling / PyTorch's example) and ``vae_conv``. Samples are
scored with the FID-like score of :mod:`shendu.train.generative` (pixel probabilities, not Bernoulli draws).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

DEFAULTS = {
    "model": "vae_mlp",           # vae_mlp or vae_conv
    "dataset": "fashion-mnist",   # fashion-mnist, mnist, or digits (8x8 scaled to 28x28; for quick tests)
    "data_root": None,
    "epochs": 20,
    "batch_size": 128,
    "lr": 1e-3,
    "latent_dim": 20,
    "hidden": None,               # hidden units; None: 400 for vae_mlp, 256 for vae_conv
    "beta": 1.0,                  # weight of the KL term (beta-VAE when > 1)
    "binarize": "bernoulli",      # none | threshold | bernoulli (fresh draw per training batch, fixed for test)
    "elbo_samples": 1,            # draws of z per test image in the ELBO estimate
    "seed": 0,
    "out": None,
    "max_steps": None,
    "fid_samples": 5000,          # 0 turns the FID-like score off
    "fid_classifier": None,
    "fid_classifier_epochs": 2,
    "log_every": 0,
}

_FROZEN = ("model", "dataset", "batch_size", "lr", "latent_dim", "hidden", "beta", "binarize", "elbo_samples",
           "seed", "fid_samples", "fid_classifier")
MODELS = ("vae_mlp", "vae_conv")


def _build(cfg):
    import shendu
    from shendu import optim
    from shendu.models.vae import VAE, ConvVAE

    shendu.manual_seed(cfg["seed"])
    if cfg["model"] == "vae_mlp":
        model = VAE(cfg["latent_dim"], cfg["hidden"] or 400)
    elif cfg["model"] == "vae_conv":
        model = ConvVAE(cfg["latent_dim"], hidden=cfg["hidden"] or 256)
    else:
        raise SystemExit(f"shendu train --task vae: unknown model {cfg['model']!r}; choose {' or '.join(MODELS)}")
    return model, optim.Adam(model.parameters(), lr=cfg["lr"])


def _decode(model, z, batch_size: int = 500) -> np.ndarray:
    import shendu
    with shendu.no_grad():
        return np.concatenate([model.decode(shendu.tensor(z[i:i + batch_size])).sigmoid().data
                               for i in range(0, len(z), batch_size)])


def _figures(model, run_dir, epoch, test_x, test_y, classes, fixed_z, binarize_mode, seed):
    import shendu
    from shendu.train import generative as gen

    model.eval()
    originals = gen.binarize(test_x[:32], binarize_mode, shendu.Generator(seed))
    with shendu.no_grad():
        recon = model.reconstruct(shendu.tensor(originals)).data
    rows = (originals.reshape(4, 8, 1, 28, 28), recon.reshape(4, 8, 1, 28, 28))
    pairs = np.stack(rows, axis=1).reshape(64, 1, 28, 28)  # each row of originals above its reconstructions
    gen.save_image_grid(pairs, os.path.join(run_dir, "reconstructions", f"epoch_{epoch:03d}.png"),
                        title=f"test images (odd rows) and reconstructions, epoch {epoch}")
    gen.save_image_grid(_decode(model, fixed_z), os.path.join(run_dir, "samples", f"epoch_{epoch:03d}.png"),
                        title=f"VAE samples z ~ N(0, I), epoch {epoch}")
    if model.latent_dim == 2:
        n = 20
        gen.save_image_grid(_decode(model, gen.latent_grid(n).astype(np.float32)),
                            os.path.join(run_dir, "latent_map.png"), nrow=n,
                            title=f"decoder over the 2-D latent space (Gaussian quantiles 5%..95%), epoch {epoch}")
        with shendu.no_grad():
            mu = np.concatenate([model.encode(shendu.tensor(gen.binarize(test_x[i:i + 1000], binarize_mode,
                                                                          shendu.Generator(seed + i))))[0].data
                                 for i in range(0, len(test_x), 1000)])
        gen.plot_latent_scatter(mu, test_y, os.path.join(run_dir, "latent_scatter.png"), classes)
    model.train()


def train(cfg: dict, run_dir: str, resume: bool) -> int:
    import shendu
    from shendu.data import DataLoader, TensorDataset
    from shendu.io.atomic import atomic_write
    from shendu.train import generative as gen
    from shendu.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

    cfg = {**DEFAULTS, **cfg}
    for sub in ("samples", "reconstructions"):
        os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
    last = os.path.join(run_dir, "checkpoints", "last")
    if resume:
        if not os.path.exists(os.path.join(last, "state.json")):
            raise SystemExit(f"shendu train --task vae: nothing to resume in {run_dir!r} (no checkpoints/last)")
        with open(os.path.join(last, "state.json"), encoding="utf-8") as f:
            saved = json.load(f)["config"]
        cfg = {**cfg, **{k: saved[k] for k in _FROZEN if k in saved}}
    if cfg["binarize"] not in ("none", "threshold", "bernoulli"):
        raise SystemExit("shendu train --task vae: binarize must be none, threshold or bernoulli, "
                         f"got {cfg['binarize']!r}")
    cfg["task"] = "vae"
    atomic_write(os.path.join(run_dir, "config.json"), json.dumps(cfg, indent=2, default=str))

    train_x, train_y, classes = gen.load_images(cfg["dataset"], True, cfg["data_root"])
    test_x, test_y, _ = gen.load_images(cfg["dataset"], False, cfg["data_root"])
    model, optimizer = _build(cfg)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=cfg["batch_size"], shuffle=True,
                        generator=shendu.Generator(cfg["seed"]))
    fixed_z = np.random.default_rng(cfg["seed"] + 1).standard_normal((64, cfg["latent_dim"])).astype(np.float32)
    epoch, step, history, best = 0, 0, {}, None
    if resume:
        tree = load_checkpoint(last, model, optimizer, loader=loader)
        epoch, step, history = tree["epoch"], tree["step"], tree["history"] or {}
        best = tree["extra"].get("best")
        print(f"shendu train --task vae: resuming {run_dir} at epoch {epoch}, step {step}")

    score, score_info = None, {}
    if cfg["fid_samples"]:
        saved_rng = rng_state()  # training the classifier must not move the run's random streams
        score, score_info = gen.classifier_score_for(
            run_dir, cfg["fid_classifier"], train_x, train_y, test_x, test_y, cfg["fid_samples"],
            cfg["fid_classifier_epochs"], cfg["seed"], log=lambda s: print("shendu train --task vae: " + s))
        set_rng_state(saved_rng)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"shendu train --task vae: {cfg['model']} ({n_params:,} parameters, latent {cfg['latent_dim']}, "
          f"beta {cfg['beta']}), {cfg['dataset']} ({len(train_x)} images, binarize {cfg['binarize']}), "
          f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, Adam lr {cfg['lr']}, run folder {run_dir}")

    def checkpoint(path, epoch_done):
        save_checkpoint(path, model, optimizer, loader=loader, epoch=epoch_done, step=step, history=history,
                        config=cfg, extra={"best": best})

    while epoch < cfg["epochs"]:
        t0 = time.time()
        figures, step = gen.vae_train_epoch(model, optimizer, loader, cfg["beta"], cfg["binarize"], cfg["max_steps"],
                                            step, cfg["log_every"], print)
        position = loader.state_dict()["position"]
        if 0 < position < len(loader):
            checkpoint(last, epoch)
            print(f"shendu train --task vae: stopped at step {step} (max_steps), epoch {epoch + 1} unfinished; "
                  f"continue with --resume {run_dir}")
            break
        epoch += 1
        row = {"epoch": epoch, "step": step, **figures}
        test = gen.vae_elbo(model, test_x, cfg["binarize"], cfg["elbo_samples"], seed=cfg["seed"] + 7)
        row.update({"test_elbo": test["elbo"], "test_recon": test["recon"], "test_kl": test["kl"]})
        _figures(model, run_dir, epoch, test_x, test_y, classes, fixed_z, cfg["binarize"], cfg["seed"])
        if score is not None:
            z = np.random.default_rng(cfg["seed"] + 2).standard_normal((cfg["fid_samples"], cfg["latent_dim"]))
            model.eval()
            row.update(score(_decode(model, z.astype(np.float32))))
            model.train()
            row["fid_like_real"] = score_info["fid_like_real"]
        row["time"] = round(time.time() - t0, 1)
        for k in dict.fromkeys([*history, *row]):
            history.setdefault(k, [None] * (epoch - 1)).append(row.get(k))
        improved = best is None or row["test_elbo"] > best
        if improved:
            best = row["test_elbo"]
        checkpoint(last, epoch)
        if improved:
            checkpoint(os.path.join(run_dir, "checkpoints", "best"), epoch)
        gen.write_metrics(run_dir, history)
        gen.plot_metrics(history, [("training loss per image", ["loss", "recon"]), ("KL per image", ["kl", "test_kl"]),
                                   ("test ELBO (nats, higher is better)", ["test_elbo"]),
                                   ("FID-like (lower is better)", ["fid_like", "fid_like_real"])],
                         os.path.join(run_dir, "losses.png"))
        extra = f", FID-like {row['fid_like']:.3f}" if "fid_like" in row else ""
        print(f"epoch {epoch}/{cfg['epochs']}: loss {row.get('loss', float('nan')):.2f} "
              f"(recon {row.get('recon', float('nan')):.2f} + KL {row.get('kl', float('nan')):.2f}), "
              f"test ELBO {row['test_elbo']:.2f} nats{extra} ({row['time']:.0f} s)")
        if cfg["max_steps"] is not None and step >= cfg["max_steps"]:
            break
    return 0
