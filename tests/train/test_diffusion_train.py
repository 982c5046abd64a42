"""The diffusion plugin's training code: the U-Net and its noise embedding, the training CLI
(files, resume, bad options), two-process DDP, and the ONNX export with its card, checked
through the plugin against torch, and `gdl-studio bench diffusion` on it.

Tiny synthetic data (IDX files of bars) and a tiny network: seconds on two CPU cores.
Skipped without torch (the [train] extra).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from gdl_studio_plugins.diffusion.train import export, train_diffusion  # noqa: E402
from gdl_studio_plugins.diffusion.train.models import UNet  # noqa: E402

from tests.fixtures.images import write_idx  # noqa: E402
from tests.train.conftest import (  # noqa: E402
    copy_plugin,
    exit_code,
    load,
    studio_with_models,
    torchrun_two,
)

TINY = ["--widths", "4,8", "--blocks", "1", "--threads", "1", "--batch", "8",
        "--log-every", "2", "--timesteps", "100", "--warmup", "2",
        "--sample-steps", "2"]  # fmt: skip
MODULE = "gdl_studio_plugins.diffusion.train.train_diffusion"


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 32), ("t10k", 16)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 30, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 5 + 2 * c, 4:24] = 220
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def args(fashion: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", "fashion", "--data-path", str(fashion), "--out", str(out), *TINY, *extra]


def train(argv: list[str]) -> int:
    return exit_code(train_diffusion.main, argv)


def test_unet_shapes_labels_and_identity_start() -> None:
    model = UNet(channels=3, size=32, widths=(8, 16, 16), blocks=1, attention=(1, 2), classes=5)
    x = torch.randn(2, 3, 32, 32)
    out = model(x, torch.tensor([0.1, 0.9]), torch.tensor([0, 5]))
    assert out.shape == x.shape
    assert out.abs().max() == 0  # the output convolution starts at zero
    with pytest.raises(ValueError, match="divisible"):
        UNet(size=28, widths=(4, 8, 8, 8))
    # Once trained (here: random weights everywhere), the noise level and the label count.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    a = model(x[:1], torch.tensor([0.1]), torch.tensor([0]))
    assert not torch.allclose(a, model(x[:1], torch.tensor([0.8]), torch.tensor([0])))
    assert not torch.allclose(a, model(x[:1], torch.tensor([0.1]), torch.tensor([3])))


def test_training_writes_its_files_and_resumes_exactly(fashion: Path, tmp_path: Path) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train(args(fashion, whole, "--steps", "8")) == 0
    assert train(args(fashion, parts, "--steps", "8", "--stop-after", "5")) == 0
    assert load(parts / "checkpoint.pt")["step"] == 5
    assert train(["--out", str(parts), "--resume", "--threads", "1"]) == 0
    a, b = load(whole / "checkpoint.pt"), load(parts / "checkpoint.pt")
    assert b["step"] == 8 and len(b["commands"]) == 2
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    names = sorted(p.name for p in (whole / "samples").iterdir())
    assert names[-1] == "step_0000008.png"  # 4 steps an epoch: samples at 4 and 8
    header = (whole / "log.csv").read_text().splitlines()[0].split(",")
    assert header == ["step", "epoch", "loss", "lr", "img_s", "test_loss"]
    assert a["history"][-1]["test_loss"] > 0
    assert a["config"]["classes"][0] == "T-shirt/top"


def test_bf16_autocast_trains_and_keeps_float32_weights(fashion: Path, tmp_path: Path) -> None:
    assert train(args(fashion, tmp_path / "a", "--steps", "3")) == 0
    assert train(args(fashion, tmp_path / "b", "--steps", "3", "--precision", "bf16")) == 0
    a, b = load(tmp_path / "a" / "checkpoint.pt"), load(tmp_path / "b" / "checkpoint.pt")
    assert all(v.dtype == torch.float32 for v in b["model"].values() if v.is_floating_point())
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    loss = [float((t / "log.csv").read_text().splitlines()[1].split(",")[2]) for t in (
        tmp_path / "a", tmp_path / "b")]  # fmt: skip
    assert loss[1] == pytest.approx(loss[0], rel=0.05)
    assert train(["--out", str(tmp_path / "b"), "--resume", "--steps", "4"]) == 0


def test_bad_options_say_why(fashion: Path, tmp_path: Path, capsys) -> None:
    assert train(args(fashion, tmp_path / "a", "--attention", "5")) == 2
    assert "--attention levels must be 0..1" in capsys.readouterr().err
    assert train(args(fashion, tmp_path / "b", "--widths", "4,8,8,8")) == 2
    assert "cannot be halved" in capsys.readouterr().err
    assert train(args(fashion, tmp_path / "c", "--steps", "2")) == 0
    assert train(["--out", str(tmp_path / "c"), "--resume", "--widths", "8,8"]) == 2
    assert "--widths" in capsys.readouterr().err


def test_ddp_two_processes(fashion: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = torchrun_two(tmp_path, MODULE, "trainer.ema.state_dict()",
                        args(fashion, out, "--steps", "4"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = load(tmp_path / "weights-rank0.pt"), load(tmp_path / "weights-rank1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert not (tmp_path / "saves-rank1.txt").exists()  # rank 0 alone writes
    assert load(out / "checkpoint.pt")["world_size"] == 2


def test_export_checks_onnx_against_torch_and_runs_in_the_plugin(
    fashion: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert train(args(fashion, run, "--steps", "4")) == 0
    folder = tmp_path / "model"
    assert export.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(folder)]) == 0
    card = json.loads((folder / "card.json").read_text())
    assert card["schedule"] == {"kind": "cosine", "steps": 100}
    assert card["onnx_vs_torch_max_abs_diff"] <= 1e-4
    assert card["training"]["weights"] == "EMA" and card["training"]["steps"] == 4
    rebuilt = export.torch_from_onnx(folder / "model.onnx", card["architecture"])
    ema = UNet(**card["architecture"])
    ema.load_state_dict(load(run / "checkpoint.pt")["ema"])
    x, var, label = export.example(card["architecture"], 2, 3)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x, var, label), ema.eval()(x, var, label), atol=1e-5)
    table = export.manifest_table(card, "model")
    assert 'noise_variance = ["batch"]' in table and "timesteps = 100" in table


@pytest.fixture(scope="module")
def exported(fashion: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run (its checkpoint beside) and its exported model folder."""
    root = tmp_path_factory.mktemp("exported")
    assert train(args(fashion, root / "run", "--steps", "4")) == 0
    folder = root / "model"
    assert export.main(["--checkpoint", str(root / "run" / "checkpoint.pt"),
                        "--out", str(folder)]) == 0  # fmt: skip
    return folder


