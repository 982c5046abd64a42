"""Train the music transformer on the JSB chorales or on a folder of solo-line MIDI files.

    python -m gdl_studio_plugins.music.train.train --scheme chorale \\
        --data ../shared/data/midi/jsb-chorales/Jsb16thSeparated.npz --out runs/chorales

Each step: ``--batch`` pieces, each transposed by a random shift of up to ``--transpose``
semitones and cut to ``--max-len`` tokens, next-token cross-entropy, AdamW with warm-up and
cosine decay, gradient clipping.  Every epoch (or ``--val-every`` steps): the validation loss
(nats per token over whole validation pieces, the number ``gdl-studio eval music`` reports)
and a sample MIDI file.  Writes DIR/checkpoint.pt (every ``--save-every`` steps, each
validation, the end and on Ctrl+C; ``--resume`` continues it exactly), DIR/best.pt (lowest
validation loss: export this one), DIR/log.csv and DIR/samples/*.mid.  Under torchrun each
process takes its share of every batch (DDP) and rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from gdl_studio.training import checkpoints, cli
from gdl_studio.training.checkpoints import CHECKPOINT, Checkpointed
from gdl_studio.training.distributed import Dist, all_sum
from gdl_studio.training.errors import TrainError
from gdl_studio.training.init import Init, load_state, read_init, take_architecture

from .data import PAD, SCHEME_TOKENIZERS, Batches, Dataset, load, validation_batches
from .log import RunLog
from .model import MusicTransformer, sample_ids, torch_model_from_onnx

MODULE = "gdl_studio_plugins.music.train.train"
PROG = "train"
BEST = "best.pt"
FORMAT = 1
RESUMABLE = {
    "epochs", "steps", "stop_after", "time_limit", "log_every", "save_every", "val_every",
    "sample_bars", "threads", "device", "resume", "out", "precision", "init",
}  # fmt: skip
SETTINGS = (
    "scheme", "d_model", "layers", "heads", "kv_heads", "ff", "dropout", "batch", "max_len",
    "transpose", "lr", "min_lr", "warmup", "weight_decay", "clip", "seed",
)  # fmt: skip
DEFAULT_EPOCHS = 20


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    options = cli.Options(PROG, "Train the music transformer.", suppress)
    add = options.add
    add(
        "--scheme",
        choices=["chorale", "solo", "general"],
        default="chorale",
        help="chorale: Jsb16thSeparated.npz (SATB on the 16th grid); solo: a folder of "
        "one-line .mid files; general: any folder of .mid files (note events)",
    )
    add("--data", help="the .npz (chorale) or MIDI folder; optional with --resume")
    add("--out", required=not suppress, type=Path, help="run folder")
    add("--d-model", type=int, default=256)
    add("--layers", type=int, default=4)
    add("--heads", type=int, default=8)
    add("--kv-heads", type=int, default=1, help="key/value heads (grouped-query attention)")
    add("--ff", type=int, default=768, help="feed-forward width")
    add("--dropout", type=float, default=0.1)
    add("--batch", type=int, default=8, help="pieces per step, over all processes")
    add("--max-len", type=int, default=1024, help="tokens per piece and step (longer: cut)")
    add("--transpose", type=int, default=6, help="random transposition, up to +- semitones")
    options.add_run_length()
    add("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    add("--min-lr", type=float, default=0.05, help="final learning rate, as a share of --lr")
    add("--warmup", type=int, default=100, help="steps of linear warm-up")
    add("--weight-decay", type=float, default=0.05)
    add("--clip", type=float, default=1.0, help="gradient-norm clipping (0: off)")
    add("--seed", type=int, default=0)
    add("--stop-after", type=int, help="stop (and save) after this many steps of this run")
    add("--time-limit", type=float, help="stop (and save) after this many minutes")
    add("--log-every", type=int, default=10, help="steps between log.csv rows")
    add("--save-every", type=int, default=100, help="steps between checkpoints")
    add("--val-every", type=int, default=0, help="steps between validations (0: each epoch)")
    add("--sample-bars", type=int, default=8, help="bars in each validation's sample MIDI")
    add("--resume", action="store_true", default=False, help="continue DIR/checkpoint.pt")
    add(
        "--init",
        type=Path,
        help="fine-tune: start from these weights, a model folder (e.g. assets/music/"
        "jsb-chorales) or a run's best.pt; its architecture replaces --d-model, --layers, "
        "--heads, --kv-heads and --ff",
    )
    add("--threads", type=int, help="CPU threads per process")
    add("--device", default="auto", help="auto, cpu or cuda")
    options.add_precision()
    return options.parser


KEYS = (
    "scheme", "d_model", "layers", "heads", "kv_heads", "ff", "dropout", "batch", "max_len",
    "transpose", "steps", "lr", "min_lr", "warmup", "weight_decay", "clip", "seed", "log_every",
    "save_every", "val_every", "sample_bars",
)  # fmt: skip


ARCHITECTURE = ("d_model", "layers", "heads", "kv_heads", "ff")  # what --init fixes


def initial_weights(
    source: Path, scheme: str, explicit: dict[str, Any], cfg: dict[str, Any]
) -> Init:
    """``--init``'s weights for a fresh run: ``cfg`` takes their architecture, and their
    tokenizer must be the one ``scheme`` trains (the token ids mean the same to both)."""
    init = read_init(source, "music-transformer", "prefill.onnx", torch_model_from_onnx)
    want = SCHEME_TOKENIZERS[scheme]().config()
    if init.record.get("tokenizer") != want:
        raise TrainError(
            f"--init {init.source}: its tokenizer ({init.record.get('tokenizer')}) is not the "
            f"{scheme!r} scheme's ({want}); pass --scheme to match it"
        )
    take_architecture(cfg, explicit, init.architecture, ARCHITECTURE)
    check_config(cfg)
    cfg["init"] = init.provenance
    return init


def fresh_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.data is None:
        raise TrainError("--data is required (Jsb16thSeparated.npz, or a folder of .mid)")
    cfg = {k: getattr(args, k) for k in KEYS}
    cfg["data"] = str(Path(args.data).expanduser().resolve())
    cfg["epochs"] = args.epochs if args.epochs or args.steps else DEFAULT_EPOCHS
    check_config(cfg)
    return cfg


def check_config(cfg: dict[str, Any]) -> None:
    for key in ("d_model", "layers", "heads", "kv_heads", "ff", "batch", "max_len", "log_every",
                "save_every", "sample_bars"):  # fmt: skip
        if cfg[key] < 1:
            raise TrainError(f"--{key.replace('_', '-')} must be at least 1")
    if cfg["d_model"] % cfg["heads"] or cfg["heads"] % cfg["kv_heads"]:
        raise TrainError("--d-model must divide by --heads, and --heads by --kv-heads")
    if (cfg["d_model"] // cfg["heads"]) % 2:
        raise TrainError("--d-model / --heads must be even (rotary positions turn pairs)")
    if not 0 <= cfg["dropout"] < 1 or not 0 <= cfg["min_lr"] <= 1 or cfg["transpose"] < 0:
        raise TrainError("--dropout in [0, 1), --min-lr in [0, 1], --transpose not negative")
    if cfg["lr"] <= 0 or cfg["clip"] < 0 or cfg["warmup"] < 0 or cfg["val_every"] < 0:
        raise TrainError("--lr must be positive; --clip, --warmup and --val-every not negative")
    for key in ("steps", "epochs"):
        if cfg[key] is not None and cfg[key] < 1:
            raise TrainError("--steps/--epochs must be at least 1")


def resumed_config(previous: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    given = {
        key: str(Path(value).expanduser().resolve()) if key == "data" else value
        for key, value in explicit.items()
        if key not in RESUMABLE and key in previous
    }
    cfg = cli.resumed_settings(previous, explicit, given)
    for key in ("log_every", "save_every", "val_every", "sample_bars"):
        if key in explicit:
            cfg[key] = explicit[key]
    check_config(cfg)
    return cfg


class Trainer(Checkpointed):
    """One run: the model, its optimiser, the batches, the loop and its files."""

    def __init__(self, cfg: dict[str, Any], data: Dataset, d: Dist, out: Path) -> None:
        self.cfg, self.data, self.d, self.out = cfg, data, d, out
        tok = data.tokenizer
        torch.manual_seed(cfg["seed"])  # the same initial weights on every rank
        self.model = MusicTransformer(
            len(tok), tok.period, cfg["d_model"], cfg["layers"], cfg["heads"], cfg["kv_heads"],
            cfg["ff"], cfg["dropout"],
        ).to(d.device)  # fmt: skip
        self.net: torch.nn.Module = self.model
        if d.distributed:
            ids = [d.device.index] if d.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        keep = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg["weight_decay"]},
             {"params": keep, "weight_decay": 0.0}],
            cfg["lr"], betas=(0.9, 0.98),
        )  # fmt: skip
        torch.manual_seed(checkpoints.rank_seed(cfg["seed"], d.rank))  # own dropout per rank
        self.batches = Batches(
            data.train, cfg["batch"], cfg["max_len"], cfg["transpose"], cfg["seed"], d.rank, d.world
        )
        self.val = [
            (x.to(d.device), y.to(d.device))
            for x, y in validation_batches(data.valid, d.rank, d.world)
        ]
        self.per_epoch = self.batches.steps_per_epoch
        self.step = 0
        self.seconds = 0.0
        self.commands: list[str] = []
        self.val_history: list[dict[str, float]] = []
        self.log = RunLog(out / "log.csv")
        self.precision = "fp32"  # set by prepare(): a run option, not a setting

    @property
    def total_steps(self) -> int:
        return int(self.cfg["steps"] or self.cfg["epochs"] * self.per_epoch)

    def lr_at(self, step: int) -> float:
        cfg, total = self.cfg, self.total_steps
        if step < cfg["warmup"]:
            return cfg["lr"] * (step + 1) / cfg["warmup"]
        t = min(1.0, (step - cfg["warmup"]) / max(1, total - cfg["warmup"]))
        return cfg["lr"] * (cfg["min_lr"] + (1 - cfg["min_lr"]) * 0.5 * (1 + math.cos(math.pi * t)))

    # ------------------------------------------------------------------ state

    FORMAT = FORMAT  # the module's: --resume checks it
    RNG_NOTE = "the batches are the same, the dropout masks are not"

    def saved_objects(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.opt}

    def saved_values(self) -> dict[str, Any]:
        return {"val_history": self.val_history}

    def restore_values(self, ck: dict[str, Any]) -> None:
        self.val_history = list(ck.get("val_history", []))

    # ------------------------------------------------------------------ steps

    def train_step(self) -> tuple[float, float, int]:
        """One batch; returns the mean loss, the gradient norm and the tokens scored."""
        epoch, k = divmod(self.step, self.per_epoch)
        x, y = (t.to(self.d.device) for t in self.batches.get(epoch, k))
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        tokens = int((y != PAD).sum())
        # The mean over every rank's tokens: DDP averages the ranks' gradients, so each rank
        # scales its sum by world / all tokens, and any split of a batch trains alike.
        (everywhere,) = all_sum([float(tokens)], self.d)
        with cli.autocast(self.d.device, self.precision):
            logits = self.net(x).float()
        nll = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=PAD, reduction="sum"
        )
        loss = nll * (self.d.world / everywhere)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["clip"] or math.inf)
        self.opt.step()
        return float(loss.item()), float(norm), tokens

    @torch.no_grad()
    def validate(self) -> float:
        """Mean NLL (nats/token) over every token of the validation pieces after BOS."""
        total = count = 0.0
        self.model.eval()
        for x, y in self.val:
            logits = self.model(x)
            nll = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD, reduction="sum")
            total += float(nll)
            count += float((y != PAD).sum())
        self.model.train()
        total, count = all_sum([total, count], self.d)
        return total / count

    def after_validation(self, val: float) -> None:
        epoch = self.step / self.per_epoch
        improved = all(val < v["val_nll"] for v in self.val_history)
        best = min([v["val_nll"] for v in self.val_history] + [val])
        self.val_history.append({"step": self.step, "epoch": round(epoch, 4), "val_nll": val})
        if improved:
            self.save(BEST)
        if not self.d.main:
            return
        self.log.write(self.step, epoch, val_nll=val)
        tok = self.data.tokenizer
        allowed = [torch.from_numpy(tok.allowed(p)) for p in range(tok.period)]
        n = self.cfg["sample_bars"] * tok.steps_per_bar()
        ids = sample_ids(self.model, [0], n, allowed, 1.0, self.cfg["seed"] + self.step)
        path = self.out / "samples" / f"step_{self.step:07d}.mid"
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.to_midi(ids, 90.0, 0).save(str(path))
        cli.say(
            self.d,
            f"epoch {epoch:.2f} step {self.step}: val_nll {val:.4f} (best {best:.4f}), "
            f"{self.seconds / 60:.1f} min of training; sample {path.name}",
        )

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        d, cfg = self.d, self.cfg
        total = self.total_steps
        if d.main:
            self.log.truncate_after(self.step)
        limits = cli.RunLimits(cfg, self.step, total)
        bar = cli.progress_bar(total, self.step, d)
        sums = [0.0, 0.0, 0.0, 0, 0]  # loss, grad norm, seconds, steps, tokens
        interrupted = paused = False
        with cli.StopFlag() as flag:
            while self.step < total:
                t0 = time.perf_counter()
                loss, norm, tokens = self.train_step()
                self.step += 1
                dt = time.perf_counter() - t0
                self.seconds += dt
                sums = [sums[0] + loss, sums[1] + norm, sums[2] + dt, sums[3] + 1, sums[4] + tokens]
                if d.main:
                    bar.update(1)
                    bar.set_postfix(
                        nll=f"{loss:.3f}", lr=f"{self.lr_at(self.step - 1):.1e}", refresh=False
                    )
                last = self.step >= total
                if self.step % cfg["log_every"] == 0 or last:
                    loss_sum, norm_sum, tok_sum = all_sum([sums[0], sums[1], sums[4]], d)
                    n = sums[3] * d.world
                    if d.main:
                        self.log.write(
                            self.step, self.step / self.per_epoch, train_nll=loss_sum / n,
                            grad_norm=norm_sum / n, lr=self.lr_at(self.step - 1),
                            tokens_per_s=tok_sum / sums[2],
                        )  # fmt: skip
                    sums = [0.0, 0.0, 0.0, 0, 0]
                epoch_end = self.step % self.per_epoch == 0
                validating = (
                    epoch_end if not cfg["val_every"] else self.step % cfg["val_every"] == 0
                )
                if validating or last:
                    self.after_validation(self.validate())
                interrupted, paused = limits.check(flag, self.step, last, d)
                if (
                    validating
                    or last
                    or interrupted
                    or paused
                    or self.step % cfg["save_every"] == 0
                ):
                    self.save()
                if interrupted or paused:
                    break
        bar.close()
        return cli.finish_run(
            d, self.step, total, self.per_epoch, self.seconds, self.out / CHECKPOINT,
            interrupted, paused,
        )  # fmt: skip


def prepare(argv: list[str], args: argparse.Namespace, d: Dist) -> Trainer:
    explicit = vars(build_parser(suppress=True).parse_args(argv))
    out = Path(args.out).expanduser()
    ck_path = out / CHECKPOINT
    ck = checkpoints.previous_run(ck_path, args.resume, FORMAT, ("config", "model"))
    if ck is not None and args.init is not None:
        raise TrainError("--init starts a new run from some weights; --resume continues one")
    cfg = resumed_config(ck["config"], explicit) if ck is not None else fresh_config(args)
    init = None
    if ck is None and args.init is not None:
        init = initial_weights(args.init, cfg["scheme"], explicit, cfg)
    cfg["stop_after"], cfg["time_limit"] = args.stop_after, args.time_limit
    data = load(cfg["scheme"], Path(cfg["data"]))
    if ck is not None and data.info["sha256"] != cfg["data_info"]["sha256"]:
        raise TrainError(f"{cfg['data']} changed since the checkpoint (sha256 differs)")
    cfg.update(tokenizer=data.tokenizer.config(), data_info=data.info)
    cmd = cli.command_line(MODULE, argv, d.local_world)
    if ck is None:
        cfg["command"] = cmd
    trainer = Trainer(cfg, data, d, out)
    if init is not None:
        load_state(trainer.model, init)
    trainer.precision = args.precision
    cfg["architecture"] = dict(trainer.model.config)
    cli.start_run(trainer, ck, cmd, ck_path, d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        info = data.info
        cli.say(
            d,
            f"data: {info['pieces']['train']} train / {info['pieces']['valid']} validation "
            f"pieces ({info['tokens']['train']:,} / {info['tokens']['valid']:,} tokens), "
            f"{len(data.tokenizer)} token ids, from {info['path']}",
        )
        cli.say(
            d,
            f"model: {cli.count_parameters(trainer.model):,} parameters; {trainer.per_epoch} "
            f"steps per epoch of {cfg['batch']} pieces; {d.describe()}",
        )
    return trainer


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(PROG, build_parser(), argv, prepare)


if __name__ == "__main__":
    sys.exit(main())
