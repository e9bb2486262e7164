"""``shendu train --task gan``: a DCGAN on Fashion-MNIST (or MNIST, or the embedded digits at 28x28).

Each epoch writes ``samples/epoch_NNN.png`` (64 images from the same fixed noise, so the grids show how
the generator evolves), ``losses.png`` (D and G losses, D's outputs, the FID-like score), one line of
``metrics.jsonl`` and the checkpoints ``checkpoints/last`` (and ``best``, the lowest FID-like score) with both
networks, both optimizers, the data order and every random state: ``--resume`` continues exactly. The
end of the run writes ``interpolation.png`` (rows: spherical interpolation between two noise vectors).

The FID-like score is the Frechet distance between penultimate-layer features of a shendu Fashion-MNIST
classifier on real test images and on ``fid_samples`` generated images (see
:mod:`shendu.train.generative`); it is not Inception FID and compares only with itself.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

DEFAULTS = {
    "model": "dcgan",
    "dataset": "fashion-mnist",   # fashion-mnist, mnist, or digits (8x8 scaled to 28x28; for quick tests)
    "data_root": None,
    "epochs": 5,
    "batch_size": 128,
    "lr": 2e-4,                   # both optimizers (DCGAN)
    "beta1": 0.5,                 # Adam's beta1 (DCGAN); beta2 is 0.999
    "latent_dim": 100,
    "width": 64,                  # D: width, 2 width channels; G: 2 width, width
    "real_label": 0.9,            # one-sided label smoothing (fake targets stay 0)
    "seed": 0,
    "out": None,
    "max_steps": None,            # stop after this many (D step, G step) iterations in total
    "fid_samples": 5000,          # generated images per FID-like score; 0 turns the score off
    "fid_classifier": None,       # a classifier checkpoint/run folder; None trains cnn_fmnist once per run
    "fid_classifier_epochs": 2,
    "interpolation_pairs": 8,
    "interpolation_steps": 10,
    "log_every": 0,               # print running means every N steps (0: only the epoch line)
}

# keys that define the networks and data: on --resume they come from the checkpoint, not from the flags
_FROZEN = ("model", "dataset", "batch_size", "lr", "beta1", "latent_dim", "width", "real_label", "seed",
           "fid_samples", "fid_classifier")


def _build(cfg):
    import shendu
    from shendu import nn, optim
    from shendu.models.gan import Discriminator, Generator

    if cfg["model"] != "dcgan":
        raise SystemExit(f"shendu train --task gan: unknown model {cfg['model']!r}; the GAN task trains 'dcgan'")
    shendu.manual_seed(cfg["seed"])
    G = Generator(cfg["latent_dim"], cfg["width"])
    D = Discriminator(cfg["width"])
    nets = nn.ModuleDict({"generator": G, "discriminator": D})  # one state_dict for the checkpoint
    betas = (cfg["beta1"], 0.999)
    opt_g = optim.Adam(G.parameters(), lr=cfg["lr"], betas=betas)
    opt_d = optim.Adam(D.parameters(), lr=cfg["lr"], betas=betas)
    return nets, opt_g, opt_d


def _generate(G, z, batch_size: int = 500) -> np.ndarray:
    """Images in [0, 1] from noise ``z`` (array), with G in eval mode (BN running statistics)."""
    import shendu
    G.eval()
    with shendu.no_grad():
        out = [G(shendu.tensor(z[i:i + batch_size])).data for i in range(0, len(z), batch_size)]
    G.train()
    return (np.concatenate(out) + 1) / 2


def train(cfg: dict, run_dir: str, resume: bool) -> int:
    import shendu
    from shendu.data import DataLoader, TensorDataset
    from shendu.io.atomic import atomic_write
    from shendu.train import generative as gen
    from shendu.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

    cfg = {**DEFAULTS, **cfg}
    os.makedirs(os.path.join(run_dir, "samples"), exist_ok=True)
    last = os.path.join(run_dir, "checkpoints", "last")
    tree = None
    if resume:
        if not os.path.exists(os.path.join(last, "state.json")):
            raise SystemExit(f"shendu train --task gan: nothing to resume in {run_dir!r} (no checkpoints/last)")
        with open(os.path.join(last, "state.json"), encoding="utf-8") as f:
            saved = json.load(f)["config"]
        cfg = {**cfg, **{k: saved[k] for k in _FROZEN if k in saved}}
    cfg["task"] = "gan"
    atomic_write(os.path.join(run_dir, "config.json"), json.dumps(cfg, indent=2, default=str))

    train_x, train_y, _ = gen.load_images(cfg["dataset"], True, cfg["data_root"])
    nets, opt_g, opt_d = _build(cfg)
    G, D = nets["generator"], nets["discriminator"]
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                        generator=shendu.Generator(cfg["seed"]))
    fixed_noise = np.random.default_rng(cfg["seed"] + 1).standard_normal((64, cfg["latent_dim"])).astype(np.float32)
    epoch, step, history, best = 0, 0, {}, None
    if resume:
        tree = load_checkpoint(last, nets, opt_g, loader=loader)
        opt_d.load_state_dict(tree["extra"]["optimizer_d"])
        epoch, step, history = tree["epoch"], tree["step"], tree["history"] or {}
        best = tree["extra"].get("best")
        print(f"shendu train --task gan: resuming {run_dir} at epoch {epoch}, step {step}")

    score, score_info = None, {}
    if cfg["fid_samples"]:
        saved_rng = rng_state()  # training the classifier must not move the run's random streams
        test_x, test_y, _ = gen.load_images(cfg["dataset"], False, cfg["data_root"])
        score, score_info = gen.classifier_score_for(
            run_dir, cfg["fid_classifier"], train_x, train_y, test_x, test_y, cfg["fid_samples"],
            cfg["fid_classifier_epochs"], cfg["seed"], log=lambda s: print("shendu train --task gan: " + s))
        set_rng_state(saved_rng)
    n_g = sum(p.numel() for p in G.parameters())
    n_d = sum(p.numel() for p in D.parameters())
    print(f"shendu train --task gan: DCGAN G {n_g:,} / D {n_d:,} parameters, {cfg['dataset']} "
          f"({len(train_x)} images), {cfg['epochs']} epochs, batch {cfg['batch_size']}, Adam lr {cfg['lr']} "
          f"betas ({cfg['beta1']}, 0.999), real label {cfg['real_label']}, run folder {run_dir}")

    def checkpoint(path, epoch_done):
        save_checkpoint(path, nets, opt_g, loader=loader, epoch=epoch_done, step=step, history=history, config=cfg,
                        extra={"optimizer_d": opt_d.state_dict(), "best": best})

    while epoch < cfg["epochs"]:
        t0 = time.time()
        figures, step = gen.gan_train_epoch(G, D, opt_g, opt_d, loader, cfg["real_label"], cfg["max_steps"], step,
                                            cfg["log_every"], print)
        position = loader.state_dict()["position"]
        if 0 < position < len(loader):  # stopped by max_steps inside the epoch: save where we are
            checkpoint(last, epoch)
            print(f"shendu train --task gan: stopped at step {step} (max_steps), epoch {epoch + 1} unfinished; "
                  f"continue with --resume {run_dir}")
            break
        epoch += 1
        row = {"epoch": epoch, "step": step, **figures}
        gen.save_image_grid(_generate(G, fixed_noise), os.path.join(run_dir, "samples", f"epoch_{epoch:03d}.png"),
                            title=f"DCGAN samples, epoch {epoch}")
        if score is not None:
            z = np.random.default_rng(cfg["seed"] + 2).standard_normal((cfg["fid_samples"], cfg["latent_dim"]))
            row.update(score(_generate(G, z.astype(np.float32))))
            row["fid_like_real"] = score_info["fid_like_real"]
        row["time"] = round(time.time() - t0, 1)
        for k in dict.fromkeys([*history, *row]):
            history.setdefault(k, [None] * (epoch - 1)).append(row.get(k))
        improved = "fid_like" in row and (best is None or row["fid_like"] < best)
        if improved:
            best = row["fid_like"]
        checkpoint(last, epoch)
        if improved:
            checkpoint(os.path.join(run_dir, "checkpoints", "best"), epoch)
        gen.write_metrics(run_dir, history)
        gen.plot_metrics(history, [("loss", ["loss_d", "loss_g"]), ("mean D output", ["d_real", "d_fake"]),
                                   ("FID-like (lower is better)", ["fid_like", "fid_like_real"])],
                         os.path.join(run_dir, "losses.png"))
        extra = (f", FID-like {row['fid_like']:.3f}, confidence {row['confidence']:.3f}" if "fid_like" in row else "")
        print(f"epoch {epoch}/{cfg['epochs']}: loss_d {row.get('loss_d', float('nan')):.4f}, "
              f"loss_g {row.get('loss_g', float('nan')):.4f}, D(x) {row.get('d_real', float('nan')):.3f}, "
              f"D(G(z)) {row.get('d_fake', float('nan')):.3f}{extra} ({row['time']:.0f} s)")
        if cfg["max_steps"] is not None and step >= cfg["max_steps"]:
            break

    pairs, steps = cfg["interpolation_pairs"], cfg["interpolation_steps"]
    ends = np.random.default_rng(cfg["seed"] + 3).standard_normal((2, pairs, cfg["latent_dim"]))
    z = gen.interpolate_latents(ends[0], ends[1], steps, mode="slerp").astype(np.float32)
    gen.save_image_grid(_generate(G, z), os.path.join(run_dir, "interpolation.png"), nrow=steps,
                        title="latent interpolation (slerp), one pair per row")
    return 0


# ------------------------------------------------------------------------------------ shendu sample
def add_commands(sub) -> None:
    """``shendu sample RUN_DIR``: a grid of new images from a GAN or VAE run folder."""
    p = sub.add_parser("sample", help="generate a grid of images with a trained GAN or VAE run")
    p.add_argument("run_dir", help="a run folder of `shendu train --task gan` or `--task vae`")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise z")
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    p.add_argument("--out", help="PNG to write (default RUN_DIR/sample_seedSEED.png)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    from shendu.train import generative as gen
    from shendu.train.checkpoint import load_checkpoint

    path = os.path.join(args.run_dir, "config.json")
    if not os.path.exists(path):
        raise SystemExit(f"shendu sample: no config.json in {args.run_dir!r}; is it a run folder of shendu train?")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    folder = os.path.join(args.run_dir, "checkpoints", args.checkpoint)
    z = np.random.default_rng(args.seed).standard_normal((args.n, cfg.get("latent_dim", 0))).astype(np.float32)
    if cfg.get("task") == "gan":
        nets, _, _ = _build(cfg)
        load_checkpoint(folder, nets, restore_rng=False)
        images = _generate(nets["generator"], z)
    elif cfg.get("task") == "vae":
        from shendu.cli.task_vae import _build as build_vae
        from shendu.cli.task_vae import _decode
        model, _ = build_vae(cfg)
        load_checkpoint(folder, model, restore_rng=False)
        model.eval()
        images = _decode(model, z)
    else:
        raise SystemExit(f"shendu sample: {args.run_dir!r} is a {cfg.get('task', 'classify')!r} run; "
                         "sample needs a gan or vae run")
    out = args.out or os.path.join(args.run_dir, f"sample_seed{args.seed}.png")
    print(gen.save_image_grid(images, out, nrow=max(1, int(np.ceil(np.sqrt(args.n))))))
    return 0
