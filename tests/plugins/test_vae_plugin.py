"""The VAE plugin end to end with tiny encoder/decoder graphs built by onnx.helper (no torch):
the latent map and its geometry, sampling, encoding, morphs (and their GIF), concept vectors
from classes and from marked examples, the map projection of a larger latent, bad input, and
`eval` with the ELBO and the Fréchet distance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gdl_studio.core.cells import cell_actions
from gdl_studio.core.host import JobError, Studio, call_command, prepare_job, run_job
from gdl_studio.core.results import load_result, read_provenance, save_result
from tests.fixtures.images import classifier_onnx, write_idx
from tests.fixtures.vae_plugin import make_vae_plugin, projection


@pytest.fixture
def fake_fashion(tmp_path: Path) -> Path:
    """A tiny dataset in the Fashion-MNIST IDX layout: class c has a bright band at row 2c."""
    folder = tmp_path / "fmnist"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for prefix, n in (("train", 60), ("t10k", 40)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c : 2 * c + 4, 4:24] = 230
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def vae_studio(tmp_path: Path) -> Studio:
    """The real plugin code and manifest with three tiny models: a 2-D 8 px "map" model (the
    default), a 4-D one with a projection, and a 2-D 28 px Fashion-MNIST one for eval."""
    make_vae_plugin(tmp_path / "plugins")
    studio = Studio.create(include_builtin=False, include_entry_points=False,
                           extra_folders=[tmp_path / "plugins"])  # fmt: skip
    assert studio.registry.get("vae").ok, studio.registry.get("vae").state
    return studio


def run(studio: Studio, model: str | None = None, **params):
    return run_job(prepare_job(studio, "vae", model_id=model, params=params))


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def decoded(studio: Studio, point: str, model: str | None = None) -> np.ndarray:
    return pixels(run(studio, model, mode="point", point=point).result.images[0])


# -------------------------------------------------------------------------------- geometry


def test_map_geometry_quantiles_and_cursor_positions() -> None:
    from gdl_studio_plugins.vae.compute import (
        axis_values,
        format_point,
        fraction_of,
        map_points,
        point_at,
    )

    ax = axis_values(15, 0.05)
    assert ax[0] == pytest.approx(-1.6449, abs=1e-4) and ax[-1] == pytest.approx(1.6449, abs=1e-4)
    assert ax[7] == pytest.approx(0.0, abs=1e-12)
    pts = map_points(15, 0.05)
    assert pts.shape == (225, 2)
    assert pts[0].tolist() == pytest.approx([ax[0], ax[-1]])  # top left: smallest u, largest v
    assert pts[-1].tolist() == pytest.approx([ax[-1], ax[0]])
    # The centre of cell (row 2, column 11) decodes exactly that cell's point ...
    u, v = point_at((11 + 0.5) / 15, (2 + 0.5) / 15, 15, 0.05)
    assert (u, v) == pytest.approx(tuple(pts[2 * 15 + 11]))
    # ... and fraction_of inverts point_at anywhere, also beyond the grid's quantiles.
    for fx, fy in ((0.01, 0.99), (0.37, 0.61), (0.5, 0.5)):
        assert fraction_of(*point_at(fx, fy, 15, 0.05), 15, 0.05) == pytest.approx((fx, fy))
    assert fraction_of(5.0, 0.0, 15, 0.05)[0] > 1.0
    assert format_point((0.25, -1.5)) == "0.25, -1.5"


def test_projection_lifts_and_projects_back() -> None:
    from gdl_studio_plugins.vae.compute import Projection

    p = Projection.from_extras({"projection": projection(4)}, 4)
    uv = np.array([[0.3, -1.2], [2.0, 0.5]])
    assert np.allclose(p.project(p.lift(uv)), uv, atol=1e-5)
    assert np.allclose(p.lift(np.zeros((1, 2))), 0.1)  # the map's centre is the data's centre
    ident = Projection.from_extras({}, 2)
    assert np.allclose(ident.lift(uv), uv)
    with pytest.raises(JobError, match="projection"):
        Projection.from_extras({}, 4)
    with pytest.raises(JobError, match="does not fit"):
        Projection.from_extras({"projection": projection(3)}, 4)


# ------------------------------------------------------------------------------------ modes


def test_map_is_a_grid_of_decoded_quantile_points(vae_studio: Studio) -> None:
    from gdl_studio_plugins.vae.compute import axis_values

    out = run(vae_studio, grid=5, edge=0.05)
    images, extra = out.result.images, out.provenance.extra
    assert len(images) == 25 and out.result.columns == 5 and images[0].size == (8, 8)
    assert extra["map"] == {"grid": 5, "edge": 0.05, "points": [], "live": True}
    ax = axis_values(5, 0.05)
    # Row 1, column 3: u = ax[3], v = ax[5 - 1 - 1].
    cell = decoded(vae_studio, f"{float(ax[3])!r}, {float(ax[3])!r}")
    assert np.abs(pixels(images[1 * 5 + 3]) - cell).max() <= 1
    again = run(vae_studio, grid=5, edge=0.05).result.images
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(images, again, strict=True))
    # "Keep this image" on a cell makes exactly that image alone.
    actions = {a.label: a for a in cell_actions(extra, 25)}
    keep = actions["Keep this image"].params_for(7)
    assert keep is not None and keep["mode"] == "point"
    alone = run(vae_studio, **keep).result.images[0]
    assert np.abs(pixels(alone) - pixels(images[7])).max() <= 1


def test_default_map_is_the_books_15_by_15_figure(vae_studio: Studio) -> None:
    out = run(vae_studio)
    assert len(out.result.images) == 225 and out.result.columns == 15
    assert (
        out.provenance.params["mode"] == "map" and out.provenance.extra["display_smooth"] is False
    )


def test_sample_image_i_is_seed_plus_i(vae_studio: Studio) -> None:
    a = run(vae_studio, mode="sample", seed=10, batch=4)
    one = run(vae_studio, mode="sample", seed=12, batch=1)
    assert a.provenance.extra["seeds"] == [10, 11, 12, 13]
    assert np.array_equal(pixels(a.result.images[2]), pixels(one.result.images[0]))
    assert np.array_equal(decoded(vae_studio, "seed 12"), pixels(one.result.images[0]))


def test_encode_finds_where_an_image_lands_on_the_map(vae_studio: Studio, tmp_path: Path) -> None:
    source = decoded(vae_studio, "0.7, -1.1").astype(np.uint8)
    png = tmp_path / "in.png"
    Image.fromarray(source, "L").save(png)
    out = run(vae_studio, mode="encode", image=str(png), grid=6)
    u, v = (float(x) for x in out.provenance.extra["encoded"]["point"].split(","))
    assert (u, v) == pytest.approx((0.7, -1.1), abs=0.05)
    assert out.provenance.extra["map"]["points"][0] == pytest.approx([u, v], abs=1e-5)
    original, recon, grid = out.result.images
    assert original.size == recon.size == grid.size  # three panels of one size
    small = np.asarray(recon.convert("L").resize((8, 8), Image.Resampling.NEAREST), np.int16)
    assert np.abs(small - source).mean() < 3
    # The map panel has a red ring (the grey map has no red otherwise).
    rgb = np.asarray(grid, np.int16)
    assert ((rgb[..., 0] - rgb[..., 1]) > 100).sum() > 10


def test_morph_goes_from_a_to_b_and_saves_as_gif(vae_studio: Studio, tmp_path: Path) -> None:
    out = run(vae_studio, mode="morph", point="-1, 1", point_b="1.5, -0.5", frames=7)
    frames = out.result.images
    assert len(frames) == 7 and out.result.columns == 7
    assert np.abs(pixels(frames[0]) - decoded(vae_studio, "-1, 1")).max() <= 1
    assert np.abs(pixels(frames[-1]) - decoded(vae_studio, "1.5, -0.5")).max() <= 1
    path = out.provenance.extra["map"]["points"]
    assert path[3] == pytest.approx([0.25, 0.25])  # a straight line through the latent
    gif = tmp_path / "morph.gif"
    save_result(out.result, out.provenance, gif)
    assert len(load_result(gif).images) == 7
    assert read_provenance(gif).params["point_b"] == "1.5, -0.5"
    # Without points: from the seed's prior sample to seed + 1's.
    plain = run(vae_studio, mode="morph", seed=40, frames=3).result.images
    assert np.array_equal(pixels(plain[0]), decoded(vae_studio, "seed 40"))
    assert np.array_equal(pixels(plain[-1]), decoded(vae_studio, "seed 41"))


def test_larger_latent_uses_the_projection(vae_studio: Studio) -> None:
    out = run(vae_studio, "proj4d", grid=4)
    assert len(out.result.images) == 16 and out.provenance.extra["projected"] is True
    m = run(vae_studio, "proj4d", mode="morph", point="0.5, 0.5", point_b="-1, 2", frames=3)
    assert m.provenance.extra["map"]["points"][-1] == pytest.approx([-1, 2], abs=1e-5)
    # A prior sample of a 4-D model is off the map plane: it projects somewhere on it.
    s = run(vae_studio, "proj4d", mode="morph", seed=3, frames=2).provenance.extra["map"]
    assert len(s["points"]) == 2


def test_concept_vector_from_two_classes(vae_studio: Studio, fake_fashion: Path) -> None:
    out = run(vae_studio, "fashion28", mode="concept", with_class="Sneaker",
              without_class="Trouser", point="0, 0", frames=5, amount=1.0,
              data=str(fake_fashion))  # fmt: skip
    frames, info = out.result.images, out.provenance.extra["concept"]
    assert len(frames) == 5 and info["amounts"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert "Sneaker" in info["source"] and info["norm"] > 0
    assert np.abs(pixels(frames[2]) - decoded(vae_studio, "0, 0", "fashion28")).max() <= 1
    # Sliding towards "Sneaker" (class 7) brightens its band (rows 14-17) more than the
    # "Trouser" band (rows 2-5).
    diff = pixels(frames[-1]) - pixels(frames[0])
    assert diff[14:18, 4:24].mean() > diff[2:6, 4:24].mean()
    with pytest.raises(JobError, match="two different classes"):
        run(vae_studio, "fashion28", mode="concept", data=str(fake_fashion))


def test_marked_examples_give_a_concept_vector(vae_studio: Studio, fake_fashion: Path) -> None:
    """The window's flow without the window: 'examples' shows training images to mark; the
    cell action of one of them, filled from the marks, slides it along the concept."""
    ex = run(vae_studio, "fashion28", mode="examples", batch=8, seed=5, data=str(fake_fashion))
    items, extra = ex.provenance.extra["items"], ex.provenance.extra
    assert len(ex.result.images) == 8 and extra["marking"]["marked_means"] == "with"
    from gdl_studio.core.datasets import fashion_mnist

    train = fashion_mnist("train", fake_fashion)
    assert np.array_equal(np.asarray(ex.result.images[3]), train.images[items[3]])
    slide = cell_actions(extra, 8)[0]
    assert slide.marks is not None
    params = slide.params_for(2, marks={0, 1})
    assert params["with_items"] == f"{items[0]} {items[1]}"
    assert params["without_items"].split() == [str(i) for i in items[2:]]
    out = run(vae_studio, "fashion28", **{**params, "frames": 3, "data": str(fake_fashion)})
    assert out.provenance.extra["concept"]["base"] == f"training image #{items[2]}"
    assert "2 marked images with, 6 without" in out.provenance.extra["concept"]["source"]
    with pytest.raises(JobError, match="at least one of each"):
        run(vae_studio, "fashion28", mode="concept", with_items="1 2", data=str(fake_fashion))


# ------------------------------------------------------------------------------- bad input


def test_bad_points_and_inputs_are_one_line_errors(vae_studio: Studio, tmp_path: Path) -> None:
    with pytest.raises(JobError, match="expected 'u, v'"):
        run(vae_studio, mode="point", point="left of centre")
    with pytest.raises(JobError, match="encode needs an image"):
        run(vae_studio, mode="encode")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(JobError, match=r"junk\.png"):
        prepare_job(vae_studio, "vae", params={"mode": "encode", "image": str(junk)})


def test_a_training_image_number_must_exist(vae_studio: Studio, fake_fashion: Path) -> None:
    with pytest.raises(JobError, match="training image 999 does not exist"):
        run(vae_studio, "fashion28", mode="point", point="#999", data=str(fake_fashion))
    out = run(vae_studio, "fashion28", mode="point", point="#7", data=str(fake_fashion))
    assert out.provenance.extra["source"] == "training image #7"


def test_training_points_need_the_data(
    vae_studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gdl_studio.core import datasets

    monkeypatch.setattr(datasets, "FASHION_DIRS", [str(tmp_path / "nowhere")])
    monkeypatch.delenv("GDL_FASHION_MNIST", raising=False)
    with pytest.raises(JobError, match="needs the training data: Fashion-MNIST not found"):
        run(vae_studio, "fashion28", mode="point", point="#5")
    with pytest.raises(JobError, match="needs the training data"):
        run(vae_studio, "fashion28", mode="examples")


# ------------------------------------------------------------------------------------- eval


def test_discretized_logistic_is_a_distribution_over_256_levels() -> None:
    from gdl_studio_plugins.vae.evaluate import discretized_logistic_nll

    levels = (np.arange(256) / 127.5 - 1.0).reshape(256, 1)
    for loc, log_scale in ((0.1, -3.0), (-1.2, -5.0), (0.98, -1.0), (0.3, -7.0)):
        nll = discretized_logistic_nll(
            levels, np.full_like(levels, loc), np.full_like(levels, log_scale)
        )
        assert np.exp(-nll).sum() == pytest.approx(1.0, abs=1e-6)


def test_eval_reports_the_issue_keys(
    vae_studio: Studio, fake_fashion: Path, tmp_path: Path
) -> None:
    clf = classifier_onnx(tmp_path / "clf")
    out = call_command(vae_studio, "vae", "eval", "fashion28", data=fake_fashion, samples=30,
                       classifier=clf)  # fmt: skip
    for key in ("recon_error", "elbo_nats", "fd", "fd_floor", "fd_recon", "bits_per_dim"):
        assert key in out and math.isfinite(out[key]), key
    assert out["test_images"] == 40 and out["samples"] == 30
    assert out["elbo_nats"] == pytest.approx(out["recon_nll_nats"] + out["kl_nats"])
    assert 0 <= out["recon_error"] <= 1 and out["fd"] >= 0 and out["fd_floor"] >= 0


def test_eval_on_a_folder_says_fd_needs_a_classifier(vae_studio: Studio, tmp_path: Path) -> None:
    faces = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for person in range(3):
        (faces / f"s{person + 1}").mkdir(parents=True)
        for k in range(10):
            Image.fromarray(rng.integers(0, 255, (14, 12), dtype=np.uint8)).save(
                faces / f"s{person + 1}" / f"{k + 1}.pgm"
            )
    table = (vae_studio.registry.get("vae").folder / "plugin.toml").read_text()
    (vae_studio.registry.get("vae").folder / "plugin.toml").write_text(
        table.replace('dataset = "fashion"', 'dataset = "faces"', 1)
    )
    vae_studio.rediscover()
    out = call_command(vae_studio, "vae", "eval", "map2d", data=faces)
    assert out["test_images"] == 6  # 2 of each person's 10 photos are held out
    assert out["fd"] is None and out["fd_floor"] is None and "classifier" in out["fd_note"]
    assert math.isfinite(out["elbo_nats"])
