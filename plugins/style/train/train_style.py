"""Train a fast feed-forward style network for one style image (Johnson et al. 2016).

    python -m gdl_studio_plugins.style.train.train_style --style PAINTING.jpg \\
        --content PHOTOS/ --out /work/gdl-runs/style-NAME [--size 256] [--steps N] \\
        [--time-limit MIN] [--preview HELD-OUT.jpg ...]

Each step takes ``--batch`` random crops of the content photos (a random square of 50-100%
of a photo's short side, resized to ``--size``, flipped half of the time), runs them through
the style network and scores the result with the perceptual loss (``perceptual``: content,
Gram-matrix style and total variation through EfficientNet-Lite0).  Adam with a cosine
learning-rate decay.  Every ``--sample-every`` steps DIR/samples/step_N.png shows the style
image and fixed crops (the first content photos, then the ``--preview`` photos, which are
never trained on) above their stylized versions; DIR/log.csv has the losses.
DIR/checkpoint.pt is written every ``--save-every`` steps, at the end, on Ctrl+C and at
``--time-limit``; ``--resume`` continues it exactly.  Under torchrun every process makes its
share of each batch (DDP) and rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from gdl_studio.training import checkpoints, cli
from gdl_studio.training.checkpoints import CHECKPOINT, Checkpointed
from gdl_studio.training.distributed import Dist, all_sum
from gdl_studio.training.errors import TrainError
from gdl_studio.training.images import grid_image, save_png

from . import data, perceptual
from .johnson import (
    DEFAULT_OUT_KERNEL,
    DEFAULT_RES_BLOCKS,
    DEFAULT_WIDTHS,
    MULTIPLE,
    TransformerNet,
)

MODULE = "gdl_studio_plugins.style.train.train_style"
PROG = "train_style"
FORMAT = 1
DEFAULT_STEPS = 4000
SAMPLE_PHOTOS = 4  # content photos in each sample grid (besides the --preview ones)
# What a resumed run may change: how long it runs and what it reports, not what it learns.
RESUMABLE = {
    "steps",
    "stop_after",
    "time_limit",
    "log_every",
    "save_every",
    "sample_every",
    "preview",
    "style_credit",
    "content_credit",
    "threads",
    "device",
    "resume",
    "out",
}
LOG_FIELDS = ("step", "loss", "content", "style", "colour", "tv", "lr", "img_s")


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a list of whole numbers") from None


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    """The command line; ``suppress`` drops the defaults, so parsing tells which options the
    user actually gave (a resumed run refuses to change those that shape training)."""
    options = cli.Options(PROG, "Train a fast style-transfer network for one style.", suppress)
    add = options.add
    add("--style", type=Path, help="the style image (a painting); optional with --resume")
    add("--content", type=Path, help="a folder of content photos; optional with --resume")
    add("--out", required=not suppress, type=Path, help="run folder")
    add("--size", type=int, default=256, help=f"training crop side (a multiple of {MULTIPLE})")
    add("--style-size", type=int, help="the style image's short side (default: --size)")
    add("--min-scale", type=float, default=0.5,
        help="smallest crop, as a share of a photo's short side")  # fmt: skip
    add("--widths", type=int_list, default=list(DEFAULT_WIDTHS), help="the network's widths")
    add("--res-blocks", type=int, default=DEFAULT_RES_BLOCKS, help="residual blocks")
    add("--content-layer", type=int, default=perceptual.CONTENT_LAYER,
        help="EfficientNet-Lite0 block (0-15) of the content loss")  # fmt: skip
    add("--style-layers", type=int_list, default=list(perceptual.STYLE_LAYERS),
        help="blocks of the style loss, e.g. 0,2,4,7,10")  # fmt: skip
    add("--content-weight", type=float, default=perceptual.CONTENT_WEIGHT)
    add("--style-weight", type=float, default=perceptual.STYLE_WEIGHT)
    add("--tv-weight", type=float, default=perceptual.TV_WEIGHT)
    add("--colour-weight", type=float, default=perceptual.COLOUR_WEIGHT,
        help="weight of the pixels' colour statistics (a Gram matrix of RGB)")  # fmt: skip
    add("--batch", type=int, default=4, help="crops per step, over all processes")
    add("--steps", type=int, help=f"optimiser steps (default {DEFAULT_STEPS})")
    add("--lr", type=float, default=1e-3, help="peak learning rate (Adam)")
    add("--min-lr", type=float, default=0.1, help="final learning rate, as a share of --lr")
    add("--seed", type=int, default=0)
    add("--preview", type=Path, nargs="+", default=[],
        help="held-out photos shown in the sample grids, never trained on")  # fmt: skip
    add("--style-credit", help="the style image's title, author and licence (for the card)")
    add("--content-credit", help="where the content photos come from and their licences")
    add("--stop-after", type=int, help="stop (and save) after this many steps of this run")
    add("--time-limit", type=float, help="stop (and save) after this many minutes")
    add("--log-every", type=int, default=10, help="steps between log.csv rows")
    add("--save-every", type=int, default=100, help="steps between checkpoints")
    add("--sample-every", type=int, default=100, help="steps between sample grids")
    add("--resume", action="store_true", default=False, help="continue DIR/checkpoint.pt")
    add("--threads", type=int, help="CPU threads per process")
    add("--device", default="auto", help="auto, cpu or cuda")
    return options.parser


TRAINING_KEYS = (
    "size", "min_scale", "widths", "res_blocks", "content_layer", "style_layers",
    "content_weight", "style_weight", "tv_weight", "colour_weight", "batch", "steps", "lr",
    "min_lr", "seed",
)  # fmt: skip
REPORTING_KEYS = ("log_every", "save_every", "sample_every", "style_credit", "content_credit")


def resolved(path: Path | str) -> str:
    return str(Path(path).expanduser().resolve())


def fresh_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.style is None or args.content is None:
        raise TrainError("--style (an image) and --content (a folder of photos) are required")
    cfg = {k: getattr(args, k) for k in (*TRAINING_KEYS, *REPORTING_KEYS)}
    cfg.update(
        style=resolved(args.style),
        content=resolved(args.content),
        style_size=args.style_size or args.size,
        steps=args.steps or DEFAULT_STEPS,
        preview=[resolved(p) for p in args.preview],
    )
    check_config(cfg)
    return cfg


def check_config(cfg: dict[str, Any]) -> None:
    """Refuse settings that cannot train, with the reason."""
    for key in ("batch", "steps", "log_every", "save_every", "sample_every", "style_size"):
        if cfg[key] < 1:
            raise TrainError(f"--{key.replace('_', '-')} must be at least 1")
    if cfg["size"] < 4 * MULTIPLE or cfg["size"] % MULTIPLE:
        raise TrainError(f"--size must be a multiple of {MULTIPLE} of at least {4 * MULTIPLE}")
    if not 0 < cfg["min_scale"] <= 1:
        raise TrainError("--min-scale must be in (0, 1]")
    if len(cfg["widths"]) != 3 or min(cfg["widths"]) < 1 or cfg["res_blocks"] < 0:
        raise TrainError("--widths must be three positive numbers, --res-blocks not negative")
    try:
        perceptual.check_layers(cfg["content_layer"], cfg["style_layers"])
    except ValueError as exc:
        raise TrainError(f"--content-layer/--style-layers: {exc}") from None
    weights = (cfg["content_weight"], cfg["style_weight"], cfg["tv_weight"], cfg["colour_weight"])
    if min(weights) < 0 or cfg["lr"] <= 0 or not 0 <= cfg["min_lr"] <= 1:
        raise TrainError("the loss weights must not be negative, --lr must be positive")


def resumed_config(previous: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's settings; the run length and the reporting may change, what shapes
    training may not (it would no longer be the same run)."""
    given = {
        key: resolved(value) if key in ("style", "content") else value
        for key, value in explicit.items()
        if key not in RESUMABLE and key in previous
    }
    cfg = cli.resumed_settings(previous, explicit, given)
    for key in REPORTING_KEYS:
        if key in explicit:
            cfg[key] = explicit[key]
    if "preview" in explicit:
        cfg["preview"] = [resolved(p) for p in explicit["preview"]]
    check_config(cfg)
    return cfg


