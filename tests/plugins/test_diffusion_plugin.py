"""The diffusion plugin: schedules and samplers against a denoiser whose answer is known, and
the plugin end to end (generate, classes and guidance, previews and cancel, image-to-image,
inpainting, interpolation, bad input, eval) on a tiny ONNX graph of that denoiser.

The known denoiser: if every image of class k is mu_k + s * N(0, I), the noisy image at noise
variance v is Gaussian too and the best noise prediction is exact,
    E[eps | x] = sqrt(v) (x - sqrt(1 - v) mu_k) / ((1 - v) s^2 + v),
so a correct sampler must turn noise into images with mean mu_k and spread s.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gdl_studio_plugins.diffusion import samplers
from gdl_studio_plugins.diffusion.schedule import from_config
from PIL import Image

from gdl_studio.cli import main
from gdl_studio.core.host import JobError, Studio, call_command, prepare_job, run_job
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.results import Preview, read_provenance
from tests.fixtures.images import classifier_onnx

ROOT = Path(__file__).resolve().parents[2]
SIDE = 28
SPREAD = 0.15
CLASSES = ["left", "middle", "right"]


def class_means() -> np.ndarray:
    """(classes + 1, 1, 28, 28) in [-1, 1]: a bar on the left, in the middle, on the right;
    the last ("no class") is their average."""
    mu = np.full((4, 1, SIDE, SIDE), -0.5)
    for k, (a, b) in enumerate(((2, 9), (10, 18), (19, 26))):
        mu[k, 0, 4:24, a:b] = 0.5
    mu[3] = mu[:3].mean(0)
    return mu.astype(np.float32)


def gaussian_eps(mu: np.ndarray, s: float = SPREAD):
    def eps(x: np.ndarray, v: np.ndarray) -> np.ndarray:
        v = v.reshape(-1, *([1] * (x.ndim - 1))).astype(np.float64)
        return np.sqrt(v) * (x - np.sqrt(1 - v) * mu) / ((1 - v) * s**2 + v)

    return eps


def denoiser_onnx(path: Path) -> str:
    """The known denoiser as an ONNX graph with the real names: x, noise_variance, label."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h = helper.make_node
    nodes = [
        h("Reshape", ["noise_variance", "shape4"], ["v"]),
        h("Gather", ["MU", "label"], ["mu"], axis=0),
        h("Sub", ["one", "v"], ["ab"]),
        h("Sqrt", ["ab"], ["signal"]),
        h("Sqrt", ["v"], ["noise_rate"]),
        h("Mul", ["signal", "mu"], ["mean"]),
        h("Sub", ["x", "mean"], ["centred"]),
        h("Mul", ["noise_rate", "centred"], ["num"]),
        h("Mul", ["ab", "S2"], ["ab_s2"]),
        h("Add", ["ab_s2", "v"], ["den"]),
        h("Div", ["num", "den"], ["noise"]),
    ]
    image = ["batch", 1, SIDE, SIDE]
    graph = helper.make_graph(
        nodes, "known_denoiser",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, image),
         helper.make_tensor_value_info("noise_variance", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("noise", TensorProto.FLOAT, image)],
        [numpy_helper.from_array(class_means(), "MU"),
         numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "shape4"),
         numpy_helper.from_array(np.array(1.0, np.float32), "one"),
         numpy_helper.from_array(np.array(SPREAD**2, np.float32), "S2")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    """The real plugin code and manifest with the known denoiser as its default model."""
    folder = tmp_path / "plugins" / "diffusion"
    shutil.copytree(ROOT / "plugins" / "diffusion", folder,
                    ignore=shutil.ignore_patterns("train", "__pycache__"))  # fmt: skip
    sha = denoiser_onnx(folder / "known.onnx")
    manifest = (ROOT / "plugins" / "diffusion" / "plugin.toml").read_text()
    manifest = (
        manifest.split("[[models]]")[0].rstrip()
        + f"""

[[models]]
id = "known"
file = "known.onnx"
sha256 = "{sha}"
default = true
[models.inputs]
x = ["batch", 1, {SIDE}, {SIDE}]
noise_variance = ["batch"]
label = ["batch"]
[models.outputs]
noise = ["batch", 1, {SIDE}, {SIDE}]
[models.extras]
classes = {json.dumps(CLASSES)}
dataset = "fashion"
size = {SIDE}
schedule = "cosine"
timesteps = 1000
"""
    )
    (folder / "plugin.toml").write_text(manifest)
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[tmp_path / "plugins"])  # fmt: skip
    assert studio.registry.get("diffusion").ok, studio.registry.get("diffusion").state
    return studio


