"""The VAE plugin's training code: the networks and the loss, the training CLI (files, resume,
data errors, two-process DDP), the two-graph ONNX export with its projection and card, and
`gdl-studio bench vae` on an exported model.

Runs on tiny synthetic data (a folder of PGM "faces", tiny IDX files) with tiny models, so the
module takes well under a minute on two CPU cores.  Skipped without torch (the [train] extra).
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

from gdl_studio_plugins.vae.train import export, train_vae  # noqa: E402
from gdl_studio_plugins.vae.train.models import (  # noqa: E402
    VAE,
    discretized_logistic_nll,
    halvings,
    kl_divergence,
)
from PIL import Image  # noqa: E402

from tests.fixtures.images import write_idx  # noqa: E402
from tests.train.conftest import (  # noqa: E402
    copy_plugin,
    exit_code,
    load,
    run_python,
    studio_with_models,
    torchrun_two,
)

TINY = ["--width", "4", "--threads", "1", "--batch", "8", "--log-every", "2"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 "people" x 10 grey PGM photos of 20x24 px (a blob whose place depends on the
    person), plus an unreadable file: an ORL-shaped folder."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :20]
    for p in range(4):
        (root / f"s{p + 1}").mkdir()
        for k in range(10):
            img = rng.integers(0, 50, (24, 20))
            cy, cx = 6 + 3 * p + rng.integers(-1, 2), 10 + rng.integers(-2, 3)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 20] = 220
            Image.fromarray(img.astype(np.uint8)).save(root / f"s{p + 1}" / f"{k + 1}.pgm")
    (root / "s1" / "broken.pgm").write_bytes(b"P5 not really")
    return root


@pytest.fixture(scope="module")
def fashion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 64), ("t10k", 24)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 30, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 5 + 2 * c, 4:24] = 220
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def train(argv: list[str]) -> int:
    return exit_code(train_vae.main, argv)


def face_args(faces: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", "faces", "--data-path", str(faces), "--size", "16", "--latent", "3",
            "--out", str(out), *TINY, *extra]  # fmt: skip


# --------------------------------------------------------------------------------- models


@pytest.mark.parametrize(("size", "n"), [(28, 2), (64, 4), (16, 2), (32, 3)])
def test_shapes_for_each_size(size: int, n: int) -> None:
    assert halvings(size) == n
    model = VAE(latent_dim=5, channels=1, size=size, width=4)
    out = model(torch.rand(3, 1, size, size) * 2 - 1)
    assert out["mean"].shape == out["logvar"].shape == out["z"].shape == (3, 5)
    assert out["loc"].shape == out["log_scale"].shape == (3, 1, size, size)
    with pytest.raises(ValueError):
        halvings(7)


def test_discretized_logistic_sums_to_one_and_kl_is_zero_at_the_prior() -> None:
    levels = (torch.arange(256, dtype=torch.float64) / 127.5 - 1).view(256, 1)
    for loc, log_scale in ((0.0, -2.0), (-1.3, -6.0), (0.99, -4.0)):
        nll = discretized_logistic_nll(
            levels, torch.full_like(levels, loc), torch.full_like(levels, log_scale)
        )
        assert torch.exp(-nll).sum().item() == pytest.approx(1.0, abs=1e-6)
    assert kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max() == 0
    assert (kl_divergence(torch.ones(2, 4), torch.zeros(2, 4)) == 2.0).all()


def test_numpy_and_torch_likelihoods_agree() -> None:
    from gdl_studio_plugins.vae.evaluate import discretized_logistic_nll as np_nll

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 1, 6, 6), generator=g).double() / 127.5 - 1
    loc = torch.randn(4, 1, 6, 6, generator=g, dtype=torch.float64) * 0.5
    ls = torch.rand(4, 1, 6, 6, generator=g, dtype=torch.float64) * -6
    ref = discretized_logistic_nll(x, loc, ls).numpy()
    assert np.allclose(np_nll(x.numpy(), loc.numpy(), ls.numpy()), ref, rtol=1e-9)


# ------------------------------------------------------------------------------- training


def test_training_writes_its_files_and_learns(faces: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = face_args(faces, out, "--steps", "12", "--flip", "--kl-warmup", "4")
    assert train(argv) == 0
    text = capsys.readouterr().out
    assert "32 train / 8 test images, 16x16x1" in text  # every 5th photo of a person held out
    assert "1 unreadable file(s) skipped" in text
    ck = load(out / "checkpoint.pt")
    assert ck["step"] == 12 and ck["config"]["command"].endswith(" ".join(argv))
    assert ck["config"]["data_info"]["name"].startswith("ORL")
    assert len(ck["history"]) == 3  # an epoch is 4 steps: scored at 4, 8 and 12
    names = sorted(p.name for p in (out / "samples").iterdir())
    assert "step_0000012_recon.png" in names and "step_0000012_samples.png" in names
    rows = (out / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:6] == ["step", "epoch", "loss", "recon_nll", "kl", "neg_elbo"]
    beta = [float(r.split(",")[header.index("beta")]) for r in rows[1:] if r.split(",")[6]]
    assert beta[0] < 1.0 and beta[-1] == 1.0  # the KL warm-up
    first = float(rows[1].split(",")[header.index("recon_nll")])
    last = [r for r in rows if r.split(",")[header.index("recon_nll")]][-1]
    assert float(last.split(",")[header.index("recon_nll")]) < first
    assert not list(out.rglob("*.tmp"))
    assert train(argv) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_fashion_2d_writes_the_latent_map(fashion: Path, tmp_path: Path) -> None:
    out = tmp_path / "fm"
    argv = ["--data", "fashion", "--data-path", str(fashion), "--out", str(out), "--epochs", "1",
            *TINY]  # fmt: skip
    assert train(argv) == 0
    ck = load(out / "checkpoint.pt")
    assert ck["step"] == 8 and ck["config"]["size"] == 28 and ck["config"]["latent"] == 2
    with Image.open(out / "samples" / "step_0000008_map.png") as im:
        assert im.size == (15 * 28 * 2, 15 * 28 * 2)


def test_resume_continues_exactly(faces: Path, tmp_path: Path, capsys) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train(face_args(faces, whole, "--steps", "10", "--flip")) == 0
    # Stopped mid-epoch, with the same schedule (the learning rate follows the run length).
    assert train(face_args(faces, split, "--steps", "10", "--stop-after", "5", "--flip")) == 0
    assert load(split / "checkpoint.pt")["step"] == 5
    capsys.readouterr()
    assert train(["--out", str(split), "--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    a, b = load(whole / "checkpoint.pt"), load(split / "checkpoint.pt")
    assert b["step"] == 10 and len(b["commands"]) == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), f"{key} differs after resuming"
    steps = [int(r.split(",")[0]) for r in (split / "log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and steps[-1] == 10
    assert train(["--out", str(split), "--resume", "--steps", "11", "--beta", "4"]) == 2
    assert "--beta" in capsys.readouterr().err


def test_data_errors_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_python(["-m", train_vae.MODULE, "--data", "faces", "--data-path", str(empty),
                    "--out", str(tmp_path / "o")])  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip().splitlines()[-1]
        == f"train_vae: error: {empty.resolve()}: the folder is empty"
    )
    assert train(["--data", "faces", "--out", str(tmp_path / "p")]) == 2
    assert train(["--data", "fashion", "--size", "32", "--out", str(tmp_path / "q")]) == 2


def test_ddp_two_processes(faces: Path, tmp_path: Path) -> None:
    """torchrun with two gloo processes: rank 0 alone writes, and both ranks end with the
    same weights, which are the checkpoint's."""
    out = tmp_path / "ddp"
    r = torchrun_two(
        tmp_path,
        "gdl_studio_plugins.vae.train.train_vae",
        "trainer.model.state_dict()",
        face_args(faces, out, "--steps", "6"),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stdout and r.stdout.count("done: step 6/6") == 1
    # 32 images, batch 8 (4 per rank): 4 steps per epoch -> saved at steps 4 and 6, by rank 0.
    assert (tmp_path / "saves-rank0.txt").read_text().splitlines() == [
        str(out / "checkpoint.pt")
    ] * 2
    assert not (tmp_path / "saves-rank1.txt").exists()
    ck = load(out / "checkpoint.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2
    w0, w1 = load(tmp_path / "weights-rank0.pt"), load(tmp_path / "weights-rank1.pt")
    for key, value in w0.items():
        assert torch.equal(value, w1[key]) and torch.equal(value, ck["model"][key]), key


# ------------------------------------------------------------------------------- export


def test_export_two_graphs_with_projection_card_and_table(
    faces: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    assert train(face_args(faces, run, "--steps", "4")) == 0
    folder = tmp_path / "assets" / "vae" / "my-faces"
    assert export.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(folder)]) == 0
    printed = capsys.readouterr().out
    card = json.loads((folder / "card.json").read_text())
    assert card["model"] == "my-faces" and card["kind"] == "vae"
    assert card["files"]["encoder.onnx"] == export.sha256_file(folder / "encoder.onnx")
    assert card["sha256"] == "+".join(card["files"][f] for f in ("decoder.onnx", "encoder.onnx"))
    assert max(card["onnx_vs_torch_max_abs_diff"].values()) <= 1e-4
    assert card["training"]["steps"] == 4 and card["data"]["name"].startswith("ORL")
    proj = card["projection"]
    axes = np.array(proj["axes"])
    assert axes.shape == (2, 3) and np.allclose(axes @ axes.T, np.eye(2), atol=1e-5)
    assert not list(folder.glob("*.data")) and not list(folder.glob("*.tmp"))
    # The printed table is valid TOML that the manifest reader accepts.
    table = tomllib.loads(printed.split("# plugin.toml:\n", 1)[1])
    from gdl_studio.core.manifest import _model

    spec = _model(table["models"][0], 0)
    assert set(spec.graphs) == {"encoder", "decoder"} and spec.sha256 == card["sha256"]
    assert spec.extras["projection"]["scale"] == proj["scale"]
    import onnxruntime as ort

    enc = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in enc.get_outputs()] == ["mean", "logvar"]
    assert [o.name for o in dec.get_outputs()] == ["image", "log_scale"]
    z = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    image, _ = dec.run(None, {"z": z})
    rebuilt = export.torch_decoder_from_onnx(folder / "decoder.onnx", card["architecture"])
    with torch.no_grad():
        assert np.abs(rebuilt(torch.from_numpy(z))[0].numpy() - image).max() <= 1e-5
    # Exporting the same checkpoint again keeps what was measured on the same files.
    card["metrics"] = {"elbo_nats": 1.0}
    (folder / "card.json").write_text(json.dumps(card))
    export.export(run / "checkpoint.pt", folder)
    assert json.loads((folder / "card.json").read_text())["metrics"] == {"elbo_nats": 1.0}


