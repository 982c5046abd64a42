"""The GAN plugin's training code: models, the training CLI (bce, WGAN-GP, conditional, resume,
data errors, two-process DDP), the classifier and the ONNX export.

Runs on tiny synthetic data (a folder of PNGs, tiny IDX files) with tiny models, so the whole
module takes well under a minute on two CPU cores.  Skipped without torch (the [train] extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from gdl_studio_plugins.gan.train import export, train_classifier, train_gan  # noqa: E402
from gdl_studio_plugins.gan.train.models import (  # noqa: E402
    Classifier,
    Discriminator,
    Generator,
    minibatch_std,
)
from PIL import Image  # noqa: E402

from gdl_studio.core.runtime import sha256_file  # noqa: E402
from tests.fixtures.images import write_idx  # noqa: E402

from .conftest import (  # noqa: E402
    copy_plugin,
    exit_code,
    load,
    run_python,
    studio_with_models,
    torchrun_two,
    words,
)

# Tiny and single-threaded: fast, and bit-for-bit repeatable (the resume test relies on it).
TINY = words("--width 8 --latent 16 --threads 1 --batch 8")


# ------------------------------------------------------------------------------ test data


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 PNGs in two class folders (dark squares vs light discs), one corrupt PNG and a
    text file."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:20, :20]
    for cls in ("discs", "squares"):
        (root / cls).mkdir()
        for i in range(20):
            img = rng.integers(0, 40, (20, 20, 3)).astype(np.uint8)
            if cls == "squares":
                a, b = rng.integers(2, 8, 2)
                img[a : a + 10, b : b + 10] = (200, 60, 60)
            else:
                cy, cx = rng.integers(7, 13, 2)
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < 25] = (60, 200, 220)
            Image.fromarray(img).save(root / cls / f"{i:02d}.png")
    (root / "squares" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    (root / "discs" / "readme.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST-shaped IDX files: 80 train / 40 test 28x28 images of 10 easy classes."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 80), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 30, (n, 28, 28))
        for i, c in enumerate(labels):  # class c: a bright bar in row band c
            images[i, 2 + 2 * c : 5 + 2 * c, 4:24] = 220
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def train(argv: list[str]) -> int:
    return exit_code(train_gan.main, argv)


def on_folder(folder: Path, options: str = "") -> list[str]:
    """The folder dataset at ``folder``, and more options."""
    return words("--data folder --data-path", folder, options)


# --------------------------------------------------------------------------------- models


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("n_classes", [0, 10])
@pytest.mark.parametrize("arch", ["dcgan", "deep"])
def test_model_shapes_and_ranges(size: int, channels: int, n_classes: int, arch: str) -> None:
    torch.manual_seed(0)
    g = Generator(16, n_classes, channels, size, width=8, arch=arch)
    # deep: 4x4 -> 32 (three doublings) where the size allows, 7x7 -> 28 otherwise.
    assert g.start == (4 if arch == "deep" and size == 32 else size // 4)
    z = torch.randn(5, 16)
    label = torch.arange(5) % 10 if n_classes else None
    x = g(z, label)
    assert x.shape == (5, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    for kw in ({"norm": "batch"}, {"norm": "layer", "dropout": 0.3}, {"norm": "none"}):
        d = Discriminator(
            n_classes=n_classes, channels=channels, size=size, width=8, arch=arch, **kw
        )
        logit, cls = d(x, label)
        assert logit.shape == (5,) and cls is None
    if n_classes:
        ac = Discriminator(n_classes, channels, size, width=8, aux_classifier=True, arch=arch)
        logit, cls = ac(x, label)
        assert logit.shape == (5,) and cls is not None and cls.shape == (5, n_classes)
        # The class head sees the image only: it cannot read the label back.
        other = (label + 1) % n_classes
        assert torch.equal(ac(x, other)[1], cls) and not torch.equal(ac(x, other)[0], logit)
        mb = Discriminator(n_classes, channels, size, width=8, mbstd_group=4, arch=arch)
        assert mb(x, label)[0].shape == (5,)  # 5 is not a multiple of 4: groups shrink
    clf = Classifier(10, channels, size, width=8, feature_dim=24)
    logits, features = clf(x)
    assert logits.shape == (5, 10) and features.shape == (5, 24)


def test_minibatch_std_shows_collapse() -> None:
    same = torch.randn(1, 3, 4, 4).repeat(8, 1, 1, 1)
    out = minibatch_std(same, 4)
    assert out.shape == (8, 4, 4, 4) and out[:, -1].abs().max() < 1e-3
    assert minibatch_std(torch.randn(8, 3, 4, 4), 4)[:, -1].min() > 0.1


def test_deep_architecture_is_deeper_and_checked() -> None:
    shallow, deep = Generator(16, 0, 3, 32, 8), Generator(16, 0, 3, 32, 8, arch="deep")
    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    depth = [sum(isinstance(m, convs) for m in g.modules()) for g in (shallow, deep)]
    assert depth == [2, 4]
    d_depth = [
        sum(isinstance(m, torch.nn.Conv2d) for m in Discriminator(0, 3, 32, 8, arch=a).modules())
        for a in ("dcgan", "deep")
    ]
    assert d_depth == [2, 7]
    with pytest.raises(ValueError, match="unknown architecture"):
        Generator(16, 0, 3, 32, 8, arch="huge")


def test_conditional_generator_needs_a_label() -> None:
    with pytest.raises(ValueError, match="label"):
        Generator(16, 10, width=8)(torch.randn(2, 16))


# ------------------------------------------------------------------------------- training


def test_bce_training_writes_its_files(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = [
        *on_folder(folder, "--size 16"),
        *words("--out", out, "--steps 6 --sample-every 3"),
        *words("--label-smoothing 0.1 --label-noise 0.05 --d-dropout 0.3"),
        *TINY,
    ]
    assert train(argv) == 0
    text = capsys.readouterr().out
    assert "40 images" in text and "2 classes" in text
    assert "skipped 2 unreadable file(s)" in text  # the corrupt PNG and the .txt
    ck = load(out / "checkpoint.pt")
    assert ck["step"] == 6 and ck["config"]["loss"] == "bce"
    assert {"generator", "discriminator", "ema", "opt_g", "opt_d", "rng"} <= set(ck)
    assert ck["config"]["classes"] == ["discs", "squares"]
    assert ck["config"]["command"].endswith(" ".join(argv))
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_0000003.png",
        "step_0000006.png",
    ]
    with Image.open(out / "samples" / "step_0000006.png") as im:
        assert im.mode == "RGB"
    rows = (out / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,d_loss,g_loss") and len(rows) == 3
    assert (out / "losses.png").stat().st_size > 0
    assert not list(out.glob("*.tmp"))
    # A second fresh run would overwrite it: refused.
    assert train(argv) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_wgan_gp_conditional_ac_training(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "wgan"
    argv = [
        *on_folder(folder, "--size 16 --grey"),
        *words("--out", out, "--loss wgan-gp --conditional --aux-weight 0.5 --n-critic 2"),
        *words("--steps 4 --sample-every 2 --ema 0"),
        *TINY,
    ]
    assert train(argv) == 0
    ck = load(out / "checkpoint.pt")
    assert ck["ema"] is None and ck["config"]["d_norm"] == "layer"
    assert ck["config"]["channels"] == 1 and ck["config"]["generator"]["n_classes"] == 2
    header, *rows = (out / "losses.csv").read_text().splitlines()
    gp = header.split(",").index("gp")
    assert all(float(r.split(",")[gp]) >= 0 for r in rows)
    with Image.open(out / "samples" / "step_0000004.png") as im:
        assert im.mode == "L"
        assert im.size == ((10 * 18 + 2) * 2, (2 * 18 + 2) * 2)  # 2 classes x 10, 16 px, x2


def test_wgan_critic_refuses_batch_norm(folder: Path, tmp_path: Path, capsys) -> None:
    argv = [*on_folder(folder), *words("--out", tmp_path / "x", "--loss wgan-gp --d-norm batch")]
    argv += TINY
    assert train(argv) == 2
    assert "batch norm" in capsys.readouterr().err


def test_resume_continues_exactly(folder: Path, tmp_path: Path, capsys) -> None:
    common = [*on_folder(folder, "--size 16 --conditional --aux-weight 1 --sample-every 2"), *TINY]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train([*common, "--out", str(whole), "--steps", "8"]) == 0
    # Paused by --stop-after (exit 0, a checkpoint, the way to go on), then lengthened.
    assert train([*common, "--out", str(split), "--steps", "5", "--stop-after", "3"]) == 0
    assert "stopped at step 3 of 5" in capsys.readouterr().out
    first = load(split / "checkpoint.pt")
    # Crosses an epoch boundary (5 steps per epoch) after resuming mid-epoch.
    assert train(["--out", str(split), "--resume", "--steps", "8"]) == 0
    assert "resuming" in capsys.readouterr().out
    a, b = load(whole / "checkpoint.pt"), load(split / "checkpoint.pt")
    assert b["step"] == 8 > first["step"] == 3
    assert b["config"] == {**first["config"], "steps": 8, "stop_after": None}
    assert len(b["commands"]) == 2 and "--resume" in b["commands"][1]
    for part in ("generator", "discriminator", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resuming"
    steps = [int(r.split(",")[0]) for r in (split / "losses.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 8
    # Nothing left to do, and a training setting may not change.
    assert train(["--out", str(split), "--resume"]) == 0
    assert "already at step 8" in capsys.readouterr().out
    assert train(["--out", str(split), "--resume", "--steps", "9", "--lr", "0.1"]) == 2
    assert "--lr" in capsys.readouterr().err


def test_fashion_idx_at_28px(fashion: Path, tmp_path: Path) -> None:
    out = tmp_path / "fm"
    argv = [*words("--data fashion --data-path", fashion, "--out", out), *TINY]
    argv += words("--epochs 1 --sample-every 100")
    assert train(argv) == 0
    ck = load(out / "checkpoint.pt")
    assert ck["step"] == 10 and ck["epoch"] == 1.0  # 80 images / batch 8
    assert ck["config"]["size"] == 28 and ck["config"]["data_info"]["licence"] == "MIT"


def test_data_errors_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_python(["-m", train_gan.MODULE, *on_folder(empty), *words("--out", tmp_path / "o")])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"train_gan: error: {empty.resolve()}: the folder is empty"
    assert not (tmp_path / "o").exists()


def test_unreadable_and_unlabelled_folders(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not a png")
    assert train([*on_folder(junk), *words("--out", tmp_path / "o")]) == 2
    assert "no readable images (1 skipped)" in capsys.readouterr().err
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(8):
        Image.new("L", (8, 8), i * 20).save(flat / f"{i}.png")
    argv = [*on_folder(flat, "--conditional"), *words("--out", tmp_path / "p"), *TINY]
    assert train(argv) == 2
    assert "--conditional needs labelled data" in capsys.readouterr().err


def test_ddp_two_processes(folder: Path, tmp_path: Path) -> None:
    """torchrun with two gloo processes: rank 0 alone writes, and both ranks end with the
    same generator."""
    out = tmp_path / "ddp"
    argv = [*on_folder(folder, "--size 16 --conditional --steps 6 --sample-every 3"), *TINY]
    weights = '{"G": trainer.G.state_dict(), "ema": trainer.ema.state_dict()}'
    r = torchrun_two(tmp_path, train_gan.__name__, weights, [*argv, "--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stdout and r.stdout.count("done: step 6/6") == 1
    # 40 images, 2 ranks x 4 per rank: 5 steps per epoch -> saved at steps 5 and 6, by rank 0.
    saves = (tmp_path / "saves-rank0.txt").read_text().splitlines()
    assert saves == [str(out / "checkpoint.pt")] * 2
    assert not (tmp_path / "saves-rank1.txt").exists()
    ck = load(out / "checkpoint.pt")
    assert ck["step"] == 6 and ck["world_size"] == 2 and len(ck["rng"]) == 2
    w0, w1 = load(tmp_path / "weights-rank0.pt"), load(tmp_path / "weights-rank1.pt")
    for part in ("G", "ema"):
        for key, value in w0[part].items():
            assert torch.equal(value, w1[part][key]), f"{part}.{key} differs between ranks"
    for key, value in w0["G"].items():
        assert torch.equal(value, ck["generator"][key])


# --------------------------------------------------------------------------- classifier


def test_classifier_training_and_export(fashion: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "clf"
    argv = words("--data fashion --data-path", fashion, "--out", run)
    argv += words("--epochs 2 --batch 16 --width 8 --threads 1")
    assert train_classifier.main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    ck = load(run / "classifier.pt")
    assert 0.0 <= ck["test_accuracy"] <= 1.0 and ck["config"]["classes"][0] == "T-shirt/top"

    onnx_path = tmp_path / "assets" / "eval" / "fashion-classifier" / "model.onnx"
    assert (
        export.main(
            ["classifier", "--checkpoint", str(run / "classifier.pt"), "--out", str(onnx_path)]
        )
        == 0
    )
    card = json.loads((onnx_path.parent / "card.json").read_text())
    assert card["model"] == "fashion-classifier" and card["kind"] == "classifier"
    assert card["sha256"] == sha256_file(onnx_path)
    assert card["sha256"] in capsys.readouterr().out
    assert card["onnx_vs_torch_max_abs_diff"] <= 1e-4
    assert card["data"]["source"] == "Debian package dataset-fashion-mnist"
    assert card["test_accuracy"] == round(ck["test_accuracy"], 4)
    assert not list(onnx_path.parent.glob("*.data"))  # one self-contained file
    import onnxruntime as ort

    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["image"]
    assert [o.name for o in s.get_outputs()] == ["logits", "features"]
    logits, features = s.run(None, {"image": np.zeros((2, 1, 28, 28), np.float32)})
    assert logits.shape == (2, 10) and features.shape == (2, 128)


# ------------------------------------------------------------------------------- export


@pytest.mark.parametrize("conditional", [True, False])
def test_generator_export(folder: Path, fashion: Path, tmp_path: Path, conditional: bool) -> None:
    run = tmp_path / "run"
    data = (
        on_folder(folder, "--size 16 --conditional --arch deep")
        if conditional
        else words("--data fashion --data-path", fashion)
    )
    assert train([*data, "--out", str(run), "--steps", "3", *TINY]) == 0
    onnx_path = tmp_path / "assets" / "gan" / "my-gan" / "model.onnx"
    card = export.export_generator(run / "checkpoint.pt", onnx_path)
    assert card == json.loads((onnx_path.parent / "card.json").read_text())
    assert card["model"] == "my-gan" and card["kind"] == "generator"
    for key in (
        "architecture",
        "data",
        "classes",
        "training",
        "onnx_vs_torch_max_abs_diff",
        "sha256",
        "metrics",
    ):
        assert key in card
    assert card["sha256"] == sha256_file(onnx_path)
    assert card["training"]["steps"] == 3 and card["training"]["command"].startswith("python -m")
    assert card["onnx_vs_torch_max_abs_diff"] <= 1e-4
    assert card["classes"] == (["discs", "squares"] if conditional else [])
    assert card["architecture"]["arch"] == ("deep" if conditional else "dcgan")
    size, ch = (16, 3) if conditional else (28, 1)

    import onnxruntime as ort

    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in s.get_inputs()}
    assert inputs["z"] == ("tensor(float)", ["batch", 16])
    assert (inputs.get("label") == ("tensor(int64)", ["batch"])) == conditional
    assert s.get_outputs()[0].name == "image"
    assert s.get_outputs()[0].shape == ["batch", ch, size, size]

    # The same generator rebuilt in torch from the ONNX file alone matches ONNX Runtime.
    gen = export.torch_generator_from_onnx(onnx_path, card)
    rng = np.random.default_rng(3)
    feeds = {"z": rng.standard_normal((11, 16)).astype(np.float32)}
    if conditional:
        feeds["label"] = (np.arange(11) % 2).astype(np.int64)
    (ort_out,) = s.run(["image"], feeds)
    with torch.no_grad():
        torch_out = gen(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    assert ort_out.shape == (11, ch, size, size)
    assert np.abs(ort_out - torch_out).max() <= 1e-5
    # It uses the EMA weights, as the export did.
    ema = load(run / "checkpoint.pt")["ema"]
    assert torch.equal(gen.state_dict()["fc.weight"], ema["fc.weight"])

    # `gdl-studio bench gan` in the real plugin: ONNX Runtime here, torch in its own process.
    from gdl_studio.core.host import call_command

    plugin = copy_plugin(tmp_path, "gan")
    shutil.copytree(onnx_path.parent, plugin / "my-gan")
    label = 'label = ["batch"]\n' if conditional else ""
    table = (
        f'[[models]]\nid = "my-gan"\nname = "tiny"\nfile = "my-gan/model.onnx"\n'
        f'sha256 = "{card["sha256"]}"\ncard = "my-gan/card.json"\ndefault = true\n'
        f'[models.inputs]\nz = ["batch", 16]\n{label}[models.outputs]\n'
        f'image = ["batch", {ch}, {size}, {size}]\n[models.extras]\n'
        f"classes = {json.dumps(card['classes'])}\nsize = {size}\n"
    )
    out = call_command(studio_with_models(plugin, table), "gan", "bench", None, repeat=2)
    assert out["torch_timed"] == "in its own process"
    for suffix in ("", "_b64"):
        assert out[f"max_abs_diff{suffix}"] <= 1e-3 and out[f"ratio{suffix}"] > 0