def run(studio: Studio, state: TaskState | None = None, **params):
    return run_job(prepare_job(studio, "diffusion", params=params), state)


def arr(im: Image.Image) -> np.ndarray:
    """uint8 image -> float in [-1, 1], as the model sees it."""
    return np.asarray(im, np.float64) / 127.5 - 1.0


# ------------------------------------------------------------------- schedule and samplers


@pytest.mark.parametrize("kind", ["cosine", "offset-cosine", "linear"])
def test_schedules_lose_signal_from_clean_to_noise(kind: str) -> None:
    s = from_config({"kind": kind, "steps": 1000})
    assert s.steps == 1000 and s.alpha_bar[0] == 1.0
    assert np.all(np.diff(s.alpha_bar) < 0)
    assert s.alpha_bar[-1] < 0.01
    signal, noise = s.rates(500)
    assert signal**2 + noise**2 == pytest.approx(1.0)
    assert from_config(s.config).alpha_bar.tolist() == s.alpha_bar.tolist()


def test_bad_schedules_and_samplers_say_why() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        from_config({"kind": "square"})
    with pytest.raises(ValueError, match="at least 1 step"):
        from_config({"kind": "cosine", "steps": 0})
    with pytest.raises(ValueError, match="eta"):
        samplers.from_config({"kind": "ddim", "eta": 2})
    with pytest.raises(ValueError, match="unknown sampler"):
        samplers.from_config({"kind": "euler"})


@pytest.mark.parametrize("steps", [1, 2, 7, 50, 999, 1000, 5000])
def test_any_step_count_is_an_even_subset_of_the_training_steps(steps: int) -> None:
    ts = samplers.timesteps(steps, 1000)
    assert ts[0] == 1000 and ts[-1] == 0
    assert len(ts) == min(steps, 1000) + 1
    assert all(a > b for a, b in itertools.pairwise(ts))
    assert samplers.timesteps(50, 300)[0] == 300  # image-to-image starts part-way


@pytest.mark.parametrize(
    "config",
    [{"kind": "ddim", "steps": 250}, {"kind": "ddpm", "steps": 1000},
     {"kind": "ddpm", "steps": 1000, "variance": "beta"}],
)  # fmt: skip
def test_samplers_turn_noise_into_the_data_distribution(config: dict) -> None:
    mu = np.linspace(-0.3, 0.3, 16)
    sampler = samplers.from_config(config)
    rng = np.random.default_rng(0)
    schedule = from_config({"kind": "cosine", "steps": 1000})
    *_, (out, _) = sampler.run(gaussian_eps(mu), schedule, rng.standard_normal((4000, 16)), rng)
    assert np.abs(out.mean(0) - mu).max() < 0.015
    assert out.std(0).mean() == pytest.approx(SPREAD, rel=0.05)


def test_one_ddim_step_gives_the_mean_and_a_wrong_denoiser_is_caught() -> None:
    mu = np.linspace(-0.3, 0.3, 16)
    schedule = from_config({"kind": "cosine", "steps": 1000})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 16))
    *_, (one, _) = samplers.from_config({"kind": "ddim", "steps": 1}).run(
        gaussian_eps(mu), schedule, x, rng
    )
    assert np.abs(one - mu).max() < 1e-3  # E[x0 | pure noise]: the mean
    wrong = gaussian_eps(-mu)
    *_, (bad, _) = samplers.from_config({"kind": "ddim", "steps": 50}).run(wrong, schedule, x, rng)
    assert np.abs(bad.mean(0) - mu).max() > 0.3


def test_inpainting_keeps_the_known_pixels_and_fills_the_rest() -> None:
    mu = np.zeros(16)
    known = np.full((8, 16), 0.7)
    mask = (np.arange(16) >= 8).astype(float)  # generate the second half
    schedule = from_config({"kind": "cosine", "steps": 1000})
    rng = np.random.default_rng(2)
    inpaint = samplers.Inpaint(known, mask, resample=3)
    sampler = samplers.from_config({"kind": "ddim", "steps": 20})
    steps = list(sampler.run(gaussian_eps(mu), schedule, rng.standard_normal((8, 16)), rng,
                             inpaint=inpaint))  # fmt: skip
    out = steps[-1][0]
    assert len(steps) == 20
    assert np.allclose(out[:, :8], 0.7)
    assert np.abs(out[:, 8:].mean()) < 0.1  # the model's own (mean 0) images there


# --------------------------------------------------------------------------- the plugin


