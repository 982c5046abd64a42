"""Train the independent evaluation classifier (class agreement and Fréchet distance of GAN
samples are measured with it).

    python -m gdl_studio_plugins.gan.train.train_classifier --data fashion \\
        --out runs/fashion-classifier --epochs 6

Trains on the train split with light augmentation (random shifts of up to 2 px, horizontal
flips), reports test-split accuracy after every epoch and writes DIR/classifier.pt.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from gdl_studio.core.datasets import DatasetError
from gdl_studio.training.checkpoints import atomic_save
from gdl_studio.training.cli import command_line, count_parameters
from gdl_studio.training.distributed import setup
from gdl_studio.training.errors import TrainError, fail

from .data import ImageTensors, data_info, load_split, whole_batch
from .models import Classifier

MODULE = "gdl_studio_plugins.gan.train.train_classifier"
PROG = "train_classifier"
FORMAT = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Train the evaluation classifier.")
    p.add_argument("--data", choices=["fashion", "cifar10"], required=True)
    p.add_argument("--data-path", help="Fashion-MNIST folder or the CIFAR-10 tarball/folder")
    p.add_argument("--out", required=True, type=Path, help="folder for classifier.pt")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="train on the images as they are")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


def augment(x: torch.Tensor, gen: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random shifts of up to ``shift`` pixels (the border filled with the background, -1) and
    horizontal flips for half the batch: cheap, label-preserving for clothes and CIFAR-10."""
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=-1.0)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen).tolist()
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def accuracy(
    model: Classifier, data: ImageTensors, device: torch.device, batch: int = 500
) -> float:
    """Top-1 accuracy on ``data``."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch):
        x, y = data.__getitems__(list(range(start, min(start + batch, len(data)))))
        logits, _ = model(x.to(device))
        correct += int((logits.argmax(1).cpu() == y).sum())
    return correct / max(1, len(data))


def train(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Train, evaluate, save; returns the saved checkpoint dict."""
    d = setup(args.device, args.threads)
    if args.epochs < 1 or args.batch < 1:
        raise TrainError("--epochs and --batch must be at least 1")
    train_set = load_split(args.data, "train", args.data_path)
    test_set = load_split(args.data, "test", args.data_path)
    torch.manual_seed(args.seed)
    model = Classifier(len(train_set.classes), train_set.channels, train_set.size, args.width)
    model.to(d.device)
    print(
        f"data: {len(train_set.dataset)} train / {len(test_set.dataset)} test images, "
        f"{train_set.size}x{train_set.size}x{train_set.channels}, from {train_set.source}\n"
        f"classifier: {count_parameters(model):,} parameters on {d.device}, "
        f"{torch.get_num_threads()} thread(s)",
        flush=True,
    )
    loader = DataLoader(
        train_set.dataset,
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        collate_fn=whole_batch,
        generator=torch.Generator().manual_seed(args.seed),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    # One-cycle: warm up, then anneal to ~0; reaches a good accuracy in few epochs.
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * len(loader)
    )
    aug_rng = torch.Generator().manual_seed(args.seed + 1)
    t0 = time.perf_counter()
    acc = 0.0
    for epoch in range(args.epochs):
        model.train()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{args.epochs}",
            unit="batch",
            mininterval=1.0,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for x, y in bar:
            if not args.no_augment:
                x = augment(x, aug_rng)
            logits, _ = model(x.to(d.device))
            loss = F.cross_entropy(logits, y.to(d.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        acc = accuracy(model, test_set.dataset, d.device)
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f}", flush=True)
    seconds = time.perf_counter() - t0
    ck = {
        "format": FORMAT,
        "model": {k: v.cpu() for k, v in model.state_dict().items()},
        "config": {
            "architecture": dict(model.config),
            "data": args.data,
            "data_path": str(Path(args.data_path).resolve()) if args.data_path else None,
            "data_info": data_info(args.data, args.data_path),
            "classes": list(train_set.classes),
            "command": command_line(MODULE, argv),
            "epochs": args.epochs,
            "steps": args.epochs * len(loader),
            "batch": args.batch,
            "lr": args.lr,
            "seed": args.seed,
            "augment": not args.no_augment,
        },
        "test_accuracy": acc,
        "seconds": seconds,
    }
    atomic_save(ck, Path(args.out) / "classifier.pt")
    print(
        f"test accuracy {acc:.4f} after {args.epochs} epochs ({seconds:.0f} s); "
        f"wrote {Path(args.out) / 'classifier.pt'}",
        flush=True,
    )
    return ck


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        train(args, argv)
    except (TrainError, DatasetError) as exc:
        fail(PROG, str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
