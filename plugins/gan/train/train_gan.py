"""Train a DCGAN-family generator: DCGAN (BCE, with the usual stabilisers as options), WGAN-GP
and class-conditional variants (label inputs, optionally an AC-GAN class head).

    python -m gdl_studio_plugins.gan.train.train_gan --data fashion --conditional \\
        --aux-weight 1 --label-smoothing 0.1 --out runs/fashion-cgan --epochs 64

Writes DIR/checkpoint.pt (every epoch, at the end, at ``--stop-after``/``--time-limit`` and on
Ctrl+C; ``--resume`` continues from it exactly), DIR/losses.csv and DIR/losses.png, and sample
grids in DIR/samples/.  Under torchrun (RANK/WORLD_SIZE set) every process trains on its share
of each batch and rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from gdl_studio.core.datasets import DatasetError
from gdl_studio.training import checkpoints, cli
from gdl_studio.training.distributed import (
    Dist,
    allreduce_grads,
    average_buffers,
    broadcast_module,
)
from gdl_studio.training.errors import TrainError
from gdl_studio.training.images import grid_image, save_png

from .common import LossLog
from .data import NATIVE_SIZE, EpochSampler, TrainData, data_info, load_split, whole_batch
from .models import ARCHS, Discriminator, Generator

MODULE = "gdl_studio_plugins.gan.train.train_gan"
PROG = "train_gan"
CHECKPOINT = "checkpoint.pt"
FORMAT = 1
# What a resumed run may change: how long it runs and where, not what it learns.
RESUMABLE = {
    "epochs",
    "steps",
    "stop_after",
    "time_limit",
    "sample_every",
    "threads",
    "device",
    "resume",
    "out",
}
LOG_FIELDS = ("d_loss", "g_loss", "d_real", "d_fake", "gp", "aux_acc", "fake_acc", "sec_per_step")
DEFAULT_EPOCHS = 20


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    """The command line; ``suppress`` drops every default, so that parsing tells which options
    the user actually gave (a resumed run refuses to change those that shape training)."""
    options = cli.Options(PROG, "Train a DCGAN / WGAN-GP / conditional GAN generator.", suppress)
    add = options.add
    add("--data", choices=["fashion", "cifar10", "folder"], help="dataset (optional with --resume)")
    add("--data-path", help="Fashion-MNIST folder, CIFAR-10 tarball/folder, or an image folder")
    add("--size", type=int, help="image size (fashion 28, cifar10 32, folder default 32)")
    add("--grey", action="store_true", default=False, help="folder data: train on greyscale")
    add("--out", required=not suppress, type=Path, help="run folder")
    add("--loss", choices=["bce", "wgan-gp"], default="bce")
    add("--conditional", action="store_true", default=False, help="class-conditional G and D")
    add("--aux-weight", type=float, default=0.0, help="AC-GAN class loss weight (0: no head)")
    add("--label-smoothing", type=float, default=0.0, help="one-sided: real target 1 - s")
    add("--label-noise", type=float, default=0.0, help="fraction of D targets flipped")
    add("--d-dropout", type=float, default=0.0)
    add(
        "--mbstd",
        type=int,
        help="D minibatch-stddev group size, 0: off (default: 4 with an AC-GAN head, else 0)",
    )
    add("--d-norm", choices=["batch", "layer", "none"], help="default: batch (bce), layer (wgan)")
    add("--n-critic", type=int, help="D steps per G step (default: 1 bce, 5 wgan-gp)")
    add("--gp-weight", type=float, default=10.0)
    add("--lr", type=float, help="default: 2e-4 (bce), 1e-4 (wgan-gp)")
    add("--beta1", type=float, help="Adam beta1 (default: 0.5 bce, 0.0 wgan-gp)")
    add("--beta2", type=float, help="Adam beta2 (default: 0.999 bce, 0.9 wgan-gp)")
    add("--batch", type=int, default=128, help="batch size over all processes")
    options.add_run_length()
    add("--stop-after", type=int, help="stop (and save) after this many steps of this run")
    add("--time-limit", type=float, help="stop (and save) after this many minutes")
    add("--ema", type=float, default=0.999, help="EMA decay of G's weights (0: off)")
    add("--sample-every", type=int, default=500, help="steps between samples and loss rows")
    add("--seed", type=int, default=0)
    add("--resume", action="store_true", default=False, help="continue DIR/checkpoint.pt")
    add("--width", type=int, default=32, help="base channel count of G and D (64: ~2.5x slower)")
    add(
        "--arch",
        choices=list(ARCHS),
        default="dcgan",
        help="dcgan: two up/down-samplings; deep: the SN-GAN paper's standard CNN (~4x compute)",
    )
    add("--latent", type=int, default=100)
    add("--threads", type=int, help="CPU threads per process")
    add("--device", default="auto", help="auto, cpu or cuda")
    return options.parser


def fresh_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration from the command line, with loss-dependent defaults filled in
    (Radford et al. for DCGAN; Gulrajani et al. for WGAN-GP)."""
    wgan = args.loss == "wgan-gp"
    if args.data is None:
        raise TrainError("--data is required (fashion, cifar10 or folder)")
    cfg = {
        "data": args.data,
        "data_path": str(Path(args.data_path).expanduser().resolve()) if args.data_path else None,
        "size": args.size or NATIVE_SIZE.get(args.data, 32),
        "grey": bool(args.grey),
        "loss": args.loss,
        "conditional": bool(args.conditional),
        "aux_weight": float(args.aux_weight),
        "label_smoothing": float(args.label_smoothing),
        "label_noise": float(args.label_noise),
        "d_dropout": float(args.d_dropout),
        "mbstd": int(args.mbstd if args.mbstd is not None else (4 if args.aux_weight > 0 else 0)),
        "d_norm": args.d_norm or ("layer" if wgan else "batch"),
        "n_critic": int(args.n_critic or (5 if wgan else 1)),
        "gp_weight": float(args.gp_weight),
        "lr": float(args.lr or (1e-4 if wgan else 2e-4)),
        "beta1": float(args.beta1 if args.beta1 is not None else (0.0 if wgan else 0.5)),
        "beta2": float(args.beta2 if args.beta2 is not None else (0.9 if wgan else 0.999)),
        "batch": int(args.batch),
        "epochs": args.epochs if args.epochs or args.steps else DEFAULT_EPOCHS,
        "steps": args.steps,
        "ema": float(args.ema),
        "sample_every": int(args.sample_every),
        "seed": int(args.seed),
        "width": int(args.width),
        "latent": int(args.latent),
        "arch": args.arch,
    }
    check_config(cfg)
    return cfg