def test_generate_is_deterministic_and_image_i_is_seed_plus_i(studio: Studio) -> None:
    a = run(studio, seed=10, batch=4, steps=20, sampler="ddpm")
    b = run(studio, seed=10, batch=4, steps=20, sampler="ddpm")
    alone = run(studio, seed=12, batch=1, steps=20, sampler="ddpm")
    assert [im.size for im in a.result.images] == [(SIDE, SIDE)] * 4
    for x, y in zip(a.result.images, b.result.images, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert np.array_equal(np.asarray(a.result.images[2]), np.asarray(alone.result.images[0]))
    assert a.provenance.extra["seeds"] == [10, 11, 12, 13]


def test_classes_guidance_and_one_of_each(studio: Studio) -> None:
    mu = class_means()[:, 0]
    grid = run(studio, seed=1, batch=6, steps=25, label="one of each")
    assert grid.provenance.extra["labels"] == CLASSES * 2 and grid.result.columns == 3
    for i, im in enumerate(grid.result.images):
        errors = [np.abs(arr(im) - m).mean() for m in mu[:3]]
        assert int(np.argmin(errors)) == i % 3
    right = run(studio, seed=1, batch=8, steps=200, label="right")
    images = np.stack([arr(im) for im in right.result.images])
    assert np.abs(images.mean(0) - mu[2]).mean() < 0.08
    assert images.std(0, ddof=1).mean() == pytest.approx(SPREAD, rel=0.15)
    ignored = run(studio, seed=1, batch=8, steps=25, label="right", guidance=0.0)
    mean0 = np.stack([arr(im) for im in ignored.result.images]).mean(0)
    assert np.abs(mean0 - mu[3]).mean() < 0.08  # guidance 0: the "no class" model
    with pytest.raises(JobError, match="not one of"):
        prepare_job(studio, "diffusion", params={"label": "up"})


def test_a_preview_every_step_and_cancel_keeps_the_images(studio: Studio) -> None:
    seen: list[Preview] = []
    run(studio, TaskState(on_preview=seen.append), seed=3, batch=2, steps=12)
    assert len(seen) == 12 and len(seen[0].images) == 2

    def on_preview(p: Preview) -> None:
        seen.append(p)
        if len(seen) == 5:
            state.cancel()

    seen.clear()
    state = TaskState(on_preview=on_preview)
    out = run(studio, state, seed=3, batch=2, steps=40, preview="prediction")
    assert out.result.extra["stopped"] == "cancelled"
    assert len(out.result.images) == 2
    noisy = np.stack([arr(im) for im in out.result.images])
    assert noisy.std() > 0.3  # still part noise: stopped early, not finished


def test_img2img_keeps_the_picture_at_low_strength(studio: Studio, tmp_path: Path) -> None:
    # The picture: the "right" bar (wider than tall: img2img takes its centre square).
    mu = class_means()[:, 0]
    square = ((mu[2] + 1) * 127.5).round().astype(np.uint8)
    picture = np.pad(square, ((0, 0), (10, 10)), constant_values=square[0, 0])
    src = tmp_path / "pic.png"
    Image.fromarray(picture).save(src)
    # eta 0: this denoiser's data are so narrow (spread 0.15) that fresh noise at every step
    # would carry even a lightly noised picture back into them.
    low = run(studio, mode="img2img", image=str(src), strength=0.1, batch=2, label="left", eta=0.0)
    high = run(studio, mode="img2img", image=str(src), strength=1.0, batch=2, label="left", eta=0.0)

    def bars(im: Image.Image) -> tuple[float, float]:
        """Mean brightness where the left bar and where the right bar would be."""
        a = arr(im)
        return float(a[4:24, 2:9].mean()), float(a[4:24, 19:26].mean())

    for a, b in zip(low.result.images, high.result.images, strict=True):
        # Asked for "left": a light touch keeps the right bar, full strength draws a left one.
        left, right = bars(a)
        assert right > left + 0.15
        left, right = bars(b)
        assert left > right + 0.6
    assert low.provenance.extra["strength"] == 0.1
    assert high.provenance.extra["steps"] == 50


def test_inpaint_repaints_only_the_mask(studio: Studio, tmp_path: Path) -> None:
    picture = np.full((56, 56), 200, np.uint8)
    src = tmp_path / "pic.png"
    Image.fromarray(picture).save(src)
    mask = np.zeros((56, 56), np.uint8)
    mask[:, 28:] = 255  # repaint the right half
    mask_file = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_file)
    out = run(studio, mode="inpaint", image=str(src), mask=str(mask_file), batch=2, steps=20,
              label="left", resample=2)  # fmt: skip
    for im in out.result.images:
        a = np.asarray(im, np.int16)
        assert np.abs(a[:, :13] - 200).max() <= 1  # kept
        assert np.abs(a[:, 16:] - 200).mean() > 40  # repainted towards the class
    # Without a picture: the image generate made for the seed is repainted.
    made = run(studio, batch=1, steps=20, seed=9, sampler="ddpm").result.images[0]
    seeded = run(studio, mode="inpaint", mask=str(mask_file), batch=1, steps=20, seed=9,
                 sampler="ddpm")  # fmt: skip
    assert any("sample of seed 9" in n for n in seeded.notices)
    kept = np.asarray(seeded.result.images[0], np.int16)[:, :13]
    assert np.abs(kept - np.asarray(made, np.int16)[:, :13]).max() <= 1


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_input_is_refused_with_a_clear_message(studio: Studio, tmp_path: Path) -> None:
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"this is not a png")
    with pytest.raises(JobError, match="not an image"):
        prepare_job(studio, "diffusion", params={"mode": "img2img", "image": str(fake)})
    bomb = tmp_path / "bomb.png"
    Image.new("L", (12_000, 12_000)).save(bomb)
    with pytest.raises(JobError, match="larger than"):
        run(studio, mode="img2img", image=str(bomb))
    pic = tmp_path / "pic.png"
    Image.new("L", (60, 40), 100).save(pic)
    square = tmp_path / "square.png"
    Image.new("L", (50, 50), 255).save(square)
    with pytest.raises(JobError, match="50x50 but the image is 60x40"):
        run(studio, mode="inpaint", image=str(pic), mask=str(square))
    black = tmp_path / "black.png"
    Image.new("L", (60, 40), 0).save(black)
    with pytest.raises(JobError, match="nothing to repaint"):
        run(studio, mode="inpaint", image=str(pic), mask=str(black))
    with pytest.raises(JobError, match="paint a mask"):
        run(studio, mode="inpaint", image=str(pic))
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "black.png", "bomb.png", "photo.png", "pic.png", "square.png"
    ]  # fmt: skip


