"""The DeepDream plugin end to end with the shipped EfficientNet-Lite0 gradient graph (no
torch): the gradient is the true gradient of the loss (also through the mirrored margin and
the jitter), the octave loop raises the loss, cancel keeps the dream, presets and layer
weights, a class, bad input, the CLI and `eval`.  Small images keep every dream to a second
or two."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gdl_studio_plugins.dream import compute
from gdl_studio_plugins.dream.compute import GradientGraph, parse_layers, random_layers
from PIL import Image

from gdl_studio.cli import main
from gdl_studio.core.host import (
    JobError,
    JobOutcome,
    Studio,
    call_command,
    context_for,
    prepare_job,
    run_job,
)
from gdl_studio.core.jobs import TaskState
from gdl_studio.core.results import Preview, read_provenance
from gdl_studio.core.sample_photos import sample_photo

ROOT = Path(__file__).resolve().parents[2]
FAST = {"steps": 4, "octaves": 2, "jitter": 0, "seed": 3}


@pytest.fixture(scope="module")
def studio(builtin_studio: Studio) -> Studio:
    return builtin_studio


def photo(path: Path, size: tuple[int, int] = (150, 110), seed: int = 0) -> Path:
    """A synthetic 'photo': smooth colour gradients, a disc and some noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    rng = np.random.default_rng(seed)
    rgb = np.stack([xx, yy, 1 - xx * yy], axis=2) * 200 + rng.normal(0, 8, (h, w, 3))
    disc = (xx - 0.4) ** 2 + (yy - 0.35) ** 2 < 0.04
    rgb[disc] = [230, 180, 40]
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path


def dream(studio: Studio, state: TaskState | None = None, **params: Any) -> JobOutcome:
    return run_job(prepare_job(studio, "dream", params={**FAST, **params}), state)


def test_the_gradient_is_the_gradient_of_the_loss(studio: Studio) -> None:
    """Central finite differences along smooth directions next to the mirrored margin (the
    image's sides are not multiples of 32) match <gradient, direction>, with and without a
    jitter roll, far better than the gradient with the margin's part simply cropped off."""
    graph = GradientGraph(context_for(studio, "dream", None))
    rng = np.random.default_rng(1)
    x = compute.to_array(Image.open(sample_photo("chelsea")).resize((130, 100)))
    weights = np.zeros(16, np.float32)
    weights[[4, 7, 9]] = [0.2, 3.0, 2.0]
    config = compute.DreamConfig(layer_weights=weights, class_weights=np.zeros(1000, np.float32))
    state = TaskState()
    assert compute.padded_size(100) - 100 == 60  # a wide margin: its gradient matters

    def cropped_gradient(shift: tuple[int, int]) -> np.ndarray:
        padded = np.pad(x, ((0, 60), (0, 30), (0, 0)), mode="symmetric")
        feeds = {"image": np.roll(padded, shift, axis=(0, 1)).transpose(2, 0, 1)[None].copy(),
                 "layer_weights": weights, "class_weights": config.class_weights}  # fmt: skip
        _, g = graph.session.run(feeds, ["loss", "grad"])
        return np.roll(g[0].transpose(1, 2, 0), (-shift[0], -shift[1]), axis=(0, 1))[:100, :130]

    eps = 1e-3
    for shift in ((0, 0), (7, -5)):
        _, grad = graph(x, config, shift, state)
        cropped = cropped_gradient(shift)
        err, err_cropped = 0.0, 0.0
        for _ in range(4):
            d = compute.resize(rng.standard_normal((5, 7, 3)).astype(np.float32), (100, 130))
            d[:60], d[:, :80] = 0, 0  # the bottom-right corner, beside the margin
            up, _ = graph(x + eps * d, config, shift, state)
            down, _ = graph(x - eps * d, config, shift, state)
            numeric = (up - down) / (2 * eps)
            err += abs(numeric - float(np.sum(grad * d)))
            err_cropped += abs(numeric - float(np.sum(cropped * d)))
        assert err < 0.3 * err_cropped, (shift, err, err_cropped)


def test_a_dream_raises_the_loss_and_keeps_the_photo_size(studio: Studio, tmp_path: Path) -> None:
    src = photo(tmp_path / "p.png")
    previews: list[Preview] = []
    out = dream(studio, TaskState(on_preview=previews.append), image=str(src), octaves=3)
    losses = out.result.extra["losses"]
    assert len(losses) == 3 and all(len(o) >= 2 for o in losses)
    for octave in losses:
        assert all(b >= a for a, b in itertools.pairwise(octave)), octave
        assert octave[-1] > octave[0]
    (image,) = out.result.images
    assert image.size == (150, 110)
    before = np.asarray(Image.open(src).convert("RGB"), np.float32)
    assert np.abs(np.asarray(image, np.float32) - before).mean() > 2  # it dreamed
    assert len(previews) >= 3 * 4 - 2  # the canvas sees it change at every step
    assert out.result.extra["layers"] == "4:0.2, 7:3, 9:2, 10:1.5"
    assert out.provenance.params["preset"] == "swirls and eyes"