def check_config(cfg: dict[str, Any]) -> None:
    """Refuse combinations that cannot train, with the reason."""
    if cfg["loss"] == "wgan-gp" and cfg["d_norm"] == "batch":
        raise TrainError("the WGAN-GP critic cannot use batch norm: use --d-norm layer or none")
    if cfg["aux_weight"] > 0 and not cfg["conditional"]:
        raise TrainError("--aux-weight needs --conditional (the class head needs labels)")
    for key, lo, hi in (
        ("label_smoothing", 0, 0.5),
        ("label_noise", 0, 0.5),
        ("d_dropout", 0, 0.9),
        ("ema", 0, 0.99999),
    ):
        if not lo <= cfg[key] <= hi:
            raise TrainError(f"--{key.replace('_', '-')} must be between {lo} and {hi}")
    for key in ("batch", "n_critic", "sample_every", "width", "latent"):
        if cfg[key] < 1:
            raise TrainError(f"--{key.replace('_', '-')} must be at least 1")
    if (cfg["steps"] is not None and cfg["steps"] < 1) or (
        cfg["epochs"] is not None and cfg["epochs"] < 1
    ):
        raise TrainError("--steps/--epochs must be at least 1")


def resumed_config(previous: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's configuration; the run length and reporting may be changed, anything
    that shapes training may not (it would no longer be the same run)."""
    defaults = vars(build_parser().parse_args(["--out", "."]))
    # The options as they were, overlaid with those given now, through the same defaults.
    options = {**defaults, **{k: previous[k] for k in defaults if k in previous}, **explicit}
    fresh = fresh_config(argparse.Namespace(**options))
    given = {k: fresh[k] for k in explicit if k not in RESUMABLE and k in fresh}
    cfg = cli.resumed_settings(previous, explicit, given)
    if "sample_every" in explicit:
        cfg["sample_every"] = int(explicit["sample_every"])
    check_config(cfg)
    return cfg


@torch.no_grad()
def recalibrate_bn(
    gen: Generator, device: torch.device, seed: int, batches: int = 8, batch: int = 256
) -> None:
    """Recompute the batch-norm statistics of ``gen`` (the EMA copy) from its own outputs.

    The EMA weights are an average over many steps while the running statistics copied from
    the live generator describe only its last few batches; exact statistics for the averaged
    weights make the exported (eval-mode) generator match what the averaged weights produce.
    Uses its own RNG so the training stream is untouched (resumed runs stay exact)."""
    bns = [m for m in gen.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was_training = gen.training
    gen.train()
    rng = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        z = torch.randn(batch, gen.latent_dim, generator=rng).to(device)
        label = (
            torch.randint(0, gen.n_classes, (batch,), generator=rng).to(device)
            if gen.n_classes
            else None
        )
        gen(z, label)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    gen.train(was_training)


class Trainer:
    """One GAN run: models, optimisers, the EMA copy, the loop and its files."""

    def __init__(self, cfg: dict[str, Any], data: TrainData, d: Dist, out: Path) -> None:
        self.cfg, self.data, self.d, self.out = cfg, data, d, out
        dev = d.device
        self.n_classes = len(data.classes) if cfg["conditional"] else 0
        torch.manual_seed(cfg["seed"])  # identical initial weights on every rank
        arch = cfg.get("arch", "dcgan")  # runs from before --arch are dcgan
        self.G = Generator(
            cfg["latent"], self.n_classes, data.channels, data.size, cfg["width"], arch=arch
        ).to(dev)
        self.D = Discriminator(
            self.n_classes,
            data.channels,
            data.size,
            cfg["width"],
            cfg["d_norm"],
            cfg["d_dropout"],
            aux_classifier=cfg["aux_weight"] > 0,
            mbstd_group=cfg.get("mbstd", 0),
            arch=arch,
        ).to(dev)
        broadcast_module(self.G, d)
        broadcast_module(self.D, d)
        self.ema = copy.deepcopy(self.G).requires_grad_(False) if cfg["ema"] > 0 else None
        betas = (cfg["beta1"], cfg["beta2"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg["lr"], betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg["lr"], betas=betas)
        # Each rank draws its own noise from here on.
        torch.manual_seed(checkpoints.rank_seed(cfg["seed"], d.rank))
        if d.device.type == "cuda":
            torch.cuda.manual_seed(checkpoints.rank_seed(cfg["seed"], d.rank))
        self.step = 0
        self.g_updates = 0
        self.seconds = 0.0
        self.commands: list[str] = []
        if cfg["batch"] % d.world:
            raise TrainError(f"--batch {cfg['batch']} is not divisible by {d.world} processes")
        self.local_batch = cfg["batch"] // d.world
        self.sampler = EpochSampler(
            len(data.dataset), cfg["seed"], d.rank, d.world, self.local_batch
        )
        self.per_epoch = self.sampler.batches_per_epoch()
        if self.per_epoch < 1:
            raise TrainError(
                f"{len(data.dataset)} images are fewer than one batch of {cfg['batch']}: "
                "use a smaller --batch or more images"
            )
        # The loader's own generator: starting an iterator draws a seed from it, and drawing
        # that from the global RNG would shift the noise stream of a resumed run.
        self.loader = DataLoader(
            data.dataset,
            batch_size=self.local_batch,
            sampler=self.sampler,
            drop_last=True,
            collate_fn=whole_batch,
            num_workers=0,
            pin_memory=dev.type == "cuda",
            generator=torch.Generator().manual_seed(cfg["seed"]),
        )
        self.log = LossLog(out / "losses.csv", LOG_FIELDS)

    # ------------------------------------------------------------------ state

    @property
    def total_steps(self) -> int:
        return int(self.cfg["steps"] or self.cfg["epochs"] * self.per_epoch)

    def state(self) -> dict[str, Any]:
        """Everything --resume needs (tensors and plain Python: loads with weights_only)."""
        average_buffers(self.G, self.d)
        average_buffers(self.D, self.d)
        if self.ema is not None:
            recalibrate_bn(self.ema, self.d.device, self.cfg["seed"] + 2)
        return {
            "format": FORMAT,
            "config": self.cfg,
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "g_updates": self.g_updates,
            "epoch": self.step / self.per_epoch,
            "seconds": self.seconds,
            "world_size": self.d.world,
            "rng": checkpoints.gather_rng(self.d),
            "commands": self.commands,
        }

    def save(self) -> None:
        state = self.state()  # collective on every rank (buffers, RNG states)
        if self.d.main:
            checkpoints.atomic_save(state, self.out / CHECKPOINT)

    def load(self, ck: dict[str, Any]) -> None:
        self.G.load_state_dict(ck["generator"])
        self.D.load_state_dict(ck["discriminator"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.load_state_dict(ck["ema"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.step, self.g_updates = int(ck["step"]), int(ck["g_updates"])
        self.seconds = float(ck["seconds"])
        self.commands = list(ck.get("commands", []))
        checkpoints.restore_rng(
            ck.get("rng") or [],
            self.d,
            self.cfg["seed"],
            self.step,
            "training continues, but not as the same random stream",
        )

    # ------------------------------------------------------------------ steps

    def gradient_penalty(
        self, real: torch.Tensor, fake: torch.Tensor, label: torch.Tensor | None
    ) -> torch.Tensor:
        """WGAN-GP: (|grad_x D(x)| - 1)^2 at random points between real and fake images."""
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        out, _ = self.D(mixed, label, classify=False)
        (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def train_step(self, real: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        bce = cfg["loss"] == "bce"
        aux_w = cfg["aux_weight"]
        # Fakes take the real batch's labels: the class mix matches the data, and the
        # gradient penalty interpolates between images of the same class.
        label = y if self.n_classes else None
        update_g = (self.step + 1) % cfg["n_critic"] == 0
        z = torch.randn(real.shape[0], cfg["latent"], device=real.device)
        with torch.set_grad_enabled(update_g):
            fake = self.G(z, label)
        stats: dict[str, float] = {}

        # Discriminator / critic.
        self.opt_d.zero_grad(set_to_none=True)
        out_r, cls_r = self.D(real, label)
        out_f, _ = self.D(fake.detach(), label, classify=False)
        if bce:
            t_real = torch.full_like(out_r, 1.0 - cfg["label_smoothing"])
            t_fake = torch.zeros_like(out_f)
            if cfg["label_noise"] > 0:  # Foster: flip a few targets so D is never certain
                t_real = torch.where(torch.rand_like(t_real) < cfg["label_noise"], 0.0, t_real)
                t_fake = torch.where(
                    torch.rand_like(t_fake) < cfg["label_noise"],
                    1.0 - cfg["label_smoothing"],
                    t_fake,
                )
            d_loss = F.binary_cross_entropy_with_logits(
                out_r, t_real
            ) + F.binary_cross_entropy_with_logits(out_f, t_fake)
            stats["d_real"] = torch.sigmoid(out_r).mean().item()
            stats["d_fake"] = torch.sigmoid(out_f).mean().item()
        else:
            gp = self.gradient_penalty(real, fake.detach(), label)
            d_loss = out_f.mean() - out_r.mean() + cfg["gp_weight"] * gp
            stats["d_real"], stats["d_fake"] = out_r.mean().item(), out_f.mean().item()
            stats["gp"] = gp.item()
        if cls_r is not None:
            # The class head learns from real images only: fakes carry their requested label
            # whether or not they look like it, which would teach it the generator's mistakes.
            d_loss = d_loss + aux_w * F.cross_entropy(cls_r, y)
            stats["aux_acc"] = (cls_r.argmax(1) == y).float().mean().item()
        d_loss.backward()
        allreduce_grads(self.D.parameters(), self.d)
        self.opt_d.step()
        stats["d_loss"] = d_loss.item()

        # Generator (every n_critic steps).
        if update_g:
            self.opt_g.zero_grad(set_to_none=True)
            self.D.requires_grad_(False)  # only G's gradients are needed: skip D's weight grads
            out_g, cls_g = self.D(fake, label)
            if bce:  # non-saturating loss
                g_loss = F.binary_cross_entropy_with_logits(out_g, torch.ones_like(out_g))
            else:
                g_loss = -out_g.mean()
            if cls_g is not None:
                g_loss = g_loss + aux_w * F.cross_entropy(cls_g, y)
                stats["fake_acc"] = (cls_g.argmax(1) == y).float().mean().item()
            g_loss.backward()
            self.D.requires_grad_(True)
            allreduce_grads(self.G.parameters(), self.d)
            self.opt_g.step()
            self.g_updates += 1
            self.update_ema()
            stats["g_loss"] = g_loss.item()
        return stats

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA of G's weights; the decay ramps up over the first updates so that the average
        is not dominated by the random initial weights in short runs."""
        if self.ema is None:
            return
        n = self.g_updates
        decay = min(self.cfg["ema"], (1 + n) / (10 + n))
        for pe, p in zip(self.ema.parameters(), self.G.parameters(), strict=True):
            pe.lerp_(p, 1.0 - decay)
        for be, b in zip(self.ema.buffers(), self.G.buffers(), strict=True):
            be.copy_(b)

    def sample_model(self) -> Generator:
        return self.ema if self.ema is not None else self.G

    @torch.no_grad()
    def write_samples(self) -> None:
        """A grid from fixed latents: one row per class (the same latents in every row, so a
        column shows one "style" across classes), or 8x8 for an unconditional model."""
        gen = self.sample_model()
        if self.ema is not None:
            recalibrate_bn(self.ema, self.d.device, self.cfg["seed"] + 2)
        rng = torch.Generator().manual_seed(self.cfg["seed"] + 1)
        if self.n_classes:
            cols, rows = 10, self.n_classes
            z = torch.randn(cols, self.cfg["latent"], generator=rng).repeat(rows, 1)
            label = torch.arange(rows).repeat_interleave(cols).to(self.d.device)
        else:
            cols = rows = 8
            z, label = torch.randn(cols * rows, self.cfg["latent"], generator=rng), None
        was_training = gen.training
        gen.eval()
        x = gen(z.to(self.d.device), label)
        gen.train(was_training)
        save_png(grid_image(x, cols), self.out / "samples" / f"step_{self.step:07d}.png")

    def report(self) -> dict[str, float] | None:
        means = self.log.flush(self.step, self.step / self.per_epoch)
        if means is not None:
            self.log.plot(self.out / "losses.png", ["d_loss", "g_loss"])
        self.write_samples()
        return means

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        d, cfg = self.d, self.cfg
        total = self.total_steps
        if d.main:
            (self.out / "samples").mkdir(parents=True, exist_ok=True)
            self.log.truncate_after(self.step)
        bar = cli.progress_bar(total, self.step, d)
        limits = cli.RunLimits(cfg, self.step, total)
        stopped = interrupted = paused = False
        with cli.StopFlag() as flag:
            while self.step < total and not stopped:
                epoch, skip = divmod(self.step, self.per_epoch)
                self.sampler.set_epoch(epoch, skip)
                for real, y in self.loader:
                    t0 = time.perf_counter()
                    real = real.to(d.device, non_blocking=True)
                    y = y.to(d.device, non_blocking=True)
                    stats = self.train_step(real, y)
                    self.step += 1
                    dt = time.perf_counter() - t0
                    self.seconds += dt
                    stats["sec_per_step"] = dt
                    if d.main:
                        self.log.add(stats)
                        bar.update(1)
                        if self.step % 10 == 0:
                            bar.set_postfix(
                                d=f"{stats['d_loss']:.3f}",
                                g=f"{stats.get('g_loss', float('nan')):.3f}",
                                refresh=False,
                            )
                    last = self.step >= total
                    interrupted, paused = limits.check(flag, self.step, last, d)
                    stopped = interrupted or paused
                    if d.main and (self.step % cfg["sample_every"] == 0 or last or stopped):
                        self.report()
                    if self.step % self.per_epoch == 0 or last or stopped:
                        self.save()
                    if last or stopped:
                        break
        bar.close()
        return cli.finish_run(
            d,
            self.step,
            total,
            self.per_epoch,
            self.seconds,
            self.out / CHECKPOINT,
            interrupted,
            paused,
        )


def prepare(argv: list[str], args: argparse.Namespace, d: Dist) -> Trainer:
    """Check the options, load the data and build the trainer (fresh or from the
    checkpoint)."""
    explicit = vars(build_parser(suppress=True).parse_args(argv))
    out = Path(args.out).expanduser()
    ck_path = out / CHECKPOINT
    ck = checkpoints.previous_run(ck_path, args.resume, FORMAT)
    cfg = resumed_config(ck["config"], explicit) if ck is not None else fresh_config(args)
    # Run-length limits belong to this invocation only.
    cfg["stop_after"], cfg["time_limit"] = args.stop_after, args.time_limit
    data = load_split(cfg["data"], "train", cfg["data_path"], cfg["size"], cfg["grey"])
    if cfg["conditional"] and not data.classes:
        raise TrainError(f"{data.source}: --conditional needs labelled data (class sub-folders)")
    if ck is not None:
        for key, value in (
            ("size", data.size),
            ("channels", data.channels),
            ("classes", list(data.classes)),
        ):
            if cfg.get(key) != value:
                raise TrainError(
                    f"the data changed since the checkpoint: {key} was "
                    f"{cfg.get(key)!r}, is now {value!r}"
                )
    cfg.update(
        size=data.size,
        channels=data.channels,
        classes=list(data.classes),
        data_info=data_info(cfg["data"], cfg["data_path"]),
    )
    cmd = cli.command_line(MODULE, argv, d.local_world)
    if ck is None:
        cfg["command"] = cmd
    trainer = Trainer(cfg, data, d, out)
    cfg["generator"] = dict(trainer.G.config)
    cfg["discriminator"] = dict(trainer.D.config)
    cli.start_run(trainer, ck, cmd, ck_path, d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        n = len(data.dataset)
        cli.say(
            d,
            f"data: {n} images, {data.size}x{data.size}x{data.channels}, "
            f"{len(data.classes)} classes, from {data.source}",
        )
        if data.skipped:
            cli.say(d, f"data: skipped {data.skipped} unreadable file(s)")
        g, dis = cli.count_parameters(trainer.G), cli.count_parameters(trainer.D)
        cli.say(
            d,
            f"generator: {g:,} parameters; discriminator: {dis:,}; "
            f"{trainer.per_epoch} steps per epoch; {d.describe()}",
        )
    return trainer


def main(argv: list[str] | None = None) -> int:
    """The command: ``python -m gdl_studio_plugins.gan.train.train_gan --help``."""
    return cli.run_main(PROG, build_parser(), argv, prepare, errors=(TrainError, DatasetError))


if __name__ == "__main__":
    sys.exit(main())