def test_interpolation_runs_from_seed_to_end_seed(studio: Studio) -> None:
    out = run(studio, mode="interpolate", seed=5, seed_b=77, frames=6, steps=20, label="middle")
    frames = out.result.images
    assert len(frames) == 6 and out.result.columns == 6
    start = run(studio, seed=5, batch=1, steps=20, label="middle").result.images[0]
    end = run(studio, seed=77, batch=1, steps=20, label="middle").result.images[0]
    assert np.abs(arr(frames[0]) - arr(start)).max() <= 2 / 127.5
    assert np.abs(arr(frames[-1]) - arr(end)).max() <= 2 / 127.5
    step = np.abs(arr(frames[2]) - arr(frames[3])).mean()
    assert step < np.abs(arr(frames[0]) - arr(frames[-1])).mean()


def test_cell_actions_remake_an_image_alone(studio: Studio) -> None:
    from gdl_studio.core.cells import cell_actions

    grid = run(studio, seed=20, batch=4, steps=10, label="one of each")
    actions = {a.label: a for a in cell_actions(grid.provenance.extra, 4)}
    alone = actions["Make this image alone"].params_for(3)
    assert alone is not None and alone["label"] == CLASSES[0]  # cell 3 of a row of 3
    single = run(studio, **{**alone, "steps": 10}).result.images[0]
    assert np.array_equal(np.asarray(single), np.asarray(grid.result.images[3]))
    vary = actions["Vary it (image-to-image)"].params_for(2)
    assert vary is not None and vary["mode"] == "img2img" and vary["seed"] == 22
    assert vary["label"] == CLASSES[2]


def test_eval_reports_the_issue_keys(studio: Studio, fake_fashion: Path, tmp_path: Path) -> None:
    clf = classifier_onnx(tmp_path / "clf")
    out = call_command(studio, "diffusion", "eval", None, data=fake_fashion, samples=30,
                       by_steps_samples=12, step_counts=(2, 5), classifier=clf)  # fmt: skip
    for key in ("fd", "fd_floor", "memorization_share", "fd_by_steps", "class_agreement"):
        assert key in out, key
    assert set(out["fd_by_steps"]) == {"2", "5"}
    assert out["samples"] == 30 and out["fd"] >= 0


def test_cli_run_with_the_shipped_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    code = main(["run", "diffusion", "--seed", "4", "--set", "steps=3", "--set", "batch=2",
                 "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    prov = read_provenance(out)
    assert prov.plugin == "diffusion" and prov.seed == 4 and prov.params["steps"] == 3
    fake = tmp_path / "not-an-image.png"
    fake.write_bytes(b"nope")
    bad = tmp_path / "bad.png"
    code = main(["run", "diffusion", "--input", str(fake), "--set", "mode=img2img",
                 "--out", str(bad)])  # fmt: skip
    assert code != 0 and "not an image" in capsys.readouterr().err
    assert not bad.exists()