def test_the_same_seed_gives_the_same_dream_with_jitter(studio: Studio, tmp_path: Path) -> None:
    src = str(photo(tmp_path / "p.png"))
    a, b = (dream(studio, image=src, jitter=8, seed=5).result.images[0] for _ in range(2))
    c = dream(studio, image=src, jitter=8, seed=6).result.images[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_cancel_keeps_the_dream_so_far(studio: Studio, tmp_path: Path) -> None:
    src = photo(tmp_path / "p.png")
    seen: list[Preview] = []

    def on_preview(p: Preview) -> None:
        seen.append(p)
        if len(seen) == 3:
            state.cancel()

    state = TaskState(on_preview=on_preview)
    out = dream(studio, state, image=str(src), steps=20, octaves=3)
    assert out.result.extra["stopped"] == "cancelled"
    assert sum(len(o) for o in out.result.extra["losses"]) == 3
    assert out.result.images[0].size == (150, 110)
    shown = np.asarray(seen[-1].images[0], np.float32)
    kept = np.asarray(out.result.images[0].resize(seen[-1].images[0].size), np.float32)
    assert np.abs(shown - kept).mean() < 3  # what was on the canvas is what is kept


def test_each_octave_can_be_kept(studio: Studio, tmp_path: Path) -> None:
    out = dream(studio, image=str(photo(tmp_path / "p.png")), save_octaves=True, octaves=3)
    assert len(out.result.images) == 3 and out.result.columns == 3
    assert {im.size for im in out.result.images} == {(150, 110)}
    assert out.result.extra["octaves_done"] == 3


def test_presets_random_custom_and_class(studio: Studio, tmp_path: Path) -> None:
    src = str(photo(tmp_path / "p.png"))
    rand = dream(studio, image=src, preset="random", seed=11)
    assert rand.result.extra["layers"] == compute.format_layers(random_layers(11))
    assert random_layers(11) != random_layers(12)
    # Its weights can be kept as custom ones (the canvas's right-click menu).
    (action,) = rand.result.extra["cell_actions"]
    assert action["params"][0] == {"preset": "custom", "layers": rand.result.extra["layers"]}
    custom = dream(studio, image=src, preset="custom", layers=rand.result.extra["layers"], seed=11)
    np.testing.assert_array_equal(
        np.asarray(custom.result.images[0]), np.asarray(rand.result.images[0])
    )
    cls = dream(studio, image=src, preset="class", dream_class="goldfish")
    assert cls.result.extra["layers"] == ""
    assert cls.result.extra["losses"][0][-1] > cls.result.extra["losses"][0][0]


def test_layer_weights_are_parsed_or_refused_clearly() -> None:
    assert parse_layers("4:0.2, 7:3;9  10:1.5") == {4: 0.2, 7: 3.0, 9: 1.0, 10: 1.5}
    with pytest.raises(JobError, match="block 16 does not exist"):
        parse_layers("16:1")
    with pytest.raises(JobError, match="is not BLOCK:WEIGHT"):
        parse_layers("four:1")
    with pytest.raises(JobError, match="not a number"):
        parse_layers("4:nan")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_input_is_refused_and_writes_nothing(studio: Studio, tmp_path: Path) -> None:
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"this is not a png")
    with pytest.raises(JobError, match="not an image"):
        prepare_job(studio, "dream", params={"image": str(fake)})
    bomb = tmp_path / "bomb.png"
    Image.new("L", (12_000, 12_000)).save(bomb)
    with pytest.raises(JobError, match="larger than"):
        dream(studio, image=str(bomb))
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (5, 4), "red").save(tiny)
    with pytest.raises(JobError, match="too small to dream on"):
        dream(studio, image=str(tiny))
    with pytest.raises(JobError, match="custom: give layer weights"):
        dream(studio, image=str(tiny), preset="custom", layers="")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png", "photo.png", "tiny.png"]


def test_a_small_photo_is_upscaled_with_a_notice(studio: Studio, tmp_path: Path) -> None:
    src = photo(tmp_path / "small.png", size=(40, 30))
    out = dream(studio, image=str(src), octaves=3)
    assert any("upscaled from 40x30" in n for n in out.notices)
    assert out.result.images[0].width > 40


def test_large_photos_are_dreamed_at_max_size(studio: Studio, tmp_path: Path) -> None:
    src = photo(tmp_path / "big.png", size=(600, 300))
    out = dream(studio, image=str(src), size=200, steps=1, octaves=1)
    assert out.result.images[0].size == (200, 100)


def test_cli_run_with_input(capsys, tmp_path: Path) -> None:
    src = photo(tmp_path / "p.png")
    out = tmp_path / "dream.png"
    code = main(["run", "dream", "--input", str(src), "--set", "steps=2", "--set", "octaves=2",
                 "--set", "preset=mosaic", "--seed", "4", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    prov = read_provenance(out)
    assert prov.plugin == "dream" and prov.params["preset"] == "mosaic" and prov.seed == 4
    assert prov.extra["layers"] == "2:1, 3:1, 4:0.5"
    with Image.open(out) as im:
        assert im.size == (150, 110)


def test_eval_writes_a_sheet_and_the_ascent_is_monotonic(studio: Studio, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(folder / "a.png", size=(96, 64))
    out = call_command(studio, "dream", "eval", None, data=folder)
    assert out["monotonic"] is True
    assert set(out["presets"]) == set(compute.PRESETS)
    assert all(p["mean_octave_gain"] > 0 for p in out["presets"].values())
    with Image.open(out["sheet"]) as sheet:
        assert sheet.width == 5 * 320  # the photo, then one dream per preset


def test_the_shipped_manifest_is_valid() -> None:
    from gdl_studio.core.manifest import load_manifest

    m = load_manifest(ROOT / "plugins" / "dream" / "plugin.toml")
    assert m.kind == "image" and set(m.entry) == {"run", "eval", "bench"}
    (model,) = m.models
    assert len(model.extras["classes"]) == 1000 and model.extras["classes"][281] == "tabby"
    assert len(model.extras["layer_strides"]) == compute.N_LAYERS
    assert set(m.param("preset").choices) == {*compute.PRESET_NAMES}
