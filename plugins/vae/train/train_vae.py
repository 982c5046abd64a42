"""Train a convolutional VAE: encoder to mean and log-variance, reparameterised sample,
decoder to a discretised logistic per pixel; loss = reconstruction NLL + beta * KL.

    python -m gdl_studio_plugins.vae.train.train_vae --data fashion --latent 2 \\
        --out runs/vae-fashion-2d --epochs 12
    python -m gdl_studio_plugins.vae.train.train_vae --data faces \\
        --data-path ../shared/data/images/att_faces --size 64 --latent 32 --flip \\
        --out runs/vae-faces --epochs 150

Adam with a cosine learning-rate decay; an optional linear warm-up of beta (``--kl-warmup``)
keeps the KL term from collapsing the latent early on.  Every epoch: the negative ELBO on the
test split (nats per image; ``gdl-studio eval vae`` reports the same number for the whole
test split), reconstructions of test images and samples from the prior (the latent map for a
2-D latent) in DIR/samples/, and DIR/checkpoint.pt (also on Ctrl+C and at ``--time-limit``;
``--resume`` continues it exactly).  Under torchrun every process trains on its share of each
batch (DDP) and rank 0 writes the files.

``--init`` starts from trained weights instead (a model folder's encoder.onnx and decoder.onnx,
or a run's checkpoint), e.g. the shipped face model fine-tuned on your own 64 px portraits:

    python -m gdl_studio_plugins.vae.train.train_vae --data folder --data-path ~/portraits \
        --init assets/vae/orl-faces --out runs/my-faces --epochs 50 --lr 5e-4
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch
from gdl_studio_plugins.vae import data as vae_data
from torch.nn.parallel import DistributedDataParallel

from gdl_studio.core.datasets import DatasetError
from gdl_studio.training.checkpoints import (
    CHECKPOINT,
    Checkpointed,
    previous_run,
    rank_seed,
)
from gdl_studio.training.cli import (
    Options,
    command_line,
    resumed_settings,
    run_main,
    say,
    start_run,
)
from gdl_studio.training.distributed import Dist, all_sum
from gdl_studio.training.errors import TrainError
from gdl_studio.training.images import grid_image, save_png
from gdl_studio.training.init import Init, load_state, read_init, take_architecture
from gdl_studio.training.loop import run_loop

from .export import torch_vae_from_onnx
from .log import RunLog
from .models import VAE, count_parameters, halvings, vae_loss

MODULE = "gdl_studio_plugins.vae.train.train_vae"
PROG = "train_vae"
FORMAT = 1
DEFAULT_EPOCHS = 10
TEST_IMAGES = 2000  # the test images scored every epoch (eval scores them all)
# What a resumed run may change: how long it runs and what it reports, not what it learns.
RESUMABLE = {
    "epochs",
    "steps",
    "stop_after",
    "time_limit",
    "log_every",
    "threads",
    "device",
    "resume",
    "out",
    "init",
}
# What --init fixes: the run's option -> the architecture's key.
ARCHITECTURE = {"latent": "latent_dim", "width": "width", "size": "size"}


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    """The command line; ``suppress`` drops the defaults, so parsing tells which options the
    user actually gave (a resumed run refuses to change those that shape training)."""
    options = Options(PROG, "Train a convolutional VAE.", suppress)
    add = options.add
    add("--data", choices=list(vae_data.DATASETS), help="dataset (optional with --resume)")
    add("--data-path", help="Fashion-MNIST folder, the ORL att_faces folder or an image folder")
    add("--size", type=int, help="image size (fashion: 28; faces and folders: default 64)")
    add("--out", required=not suppress, type=Path, help="run folder")
    add("--latent", type=int, default=2, help="latent dimensions (2: the map is the latent)")
    add("--beta", type=float, default=1.0, help="weight of the KL term (1: the ELBO)")
    add("--kl-warmup", type=int, default=0, help="steps over which beta rises from 0")
    add("--width", type=int, default=16, help="channels of the first convolution")
    add("--batch", type=int, default=128, help="batch size over all processes")
    options.add_run_length()
    add("--lr", type=float, default=2e-3, help="peak learning rate (Adam)")
    add("--min-lr", type=float, default=0.05, help="final learning rate, as a share of --lr")
    add("--flip", action="store_true", default=False, help="random horizontal flips (faces)")
    add("--seed", type=int, default=0)
    add("--stop-after", type=int, help="stop (and save) after this many steps of this run")
    add("--time-limit", type=float, help="stop (and save) after this many minutes")
    add("--log-every", type=int, default=50, help="steps between log.csv rows")
    add("--resume", action="store_true", default=False, help="continue DIR/checkpoint.pt")
    add(
        "--init",
        type=Path,
        help="fine-tune: start from these weights, a model folder (e.g. assets/vae/orl-faces) "
        "or a run's checkpoint; its layout replaces --latent, --width and --size",
    )
    add("--threads", type=int, help="CPU threads per process")
    add("--device", default="auto", help="auto, cpu or cuda")
    return options.parser


def fresh_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.data is None:
        raise TrainError(f"--data is required ({', '.join(vae_data.DATASETS)})")
    cfg = {
        k: getattr(args, k)
        for k in ("latent", "beta", "kl_warmup", "width", "batch", "steps", "lr", "min_lr")
    }
    cfg.update(
        data=args.data,
        data_path=str(Path(args.data_path).expanduser().resolve()) if args.data_path else None,
        size=args.size or vae_data.NATIVE_SIZE.get(args.data, 64),
        flip=bool(args.flip),
        seed=args.seed,
        log_every=args.log_every,
        epochs=args.epochs if args.epochs or args.steps else DEFAULT_EPOCHS,
    )
    check_config(cfg)
    return cfg


def check_config(cfg: dict[str, Any]) -> None:
    """Refuse settings that cannot train, with the reason."""
    for key in ("latent", "width", "batch", "log_every"):
        if cfg[key] < 1:
            raise TrainError(f"--{key.replace('_', '-')} must be at least 1")
    if cfg["beta"] < 0 or cfg["kl_warmup"] < 0 or cfg["lr"] <= 0 or not 0 <= cfg["min_lr"] <= 1:
        raise TrainError("--beta and --kl-warmup must not be negative, --lr must be positive")
    try:
        halvings(cfg["size"])
    except ValueError as exc:
        raise TrainError(f"--size: {exc}") from None
    if (cfg["steps"] is not None and cfg["steps"] < 1) or (
        cfg["epochs"] is not None and cfg["epochs"] < 1
    ):
        raise TrainError("--steps/--epochs must be at least 1")


def initial_weights(source: Path, explicit: dict[str, Any], cfg: dict[str, Any]) -> Init:
    """``--init``'s weights (encoder and decoder) for a fresh run: ``cfg`` takes their layout."""
    init = read_init(source, "vae", "encoder.onnx", lambda p, card: torch_vae_from_onnx(
        p, card["architecture"]))  # fmt: skip
    layout = {option: init.architecture.get(key) for option, key in ARCHITECTURE.items()}
    take_architecture(cfg, explicit, layout, ARCHITECTURE)
    check_config(cfg)
    cfg["init"] = init.provenance
    return init