def test_init_fine_tunes_from_an_exported_model_or_a_checkpoint(
    fashion: Path, exported: Path, tmp_path: Path, capsys
) -> None:
    source = load(exported.parent / "run" / "checkpoint.pt")["ema"]
    rest = ["--threads", "1", "--batch", "8", "--timesteps", "100", "--warmup", "2",
            "--sample-steps", "2"]  # fmt: skip
    for init in (exported, exported.parent / "run" / "checkpoint.pt"):
        out = tmp_path / f"ft-{init.name}"
        argv = ["--data", "fashion", "--data-path", str(fashion), "--out", str(out),
                "--init", str(init), "--steps", "1", "--lr", "1e-12", *rest]  # fmt: skip
        assert train(argv) == 0, capsys.readouterr().err
        ck = load(out / "checkpoint.pt")
        assert ck["config"]["widths"] == [4, 8] and ck["config"]["blocks"] == 1  # the source's
        assert ck["config"]["init"]["from"] == str(init.resolve())
        for key, value in source.items():  # both copies start from the source's EMA weights
            assert torch.allclose(ck["model"][key], value, atol=1e-6), key
            assert torch.allclose(ck["ema"][key], value, atol=1e-6), key  # held, not reset
    assert train(["--out", str(tmp_path / "ft-model"), "--resume", "--steps", "2"]) == 0
    card_dir = tmp_path / "ft-card"
    assert export.main(["--checkpoint", str(tmp_path / "ft-model" / "checkpoint.pt"),
                        "--out", str(card_dir)]) == 0  # fmt: skip
    card = json.loads((card_dir / "card.json").read_text())
    assert card["training"]["init"]["training"]["steps"] == 4  # the source's own record


def test_init_refuses_weights_that_do_not_fit(
    fashion: Path, exported: Path, tmp_path: Path, capsys
) -> None:
    from PIL import Image

    colour = tmp_path / "colour" / "only-kind"
    colour.mkdir(parents=True)
    for i in range(8):
        Image.new("RGB", (32, 32), (30 * i, 90, 200)).save(colour / f"{i}.png")
    fash = ["--data", "fashion", "--data-path", str(fashion)]
    cases = {
        (*fash, "--widths", "8,16"): "--widths [8, 16] (the weights have [4, 8])",
        (*fash, "--unconditional"): "conditional on 10 classes, the data has 0",
        ("--data", "folder", "--data-path", str(colour.parent), "--size", "32"): (
            "take 28 px images with 1 channel(s), the data has 32 px with 3 (try --size 28 --grey)"
        ),
        (*fash, "--init", str(tmp_path / "absent")): "no such checkpoint",
        (*fash, "--init", str(tmp_path)): "no card.json and model.onnx there",
    }
    for extra, message in cases.items():
        out = tmp_path / "o"
        init = [] if "--init" in extra else ["--init", str(exported)]
        code = train([*extra, *init, "--out", str(out), "--steps", "1", "--threads", "1"])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (extra, err)
        assert not out.exists()  # nothing written
    assert train(args(fashion, tmp_path / "r", "--steps", "1")) == 0
    code = train(["--out", str(tmp_path / "r"), "--resume", "--init", str(exported)])
    assert code == 2 and "--resume continues one" in capsys.readouterr().err


def test_bench_on_an_exported_model(exported: Path, tmp_path: Path) -> None:
    """`gdl-studio bench diffusion` in the real plugin: ONNX Runtime here, torch eager in a
    process of its own, both on the same weights."""
    import shutil

    from gdl_studio.core.host import call_command

    plugin = copy_plugin(tmp_path, "diffusion")
    shutil.copytree(exported, plugin / "tiny")
    card = json.loads((exported / "card.json").read_text())
    studio = studio_with_models(plugin, export.manifest_table(card, "tiny"))
    out = call_command(studio, "diffusion", "bench", None, repeat=2)
    assert out["torch_timed"] == "in its own process"
    for suffix in ("", "_b16"):
        assert out[f"max_abs_diff{suffix}"] <= 1e-3
        assert out[f"ratio{suffix}"] == pytest.approx(
            out[f"torch_ms{suffix}"] / out[f"ort_ms{suffix}"], rel=0.05
        )
    assert out["ddim50_s"] > 0