def test_bench_and_eval_on_an_exported_model(fashion: Path, tmp_path: Path, capsys) -> None:
    """The exported graphs in the real plugin: bench (ONNX Runtime vs torch) and eval."""
    from gdl_studio.core.host import call_command

    run = tmp_path / "run"
    assert train(["--data", "fashion", "--data-path", str(fashion), "--out", str(run),
                  "--steps", "3", *TINY]) == 0  # fmt: skip
    plugin = copy_plugin(tmp_path, "vae")
    export.main(["--checkpoint", str(run / "checkpoint.pt"), "--out", str(plugin / "fm")])
    table = capsys.readouterr().out.split("# plugin.toml:\n", 1)[1]
    proj = json.loads((plugin / "fm" / "card.json").read_text())["projection"]
    assert proj["axes"] == [[1.0, 0.0], [0.0, 1.0]]  # a 2-D map keeps the latent's own axes
    assert min(proj["scale"]) > 0 and "[models.extras.projection]" in table
    studio = studio_with_models(plugin, table)
    out = call_command(studio, "vae", "bench", None, repeat=3)
    assert out["decode_ms"] > 0 and out["ratio"] > 0 and out["max_abs_diff"] <= 1e-3
    assert out["torch_timed"] == "in its own process"
    assert out["decode_ms_map"] > 0 and out["encode_ms"] > 0
    from tests.fixtures.images import classifier_onnx

    clf = classifier_onnx(tmp_path / "clf")
    ev = call_command(studio, "vae", "eval", None, data=fashion, samples=20, classifier=clf)
    assert ev["test_images"] == 24 and ev["elbo_nats"] > 0 and ev["fd"] >= 0
    assert ev["fd_fitted"] >= 0  # samples from the Gaussian the 2-D map is framed on


