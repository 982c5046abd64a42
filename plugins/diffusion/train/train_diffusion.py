"""Train the diffusion plugin's denoiser (DDPM): noise an image to a random step t of the
schedule, have the U-Net predict the noise from the noisy image and the noise variance, and
minimise the squared error (Ho et al.; ``--loss l1`` is Foster's mean absolute error).

    python -m gdl_studio_plugins.diffusion.train.train_diffusion --data fashion \\
        --out runs/diffusion-fashion --epochs 20
    python -m gdl_studio_plugins.diffusion.train.train_diffusion --data cifar10 \\
        --data-path ../shared/data/images/cifar10-jpg.tar.gz --widths 64,128,256 \\
        --out runs/diffusion-cifar10 --epochs 200
    python -m gdl_studio_plugins.diffusion.train.train_diffusion --data folder \\
        --data-path ~/my-drawings --size 32 --out runs/my-drawings --epochs 100

Adam with a short linear warm-up and a constant rate afterwards (a run can be lengthened with
``--resume --steps N`` without changing the rate it had), and an exponential moving average of
the weights (EMA, Foster's 0.999) that is what gets sampled and exported.  With class labels
the label is dropped for ``--label-drop`` of the images, so the one network also samples
without a class and with classifier-free guidance.  Every epoch (and at ``--sample-every``):
the denoising loss of the EMA network on fixed test images at fixed noise levels, a grid of
DDIM samples (``--sample-steps``, 50) in DIR/samples/, log.csv and a loss plot, and
DIR/checkpoint.pt (also on Ctrl+C and at ``--time-limit``; ``--resume`` continues it
exactly).  Under torchrun every process trains on its share of each batch (DDP) and rank 0
writes the files.

``--init`` fine-tunes instead of starting from random weights: from a model folder (a shipped
one, e.g. assets/diffusion/fashion-ddpm, or one of yours) or a run's checkpoint, whose EMA
weights start both the network and its EMA (held from the first step: the start is already
good).  The run takes that model's layout; its image size, channels and number of classes
must match (an unconditional model's run ignores class labels):

    python -m gdl_studio_plugins.diffusion.train.train_diffusion --data folder \
        --data-path ~/my-ten-kinds-of-sketches --size 28 --grey \
        --init assets/diffusion/fashion-ddpm --out runs/sketches --epochs 20 --lr 5e-4
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gdl_studio_plugins.diffusion import samplers
from gdl_studio_plugins.diffusion.schedule import KINDS, Schedule, from_config
from gdl_studio_plugins.gan.train.common import LossLog
from gdl_studio_plugins.gan.train.data import data_info, load_split
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
    autocast,
    command_line,
    count_parameters,
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

from .export import torch_from_onnx
from .models import UNet

MODULE = "gdl_studio_plugins.diffusion.train.train_diffusion"
PROG = "train_diffusion"
FORMAT = 1
DEFAULT_EPOCHS = 20
TEST_IMAGES = 1000
TEST_LEVELS = (50, 200, 500, 800)  # per-mille of the schedule's steps scored every epoch
SAMPLE_STEPS = 50
RESUMABLE = {
    "epochs",
    "steps",
    "stop_after",
    "time_limit",
    "log_every",
    "sample_every",
    "sample_steps",
    "threads",
    "device",
    "precision",
    "resume",
    "out",
    "init",
}
ARCHITECTURE = ("widths", "blocks", "attention")  # what --init fixes


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    return values


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    options = Options(PROG, "Train a DDPM denoiser (U-Net) for the diffusion plugin.", suppress)
    add = options.add
    add("--data", choices=["fashion", "cifar10", "folder"], help="dataset (optional with --resume)")
    add("--data-path", help="Fashion-MNIST folder, CIFAR-10 tarball/folder, or an image folder")
    add("--size", type=int, help="image size (fashion 28, cifar10 32, folder default 32)")
    add("--grey", action="store_true", default=False, help="folder data: train on greyscale")
    add("--out", required=not suppress, type=Path, help="run folder")
    add("--widths", type=int_list, default=[16, 32, 64], help="channels per resolution")
    add("--blocks", type=int, default=2, help="residual blocks per resolution")
    add(
        "--attention",
        type=int_list,
        default=None,
        help="resolution levels with self-attention (0 = full size; default: the lowest)",
    )
    add("--dropout", type=float, default=0.0)
    add("--unconditional", action="store_true", default=False, help="ignore class labels")
    add("--label-drop", type=float, default=0.1, help="share of images trained without label")
    add("--schedule", choices=list(KINDS), default="cosine", help="noise schedule")
    add("--timesteps", type=int, default=1000, help="steps of the training schedule (T)")
    add("--loss", choices=["l2", "l1"], default="l2", help="on the predicted noise")
    add("--batch", type=int, default=64, help="batch size over all processes")
    options.add_run_length()
    add("--lr", type=float, default=1e-3, help="learning rate (Adam)")
    add("--warmup", type=int, default=500, help="steps of linear learning-rate warm-up")
    add("--ema", type=float, default=0.999, help="EMA decay of the sampled weights")
    add("--flip", action="store_true", default=False, help="random horizontal flips")
    add("--seed", type=int, default=0)
    add("--stop-after", type=int, help="stop (and save) after this many steps of this run")
    add("--time-limit", type=float, help="stop (and save) after this many minutes")
    add("--log-every", type=int, default=50, help="steps between log.csv rows")
    add("--sample-every", type=int, default=0, help="steps between sample grids (0: per epoch)")
    add("--sample-steps", type=int, default=SAMPLE_STEPS, help="DDIM steps of those grids")
    add("--resume", action="store_true", default=False, help="continue DIR/checkpoint.pt")
    add(
        "--init",
        type=Path,
        help="fine-tune: start from these weights, a model folder (e.g. assets/diffusion/"
        "fashion-ddpm) or a run's checkpoint; its layout replaces --widths, --blocks and "
        "--attention",
    )
    add("--threads", type=int, help="CPU threads per process")
    add("--device", default="auto", help="auto, cpu or cuda")
    options.add_precision()
    return options.parser


CONFIG_KEYS = (
    "widths",
    "blocks",
    "dropout",
    "label_drop",
    "schedule",
    "timesteps",
    "loss",
    "batch",
    "steps",
    "lr",
    "warmup",
    "ema",
    "seed",
    "log_every",
    "sample_every",
    "sample_steps",
)


def fresh_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.data is None:
        raise TrainError("--data is required (fashion, cifar10 or folder)")
    cfg = {k: getattr(args, k) for k in CONFIG_KEYS}
    cfg.update(
        data=args.data,
        data_path=str(Path(args.data_path).expanduser().resolve()) if args.data_path else None,
        size=args.size,
        grey=bool(args.grey),
        attention=args.attention if args.attention is not None else [len(args.widths) - 1],
        conditional=not args.unconditional,
        flip=bool(args.flip),
        epochs=args.epochs if args.epochs or args.steps else DEFAULT_EPOCHS,
    )
    check_config(cfg)
    return cfg


def check_config(cfg: dict[str, Any]) -> None:
    """Refuse settings that cannot train, with the reason."""
    if not cfg["widths"] or min(cfg["widths"]) < 1:
        raise TrainError("--widths needs at least one positive channel count")
    if any(not 0 <= a < len(cfg["widths"]) for a in cfg["attention"]):
        raise TrainError(f"--attention levels must be 0..{len(cfg['widths']) - 1}")
    for key in ("blocks", "batch", "log_every", "timesteps"):
        if cfg[key] < 1:
            raise TrainError(f"--{key.replace('_', '-')} must be at least 1")
    if cfg["lr"] <= 0 or cfg["warmup"] < 0 or cfg["sample_every"] < 0:
        raise TrainError("--lr must be positive; --warmup and --sample-every not negative")
    if cfg.get("sample_steps", SAMPLE_STEPS) < 1:
        raise TrainError("--sample-steps must be at least 1")
    if not 0 <= cfg["ema"] < 1 or not 0 <= cfg["label_drop"] <= 1 or not 0 <= cfg["dropout"] < 1:
        raise TrainError("--ema and --dropout must be in [0, 1), --label-drop in [0, 1]")
    if (cfg["steps"] is not None and cfg["steps"] < 1) or (
        cfg["epochs"] is not None and cfg["epochs"] < 1
    ):
        raise TrainError("--steps/--epochs must be at least 1")
    try:
        from_config({"kind": cfg["schedule"], "steps": cfg["timesteps"]})
    except ValueError as exc:
        raise TrainError(f"--schedule: {exc}") from None


def resumed_config(previous: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    given = {
        key: str(Path(value).expanduser().resolve()) if key == "data_path" else value
        for key, value in explicit.items()
        if key not in RESUMABLE and key in previous
    }
    cfg = resumed_settings(previous, explicit, given)
    for key in ("log_every", "sample_every", "sample_steps"):
        if key in explicit:
            cfg[key] = explicit[key]
    check_config(cfg)
    return cfg


def initial_weights(source: Path, explicit: dict[str, Any], cfg: dict[str, Any]) -> Init:
    """``--init``'s weights (the EMA copy's) for a fresh run: ``cfg`` takes their layout."""
    init = read_init(
        source,
        "diffusion",
        "model.onnx",
        lambda path, card: torch_from_onnx(path, card["architecture"]),
        weights="ema",
    )
    take_architecture(cfg, explicit, init.architecture, ARCHITECTURE)
    check_config(cfg)
    if not init.architecture.get("classes"):
        cfg["conditional"] = False  # an unconditional network stays one
    cfg["init"] = init.provenance
    return init


def check_fits(init: Init, cfg: dict[str, Any]) -> None:
    """The data must be what the ``--init`` weights take: size, channels, classes."""
    arch = init.architecture
    size, channels = arch.get("size"), arch.get("channels")
    if (cfg["size"], cfg["channels"]) != (size, channels):
        hint = f"--size {size}" + (" --grey" if channels == 1 and cfg["data"] == "folder" else "")
        raise TrainError(
            f"--init {init.source}: the weights take {size} px images with {channels} "
            f"channel(s), the data has {cfg['size']} px with {cfg['channels']} (try {hint})"
        )
    if len(cfg["classes"]) != arch.get("classes", 0):
        raise TrainError(
            f"--init {init.source}: the weights are conditional on {arch.get('classes')} "
            f"classes, the data has {len(cfg['classes'])} (class sub-folders)"
        )


def scale(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(127.5).sub_(1.0)


class Trainer(Checkpointed):
    """One run: the network and its EMA copy, the optimiser, the data order, the loop."""

    def __init__(self, cfg: dict[str, Any], train: Any, test: Any, d: Dist, out: Path) -> None:
        self.cfg, self.d, self.out = cfg, d, out
        self.images, self.labels = train.dataset.images, train.dataset.labels
        self.test_images, self.test_labels = test.dataset.images, test.dataset.labels
        if cfg["batch"] % d.world:
            raise TrainError(f"--batch {cfg['batch']} is not divisible by {d.world} processes")
        self.local = cfg["batch"] // d.world
        self.per_epoch = len(self.images) // cfg["batch"]
        if self.per_epoch < 1:
            raise TrainError(
                f"{len(self.images)} training images are fewer than one batch of "
                f"{cfg['batch']}: use a smaller --batch"
            )
        self.schedule: Schedule = from_config({"kind": cfg["schedule"], "steps": cfg["timesteps"]})
        self.alpha_bar = torch.tensor(self.schedule.alpha_bar, dtype=torch.float32)
        classes = len(cfg["classes"]) if cfg["conditional"] else 0
        torch.manual_seed(cfg["seed"])  # identical initial weights on every rank
        self.model = UNet(
            cfg["channels"],
            cfg["size"],
            cfg["widths"],
            cfg["blocks"],
            cfg["attention"],
            classes,
            dropout=cfg["dropout"],
        ).to(d.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.net: torch.nn.Module = self.model
        if d.distributed:
            ids = [d.device.index] if d.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.opt = torch.optim.Adam(self.model.parameters(), cfg["lr"])
        torch.manual_seed(rank_seed(cfg["seed"], d.rank))
        self.step = 0
        self.seconds = 0.0
        self.commands: list[str] = []
        self.history: list[dict[str, float]] = []
        self.log = LossLog(out / "log.csv", ["loss", "lr", "img_s", "test_loss"])
        self.precision = "fp32"  # set by prepare(): a run option, not a setting

    @property
    def total_steps(self) -> int:
        return int(self.cfg["steps"] or self.cfg["epochs"] * self.per_epoch)

    def lr_at(self, step: int) -> float:
        warm = self.cfg["warmup"]
        return self.cfg["lr"] * (min(1.0, (step + 1) / warm) if warm else 1.0)

    def batch_indices(self, step: int) -> torch.Tensor:
        """A fixed shuffle per (seed, epoch): a resumed run sees the same batches."""
        epoch, k = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(self.cfg["seed"] * 1_000_003 + epoch)
        order = torch.randperm(len(self.images), generator=g)
        start = k * self.cfg["batch"] + self.d.rank * self.local
        return order[start : start + self.local]

    def noised(
        self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, and the noise variance 1 - ab_t."""
        ab = self.alpha_bar.to(x0.device)[t]
        x = ab.sqrt()[:, None, None, None] * x0 + (1 - ab).sqrt()[:, None, None, None] * eps
        return x, 1 - ab

    def null_label(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.full((n,), len(self.cfg["classes"]), dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ state

    FORMAT = FORMAT  # the module's: --resume checks it
    RNG_NOTE = "the data order is the same, the noise levels and flips are not"

    def saved_objects(self) -> dict[str, Any]:
        return {"model": self.model, "ema": self.ema, "optimizer": self.opt}

    def saved_values(self) -> dict[str, Any]:
        return {"history": self.history}

    def restore_values(self, ck: dict[str, Any]) -> None:
        self.history = list(ck.get("history", []))

    # ------------------------------------------------------------------ steps

    def train_step(self) -> dict[str, float]:
        cfg, dev = self.cfg, self.d.device
        idx = self.batch_indices(self.step)
        x0 = scale(self.images[idx]).to(dev)
        if cfg["flip"]:
            flip = torch.rand(len(x0), device=dev) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        if cfg["conditional"]:
            label = self.labels[idx].to(dev)
            drop = torch.rand(len(x0), device=dev) < cfg["label_drop"]
            label = torch.where(drop, self.null_label(len(x0), dev), label)
        else:
            label = torch.zeros(len(x0), dtype=torch.int64, device=dev)
        t = torch.randint(1, self.schedule.steps + 1, (len(x0),), device=dev)
        eps = torch.randn_like(x0)
        x, var = self.noised(x0, t, eps)
        lr = self.lr_at(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        with autocast(dev, self.precision):
            pred = self.net(x, var, label).float()
        loss = F.mse_loss(pred, eps) if cfg["loss"] == "l2" else F.l1_loss(pred, eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            # The EMA starts as a plain average: an early EMA would mostly hold the random
            # init.  Trained (--init) weights are worth holding: full decay from the start.
            warm = (1 + self.step) / (10 + self.step)
            decay = cfg["ema"] if cfg.get("init") else min(cfg["ema"], warm)
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        return {"loss": float(loss.item()), "lr": lr}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The EMA network's mean squared noise error on the first TEST_IMAGES test images
        at the fixed levels TEST_LEVELS (fixed noise: comparable from epoch to epoch)."""
        dev = self.d.device
        g = torch.Generator().manual_seed(self.cfg["seed"] + 5)
        x0 = scale(self.test_images[:TEST_IMAGES]).to(dev)
        sums = [0.0, 0.0]
        for level in TEST_LEVELS:
            t = max(1, round(level / 1000 * self.schedule.steps))
            tt = torch.full((len(x0),), t, dtype=torch.int64, device=dev)
            eps = torch.randn(x0.shape, generator=g).to(dev)
            x, var = self.noised(x0, tt, eps)
            label = self.null_label(len(x0), dev) if self.cfg["conditional"] else tt * 0
            for s in range(self.d.rank * 250, len(x0), 250 * self.d.world):
                pred = self.ema(x[s : s + 250], var[s : s + 250], label[s : s + 250])
                sums[0] += float((pred - eps[s : s + 250]).pow(2).mean((1, 2, 3)).sum())
                sums[1] += len(pred)
        total, n = all_sum(sums, self.d)
        return {"test_loss": total / n}

    @torch.no_grad()
    def write_samples(self) -> None:
        """Images from the EMA network with ``--sample-steps`` DDIM steps (six rows of the ten
        classes when conditional), the same starting noise every time."""
        dev = self.d.device
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg["seed"] + 1)
        n_cls = len(cfg["classes"]) if cfg["conditional"] else 0
        n = 6 * n_cls if 0 < n_cls <= 10 else 64
        noise = torch.randn((n, cfg["channels"], cfg["size"], cfg["size"]), generator=g).numpy()
        labels = (np.arange(n) % n_cls if 0 < n_cls <= 10 else np.full(n, n_cls)).astype(np.int64)

        def eps_fn(x: np.ndarray, var: np.ndarray) -> np.ndarray:
            out = self.ema(
                torch.from_numpy(x).float().to(dev),
                torch.from_numpy(var).float().to(dev),
                torch.from_numpy(labels[: len(x)]).to(dev),
            )
            return out.cpu().numpy()

        # The studio's default sampler (DDIM, eta 1), with fixed noise: comparable grids.
        steps = cfg.get("sample_steps", SAMPLE_STEPS)  # absent from older checkpoints
        sampler = samplers.from_config({"kind": "ddim", "steps": steps, "eta": 1.0})
        *_, (x, _) = sampler.run(eps_fn, self.schedule, noise, np.random.default_rng(0))
        cols = n_cls if 0 < n_cls <= 10 else 8
        grid = grid_image(torch.from_numpy(np.clip(x, -1, 1)).float(), cols)
        save_png(grid, self.out / "samples" / f"step_{self.step:07d}.png")

    def end_of_epoch(self) -> None:
        scores = self.evaluate()
        epoch = self.step / self.per_epoch
        self.history.append({"step": self.step, "epoch": round(epoch, 4), **scores})
        if not self.d.main:
            return
        self.log.add(scores)
        self.log.flush(self.step, epoch)
        self.write_samples()
        self.log.plot(self.out / "losses.png", ["loss", "test_loss"])
        say(
            self.d,
            f"epoch {epoch:.2f} step {self.step}: EMA test noise MSE "
            f"{scores['test_loss']:.4f}, {self.seconds / 60:.1f} min of training",
        )

    # ------------------------------------------------------------------ loop

    def write_row(self, step: int, epoch: float, means: dict[str, float]) -> None:
        self.log.add(means)  # one add: LossLog averages over its add() calls
        self.log.flush(step, epoch)

    def run(self) -> int:
        if self.d.main:
            self.log.truncate_after(self.step)
        postfix = {"loss": ("loss", ".4f")}
        return run_loop(self, self.out / CHECKPOINT, postfix, self.cfg["sample_every"])


def prepare(argv: list[str], args: argparse.Namespace, d: Dist) -> Trainer:
    explicit = vars(build_parser(suppress=True).parse_args(argv))
    out = Path(args.out).expanduser()
    ck_path = out / CHECKPOINT
    ck = previous_run(ck_path, args.resume, FORMAT, ("config", "model", "ema"))
    if ck is not None and args.init is not None:
        raise TrainError("--init starts a new run from some weights; --resume continues one")
    cfg = resumed_config(ck["config"], explicit) if ck is not None else fresh_config(args)
    init = None
    if ck is None and args.init is not None:
        init = initial_weights(args.init, explicit, cfg)
    cfg["stop_after"], cfg["time_limit"] = args.stop_after, args.time_limit
    train = load_split(cfg["data"], "train", cfg["data_path"], cfg["size"], cfg["grey"])
    if cfg["data"] == "folder":
        # A folder has no test split: the last images (a fixed order) serve as its test set.
        test = train
    else:
        test = load_split(cfg["data"], "test", cfg["data_path"], cfg["size"], cfg["grey"])
    if ck is not None and (cfg.get("channels"), cfg.get("n_train")) != (
        train.channels,
        len(train.dataset),
    ):
        raise TrainError(
            f"the data changed since the checkpoint: {cfg.get('n_train')} images with "
            f"{cfg.get('channels')} channel(s) then, {len(train.dataset)} with "
            f"{train.channels} now"
        )
    if cfg["conditional"] and not train.classes:
        cfg["conditional"] = False  # a folder without class sub-folders
    cfg.update(
        channels=train.channels,
        size=train.size,
        classes=list(train.classes) if cfg["conditional"] else [],
        n_train=len(train.dataset),
        data_info=data_info(cfg["data"], cfg["data_path"]),
    )
    if init is not None:
        check_fits(init, cfg)
    if train.size % 2 ** (len(cfg["widths"]) - 1):
        raise TrainError(
            f"{train.size} px images cannot be halved {len(cfg['widths']) - 1} "
            "times: use fewer --widths or another --size"
        )
    cmd = command_line(MODULE, argv, d.local_world)
    if ck is None:
        cfg["command"] = cmd
    trainer = Trainer(cfg, train, test, d, out)
    if init is not None:
        load_state(trainer.model, init)
        trainer.ema.load_state_dict(trainer.model.state_dict())
    trainer.precision = args.precision
    cfg["architecture"] = dict(trainer.model.config)
    start_run(trainer, ck, cmd, ck_path, d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        say(
            d,
            f"data: {len(train.dataset)} images, {train.size}x{train.size}x{train.channels}"
            f", {len(cfg['classes'])} classes, from {train.source}"
            + (f" ({train.skipped} unreadable file(s) skipped)" if train.skipped else ""),
        )
        say(
            d,
            f"model: {count_parameters(trainer.model):,} parameters; schedule "
            f"{cfg['schedule']} T={cfg['timesteps']}; {trainer.per_epoch} steps per epoch "
            f"of {cfg['batch']}; {d.world} process(es) on {d.device}, "
            f"{torch.get_num_threads()} thread(s) each",
        )
    return trainer


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, build_parser(), argv, prepare, errors=(TrainError, DatasetError))


if __name__ == "__main__":
    sys.exit(main())
