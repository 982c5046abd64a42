"""Train a character-level LSTM on any UTF-8 text file.

    python -m gdl_studio_plugins.text.train.train --data tinyshakespeare.txt \\
        --out runs/shakespeare --hidden 512 --layers 2 --epochs 10

Truncated back-propagation through time along ``--batch`` parallel streams of the first 90%
of the file, ``--bptt`` characters per step with the LSTM state carried between steps;
gradient clipping, AdamW with warm-up and cosine decay.  Every epoch: the validation loss on
the last 10% (nats per character, the number ``gdl-studio eval text`` reports) and a text
sample.  Writes DIR/checkpoint.pt (every ``--save-every`` steps, at each epoch end, at the
end and on Ctrl+C; ``--resume`` continues it exactly), DIR/best.pt (the checkpoint with the
lowest validation loss so far: export this one), DIR/log.csv and DIR/samples/.  Under
torchrun every process trains on its block of streams (DDP) and rank 0 writes the files.
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
from gdl_studio_plugins.text.corpus import Vocabulary
from torch.nn.parallel import DistributedDataParallel

from gdl_studio.training import checkpoints, cli
from gdl_studio.training.checkpoints import CHECKPOINT, Checkpointed
from gdl_studio.training.distributed import Dist, all_sum, gather_rows
from gdl_studio.training.errors import TrainError
from gdl_studio.training.init import load_state, read_init, take_architecture

from .data import Streams, TextData, load_text, validation_rows
from .export import torch_model_from_onnx
from .log import RunLog, sample_text
from .model import CharLSTM

MODULE = "gdl_studio_plugins.text.train.train"
PROG = "train"
BEST = "best.pt"  # the checkpoint of the lowest validation loss so far (what to export)
FORMAT = 1
# What a resumed run may change: how long it runs and what it reports, not what it learns.
RESUMABLE = {
    "epochs",
    "steps",
    "stop_after",
    "time_limit",
    "log_every",
    "save_every",
    "val_every",
    "sample_chars",
    "threads",
    "device",
    "resume",
    "out",
    "init",
}
ARCHITECTURE = ("embed", "hidden", "layers")  # what --init fixes
DEFAULT_EPOCHS = 10


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    """The command line; ``suppress`` drops the defaults, so parsing tells which options the
    user actually gave (a resumed run refuses to change those that shape training)."""
    options = cli.Options(PROG, "Train a character-level LSTM.", suppress)
    add = options.add
    add("--data", help="a UTF-8 text file (optional with --resume)")
    add("--encoding", default="utf-8", help="the file's encoding")
    add(
        "--decode-errors",
        choices=["strict", "replace", "ignore"],
        default="strict",
        help="bytes that do not decode: stop with an error, read as U+FFFD, or skip",
    )
    add("--out", required=not suppress, type=Path, help="run folder")
    add("--embed", type=int, default=64, help="character embedding size")
    add("--hidden", type=int, default=512, help="LSTM units per layer")
    add("--layers", type=int, default=2, help="LSTM layers (1-4)")
    add("--dropout", type=float, default=0.2)
    add("--batch", type=int, default=32, help="parallel streams, over all processes")
    add("--bptt", type=int, default=128, help="characters per step (truncated BPTT length)")
    options.add_run_length()
    add("--lr", type=float, default=2e-3, help="peak learning rate (AdamW)")
    add("--min-lr", type=float, default=0.1, help="final learning rate, as a share of --lr")
    add("--warmup", type=int, default=50, help="steps of linear learning-rate warm-up")
    add("--weight-decay", type=float, default=0.01)
    add("--clip", type=float, default=1.0, help="gradient-norm clipping (0: off)")
    add("--seed", type=int, default=0)
    add("--stop-after", type=int, help="stop (and save) after this many steps of this run")
    add("--time-limit", type=float, help="stop (and save) after this many minutes")
    add("--log-every", type=int, default=20, help="steps between log.csv rows")
    add("--save-every", type=int, default=200, help="steps between checkpoints")
    add("--val-every", type=int, default=0, help="steps between validations (0: each epoch)")
    add("--sample-chars", type=int, default=300, help="characters in each epoch's sample")
    add("--resume", action="store_true", default=False, help="continue DIR/checkpoint.pt")
    add(
        "--init",
        type=Path,
        help="fine-tune: start from these weights, a model folder (e.g. assets/text/"
        "shakespeare) or a run's best.pt; its --embed, --hidden and --layers and its "
        "vocabulary are kept (characters it lacks are mapped to near ones or dropped)",
    )
    add("--threads", type=int, help="CPU threads per process")
    add("--device", default="auto", help="auto, cpu or cuda")
    return options.parser


def fresh_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.data is None:
        raise TrainError("--data is required (a UTF-8 text file)")
    cfg = {
        k: getattr(args, k)
        for k in (
            "encoding",
            "decode_errors",
            "embed",
            "hidden",
            "layers",
            "dropout",
            "batch",
            "bptt",
            "steps",
            "lr",
            "min_lr",
            "warmup",
            "weight_decay",
            "clip",
            "seed",
            "log_every",
            "save_every",
            "val_every",
            "sample_chars",
        )
    }
    cfg["data"] = str(Path(args.data).expanduser().resolve())
    cfg["epochs"] = args.epochs if args.epochs or args.steps else DEFAULT_EPOCHS
    check_config(cfg)
    return cfg


def check_config(cfg: dict[str, Any]) -> None:
    """Refuse settings that cannot train, with the reason."""
    for key in ("embed", "hidden", "batch", "bptt", "log_every", "save_every"):
        if cfg[key] < 1:
            raise TrainError(f"--{key.replace('_', '-')} must be at least 1")
    if not 1 <= cfg["layers"] <= 4:
        raise TrainError("--layers must be from 1 to 4")
    if not 0 <= cfg["dropout"] < 1 or not 0 <= cfg["min_lr"] <= 1:
        raise TrainError("--dropout must be in [0, 1) and --min-lr in [0, 1]")
    if cfg["lr"] <= 0 or cfg["clip"] < 0 or cfg["warmup"] < 0 or cfg["val_every"] < 0:
        raise TrainError("--lr must be positive; --clip, --warmup and --val-every not negative")
    if (cfg["steps"] is not None and cfg["steps"] < 1) or (
        cfg["epochs"] is not None and cfg["epochs"] < 1
    ):
        raise TrainError("--steps/--epochs must be at least 1")


def resumed_config(previous: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's settings; the run length and the reporting may change, what shapes
    training may not (it would no longer be the same run)."""
    given = {
        key: str(Path(value).expanduser().resolve()) if key == "data" else value
        for key, value in explicit.items()
        if key not in RESUMABLE and key in previous
    }
    cfg = cli.resumed_settings(previous, explicit, given)
    for key in ("log_every", "save_every", "val_every", "sample_chars"):
        if key in explicit:
            cfg[key] = explicit[key]
    check_config(cfg)
    return cfg