# --------------------------------------------------------------------------------- --init


@pytest.fixture(scope="module")
def exported(fashion: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Fashion run (its checkpoint beside) and its exported model folder."""
    root = tmp_path_factory.mktemp("exported")
    assert train(["--data", "fashion", "--data-path", str(fashion), "--out", str(root / "run"),
                  "--steps", "3", *TINY]) == 0  # fmt: skip
    assert export.main(["--checkpoint", str(root / "run" / "checkpoint.pt"),
                        "--out", str(root / "model")]) == 0  # fmt: skip
    return root / "model"


def test_init_fine_tunes_from_an_exported_model_or_a_checkpoint(
    fashion: Path, exported: Path, tmp_path: Path, capsys
) -> None:
    source = load(exported.parent / "run" / "checkpoint.pt")["model"]
    for init in (exported, exported.parent / "run" / "checkpoint.pt"):
        out = tmp_path / f"ft-{init.name}"
        argv = ["--data", "fashion", "--data-path", str(fashion), "--out", str(out),
                "--init", str(init), "--steps", "1", "--lr", "1e-12", "--threads", "1",
                "--batch", "8"]  # fmt: skip
        assert train(argv) == 0, capsys.readouterr().err
        ck = load(out / "checkpoint.pt")
        assert (ck["config"]["width"], ck["config"]["latent"]) == (4, 2)  # the source's layout
        assert ck["config"]["init"]["from"] == str(init.resolve())
        for key, value in source.items():  # encoder and decoder: one step at lr 1e-12
            assert torch.allclose(ck["model"][key], value, atol=1e-6), key
    assert train(["--out", str(tmp_path / "ft-model"), "--resume", "--steps", "2"]) == 0
    assert export.main(["--checkpoint", str(tmp_path / "ft-model" / "checkpoint.pt"),
                        "--out", str(tmp_path / "card")]) == 0  # fmt: skip
    card = json.loads((tmp_path / "card" / "card.json").read_text())
    assert card["training"]["init"]["training"]["steps"] == 3  # the source's own record


def test_init_refuses_weights_that_do_not_fit(
    fashion: Path, faces: Path, exported: Path, tmp_path: Path, capsys
) -> None:
    colour = tmp_path / "colour"
    colour.mkdir()
    for i in range(12):
        Image.new("RGB", (28, 28), (20 * i, 90, 200)).save(colour / f"{i}.png")
    fash = ["--data", "fashion", "--data-path", str(fashion)]
    cases = {
        (*fash, "--latent", "8"): "--latent 8 (the weights have 2)",
        ("--data", "faces", "--data-path", str(faces), "--size", "64"): "--size 64 (the weights",
        ("--data", "folder", "--data-path", str(colour)): "1 channel(s), the data has 3",
        (*fash, "--init", str(tmp_path / "absent")): "no such checkpoint",
        (*fash, "--init", str(tmp_path)): "no card.json and encoder.onnx there",
    }
    for extra, message in cases.items():
        out = tmp_path / "o"
        init = [] if "--init" in extra else ["--init", str(exported)]
        code = train([*extra, *init, "--out", str(out), "--steps", "1", *TINY])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (extra, err)
        assert not out.exists()  # nothing written
    assert train([*fash, "--out", str(tmp_path / "r"), "--steps", "1", *TINY]) == 0
    code = train(["--out", str(tmp_path / "r"), "--resume", "--init", str(exported)])
    assert code == 2 and "--resume continues one" in capsys.readouterr().err