class RunLog:
    """log.csv: one row every ``--log-every`` steps; a resumed run first drops the rows
    written after its checkpoint, so that the file reads as one run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        rows = self.rows()
        if any(int(r["step"]) > step for r in rows):
            self._write([r for r in rows if int(r["step"]) <= step])

    def write(self, step: int, **values: float) -> None:
        self._write(
            [*self.rows(), {"step": str(step), **{k: f"{v:.6g}" for k, v in values.items()}}]
        )

    def _write(self, rows: list[dict[str, str]]) -> None:
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, LOG_FIELDS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        checkpoints.atomic_write_text(self.path, buf.getvalue())


class Trainer(Checkpointed):
    """One run: the style network, the loss, the optimiser, the loop and its files."""

    def __init__(
        self,
        cfg: dict[str, Any],
        photos: data.ContentPhotos,
        style: torch.Tensor,
        loss_net: torch.nn.Module,
        d: Dist,
        out: Path,
    ) -> None:
        self.cfg, self.photos, self.d, self.out = cfg, photos, d, out
        if cfg["batch"] % d.world:
            raise TrainError(f"--batch {cfg['batch']} is not divisible by {d.world} processes")
        self.local = cfg["batch"] // d.world
        # Crops are random, so an "epoch" is only a measure: as many crops as photos.
        self.per_epoch = max(1, math.ceil(len(photos) / cfg["batch"]))
        torch.manual_seed(cfg["seed"])  # identical initial weights on every rank
        arch = cfg.get("architecture") or {}  # a resumed run: the checkpoint's network
        self.model = TransformerNet(
            cfg["widths"], cfg["res_blocks"], arch.get("out_kernel", DEFAULT_OUT_KERNEL)
        ).to(d.device)
        self.net: torch.nn.Module = self.model
        if d.distributed:  # DDP broadcasts rank 0's weights and averages the gradients
            ids = [d.device.index] if d.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.loss = perceptual.PerceptualLoss(
            loss_net,
            style.to(d.device),
            cfg["content_layer"],
            cfg["style_layers"],
            cfg["content_weight"],
            cfg["style_weight"],
            cfg["tv_weight"],
            cfg["colour_weight"],
        ).to(d.device)
        self.style = style
        self.opt = torch.optim.Adam(self.model.parameters(), cfg["lr"])
        torch.manual_seed(checkpoints.rank_seed(cfg["seed"], d.rank))  # each rank its own crops
        self.step = 0
        self.seconds = 0.0
        self.commands: list[str] = []
        self.last: dict[str, float] = {}
        self.log = RunLog(out / "log.csv")
        self.fixed = self.sample_inputs()

    @property
    def total_steps(self) -> int:
        return int(self.cfg["steps"])

    def lr_at(self, step: int) -> float:
        """Cosine decay from ``lr`` to ``min_lr * lr`` at the last step."""
        cfg = self.cfg
        t = min(1.0, step / max(1, self.total_steps - 1))
        return cfg["lr"] * (cfg["min_lr"] + (1 - cfg["min_lr"]) * 0.5 * (1 + math.cos(math.pi * t)))

    def sample_inputs(self) -> torch.Tensor:
        """The fixed crops of the sample grids: the first content photos, then the previews."""
        size = self.cfg["size"]
        parts = [data.centre_crops(self.photos, SAMPLE_PHOTOS, size)]
        if self.cfg["preview"] and self.d.main:
            try:
                held = data.load_files([Path(p) for p in self.cfg["preview"]], size)
            except TrainError as exc:
                raise TrainError(f"--preview: {exc}") from None
            parts.append(data.centre_crops(held, len(held), size))
        return torch.cat(parts)

    # ------------------------------------------------------------------ state

    FORMAT = FORMAT  # the module's: --resume checks it
    RNG_NOTE = "the network continues, but the crops differ from an uninterrupted run"

    def saved_objects(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.opt}

    def saved_values(self) -> dict[str, Any]:
        return {"last": self.last}

    def restore_values(self, ck: dict[str, Any]) -> None:
        self.last = dict(ck.get("last", {}))

    # ------------------------------------------------------------------ steps

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        x = data.random_crops(self.photos, self.local, cfg["size"], cfg["min_scale"])
        x = x.to(self.d.device)
        lr = self.lr_at(self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        losses = self.loss(self.net(x), x)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.opt.step()
        return {**{k: float(v.item()) for k, v in losses.items()}, "lr": lr}

    @torch.no_grad()
    def write_samples(self) -> None:
        """DIR/samples/step_N.png: the style image and the fixed crops in the top row, their
        stylized versions below (grid_image takes [-1, 1])."""
        self.model.eval()
        x = self.fixed.to(self.d.device)
        y = self.model(x).cpu()
        size = self.cfg["size"]
        thumb = data.crop(
            (self.style[0] * 255).round().to(torch.uint8),
            0,
            0,
            min(self.style.shape[2:]),
            size,
        )
        blank = torch.full_like(thumb, 0.125)
        grid = torch.cat([thumb[None], x.cpu(), blank[None], y]) * 2 - 1
        save_png(
            grid_image(grid, len(x) + 1, scale=1),
            self.out / "samples" / f"step_{self.step:07d}.png",
        )
        self.model.train()

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        d, cfg = self.d, self.cfg
        total = self.total_steps
        if d.main:
            self.log.truncate_after(self.step)
            if self.step == 0:
                self.write_samples()
        limits = cli.RunLimits(cfg, self.step, total)
        bar = cli.progress_bar(total, self.step, d)
        sums: dict[str, float] = {}
        count, seconds = 0, 0.0
        interrupted = paused = False
        with cli.StopFlag() as flag:
            while self.step < total:
                t0 = time.perf_counter()
                stats = self.train_step()
                self.step += 1
                dt = time.perf_counter() - t0
                self.seconds += dt
                seconds += dt
                count += 1
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                if d.main:
                    bar.update(1)
                    bar.set_postfix(
                        content=f"{stats['content']:.3f}", style=f"{stats['style']:.3f}",
                        refresh=False,
                    )  # fmt: skip
                last = self.step >= total
                if self.step % cfg["log_every"] == 0 or last:
                    keys = sorted(sums)
                    totals = all_sum([sums[k] for k in keys], d)
                    means = {k: t / (count * d.world) for k, t in zip(keys, totals, strict=True)}
                    self.last = {"step": self.step, **means}
                    if d.main:
                        means["img_s"] = cfg["batch"] * count / max(seconds, 1e-9)
                        self.log.write(self.step, **means)
                    sums, count, seconds = {}, 0, 0.0
                interrupted, paused = limits.check(flag, self.step, last, d)
                stopping = last or interrupted or paused
                if d.main and (self.step % cfg["sample_every"] == 0 or stopping):
                    self.write_samples()
                if self.step % cfg["save_every"] == 0 or stopping:
                    self.save()
                if interrupted or paused:
                    break
        bar.close()
        return cli.finish_run(
            d, self.step, total, self.per_epoch, self.seconds, self.out / CHECKPOINT, interrupted,
            paused,
        )  # fmt: skip


def data_record(cfg: dict[str, Any], photos: data.ContentPhotos) -> dict[str, Any]:
    """What the checkpoint (and then the card) says about the images: files, hashes, counts."""
    return {
        "style_file": Path(cfg["style"]).name,
        "style_sha256": data.file_sha256(Path(cfg["style"])),
        "content_folder": cfg["content"],
        "content_files": photos.names,
        "content_fingerprint": photos.fingerprint,
        "content_skipped": photos.skipped,
    }


def prepare(argv: list[str], args: argparse.Namespace, d: Dist) -> Trainer:
    """Check the options, read the images and build the trainer (fresh or from the
    checkpoint)."""
    from gdl_studio_plugins.dream.train.export import load_reference

    explicit = vars(build_parser(suppress=True).parse_args(argv))
    out = Path(args.out).expanduser()
    ck_path = out / CHECKPOINT
    ck = checkpoints.previous_run(ck_path, args.resume, FORMAT, ("config", "model"))
    cfg = resumed_config(ck["config"], explicit) if ck is not None else fresh_config(args)
    # Run-length limits belong to this invocation only.
    cfg["stop_after"], cfg["time_limit"] = args.stop_after, args.time_limit
    photos = data.load_content(Path(cfg["content"]), cfg["size"])
    style = data.load_style(Path(cfg["style"]), cfg["style_size"])
    record = data_record(cfg, photos)
    if ck is not None:
        before = cfg.get("images") or {}
        changed = {"style_sha256": "the style image", "content_fingerprint": "the content photos"}
        for key, what in changed.items():
            if before.get(key) != record[key]:
                raise TrainError(f"{what} changed since the checkpoint was written")
    cfg["images"] = record
    cmd = cli.command_line(MODULE, argv, d.local_world)
    if ck is None:
        cfg["command"] = cmd
    trainer = Trainer(cfg, photos, style, load_reference(), d, out)
    cfg["architecture"] = dict(trainer.model.config)
    cli.start_run(trainer, ck, cmd, ck_path, d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        skipped = f" ({photos.skipped} unreadable file(s) skipped)" if photos.skipped else ""
        cli.say(
            d,
            f"data: {len(photos)} content photo(s) from {photos.folder}{skipped}; style "
            f"{Path(cfg['style']).name} at {style.shape[3]}x{style.shape[2]}",
        )
        cli.say(
            d,
            f"model: {cli.count_parameters(trainer.model):,} parameters, widths "
            f"{cfg['widths']}; crops {cfg['size']}px, batch {cfg['batch']}; {d.describe()}",
        )
    return trainer


def main(argv: list[str] | None = None) -> int:
    """The command: ``python -m gdl_studio_plugins.style.train.train_style --help``."""
    return cli.run_main(PROG, build_parser(), argv, prepare)


if __name__ == "__main__":
    sys.exit(main())