class Trainer(Checkpointed):
    """One run: the model, its optimiser, the streams, the loop and its files."""

    def __init__(self, cfg: dict[str, Any], data: TextData, d: Dist, out: Path) -> None:
        self.cfg, self.data, self.d, self.out = cfg, data, d, out
        torch.manual_seed(cfg["seed"])  # identical initial weights on every rank
        self.model = CharLSTM(
            len(data.vocab), cfg["embed"], cfg["hidden"], cfg["layers"], cfg["dropout"]
        ).to(d.device)
        self.net: torch.nn.Module = self.model
        if d.distributed:  # DDP broadcasts rank 0's weights and averages the gradients
            ids = [d.device.index] if d.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), cfg["lr"], betas=(0.9, 0.99), weight_decay=cfg["weight_decay"]
        )
        torch.manual_seed(checkpoints.rank_seed(cfg["seed"], d.rank))  # each rank its own dropout
        self.streams = Streams(data.train, cfg["batch"], cfg["bptt"], cfg["seed"], d.rank, d.world)
        self.val = [t.to(d.device) for t in validation_rows(data.val, d.rank, d.world)]
        self.per_epoch = self.streams.steps_per_epoch
        self.step = 0
        self.seconds = 0.0
        self.carry: tuple[torch.Tensor, torch.Tensor] | None = None
        self.commands: list[str] = []
        self.val_history: list[dict[str, float]] = []
        self.log = RunLog(out / "log.csv")

    @property
    def total_steps(self) -> int:
        return int(self.cfg["steps"] or self.cfg["epochs"] * self.per_epoch)

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``min_lr * lr`` at the last step."""
        cfg, total = self.cfg, self.total_steps
        if step < cfg["warmup"]:
            return cfg["lr"] * (step + 1) / cfg["warmup"]
        t = min(1.0, (step - cfg["warmup"]) / max(1, total - cfg["warmup"]))
        return cfg["lr"] * (cfg["min_lr"] + (1 - cfg["min_lr"]) * 0.5 * (1 + math.cos(math.pi * t)))

    # ------------------------------------------------------------------ state

    FORMAT = FORMAT  # the module's: --resume checks it
    RNG_NOTE = "the data is the same, the dropout masks are not"

    def saved_objects(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.opt}

    def saved_values(self) -> dict[str, Any]:
        carry = None
        if self.carry is not None:  # the state of all streams, in stream order (collective)
            carry = [gather_rows(t, self.d, dim=1) for t in self.carry]
        return {"carry": carry, "val_history": self.val_history}

    def restore_values(self, ck: dict[str, Any]) -> None:
        self.val_history = list(ck.get("val_history", []))
        if ck.get("carry") is not None and self.step % self.per_epoch:
            rows = self.streams.rows
            self.carry = tuple(t[:, rows].to(self.d.device) for t in ck["carry"])  # type: ignore[assignment]

    # ------------------------------------------------------------------ steps

    def train_step(self) -> tuple[float, float]:
        """One window of every stream; returns the mean loss and the gradient norm."""
        epoch, k = divmod(self.step, self.per_epoch)
        x, y = (t.to(self.d.device) for t in self.streams.window(epoch, k))
        if k == 0 or self.carry is None:  # a new epoch starts the streams elsewhere
            self.carry = self.model.zero_state(len(x), self.d.device)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        logits, (h, c) = self.net(x, self.carry)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg["clip"] or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.opt.step()
        self.carry = (h.detach(), c.detach())  # carried on, but no gradient flows back
        return float(loss.item()), float(norm)

    @torch.no_grad()
    def validate(self) -> float:
        """Mean NLL (nats/char) over the validation split, every rank scoring its rows."""
        x, y, mask = self.val
        total = count = 0.0
        self.model.eval()
        if len(x):
            state = self.model.zero_state(len(x), self.d.device)
            for t0 in range(0, x.shape[1], 512):  # in time slices: bounded memory
                logits, state = self.model(x[:, t0 : t0 + 512], state)
                nll = F.cross_entropy(logits.transpose(1, 2), y[:, t0 : t0 + 512], reduction="none")
                m = mask[:, t0 : t0 + 512]
                total += float((nll.double() * m).sum())
                count += float(m.sum())
        self.model.train()
        total, count = all_sum([total, count], self.d)
        return total / count

    def end_of_epoch(self, val: float) -> None:
        """Log the validation loss, keep the best weights in best.pt, write a sample.
        Collective (the state of every rank goes into best.pt)."""
        epoch = self.step / self.per_epoch
        improved = all(val < v["val_nll"] for v in self.val_history)
        best = min([v["val_nll"] for v in self.val_history] + [val])
        self.val_history.append({"step": self.step, "epoch": round(epoch, 4), "val_nll": val})
        if improved:
            self.save(BEST)
        if not self.d.main:
            return
        self.log.write(self.step, epoch, val_nll=val)
        seed = self.data.vocab.decode(self.data.val[:60].tolist()).split("\n")[0] or "\n"
        text = sample_text(
            self.model,
            self.data.vocab,
            seed,
            self.cfg["sample_chars"],
            temperature=0.8,
            seed=self.cfg["seed"] + self.step,
        )
        name = f"step_{self.step:07d}.txt"
        self.log.write_sample(self.out / "samples" / name, text)
        cli.say(
            self.d,
            f"epoch {epoch:.2f} step {self.step}: val_nll {val:.4f} (best {best:.4f}), "
            f"{self.seconds / 60:.1f} min of training; sample:\n{text}\n",
        )

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        d, cfg = self.d, self.cfg
        total = self.total_steps
        if d.main:
            self.log.truncate_after(self.step)
        limits = cli.RunLimits(cfg, self.step, total)
        bar = cli.progress_bar(total, self.step, d)
        chars = cfg["batch"] * cfg["bptt"]
        sums = [0.0, 0.0, 0.0, 0]  # loss, gradient norm, seconds, steps since the last row
        interrupted = paused = False
        with cli.StopFlag() as flag:
            while self.step < total:
                t0 = time.perf_counter()
                loss, norm = self.train_step()
                self.step += 1
                dt = time.perf_counter() - t0
                self.seconds += dt
                sums = [sums[0] + loss, sums[1] + norm, sums[2] + dt, sums[3] + 1]
                if d.main:
                    bar.update(1)
                    bar.set_postfix(
                        nll=f"{loss:.3f}", lr=f"{self.lr_at(self.step - 1):.1e}", refresh=False
                    )
                last = self.step >= total
                if self.step % cfg["log_every"] == 0 or last:
                    # Means over the interval and over the ranks' streams.
                    loss_sum, norm_sum = all_sum(sums[:2], d)
                    n = sums[3] * d.world
                    if d.main:
                        self.log.write(
                            self.step,
                            self.step / self.per_epoch,
                            train_nll=loss_sum / n,
                            grad_norm=norm_sum / n,
                            lr=self.lr_at(self.step - 1),
                            chars_per_s=chars * sums[3] / sums[2],
                        )
                    sums = [0.0, 0.0, 0.0, 0]
                epoch_end = self.step % self.per_epoch == 0
                if epoch_end or last or (cfg["val_every"] and self.step % cfg["val_every"] == 0):
                    self.end_of_epoch(self.validate())
                interrupted, paused = limits.check(flag, self.step, last, d)
                if epoch_end or last or interrupted or paused or self.step % cfg["save_every"] == 0:
                    self.save()
                if interrupted or paused:
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
    """Check the options, read the data and build the trainer (fresh or from the checkpoint)."""
    explicit = vars(build_parser(suppress=True).parse_args(argv))
    out = Path(args.out).expanduser()
    ck_path = out / CHECKPOINT
    ck = checkpoints.previous_run(ck_path, args.resume, FORMAT, ("config", "model"))
    if ck is not None and args.init is not None:
        raise TrainError("--init starts a new run from some weights; --resume continues one")
    cfg = resumed_config(ck["config"], explicit) if ck is not None else fresh_config(args)
    # Run-length limits belong to this invocation only.
    cfg["stop_after"], cfg["time_limit"] = args.stop_after, args.time_limit
    init = None
    if ck is None and args.init is not None:
        init = read_init(args.init, "char-lstm-step", "model.onnx", torch_model_from_onnx)
        if not isinstance(init.record.get("vocabulary"), list):
            raise TrainError(f"--init {init.source}: no vocabulary in its record")
        take_architecture(cfg, explicit, init.architecture, ARCHITECTURE)
        check_config(cfg)
        cfg["init"], cfg["vocabulary"] = init.provenance, init.record["vocabulary"]
    # A run from --init keeps the vocabulary its weights were trained with.
    vocab = Vocabulary(cfg["vocabulary"]) if cfg.get("init") else None
    data = load_text(cfg["data"], cfg["encoding"], cfg["decode_errors"], vocab)
    if ck is not None and data.info["sha256"] != cfg["data_info"]["sha256"]:
        raise TrainError(f"{cfg['data']} changed since the checkpoint (sha256 differs)")
    cfg.update(vocabulary=data.vocab.chars, data_info=data.info)
    cmd = cli.command_line(MODULE, argv, d.local_world)
    if ck is None:
        cfg["command"] = cmd
    trainer = Trainer(cfg, data, d, out)
    if init is not None:
        load_state(trainer.model, init)
    cfg["architecture"] = dict(trainer.model.config)
    cli.start_run(trainer, ck, cmd, ck_path, d)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        info = data.info
        cli.say(
            d,
            f"data: {info['chars']:,} characters ({len(data.train):,} train, "
            f"{len(data.val):,} validation), {len(data.vocab)} distinct, from {data.path}",
        )
        if data.info.get("changed"):
            cli.say(d, f"to fit the vocabulary of --init's model: {data.info['changed']}")
        cli.say(
            d,
            f"model: {cli.count_parameters(trainer.model):,} parameters; "
            f"{trainer.per_epoch} steps per epoch of {cfg['batch']} x {cfg['bptt']} "
            f"characters; {d.describe()}",
        )
    return trainer


def main(argv: list[str] | None = None) -> int:
    """The command: ``python -m gdl_studio_plugins.text.train.train --help``."""
    return cli.run_main(PROG, build_parser(), argv, prepare)


if __name__ == "__main__":
    sys.exit(main())