def resumed_config(previous: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's settings; the run length and the reporting may change."""
    given = {
        key: str(Path(value).expanduser().resolve()) if key == "data_path" else value
        for key, value in explicit.items()
        if key not in RESUMABLE and key in previous
    }
    cfg = resumed_settings(previous, explicit, given)
    if "log_every" in explicit:
        cfg["log_every"] = explicit["log_every"]
    check_config(cfg)
    return cfg


def as_tensor(images: Any) -> torch.Tensor:
    """uint8 (N, H, W[, C]) -> uint8 (N, C, H, W) (a quarter of float32's memory)."""
    x = torch.tensor(images)
    return (x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)).contiguous()


def scale(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


class Trainer(Checkpointed):
    """One run: the model, its optimiser, the data order, the loop and its files."""

    def __init__(
        self, cfg: dict[str, Any], train: torch.Tensor, test: torch.Tensor, d: Dist, out: Path
    ) -> None:
        self.cfg, self.train, self.test, self.d, self.out = cfg, train, test, d, out
        if cfg["batch"] % d.world:
            raise TrainError(f"--batch {cfg['batch']} is not divisible by {d.world} processes")
        self.local = cfg["batch"] // d.world
        self.per_epoch = len(train) // cfg["batch"]
        if self.per_epoch < 1:
            raise TrainError(
                f"{len(train)} training images are fewer than one batch of {cfg['batch']}: "
                "use a smaller --batch"
            )
        torch.manual_seed(cfg["seed"])  # identical initial weights on every rank
        self.model = VAE(cfg["latent"], cfg["channels"], cfg["size"], cfg["width"]).to(d.device)
        self.net: torch.nn.Module = self.model
        if d.distributed:  # DDP broadcasts rank 0's weights and averages the gradients
            ids = [d.device.index] if d.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.opt = torch.optim.Adam(self.model.parameters(), cfg["lr"])
        torch.manual_seed(rank_seed(cfg["seed"], d.rank))  # each rank its own noise and flips
        self.step = 0
        self.seconds = 0.0
        self.commands: list[str] = []
        self.history: list[dict[str, float]] = []
        self.log = RunLog(out / "log.csv")

    @property
    def total_steps(self) -> int:
        return int(self.cfg["steps"] or self.cfg["epochs"] * self.per_epoch)

    def lr_at(self, step: int) -> float:
        """Cosine decay from ``lr`` to ``min_lr * lr`` at the last step."""
        cfg = self.cfg
        t = min(1.0, step / max(1, self.total_steps - 1))
        return cfg["lr"] * (cfg["min_lr"] + (1 - cfg["min_lr"]) * 0.5 * (1 + math.cos(math.pi * t)))

    def beta_at(self, step: int) -> float:
        warm = self.cfg["kl_warmup"]
        return self.cfg["beta"] * (min(1.0, (step + 1) / warm) if warm else 1.0)

    def batch_indices(self, step: int) -> torch.Tensor:
        """This rank's images of global step ``step``: a fixed shuffle per (seed, epoch),
        cut into batches, each batch split between the ranks; resuming mid-epoch therefore
        sees exactly the batches the uninterrupted run would have."""
        epoch, k = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(self.cfg["seed"] * 1_000_003 + epoch)
        order = torch.randperm(len(self.train), generator=g)
        start = k * self.cfg["batch"] + self.d.rank * self.local
        return order[start : start + self.local]

    # ------------------------------------------------------------------ state

    FORMAT = FORMAT  # the module's: --resume checks it
    RNG_NOTE = "the data order is the same, the noise and the flips are not"

    def saved_objects(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.opt}

    def saved_values(self) -> dict[str, Any]:
        return {"history": self.history}

    def restore_values(self, ck: dict[str, Any]) -> None:
        self.history = list(ck.get("history", []))

    # ------------------------------------------------------------------ steps

    def train_step(self) -> dict[str, float]:
        x = scale(self.train[self.batch_indices(self.step)]).to(self.d.device)
        if self.cfg["flip"]:
            flip = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        lr, beta = self.lr_at(self.step), self.beta_at(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        losses = vae_loss(x, self.net(x), beta)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.opt.step()
        return {**{k: float(v.item()) for k, v in losses.items()}, "beta": beta, "lr": lr}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Negative ELBO (nats per image, one posterior sample from a fixed generator: the
        training noise stream is untouched) and pixel MSE of the posterior-mean
        reconstruction, over the first TEST_IMAGES test images split between the ranks."""
        self.model.eval()
        test = self.test[:TEST_IMAGES][self.d.rank :: self.d.world]
        g = torch.Generator(device=self.d.device).manual_seed(self.cfg["seed"] + 5)
        sums = [0.0, 0.0, 0.0]
        for start in range(0, len(test), 250):
            x = scale(test[start : start + 250]).to(self.d.device)
            mean, logvar = self.model.encoder(x)
            eps = torch.randn(mean.shape, generator=g, device=mean.device)
            z = mean + torch.exp(0.5 * logvar) * eps
            loc, log_scale = self.model.decoder(z)
            out = {"mean": mean, "logvar": logvar, "loc": loc, "log_scale": log_scale}
            neg_elbo = vae_loss(x, out, 1.0)["neg_elbo"]
            recon, _ = self.model.decoder(mean)
            mse = ((recon.clamp(-1, 1) - x) / 2).pow(2).flatten(1).mean(1)
            sums[0] += float(neg_elbo) * len(x)
            sums[1] += float(mse.sum())
            sums[2] += len(x)
        self.model.train()
        total_elbo, total_mse, n = all_sum(sums, self.d)
        return {"test_neg_elbo": total_elbo / n, "test_mse": total_mse / n}

    @torch.no_grad()
    def write_samples(self) -> None:
        """Reconstructions (test images above their reconstructions) and prior samples (for a
        2-D latent: the map over the Gaussian quantiles 0.05 .. 0.95)."""
        self.model.eval()
        x = scale(self.test[:16]).to(self.d.device)
        recon, _ = self.model.decoder(self.model.encoder(x)[0])
        tag = f"step_{self.step:07d}"
        save_png(grid_image(torch.cat([x, recon]), 16), self.out / "samples" / f"{tag}_recon.png")
        g = torch.Generator().manual_seed(self.cfg["seed"] + 1)
        z = torch.randn(64, self.cfg["latent"], generator=g)
        samples, _ = self.model.decoder(z.to(self.d.device))
        save_png(grid_image(samples, 8), self.out / "samples" / f"{tag}_samples.png")
        if self.cfg["latent"] == 2:
            from statistics import NormalDist

            q = [NormalDist().inv_cdf(0.05 + 0.9 * i / 14) for i in range(15)]
            grid = torch.tensor([(u, v) for v in q[::-1] for u in q], dtype=torch.float32)
            tiles, _ = self.model.decoder(grid.to(self.d.device))
            save_png(grid_image(tiles, 15, pad=0), self.out / "samples" / f"{tag}_map.png")
        self.model.train()

    def end_of_epoch(self) -> None:
        """Score the test images, log, write samples.  Collective (the score is summed)."""
        scores = self.evaluate()
        epoch = self.step / self.per_epoch
        self.history.append({"step": self.step, "epoch": round(epoch, 4), **scores})
        if not self.d.main:
            return
        self.log.write(self.step, epoch, **scores)
        self.write_samples()
        say(
            self.d,
            f"epoch {epoch:.2f} step {self.step}: test neg. ELBO "
            f"{scores['test_neg_elbo']:.1f} nats/image, recon MSE {scores['test_mse']:.4f}, "
            f"{self.seconds / 60:.1f} min of training",
        )

    # ------------------------------------------------------------------ loop

    def write_row(self, step: int, epoch: float, means: dict[str, float]) -> None:
        self.log.write(step, epoch, **means)

    def run(self) -> int:
        if self.d.main:
            self.log.truncate_after(self.step)
        postfix = {"nll": ("recon_nll", ".1f"), "kl": ("kl", ".2f")}
        return run_loop(self, self.out / CHECKPOINT, postfix)


def prepare(argv: list[str], args: argparse.Namespace, d: Dist) -> Trainer:
    """Check the options, read the data and build the trainer (fresh or from the checkpoint)."""
    explicit = vars(build_parser(suppress=True).parse_args(argv))
    out = Path(args.out).expanduser()
    ck_path = out / CHECKPOINT
    ck = previous_run(ck_path, args.resume, FORMAT, ("config", "model"))
    if ck is not None and args.init is not None:
        raise TrainError("--init starts a new run from some weights; --resume continues one")
    cfg = resumed_config(ck["config"], explicit) if ck is not None else fresh_config(args)
    init = initial_weights(args.init, explicit, cfg) if ck is None and args.init else None
    # Run-length limits belong to this invocation only.
    cfg["stop_after"], cfg["time_limit"] = args.stop_after, args.time_limit
    train = vae_data.load(cfg["data"], "train", cfg["data_path"], cfg["size"])
    test = vae_data.load(cfg["data"], "test", cfg["data_path"], cfg["size"])
    channels = 1 if train.images.ndim == 3 else 3
    if ck is not None and (cfg.get("channels"), cfg.get("n_train")) != (channels, len(train)):
        raise TrainError(
            f"the data changed since the checkpoint: {cfg.get('n_train')} images with "
            f"{cfg.get('channels')} channel(s) then, {len(train)} with {channels} now"
        )
    if init is not None and init.architecture.get("channels") != channels:
        raise TrainError(
            f"--init {init.source}: the weights take images with "
            f"{init.architecture.get('channels')} channel(s), the data has {channels}"
        )
    cfg.update(
        channels=channels,
        n_train=len(train),
        n_test=len(test),
        data_info=vae_data.data_info(cfg["data"], cfg["data_path"]),
    )
    cmd = command_line(MODULE, argv, d.local_world)
    if ck is None:
        cfg["command"] = cmd
    trainer = Trainer(cfg, as_tensor(train.images), as_tensor(test.images), d, out)
    if init is not None:
        load_state(trainer.model, init)
    cfg["architecture"] = dict(trainer.model.config)
    start_run(trainer, ck, cmd, ck_path, d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        say(
            d,
            f"data: {len(train)} train / {len(test)} test images, {cfg['size']}x{cfg['size']}"
            f"x{channels}, from {train.source}"
            + (f" ({train.skipped} unreadable file(s) skipped)" if train.skipped else ""),
        )
        say(
            d,
            f"model: {count_parameters(trainer.model):,} parameters, latent {cfg['latent']}, "
            f"beta {cfg['beta']}; {trainer.per_epoch} steps per epoch of {cfg['batch']}; "
            f"{d.world} process(es) on {d.device}, {torch.get_num_threads()} thread(s) each",
        )
    return trainer


def main(argv: list[str] | None = None) -> int:
    """The command: ``python -m gdl_studio_plugins.vae.train.train_vae --help``."""
    return run_main(PROG, build_parser(), argv, prepare, errors=(TrainError, DatasetError))


if __name__ == "__main__":
    sys.exit(main())
